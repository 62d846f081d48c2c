//! Federation: `_entities` under tenancy and with the compatibility suite's schema, `_service`
//! composing with the analytics subgraph (and failing on a broken key), `@federated` across
//! databases.

use std::path::{Path, PathBuf};

use fraiseql_testing::{TestClient, TestDatabase};
use serde_json::{json, Value};

use crate::harness::{code, create_org, create_project, example_dir, setup, world};

const ENTITIES: &str = "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on Organization { id name } ... on Project { id name taskCount } ... on Task { title } } }";

fn compat_dir() -> PathBuf {
    example_dir().join("../federation-compat")
}

/// The compatibility suite's products subgraph on a database of its own.
async fn compat() -> (TestClient, TestDatabase) {
    let db = TestDatabase::migrated(&compat_dir().join("migrations"))
        .await
        .expect("compat database");
    let text = format!(
        "[schema]\npath = \"schema.graphql\"\n[databases.tenant]\ntype = \"postgresql\"\nurl = \"{}\"\npool_max = 2\n",
        db.url
    );
    let config =
        fraiseql::config::parse_str(&text, "test.toml", &compat_dir(), &|_| None).expect("config");
    let client = TestClient::from_config(config).await.expect("client");
    (client, db)
}

async fn entities(client: &TestClient, query: &str, reps: Value) -> Value {
    client
        .execute_with(query, json!({ "r": reps }))
        .await
        .expect("answer")
        .json
}

#[tokio::test]
async fn entities_of_several_types_and_keys_come_back_in_order_with_null_for_unknown_keys() {
    let (client, _db) = compat().await;
    let q = "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on Product { id sku } ... on DeprecatedProduct { reason } ... on ProductResearch { study { caseNumber description } } ... on User { email name averageProductsCreatedPerYear } } }";
    let before = client.engine().statements_executed();
    let v = entities(
        &client,
        q,
        json!([
            {"__typename": "Product", "id": "apollo-federation"},
            {"__typename": "ProductResearch", "study": {"caseNumber": "1235"}},
            {"__typename": "Product", "sku": "federation", "package": "@apollo/federation"},
            {"__typename": "Product", "id": "no-such-product"},
            {"__typename": "DeprecatedProduct", "sku": "apollo-federation-v1", "package": "@apollo/federation-v1"},
            {"__typename": "User", "email": "support@apollographql.com", "totalProductsCreated": 1337, "yearsOfEmployment": 10},
            {"__typename": "Product", "sku": "studio", "variation": {"id": "platform"}},
            {"__typename": "ProductResearch", "study": {"caseNumber": "9999"}},
        ]),
    )
    .await;
    assert_eq!(
        v,
        json!({"data": {"_entities": [
            {"__typename": "Product", "id": "apollo-federation", "sku": "federation"},
            {"__typename": "ProductResearch", "study": {"caseNumber": "1235", "description": "Studio Study"}},
            {"__typename": "Product", "id": "apollo-federation", "sku": "federation"},
            null,
            {"__typename": "DeprecatedProduct", "reason": "Migrate to Federation V2"},
            {"__typename": "User", "email": "support@apollographql.com", "name": "Jane Smith", "averageProductsCreatedPerYear": 134},
            {"__typename": "Product", "id": "apollo-studio", "sku": "studio"},
            null,
        ]}})
    );
    // Every type on one database: one statement for all eight.
    assert_eq!(client.engine().statements_executed() - before, 1);
}

#[tokio::test]
async fn malformed_representations_are_errors_that_name_their_index() {
    let (client, _db) = compat().await;
    let q = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id } } }";
    for (reps, wanted) in [
        (json!([{"id": "apollo-federation"}]), "representations[0]: `__typename` is missing"),
        (
            json!([{"__typename": "Product", "id": "x"}, {"__typename": "Nope", "id": "x"}]),
            "representations[1]: `Nope` is not an entity",
        ),
        (
            json!([{"__typename": "Product", "package": "x"}]),
            "representations[0]: `Product` carries none of its keys (`id`, `sku package`, `sku variation { id }`)",
        ),
        (
            json!([{"__typename": "Product", "id": {"nested": 1}}]),
            "representations[0]: key field `id` of `Product` must be of type ID, got an object",
        ),
        (json!(["Product"]), "representations[0]: a representation is an object, got a string"),
        (
            json!([{"__typename": 7, "id": "x"}]),
            "representations[0]: `__typename` must be a string, got a number",
        ),
    ] {
        let v = entities(&client, q, reps.clone()).await;
        assert_eq!(code(&v), "BAD_USER_INPUT", "{reps}: {v}");
        let message = v["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.starts_with(wanted), "{reps}: {message}");
    }
    // The server is fine afterwards.
    let v = entities(
        &client,
        q,
        json!([{"__typename": "Product", "id": "apollo-studio"}]),
    )
    .await;
    assert_eq!(v, json!({"data": {"_entities": [{"id": "apollo-studio"}]}}));
}

#[tokio::test]
async fn the_sdl_is_the_schema_as_written_without_the_engines_directives() {
    let (client, _db) = compat().await;
    let v = client.execute("{ _service { sdl } }").await.expect("sdl");
    let sdl = v["data"]["_service"]["sdl"].as_str().expect("sdl text");
    for kept in [
        "@link(url: \"https://specs.apollo.dev/federation/v2.3\"",
        "type Product @custom @key(fields: \"id\") @key(fields: \"sku package\") @key(fields: \"sku variation { id }\")",
        "extend type User @key(fields: \"email\")",
        "unit: String @inaccessible",
        "directive @custom on OBJECT",
    ] {
        assert!(sdl.contains(kept), "{kept} missing from:\n{sdl}");
    }
    for gone in [
        "@view",
        "@sql",
        "@relation",
        "@filter",
        "v_product",
        "tb_user",
    ] {
        assert!(!sdl.contains(gone), "{gone} leaked into:\n{sdl}");
    }
}

/// Another tenant's ids are `null`, under every strategy; one statement per request whatever
/// the number of representations.
async fn entities_are_the_callers_tenants_only(strategy: &str) {
    let t = world(strategy).await;
    t.create_tenant("tenant_a").await.expect("a");
    t.create_tenant("tenant_b").await.expect("b");
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let org_a = create_org(&client, "Org A").await;
    let project_a = create_project(&client, &org_a, "Project A").await;
    client.set_tenant("tenant_b");
    let org_b = create_org(&client, "Org B").await;
    let reps = json!([
        {"__typename": "Organization", "id": org_a},
        {"__typename": "Project", "id": project_a},
        {"__typename": "Organization", "id": org_b},
    ]);
    let before = client.engine().statements_executed();
    let v = entities(&client, ENTITIES, reps.clone()).await;
    assert_eq!(
        client.engine().statements_executed() - before,
        1,
        "{strategy}: one statement for three representations of two types"
    );
    assert_eq!(
        v,
        json!({"data": {"_entities": [null, null, {"__typename": "Organization", "id": org_b, "name": "Org B"}]}})
    );
    client.set_tenant("tenant_a");
    let before = client.engine().statements_executed();
    let v = entities(&client, ENTITIES, reps).await;
    assert_eq!(
        client.engine().statements_executed() - before,
        1,
        "{strategy}: one statement"
    );
    assert_eq!(
        v,
        json!({"data": {"_entities": [
            {"__typename": "Organization", "id": org_a, "name": "Org A"},
            {"__typename": "Project", "id": project_a, "name": "Project A", "taskCount": 0},
            null,
        ]}})
    );
}

each_strategy!(entities_are_the_callers_tenants_only);

#[tokio::test]
async fn a_thousand_representations_are_one_statement() {
    let s = setup().await;
    let c = &s.client;
    let projects = c
        .execute(&format!(
            "{{ projectsByOrg(orgId: \"{}\", limit: 120) {{ id }} }}",
            s.acme
        ))
        .await
        .expect("projects");
    let ids: Vec<&str> = projects["data"]["projectsByOrg"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 120);
    let reps: Vec<Value> = (0..1000)
        .map(|i| match i % 10 {
            // Every tenth one does not exist.
            9 => json!({"__typename": "Project", "id": "00000000-0000-4000-8000-000000000000"}),
            _ => json!({"__typename": "Project", "id": ids[i % ids.len()]}),
        })
        .collect();
    let before = c.engine().statements_executed();
    let v = entities(c, ENTITIES, Value::Array(reps.clone())).await;
    assert_eq!(
        c.engine().statements_executed() - before,
        1,
        "one statement"
    );
    let got = v["data"]["_entities"].as_array().expect("entities");
    assert_eq!(got.len(), 1000);
    for (i, (rep, e)) in reps.iter().zip(got).enumerate() {
        if i % 10 == 9 {
            assert!(e.is_null(), "{i}: {e}");
        } else {
            assert_eq!(e["id"], rep["id"], "{i}");
            assert_eq!(e["taskCount"], 3, "{i}");
        }
    }
    // Mixed types are still one statement (one database).
    let before = c.engine().statements_executed();
    let v = entities(
        c,
        ENTITIES,
        json!([{"__typename": "Organization", "id": s.acme}, {"__typename": "Project", "id": ids[0]}]),
    )
    .await;
    assert_eq!(c.engine().statements_executed() - before, 1);
    assert_eq!(v["data"]["_entities"][0]["name"], "Acme Corp");
    // A key PostgreSQL cannot read as the column's type is the client's mistake, not a crash.
    let v = entities(
        c,
        ENTITIES,
        json!([{"__typename": "Project", "id": "not-a-uuid"}]),
    )
    .await;
    assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("uuid")),
        "{v}"
    );
}

#[tokio::test]
async fn entity_fields_follow_rbac_like_root_fields() {
    let s = crate::harness::setup_with("[rbac]\n\"Organization.name\" = [\"admin\"]\n").await;
    let v = entities(
        &s.client,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Organization { id name } } }",
        json!([{"__typename": "Organization", "id": s.acme}]),
    )
    .await;
    assert_eq!(v["data"]["_entities"][0]["id"], s.acme);
    assert_eq!(v["data"]["_entities"][0]["name"], Value::Null);
    assert_eq!(code(&v), "FORBIDDEN");
}

/// `Project.analytics` is `@federated` to the shared database: every project of a level in ONE
/// statement there, with the tenant's context (the view shows that tenant's events only).
async fn federated_fields_read_another_database_once_per_level(strategy: &str) {
    let t = world(strategy).await;
    t.create_tenant("acme_corp").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme_corp");
    let org = create_org(&client, "Acme").await;
    let mut projects = Vec::new();
    for name in ["P1", "P2", "P3"] {
        projects.push(create_project(&client, &org, name).await);
    }
    let shared = t.shared.connect().await.expect("shared");
    for (i, p) in projects.iter().enumerate() {
        for n in 0..=i {
            shared
                .execute(
                    "INSERT INTO tb_analytics_event (event_id, event_type, tenant_id, data, recorded_at) VALUES (gen_random_uuid(), $1, 'acme_corp', jsonb_build_object('project_id', $2::text), now() + make_interval(secs => $3))",
                    &[&format!("analytics.e{n}"), p, &(n as f64)],
                )
                .await
                .expect("event");
        }
    }
    // Another tenant's event about the same project id never shows.
    shared
        .execute(
            "INSERT INTO tb_analytics_event (event_id, event_type, tenant_id, data) VALUES (gen_random_uuid(), 'analytics.other', 'other_tenant', jsonb_build_object('project_id', $1::text))",
            &[&projects[2]],
        )
        .await
        .expect("event");
    let q = "{ organizations(limit: 5) { projects(limit: 10) { name analytics(orderBy: [RECORDED_AT_ASC]) { eventType } organization { name } } } }";
    let before = client.engine().statements_executed();
    let v = client.execute(q).await.expect("answer");
    assert_eq!(
        v,
        json!({"data": {"organizations": [{"projects": [
            {"name": "P1", "analytics": [{"eventType": "analytics.e0"}], "organization": {"name": "Acme"}},
            {"name": "P2", "analytics": [{"eventType": "analytics.e0"}, {"eventType": "analytics.e1"}], "organization": {"name": "Acme"}},
            {"name": "P3", "analytics": [{"eventType": "analytics.e0"}, {"eventType": "analytics.e1"}, {"eventType": "analytics.e2"}], "organization": {"name": "Acme"}},
        ]}]}})
    );
    // The tenant database's statement, then ONE on the shared database for all three projects.
    assert_eq!(client.engine().statements_executed() - before, 2);
    // A limit applies per project, over there.
    let v = client
        .execute("{ organizations(limit: 5) { projects(limit: 10) { analytics(limit: 1) { eventType } } } }")
        .await
        .expect("answer");
    let counts: Vec<usize> = v["data"]["organizations"][0]["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .map(|p| p["analytics"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(counts, [1, 1, 1]);
}

each_strategy!(federated_fields_read_another_database_once_per_level);

/// `_service { sdl }` of both subgraphs composes with Apollo's composition, and a key whose
/// field types disagree between them does not.
#[tokio::test]
async fn the_subgraphs_compose_and_a_broken_key_does_not() {
    let s = setup().await;
    let tenant_sdl = service_sdl(&s.client).await;
    let analytics_dir = example_dir().join("analytics");
    let analytics = analytics_client(&s._db, &analytics_dir, None).await;
    let analytics_sdl = service_sdl(&analytics).await;
    let dir = std::env::temp_dir().join(format!("fraiseql-compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (ok, out) = compose(&dir, &tenant_sdl, &analytics_sdl);
    assert!(ok, "composition failed:\n{out}");
    assert!(out.contains("composed 2 subgraphs OK"), "{out}");

    let broken = std::fs::read_to_string(analytics_dir.join("schema.graphql"))
        .expect("schema")
        .replace(
            "type Project @key(fields: \"id\") {\n  id: ID!",
            "type Project @key(fields: \"id\") {\n  id: Int!",
        );
    let broken_client = analytics_client(&s._db, &analytics_dir, Some(&broken)).await;
    let broken_sdl = service_sdl(&broken_client).await;
    assert!(broken_sdl.contains("id: Int!"));
    let (ok, out) = compose(&dir, &tenant_sdl, &broken_sdl);
    assert!(
        !ok,
        "a key typed ID! in one subgraph and Int! in the other composed:\n{out}"
    );
    assert!(out.contains("FIELD_TYPE_MISMATCH"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn service_sdl(client: &TestClient) -> String {
    let v = client.execute("{ _service { sdl } }").await.expect("sdl");
    v["data"]["_service"]["sdl"]
        .as_str()
        .expect("sdl text")
        .to_owned()
}

/// The analytics subgraph over `db` (its view), without tenancy: enough for its SDL.
async fn analytics_client(db: &TestDatabase, dir: &Path, schema: Option<&str>) -> TestClient {
    let path = match schema {
        Some(text) => {
            let p = std::env::temp_dir().join(format!(
                "fraiseql-analytics-{}-{}.graphql",
                std::process::id(),
                text.len()
            ));
            std::fs::write(&p, text).expect("write schema");
            p
        }
        None => dir.join("schema.graphql"),
    };
    let text = format!(
        "[schema]\npath = \"{}\"\n[databases.tenant]\ntype = \"postgresql\"\nurl = \"{u}\"\npool_max = 1\n[databases.shared]\ntype = \"postgresql\"\nurl = \"{u}\"\npool_max = 1\n",
        path.display(),
        u = db.url
    );
    let config = fraiseql::config::parse_str(&text, "t.toml", dir, &|_| None).expect("config");
    TestClient::from_config(config).await.expect("analytics")
}

/// Runs `scripts/federation/compose.mjs` (Apollo's composition) over two SDL files.
fn compose(dir: &Path, tenant: &str, analytics: &str) -> (bool, String) {
    let tools = federation_tools();
    std::fs::write(dir.join("tenant.graphql"), tenant).expect("write");
    std::fs::write(dir.join("analytics.graphql"), analytics).expect("write");
    let out = std::process::Command::new("node")
        .arg(tools.join("compose.mjs"))
        .arg("-o")
        .arg(dir.join("supergraph.graphql"))
        .arg(format!(
            "tenant=http://tenant@{}",
            dir.join("tenant.graphql").display()
        ))
        .arg(format!(
            "analytics=http://analytics@{}",
            dir.join("analytics.graphql").display()
        ))
        .current_dir(&tools)
        .output()
        .expect("node runs (scripts/test.sh installs the federation tools)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The federation test tools (`scripts/federation/install.sh`, run by `scripts/test.sh`).
fn federation_tools() -> PathBuf {
    let dir = std::env::var_os("FRAISEQL_FEDERATION_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| example_dir().join("../../target/federation-tools"));
    assert!(
        dir.join("node_modules/@apollo/composition").is_dir(),
        "the federation tools are not installed in {}: run scripts/federation/install.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// `_service { sdl }` is the whole schema (descriptions, RBAC-guarded fields): answered without a
/// user's token only while introspection is on (before: always, even with `introspection =
/// false`), or, with `[federation] service_token`, only to the gateway that carries it.
#[tokio::test]
async fn the_sdl_follows_introspection_or_the_gateways_token() {
    const SDL: &str = "{ _service { sdl } }";
    let anonymous = |client: &mut TestClient| {
        client.clear_tenant();
        client.set_token(None);
    };
    // introspection = false, no service token: nobody reads it.
    let t =
        crate::harness::secured_world_with("row_level", "[limits]\nintrospection = false\n").await;
    let mut client = t.client().await.expect("client");
    anonymous(&mut client);
    let r = client.execute_with(SDL, json!({})).await.expect("answer");
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(code(&r.json), "FORBIDDEN");
    assert!(!r.text.contains("type Organization"), "{}", r.text);

    // With a service token: the gateway reads it, anyone else (a user's token too) does not.
    let gateway = "the-gateways-own-token-0123";
    let t = crate::harness::secured_world_with(
        "row_level",
        &format!("[federation]\nservice_token = \"{gateway}\"\n"),
    )
    .await;
    t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    anonymous(&mut client);
    let r = client.execute_with(SDL, json!({})).await.expect("answer");
    assert_eq!(r.status, 401, "{}", r.text);
    client.set_token(Some("not-the-gateways-token".into()));
    let r = client.execute_with(SDL, json!({})).await.expect("answer");
    assert_eq!(r.status, 401, "{}", r.text);
    client.set_token(Some(gateway.into()));
    let r = client.execute_with(SDL, json!({})).await.expect("answer");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json["data"]["_service"]["sdl"]
            .as_str()
            .is_some_and(|s| s.contains("type Organization")),
        "{}",
        r.text
    );
    // A tenant's user, identified as usual, still may not read it.
    client.set_tenant("acme");
    client.set_token(Some(t.token("acme", &["admin"]).expect("token")));
    let r = client
        .execute_with("{ organizations { name } _service { sdl } }", json!({}))
        .await
        .expect("answer");
    assert_eq!(code(&r.json), "FORBIDDEN", "{}", r.text);
    assert!(!r.text.contains("type Organization"), "{}", r.text);
}

/// `_entities` follows the `[rbac]` rules of the root fields that read a type: a role that may
/// call none of `organization`, `organizations` and `organizationsConnection` cannot read
/// organizations through the gateway's entity fetches either (before: it could); one open root
/// field is enough to open them.
#[tokio::test]
async fn entities_follow_the_rbac_of_the_types_root_fields() {
    let s = crate::harness::setup_with(
        "[rbac]\n\"Query.organization\" = [\"admin\"]\n\"Query.organizations\" = [\"admin\"]\n\"Query.organizationsConnection\" = [\"admin\"]\n",
    )
    .await;
    let q = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Organization { id name } } }";
    let reps = json!([{"__typename": "Organization", "id": s.acme}]);
    let v = entities(&s.client, q, reps.clone()).await;
    assert_eq!(code(&v), "FORBIDDEN", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Query.organization")),
        "{v}"
    );
    assert!(
        v.get("data").is_none_or(|d| d["_entities"].is_null()),
        "{v}"
    );
    // Projects have root fields of their own, open to everyone: still served.
    let p = entities(
        &s.client,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on Project { id } } }",
        json!([{"__typename": "Project", "id": "00000000-0000-4000-8000-000000000000"}]),
    )
    .await;
    assert_eq!(p, json!({"data": {"_entities": [null]}}));
}
