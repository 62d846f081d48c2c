//! Relay connections end to end, under each tenancy strategy: a few hundred rows walked forwards
//! and backwards with no gap and no repeat while rows are inserted between pages, `pageInfo`
//! and `totalCount`, and forged, malformed and foreign cursors.

use std::collections::HashSet;

use fraiseql::engine::tenancy::TenantRecord;
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{code, world};

/// Creates an organization and a project for tenant `rec` with `tasks` tasks, three to a
/// creation time (so the key breaks ties); returns the project's id.
async fn project_with_tasks(t: &TestTenancy, rec: &TenantRecord, tasks: i32) -> String {
    let c = t.admin_client(rec).await.expect("admin client");
    let id = rec.id.to_string();
    c.batch_execute(&format!(
        "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('org', '{id}', 'Org');
         INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
           SELECT 'p', tenant_id, pk_org, 'P' FROM tb_organization WHERE tenant_id = '{id}';
         INSERT INTO tb_task (identifier, tenant_id, fk_project, title, status, created_at)
           SELECT 't' || i, p.tenant_id, p.pk_project, 'Task ' || lpad(i::text, 4, '0'),
                  (ARRAY['todo', 'in_progress', 'done'])[1 + i % 3],
                  '2026-01-01T00:00:00Z'::timestamptz + (i / 3) * interval '1 minute'
           FROM tb_project p, generate_series(1, {tasks}) i WHERE p.tenant_id = '{id}';"
    ))
    .await
    .expect("seed");
    c.query_one(
        "SELECT id::text FROM tb_project WHERE tenant_id = $1::text::uuid",
        &[&id],
    )
    .await
    .expect("project")
    .get(0)
}

/// Inserts a task of tenant `rec` created at `at`; returns its id.
async fn insert_task(t: &TestTenancy, rec: &TenantRecord, at: &str) -> String {
    let c = t.admin_client(rec).await.expect("admin client");
    c.query_one(
        "INSERT INTO tb_task (identifier, tenant_id, fk_project, title, created_at)
         SELECT 'n' || gen_random_uuid(), tenant_id, pk_project, 'Inserted', $2::text::timestamptz
         FROM tb_project WHERE tenant_id = $1::text::uuid RETURNING id::text",
        &[&rec.id.to_string(), &at],
    )
    .await
    .expect("insert task")
    .get(0)
}

/// The ids of tenant `rec`'s tasks, newest first (the connection's default order).
async fn ordered_ids(t: &TestTenancy, rec: &TenantRecord) -> Vec<String> {
    let c = t.admin_client(rec).await.expect("admin client");
    c.query(
        "SELECT id::text FROM tb_task WHERE tenant_id = $1::text::uuid ORDER BY created_at DESC, id DESC",
        &[&rec.id.to_string()],
    )
    .await
    .expect("ids")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

const PAGE: &str = "query($p: ID!, $first: Int, $after: String, $last: Int, $before: String, $o: [TaskOrder!]) {
  project(id: $p) { tasksConnection(first: $first, after: $after, last: $last, before: $before, orderBy: $o) {
    totalCount edges { cursor node { id title } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  } } }";

/// The project's `tasksConnection` page (`null` when the project is not visible).
async fn page(client: &TestClient, vars: Value) -> Value {
    let r = client.execute_with(PAGE, vars.clone()).await.expect("send");
    assert!(r.json.get("errors").is_none(), "{vars}: {}", r.text);
    r.json["data"]["project"]["tasksConnection"].clone()
}

fn edge_ids(p: &Value) -> Vec<String> {
    p["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("id").to_owned())
        .collect()
}

/// startCursor and endCursor are the first and last edges' cursors (null on an empty page).
fn check_cursors(p: &Value) {
    let edges = p["edges"].as_array().expect("edges");
    assert_eq!(
        p["pageInfo"]["startCursor"],
        edges.first().map_or(Value::Null, |e| e["cursor"].clone())
    );
    assert_eq!(
        p["pageInfo"]["endCursor"],
        edges.last().map_or(Value::Null, |e| e["cursor"].clone())
    );
}

each_strategy!(walks_forwards_and_backwards_with_no_gap_while_rows_arrive);
each_strategy!(forged_malformed_and_foreign_cursors);

async fn walks_forwards_and_backwards_with_no_gap_while_rows_arrive(strategy: &str) {
    let t = world(strategy).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let project = project_with_tasks(&t, &a, 301).await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");

    // Forwards, 17 to a page (newest first). Between pages, one task newer than any (behind
    // the cursor: never seen) and one older than any (ahead: seen at the end).
    let before_walk = ordered_ids(&t, &a).await;
    let (mut seen, mut after, mut pages) = (Vec::new(), Value::Null, 0);
    let mut behind = HashSet::new();
    loop {
        let p = page(&client, json!({"p": project, "first": 17, "after": after})).await;
        check_cursors(&p);
        assert_eq!(
            p["pageInfo"]["hasPreviousPage"],
            json!(pages > 0),
            "{strategy}"
        );
        seen.extend(edge_ids(&p));
        pages += 1;
        if p["pageInfo"]["hasNextPage"] == json!(false) {
            let total = ordered_ids(&t, &a).await.len();
            assert_eq!(p["totalCount"], json!(total), "{strategy}");
            break;
        }
        assert_eq!(
            edge_ids(&p).len(),
            17,
            "{strategy}: a full page before the last"
        );
        after = p["pageInfo"]["endCursor"].clone();
        behind.insert(insert_task(&t, &a, "2030-01-01T00:00:00Z").await);
        insert_task(&t, &a, &format!("2020-01-01T00:{:02}:00Z", 59 - pages)).await;
        assert!(pages < 100, "{strategy}: the walk does not end");
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{strategy}: a row was seen twice");
    assert_eq!(
        seen[..before_walk.len()],
        before_walk[..],
        "{strategy}: every row there before the walk, in order, no gap"
    );
    assert!(
        seen.iter().all(|id| !behind.contains(id)),
        "{strategy}: rows inserted behind the cursor are not seen"
    );
    assert_eq!(
        seen.len(),
        before_walk.len() + pages - 1,
        "{strategy}: rows inserted ahead of the cursor are seen"
    );

    // Backwards, 13 to a page from the end (oldest last). Between pages, one task older than
    // any (behind: never seen) and one newer than any (ahead: seen at the end).
    let before_walk = ordered_ids(&t, &a).await;
    let (mut seen, mut before, mut pages) = (Vec::new(), Value::Null, 0);
    let mut behind = HashSet::new();
    loop {
        let p = page(&client, json!({"p": project, "last": 13, "before": before})).await;
        check_cursors(&p);
        assert_eq!(p["pageInfo"]["hasNextPage"], json!(pages > 0), "{strategy}");
        let mut ids = edge_ids(&p);
        ids.extend(seen);
        seen = ids;
        pages += 1;
        if p["pageInfo"]["hasPreviousPage"] == json!(false) {
            break;
        }
        before = p["pageInfo"]["startCursor"].clone();
        behind.insert(insert_task(&t, &a, "2019-01-01T00:00:00Z").await);
        insert_task(&t, &a, &format!("2031-01-01T00:{pages:02}:00Z")).await;
        assert!(pages < 100, "{strategy}: the walk does not end");
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{strategy}: a row was seen twice");
    assert_eq!(
        seen[seen.len() - before_walk.len()..],
        before_walk[..],
        "{strategy}: every row there before the walk, in order, no gap"
    );
    assert!(seen.iter().all(|id| !behind.contains(id)), "{strategy}");
    assert_eq!(seen.len(), before_walk.len() + pages - 1, "{strategy}");

    // Another ordering, a filter, and the edges of a `last` page in the connection's order.
    let v = client
        .execute_with(
            r#"query($p: ID!) { project(id: $p) { tasksConnection(last: 3, orderBy: [TITLE_ASC], where: {status: {eq: "done"}, title: {startswith: "Task 02"}}) {
                 totalCount edges { node { title } } pageInfo { hasNextPage hasPreviousPage } } } }"#,
            json!({ "p": project }),
        )
        .await
        .expect("execute")
        .json;
    assert_eq!(
        v,
        json!({"data": {"project": {"tasksConnection": {
            "totalCount": 34,
            "edges": [{"node": {"title": "Task 0293"}}, {"node": {"title": "Task 0296"}}, {"node": {"title": "Task 0299"}}],
            "pageInfo": {"hasNextPage": false, "hasPreviousPage": true}
        }}}}),
        "{strategy}"
    );
}

/// `cursor` with its values (after the fingerprint) replaced by `f`'s.
fn forge(cursor: &str, f: impl FnOnce(&mut Vec<Value>)) -> String {
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16).expect("hex"))
        .collect();
    let mut items: Vec<Value> = serde_json::from_slice(&bytes).expect("a JSON array");
    f(&mut items);
    serde_json::to_vec(&items)
        .expect("json")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn forged_malformed_and_foreign_cursors(strategy: &str) {
    let t = world(strategy).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    let pa = project_with_tasks(&t, &a, 30).await;
    let pb = project_with_tasks(&t, &b, 30).await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    let first = page(&client, json!({"p": pa, "first": 5})).await;
    let a_cursor = first["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let a_ids: HashSet<String> = ordered_ids(&t, &a).await.into_iter().collect();

    let refused = |why: &str| format!("argument `after` is not a valid cursor: {why}");
    let orgs = client
        .execute("{ organizationsConnection(first: 1) { edges { cursor } } }")
        .await
        .expect("execute");
    let org_cursor = orgs["data"]["organizationsConnection"]["edges"][0]["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    for (vars, why) in [
        (
            json!({"p": pa, "first": 5, "after": "%%%"}),
            "it is not one this server made",
        ),
        (
            json!({"p": pa, "first": 5, "after": "7b7d"}),
            "it is not one this server made",
        ),
        (
            json!({"p": pa, "first": 5, "after": org_cursor}),
            "it was not made for this field and ordering",
        ),
        (
            json!({"p": pa, "first": 5, "after": a_cursor, "o": ["TITLE_ASC"]}),
            "it was not made for this field and ordering",
        ),
        (
            json!({"p": pa, "first": 5, "after": forge(&a_cursor, |v| v[1] = json!("not a time"))}),
            "it holds a value of the wrong type",
        ),
        (
            json!({"p": pa, "first": 5, "after": forge(&a_cursor, |v| v[2] = json!(42))}),
            "it holds a value of the wrong type",
        ),
        (
            json!({"p": pa, "first": 5, "after": forge(&a_cursor, |v| { v.pop(); })}),
            "it was not made for this field and ordering",
        ),
    ] {
        let r = client.execute_with(PAGE, vars.clone()).await.expect("send");
        assert_eq!(
            (code(&r.json), r.json["errors"][0]["message"].as_str()),
            ("BAD_USER_INPUT", Some(refused(why).as_str())),
            "{strategy}: {vars}: {}",
            r.text
        );
    }
    // A forged cursor of the right shape only moves where the page starts.
    let far = forge(&a_cursor, |v| v[1] = json!("2026-01-01T00:04:30+00:00"));
    let p = page(&client, json!({"p": pa, "first": 50, "after": far})).await;
    assert_eq!(
        edge_ids(&p).len(),
        14,
        "{strategy}: the 14 tasks created before 00:04:30"
    );

    // Tenant B replaying A's cursor: B's rows after that position, nothing of A's.
    client.set_tenant("tenant_b");
    let p = page(&client, json!({"p": pb, "first": 50, "after": a_cursor})).await;
    let ids = edge_ids(&p);
    assert!(
        !ids.is_empty() && ids.iter().all(|id| !a_ids.contains(id)),
        "{strategy}: {p}"
    );
    assert_eq!(p["totalCount"], json!(30), "{strategy}");
    let p = page(&client, json!({"p": pa, "first": 50, "after": a_cursor})).await;
    assert_eq!(p, Value::Null, "{strategy}: A's project is not B's");
}
