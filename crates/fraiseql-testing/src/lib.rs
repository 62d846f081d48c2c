//! Test support for fraiseql applications, as a dev-dependency (nothing here is compiled into a
//! served binary). Split by what it starts:
//!
//! - [`database`]: a database per test, cloned from a migrated template ([`TestDatabase`]);
//! - [`tenancy`]: a multi-tenant world of a test's own ([`TestTenancy`]);
//! - [`client`]: [`TestClient`], which sends GraphQL requests through the real router without a
//!   socket (`TestClient::create(config)`, `set_tenant(key)`, `execute(query)`);
//! - [`nats`]: a `nats-server` of a test's own ([`NatsServer`]);
//! - [`postgres`]: a PostgreSQL cluster of a test's own ([`PgCluster`]);
//! - [`certs`]: a CA and a server certificate ([`TestCerts`]);
//! - [`process`]: a server process of a test's own and raw HTTP/1.1 to it ([`ServerProcess`],
//!   [`http`]).

pub mod certs;
pub mod client;
pub mod database;
pub mod nats;
pub mod postgres;
pub mod process;
pub mod tenancy;

pub use certs::TestCerts;
pub use client::{TestClient, TestResponse};
pub use database::{admin_url, url_for, TestDatabase};
pub use nats::{wait_consumer_idle, NatsServer, StreamDelivery};
pub use postgres::PgCluster;
pub use process::{http, HttpAnswer, ServerProcess};
pub use tenancy::{TestTenancy, TEST_JWT_SECRET};

/// Errors of the test harness (tests fail loudly with them).
pub type TestError = Box<dyn std::error::Error + Send + Sync>;

/// A name suffix no other test (in this process or another) picks at the same time.
pub(crate) fn unique_suffix() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::time::SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    std::thread::current().id().hash(&mut h);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A free local TCP port (bound, then released for a server to take).
pub(crate) fn free_port() -> Result<u16, TestError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
