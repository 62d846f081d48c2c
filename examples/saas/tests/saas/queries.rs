//! The SaaS example's query API against a real PostgreSQL, end to end through the router.

use serde_json::{json, Value};

use crate::harness::{self, setup};

fn codes(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn organizations_returns_the_seeds_fields() {
    let s = setup().await;
    let v = s
        .client
        .execute("{ organizations { id name subscriptionTier memberCount } }")
        .await
        .expect("execute");
    assert!(v.get("errors").is_none(), "{v}");
    let orgs = v["data"]["organizations"].as_array().expect("list");
    let names: Vec<&str> = orgs
        .iter()
        .map(|o| o["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["Acme Corp", "Beta LLC", "Zeta Inc"],
        "ordered by name by default"
    );
    assert_eq!(orgs[0]["subscriptionTier"], "pro");
    assert_eq!(orgs[0]["memberCount"], 5);
    assert_eq!(orgs[1]["memberCount"], 0);
    assert_eq!(orgs[0]["id"], json!(s.acme));
    // Keys come in selection order (checked on the raw text: serde_json's map sorts keys).
    let r = s
        .client
        .execute_with(
            "{ organizations(limit: 1) { name id memberCount subscriptionTier } }",
            json!({}),
        )
        .await
        .expect("execute");
    let at = |k: &str| r.text.find(&format!("\"{k}\"")).expect("key present");
    assert!(
        at("name") < at("id")
            && at("id") < at("memberCount")
            && at("memberCount") < at("subscriptionTier"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn projects_by_org_with_nested_organization_and_task_count() {
    let s = setup().await;
    let r = s
        .client
        .execute_with(
            "query($org: ID!) { projectsByOrg(orgId: $org, limit: 500) { name organization { name } taskCount } }",
            json!({ "org": s.acme }),
        )
        .await
        .expect("execute");
    assert_eq!(r.status, 200, "{}", r.text);
    let projects = r.json["data"]["projectsByOrg"].as_array().expect("list");
    assert_eq!(projects.len(), 120);
    assert_eq!(
        projects[0],
        json!({"name": "Project 001", "organization": {"name": "Acme Corp"}, "taskCount": 3})
    );
    assert!(projects
        .iter()
        .all(|p| p["taskCount"] == 3 && p["organization"]["name"] == "Acme Corp"));
}

#[tokio::test]
async fn each_root_field_is_exactly_one_sql_statement() {
    let s = setup().await;
    let engine = s.client.engine();
    let before = engine.statements_executed();
    // 120 projects x (organization -> 5 members + 120 projects) x 3 tasks: thousands of objects.
    let v = s
        .client
        .execute_with(
            "query($org: ID!) { projectsByOrg(orgId: $org, limit: 150) { name tasks(limit: 5) { title } organization { memberCount members(limit: 5) { name } projects(limit: 150) { taskCount } } } }",
            json!({ "org": s.acme }),
        )
        .await
        .expect("execute")
        .json;
    assert!(v.get("errors").is_none(), "{v}");
    let projects = v["data"]["projectsByOrg"].as_array().expect("list");
    assert_eq!(projects.len(), 120);
    assert_eq!(projects[7]["tasks"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        projects[7]["organization"]["projects"]
            .as_array()
            .map(Vec::len),
        Some(120)
    );
    assert_eq!(
        engine.statements_executed() - before,
        1,
        "one root field, one statement"
    );

    let before = engine.statements_executed();
    let v = s
        .client
        .execute("{ a: organizations { name } b: organizations(limit: 1) { projects { name } } __typename }")
        .await
        .expect("execute");
    assert!(v.get("errors").is_none(), "{v}");
    assert_eq!(v["data"]["__typename"], "Query");
    assert_eq!(
        engine.statements_executed() - before,
        2,
        "two SQL root fields, two statements"
    );
}

#[tokio::test]
async fn single_object_by_id_fragments_aliases_and_directives() {
    let s = setup().await;
    let r = s
        .client
        .execute_with(
            r#"query Org($id: ID!, $withTier: Boolean = false) {
                 org: organization(id: $id) { __typename ...Basic tier: subscriptionTier @include(if: $withTier) }
                 missing: organization(id: "00000000-0000-4000-8000-000000000000") { id }
               }
               fragment Basic on Organization { name ... on Organization { memberCount } }"#,
            json!({ "id": s.acme }),
        )
        .await
        .expect("execute");
    assert_eq!(
        r.json,
        json!({"data": {"org": {"__typename": "Organization", "name": "Acme Corp", "memberCount": 5}, "missing": null}})
    );
}

#[tokio::test]
async fn ordering_paging_and_filters() {
    let s = setup().await;
    let v = s
        .client
        .execute(r#"{ organizations(orderBy: [NAME_DESC], limit: 2, offset: 1) { name } free: organizations(subscriptionTier: "free") { name } }"#)
        .await
        .expect("execute");
    assert_eq!(
        v["data"]["organizations"],
        json!([{"name": "Beta LLC"}, {"name": "Acme Corp"}])
    );
    assert_eq!(
        v["data"]["free"],
        json!([{"name": "Beta LLC"}, {"name": "Zeta Inc"}])
    );
}

#[tokio::test]
async fn get_requests_graphiql_and_probes() {
    let s = setup().await;
    let r = s
        .client
        .get(
            "/graphql?query=%7B%20organizations%20%7B%20name%20%7D%20%7D",
            None,
        )
        .await
        .expect("get");
    assert_eq!(r.status, 200);
    assert_eq!(r.json["data"]["organizations"][0]["name"], "Acme Corp");
    let r = s
        .client
        .get("/graphql", Some("text/html"))
        .await
        .expect("graphiql");
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains("GraphiQL") && !r.text.contains("https://"),
        "served locally"
    );
    let r = s
        .client
        .get("/graphiql/graphiql.min.js", None)
        .await
        .expect("asset");
    assert_eq!(r.status, 200);
    assert_eq!(
        s.client.get("/health", None).await.expect("health").status,
        200
    );
    let r = s.client.get("/ready", None).await.expect("ready");
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn bad_input_gets_spec_shaped_errors_and_the_server_stays_up() {
    let s = setup().await;
    let gql = Some("application/graphql-response+json");
    let leak = |text: &str| {
        for needle in ["SELECT", "json_build_object", "v_organization", "tb_", "$1"] {
            assert!(!text.contains(needle), "leaked {needle}: {text}");
        }
    };

    let r = s
        .client
        .post_raw("application/json", gql, b"{\"query\": ".to_vec())
        .await
        .expect("send");
    assert_eq!(
        (r.status, codes(&r.json)),
        (400, vec!["BAD_REQUEST".to_owned()]),
        "{}",
        r.text
    );
    assert_eq!(r.content_type, "application/graphql-response+json");

    let r = s
        .client
        .execute_with("{ organizations { id ", json!({}))
        .await
        .expect("send");
    assert_eq!(
        (r.status, codes(&r.json)),
        (400, vec!["GRAPHQL_PARSE_FAILED".to_owned()]),
        "{}",
        r.text
    );
    assert!(r.json["errors"][0]["locations"][0]["line"].is_number());
    assert!(r.json.get("data").is_none());

    let r = s
        .client
        .execute_with("{ organizations { nope } }", json!({}))
        .await
        .expect("send");
    assert_eq!(
        (r.status, codes(&r.json)),
        (400, vec!["GRAPHQL_VALIDATION_FAILED".to_owned()]),
        "{}",
        r.text
    );

    let r = s
        .client
        .execute_with(
            "query($n: Int) { organizations(limit: $n) { id } }",
            json!({"n": "ten"}),
        )
        .await
        .expect("send");
    assert_eq!(
        (r.status, codes(&r.json)),
        (400, vec!["BAD_USER_INPUT".to_owned()]),
        "{}",
        r.text
    );

    let mut deep = String::from("{ organizations { ");
    for i in 0..50 {
        deep.push_str(if i % 2 == 0 {
            "projects { "
        } else {
            "organization { "
        });
    }
    deep.push_str("name");
    deep.push_str(&" }".repeat(52));
    let r = s.client.execute_with(&deep, json!({})).await.expect("send");
    assert_eq!(
        (r.status, codes(&r.json)),
        (400, vec!["QUERY_TOO_COMPLEX".to_owned()]),
        "{}",
        r.text
    );

    let big = format!(
        "{{\"query\": \"{{ organizations {{ id }} }}\", \"x\": \"{}\"}}",
        "a".repeat(10 * 1024 * 1024)
    );
    let r = s
        .client
        .post_raw("application/json", gql, big.into_bytes())
        .await
        .expect("send");
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(codes(&r.json), vec!["BAD_REQUEST".to_owned()]);

    let r = s
        .client
        .post_raw("text/plain", gql, b"{}".to_vec())
        .await
        .expect("send");
    assert_eq!(r.status, 415);

    // SQL metacharacters are values, never SQL.
    let evil = "x'); DROP TABLE tb_organization; -- \" \\ ; /* $1 */";
    let r = s
        .client
        .execute_with(
            "query($t: String) { organizations(subscriptionTier: $t) { id } }",
            json!({"t": evil}),
        )
        .await
        .expect("send");
    assert_eq!(r.json, json!({"data": {"organizations": []}}));
    let r = s
        .client
        .execute_with(
            "query($id: ID!) { organization(id: $id) { id } }",
            json!({"id": evil}),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 200, "a field error is still a response with data");
    assert_eq!(
        codes(&r.json),
        vec!["BAD_USER_INPUT".to_owned()],
        "{}",
        r.text
    );
    assert_eq!(r.json["data"]["organization"], Value::Null);
    assert_eq!(r.json["errors"][0]["path"], json!(["organization"]));
    leak(&r.text);

    // Still up, data intact.
    let v = s
        .client
        .execute("{ organizations { name } }")
        .await
        .expect("send");
    assert_eq!(v["data"]["organizations"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn legacy_json_media_type_gets_200_for_request_errors() {
    let s = setup().await;
    let r = s
        .client
        .post_raw(
            "application/json",
            Some("application/json"),
            br#"{"query": "{ nope }"}"#.to_vec(),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(codes(&r.json), vec!["GRAPHQL_VALIDATION_FAILED".to_owned()]);
    let r = s
        .client
        .post_raw(
            "application/json",
            Some("text/csv"),
            br#"{"query": "{ __typename }"}"#.to_vec(),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 406);
}

#[tokio::test]
async fn a_real_graphql_client_builds_a_schema_from_our_introspection() {
    let s = setup().await;
    let python = std::env::var("FRAISEQL_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = harness::example_dir().join("tests/saas/client_schema.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("query")
        .output()
        .expect("run python (scripts/test.sh installs graphql-core)");
    assert!(
        out.status.success(),
        "graphql-core missing? {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let query = String::from_utf8(out.stdout).expect("utf8");
    let r = s
        .client
        .execute_with(&query, json!({}))
        .await
        .expect("introspect");
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(500)]);
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .arg("build")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(r.text.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let sdl = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sdl.contains("type Organization"), "{sdl}");
    assert!(
        sdl.contains("organizations(\n    limit: Int = 50\n"),
        "{sdl}"
    );
    assert!(sdl.contains("memberCount: Int!"), "{sdl}");
    assert!(
        !sdl.contains("@view") && !sdl.contains("v_organization"),
        "engine directives stay private"
    );
}
