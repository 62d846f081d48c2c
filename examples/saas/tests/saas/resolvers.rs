//! Rust resolvers (the example's `src/lib.rs`, and a few test-only ones) against real
//! PostgreSQL: they agree with the declarative SQL, are batched per level, see the request's
//! transaction, and their failures become GraphQL errors.

use fraiseql::engine::tenancy::TenantRecord;
use fraiseql::{ResolverError, Resolvers};
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{code, world};

/// Tenant `acme`: organizations with 0, 3 and 7 members; `projects` projects in the first, with
/// `i % 4` tasks each. Returns the tenant and the first organization's id.
async fn arrange(t: &TestTenancy, projects: i32) -> (TenantRecord, String) {
    let rec = t.create_tenant("acme").await.expect("tenant");
    let c = t.admin_client(&rec).await.expect("admin");
    c.execute(
        "INSERT INTO tb_organization (identifier, tenant_id, name) SELECT 'o' || i, $1, 'Org ' || i FROM generate_series(1, 3) i",
        &[&rec.id],
    )
    .await
    .expect("orgs");
    c.execute(
        "INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
         SELECT o.identifier || '-m' || i, o.tenant_id, o.pk_org, 'M', 'm@x.test'
         FROM tb_organization o, generate_series(1, 7) i
         WHERE (o.identifier = 'o2' AND i <= 3) OR o.identifier = 'o3'",
        &[],
    )
    .await
    .expect("members");
    c.execute(
        "INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
         SELECT 'p' || i, o.tenant_id, o.pk_org, 'P ' || lpad(i::text, 3, '0')
         FROM tb_organization o, generate_series(1, $1) i WHERE o.identifier = 'o1'",
        &[&projects],
    )
    .await
    .expect("projects");
    c.execute(
        "INSERT INTO tb_task (identifier, tenant_id, fk_project, title)
         SELECT p.identifier || '-t' || i, p.tenant_id, p.pk_project, 'T'
         FROM tb_project p, generate_series(1, 3) i
         WHERE i <= substr(p.identifier, 2)::int % 4",
        &[],
    )
    .await
    .expect("tasks");
    let org: String = c
        .query_one(
            "SELECT id::text FROM tb_organization WHERE identifier = 'o1'",
            &[],
        )
        .await
        .expect("org")
        .get(0);
    (rec, org)
}

async fn clients(t: &TestTenancy, rust: Resolvers) -> (TestClient, TestClient) {
    let mut sql = t.client().await.expect("declarative client");
    let mut code = t.client_with(rust).await.expect("resolver client");
    sql.set_tenant("acme");
    code.set_tenant("acme");
    (sql, code)
}

const NESTED: &str = "query($org: ID!) { projectsByOrg(orgId: $org, limit: 100) { name taskCount organization { name memberCount } } }";

#[tokio::test]
async fn rust_resolvers_agree_with_the_declarative_sql() {
    let t = world("database_per_tenant").await;
    let (_rec, org) = arrange(&t, 12).await;
    let (sql, rust) = clients(&t, fraiseql_example_saas::resolvers()).await;
    for (q, vars) in [
        (NESTED, json!({ "org": org })),
        (
            "{ organizations { name memberCount projects(limit: 5) { name taskCount organization { memberCount } } } }",
            json!({}),
        ),
        (
            "query($org: ID!) { organization(id: $org) { memberCount m2: memberCount } }",
            json!({ "org": org }),
        ),
    ] {
        let a = sql.execute_with(q, vars.clone()).await.expect("sql").json;
        let b = rust.execute_with(q, vars).await.expect("rust").json;
        assert!(a.get("errors").is_none(), "{a}");
        assert_eq!(a, b, "{q}");
    }
    let counts: Vec<Value> = sql
        .execute("{ organizations { memberCount } }")
        .await
        .expect("sql")["data"]["organizations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["memberCount"].clone())
        .collect();
    assert_eq!(counts, vec![json!(0), json!(3), json!(7)]);

    // The Rust createProject gives the declarative one's answers, success and failure.
    let create = "mutation($org: ID!, $n: String!) { createProject(orgId: $org, name: $n) { name taskCount organization { name } } }";
    let a = sql
        .execute_with(create, json!({ "org": org, "n": "From SQL" }))
        .await
        .expect("sql")
        .json;
    let b = rust
        .execute_with(create, json!({ "org": org, "n": "From Rust" }))
        .await
        .expect("rust")
        .json;
    assert_eq!(
        a["data"]["createProject"]["organization"],
        json!({"name": "Org 1"}),
        "{a}"
    );
    assert_eq!(
        b,
        json!({"data": {"createProject": {"name": "From Rust", "taskCount": 0, "organization": {"name": "Org 1"}}}})
    );
    let missing = json!({ "org": "00000000-0000-4000-8000-000000000000", "n": "X" });
    let a = sql
        .execute_with(create, missing.clone())
        .await
        .expect("sql")
        .json;
    let b = rust.execute_with(create, missing).await.expect("rust").json;
    assert_eq!(a, b);
    assert_eq!(b["errors"][0]["message"], "Organization not found");
    assert_eq!(code(&b), "NOT_FOUND");
}

/// `{ projectsByOrg { taskCount organization { memberCount } } }` costs the same number of
/// statements for 10 projects as for 100: one for the SQL fields, plus one per Rust resolver.
#[tokio::test]
async fn nested_fields_cost_a_bounded_number_of_statements() {
    let t = world("database_per_tenant").await;
    let (_rec, org) = arrange(&t, 100).await;
    let (sql, rust) = clients(&t, fraiseql_example_saas::resolvers()).await;
    let q = "query($org: ID!, $n: Int!) { projectsByOrg(orgId: $org, limit: $n) { taskCount organization { memberCount } } }";
    let mut costs = Vec::new();
    for client in [&sql, &rust] {
        for n in [10, 100] {
            let before = client.engine().statements_executed();
            let v = client
                .execute_with(q, json!({ "org": org, "n": n }))
                .await
                .expect("execute")
                .json;
            assert_eq!(
                v["data"]["projectsByOrg"].as_array().map(Vec::len),
                Some(n as usize),
                "{v}"
            );
            costs.push(client.engine().statements_executed() - before);
        }
    }
    assert_eq!(costs, vec![1, 1, 3, 3]);
}

/// Test-only resolvers: a query resolver read back through a view, one returning a plain object,
/// a failing field resolver, a miscounting one, a write attempted in a query, and a mutation
/// that writes and then fails.
fn test_resolvers() -> Resolvers {
    Resolvers::new()
        .query("project", |ctx, args| async move {
            // Returns a key: fraiseql reads the project back through v_project.
            let id: String = args.get("id")?;
            let row = ctx
                .db()
                .query_opt(
                    "SELECT id::text FROM tb_project WHERE id = $1::text::uuid",
                    &[&id],
                )
                .await?;
            Ok(row.map_or(Value::Null, |r| Value::String(r.get(0))))
        })
        .query("tenantConfig", |ctx, _args| async move {
            // A write in a query: the transaction is read-only.
            ctx.db()
                .execute(
                    "INSERT INTO tb_tenant_config (key, value) VALUES ('x', '1')",
                    &[],
                )
                .await?;
            Ok(Value::Null)
        })
        .field("Organization", "memberCount", |_ctx, _batch| async move {
            Err(ResolverError::forbidden("members are private"))
        })
        .field("Project", "taskCount", |_ctx, batch| async move {
            Ok(vec![Value::from(1); batch.parents.len() + 1])
        })
        .mutation("createOrganization", |ctx, args| async move {
            let name: String = args.get("name")?;
            ctx.db()
                .execute(
                    "INSERT INTO tb_organization (name, identifier) VALUES ($1, fn_slug($1))",
                    &[&name],
                )
                .await?;
            Err(ResolverError::bad_input(format!("{name} is not allowed")))
        })
}

#[tokio::test]
async fn resolver_results_and_failures_become_graphql_answers() {
    let t = world("database_per_tenant").await;
    let (rec, org) = arrange(&t, 2).await;
    let (sql, rust) = clients(&t, test_resolvers()).await;
    let id: String = sql
        .execute_with(
            "query($org: ID!) { projectsByOrg(orgId: $org) { id } }",
            json!({ "org": org }),
        )
        .await
        .expect("sql")
        .json["data"]["projectsByOrg"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // A query resolver's key is read back with the selection (and its relations).
    let v = rust
        .execute_with(
            "query($id: ID!) { project(id: $id) { name organization { name } } }",
            json!({ "id": id }),
        )
        .await
        .expect("rust")
        .json;
    assert_eq!(
        v,
        json!({"data": {"project": {"name": "P 001", "organization": {"name": "Org 1"}}}})
    );
    let v = rust
        .execute(r#"{ project(id: "00000000-0000-4000-8000-000000000000") { name } }"#)
        .await
        .expect("rust");
    assert_eq!(v, json!({"data": {"project": null}}));

    // A failing field resolver: null and its error with the field's path; the rest stands.
    let v = rust
        .execute("{ organizations(limit: 1) { name memberCount } }")
        .await
        .expect("rust");
    assert_eq!(
        v["data"]["organizations"],
        json!([{"name": "Org 1", "memberCount": null}])
    );
    assert_eq!(
        v["errors"],
        json!([{"message": "members are private", "path": ["organizations", "memberCount"], "extensions": {"code": "FORBIDDEN"}}])
    );
    // A resolver returning a wrong number of values is the server's fault, said without detail.
    let v = rust
        .execute_with(
            "query($org: ID!) { projectsByOrg(orgId: $org) { taskCount } }",
            json!({ "org": org }),
        )
        .await
        .expect("rust")
        .json;
    assert_eq!(code(&v), "INTERNAL_SERVER_ERROR", "{v}");
    // Queries are read-only, resolvers included (RBAC aside: tenantConfig needs admin).
    let mut admin = t.client_with(test_resolvers()).await.expect("client");
    admin.set_tenant("acme");
    admin.set_token(Some(t.token("acme", &["admin"]).expect("token")));
    let v = admin
        .execute("{ tenantConfig organizations(limit: 1) { name } }")
        .await
        .expect("rust");
    assert_eq!(code(&v), "OPERATION_NOT_SUPPORTED", "{v}");
    // The failed write did not take the next field down with it.
    assert_eq!(
        v["data"]["organizations"],
        json!([{"name": "Org 1"}]),
        "{v}"
    );

    // A mutation resolver that writes, then fails: its write is rolled back.
    let v = rust
        .execute(r#"mutation { createOrganization(name: "Evil") { id } }"#)
        .await
        .expect("rust");
    assert_eq!(
        v,
        json!({"data": null, "errors": [{"message": "Evil is not allowed", "path": ["createOrganization"], "extensions": {"code": "BAD_USER_INPUT"}}]})
    );
    let c = t.admin_client(&rec).await.expect("admin");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM tb_organization WHERE name = 'Evil'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn resolvers_must_match_the_schema() {
    let t = world("database_per_tenant").await;
    let e = t
        .client_with(Resolvers::new().field(
            "Project",
            "nope",
            |_c, _b| async move { Ok(Vec::new()) },
        ))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains(
            "Project.nope: a resolver is registered for this coordinate, but it is not a field"
        ),
        "{e}"
    );
}

/// A mutation resolver that swallows a failed statement and returns Ok: PostgreSQL turns the
/// COMMIT into a ROLLBACK, and the client must hear it, not a success.
#[tokio::test]
async fn a_swallowed_statement_failure_is_not_reported_as_success() {
    let t = world("database_per_tenant").await;
    let (rec, _org) = arrange(&t, 1).await;
    let resolvers = Resolvers::new().mutation("deleteProject", |ctx, _args| async move {
        ctx.db()
            .execute(
                "INSERT INTO tb_organization (name, identifier) VALUES ('Ghost', 'ghost')",
                &[],
            )
            .await?;
        // Fails (division by zero); the error is ignored on purpose.
        let _ = ctx.db().execute("SELECT 1 / 0", &[]).await;
        Ok(Value::Null)
    });
    let mut client = t.client_with(resolvers).await.expect("client");
    client.set_tenant("acme");
    let v = client
        .execute(r#"mutation { deleteProject(id: "00000000-0000-4000-8000-000000000000") }"#)
        .await
        .expect("execute");
    assert_eq!(v["data"], Value::Null, "{v}");
    assert_eq!(code(&v), "INTERNAL_SERVER_ERROR", "{v}");
    let c = t.admin_client(&rec).await.expect("admin");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM tb_organization WHERE name = 'Ghost'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    // The connection is still good for the next request.
    let v = client
        .execute("{ organizations { name } }")
        .await
        .expect("execute");
    assert!(v.get("errors").is_none(), "{v}");
}
