//! Aggregates (`@aggregate`): the SQL planned for the SaaS example's dashboards (snapshots) and
//! the errors a client sees.

use serde_json::json;

use crate::tests::{plan_in, render};
use crate::tests_where::example;
use crate::*;

fn plan_with(
    b: &fraiseql_schema::SchemaBundle,
    q: &str,
    vars: serde_json::Value,
) -> Result<Plan, PlanError> {
    plan_in(b, q, vars, PlanLimits::default(), &AllowAll)
}

#[test]
fn tasks_per_project_and_status_with_where_having_order_and_limit() {
    let p = plan_with(
        &example(),
        r#"query($since: DateTime) {
          tasksAggregate(
            where: {createdAt: {gte: $since}, title: {neq: "draft"}}
            groupBy: {projectId: true, status: true}
            having: {count: {gte: 2}, _or: [{estimate_sum: {gt: 10}}, {estimate_max: {isnull: true}}]}
            orderBy: [{count: DESC}, {estimate_avg: ASC}]
            limit: 10
          ) { projectId status count estimate_sum estimate_avg estimate_min estimate_max __typename }
        }"#,
        json!({"since": "2026-01-01T00:00:00Z"}),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p), @r#"
    -- tasksAggregate
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('projectId', t0."project_id", 'status', t0."status", 'count', count(*), 'estimate_sum', sum(t0."estimate"), 'estimate_avg', avg(t0."estimate"), 'estimate_min', min(t0."estimate"), 'estimate_max', max(t0."estimate"), '__typename', 'TaskAggregate'::text) AS j, row_number() OVER (ORDER BY count(*) DESC, avg(t0."estimate"), t0."project_id", t0."status") AS n FROM "v_task" t0 WHERE (t0."created_at" >= $1 AND t0."title" <> $2) GROUP BY t0."project_id", t0."status" HAVING (count(*) >= $3 AND (sum(t0."estimate") > $4 OR max(t0."estimate") IS NULL)) ORDER BY count(*) DESC, avg(t0."estimate"), t0."project_id", t0."status" LIMIT 10) t1
    -- params: ["2026-01-01T00:00:00Z", "draft", "2", "10"] nullable: false
    "#);
}

#[test]
fn time_buckets_are_truncated_in_utc() {
    let p = plan_with(
        &example(),
        "{ byDay: tasksAggregate(groupBy: {createdAt_day: true}) { createdAt_day count }
           byWeek: tasksAggregate(groupBy: {createdAt_week: true}, orderBy: {createdAt_week: DESC}) { createdAt_week count }
           byMonth: tasksAggregate(groupBy: {createdAt_month: true, status: true}) { status createdAt_month count }
           byHour: tasksAggregate(groupBy: {createdAt_hour: true}) { createdAt_hour } }",
        json!({}),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p), @r#"
    -- byDay
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('createdAt_day', to_char(date_trunc('day', (t0."created_at")::timestamptz, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'count', count(*)) AS j, row_number() OVER (ORDER BY date_trunc('day', (t0."created_at")::timestamptz, 'UTC')) AS n FROM "v_task" t0 GROUP BY date_trunc('day', (t0."created_at")::timestamptz, 'UTC') ORDER BY date_trunc('day', (t0."created_at")::timestamptz, 'UTC') LIMIT 1000) t1
    -- params: [] nullable: false
    -- byWeek
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('createdAt_week', to_char(date_trunc('week', (t0."created_at")::timestamptz, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'count', count(*)) AS j, row_number() OVER (ORDER BY date_trunc('week', (t0."created_at")::timestamptz, 'UTC') DESC) AS n FROM "v_task" t0 GROUP BY date_trunc('week', (t0."created_at")::timestamptz, 'UTC') ORDER BY date_trunc('week', (t0."created_at")::timestamptz, 'UTC') DESC LIMIT 1000) t1
    -- params: [] nullable: false
    -- byMonth
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('status', t0."status", 'createdAt_month', to_char(date_trunc('month', (t0."created_at")::timestamptz, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'count', count(*)) AS j, row_number() OVER (ORDER BY date_trunc('month', (t0."created_at")::timestamptz, 'UTC'), t0."status") AS n FROM "v_task" t0 GROUP BY date_trunc('month', (t0."created_at")::timestamptz, 'UTC'), t0."status" ORDER BY date_trunc('month', (t0."created_at")::timestamptz, 'UTC'), t0."status" LIMIT 1000) t1
    -- params: [] nullable: false
    -- byHour
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('createdAt_hour', to_char(date_trunc('hour', (t0."created_at")::timestamptz, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) AS j, row_number() OVER (ORDER BY date_trunc('hour', (t0."created_at")::timestamptz, 'UTC')) AS n FROM "v_task" t0 GROUP BY date_trunc('hour', (t0."created_at")::timestamptz, 'UTC') ORDER BY date_trunc('hour', (t0."created_at")::timestamptz, 'UTC') LIMIT 1000) t1
    -- params: [] nullable: false
    "#);
}

#[test]
fn without_group_by_one_group_of_every_row() {
    // Task's fields read from `data` when the view's columns are not known: typed keys.
    let p = plan_with(
        &crate::tests::bundle(),
        r#"{ tasksAggregate(where: {status: {in: ["todo", "done"]}}, having: {count: {gt: 0}}) { count estimate_sum estimate_avg } }"#,
        json!({}),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p), @r#"
    -- tasksAggregate
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('count', count(*), 'estimate_sum', sum((t0."data"->>'estimate')::numeric), 'estimate_avg', avg((t0."data"->>'estimate')::numeric)) AS j, row_number() OVER () AS n FROM "v_task" t0 WHERE t0."data"->>'status' = ANY($1) HAVING count(*) > $2 LIMIT 1000) t1
    -- params: ["{\"todo\",\"done\"}", "0"] nullable: false
    "#);
}

#[test]
fn analytics_events_per_type_per_day() {
    let sdl = include_str!("../../../examples/saas/analytics/schema.graphql");
    let mut b = fraiseql_schema::build(sdl, "schema.graphql").expect("analytics schema");
    let mut v = fraiseql_schema::ViewColumns::default();
    for (col, pg, field) in [
        ("event_type", "text", "eventType"),
        ("recorded_at", "timestamp with time zone", "recordedAt"),
    ] {
        v.types.insert(col.to_owned(), pg.to_owned());
        v.fields.insert(field.to_owned(), col.to_owned());
    }
    b.catalog.columns.insert("AnalyticsEvent".to_owned(), v);
    let p = plan_with(
        &b,
        r#"query($from: DateTime!) {
          eventsAggregate(where: {recordedAt: {gte: $from}}, groupBy: {recordedAt_day: true, eventType: true},
                          orderBy: [{recordedAt_day: DESC}], limit: 30) { recordedAt_day eventType count }
        }"#,
        json!({"from": "2026-03-01T00:00:00Z"}),
    )
    .expect("plan");
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("a statement")
    };
    assert_eq!(s.database, "shared");
    insta::assert_snapshot!(render(&p), @r#"
    -- eventsAggregate
    SELECT coalesce(json_agg(t1.j ORDER BY t1.n), '[]'::json)::text FROM (SELECT json_build_object('recordedAt_day', to_char(date_trunc('day', (t0."recorded_at")::timestamptz, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'eventType', t0."event_type", 'count', count(*)) AS j, row_number() OVER (ORDER BY date_trunc('day', (t0."recorded_at")::timestamptz, 'UTC') DESC, t0."event_type") AS n FROM "v_analytics_event" t0 WHERE t0."recorded_at" >= $1 GROUP BY date_trunc('day', (t0."recorded_at")::timestamptz, 'UTC'), t0."event_type" ORDER BY date_trunc('day', (t0."recorded_at")::timestamptz, 'UTC') DESC, t0."event_type" LIMIT 30) t1
    -- params: ["2026-03-01T00:00:00Z"] nullable: false
    "#);
}

fn message(e: &PlanError) -> String {
    match e {
        PlanError::BadArgument { message, .. } | PlanError::Forbidden { message, .. } => {
            message.clone()
        }
        PlanError::TooComplex(m) | PlanError::Unsupported(m) => m.clone(),
    }
}

#[test]
fn a_key_must_be_grouped_to_be_selected_or_ordered() {
    let b = example();
    for q in [
        "{ tasksAggregate { status count } }",
        "{ tasksAggregate(groupBy: {status: false}) { status } }",
        "{ tasksAggregate(groupBy: {projectId: true}, orderBy: {createdAt_day: ASC}) { count } }",
    ] {
        let e = plan_with(&b, q, json!({})).expect_err(q);
        assert!(matches!(e, PlanError::BadArgument { .. }), "{q}: {e:?}");
        assert!(message(&e).contains("not grouped by"), "{q}: {e:?}");
        assert!(message(&e).contains("groupBy: {"), "{q}: {e:?}");
    }
}

#[test]
fn rbac_refuses_grouping_aggregating_filtering_and_ordering_on_a_denied_field() {
    struct NoEstimates;
    impl Access for NoEstimates {
        fn allows(&self, ty: &str, field: &str) -> bool {
            !matches!(
                (ty, field),
                ("Task", "estimate") | ("Task", "status") | ("TaskAggregate", "count")
            )
        }
    }
    let b = example();
    let cases = [
        (
            "{ tasksAggregate(groupBy: {status: true}) { projectId: __typename } }",
            "`groupBy.status` uses `Task.status`",
        ),
        (
            "{ tasksAggregate { estimate_sum } }",
            "`estimate_sum` uses `Task.estimate`",
        ),
        (
            "{ tasksAggregate(having: {estimate_max: {gt: 1}}) { __typename } }",
            "`having.estimate_max` filters on `Task.estimate`",
        ),
        (
            "{ tasksAggregate(orderBy: {estimate_avg: DESC}) { __typename } }",
            "`orderBy.estimate_avg` uses `Task.estimate`",
        ),
        (
            "{ tasksAggregate(where: {status: {eq: \"done\"}}) { __typename } }",
            "`where.status` filters on `Task.status`",
        ),
    ];
    for (q, want) in cases {
        let e = plan_in(&b, q, json!({}), PlanLimits::default(), &NoEstimates).expect_err(q);
        assert!(matches!(e, PlanError::Forbidden { .. }), "{q}: {e:?}");
        assert!(message(&e).starts_with(want), "{q}: {e:?}");
    }
    // A denied field of the aggregate type itself reads null, as any nested field.
    let p = plan_in(
        &b,
        "{ tasksAggregate(groupBy: {projectId: true}) { projectId count } }",
        json!({}),
        PlanLimits::default(),
        &NoEstimates,
    )
    .expect("plan");
    assert_eq!(
        p.denied,
        vec![vec!["tasksAggregate".to_owned(), "count".to_owned()]]
    );
    assert!(sql_text(&p).contains("'count', NULL"), "{}", sql_text(&p));
}

fn sql_text(p: &Plan) -> String {
    match &p.fields[0].kind {
        RootKind::Sql(s) => s.sql.clone(),
        other => panic!("a statement: {other:?}"),
    }
}

#[test]
fn groups_are_bounded_like_lists_and_entries_count_against_the_budget() {
    let b = example();
    let limits = PlanLimits {
        max_limit: 50,
        max_filter_nodes: 3,
        ..PlanLimits::default()
    };
    let e = plan_in(
        &b,
        "{ tasksAggregate(limit: 51) { count } }",
        json!({}),
        limits,
        &AllowAll,
    )
    .expect_err("limit");
    assert_eq!(
        message(&e),
        "argument `limit` must be between 0 and 50, got 51"
    );
    // Without a limit, at most max_limit groups, counted against max_rows.
    let p = plan_in(
        &b,
        "{ tasksAggregate { count } }",
        json!({}),
        limits,
        &AllowAll,
    )
    .expect("plan");
    assert_eq!(p.rows, 50);
    // groupBy (2) + orderBy (1) + having (count, gt: 2) = 5 entries > 3.
    let e = plan_in(
        &b,
        "{ tasksAggregate(groupBy: {status: true, projectId: true}, orderBy: {count: DESC}, having: {count: {gt: 1}}) { count } }",
        json!({}),
        limits,
        &AllowAll,
    )
    .expect_err("budget");
    assert!(matches!(e, PlanError::TooComplex(_)), "{e:?}");
    assert!(message(&e).contains("at most 3 filter entries"), "{e:?}");
    // Within the budget, the same shape plans.
    let roomy = PlanLimits {
        max_filter_nodes: 5,
        ..limits
    };
    plan_in(
        &b,
        "{ tasksAggregate(groupBy: {status: true, projectId: true}, orderBy: {count: DESC}, having: {count: {gt: 1}}) { count } }",
        json!({}),
        roomy,
        &AllowAll,
    )
    .expect("within the budget");
}
