//! Aggregates end to end, under each tenancy strategy: `Query.tasksAggregate` (tasks per project
//! and status) checked against SQL computed on the tables, time buckets in UTC whatever the
//! session's time zone, `where` before and `having` after grouping, ordering by an aggregate,
//! `limit`, tenants kept apart, `[rbac]` and the bounds; and the analytics subgraph's
//! `eventsAggregate` (events per type per day) for the caller's tenant only.

use std::collections::BTreeMap;

use fraiseql::engine::tenancy::TenantRecord;
use fraiseql_testing::{TestClient, TestTenancy};
use serde_json::{json, Value};

use crate::harness::{assert_unreadable, code, example_dir, send, world, world_with};

/// Tenant A's tasks: (project, status, estimate, created_at). The instants straddle UTC days,
/// ISO weeks and months; some are written with an offset (`2026-03-01T23:30:00-02:00` is March
/// 2nd in UTC).
const A_TASKS: [(&str, &str, Option<i32>, &str); 8] = [
    ("alpha", "todo", Some(3), "2026-03-01T23:30:00-02:00"),
    ("alpha", "todo", Some(5), "2026-03-02T10:00:00Z"),
    ("alpha", "done", Some(8), "2026-03-09T00:00:00Z"),
    ("alpha", "done", None, "2026-03-08T23:59:59Z"),
    ("alpha", "in_progress", Some(2), "2026-04-01T00:00:00Z"),
    ("beta", "todo", Some(1), "2026-02-28T12:00:00Z"),
    ("beta", "done", Some(13), "2026-04-01T01:00:00+02:00"),
    ("beta", "done", Some(4), "2026-03-15T06:00:00Z"),
];

/// Tenant B's: the same statuses, other numbers.
const B_TASKS: [(&str, &str, Option<i32>, &str); 3] = [
    ("gamma", "todo", Some(100), "2026-03-02T05:00:00Z"),
    ("gamma", "todo", Some(100), "2026-03-02T06:00:00Z"),
    ("gamma", "done", Some(50), "2026-03-02T07:00:00Z"),
];

/// Arranges tenant `rec`'s organization, projects and `tasks` as the superuser, and sets its
/// database's time zone far from UTC (so a bucket in the session's zone would differ).
async fn seed(t: &TestTenancy, rec: &TenantRecord, tasks: &[(&str, &str, Option<i32>, &str)]) {
    let c = t.admin_client(rec).await.expect("admin client");
    let id = rec.id.to_string();
    c.batch_execute(&format!(
        "INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('org-{id}', '{id}', 'Org');"
    ))
    .await
    .expect("organization");
    for (i, (project, status, estimate, at)) in tasks.iter().enumerate() {
        c.execute(
            "INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
               SELECT $1, o.tenant_id, o.pk_org, $1 FROM tb_organization o WHERE o.tenant_id = $2::text::uuid
                 AND NOT EXISTS (SELECT 1 FROM tb_project p WHERE p.identifier = $1 AND p.tenant_id = o.tenant_id)",
            &[project, &id],
        )
        .await
        .expect("project");
        c.execute(
            "INSERT INTO tb_task (identifier, tenant_id, fk_project, title, status, estimate, created_at)
               SELECT $1, p.tenant_id, p.pk_project, $1, $2, $3, $4::text::timestamptz
               FROM tb_project p WHERE p.identifier = $5 AND p.tenant_id = $6::text::uuid",
            &[&format!("{project}-{i}"), status, estimate, at, project, &id],
        )
        .await
        .expect("task");
    }
    c.batch_execute(&format!(
        "ALTER DATABASE \"{}\" SET timezone TO 'Pacific/Kiritimati'",
        rec.database
    ))
    .await
    .expect("time zone");
}

/// Two tenants, A and B, seeded; a client (made after them) as tenant A.
async fn two_tenants(strategy: &str, extra: &str) -> (TestTenancy, TestClient, TenantRecord) {
    let t = world_with(strategy, extra).await;
    let a = t.create_tenant("tenant_a").await.expect("tenant a");
    let b = t.create_tenant("tenant_b").await.expect("tenant b");
    seed(&t, &a, &A_TASKS).await;
    seed(&t, &b, &B_TASKS).await;
    let mut client = t.client().await.expect("client");
    client.set_tenant("tenant_a");
    (t, client, a)
}

/// The query's one root field's list, panicking with the answer if there is none.
async fn groups(client: &TestClient, q: &str) -> Vec<Value> {
    let r = client.execute_with(q, json!({})).await.expect("execute");
    r.json["data"]
        .as_object()
        .and_then(|d| d.values().next())
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| panic!("{q}: {}", r.text))
}

/// A JSON number (or null) as f64, for comparing averages.
fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

each_strategy!(aggregates_match_sql);
each_strategy!(time_buckets_are_utc);
each_strategy!(tenants_never_see_each_others_groups);
each_strategy!(rbac_and_bounds_apply_to_aggregates);
each_strategy!(analytics_events_per_type_per_day);

async fn aggregates_match_sql(strategy: &str) {
    let (t, client, a) = two_tenants(strategy, "").await;
    let sql = t.admin_client(&a).await.expect("admin");
    let tenant = a.id.to_string();
    // Tasks per project and status, every aggregate, against the tables (as the superuser,
    // restricted to A by hand).
    let got = groups(
        &client,
        "{ tasksAggregate(groupBy: {projectId: true, status: true}, limit: 100) { projectId status count estimate_sum estimate_avg estimate_min estimate_max } }",
    )
    .await;
    let rows = sql
        .query(
            "SELECT p.id::text, t.status, count(*), sum(t.estimate), avg(t.estimate)::float8, min(t.estimate), max(t.estimate)
             FROM tb_task t JOIN tb_project p ON p.pk_project = t.fk_project
             WHERE t.tenant_id = $1::text::uuid GROUP BY 1, 2 ORDER BY 1, 2",
            &[&tenant],
        )
        .await
        .expect("sql");
    assert_eq!(got.len(), rows.len(), "{strategy}: {got:?}");
    assert_eq!(rows.len(), 5, "{strategy}: five (project, status) pairs");
    for (g, r) in got.iter().zip(&rows) {
        let want_avg: Option<f64> = r.get(4);
        assert_eq!(g["projectId"], json!(r.get::<_, String>(0)), "{strategy}");
        assert_eq!(g["status"], json!(r.get::<_, String>(1)), "{strategy}");
        assert_eq!(g["count"], json!(r.get::<_, i64>(2)), "{strategy}");
        assert_eq!(
            g["estimate_sum"],
            json!(r.get::<_, Option<i64>>(3)),
            "{strategy}: {g}"
        );
        assert_eq!(
            g["estimate_min"],
            json!(r.get::<_, Option<i32>>(5)),
            "{strategy}: {g}"
        );
        assert_eq!(
            g["estimate_max"],
            json!(r.get::<_, Option<i32>>(6)),
            "{strategy}: {g}"
        );
        match (num(&g["estimate_avg"]), want_avg) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{strategy}: {g} vs {y}"),
            (x, y) => assert_eq!(x, y, "{strategy}: {g}"),
        }
    }
    // No groupBy: one group of every row (of A only).
    assert_eq!(
        groups(
            &client,
            "{ tasksAggregate { count estimate_sum estimate_min estimate_max } }"
        )
        .await,
        [json!({"count": 8, "estimate_sum": 36, "estimate_min": 1, "estimate_max": 13})],
        "{strategy}"
    );
    // `where` before grouping, `having` after it, ordered by an aggregate, `limit`: as SQL.
    for limit in [1, 2, 3] {
        let q = format!(
            r#"{{ tasksAggregate(where: {{createdAt: {{gte: "2026-03-01T00:00:00Z"}}}}, groupBy: {{projectId: true, status: true}},
                 having: {{count: {{gte: 2}}}}, orderBy: {{estimate_sum: DESC}}, limit: {limit}) {{ projectId status count estimate_sum }} }}"#
        );
        let got = groups(&client, &q).await;
        let rows = sql
            .query(
                "SELECT p.id::text, t.status, count(*), sum(t.estimate)
                 FROM tb_task t JOIN tb_project p ON p.pk_project = t.fk_project
                 WHERE t.tenant_id = $1::text::uuid AND t.created_at >= '2026-03-01T00:00:00Z'
                 GROUP BY p.id, t.status HAVING count(*) >= 2
                 ORDER BY sum(t.estimate) DESC, p.id, t.status LIMIT $2",
                &[&tenant, &i64::from(limit)],
            )
            .await
            .expect("sql");
        let want: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"projectId": r.get::<_, String>(0), "status": r.get::<_, String>(1),
                       "count": r.get::<_, i64>(2), "estimate_sum": r.get::<_, Option<i64>>(3)})
            })
            .collect();
        assert_eq!(got, want, "{strategy}: limit {limit}");
    }
    // By hand: Beta's done tasks (13 + 4) lead; Beta's todo (February) is filtered out before
    // grouping, Alpha's in_progress (one task) after it.
    let top = groups(
        &client,
        r#"{ tasksAggregate(where: {createdAt: {gte: "2026-03-01T00:00:00Z"}}, groupBy: {status: true},
             having: {count: {gte: 2}}, orderBy: [{estimate_sum: DESC}]) { status count estimate_sum } }"#,
    )
    .await;
    assert_eq!(
        top,
        [
            json!({"status": "done", "count": 4, "estimate_sum": 25}),
            json!({"status": "todo", "count": 2, "estimate_sum": 8})
        ],
        "{strategy}"
    );
}

async fn time_buckets_are_utc(strategy: &str) {
    let (t, client, a) = two_tenants(strategy, "").await;
    // The tenant's sessions run 14 hours ahead of UTC; the buckets are UTC's all the same.
    let zone: String = t
        .role_client(&a)
        .await
        .expect("role client")
        .query_one("SELECT current_setting('TimeZone')", &[])
        .await
        .expect("time zone")
        .get(0);
    assert_eq!(zone, "Pacific/Kiritimati", "{strategy}");
    let day = |d: &str, n: i64| json!({"createdAt_day": format!("{d}T00:00:00Z"), "count": n});
    assert_eq!(
        groups(
            &client,
            "{ tasksAggregate(groupBy: {createdAt_day: true}) { createdAt_day count } }"
        )
        .await,
        [
            day("2026-02-28", 1),
            day("2026-03-02", 2),
            day("2026-03-08", 1),
            day("2026-03-09", 1),
            day("2026-03-15", 1),
            day("2026-03-31", 1),
            day("2026-04-01", 1),
        ],
        "{strategy}: days in UTC"
    );
    // ISO weeks start on Monday (2026-03-02 is one): Sunday the 8th is in the week of the 2nd.
    let week = |d: &str, n: i64| json!({"createdAt_week": format!("{d}T00:00:00Z"), "count": n});
    assert_eq!(
        groups(&client, "{ tasksAggregate(groupBy: {createdAt_week: true}, orderBy: {createdAt_week: DESC}) { createdAt_week count } }").await,
        [
            week("2026-03-30", 2),
            week("2026-03-09", 2),
            week("2026-03-02", 3),
            week("2026-02-23", 1),
        ],
        "{strategy}: weeks, latest first"
    );
    let month = |d: &str, status: &str, n: i64, sum: i64| json!({"createdAt_month": format!("{d}-01T00:00:00Z"), "status": status, "count": n, "estimate_sum": sum});
    assert_eq!(
        groups(&client, "{ tasksAggregate(groupBy: {createdAt_month: true, status: true}) { createdAt_month status count estimate_sum } }").await,
        [
            month("2026-02", "todo", 1, 1),
            month("2026-03", "done", 4, 25),
            month("2026-03", "todo", 2, 8),
            month("2026-04", "in_progress", 1, 2),
        ],
        "{strategy}: months (the task of 2026-04-01T01:00+02:00 is March's)"
    );
    assert_eq!(
        groups(&client, r#"{ tasksAggregate(where: {createdAt: {gte: "2026-03-02T00:00:00Z", lt: "2026-03-03T00:00:00Z"}}, groupBy: {createdAt_hour: true}) { createdAt_hour count } }"#).await,
        [
            json!({"createdAt_hour": "2026-03-02T01:00:00Z", "count": 1}),
            json!({"createdAt_hour": "2026-03-02T10:00:00Z", "count": 1})
        ],
        "{strategy}: hours"
    );
}

async fn tenants_never_see_each_others_groups(strategy: &str) {
    let (t, mut client, a) = two_tenants(strategy, "").await;
    let alpha: String = t
        .admin_client(&a)
        .await
        .expect("admin")
        .query_one(
            "SELECT id::text FROM tb_project WHERE identifier = 'alpha' AND tenant_id = $1::text::uuid",
            &[&a.id.to_string()],
        )
        .await
        .expect("alpha")
        .get(0);
    client.set_tenant("tenant_b");
    assert_eq!(
        groups(
            &client,
            "{ tasksAggregate(groupBy: {status: true}) { status count estimate_sum } }"
        )
        .await,
        [
            json!({"status": "done", "count": 1, "estimate_sum": 50}),
            json!({"status": "todo", "count": 2, "estimate_sum": 200})
        ],
        "{strategy}: B's groups only"
    );
    let q = format!(
        r#"{{ tasksAggregate(where: {{projectId: {{eq: "{alpha}"}}}}, groupBy: {{projectId: true}}) {{ projectId count }} }}"#
    );
    assert_eq!(
        groups(&client, &q).await,
        Vec::<Value>::new(),
        "{strategy}: A's project is invisible to B"
    );
    assert_eq!(
        groups(
            &client,
            "{ tasksAggregate(having: {count: {gt: 3}}) { count } }"
        )
        .await,
        Vec::<Value>::new(),
        "{strategy}: B has 3 tasks, not A's 8 + 3"
    );
    client.set_tenant("tenant_a");
    assert_eq!(
        groups(&client, "{ tasksAggregate { count } }").await,
        [json!({"count": 8})],
        "{strategy}"
    );
}

async fn rbac_and_bounds_apply_to_aggregates(strategy: &str) {
    let (t, mut client, _) = two_tenants(
        strategy,
        "[rbac]\n\"Task.estimate\" = [\"admin\"]\n[limits]\nmax_limit = 5\nmax_fields = 8\n",
    )
    .await;
    client.set_token(Some(t.token("tenant_a", &["viewer"]).expect("token")));
    for (q, at) in [
        (
            "{ tasksAggregate { estimate_sum } }",
            "`estimate_sum` uses `Task.estimate`",
        ),
        (
            "{ tasksAggregate(groupBy: {estimate: true}) { count } }",
            "`groupBy.estimate` uses `Task.estimate`",
        ),
        (
            "{ tasksAggregate(orderBy: {estimate_max: DESC}) { count } }",
            "`orderBy.estimate_max` uses `Task.estimate`",
        ),
        (
            "{ tasksAggregate(having: {estimate_avg: {gt: 1}}) { count } }",
            "`having.estimate_avg` filters on `Task.estimate`",
        ),
        (
            "{ tasksAggregate(where: {estimate: {gt: 1}}) { count } }",
            "`where.estimate` filters on `Task.estimate`",
        ),
    ] {
        let r = send(&client, q).await;
        assert_unreadable(
            &r,
            &format!("{at}, which you are not allowed to read"),
            &format!("{strategy}: {q}"),
        );
    }
    // Fields the role may read still group and count.
    assert_eq!(
        groups(
            &client,
            "{ tasksAggregate(groupBy: {status: true}) { status count } }"
        )
        .await
        .len(),
        3,
        "{strategy}"
    );
    client.set_token(Some(t.token("tenant_a", &["admin"]).expect("token")));
    assert_eq!(
        groups(&client, "{ tasksAggregate { estimate_sum } }").await,
        [json!({"estimate_sum": 36})],
        "{strategy}"
    );
    // Bounds: `limit` at most max_limit; without one, max_limit groups; groupBy entries count
    // against what max_fields leaves after the selection (8 - 2 fields = 6 entries).
    let r = send(&client, "{ tasksAggregate(limit: 6) { count } }").await;
    assert_eq!(
        (code(&r.json), r.json["errors"][0]["message"].as_str()),
        (
            "BAD_USER_INPUT",
            Some("argument `limit` must be between 0 and 5, got 6")
        ),
        "{strategy}: {}",
        r.text
    );
    assert_eq!(
        groups(
            &client,
            "{ tasksAggregate(groupBy: {createdAt_day: true}) { count } }"
        )
        .await
        .len(),
        5,
        "{strategy}: 7 days, max_limit 5"
    );
    let r = send(&client, "{ tasksAggregate(groupBy: {id: true, title: true, status: true, createdAt: true, createdAt_day: true, projectId: true, estimate: true}) { count } }").await;
    assert_eq!(code(&r.json), "QUERY_TOO_COMPLEX", "{strategy}: {}", r.text);
    assert!(r.text.contains("[limits] max_fields"), "{}", r.text);
    // Unknown keys are validation errors naming them.
    let r = send(
        &client,
        "{ tasksAggregate(groupBy: {colour: true}) { count } }",
    )
    .await;
    assert_eq!(
        code(&r.json),
        "GRAPHQL_VALIDATION_FAILED",
        "{strategy}: {}",
        r.text
    );
    assert!(r.text.contains("colour"), "{}", r.text);
}

async fn analytics_events_per_type_per_day(strategy: &str) {
    let t = world(strategy).await;
    t.create_tenant("tenant_a").await.expect("tenant a");
    t.create_tenant("tenant_b").await.expect("tenant b");
    let shared = t.shared.connect().await.expect("shared");
    for (tenant, kind, at) in [
        (
            "tenant_a",
            "analytics.project_created",
            "2026-03-01T23:30:00-02:00",
        ),
        (
            "tenant_a",
            "analytics.project_created",
            "2026-03-02T12:00:00Z",
        ),
        ("tenant_a", "analytics.task_done", "2026-03-02T18:00:00Z"),
        (
            "tenant_a",
            "analytics.project_created",
            "2026-03-03T00:00:01Z",
        ),
        (
            "tenant_b",
            "analytics.project_created",
            "2026-03-02T09:00:00Z",
        ),
        (
            "tenant_b",
            "analytics.project_created",
            "2026-03-02T10:00:00Z",
        ),
        ("tenant_b", "analytics.secret_b", "2026-03-02T10:00:00Z"),
    ] {
        shared
            .execute(
                "INSERT INTO tb_analytics_event (event_id, event_type, tenant_id, data, recorded_at) VALUES (gen_random_uuid(), $1, $2, '{}', $3::text::timestamptz)",
                &[&kind, &tenant, &at],
            )
            .await
            .expect("event");
    }
    // The analytics subgraph's schema over the same registry and shared database.
    let mut config = t.config.clone();
    config.schema.path = example_dir().join("analytics/schema.graphql");
    let mut client = TestClient::from_config(config)
        .await
        .expect("analytics client");
    let q = "{ eventsAggregate(groupBy: {recordedAt_day: true, eventType: true}) { recordedAt_day eventType count } }";
    let per_day = |tenant: &str| {
        let day = |d: &str, kind: &str, n: i64| json!({"recordedAt_day": format!("{d}T00:00:00Z"), "eventType": format!("analytics.{kind}"), "count": n});
        match tenant {
            "tenant_a" => vec![
                day("2026-03-02", "project_created", 2),
                day("2026-03-02", "task_done", 1),
                day("2026-03-03", "project_created", 1),
            ],
            _ => vec![
                day("2026-03-02", "project_created", 2),
                day("2026-03-02", "secret_b", 1),
            ],
        }
    };
    for tenant in ["tenant_a", "tenant_b"] {
        client.set_tenant(tenant);
        let got = groups(&client, q).await;
        assert_eq!(got, per_day(tenant), "{strategy}: {tenant}'s events only");
        // The same figures from the table, for the tenant by hand.
        let rows = shared
            .query(
                "SELECT event_type, count(*) FROM tb_analytics_event WHERE tenant_id = $1 GROUP BY 1 ORDER BY 1",
                &[&tenant],
            )
            .await
            .expect("sql");
        let want: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut seen: BTreeMap<String, i64> = BTreeMap::new();
        for g in &got {
            *seen
                .entry(g["eventType"].as_str().unwrap_or_default().to_owned())
                .or_default() += g["count"].as_i64().unwrap_or_default();
        }
        assert_eq!(seen, want, "{strategy}: {tenant}");
    }
    // A dashboard's busiest day first, with a `having` and a `where`.
    client.set_tenant("tenant_a");
    assert_eq!(
        groups(
            &client,
            r#"{ eventsAggregate(where: {eventType: {startswith: "analytics.project"}}, groupBy: {recordedAt_day: true},
                 having: {count: {gte: 1}}, orderBy: {count: DESC}, limit: 1) { recordedAt_day count } }"#
        )
        .await,
        [json!({"recordedAt_day": "2026-03-02T00:00:00Z", "count": 2})],
        "{strategy}"
    );
}
