//! The example's mutations against real PostgreSQL, through the HTTP router: read-back of the
//! selection, the seed's ownership check, bulk creation in one statement and all-or-nothing,
//! updates, deletes, constraint violations and input limits.

use fraiseql::engine::tenancy::TenantRecord;
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{code, create_org, world, world_with};

/// A tenant `acme` with a client set to it.
async fn acme(t: &TestTenancy) -> (TenantRecord, TestClient) {
    let rec = t.create_tenant("acme").await.expect("tenant");
    let mut client = t.client().await.expect("client");
    client.set_tenant("acme");
    (rec, client)
}

async fn project_names(t: &TestTenancy, rec: &TenantRecord) -> Vec<String> {
    let c = t.admin_client(rec).await.expect("admin");
    c.query("SELECT name FROM tb_project ORDER BY pk_project", &[])
        .await
        .expect("projects")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn errors(v: &Value) -> Vec<(String, String)> {
    v["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    (
                        e["extensions"]["code"].as_str().unwrap_or("").to_owned(),
                        e["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn created_entities_are_read_back_with_the_selection() {
    let t = world("database_per_tenant").await;
    let (rec, client) = acme(&t).await;

    let v = client
        .execute(r#"mutation { createOrganization(name: "Acme Corp") { __typename id name subscriptionTier memberCount projects { name } } }"#)
        .await
        .expect("execute");
    let org = &v["data"]["createOrganization"];
    assert_eq!(
        (
            org["__typename"].clone(),
            org["name"].clone(),
            org["subscriptionTier"].clone(),
            org["memberCount"].clone(),
            org["projects"].clone()
        ),
        (
            json!("Organization"),
            json!("Acme Corp"),
            json!("free"),
            json!(0),
            json!([])
        ),
        "{v}"
    );
    let org_id = org["id"].as_str().expect("id").to_owned();

    let v = client
        .execute_with(
            "mutation($org: ID!) { p: createProject(orgId: $org, name: \"Project Alpha\") { name taskCount organization { id name } } }",
            json!({ "org": org_id }),
        )
        .await
        .expect("execute").json;
    assert_eq!(
        v,
        json!({"data": {"p": {"name": "Project Alpha", "taskCount": 0, "organization": {"id": org_id, "name": "Acme Corp"}}}})
    );

    // The tenant's rows carry its id (filled from the transaction's context), and queries see them.
    let c = t.admin_client(&rec).await.expect("admin");
    let owner: uuid::Uuid = c
        .query_one(
            "SELECT tenant_id FROM tb_project WHERE name = 'Project Alpha'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(owner, rec.id);
    let v = client
        .execute_with(
            "query($org: ID!) { projectsByOrg(orgId: $org) { name } }",
            json!({ "org": org_id }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(
        v,
        json!({"data": {"projectsByOrg": [{"name": "Project Alpha"}]}})
    );
}

each_strategy!(projects_only_go_into_the_callers_own_organizations);

/// The seed's ownership check: another tenant's organization, or an unknown one, is
/// "Organization not found", and nothing is written anywhere.
async fn projects_only_go_into_the_callers_own_organizations(strategy: &str) {
    let t = world(strategy).await;
    let a = t.create_tenant("tenant_a").await.expect("a");
    t.create_tenant("tenant_b").await.expect("b");
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let org_a = create_org(&client, "Org A").await;

    client.set_tenant("tenant_b");
    for org in [org_a.as_str(), "00000000-0000-4000-8000-000000000000"] {
        for m in [
            "mutation($org: ID!) { createProject(orgId: $org, name: \"Intruder\") { id } }",
            "mutation($org: ID!) { bulkCreateProjects(orgId: $org, names: [\"Intruder\"]) { id } }",
        ] {
            let v = client
                .execute_with(m, json!({ "org": org }))
                .await
                .expect("execute")
                .json;
            assert_eq!(v["data"], Value::Null, "{strategy}: {v}");
            assert_eq!(
                errors(&v),
                vec![("NOT_FOUND".to_owned(), "Organization not found".to_owned())],
                "{strategy}: {v}"
            );
        }
    }
    // Not an id at all: the value is refused, not looked up.
    let v = client
        .execute(r#"mutation { createProject(orgId: "org-abc123", name: "X") { id } }"#)
        .await
        .expect("execute");
    assert_eq!(code(&v), "BAD_USER_INPUT", "{strategy}: {v}");
    assert!(project_names(&t, &a).await.is_empty(), "{strategy}");
}

#[tokio::test]
async fn bulk_create_is_one_statement_in_the_given_order() {
    let t = world("database_per_tenant").await;
    let (rec, client) = acme(&t).await;
    let org = create_org(&client, "Acme Corp").await;
    let bulk = "mutation($org: ID!, $names: [String!]!) { bulkCreateProjects(orgId: $org, names: $names) { name organization { name } } }";

    let mut counts = Vec::new();
    for (batch, n) in [("a", 10), ("b", 100)] {
        // Reversed, so the answer's order is the list's, not the names' sort order.
        let names: Vec<String> = (0..n).rev().map(|i| format!("{batch} {i:03}")).collect();
        let before = client.engine().statements_executed();
        let v = client
            .execute_with(bulk, json!({ "org": org, "names": names }))
            .await
            .expect("execute")
            .json;
        counts.push(client.engine().statements_executed() - before);
        let got: Vec<&str> = v["data"]["bulkCreateProjects"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(got, names, "{v}");
        assert!(v["data"]["bulkCreateProjects"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["organization"]["name"] == "Acme Corp")));
    }
    // The function call and the read-back, for 10 names as for 100.
    assert_eq!(counts, vec![2, 2]);
    assert_eq!(project_names(&t, &rec).await.len(), 110);

    // An empty list creates nothing; a single name is coerced to a list of one.
    let v = client
        .execute_with(bulk, json!({ "org": org, "names": [] }))
        .await
        .expect("execute")
        .json;
    assert_eq!(v, json!({"data": {"bulkCreateProjects": []}}));
    let v = client
        .execute(&format!(
            r#"mutation {{ bulkCreateProjects(orgId: "{org}", names: "Solo") {{ name }} }}"#
        ))
        .await
        .expect("execute");
    assert_eq!(
        v,
        json!({"data": {"bulkCreateProjects": [{"name": "Solo"}]}})
    );
}

#[tokio::test]
async fn bulk_create_is_all_or_nothing() {
    let t = world("database_per_tenant").await;
    let (rec, client) = acme(&t).await;
    let org = create_org(&client, "Acme Corp").await;
    // The 500th name has the same identifier as the first: the unique constraint refuses it.
    let mut names: Vec<String> = (1..500).map(|i| format!("Project {i}")).collect();
    names.push("project-1".to_owned());
    let v = client
        .execute_with(
            "mutation($org: ID!, $names: [String!]!) { bulkCreateProjects(orgId: $org, names: $names) { id } }",
            json!({ "org": org, "names": names }),
        )
        .await
        .expect("execute").json;
    assert_eq!(v["data"], Value::Null, "{v}");
    assert_eq!(code(&v), "UNIQUE_VIOLATION", "{v}");
    assert_eq!(v["errors"][0]["path"], json!(["bulkCreateProjects"]));
    let message = v["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        !message.contains("tb_project") && !message.contains("constraint"),
        "{message}"
    );
    assert!(project_names(&t, &rec).await.is_empty());
}

#[tokio::test]
async fn a_failing_mutation_rolls_back_the_whole_operation() {
    let t = world("database_per_tenant").await;
    let (rec, client) = acme(&t).await;
    let v = client
        .execute(r#"mutation { a: createOrganization(name: "Twice") { id } b: createOrganization(name: "Twice") { id } c: createOrganization(name: "Never") { id } }"#)
        .await
        .expect("execute");
    assert_eq!(v["data"], Value::Null, "{v}");
    assert_eq!(errors(&v).len(), 1, "{v}");
    assert_eq!(code(&v), "UNIQUE_VIOLATION");
    assert_eq!(v["errors"][0]["path"], json!(["b"]));
    let c = t.admin_client(&rec).await.expect("admin");
    let n: i64 = c
        .query_one("SELECT count(*) FROM tb_organization", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0, "the first createOrganization was rolled back");

    // One at a time they succeed; the second of the same name is the clear error.
    create_org(&client, "Twice").await;
    let v = client
        .execute(r#"mutation { createOrganization(name: "Twice") { id } }"#)
        .await
        .expect("execute");
    assert_eq!(
        errors(&v),
        vec![(
            "UNIQUE_VIOLATION".to_owned(),
            "`createOrganization`: a record with the same unique value already exists".to_owned()
        )]
    );
}

#[tokio::test]
async fn tasks_are_updated_and_projects_deleted() {
    let t = world("database_per_tenant").await;
    let (rec, client) = acme(&t).await;
    let org = create_org(&client, "Acme Corp").await;
    let v = client
        .execute(&format!(
            r#"mutation {{ bulkCreateProjects(orgId: "{org}", names: ["Busy", "Idle"]) {{ id }} }}"#
        ))
        .await
        .expect("execute");
    let busy = v["data"]["bulkCreateProjects"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let idle = v["data"]["bulkCreateProjects"][1]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let admin = t.admin_client(&rec).await.expect("admin");
    let task: String = admin
        .query_one(
            "INSERT INTO tb_task (tenant_id, fk_project, title, identifier) SELECT $1, pk_project, 'Ship', 'ship' FROM tb_project WHERE id = $2::text::uuid RETURNING id::text",
            &[&rec.id, &busy],
        )
        .await
        .expect("task")
        .get(0);

    let update = "mutation($id: ID!, $s: TaskStatus!) { updateTaskStatus(id: $id, status: $s) { id title status } }";
    let v = client
        .execute_with(update, json!({ "id": task, "s": "IN_PROGRESS" }))
        .await
        .expect("execute")
        .json;
    assert_eq!(
        v,
        json!({"data": {"updateTaskStatus": {"id": task, "title": "Ship", "status": "in_progress"}}})
    );
    // Enum coercion: an unknown value never reaches SQL.
    let v = client
        .execute_with(update, json!({ "id": task, "s": "FINISHED" }))
        .await
        .expect("execute")
        .json;
    assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    assert!(v.get("data").is_none(), "{v}");
    // Nothing to update: a non-null result with nothing to return.
    let v = client
        .execute_with(
            update,
            json!({ "id": "00000000-0000-4000-8000-000000000000", "s": "DONE" }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    assert_eq!(v["data"], Value::Null);

    let delete = "mutation($id: ID!) { deleteProject(id: $id) }";
    // A project with tasks is still referenced: refused, and still there.
    let v = client
        .execute_with(delete, json!({ "id": busy }))
        .await
        .expect("execute")
        .json;
    assert_eq!(
        errors(&v),
        vec![(
            "FOREIGN_KEY_VIOLATION".to_owned(),
            "`deleteProject`: the record is still referenced by other records".to_owned()
        )]
    );
    assert_eq!(project_names(&t, &rec).await, vec!["Busy", "Idle"]);
    let v = client
        .execute_with(delete, json!({ "id": idle }))
        .await
        .expect("execute")
        .json;
    assert_eq!(v, json!({"data": {"deleteProject": idle}}));
    let v = client
        .execute_with(delete, json!({ "id": idle }))
        .await
        .expect("execute")
        .json;
    assert_eq!(v, json!({"data": {"deleteProject": null}}));
    assert_eq!(project_names(&t, &rec).await, vec!["Busy"]);
}

#[tokio::test]
async fn bad_input_is_refused_before_any_write() {
    let t = world_with(
        "database_per_tenant",
        "[limits]\nmax_string_length = 40\nmax_list_length = 3\n",
    )
    .await;
    let (rec, client) = acme(&t).await;
    let org = create_org(&client, "Acme Corp").await;

    let long = "x".repeat(41);
    let v = client
        .execute_with(
            "mutation($n: String!) { createOrganization(name: $n) { id } }",
            json!({ "n": long }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(
        errors(&v),
        vec![(
            "BAD_USER_INPUT".to_owned(),
            "argument `name` holds a string longer than 40 characters".to_owned()
        )]
    );
    let c = t.admin_client(&rec).await.expect("admin");
    let org_names = || async {
        c.query("SELECT name FROM tb_organization ORDER BY name", &[])
            .await
            .expect("organizations")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        org_names().await,
        ["Acme Corp"],
        "the over-long organization was not written"
    );
    let v = client
        .execute_with(
            "mutation($org: ID!, $n: [String!]!) { bulkCreateProjects(orgId: $org, names: $n) { id } }",
            json!({ "org": org, "n": ["a", "b", "c", "d"] }),
        )
        .await
        .expect("execute").json;
    assert_eq!(
        errors(&v),
        vec![(
            "BAD_USER_INPUT".to_owned(),
            "argument `names` holds a list of 4 items; at most 3 are accepted".to_owned()
        )]
    );
    // Non-null: a null name is a variable coercion error; a null inside the list too.
    for (m, vars) in [
        ("mutation($n: String!) { createOrganization(name: $n) { id } }", json!({ "n": null })),
        (
            "mutation($org: ID!, $n: [String!]!) { bulkCreateProjects(orgId: $org, names: $n) { id } }",
            json!({ "org": org, "n": ["a", null] }),
        ),
    ] {
        let v = client.execute_with(m, vars).await.expect("execute").json;
        assert_eq!(code(&v), "BAD_USER_INPUT", "{v}");
    }
    assert_eq!(org_names().await, ["Acme Corp"]);
    assert!(
        project_names(&t, &rec).await.is_empty(),
        "no project of the refused lists was written"
    );
    // SQL-looking text is data.
    let hostile = "'); DROP TABLE x;--";
    let v = client
        .execute_with(
            "mutation($org: ID!, $n: String!) { createProject(orgId: $org, name: $n) { name } }",
            json!({ "org": org, "n": hostile }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(v, json!({"data": {"createProject": {"name": hostile}}}));
    assert_eq!(project_names(&t, &rec).await, vec![hostile]);
}

#[tokio::test]
async fn mutations_need_post_and_respect_rbac() {
    let t = world_with(
        "database_per_tenant",
        "[rbac]\n\"Mutation.deleteProject\" = [\"admin\"]\n",
    )
    .await;
    let (_rec, client) = acme(&t).await;
    let r = client
        .get(
            "/graphql?query=mutation%20%7B%20createOrganization(name%3A%20%22G%22)%20%7B%20id%20%7D%20%7D",
            Some("application/json"),
        )
        .await
        .expect("get");
    assert_eq!(r.status, 405, "{}", r.text);
    let v = client
        .execute(r#"mutation { deleteProject(id: "00000000-0000-4000-8000-000000000000") }"#)
        .await
        .expect("execute");
    assert_eq!(code(&v), "FORBIDDEN", "{v}");
    assert_eq!(v["errors"][0]["path"], json!(["deleteProject"]));
}

#[tokio::test]
async fn a_broken_mutation_statement_stops_the_start_up() {
    let sdl = std::fs::read_to_string(crate::harness::example_dir().join("schema.graphql"))
        .expect("schema")
        .replace(
            "INSERT INTO tb_organization (",
            "INSERT INTO tb_organisation (",
        );
    let path = std::env::temp_dir().join(format!("fraiseql-broken-{}.graphql", std::process::id()));
    std::fs::write(&path, sdl).expect("write schema");
    let t = fraiseql_testing::TestTenancy::new(
        "database_per_tenant",
        &crate::harness::example_dir().join("migrations/tenant"),
        &path,
        "",
    )
    .await
    .expect("world");
    t.create_tenant("acme").await.expect("tenant");
    let e = t
        .client()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    assert!(
        e.contains("Mutation.createOrganization: @mutation statement does not prepare: relation \"tb_organisation\" does not exist"),
        "{e}"
    );
}
