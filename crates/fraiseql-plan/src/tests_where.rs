//! `where` filters and connections: the SQL planned for the SaaS example's queries (snapshots),
//! and the errors a client sees.

use fraiseql_schema::{SchemaBundle, SortKey, Target, ViewColumns};
use serde_json::json;

use crate::tests::{bundle, plan_in, render};
use crate::*;

/// The example's schema with the columns the engine finds in its views at start-up
/// (`migrations/tenant`), as `catalog_check.rs` reports them.
pub(crate) fn example() -> SchemaBundle {
    let mut b = bundle();
    type Cols = &'static [(&'static str, &'static str, Option<&'static str>)];
    let views: [(&str, Cols); 3] = [
        (
            "Organization",
            &[
                ("id", "uuid", Some("id")),
                ("identifier", "text", Some("identifier")),
                ("name", "text", Some("name")),
                ("subscription_tier", "text", Some("subscriptionTier")),
                ("created_at", "timestamp with time zone", Some("createdAt")),
                ("pk_org", "integer", None),
            ],
        ),
        (
            "Project",
            &[
                ("id", "uuid", Some("id")),
                ("identifier", "text", Some("identifier")),
                ("name", "text", Some("name")),
                ("created_at", "timestamp with time zone", Some("createdAt")),
                ("pk_project", "integer", None),
                ("fk_org", "integer", None),
            ],
        ),
        (
            "Task",
            &[
                ("id", "uuid", Some("id")),
                ("title", "text", Some("title")),
                ("status", "text", Some("status")),
                ("created_at", "timestamp with time zone", Some("createdAt")),
                ("project_id", "uuid", None),
                ("fk_project", "integer", None),
                ("estimate", "integer", Some("estimate")),
            ],
        ),
    ];
    for (ty, cols) in views {
        let mut v = ViewColumns::default();
        for (col, pg, field) in cols {
            v.types.insert((*col).to_owned(), (*pg).to_owned());
            if let Some(f) = field {
                v.fields.insert((*f).to_owned(), (*col).to_owned());
            }
        }
        b.catalog.columns.insert(ty.to_owned(), v);
    }
    b
}

fn plan_with(b: &SchemaBundle, q: &str, vars: serde_json::Value) -> Result<Plan, PlanError> {
    plan_in(b, q, vars, PlanLimits::default(), &AllowAll)
}

fn sql_of(p: &Plan) -> &SqlPlan {
    match &p.fields[0].kind {
        RootKind::Sql(s) => s,
        other => panic!("a statement: {other:?}"),
    }
}

fn bad(e: &PlanError) -> &str {
    match e {
        PlanError::BadArgument { message, .. } => message,
        other => panic!("a BAD_USER_INPUT error: {other:?}"),
    }
}

const UUID: &str = "5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b";

fn key(column: &str, desc: bool, nullable: bool) -> SortKey {
    SortKey {
        target: Target::Column(column.into()),
        desc,
        nullable,
    }
}

/// A cursor of the ordering `keys` of `type_name` holding `values` (as the server makes them).
fn cursor(
    b: &SchemaBundle,
    type_name: &str,
    keys: &[SortKey],
    values: &[serde_json::Value],
) -> String {
    let ty = &b.catalog.types[type_name];
    let fp = crate::cursor::Ordering::new(ty, keys).fingerprint();
    let mut items = vec![json!(fp)];
    items.extend(values.iter().cloned());
    json!(items)
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_operator_on_column_and_data_key_fields() {
    // Organization's fields have same-named columns (found at start-up); Member's do not.
    let p = plan_with(
        &example(),
        r#"query($since: DateTime!) {
          organizations(where: {
            name: {eq: "Acme", neq: "Beta", gt: "A", gte: "A", lt: "Z", lte: "Z", in: ["Acme", "Beta"], nin: ["Zeta"], isnull: false}
            subscriptionTier: {like: "p%", ilike: "P%", contains: "r_o%", icontains: "RO", startswith: "p", istartswith: "P", endswith: "o", iendswith: "O"}
            createdAt: {gte: $since, lt: "2030-01-01T00:00:00Z"}
            memberCount: {gt: 2}
          }) { name members(where: {createdAt: {gte: $since}, email: {iendswith: "@acme.test"}, name: {in: ["a", "b"]}, id: {eq: "m1"}, _not: {name: {isnull: true}}}) { name } }
        }"#,
        json!({"since": "2026-01-01T00:00:00Z"}),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p));
}

#[test]
fn combinators_nest_and_empty_ones_are_constants() {
    let p = plan_with(
        &example(),
        r#"{ organizations(where: {
              _or: [{name: {eq: "Acme"}}, {_and: [{subscriptionTier: {eq: "pro"}}, {_not: {name: {startswith: "Z"}}}]}]
              _and: []
              identifier: {}
            }) { name }
            none: organizations(where: {_or: []}) { name }
            all: organizations(where: {_or: [{}, {name: {eq: "x"}}]}) { name }
            never: organizations(where: {_not: {}}) { name } }"#,
        json!({}),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p));
}

#[test]
fn relation_filters_are_exists_over_the_target_view() {
    // A list relation (at least one project), a single relation (the project's organization),
    // and `where` on a nested list.
    let p = plan_with(
        &example(),
        r#"{ organizations(where: {projects: {name: {eq: "Alpha"}, tasks: {status: {in: ["todo", "done"]}}}}) {
               name projects(where: {organization: {subscriptionTier: {eq: "pro"}}}) { name }
             } }"#,
        json!({}),
    )
    .expect("plan");
    let s = sql_of(&p);
    assert!(
        s.reads.contains(&"Project".to_owned()) && s.reads.contains(&"Task".to_owned()),
        "a relation filter reads its view (the result cache must know): {:?}",
        s.reads
    );
    insta::assert_snapshot!(render(&p));
}

#[test]
fn values_are_typed_parameters_on_data_keys_and_column_types_on_columns() {
    // Without the start-up columns, `createdAt` is a `data` key: both sides are timestamptz;
    // `memberCount` (an @sql expression) gives the parameter its own type.
    let p = plan_with(
        &bundle(),
        r#"{ organizations(where: {createdAt: {gte: "2026-01-01T00:00:00Z"}, memberCount: {in: [1, 2]}, id: {eq: "x"}, name: {in: ["a"]}}) { name } }"#,
        json!({}),
    )
    .expect("plan");
    let s = sql_of(&p);
    assert!(
        s.sql
            .contains(r#"(t0."data"->>'created_at')::timestamptz >= $1::timestamptz"#),
        "{}",
        s.sql
    );
    assert!(
        s.sql.contains(r#"t0."data"->>'id' = $3"#),
        "ids compare as text on data keys: {}",
        s.sql
    );
    assert_eq!(
        s.params,
        ["2026-01-01T00:00:00Z", "{\"1\",\"2\"}", "x", "{\"a\"}"]
    );
    // With them: the columns, so their B-tree indexes serve.
    let p = plan_with(
        &example(),
        r#"{ organizations(where: {createdAt: {gte: "2026-01-01T00:00:00Z"}}) { name } }"#,
        json!({}),
    )
    .expect("plan");
    assert!(
        sql_of(&p).sql.contains(r#"t0."created_at" >= $1"#),
        "{}",
        sql_of(&p).sql
    );
}

#[test]
fn values_never_enter_the_sql() {
    let evil = "x'); DROP TABLE tb_task; --";
    let p = plan_with(
        &example(),
        "query($v: String!) { organizations(where: {name: {contains: $v}, _or: [{identifier: {eq: $v}}]}) { name } }",
        json!({"v": evil}),
    )
    .expect("plan");
    let s = sql_of(&p);
    assert!(!s.sql.contains("DROP"), "{}", s.sql);
    assert!(
        s.params
            .contains(&"%x'); DROP TABLE tb\\_task; --%".to_owned()),
        "{:?}",
        s.params
    );
}

#[test]
fn filters_are_bounded_in_depth_size_and_entries() {
    let b = example();
    // Nesting: each `_not` is a level.
    let mut w = json!({"name": {"eq": "x"}});
    for _ in 0..12 {
        w = json!({ "_not": w });
    }
    let e = plan_with(
        &b,
        "query($w: OrganizationWhereInput) { organizations(where: $w) { name } }",
        json!({ "w": w }),
    )
    .expect_err("too deep");
    assert!(
        matches!(&e, PlanError::TooComplex(m) if m.starts_with("`where._not._not._not") && m.ends_with("nests filters deeper than 12 levels ([limits] max_depth)")),
        "{e:?}"
    );
    // `in` lists: [limits] max_list_length.
    let limits = PlanLimits {
        max_list_length: 3,
        ..PlanLimits::default()
    };
    let e = plan_in(
        &b,
        r#"{ organizations(where: {name: {in: ["a", "b", "c", "d"]}}) { name } }"#,
        json!({}),
        limits,
        &AllowAll,
    )
    .expect_err("too long");
    assert_eq!(
        bad(&e),
        "`where.name.in` holds a list of 4 items; at most 3 are accepted ([limits] max_list_length)"
    );
    // Entries: what the selection budget leaves, shared by every filter of the operation.
    let q = r#"{ a: organizations(where: {name: {eq: "a", neq: "b"}}) { name } b: organizations(where: {name: {eq: "a"}, identifier: {eq: "b"}}) { name } }"#;
    let limits = |n| PlanLimits {
        max_filter_nodes: n,
        ..PlanLimits::default()
    };
    let e = plan_in(&b, q, json!({}), limits(6), &AllowAll).expect_err("7 entries");
    assert_eq!(
        e,
        PlanError::TooComplex("the operation's `where` filters (and aggregates' `groupBy`, `having`, `orderBy` entries) and fields exceed the selection budget ([limits] max_fields); at most 6 filter entries fit with this selection".into())
    );
    assert!(plan_in(&b, q, json!({}), limits(7), &AllowAll).is_ok());
}

#[test]
fn filtering_on_a_field_the_caller_may_not_read_is_forbidden() {
    struct NoTier;
    impl Access for NoTier {
        fn allows(&self, ty: &str, field: &str) -> bool {
            (ty, field) != ("Organization", "subscriptionTier")
        }
    }
    for (q, at) in [
        (
            r#"{ organizations(where: {subscriptionTier: {eq: "pro"}}) { name } }"#,
            "where.subscriptionTier",
        ),
        (
            r#"{ organizations(where: {_or: [{name: {eq: "a"}}, {_not: {subscriptionTier: {isnull: true}}}]}) { name } }"#,
            "where._or.1._not.subscriptionTier",
        ),
        (
            r#"{ projectsByOrg(orgId: "o", where: {organization: {subscriptionTier: {eq: "pro"}}}) { name } }"#,
            "where.organization.subscriptionTier",
        ),
        (
            r#"{ organizationsConnection(first: 2, where: {subscriptionTier: {eq: "pro"}}) { totalCount } }"#,
            "where.subscriptionTier",
        ),
    ] {
        let e = plan_in(&example(), q, json!({}), PlanLimits::default(), &NoTier).expect_err(q);
        let PlanError::Forbidden { message, path } = &e else {
            panic!("{q}: {e:?}")
        };
        assert_eq!(
            message,
            &format!(
                "`{at}` filters on `Organization.subscriptionTier`, which you are not allowed to read"
            ),
            "{q}"
        );
        assert_eq!(path.len(), 1, "{q}");
    }
}

#[test]
fn connection_first_page_and_after_a_cursor() {
    let b = example();
    let p = plan_with(
        &b,
        r#"{ organizationsConnection(first: 2, where: {subscriptionTier: {eq: "pro"}}) {
               totalCount edges { cursor node { id name } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
             } }"#,
        json!({}),
    )
    .expect("plan");
    insta::assert_snapshot!("connection_first_page", render(&p));
    let after = cursor(
        &b,
        "Organization",
        &[key("name", false, false)],
        &[json!("Acme"), json!(UUID)],
    );
    let p = plan_with(
        &b,
        "query($a: String) { organizationsConnection(first: 2, after: $a) { edges { node { name } } pageInfo { hasNextPage hasPreviousPage } } }",
        json!({ "a": after }),
    )
    .expect("plan");
    let s = sql_of(&p);
    assert!(
        s.sql.contains(r#"(t0."name", t0."id") > ($1, $2)"#),
        "one row comparison: an index range: {}",
        s.sql
    );
    insta::assert_snapshot!("connection_after_a_cursor", render(&p));
}

#[test]
fn connection_last_before_reads_backwards_and_puts_the_edges_back() {
    let b = example();
    let before = cursor(
        &b,
        "Task",
        &[key("created_at", true, false)],
        &[json!("2026-01-01T10:00:00.123456+00:00"), json!(UUID)],
    );
    let p = plan_with(
        &b,
        r#"query($b: String) { project(id: "5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b") { name tasksConnection(last: 20, before: $b,
              where: {status: {in: ["todo", "in_progress"]}, createdAt: {gte: "2026-01-01T00:00:00Z"}}) {
              edges { cursor node { title status } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }"#,
        json!({ "b": before }),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p));
}

#[test]
fn mixed_directions_and_nullable_keys_use_the_expanded_keyset() {
    let b = example();
    let keys = [
        key("subscription_tier", true, true),
        key("name", false, false),
    ];
    let ty = &b.catalog.types["Organization"];
    let o = crate::cursor::Ordering::new(ty, &keys);
    let all = vec![
        Some("$1".to_owned()),
        Some("$2".to_owned()),
        Some("$3".to_owned()),
    ];
    assert_eq!(
        o.after("t", &all, true),
        r#"(t."subscription_tier" < $1 OR (t."subscription_tier" = $1 AND (t."name" > $2 OR (t."name" = $2 AND t."id" > $3))))"#
    );
    // A NULL cursor value (NULLs sort first descending): the rows after are non-null ones, or
    // NULL ones further on.
    let null_first = vec![None, Some("$2".to_owned()), Some("$3".to_owned())];
    assert_eq!(
        o.after("t", &null_first, true),
        r#"(t."subscription_tier" IS NOT NULL OR (t."subscription_tier" IS NULL AND (t."name" > $2 OR (t."name" = $2 AND t."id" > $3))))"#
    );
    // Reversed (reading `last`/`before`), at or after: ascending, NULLs last.
    assert_eq!(
        o.reversed().after("t", &all, false),
        r#"((t."subscription_tier" > $1 OR t."subscription_tier" IS NULL) OR (t."subscription_tier" = $1 AND (t."name" < $2 OR (t."name" = $2 AND (t."id" < $3 OR t."id" = $3)))))"#
    );
}

#[test]
fn forged_malformed_and_foreign_cursors_are_refused() {
    let b = example();
    let q = "query($a: String, $o: [OrganizationOrder!]) { organizationsConnection(first: 2, after: $a, orderBy: $o) { totalCount } }";
    let name_asc = [key("name", false, false)];
    let valid = cursor(&b, "Organization", &name_asc, &[json!("Acme"), json!(UUID)]);
    assert!(plan_with(&b, q, json!({ "a": valid })).is_ok());
    let task = cursor(&b, "Task", &name_asc, &[json!("Acme"), json!(UUID)]);
    let cases = [
        (
            json!({"a": "not a cursor!"}),
            "it is not one this server made",
        ),
        (
            json!({"a": "5b5d"}),
            "it was not made for this field and ordering",
        ),
        (json!({"a": "5b"}), "it is not one this server made"),
        (
            json!({"a": valid, "o": ["CREATED_AT_DESC"]}),
            "it was not made for this field and ordering",
        ),
        (
            json!({ "a": task }),
            "it was not made for this field and ordering",
        ),
        (
            json!({"a": cursor(&b, "Organization", &name_asc, &[json!("Acme"), json!("'; DROP TABLE x; --")])}),
            "it holds a value of the wrong type",
        ),
        (
            json!({"a": cursor(&b, "Organization", &name_asc, &[json!(null), json!(UUID)])}),
            "it holds a value of the wrong type",
        ),
        (json!({"a": "A".repeat(5000)}), "it is too long"),
    ];
    for (vars, why) in cases {
        let e = plan_with(&b, q, vars.clone()).expect_err("refused");
        assert_eq!(
            bad(&e),
            format!("argument `after` is not a valid cursor: {why}"),
            "{vars}"
        );
    }
}

#[test]
fn connection_page_sizes_are_bounded_and_exclusive() {
    let b = example();
    for (q, msg) in [
        (
            "{ organizationsConnection(first: 2, last: 2) { totalCount } }",
            "give `first` or `last`, not both (a page is read from one end)",
        ),
        (
            "{ organizationsConnection(first: -1) { totalCount } }",
            "argument `first` must be between 0 and 1000, got -1",
        ),
        (
            r#"{ project(id: "p") { tasksConnection(last: 101) { totalCount } } }"#,
            "argument `last` must be between 0 and 100, got 101",
        ),
    ] {
        let e = plan_with(&b, q, json!({})).expect_err(q);
        assert_eq!(bad(&e), msg, "{q}");
    }
    // Without first or last: the largest page (and one more row, to tell if more follow).
    let p = plan_with(
        &b,
        r#"{ project(id: "p") { tasksConnection { edges { cursor } } } }"#,
        json!({}),
    )
    .expect("plan");
    assert!(
        sql_of(&p).params == ["p"] && sql_of(&p).sql.contains("LIMIT 101)"),
        "{:?}",
        sql_of(&p).params
    );
}

#[test]
fn the_api_schema_gets_where_inputs_and_relay_types() {
    let sdl = bundle().api.to_string();
    let block = |start: &str| -> String {
        let at = sdl.find(start).unwrap_or_else(|| panic!("{start} missing"));
        let end = sdl[at..].find("\n}\n").map_or(sdl.len(), |e| at + e + 3);
        sdl[at..end].to_owned()
    };
    let query_line = |name: &str| -> String {
        let lines: Vec<&str> = sdl.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("{name}(")))
            .unwrap_or_else(|| panic!("{name} missing"));
        let end = (at..lines.len())
            .find(|i| lines[*i].trim_start().starts_with(')'))
            .unwrap_or(at);
        lines[at..=end].join("\n")
    };
    let excerpt = [
        query_line("organizations"),
        query_line("organizationsConnection"),
        query_line("tasksConnection"),
        block("input OrganizationWhereInput"),
        block("input StringFilter"),
        block("input DateTimeFilter"),
        block("type OrganizationConnection"),
        block("type OrganizationEdge"),
        block("type PageInfo"),
    ]
    .join("\n");
    insta::assert_snapshot!(excerpt);
}

#[test]
fn where_on_a_list_in_another_database_goes_into_its_statement() {
    let p = plan_with(
        &bundle(),
        r#"{ project(id: "5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b") { analytics(where: {eventType: {startswith: "project."}}) { eventType } } }"#,
        json!({}),
    )
    .expect("plan");
    let s = sql_of(&p);
    let CallKind::Federated(f) = &s.calls[0].kind else {
        panic!("a federated call");
    };
    assert!(
        f.sql.contains(r#"t1."data"->>'event_type' LIKE $2"#) && f.params[1] == "project.%",
        "{}\n{:?}",
        f.sql,
        f.params
    );
    assert!(!s.sql.contains("event_type"), "{}", s.sql);
}
