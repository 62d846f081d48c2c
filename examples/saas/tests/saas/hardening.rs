//! Hostile input, tried as an attacker would: the tenant wall (tokens bound to their tenant,
//! malformed headers, RBAC over arguments), bounded work (LIMIT kept, deadlines that never
//! commit behind the client's back, single-flight registry look-ups, a share per tenant) and
//! bounded memory (prepared statements, caches). Each test failed before its fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql::engine::identity::jwt;
use fraiseql::Resolvers;
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{
    assert_answered, code, eventually, secured_world_with, setup_with, until_waiting_on_lock,
    waiting_on_lock, world_with,
};

async fn insert_org(t: &TestTenancy, rec: &fraiseql::engine::tenancy::TenantRecord, name: &str) {
    let c = t.admin_client(rec).await.expect("admin");
    c.execute(
        "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('o-' || gen_random_uuid(), $1, $2)",
        &[&rec.id, &name],
    )
    .await
    .expect("insert");
}

fn signed(t: &TestTenancy, claims: Value) -> String {
    let auth = t.config.auth.as_ref().expect("auth");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut base =
        json!({"iss": "fraiseql", "aud": "fraiseql", "exp": now + 600, "roles": ["admin"]});
    for (k, v) in claims.as_object().expect("object") {
        base[k] = v.clone();
    }
    jwt::sign(auth, base.as_object().expect("object")).expect("sign")
}

#[tokio::test]
async fn a_token_that_names_no_tenant_picks_none() {
    let t = secured_world_with("database_per_tenant", "").await;
    let mut t = t;
    // Machine-to-machine tokens list the tenants they may act for, explicitly configured.
    t.config.auth.as_mut().expect("auth").tenants_claim = Some("tenants".into());
    let a = t.create_tenant("tenant_a").await.expect("a");
    let b = t.create_tenant("tenant_b").await.expect("b");
    insert_org(&t, &a, "Org A").await;
    insert_org(&t, &b, "Org B").await;
    let mut client = t.client().await.expect("client");
    let q = "{ organizations { name } }";

    for claims in [json!({}), json!({"tenant_id": null})] {
        client.set_token(Some(signed(&t, claims.clone())));
        client.set_tenant("tenant_b");
        let r = client.execute_with(q, json!({})).await.expect("send");
        assert_eq!(
            (r.status, code(&r.json)),
            (403, "FORBIDDEN"),
            "{claims}: {}",
            r.text
        );
        assert!(r.json.get("data").is_none());
    }
    // No token at all: 401, whatever the header says.
    client.set_token(None);
    let r = client.execute_with(q, json!({})).await.expect("send");
    assert_answered(&r, 401, "UNAUTHENTICATED");

    // A token listing tenants: the header picks one of them, and only one of them.
    client.set_token(Some(signed(&t, json!({"tenants": ["tenant_a"]}))));
    client.set_tenant("tenant_a");
    let v = client.execute(q).await.expect("send");
    assert_eq!(v, json!({"data": {"organizations": [{"name": "Org A"}]}}));
    client.set_tenant("tenant_b");
    let r = client.execute_with(q, json!({})).await.expect("send");
    assert_answered(&r, 403, "FORBIDDEN");
    client.clear_tenant();
    let r = client.execute_with(q, json!({})).await.expect("send");
    assert_answered(&r, 400, "BAD_REQUEST");
}

#[tokio::test]
async fn multi_tenancy_without_auth_is_refused_unless_explicitly_trusted() {
    let t = world_with("database_per_tenant", "").await;
    let mut config = t.config.clone();
    config.auth = None;
    config.multi_tenancy.trust_tenant_header = false;
    let e = fraiseql::Engine::from_config(config.clone())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("there is no [auth]"), "{e}");
    config.auth = t.config.auth.clone();
    config.auth.as_mut().expect("auth").required = false;
    let e = fraiseql::Engine::from_config(config.clone())
        .err()
        .expect("refused");
    assert!(e.to_string().contains("[auth] required = false"), "{e}");
    config.multi_tenancy.trust_tenant_header = true;
    assert!(fraiseql::Engine::from_config(config).is_ok());
}

#[tokio::test]
async fn a_tenant_header_that_is_not_visible_ascii_is_refused() {
    let t = secured_world_with("database_per_tenant", "").await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    insert_org(&t, &a, "Org A").await;
    let mut client = t.client().await.expect("client");
    client.set_token(Some(t.token("tenant_a", &["admin"]).expect("token")));
    // UTF-8 bytes in the header: refused, never treated as absent (the token alone would
    // otherwise have been served).
    client.set_tenant("tenant_a\u{e9}");
    let r = client
        .execute_with("{ organizations { name } }", json!({}))
        .await
        .expect("send");
    assert_answered(&r, 400, "BAD_REQUEST");
    client.set_tenant("tenant_a");
    let r = client
        .execute_with("{ organizations { name } }", json!({}))
        .await
        .expect("send");
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn filtering_or_ordering_on_a_denied_field_is_forbidden() {
    let t = secured_world_with(
        "database_per_tenant",
        "[rbac]\n\"Organization.subscriptionTier\" = [\"admin\"]\n\"Organization.createdAt\" = [\"admin\"]\n",
    )
    .await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    insert_org(&t, &a, "Org A").await;
    let mut client = t.client().await.expect("client");
    client.set_token(Some(t.token("tenant_a", &["viewer"]).expect("token")));
    for q in [
        r#"{ organizations(subscriptionTier: "free") { name } }"#,
        "{ organizations(orderBy: [CREATED_AT_DESC]) { name } }",
    ] {
        let r = client.execute_with(q, json!({})).await.expect("send");
        assert_eq!(code(&r.json), "FORBIDDEN", "{q}: {}", r.text);
        assert!(r.json.get("data").is_none(), "{q}: {}", r.text);
    }
    let v = client
        .execute("{ organizations { name } }")
        .await
        .expect("send");
    assert_eq!(v, json!({"data": {"organizations": [{"name": "Org A"}]}}));
    client.set_token(Some(t.token("tenant_a", &["admin"]).expect("token")));
    let v = client
        .execute(
            r#"{ organizations(subscriptionTier: "free", orderBy: [CREATED_AT_DESC]) { name } }"#,
        )
        .await
        .expect("send");
    assert_eq!(v, json!({"data": {"organizations": [{"name": "Org A"}]}}));
}

#[tokio::test]
async fn limit_null_and_unset_limit_variables_return_at_most_the_default() {
    let s = setup_with("").await;
    let c = s._db.connect().await.expect("connect");
    c.batch_execute(
        "INSERT INTO tb_organization (identifier, tenant_id, name)
         SELECT 'bulk' || i, '11111111-1111-4111-8111-111111111111', 'Bulk ' || i FROM generate_series(1, 80) i",
    )
    .await
    .expect("orgs");
    for (q, vars) in [
        ("{ organizations(limit: null) { id } }", json!({})),
        (
            "query($l: Int) { organizations(limit: $l) { id } }",
            json!({}),
        ),
        (
            "query($l: Int) { organizations(limit: $l) { id } }",
            json!({"l": null}),
        ),
    ] {
        let v = s.client.execute_with(q, vars).await.expect("send").json;
        let n = v["data"]["organizations"].as_array().map(Vec::len);
        assert_eq!(n, Some(50), "{q}: the argument's default, not every row");
    }
    // Nested: Acme has 120 projects, `projects(limit:)` defaults to 100.
    for (q, vars) in [
        (
            "query($o: ID!) { organization(id: $o) { projects(limit: null) { id } } }",
            json!({ "o": s.acme }),
        ),
        (
            "query($o: ID!, $l: Int) { organization(id: $o) { projects(limit: $l) { id } } }",
            json!({ "o": s.acme }),
        ),
        (
            "query($o: ID!, $l: Int) { organization(id: $o) { projects(limit: $l) { id } } }",
            json!({ "o": s.acme, "l": null }),
        ),
    ] {
        let v = s.client.execute_with(q, vars).await.expect("send").json;
        let n = v["data"]["organization"]["projects"]
            .as_array()
            .map(Vec::len);
        assert_eq!(
            n,
            Some(100),
            "{q}: the argument's default, not all 120: {v}"
        );
    }
}

#[tokio::test]
async fn a_write_whose_deadline_passed_does_not_commit() {
    let t = world_with(
        "database_per_tenant",
        "[limits]\nrequest_timeout_ms = 400\n",
    )
    .await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    insert_org(&t, &a, "Org A").await;
    // A mutation that writes, then takes longer than the deadline before it can commit.
    let resolvers = Resolvers::new().mutation("createOrganization", |ctx, args| async move {
        let name: String = args.get("name")?;
        let row = ctx
            .db()
            .query_one(
                "INSERT INTO tb_organization (name, identifier) VALUES ($1, fn_slug($1)) RETURNING id::text",
                &[&name],
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Ok(Value::String(row.get(0)))
    });
    let mut client = t.client_with(resolvers).await.expect("client");
    client.set_tenant("tenant_a");
    let r = client
        .execute_with(
            r#"mutation { createOrganization(name: "Too Late") { id } }"#,
            json!({}),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 408, "{}", r.text);
    assert!(r.text.contains("nothing was changed"), "{}", r.text);
    // Once the request's transaction has ended (the resolver sleeps past the deadline), nothing
    // was committed.
    let admin = t.admin_client(&a).await.expect("admin");
    eventually(
        "the timed-out request's transaction ends",
        Duration::from_secs(10),
        || async {
            let open: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()
                        AND xact_start IS NOT NULL",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            match open {
                0 => Ok(()),
                n => Err(format!("{n} sessions in a transaction")),
            }
        },
    )
    .await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM tb_organization WHERE name = 'Too Late'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "the client got 408: the write must not commit");
}

#[tokio::test]
async fn registry_lookups_are_single_flight_and_unknown_keys_are_cached() {
    let t = world_with("database_per_tenant", "").await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    insert_org(&t, &a, "Org A").await;
    let client = Arc::new(t.client().await.expect("client"));
    let tenants = client.engine().tenants().expect("tenancy");
    let body = br#"{"query": "{ organizations { name } }"}"#.to_vec();
    let burst = |key: &'static str| {
        let client = client.clone();
        let body = body.clone();
        async move {
            let all = (0..50).map(|_| {
                let client = client.clone();
                let body = body.clone();
                async move { client.post_as(key, body).await.expect("send").status }
            });
            futures_util::future::join_all(all).await
        }
    };
    let before = tenants.registry_lookups();
    let statuses = burst("tenant_a").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        tenants.registry_lookups() - before,
        1,
        "50 requests, one look-up"
    );
    let before = tenants.registry_lookups();
    let statuses = burst("nobody_here").await;
    assert!(statuses.iter().all(|s| *s == 403), "{statuses:?}");
    assert_eq!(
        tenants.registry_lookups() - before,
        1,
        "unknown keys are cached too"
    );
    // A flood of distinct unknown keys leaves the registry room for real tenants.
    t.create_tenant("tenant_b").await.expect("b");
    let flood = (0..400).map(|i| {
        let client = client.clone();
        let body = body.clone();
        async move {
            client
                .post_as(&format!("ghost_{i}"), body)
                .await
                .expect("send")
                .status
        }
    });
    let real = {
        let client = client.clone();
        let body = body.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.post_as("tenant_b", body).await.expect("send")
        }
    };
    let (ghosts, real) =
        futures_util::future::join(futures_util::future::join_all(flood), real).await;
    assert!(ghosts.iter().all(|s| *s == 403), "{ghosts:?}");
    assert_eq!(real.status, 200, "{}", real.text);
    assert_eq!(real.json, json!({"data": {"organizations": []}}));
}

/// Tenant A's requests hold every connection of its share (`pool_max = 4`) and more wait for
/// one; B, arriving meanwhile, is served from its own share while all of A's are still held.
#[tokio::test]
async fn under_row_level_each_tenant_has_its_own_share_of_connections() {
    const LOCK: i64 = 7_431_017;
    let t = world_with("row_level", "").await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    let b = t.create_tenant("tenant_b").await.expect("b");
    insert_org(&t, &a, "Org A").await;
    insert_org(&t, &b, "Org B").await;
    // A's queries wait, in the request's transaction, for a lock the test holds.
    let admin = t.host.connect().await.expect("host");
    admin
        .query_one("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .expect("lock");
    let resolvers = Resolvers::new().query("tenantConfig", |ctx, _| async move {
        ctx.db()
            .query_one("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await?;
        Ok(Value::Null)
    });
    // The requests queued behind A's share wait for it as long as the test needs.
    let mut config = t.config.clone();
    config
        .databases
        .get_mut("tenant")
        .expect("tenant")
        .pool_timeout_secs = 60;
    let client = Arc::new(
        TestClient::with_resolvers(config, resolvers)
            .await
            .expect("client"),
    );
    // Twice A's share of blocked requests...
    let blocked = (0..8).map(|_| {
        let client = client.clone();
        async move {
            client
                .post_as("tenant_a", br#"{"query": "{ tenantConfig }"}"#.to_vec())
                .await
                .expect("send")
                .status
        }
    });
    let meanwhile = async {
        until_waiting_on_lock(
            &admin,
            LOCK,
            4,
            Duration::from_secs(10),
            "A's share of connections waits on the lock",
        )
        .await;
        // ...and B, arriving while all of A's share is held, is answered from its own.
        let b_answer = tokio::time::timeout(
            Duration::from_secs(10),
            client.post_as(
                "tenant_b",
                br#"{"query": "{ organizations { name } }"}"#.to_vec(),
            ),
        )
        .await
        .expect("B waited behind A's requests")
        .expect("send");
        assert_eq!(
            b_answer.json,
            json!({"data": {"organizations": [{"name": "Org B"}]}})
        );
        assert_eq!(
            waiting_on_lock(&admin, LOCK).await,
            4,
            "A never held more than its share"
        );
        admin
            .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK])
            .await
            .expect("unlock");
    };
    let (statuses, ()) =
        futures_util::future::join(futures_util::future::join_all(blocked), meanwhile).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn prepared_statements_per_connection_are_bounded() {
    let t = world_with("database_per_tenant", "[limits]\nprepared_statements = 8\n").await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    insert_org(&t, &a, "Org A").await;
    let resolvers = Resolvers::new().query("tenantConfig", |ctx, _| async move {
        let n: i64 = ctx
            .db()
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await?
            .get(0);
        Ok(Value::from(n))
    });
    let mut config = t.config.clone();
    // One connection for the tenant, so every statement lands on it.
    config.databases.get_mut("tenant").expect("tenant").pool_max = 1;
    config.multi_tenancy.connection_budget = 1;
    let mut client = TestClient::with_resolvers(config, resolvers)
        .await
        .expect("client");
    client.set_tenant("tenant_a");
    // Every alias is a distinct SQL text.
    for i in 0..200 {
        let v = client
            .execute(&format!("{{ organizations {{ n{i}: name }} }}"))
            .await
            .expect("send");
        assert!(v.get("errors").is_none(), "{v}");
    }
    let v = client.execute("{ tenantConfig }").await.expect("send");
    let n = v["data"]["tenantConfig"].as_i64().expect("count");
    assert!(n <= 10, "{n} statements prepared on one connection (cap 8)");
}

#[tokio::test]
async fn document_and_plan_caches_are_bounded_by_bytes() {
    let s = setup_with(
        "[limits]\nmax_body_bytes = 2097152\ndocument_cache_bytes = 4194304\nplan_cache_bytes = 1048576\n",
    )
    .await;
    const MIB: u64 = 1024 * 1024;
    let ask = |comment: &str, i: usize| {
        let q = format!("#{comment}\n{{ organizations(limit: {i}) {{ id }} }}");
        let client = &s.client;
        async move {
            let v = client.execute(&q).await.expect("send");
            assert!(v.get("errors").is_none(), "{v}");
            client.engine().cache_bytes()
        }
    };
    // 400 distinct texts of 4 KB: kept, they would take ~21 MiB of documents and ~1.8 MiB of
    // plans; the caches keep the recent ones within their bounds.
    let text = "x".repeat(4000);
    for i in 0..400 {
        let (docs, plans) = ask(&text, i).await;
        assert!(
            docs <= 4 * MIB,
            "query {i}: document cache holds {docs} bytes"
        );
        assert!(plans <= MIB, "query {i}: plan cache holds {plans} bytes");
    }
    let (docs, plans) = s.client.engine().cache_bytes();
    assert!(
        docs > 3 * MIB && plans > MIB / 2,
        "the caches keep recent entries up to their bounds: {docs} and {plans} bytes"
    );
    // A 1 MiB text, heavier than 1/64 of the document cache, is answered and not kept.
    let huge = "x".repeat(1024 * 1024);
    for i in 0..3 {
        assert_eq!(
            ask(&huge, i).await,
            (docs, plans),
            "a 1 MiB query left the caches as they were"
        );
    }
}

#[tokio::test]
async fn row_level_tenants_cannot_live_in_the_registry_database() {
    let t = world_with("row_level", "").await;
    let mut config = t.config.clone();
    let registry = config.databases["shared"].url.clone();
    config.databases.get_mut("tenant").expect("tenant").url = registry;
    let e = fraiseql::ops::provision::create_tenant(&config, "tenant_a", "free", None)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("holds the tenant registry"), "{e}");
    assert!(
        t.create_tenant("tenant_a").await.is_ok(),
        "another host database works"
    );
}

fn scratch(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let d = std::env::temp_dir().join(format!("fraiseql-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A PostgreSQL cluster that only accepts TLS, with a certificate signed by a CA made here.
fn tls_cluster() -> (fraiseql_testing::PgCluster, fraiseql_testing::TestCerts) {
    let dir = scratch("tls");
    let certs = fraiseql_testing::TestCerts::make(&dir).expect("certs");
    // The server reads its key as the `postgres` user, and only if no one else can.
    let _ = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status();
    let _ = std::process::Command::new("chmod")
        .arg("0600")
        .arg(&certs.key)
        .status();
    let _ = std::process::Command::new("chmod")
        .arg("0755")
        .arg(&dir)
        .status();
    let cluster = fraiseql_testing::PgCluster::start(
        &format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            certs.cert.display(),
            certs.key.display()
        ),
        Some("local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"),
    )
    .expect("cluster");
    (cluster, certs)
}

#[tokio::test]
async fn postgres_connections_use_tls_as_the_url_says_and_verify_the_server() {
    let (cluster, certs) = tls_cluster();
    let port = cluster.port;
    let ca = certs.ca.display().to_string();
    let url =
        |host: &str, params: &str| format!("postgres://postgres@{host}:{port}/postgres?{params}");
    let connect =
        |u: String| async move { fraiseql::engine::connections::connect(&u, None, None).await };
    let ssl_in_use = |c: tokio_postgres::Client| async move {
        c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get::<_, bool>(0)
    };
    // verify-full: the chain and the name (localhost and 127.0.0.1 are in the certificate).
    for host in ["localhost", "127.0.0.1"] {
        let c = connect(url(host, &format!("sslmode=verify-full&sslrootcert={ca}")))
            .await
            .unwrap_or_else(|e| panic!("verify-full {host}: {e}"));
        assert!(ssl_in_use(c).await);
    }
    // require: encrypted, not verified; the key=value form too.
    let c = connect(url("localhost", "sslmode=require"))
        .await
        .expect("require");
    assert!(ssl_in_use(c).await);
    let kv = format!("host=localhost port={port} user=postgres dbname=postgres sslmode=verify-ca sslrootcert='{ca}'");
    let c = connect(kv).await.expect("verify-ca, key=value form");
    assert!(ssl_in_use(c).await);
    // The server refuses plain TCP; a certificate from another CA is refused by us.
    let e = connect(url("localhost", "sslmode=disable"))
        .await
        .expect_err("plain TCP refused");
    assert_eq!(
        e.to_string(),
        "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption"
    );
    let other = fraiseql_testing::TestCerts::make(&scratch("other-ca")).expect("other CA");
    let e = connect(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.ca.display()),
    ))
    .await
    .expect_err("wrong CA");
    // Both CAs are named alike: the chain is found, its signature does not verify.
    assert_eq!(
        e.to_string(),
        "error performing TLS handshake: invalid peer certificate: BadSignature"
    );

    // A tenant on that server, provisioned and served through a verify-full URL (the registry
    // row keeps it).
    let t = world_with("database_per_tenant", "").await;
    let server = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let rec =
        fraiseql::ops::provision::create_tenant(&t.config, "tls_tenant", "free", Some(&server))
            .await
            .expect("provision over TLS");
    assert!(rec.server.contains("sslmode=verify-full"));
    insert_org(&t, &rec, "Org over TLS").await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tls_tenant");
    let v = client
        .execute("{ organizations { name } }")
        .await
        .expect("send");
    assert_eq!(
        v,
        json!({"data": {"organizations": [{"name": "Org over TLS"}]}})
    );
    let admin = connect(url("localhost", "sslmode=require"))
        .await
        .expect("admin");
    let served: Vec<bool> = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1",
            &[&rec.login_role],
        )
        .await
        .expect("sessions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !served.is_empty() && served.iter().all(|s| *s),
        "{served:?}"
    );
}

#[tokio::test]
async fn nats_connections_use_tls_with_the_configured_ca() {
    let dir = scratch("nats-tls");
    let certs = fraiseql_testing::TestCerts::make(&dir).expect("certs");
    let nats = fraiseql_testing::NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        &certs.cert.display().to_string(),
        "--tlskey",
        &certs.key.display().to_string(),
    ])
    .expect("nats-server with TLS");
    let mut c = fraiseql::config::NatsConfig {
        servers: vec![format!("tls://localhost:{}", nats.port)],
        tls_ca: Some(certs.ca.clone()),
        name: "test".into(),
        reconnect_delay_ms: 100,
        connect_timeout_ms: 2000,
        ..Default::default()
    };
    let client = fraiseql::engine::nats::probe(&c, Duration::from_secs(5))
        .await
        .expect("TLS with the test CA");
    client
        .publish("fraiseql.tls.check", "ok".into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    // Without the CA the server's certificate is not trusted.
    c.tls_ca = None;
    let e = fraiseql::engine::nats::probe(&c, Duration::from_secs(3))
        .await
        .expect_err("the server's certificate is not trusted");
    assert_eq!(
        e.to_string(),
        "NATS: IO error: invalid peer certificate: UnknownIssuer"
    );
}

#[tokio::test]
async fn a_dead_letter_is_recorded_once_and_two_retries_run_its_handler_once() {
    use fraiseql::engine::events::dead_letter::{self, Letter, Retried};
    let t = world_with(
        "database_per_tenant",
        r#"
[[subscribers]]
subject = "analytics.>"
consumer_group = "retry_check"
database = "shared"
sql = "INSERT INTO tb_handled (event_id) SELECT $event_id FROM pg_sleep(0.3)"
"#,
    )
    .await;
    let shared = t.shared.connect().await.expect("shared");
    shared
        .batch_execute("CREATE TABLE tb_handled (event_id text)")
        .await
        .expect("table");
    let config = t.config.clone();
    let pools =
        fraiseql::engine::connections::Pools::new(&config, Duration::from_secs(5), Some("tenant"))
            .expect("pools");
    assert!(dead_letter::list(&config, &pools)
        .await
        .expect("list")
        .is_empty());
    let letter = Letter {
        consumer: "retry_check",
        subject: "analytics.project_created",
        payload: r#"{"event_id": "e-1"}"#,
        error: "boom",
        attempts: 5,
        stream: "EVENTS",
        sequence: Some(42),
        event_id: Some("e-1"),
    };
    let db = dead_letter::database(&config);
    assert!(dead_letter::insert(&pools, &db, &letter)
        .await
        .expect("first"));
    // The same message again (a redelivery after a lost acknowledgement, another instance).
    assert!(!dead_letter::insert(&pools, &db, &letter)
        .await
        .expect("again"));
    assert!(!dead_letter::insert(
        &pools,
        &db,
        &Letter {
            sequence: Some(43),
            ..letter.clone()
        }
    )
    .await
    .expect("same event id"));
    assert_eq!(
        dead_letter::list(&config, &pools)
            .await
            .expect("list")
            .len(),
        1
    );
    // Two operators retry at once: the handler runs once.
    let (a, b) = futures_util::future::join(
        dead_letter::retry(&config, &pools, None, false),
        dead_letter::retry(&config, &pools, None, false),
    )
    .await;
    let outcomes: Vec<Retried> = a.expect("a").into_iter().chain(b.expect("b")).collect();
    let done = outcomes
        .iter()
        .filter(|r| matches!(r, Retried::Done(_)))
        .count();
    let others_skipped = outcomes
        .iter()
        .all(|r| matches!(r, Retried::Done(_) | Retried::Claimed(_)));
    assert!(done == 1 && others_skipped, "{outcomes:?}");
    let runs: i64 = shared
        .query_one("SELECT count(*) FROM tb_handled", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(runs, 1, "the handler ran once");
    assert!(dead_letter::list(&config, &pools)
        .await
        .expect("list")
        .is_empty());
}

/// `/ready` is unauthenticated: a flood of it borrows no more than one connection per pool at a
/// time and checks at most once a second, so tenant look-ups on the registry never queue behind
/// it (before: every call leased a connection of every pool, the registry's too: 1,959 callers
/// at once asked the registry pool for a connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_ready_leaves_the_registry_to_tenant_lookups() {
    let t = world_with("row_level", "").await;
    t.create_tenant("acme").await.expect("tenant");
    let client = Arc::new(t.client().await.expect("client"));
    let engine = client.engine();
    let registry = engine
        .pools()
        .get(&t.config.multi_tenancy.registry)
        .expect("registry pool")
        .pool
        .clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, registry) = (stop.clone(), registry.clone());
        tokio::spawn(async move {
            let mut worst = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                worst = worst.max(registry.waiting());
                tokio::task::yield_now().await;
            }
            worst
        })
    };
    let checks_before = engine.readiness_checks();
    let started = Instant::now();
    let flood: Vec<_> = (0..2_000)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/ready", None).await.expect("ready").status })
        })
        .collect();
    // Registry look-ups of keys no cache knows, during the flood.
    let tenants = engine.tenants().expect("tenancy");
    for i in 0..50 {
        let key = format!("nobody_{i}");
        assert_eq!(
            tenants.resolve(&key).await.map(|_| ()),
            Err(fraiseql::engine::tenancy::TenantError::Unknown),
            "{key}"
        );
    }
    for f in flood {
        assert_eq!(f.await.expect("task"), 200);
    }
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = sampler.await.expect("sampler");
    // One readiness check and one look-up at a time, at most: nothing queues behind the flood.
    assert!(
        worst <= 2,
        "{worst} callers at once asked the registry pool for a connection"
    );
    let checks = engine.readiness_checks() - checks_before;
    assert!(
        checks <= took.as_secs() + 1,
        "{checks} checks in {took:?}: at most one a second"
    );
}

/// `/metrics` lists tenant keys: the production profile serves it beside `/graphql` only behind
/// `[metrics] token` (else not at all: 404), the development profile openly (before: open in
/// every profile).
#[tokio::test]
async fn metrics_are_not_public_in_production() {
    // A world with `extra` config, a tenant `acme` that has sent a request, and its client.
    async fn served(extra: &str) -> (TestTenancy, TestClient) {
        let t = world_with("row_level", extra).await;
        t.create_tenant("acme").await.expect("tenant");
        let mut client = t.client().await.expect("client");
        client.set_tenant("acme");
        client
            .execute("{ organizations { name } }")
            .await
            .expect("a request");
        (t, client)
    }
    let (_t, client) = served("").await;
    let public = client.get_with("/metrics", &[]).await.expect("answer");
    assert_eq!(public.status, 404, "{}", public.text);
    assert!(!public.text.contains("acme"));

    let (_t, client) = served("[metrics]\ntoken = \"sixteen-bytes-or-more\"\n").await;
    for auth in [None, Some("Bearer wrong-token-of-some-length")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = client.get_with("/metrics", &headers).await.expect("answer");
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text);
        assert!(!r.text.contains("acme"));
    }
    let ok = client
        .get_with(
            "/metrics",
            &[("Authorization", "Bearer sixteen-bytes-or-more")],
        )
        .await
        .expect("answer");
    assert_eq!(ok.status, 200);
    assert!(ok.text.contains("tenant_id=\"acme\""), "{}", ok.text);

    let t = world_with("row_level", "[server]\nprofile = \"development\"\n").await;
    let client = t.client().await.expect("client");
    assert_eq!(
        client
            .get_with("/metrics", &[])
            .await
            .expect("answer")
            .status,
        200
    );
}

/// Reads go out on the connection's own socket, their whole transaction ended by one Sync
/// (crates/fraiseql-engine/src/connections/wire.rs): the statements are named by fraiseql
/// (`fqw…`), each tenant still reads only its own rows through one shared connection, and an
/// error answer fails the field as the driver's path would, then costs only that connection.
async fn reads_go_out_with_one_sync(strategy: &str) {
    let t = world_with(strategy, "").await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    let b = t.create_tenant("tenant_b").await.expect("b");
    insert_org(&t, &a, "Org A").await;
    insert_org(&t, &b, "Org B").await;
    let resolvers = Resolvers::new().query("tenantConfig", |ctx, _| async move {
        let rows = ctx
            .db()
            .query(
                "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'fqw%'",
                &[],
            )
            .await?;
        let texts: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(Value::from(texts))
    });
    let mut config = t.config.clone();
    // One connection, so both tenants' reads and the resolver meet on it.
    for db in config.databases.values_mut() {
        db.pool_max = 1;
    }
    config.multi_tenancy.connection_budget = 1;
    let mut client = TestClient::with_resolvers(config, resolvers)
        .await
        .expect("client");
    async fn read(client: &TestClient) -> Value {
        client
            .execute("{ organizations { name } }")
            .await
            .expect("send")
    }
    for round in 0..3 {
        for (key, name) in [("tenant_a", "Org A"), ("tenant_b", "Org B")] {
            client.set_tenant(key);
            let v = read(&client).await;
            assert_eq!(
                v["data"]["organizations"],
                json!([{ "name": name }]),
                "round {round}, {key}: {v}"
            );
        }
    }
    // A read, then the resolver on the same connection (database_per_tenant: tenant_a's).
    client.set_tenant("tenant_a");
    let v = read(&client).await;
    assert!(v.get("errors").is_none(), "{v}");
    let v = client.execute("{ tenantConfig }").await.expect("send");
    let texts = v["data"]["tenantConfig"].as_array().expect("texts").clone();
    let has = |s: &str| {
        texts
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains(s)))
    };
    assert!(
        has("BEGIN READ ONLY")
            && has("set_config('role'")
            && has("v_organization")
            && has("COMMIT"),
        "the read's statements are not named by fraiseql: {texts:?}"
    );
    // An error answer: the tenant's role loses the view.
    let admin = t.admin_client(&a).await.expect("admin");
    let revoke = format!(
        "REVOKE SELECT ON \"{}\".v_organization FROM \"{}\"",
        a.schema, a.role
    );
    admin.batch_execute(&revoke).await.expect("revoke");
    let v = read(&client).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "FORBIDDEN", "{v}");
    assert!(
        v["data"].is_null() || v["data"]["organizations"].is_null(),
        "{v}"
    );
    admin
        .batch_execute(&revoke.replace("REVOKE", "GRANT").replace(" FROM ", " TO "))
        .await
        .expect("grant");
    let v = read(&client).await;
    assert_eq!(
        v["data"]["organizations"],
        json!([{ "name": "Org A" }]),
        "{v}"
    );
}

each_strategy!(reads_go_out_with_one_sync);
