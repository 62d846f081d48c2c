//! The NATS connection (`[nats]`): every server of the cluster, credentials, TLS (rustls, the
//! build's one TLS stack), the connection's name and the reconnect policy. Events and cache
//! invalidations share it.

use std::time::Duration;

use fraiseql_config::NatsConfig;

/// Why NATS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No server configured.
    #[error("no NATS server configured: set [nats] servers = [\"nats://...\"]")]
    NoServers,
    /// A server URL does not parse.
    #[error("[nats] servers: {0}")]
    BadUrl(String),
    /// Connecting failed.
    #[error("NATS: {0}")]
    Connect(String),
}

fn options(c: &NatsConfig) -> async_nats::ConnectOptions {
    let mut o = async_nats::ConnectOptions::new()
        .name(&c.name)
        .connection_timeout(Duration::from_millis(c.connect_timeout_ms))
        .max_reconnects((c.max_reconnects > 0).then_some(c.max_reconnects));
    let max_delay = Duration::from_millis(c.reconnect_delay_ms);
    o = o.reconnect_delay_callback(move |attempts| {
        // Exponential from 10 ms, capped: a lost node is left quickly for a live one.
        let exp = 10u64.saturating_mul(1 << attempts.min(16));
        Duration::from_millis(exp).min(max_delay)
    });
    if let Some(t) = &c.token {
        o = o.token(t.clone());
    }
    if let (Some(u), Some(p)) = (&c.user, &c.password) {
        o = o.user_and_password(u.clone(), p.clone());
    }
    if let Some(ca) = &c.tls_ca {
        o = o.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    let tls_urls = c.servers.iter().any(|s| s.starts_with("tls://"));
    if c.require_tls || tls_urls {
        o = o.require_tls(true);
    }
    o
}

fn addresses(c: &NatsConfig) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    if c.servers.is_empty() {
        return Err(NatsError::NoServers);
    }
    c.servers
        .iter()
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| NatsError::BadUrl(e.to_string()))
        })
        .collect()
}

/// Connects, retrying in the background while no server answers (events wait in the outboxes
/// meanwhile); `request_timeout` bounds JetStream API requests.
pub async fn connect(
    c: &NatsConfig,
    request_timeout: Duration,
) -> Result<async_nats::Client, NatsError> {
    let addrs = addresses(c)?;
    options(c)
        .retry_on_initial_connect()
        .request_timeout(Some(request_timeout))
        .connect(addrs)
        .await
        .map_err(|e| NatsError::Connect(e.to_string()))
}

/// Connects once, failing if no server answers within `timeout` (for `config validate`).
pub async fn probe(c: &NatsConfig, timeout: Duration) -> Result<async_nats::Client, NatsError> {
    let addrs = addresses(c)?;
    match tokio::time::timeout(timeout, options(c).connect(addrs)).await {
        Ok(r) => r.map_err(|e| NatsError::Connect(e.to_string())),
        Err(_) => Err(NatsError::Connect(format!(
            "no server answered within {} ms",
            timeout.as_millis()
        ))),
    }
}
