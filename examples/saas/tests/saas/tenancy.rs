//! Tenant isolation under each strategy: the seed's tests, RLS standing on its own, a property
//! test over random interleavings, and hostile identities.

use fraiseql::engine::tenancy::{TenantRecord, TenantStatus};
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use std::time::Duration;

use crate::harness::{code, eventually, world, world_with};

/// Inserts an organization for `rec` as the superuser (arranging data behind the API's back).
async fn insert_org(t: &TestTenancy, rec: &TenantRecord, name: &str) -> String {
    let c = t.admin_client(rec).await.expect("admin client");
    c.query_one(
        "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('o-' || gen_random_uuid(), $1, $2) RETURNING id::text",
        &[&rec.id, &name],
    )
    .await
    .expect("insert org")
    .get(0)
}

/// Sets `key`'s status in the registry, as `fraiseql tenant suspend` / `resume` do.
async fn set_status(t: &TestTenancy, key: &str, status: TenantStatus) {
    fraiseql::ops::provision::set_status(&t.config, key, status)
        .await
        .expect("set status");
}

each_strategy!(test_tenant_isolation);
each_strategy!(test_cross_tenant_access_blocked);
each_strategy!(rls_holds_on_its_own);

/// The seed's test: what tenant A creates, tenant B cannot read, even by id.
async fn test_tenant_isolation(strategy: &str) {
    let t = world(strategy).await;
    t.create_tenant("tenant_a").await.expect("tenant a");
    t.create_tenant("tenant_b").await.expect("tenant b");
    let mut client = t.client().await.expect("client");

    // Created as tenant A, through the API (the seed's createOrganization).
    client.set_tenant("tenant_a");
    let v = client
        .execute(r#"mutation { createOrganization(name: "Org A") { id } }"#)
        .await
        .expect("execute");
    let org_a = v["data"]["createOrganization"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{strategy}: {v}"))
        .to_owned();
    let q = format!(r#"query {{ organization(id: "{org_a}") {{ name }} }}"#);
    let v = client.execute(&q).await.expect("execute");
    assert_eq!(
        v,
        json!({"data": {"organization": {"name": "Org A"}}}),
        "{strategy}"
    );

    client.set_tenant("tenant_b");
    let v = client.execute(&q).await.expect("execute");
    assert_eq!(v["data"]["organization"], Value::Null, "{strategy}: {v}");
    let v = client
        .execute("{ organizations { id name } }")
        .await
        .expect("execute");
    assert_eq!(v, json!({"data": {"organizations": []}}), "{strategy}");
}

/// The seed's test: a token for one tenant cannot be used against another.
async fn test_cross_tenant_access_blocked(strategy: &str) {
    let t = world(strategy).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    let org_a = insert_org(&t, &a, "Org A").await;
    insert_org(&t, &b, "Org B").await;
    let mut client = t.client().await.expect("client");

    client.set_token(Some(t.token("tenant_a", &["admin"]).expect("token")));
    client.set_tenant("tenant_b");
    let r = client
        .execute_with("{ organizations { name } }", json!({}))
        .await
        .expect("send");
    assert_eq!(
        (r.status, code(&r.json)),
        (403, "FORBIDDEN"),
        "{strategy}: {}",
        r.text
    );
    assert!(r.json.get("data").is_none());

    // The token alone names its tenant.
    client.clear_tenant();
    let v = client
        .execute("{ organizations { name } }")
        .await
        .expect("execute");
    assert_eq!(
        v,
        json!({"data": {"organizations": [{"name": "Org A"}]}}),
        "{strategy}"
    );

    // As B, nothing of A's is reachable by any route.
    client.set_token(Some(t.token("tenant_b", &["admin"]).expect("token")));
    client.set_tenant("tenant_b");
    let v = client
        .execute_with(
            "query($id: ID!) { organizations { name } organization(id: $id) { name } projectsByOrg(orgId: $id) { name } }",
            json!({"id": org_a}),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(
        v,
        json!({"data": {"organizations": [{"name": "Org B"}], "organization": null, "projectsByOrg": []}}),
        "{strategy}"
    );
}

/// Connected directly as a tenant's own role, without the server: row-level security alone keeps
/// every table empty without `app.tenant_id` or with another tenant's id, and refuses writes.
async fn rls_holds_on_its_own(strategy: &str) {
    let t = world(strategy).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    let admin = t.admin_client(&a).await.expect("admin");
    admin
        .execute(
            "WITH o AS (INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('o-' || gen_random_uuid(), $1, 'A') RETURNING pk_org),
                  m AS (INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email) SELECT 'm-' || gen_random_uuid(), $1, pk_org, 'm', 'm@a' FROM o),
                  p AS (INSERT INTO tb_project (identifier, tenant_id, fk_org, name) SELECT 'p-' || gen_random_uuid(), $1, pk_org, 'P' FROM o RETURNING pk_project)
             INSERT INTO tb_task (identifier, tenant_id, fk_project, title) SELECT 't-' || gen_random_uuid(), $1, pk_project, 'T' FROM p",
            &[&a.id],
        )
        .await
        .expect("arrange");
    admin
        .execute(
            "INSERT INTO tb_tenant_config (tenant_id, key, value) VALUES ($1, 'theme', '\"dark\"')",
            &[&a.id],
        )
        .await
        .expect("config row");

    // The role is neither the owner of the tables nor able to bypass RLS.
    let owner: String = admin
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'tb_organization' AND schemaname = $1", &[&a.schema])
        .await
        .expect("owner")
        .get(0);
    assert_ne!(owner, a.role);
    let (sup, bypass): (bool, bool) = {
        let r = admin
            .query_one(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
                &[&a.role],
            )
            .await
            .expect("role");
        (r.get(0), r.get(1))
    };
    assert!(!sup && !bypass);

    let role = t.role_client(&a).await.expect("role client");
    let tables = [
        "tb_organization",
        "tb_member",
        "tb_project",
        "tb_task",
        "tb_tenant_config",
    ];
    for table in tables {
        let n: i64 = role
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "{strategy}: {table} without app.tenant_id");
    }
    // With the other tenant's id (a connection that had it once reads back '' afterwards too).
    role.batch_execute(&format!(
        "SELECT set_config('app.tenant_id', '{}', false)",
        b.id
    ))
    .await
    .expect("set");
    for table in tables {
        let n: i64 = role
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1"),
                &[&a.id],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "{strategy}: {table} under another tenant's id");
    }
    let updated = role
        .execute(
            "UPDATE tb_organization SET name = 'pwned' WHERE tenant_id = $1",
            &[&a.id],
        )
        .await
        .expect("update runs");
    assert_eq!(updated, 0, "{strategy}: update of another tenant's rows");
    let deleted = role
        .execute("DELETE FROM tb_task", &[])
        .await
        .expect("delete runs");
    assert_eq!(deleted, 0);
    let e = role
        .execute(
            "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('x-' || gen_random_uuid(), $1, 'x')",
            &[&a.id],
        )
        .await
        .expect_err("an insert for another tenant is refused");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{strategy}: {e}"));
    assert_eq!(
        (db.code(), db.message()),
        (
            &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
            "new row violates row-level security policy for table \"tb_organization\""
        ),
        "{strategy}: insert for another tenant"
    );
    role.batch_execute("SELECT set_config('app.tenant_id', '', false)")
        .await
        .expect("unset");
    let n: i64 = role
        .query_one("SELECT count(*) FROM tb_organization", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        n, 0,
        "{strategy}: '' (unset after use) means no rows, not an error"
    );
    // DDL is not the role's to do.
    let e = role
        .batch_execute("ALTER TABLE tb_organization DISABLE ROW LEVEL SECURITY")
        .await
        .expect_err("DDL is refused");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{strategy}: {e}"));
    assert_eq!(
        (db.code(), db.message()),
        (
            &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
            "must be owner of table tb_organization"
        ),
        "{strategy}: DDL"
    );
    if strategy == "database_per_tenant" {
        let other = fraiseql::engine::connections::parse_url("t", &b.server)
            .expect("cfg")
            .derive("other", |c| {
                c.dbname(&b.database)
                    .user(&a.role)
                    .password(a.password.as_bytes());
            });
        let e = other
            .connect()
            .await
            .expect_err("role A cannot connect to B's database");
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(
            (db.code(), db.message().to_owned()),
            (
                &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
                format!("permission denied for database \"{}\"", b.database)
            )
        );
    }
}

#[tokio::test]
async fn hostile_identities_get_the_right_status_and_nothing_leaks() {
    let t = world("database_per_tenant").await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    insert_org(&t, &a, "Org A").await;
    let mut config = t.config.clone();
    if let Some(auth) = config.auth.as_mut() {
        auth.required = true;
        auth.leeway_secs = 0;
    }
    let mut client = TestClient::from_config(config.clone())
        .await
        .expect("client");
    let q = "{ organizations { name } }";
    let check = |r: &fraiseql_testing::TestResponse, status: u16, want: &str| {
        assert_eq!((r.status, code(&r.json)), (status, want), "{}", r.text);
        assert!(r.json.get("data").is_none());
        for secret in [a.password.as_str(), "postgres://", "tb_organization"] {
            assert!(!r.text.contains(secret), "leaked {secret}");
        }
    };

    client.set_tenant("tenant_a");
    check(
        &client.execute_with(q, json!({})).await.expect("send"),
        401,
        "UNAUTHENTICATED",
    );

    let mut other = config.auth.clone().expect("auth");
    other.secret = Some("another-secret-0123456789abcdef".into());
    client.set_token(Some(
        fraiseql::engine::identity::jwt::issue(
            &other,
            t.config.server.profile,
            "tenant_a",
            &[],
            None,
        )
        .expect("t"),
    ));
    check(
        &client.execute_with(q, json!({})).await.expect("send"),
        401,
        "UNAUTHENTICATED",
    );

    // alg none: header {"alg":"none"} and the claims, no signature.
    client.set_token(Some(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJ0ZW5hbnRfYSIsImV4cCI6OTk5OTk5OTk5OSwiaXNzIjoiZnJhaXNlcWwiLCJhdWQiOiJmcmFpc2VxbCJ9."
            .into(),
    ));
    check(
        &client.execute_with(q, json!({})).await.expect("send"),
        401,
        "UNAUTHENTICATED",
    );

    let mut short = config.auth.clone().expect("auth");
    short.token_ttl_secs = 1;
    let expiring = fraiseql::engine::identity::jwt::issue(
        &short,
        t.config.server.profile,
        "tenant_a",
        &[],
        None,
    )
    .expect("t");
    // `exp` is whole seconds: 2 s after issuing it has passed, whatever the fraction.
    let expired_at = std::time::Instant::now() + Duration::from_millis(2100);
    client.set_token(Some(t.token("tenant_b", &[]).expect("token")));
    check(
        &client.execute_with(q, json!({})).await.expect("send"),
        403,
        "FORBIDDEN",
    );

    client.set_token(Some(t.token("tenant_a", &[]).expect("token")));
    for (key, status, want) in [
        ("x'; DROP TABLE fraiseql_tenant; --", 400, "BAD_REQUEST"),
        ("ácme_corp", 400, "BAD_REQUEST"),
        ("nobody_here", 403, "UNKNOWN_TENANT"),
    ] {
        client.set_tenant(key);
        client.set_token(None);
        let mut anon = TestClient::from_config(t.config.clone())
            .await
            .expect("client");
        anon.set_tenant(key);
        check(
            &anon.execute_with(q, json!({})).await.expect("send"),
            status,
            want,
        );
    }
    let mut anon = TestClient::from_config(t.config.clone())
        .await
        .expect("client");
    anon.set_tenant("a".repeat(10 * 1024));
    let r = anon.execute_with(q, json!({})).await.expect("send");
    check(&r, 400, "BAD_REQUEST");
    assert!(r.text.len() < 1024, "the huge key is not echoed");

    // Suspension is seen without a restart (registry answers are cached for a few seconds).
    anon.set_tenant("tenant_a");
    assert_eq!(
        anon.execute_with(q, json!({})).await.expect("send").status,
        200
    );
    set_status(&t, "tenant_a", TenantStatus::Suspended).await;
    // Once the cached record expires (RECORD_TTL), a caller without a token cannot tell a
    // suspended tenant from an unknown one...
    let r = eventually(
        "the suspension is seen",
        Duration::from_secs(10),
        || async {
            let r = anon.execute_with(q, json!({})).await.expect("send");
            match r.status {
                200 => Err(r.text),
                _ => Ok(r),
            }
        },
    )
    .await;
    check(&r, 403, "UNKNOWN_TENANT");
    // ...the tenant's own callers are told to come back later.
    anon.set_token(Some(t.token("tenant_a", &[]).expect("token")));
    let r = anon.execute_with(q, json!({})).await.expect("send");
    check(&r, 503, "TENANT_SUSPENDED");
    anon.set_token(None);
    set_status(&t, "tenant_a", TenantStatus::Active).await;
    let r = eventually(
        "the resumption is seen",
        Duration::from_secs(10),
        || async {
            let r = anon.execute_with(q, json!({})).await.expect("send");
            match r.status {
                403 => Err(r.text),
                _ => Ok(r),
            }
        },
    )
    .await;
    assert_eq!(
        r.json,
        json!({"data": {"organizations": [{"name": "Org A"}]}})
    );

    // The 1-second token has expired.
    tokio::time::sleep_until(expired_at.into()).await;
    client.set_tenant("tenant_a");
    client.set_token(Some(expiring));
    check(
        &client.execute_with(q, json!({})).await.expect("send"),
        401,
        "UNAUTHENTICATED",
    );

    // A tenant provisioned while the server runs is served without a restart.
    let c = t.create_tenant("tenant_c").await.expect("tenant c");
    insert_org(&t, &c, "Org C").await;
    anon.set_tenant("tenant_c");
    let r = anon.execute_with(q, json!({})).await.expect("send");
    assert_eq!(
        r.json,
        json!({"data": {"organizations": [{"name": "Org C"}]}})
    );
}

/// Calls `refresh` until it has re-read `want` records in all (panics after 10 s); returns
/// when the last of them was read. Records fall due 1.5 s after they were read: this waits for
/// that event instead of sleeping against it.
async fn refreshed(
    tenants: &fraiseql::engine::tenancy::directory::Tenants,
    want: usize,
    what: &str,
) -> std::time::Instant {
    let got = std::cell::Cell::new(0);
    eventually(what, Duration::from_secs(10), || async {
        got.set(got.get() + tenants.refresh().await.map_err(|e| e.to_string())?);
        match got.get().cmp(&want) {
            std::cmp::Ordering::Less => Err(format!("{} of {want} records refreshed", got.get())),
            std::cmp::Ordering::Equal => Ok(std::time::Instant::now()),
            std::cmp::Ordering::Greater => {
                panic!("{what}: {} records refreshed, not {want}", got.get())
            }
        }
    })
    .await
}

/// Busy tenants' registry records are re-read in batches before they expire, so their
/// requests never wait for a look-up; a record no request used expires as before; a suspension
/// still reaches requests through the refresh. (`fraiseql serve` calls `refresh` every second;
/// here the test calls it as records fall due, and waits past `RECORD_TTL` where expiry is the
/// point.)
#[tokio::test]
async fn busy_tenants_records_are_refreshed_before_they_expire() {
    use fraiseql::engine::tenancy::directory::RECORD_TTL;
    let t = world_with("schema_per_tenant", "").await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    insert_org(&t, &a, "Org A").await;
    t.create_tenant("tenant_b").await.expect("tenant b");
    let client = t.client().await.expect("client");
    let tenants = client.engine().tenants().expect("tenancy");
    let body = br#"{"query": "{ organizations { name } }"}"#.to_vec();
    let status = |key: &'static str| {
        let body = body.clone();
        let client = &client;
        async move { client.post_as(key, body).await.expect("send").status }
    };
    let lookups = tenants.registry_lookups();
    let started = std::time::Instant::now();
    assert_eq!(status("tenant_a").await, 200);
    assert_eq!(status("tenant_b").await, 200);
    let first_reads = std::time::Instant::now();
    assert_eq!(tenants.registry_lookups() - lookups, 2);
    assert_eq!(
        tenants.refresh().await.expect("refresh"),
        0,
        "nothing is due yet ({:?} after the first read)",
        started.elapsed()
    );

    let first_refresh = refreshed(tenants, 2, "both were used: both refreshed").await;
    // Past the first reads' RECORD_TTL: tenant A is answered from the refreshed record.
    tokio::time::sleep_until((first_reads + RECORD_TTL + Duration::from_millis(100)).into()).await;
    assert_eq!(status("tenant_a").await, 200);
    assert_eq!(
        tenants.registry_lookups() - lookups,
        2,
        "no look-up: the record was refreshed"
    );
    refreshed(tenants, 1, "only tenant A was used since the last refresh").await;

    set_status(&t, "tenant_a", TenantStatus::Suspended).await;
    assert_eq!(status("tenant_a").await, 200, "cached for up to RECORD_TTL");
    refreshed(tenants, 1, "tenant A's record, used again").await;
    assert_eq!(
        status("tenant_a").await,
        403,
        "the refresh read the suspension"
    );
    assert_eq!(tenants.registry_lookups() - lookups, 2);
    // Tenant B was not used after the first refresh: once that record expired, B is read again.
    tokio::time::sleep_until((first_refresh + RECORD_TTL + Duration::from_millis(100)).into())
        .await;
    assert_eq!(status("tenant_b").await, 200);
    assert_eq!(tenants.registry_lookups() - lookups, 3);

    // A row removed from the registry: the refresh reads its absence.
    let url = t.config.databases[&t.config.multi_tenancy.registry]
        .url
        .clone()
        .expect("registry url");
    let (registry, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("registry");
    tokio::spawn(conn);
    registry
        .execute("DELETE FROM fraiseql_tenant WHERE key = 'tenant_b'", &[])
        .await
        .expect("delete");
    refreshed(tenants, 1, "tenant B's record, used again").await;
    assert_eq!(status("tenant_b").await, 403, "gone");
    assert_eq!(tenants.registry_lookups() - lookups, 3);
    assert!(tenants.records_refreshed() >= 5);
    // Operators see both paths on /metrics.
    client.engine().observe_pools();
    let m = client.engine().metrics();
    assert_eq!(
        m.sum("fraiseql_registry_reads_total", Some("path=\"lookup\"")),
        (tenants.registry_lookups()) as f64
    );
    assert_eq!(
        m.sum("fraiseql_registry_reads_total", Some("path=\"refresh\"")),
        tenants.records_refreshed() as f64
    );
}

#[tokio::test]
async fn provisioning_is_idempotent_and_registered_once() {
    let t = world("database_per_tenant").await;
    let first = t.create_tenant("acme_corp").await.expect("first");
    let again = t.create_tenant("acme_corp").await.expect("again");
    assert_eq!(first, again, "same id, names and credentials");
    assert_eq!(first.database, format!("{}acme_corp", t.prefix));
    let all = fraiseql::ops::provision::list(&t.config)
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
    assert!(
        !format!("{first:?}").contains(&first.password),
        "Debug hides the password"
    );
    let e = t.create_tenant("Bad-Key").await.expect_err("refused");
    assert_eq!(
        e.to_string(),
        "invalid tenant key: tenant keys are lowercase letters, digits and `_`"
    );
}

#[tokio::test]
async fn rbac_denies_fields_with_forbidden_and_no_data() {
    let t = world_with(
        "row_level",
        "[rbac]\n\"Query.tenantConfig\" = [\"admin\"]\n\"Organization.memberCount\" = [\"admin\", \"member\"]\n",
    )
    .await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    insert_org(&t, &a, "Org A").await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let q = "{ organizations { name memberCount } tenantConfig }";

    client.set_token(Some(t.token("tenant_a", &["viewer"]).expect("token")));
    let r = client.execute_with(q, json!({})).await.expect("send");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json["data"],
        json!({"organizations": [{"name": "Org A", "memberCount": null}], "tenantConfig": null})
    );
    let errors = r.json["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| e["extensions"]["code"] == "FORBIDDEN"));
    assert_eq!(errors[0]["path"], json!(["tenantConfig"]));
    assert_eq!(errors[1]["path"], json!(["organizations", "memberCount"]));

    client.set_token(Some(t.token("tenant_a", &["admin"]).expect("token")));
    let r = client.execute_with(q, json!({})).await.expect("send");
    assert!(r.json.get("errors").is_none(), "{}", r.text);
    assert_eq!(r.json["data"]["organizations"][0]["memberCount"], 0);
    assert_eq!(r.json["data"]["tenantConfig"], json!({}));
}

#[derive(Debug, Clone)]
enum Op {
    /// Tenant `t` creates an organization (as its own role, with its tenant context).
    Create(usize),
    /// Tenant `t` lists its organizations.
    List(usize),
    /// Tenant `t` looks up the `n`th organization created so far by anyone.
    Lookup(usize, usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (0..3usize).prop_map(Op::Create),
        (0..3usize).prop_map(Op::List),
        (0..3usize, any::<usize>()).prop_map(|(t, n)| Op::Lookup(t, n)),
    ]
}

/// Random interleavings of creates, reads and lookups by id across three tenants never return a
/// row of another tenant: every list equals exactly what that tenant created, and a lookup
/// succeeds iff the id is the caller's.
#[test]
fn random_interleavings_never_cross_tenants() {
    use proptest::prelude::*;
    use std::cell::RefCell;

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for strategy in ["row_level", "schema_per_tenant", "database_per_tenant"] {
        let (t, recs, clients, roles) = rt.block_on(async {
            let t = world(strategy).await;
            let mut recs = Vec::new();
            let mut roles = Vec::new();
            for key in ["tenant_a", "tenant_b", "tenant_c"] {
                let r = t.create_tenant(key).await.expect("tenant");
                roles.push(t.role_client(&r).await.expect("role"));
                recs.push(r);
            }
            let mut clients = Vec::new();
            for r in &recs {
                let mut c = t.client().await.expect("client");
                c.set_tenant(&r.key);
                clients.push(c);
            }
            (t, recs, clients, roles)
        });
        // The runner's closure is `Fn`; what outlives one case lives in a cell.
        let created: RefCell<Vec<(usize, String)>> = RefCell::new(Vec::new());
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 20,
            ..ProptestConfig::default()
        });
        let result = runner.run(&proptest::collection::vec(op(), 1..12), |ops| {
            rt.block_on(async {
                for op in ops {
                    match op {
                        Op::Create(i) => {
                            let role = &roles[i];
                            let row = role
                                .query_one(
                                    "WITH s AS (SELECT set_config('app.tenant_id', $1, false))
                                     INSERT INTO tb_organization (identifier, tenant_id, name)
                                     SELECT 'o-' || gen_random_uuid(), $1::uuid, 'org ' || $1 FROM s RETURNING id::text",
                                    &[&recs[i].id.to_string()],
                                )
                                .await
                                .expect("create as the tenant's role");
                            created.borrow_mut().push((i, row.get(0)));
                        }
                        Op::List(i) => {
                            let v = clients[i].execute("{ organizations(limit: 1000) { id } }").await.expect("list");
                            let mut got: Vec<String> = v["data"]["organizations"]
                                .as_array()
                                .expect("list")
                                .iter()
                                .map(|o| o["id"].as_str().unwrap_or("").to_owned())
                                .collect();
                            let mut want: Vec<String> = created
                                .borrow()
                                .iter()
                                .filter(|(t, _)| *t == i)
                                .map(|(_, id)| id.clone())
                                .collect();
                            got.sort();
                            want.sort();
                            prop_assert_eq!(got, want, "{}: tenant {} list", strategy, i);
                        }
                        Op::Lookup(i, n) => {
                            let picked = {
                                let all = created.borrow();
                                (!all.is_empty()).then(|| all[n % all.len()].clone())
                            };
                            let Some((owner, id)) = picked else { continue };
                            let r = clients[i]
                                .execute_with("query($id: ID!) { organization(id: $id) { id } }", json!({"id": id}))
                                .await
                                .expect("lookup");
                            let found = !r.json["data"]["organization"].is_null();
                            prop_assert_eq!(found, owner == i, "{}: tenant {} looked up {}'s org", strategy, i, owner);
                        }
                    }
                }
                Ok(())
            })
        });
        result.expect("no cross-tenant row ever");
        drop(roles);
        drop(t);
    }
}

/// Backends (pids) of the tenants' roles, sorted.
async fn backends_of(admin: &tokio_postgres::Client, roles: &[String]) -> Vec<i32> {
    let mut pids: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE usename = ANY($1)",
            &[&roles],
        )
        .await
        .expect("backends")
        .iter()
        .map(|r| r.get(0))
        .collect();
    pids.sort_unstable();
    pids
}

/// Waits until the tenants' roles have exactly the backends `want` (a closed connection's
/// backend leaves `pg_stat_activity` a moment after the socket closes).
async fn expect_backends(
    admin: &tokio_postgres::Client,
    roles: &[String],
    want: &[i32],
    what: &str,
) {
    let mut want = want.to_vec();
    want.sort_unstable();
    eventually(what, Duration::from_secs(10), || async {
        let now = backends_of(admin, roles).await;
        if now == want {
            Ok(())
        } else {
            Err(format!("{now:?}, want {want:?}"))
        }
    })
    .await;
}

/// Three tenants, a budget of two connections: while both are in use a third tenant's request
/// waits (no third connection is opened); once one is idle, the least recently used idle
/// connection is the one closed for it; and every request succeeds.
#[tokio::test]
async fn connection_budget_is_shared_by_all_tenants() {
    let t = world("database_per_tenant").await;
    let mut recs = Vec::new();
    for key in ["tenant_a", "tenant_b", "tenant_c"] {
        let r = t.create_tenant(key).await.expect("tenant");
        insert_org(&t, &r, key).await;
        recs.push(r);
    }
    let mut config = t.config.clone();
    config.multi_tenancy.connection_budget = 2;
    let engine_client = TestClient::from_config(config).await.expect("client");
    let tenants = engine_client.engine().routes().tenants().expect("tenancy");
    let admin = t.admin_client(&recs[0]).await.expect("admin");
    let roles: Vec<String> = recs.iter().map(|r| r.role.clone()).collect();
    let lease = |i: usize| tenants.connection(&recs[i]);

    // a, then b: both connections of the budget, idle, a's the least recently used.
    let la = lease(0).await.expect("lease a");
    let pid_a = backend(&la).await;
    drop(la);
    let lb = lease(1).await.expect("lease b");
    let pid_b = backend(&lb).await;
    drop(lb);
    expect_backends(&admin, &roles, &[pid_a, pid_b], "a's and b's connections").await;

    // c: the budget is spent, so a's idle connection (the least recently used) is closed.
    let lc = lease(2).await.expect("lease c");
    let pid_c = backend(&lc).await;
    expect_backends(
        &admin,
        &roles,
        &[pid_b, pid_c],
        "a's connection closed for c",
    )
    .await;
    // b gets its own connection back; a, arriving now, waits: nothing is idle.
    let lb = lease(1).await.expect("lease b again");
    assert_eq!(backend(&lb).await, pid_b, "b's connection was kept");
    let body = serde_json::to_vec(&json!({"query": "{ organizations { name } }"})).expect("json");
    let request_a = engine_client.post_as("tenant_a", body);
    let meanwhile = async {
        eventually(
            "a's request waits for a connection",
            Duration::from_secs(10),
            || async {
                match tenants.pool().waiting() {
                    0 => Err("nothing waiting".to_owned()),
                    _ => Ok(()),
                }
            },
        )
        .await;
        assert_eq!(tenants.open_connections(), 2);
        expect_backends(
            &admin,
            &roles,
            &[pid_b, pid_c],
            "no third connection while a waits",
        )
        .await;
        // c is done: its connection, the only idle one, is closed for a.
        drop(lc);
    };
    let (answer, ()) = tokio::join!(request_a, meanwhile);
    assert_eq!(
        answer.expect("a's answer").json,
        json!({"data": {"organizations": [{"name": "tenant_a"}]}})
    );
    eventually(
        "c's idle connection closed for a, b's (in use) kept",
        Duration::from_secs(10),
        || async {
            let pids = backends_of(&admin, &roles).await;
            if pids.len() == 2 && pids.contains(&pid_b) && !pids.contains(&pid_c) {
                Ok(())
            } else {
                Err(format!("{pids:?} (b {pid_b}, c {pid_c})"))
            }
        },
    )
    .await;
    drop(lb);

    // Polled together, three tenants compete for two connections: every request succeeds.
    for round in 0..3 {
        let answers = futures_util::future::join_all(recs.iter().map(|r| {
            let body =
                serde_json::to_vec(&json!({"query": "{ organizations { name } }"})).expect("json");
            let engine_client = &engine_client;
            async move { (r.key.clone(), engine_client.post_as(&r.key, body).await) }
        }))
        .await;
        for (tenant, r) in answers {
            let r = r.expect("send");
            assert_eq!(
                r.json,
                json!({"data": {"organizations": [{"name": tenant}]}}),
                "round {round}"
            );
        }
    }
}

each_strategy!(a_pooled_connection_keeps_no_tenant_state_between_transactions);

/// schema_per_tenant tenants share the authenticator's connections, and PostgreSQL re-plans a
/// prepared statement each time it runs under another role and search_path than it was planned
/// for. So a tenant prefers connections of its own affinity group (a new one while the budget
/// allows, rather than another group's idle one) and keeps its statements apart from other
/// tenants' plans of the same text.
#[tokio::test]
async fn schema_tenants_keep_their_own_connections_and_plans() {
    let t = world("schema_per_tenant").await;
    // With a budget of 8 there are two groups; these keys hash to different ones.
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    let mut config = t.config.clone();
    config.multi_tenancy.connection_budget = 8;
    let client = TestClient::from_config(config).await.expect("client");
    let tenants = client.engine().routes().tenants().expect("tenancy");
    let lease = tenants.connection(&a).await.expect("lease a");
    let first_a = backend(&lease).await;
    drop(lease);
    let lease = tenants.connection(&b).await.expect("lease b");
    let first_b = backend(&lease).await;
    drop(lease);
    assert_ne!(first_a, first_b, "b opens a connection of its own group");
    let lease = tenants.connection(&a).await.expect("lease a");
    assert_eq!(
        backend(&lease).await,
        first_a,
        "a gets its group's connection back, not the newer idle one"
    );
    drop(lease);

    // One connection for both: each tenant's plan of the same statement is its own.
    let mut config = t.config.clone();
    config.multi_tenancy.connection_budget = 1;
    let mut client = TestClient::from_config(config).await.expect("client");
    for key in ["tenant_a", "tenant_b", "tenant_a", "tenant_b"] {
        client.set_tenant(key);
        let r = client
            .execute("{ organizations { name } }")
            .await
            .expect("read");
        assert_eq!(r, json!({"data": {"organizations": []}}), "{key}");
    }
    let lease = client
        .engine()
        .routes()
        .tenants()
        .expect("tenancy")
        .connection(&a)
        .await
        .expect("lease");
    let twice: Vec<i64> = lease
        .client()
        .query(
            "SELECT count(*) FROM pg_prepared_statements
              WHERE statement ILIKE '%organization%'
                AND statement NOT ILIKE '%pg_prepared_statements%'
              GROUP BY statement",
            &[],
        )
        .await
        .expect("statements")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(twice, [2], "one prepared statement per tenant schema");
}

async fn backend(lease: &fraiseql::engine::connections::Lease) -> i32 {
    lease
        .client()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

/// Connects as the role the servers log in as (`login_role`: the tenant's own role, or
/// schema_per_tenant's authenticator), with no tenant context and no search_path option.
async fn login_client(rec: &TenantRecord) -> tokio_postgres::Client {
    fraiseql::engine::connections::parse_url("tenant", &rec.server)
        .expect("url")
        .derive("login", |cfg| {
            cfg.dbname(&rec.database)
                .user(&rec.login_role)
                .password(rec.login_password.as_bytes());
        })
        .connect()
        .await
        .expect("login")
}

/// What a session carries that a transaction may set: the role, the search path and the
/// tenant context (`''` and unset are the same: no tenant).
async fn session_state(c: &tokio_postgres::Client) -> Vec<String> {
    let row = c
        .query_one(
            "SELECT current_user::text, current_setting('role'), current_setting('search_path'),
                    coalesce(current_setting('app.tenant_id', true), ''),
                    coalesce(current_setting('app.tenant_key', true), ''),
                    coalesce(current_setting('app.user_id', true), ''),
                    coalesce(current_setting('app.roles', true), ''),
                    (SELECT count(*) FROM pg_prepared_xacts)::text,
                    pg_current_xact_id_if_assigned() IS NULL AND now() = statement_timestamp()",
            &[],
        )
        .await
        .expect("state");
    let mut v: Vec<String> = (0..8).map(|i| row.get::<_, String>(i)).collect();
    v.push(row.get::<_, bool>(8).to_string());
    v
}

/// The PostgREST pattern's promise: the connection a transaction of tenant A ran on goes back to
/// the pool exactly as a fresh login left it (role, search_path, tenant context), so tenant B's
/// next transaction on it starts from nothing; and the shared login alone (schema_per_tenant's
/// authenticator) reads no tenant's table.
async fn a_pooled_connection_keeps_no_tenant_state_between_transactions(strategy: &str) {
    let t = world(strategy).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    let fresh = session_state(&login_client(&b).await).await;
    assert_eq!(fresh[0], b.login_role);
    assert_eq!(fresh[1], "none");
    assert_eq!(&fresh[3..7], ["", "", "", ""]);

    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let org = client
        .execute(r#"mutation { createOrganization(name: "A") { id } }"#)
        .await
        .expect("write");
    assert!(org["errors"].is_null(), "{org}");
    let read = client
        .execute("{ organizations { name } }")
        .await
        .expect("read");
    assert_eq!(read["data"]["organizations"][0]["name"], "A");
    client.set_tenant("tenant_b");
    let read = client
        .execute("{ organizations { name } }")
        .await
        .expect("read");
    assert_eq!(read, json!({"data": {"organizations": []}}));

    // Every connection the engine pooled for tenant B (under schema_per_tenant and row_level the
    // very connections tenant A's transactions ran on) is in a fresh login's state.
    let tenants = client.engine().routes().tenants().expect("tenancy");
    let lease = tenants.connection(&b).await.expect("lease");
    let pooled = session_state(lease.client()).await;
    assert_eq!(
        pooled, fresh,
        "{strategy}: state after tenant A's transactions"
    );
    drop(lease);

    if strategy == "schema_per_tenant" {
        // The authenticator inherits nothing: on its own it reads neither schema.
        let login = login_client(&a).await;
        for schema in [&a.schema, &b.schema] {
            let e = login
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.tb_organization",
                        fraiseql::schema::quote_ident(schema)
                    ),
                    &[],
                )
                .await
                .expect_err("the authenticator alone reads nothing");
            assert_eq!(
                e.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
                "{e}"
            );
        }
        // Switched to tenant B's role, it cannot reach tenant A's schema either.
        login
            .batch_execute(&format!(
                "BEGIN; SELECT set_config('role', '{}', true)",
                b.role
            ))
            .await
            .expect("switch");
        let e = login
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.tb_organization",
                    fraiseql::schema::quote_ident(&a.schema)
                ),
                &[],
            )
            .await
            .expect_err("B's role reads nothing of A");
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{e}"
        );
    }
}

/// Under `row_level` every tenant's events wait in one `fraiseql_outbox`: as the shared role with
/// tenant A's context, B's rows are invisible and none can be written in B's name; without a
/// tenant context, none is visible.
#[tokio::test]
async fn row_level_outbox_rows_are_the_tenants_own() {
    let t = world("row_level").await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    t.create_tenant("tenant_b").await.expect("tenant b");
    t.admin_client(&a)
        .await
        .expect("admin")
        .batch_execute(
            "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload) VALUES
               (gen_random_uuid(), 'tenant_a', 'analytics.a', '{}'),
               (gen_random_uuid(), 'tenant_b', 'analytics.b', '{}')",
        )
        .await
        .expect("events");
    let role = t.role_client(&a).await.expect("shared role");
    role.batch_execute(&format!(
        "BEGIN; SELECT set_config('app.tenant_id', '{}', true), set_config('app.tenant_key', 'tenant_a', true)",
        a.id
    ))
    .await
    .expect("context");
    let seen: Vec<String> = role
        .query("SELECT tenant_key FROM fraiseql_outbox ORDER BY 1", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, ["tenant_a"], "tenant A sees only its own events");
    let forged = role
        .execute(
            "INSERT INTO fraiseql_outbox (event_id, tenant_key, subject, payload) VALUES (gen_random_uuid(), 'tenant_b', 'analytics.b', '{}')",
            &[],
        )
        .await
        .expect_err("an event in B's name is refused");
    assert!(
        forged
            .as_db_error()
            .is_some_and(|d| d.message().contains("row-level security")),
        "{forged}"
    );
    role.batch_execute("ROLLBACK").await.expect("rollback");
    let none: i64 = role
        .query_one("SELECT count(*) FROM fraiseql_outbox", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(none, 0, "no tenant context: no events");
}

/// Instances starting together (a rollout, the federation example's two subgraphs on one
/// registry) each create the registry's tables if missing. Without the start-up DDL lock, two
/// concurrent `REVOKE`s on one table fail with "tuple concurrently updated" and the instance
/// refuses to start ("the tenant registry is unavailable").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_create_the_registry_tables() {
    use fraiseql::engine::tenancy::registry;
    let db = fraiseql_testing::TestDatabase::empty().await.expect("db");
    let mut starts = Vec::new();
    for _ in 0..8 {
        let client = db.connect().await.expect("connect");
        starts.push(tokio::spawn(async move {
            for _ in 0..10 {
                registry::ensure_table(&client).await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for start in starts {
        start.await.expect("task").expect("ensure_table");
    }
}
