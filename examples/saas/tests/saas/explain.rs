//! What PostgreSQL does with the statements the planner writes, on 100,000 rows (EXPLAIN
//! ANALYZE, as the tenant's role with its tenant context, `row_level`: every tenant's rows in
//! one table): `eq` filters on a column-backed field and on an indexed `data` key use their
//! index; page 5,000 of a connection is an index range scan, not a sort of everything.

use fraiseql::plan::{AllowAll, PlanLimits, RootKind};
use fraiseql::schema::apollo_compiler::request::coerce_variable_values;
use fraiseql::schema::apollo_compiler::response::JsonMap;
use fraiseql::schema::apollo_compiler::ExecutableDocument;
use fraiseql::schema::{Catalog, SchemaBundle};
use serde_json::{json, Value};

use crate::harness::world;

/// The statement and parameters the planner writes for `query`.
fn statement(
    schema: &SchemaBundle,
    catalog: &Catalog,
    query: &str,
    vars: Value,
) -> (String, Vec<String>) {
    let doc = ExecutableDocument::parse_and_validate(&schema.api, query, "q.graphql")
        .expect("valid query");
    let op = doc.operations.get(None).expect("one operation");
    let vars: JsonMap = serde_json::from_value(vars).expect("variables");
    let vars = coerce_variable_values(&schema.api, op, &vars).expect("coerced");
    let plan = fraiseql::plan::plan(
        &schema.api,
        catalog,
        &doc,
        op,
        &vars,
        PlanLimits::default(),
        &AllowAll,
    )
    .expect("plan");
    match &plan.fields[0].kind {
        RootKind::Sql(s) => (s.sql.clone(), s.params.clone()),
        other => panic!("a statement: {other:?}"),
    }
}

fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Every node of an EXPLAIN (FORMAT JSON) plan, depth first.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    for p in plan["Plans"].as_array().into_iter().flatten() {
        nodes(p, out);
    }
}

/// EXPLAIN ANALYZE of the prepared statement `sql` executed with `params`, as the server runs
/// it (a prepared statement, parameters bound), with the plan PostgreSQL picks first (custom)
/// and the generic one it may switch to later; both plans' nodes.
async fn explain(
    c: &tokio_postgres::Client,
    tenant_id: &str,
    sql: &str,
    params: &[String],
) -> Vec<Vec<Value>> {
    let mut plans = Vec::new();
    c.batch_execute(&format!("PREPARE q AS {sql}"))
        .await
        .expect("prepare");
    let args: Vec<String> = params.iter().map(|p| literal(p)).collect();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        c.batch_execute("BEGIN").await.expect("begin");
        c.execute(
            "SELECT set_config('app.tenant_id', $1, true), set_config('plan_cache_mode', $2, true)",
            &[&tenant_id, &mode],
        )
        .await
        .expect("context");
        let row = c
            .query_one(
                &format!(
                    "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q({})",
                    args.join(", ")
                ),
                &[],
            )
            .await
            .expect("explain");
        c.batch_execute("ROLLBACK").await.expect("rollback");
        let text: Value = row.get(0);
        let mut all = Vec::new();
        nodes(&text[0]["Plan"], &mut all);
        // The evidence, shown with `--no-capture`: each node, its index and rows.
        let summary: Vec<String> = all
            .iter()
            .map(|n| {
                format!(
                    "{} {} {} rows={} removed={} {} {}",
                    n["Node Type"].as_str().unwrap_or(""),
                    n["Relation Name"].as_str().unwrap_or(""),
                    n["Index Name"].as_str().unwrap_or(""),
                    n["Actual Rows"],
                    n["Rows Removed by Filter"],
                    n["Index Cond"].as_str().unwrap_or(""),
                    n["Filter"].as_str().unwrap_or("")
                )
            })
            .collect();
        eprintln!("{mode}:\n  {}", summary.join("\n  "));
        plans.push(all);
    }
    c.batch_execute("DEALLOCATE q").await.expect("deallocate");
    plans
}

fn index_scans(plan: &[Value]) -> Vec<String> {
    plan.iter()
        .filter(|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Index")))
        .filter_map(|n| n["Index Name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn filters_and_deep_pages_use_indexes_on_100k_rows() {
    let t = world("row_level").await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    let admin = t.admin_client(&a).await.expect("admin");
    // 100,000 tasks in one project of A; 20,000 of B's in the same tables; 100,000 notes (a
    // table whose JSON is stored, with expression indexes on two of its keys).
    for (rec, n) in [(&a, 100_000), (&b, 20_000)] {
        admin
            .batch_execute(&format!(
                "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('org', '{id}', 'Org');
                 INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
                   SELECT 'p', tenant_id, pk_org, 'P' FROM tb_organization WHERE tenant_id = '{id}';
                 INSERT INTO tb_task (identifier, tenant_id, fk_project, title, status, created_at)
                   SELECT 't' || i, p.tenant_id, p.pk_project, 'Task ' || i, (ARRAY['todo', 'in_progress', 'done'])[1 + i % 3],
                          '2026-01-01T00:00:00Z'::timestamptz + (i / 2) * interval '1 second'
                   FROM tb_project p, generate_series(1, {n}) i WHERE p.tenant_id = '{id}';",
                id = rec.id
            ))
            .await
            .expect("seed");
    }
    admin
        .batch_execute(
            "CREATE TABLE tb_note (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), data jsonb NOT NULL);
             CREATE VIEW v_note AS SELECT n.id, n.data FROM tb_note n;
             INSERT INTO tb_note (data)
               SELECT jsonb_build_object('category', 'c' || (i % 20000), 'rank', i) FROM generate_series(1, 100000) i;
             CREATE INDEX tb_note_category ON tb_note ((data->>'category'));
             CREATE INDEX tb_note_rank ON tb_note (((data->>'rank')::numeric));
             ANALYZE;",
        )
        .await
        .expect("notes");
    let client = {
        let mut c = t.client().await.expect("client");
        c.set_tenant("tenant_a");
        c
    };
    let engine = client.engine();
    let found = &engine.catalog().columns["Task"];
    assert_eq!(
        (found.fields.get("title"), found.fields.get("createdAt")),
        (Some(&"title".to_owned()), Some(&"created_at".to_owned())),
        "the start-up check found the columns holding Task's data keys"
    );
    let role = t.role_client(&a).await.expect("tenant role");
    let tenant = a.id.to_string();
    let project: String = admin
        .query_one(
            "SELECT id::text FROM tb_project WHERE tenant_id = $1::text::uuid",
            &[&tenant],
        )
        .await
        .expect("project")
        .get(0);

    // `eq` on a column-backed field (Task.title, a data key with a same-named column).
    let (sql, params) = statement(
        engine.schema(),
        engine.catalog(),
        r#"query($p: ID!) { project(id: $p) { tasks(where: {title: {eq: "Task 77777"}}) { id } } }"#,
        json!({ "p": project }),
    );
    assert!(sql.contains(r#"t1."title" = $"#), "{sql}");
    for plan in explain(&role, &tenant, &sql, &params).await {
        assert!(
            index_scans(&plan).contains(&"tb_task_title".to_owned()),
            "the title index: {plan:#?}"
        );
    }

    // `eq` on a `data` key with an expression index, as text and as a number.
    let notes = fraiseql::schema::build(
        "type Query { notes(limit: Int = 10): [Note!]! } type Note @view(name: \"v_note\") { id: ID! category: String! rank: Int! }",
        "notes.graphql",
    )
    .expect("schema");
    for (q, index) in [
        (
            r#"{ notes(where: {category: {eq: "c42"}}) { id } }"#,
            "tb_note_category",
        ),
        (
            r#"{ notes(where: {rank: {eq: 4242}}) { id } }"#,
            "tb_note_rank",
        ),
    ] {
        let (sql, params) = statement(&notes, &notes.catalog, q, json!({}));
        for plan in explain(&admin, &tenant, &sql, &params).await {
            assert!(
                index_scans(&plan).contains(&index.to_owned()),
                "{q}: {plan:#?}"
            );
        }
    }

    // Page 5,000 of 20: after the cursor of the 99,980th task (newest first).
    let id_at: String = admin
        .query_one(
            "SELECT id::text FROM tb_task WHERE tenant_id = $1::text::uuid ORDER BY created_at DESC, id DESC OFFSET 99979 LIMIT 1",
            &[&tenant],
        )
        .await
        .expect("row 99,980")
        .get(0);
    let v = client
        .execute_with(
            "query($p: ID!, $id: ID!) { project(id: $p) { tasksConnection(first: 1, where: {id: {eq: $id}}) { edges { cursor } } } }",
            json!({ "p": project, "id": id_at }),
        )
        .await
        .expect("cursor")
        .json;
    let cursor = v["data"]["project"]["tasksConnection"]["edges"][0]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let page = "query($p: ID!, $c: String) { project(id: $p) { tasksConnection(first: 20, after: $c) { edges { cursor node { id title } } pageInfo { hasNextPage hasPreviousPage } } } }";
    let r = client
        .execute_with(page, json!({ "p": project, "c": cursor }))
        .await
        .expect("page 5,000")
        .json;
    let edges = r["data"]["project"]["tasksConnection"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(edges.len(), 20);
    assert_eq!(
        edges[19]["node"]["title"], "Task 1",
        "the last page ends with the oldest task"
    );
    let (sql, params) = statement(
        engine.schema(),
        engine.catalog(),
        page,
        json!({ "p": project, "c": cursor }),
    );
    for plan in explain(&role, &tenant, &sql, &params).await {
        assert!(
            plan.iter()
                .all(|n| n["Node Type"] != "Sort" && n["Node Type"] != "Incremental Sort"),
            "no sort: {plan:#?}"
        );
        for n in plan.iter().filter(|n| n["Relation Name"] == "tb_task") {
            let touched = n["Actual Rows"].as_f64().unwrap_or(f64::MAX)
                + n["Rows Removed by Filter"].as_f64().unwrap_or(0.0);
            assert!(
                touched <= 1000.0,
                "no scan reads the rows before the page: {n:#}"
            );
        }
        let scans: Vec<&Value> = plan
            .iter()
            .filter(|n| n["Index Name"] == "tb_task_project_created")
            .collect();
        assert!(!scans.is_empty(), "the keyset index: {plan:#?}");
        for s in scans {
            let cond = s["Index Cond"].as_str().unwrap_or_default();
            assert!(
                cond.contains("ROW(created_at, id)") || cond.contains("created_at"),
                "the cursor is an index condition: {s:#}"
            );
            let rows = s["Actual Rows"].as_f64().unwrap_or(f64::MAX);
            assert!(
                rows <= 21.0,
                "reads the page, not the 99,980 rows before it: {s:#}"
            );
        }
    }
}
