//! The result cache: answers per tenant (never another's), fresh after a mutation, bounded by
//! bytes, with Cache-Control/Age and metrics.

use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{create_org, example_dir, world, world_with};

const CONFIG: &str = "{ tenantConfig }";

async fn set_config(t: &TestTenancy, tenant: &str, key: &str, value: Value) {
    let rec = t.create_tenant(tenant).await.expect("tenant");
    let c = t.admin_client(&rec).await.expect("admin");
    c.execute(
        "INSERT INTO tb_tenant_config (tenant_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value",
        &[&rec.id, &key, &value],
    )
    .await
    .expect("config row");
}

async fn config_of(client: &TestClient) -> (Value, Option<String>, Option<String>) {
    let r = client
        .execute_with(CONFIG, json!({}))
        .await
        .expect("answer");
    let h = |n: &str| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (r.json, h("cache-control"), h("age"))
}

/// Tenant A's cached answer never reaches tenant B; a write outside the API is not seen until a
/// mutation of the tenant (or the TTL) moves the answer on.
async fn answers_are_cached_per_tenant(strategy: &str) {
    let t = world(strategy).await;
    set_config(&t, "tenant_a", "theme", json!("dark")).await;
    set_config(&t, "tenant_b", "theme", json!("light")).await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let (a, control, age) = config_of(&client).await;
    assert_eq!(a, json!({"data": {"tenantConfig": {"theme": "dark"}}}));
    assert_eq!(control.as_deref(), Some("private, max-age=3600"));
    assert_eq!(age.as_deref(), Some("0"));
    let before = client.engine().statements_executed();
    let (again, _, _) = config_of(&client).await;
    assert_eq!(again, a);
    assert_eq!(
        client.engine().statements_executed(),
        before,
        "served from the cache"
    );

    client.set_tenant("tenant_b");
    let (b, _, _) = config_of(&client).await;
    assert_eq!(b, json!({"data": {"tenantConfig": {"theme": "light"}}}));
    assert_eq!(
        client.engine().statements_executed(),
        before + 1,
        "B's own read"
    );

    // Changed behind the API's back: A still gets the cached answer...
    set_config(&t, "tenant_a", "theme", json!("blue")).await;
    client.set_tenant("tenant_a");
    assert_eq!(config_of(&client).await.0, a);
    // ...until a mutation of A commits; B's answer is untouched.
    create_org(&client, "New Org").await;
    assert_eq!(
        config_of(&client).await.0,
        json!({"data": {"tenantConfig": {"theme": "blue"}}})
    );
    client.set_tenant("tenant_b");
    let before = client.engine().statements_executed();
    assert_eq!(config_of(&client).await.0, b);
    assert_eq!(client.engine().statements_executed(), before);

    let m = client.engine().metrics();
    assert!(m.sum("fraiseql_cache_hits", Some("tenant_id=\"tenant_a\"")) >= 2.0);
    assert!(m.sum("fraiseql_cache_misses", Some("tenant_id=\"tenant_b\"")) >= 1.0);
}

each_strategy!(answers_are_cached_per_tenant);

/// The example's schema with `@cache` on `organizations` too: what it reads is derived from its
/// plan (Organization's view, and the views of the relations selected).
fn schema_with_cached_organizations() -> std::path::PathBuf {
    let sdl = std::fs::read_to_string(example_dir().join("schema.graphql"))
        .expect("schema")
        .replace(
            "  ): [Organization!]!\n",
            "  ): [Organization!]! @cache(ttl: 60)\n",
        );
    assert!(sdl.contains("@cache(ttl: 60)"));
    let path = std::env::temp_dir().join(format!(
        "fraiseql-cached-orgs-{}.graphql",
        std::process::id()
    ));
    std::fs::write(&path, sdl).expect("write schema");
    path
}

async fn cached_world(extra: &str) -> TestTenancy {
    world_on(&schema_with_cached_organizations(), extra).await
}

/// A row_level world serving `schema`, with the shared migrations applied.
async fn world_on(schema: &std::path::Path, extra: &str) -> TestTenancy {
    let t = TestTenancy::new(
        "row_level",
        &example_dir().join("migrations/tenant"),
        schema,
        extra,
    )
    .await
    .expect("world");
    t.shared
        .apply(&example_dir().join("migrations/shared"))
        .await
        .expect("shared migrations");
    t
}

#[tokio::test]
async fn a_mutation_of_an_entity_refreshes_the_answers_that_read_it() {
    let t = cached_world("").await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let q = "{ organizations { name } }";
    assert_eq!(
        client.execute(q).await.expect("answer"),
        json!({"data": {"organizations": []}})
    );
    let before = client.engine().statements_executed();
    client.execute(q).await.expect("answer");
    assert_eq!(client.engine().statements_executed(), before, "cached");
    // createOrganization changes Organization (its @mutation(operation:) says so).
    create_org(&client, "Fresh").await;
    assert_eq!(
        client.execute(q).await.expect("answer"),
        json!({"data": {"organizations": [{"name": "Fresh"}]}})
    );
    // A mutation of another entity leaves it cached.
    let org = client
        .execute("{ organizations { id } }")
        .await
        .expect("id")["data"]["organizations"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    client.execute(q).await.expect("answer");
    let before = client.engine().statements_executed();
    crate::harness::create_project(&client, &org, "P").await;
    let writes = client.engine().statements_executed() - before;
    client.execute(q).await.expect("answer");
    assert_eq!(
        client.engine().statements_executed() - before,
        writes,
        "creating a Project does not outdate organizations"
    );
}

/// An `@sql` field (or a Rust resolver) may read any table, so an answer that holds one is
/// outdated by every mutation of the tenant: `memberCount` reads `tb_member`, which no
/// `@view` type names.
#[tokio::test]
async fn an_answer_with_a_sql_field_is_refreshed_by_any_mutation() {
    let t = cached_world("").await;
    let rec = t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    let org = create_org(&client, "Acme").await;
    let q = "{ organizations { name memberCount } }";
    let count = |v: Value| v["data"]["organizations"][0]["memberCount"].clone();
    assert_eq!(count(client.execute(q).await.expect("answer")), json!(0));
    let before = client.engine().statements_executed();
    assert_eq!(count(client.execute(q).await.expect("answer")), json!(0));
    assert_eq!(client.engine().statements_executed(), before, "cached");
    // A member added behind the API, then a mutation of another entity (Project).
    let admin = t.admin_client(&rec).await.expect("admin");
    admin
        .execute(
            "INSERT INTO tb_member (tenant_id, fk_org, name, email, identifier) SELECT tenant_id, pk_org, 'M', 'm@example.com', 'm' FROM tb_organization WHERE id = $1::text::uuid",
            &[&org],
        )
        .await
        .expect("member");
    crate::harness::create_project(&client, &org, "P").await;
    assert_eq!(
        count(client.execute(q).await.expect("answer")),
        json!(1),
        "the cached answer was dropped by the project's creation"
    );
}

#[tokio::test]
async fn the_cache_stays_within_its_bytes_under_ten_thousand_variable_sets() {
    let t = cached_world("[cache]\nmax_bytes = 262144\n").await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    for i in 0..10_000 {
        let r = client
            .execute_with(
                "query($o: Int) { organizations(offset: $o) { name } }",
                json!({ "o": i }),
            )
            .await
            .expect("answer");
        assert_eq!(r.json, json!({"data": {"organizations": []}}), "{i}");
    }
    let cache = client.engine().cache().expect("a cache");
    let bytes = cache.weighted_size();
    assert!(bytes <= 262_144, "{bytes} bytes");
    assert!(cache.entry_count() > 100, "it keeps what fits");
    println!(
        "10,000 variable sets: {} entries, {bytes} bytes (bound 262144)",
        cache.entry_count()
    );
}

#[tokio::test]
async fn without_cache_every_request_reads() {
    let t = world_with("row_level", "[cache]\nenabled = false\n").await;
    set_config(&t, "acme", "theme", json!("dark")).await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    assert!(client.engine().cache().is_none());
    let before = client.engine().statements_executed();
    let (_, control, _) = config_of(&client).await;
    config_of(&client).await;
    assert_eq!(client.engine().statements_executed() - before, 2);
    assert_eq!(control, None);
}

/// An answer with errors is never cached: when a nested field fails (here its Rust resolver),
/// the answer carries a null and the error, and the next request reads again instead of getting
/// the null without the error until the TTL ends.
#[tokio::test]
async fn an_answer_with_errors_is_never_cached() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sdl = std::fs::read_to_string(schema_with_cached_organizations())
        .expect("schema")
        .replace("  memberCount: Int! @sql", "  memberCount: Int @sql");
    assert!(sdl.contains("memberCount: Int @sql"));
    let path = std::env::temp_dir().join(format!(
        "fraiseql-cached-orgs-nullable-{}.graphql",
        std::process::id()
    ));
    std::fs::write(&path, sdl).expect("write schema");
    let t = world_on(&path, "").await;
    t.create_tenant("acme").await.expect("tenant");
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    let resolvers =
        fraiseql::Resolvers::new().field("Organization", "memberCount", move |ctx, batch| {
            let fail = flag.load(Ordering::SeqCst);
            async move {
                if fail {
                    return Err(fraiseql::ResolverError::internal("member service down"));
                }
                fraiseql_example_saas::member_count(ctx, batch).await
            }
        });
    let mut client = t.client_with(resolvers).await.expect("client");
    client.set_tenant("acme");
    create_org(&client, "Acme").await;
    let q = "{ organizations { name memberCount } }";

    let first = client.execute(q).await.expect("answer");
    assert_eq!(
        first["data"],
        json!({"organizations": [{"name": "Acme", "memberCount": null}]})
    );
    assert_eq!(
        first["errors"][0]["message"],
        json!("internal error in a resolver (see server log)"),
        "{first}"
    );

    failing.store(false, Ordering::SeqCst);
    let before = client.engine().statements_executed();
    let second = client.execute(q).await.expect("answer");
    assert_eq!(
        second,
        json!({"data": {"organizations": [{"name": "Acme", "memberCount": 0}]}}),
        "read again, not the cached null"
    );
    assert!(client.engine().statements_executed() > before);
    // A clean answer is cached as before.
    let before = client.engine().statements_executed();
    assert_eq!(client.execute(q).await.expect("answer"), second);
    assert_eq!(client.engine().statements_executed(), before, "cached");
}
