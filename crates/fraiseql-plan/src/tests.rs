//! Snapshots of the SQL generated for the SaaS example's queries.

use apollo_compiler::request::coerce_variable_values;
use apollo_compiler::response::JsonMap;
use apollo_compiler::ExecutableDocument;
use fraiseql_schema::SchemaBundle;

use crate::*;

pub(crate) const EXAMPLE_SDL: &str = include_str!("../../../examples/saas/schema.graphql");

pub(crate) fn bundle() -> SchemaBundle {
    fraiseql_schema::build(EXAMPLE_SDL, "schema.graphql").expect("example schema")
}

fn plan_of(query: &str, vars: serde_json::Value) -> Result<Plan, PlanError> {
    plan_in(&bundle(), query, vars, PlanLimits::default(), &AllowAll)
}

/// Plans `query` against `b` with `limits` and `access`.
pub(crate) fn plan_in(
    b: &SchemaBundle,
    query: &str,
    vars: serde_json::Value,
    limits: PlanLimits,
    access: &dyn Access,
) -> Result<Plan, PlanError> {
    let doc =
        ExecutableDocument::parse_and_validate(&b.api, query, "q.graphql").expect("valid query");
    let op = doc.operations.get(None).expect("one operation");
    let vars: JsonMap = serde_json::from_value(vars).expect("vars");
    let vars = coerce_variable_values(&b.api, op, &vars).expect("coerced");
    plan(&b.api, &b.catalog, &doc, op, &vars, limits, access)
}

/// The statements of a plan, one per line block, for snapshots.
pub(crate) fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for f in &plan.fields {
        out.push_str(&format!("-- {}\n", f.response_key));
        match &f.kind {
            RootKind::Sql(s) => {
                out.push_str(&s.sql);
                out.push_str(&format!(
                    "\n-- params: {:?} nullable: {}\n",
                    s.params, s.nullable
                ));
            }
            RootKind::Mutation(m) => {
                out.push_str(&m.sql);
                out.push_str(&format!("\n-- params: {:?}\n", m.params));
                render_output(&mut out, &m.output);
            }
            RootKind::Resolver(r) => {
                out.push_str(&format!("resolver {} args {:?}\n", r.coordinate, r.args));
                render_output(&mut out, &r.output);
            }
            other => out.push_str(&format!("{other:?}\n")),
        }
    }
    out
}

fn render_output(out: &mut String, o: &OutputPlan) {
    match o {
        OutputPlan::Readback { plan, list } => {
            out.push_str(&format!("-- read back (list: {list}):\n{}\n", plan.sql));
            out.push_str(&format!(
                "-- params: {:?} nullable: {} calls: {:?}\n",
                plan.params, plan.nullable, plan.calls
            ));
        }
        other => out.push_str(&format!("-- {other:?}\n")),
    }
}

#[test]
fn mutations_bind_arguments_and_read_back_the_selection() {
    let p = plan_of(
        r#"mutation($org: ID!, $names: [String!]!) {
          org: createOrganization(name: "Acme Corp") { id name }
          bulkCreateProjects(orgId: $org, names: $names) { name organization { name } tasks(limit: 5) { title } }
          updateTaskStatus(id: "t1", status: IN_PROGRESS) { status }
          deleteProject(id: "p1")
        }"#,
        serde_json::json!({"org": "o1", "names": ["A \"quoted\" name", "back\\slash", "x,y"]}),
    );
    insta::assert_snapshot!(render(&p.expect("plan")));
}

#[test]
fn resolver_fields_become_markers_with_their_selection() {
    let b = fraiseql_schema::build_with_resolvers(
        EXAMPLE_SDL,
        "schema.graphql",
        &[
            "Project.taskCount".to_owned(),
            "Query.tenantConfig".to_owned(),
        ]
        .into(),
    )
    .expect("schema");
    let p = plan_in(
        &b,
        "{ projectsByOrg(orgId: \"o\") { name n: taskCount } tenantConfig }",
        serde_json::json!({}),
        PlanLimits::default(),
        &AllowAll,
    )
    .expect("plan");
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("sql")
    };
    assert_eq!(s.calls.len(), 1);
    assert_eq!(s.calls[0].path, vec!["projectsByOrg", "n"]);
    assert!(p.needs_transaction_work());
    insta::assert_snapshot!(render(&p));
}

#[test]
fn argument_sizes_are_limited() {
    let limits = PlanLimits {
        max_string_length: 2,
        ..PlanLimits::default()
    };
    let e = plan_in(
        &bundle(),
        "mutation($n: [String!]!) { bulkCreateProjects(orgId: \"o\", names: $n) { id } }",
        serde_json::json!({"n": ["a", "b", "ccc"]}),
        limits,
        &AllowAll,
    )
    .expect_err("too long");
    assert_eq!(
        e,
        PlanError::BadArgument {
            message: "argument `names` holds a string longer than 2 characters".into(),
            path: vec!["bulkCreateProjects".into()],
        }
    );
}

#[test]
fn organizations() {
    let p = plan_of(
        "{ organizations { id name subscriptionTier memberCount } }",
        serde_json::json!({}),
    );
    insta::assert_snapshot!(render(&p.expect("plan")));
}

#[test]
fn projects_by_org_with_nested_organization() {
    let p = plan_of(
        "query($org: ID!) { projectsByOrg(orgId: $org) { name organization { name } taskCount } }",
        serde_json::json!({"org": "5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b"}),
    );
    insta::assert_snapshot!(render(&p.expect("plan")));
}

#[test]
fn single_object_by_id_aliases_fragments_and_typename() {
    let p = plan_of(
        r#"query Q($skip: Boolean = true) {
             org: organization(id: "5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b") {
               __typename ...F label: name tier: subscriptionTier @skip(if: $skip)
               ... on Organization { projects(limit: 2) { name tasks { title } } }
             }
             __typename
           }
           fragment F on Organization { id name }"#,
        serde_json::json!({}),
    );
    insta::assert_snapshot!(render(&p.expect("plan")));
}

#[test]
fn filters_are_parameters_and_paging_bounds_are_checked_integers() {
    let p = plan_of(
        r#"{ organizations(limit: 5, offset: 10, orderBy: [CREATED_AT_DESC, NAME_ASC], subscriptionTier: "x'); DROP TABLE tb_organization; --") { id } }"#,
        serde_json::json!({}),
    );
    let text = render(&p.expect("plan"));
    assert!(
        !text.contains("DROP TABLE tb_organization; --\" "),
        "value must only be a parameter"
    );
    // `limit`/`offset` reach the text only as the integers the planner parsed and bounded.
    assert!(text.contains("LIMIT 5 OFFSET 10)"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn introspection_and_sql_root_fields() {
    let p = plan_of(
        "{ __schema { queryType { name } } tenantConfig }",
        serde_json::json!({}),
    );
    insta::assert_snapshot!(render(&p.expect("plan")));
}

#[test]
fn limit_out_of_range_is_a_bad_argument_with_a_path() {
    let e = plan_of(
        "{ organizations(limit: 100000) { id } }",
        serde_json::json!({}),
    )
    .expect_err("too big");
    assert_eq!(
        e,
        PlanError::BadArgument {
            message: "argument `limit` must be between 0 and 1000, got 100000".into(),
            path: vec!["organizations".into()]
        }
    );
    let e = plan_of(
        "{ organizations { projects(limit: -1) { id } } }",
        serde_json::json!({}),
    )
    .expect_err("negative");
    assert!(
        matches!(e, PlanError::BadArgument { ref path, .. } if path == &["organizations", "projects"]),
        "{e:?}"
    );
}

#[test]
fn each_root_field_is_one_statement_however_deep() {
    let p = plan_of(
        "{ organizations(limit: 5) { projects(limit: 10) { tasks(limit: 10) { title } organization { members(limit: 10) { name } projects(limit: 10) { name } } } } a: organizations { id } }",
        serde_json::json!({}),
    )
    .expect("plan");
    assert_eq!(p.fields.len(), 2);
    for f in &p.fields {
        let RootKind::Sql(s) = &f.kind else {
            panic!("sql")
        };
        assert!(!s.sql.contains(';'));
    }
}

#[test]
fn wide_selections_use_row_to_json() {
    let fields: Vec<String> = (0..60).map(|i| format!("f{i}: name")).collect();
    let q = format!("{{ organizations {{ {} }} }}", fields.join(" "));
    let p = plan_of(&q, serde_json::json!({})).expect("plan");
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("sql")
    };
    assert!(
        s.sql.contains("row_to_json(r)") && s.sql.contains("AS \"f59\""),
        "{}",
        s.sql
    );
}

#[test]
fn denied_fields_are_null_and_reported() {
    struct NoCounts;
    impl Access for NoCounts {
        fn allows(&self, ty: &str, field: &str) -> bool {
            !matches!(
                (ty, field),
                ("Organization", "memberCount") | ("Query", "tenantConfig")
            )
        }
    }
    let b = bundle();
    let doc = ExecutableDocument::parse_and_validate(
        &b.api,
        "{ organizations { name memberCount } tenantConfig }",
        "q",
    )
    .expect("q");
    let op = doc.operations.get(None).expect("op");
    let vars = coerce_variable_values(&b.api, op, &JsonMap::new()).expect("vars");
    let p = plan(
        &b.api,
        &b.catalog,
        &doc,
        op,
        &vars,
        PlanLimits::default(),
        &NoCounts,
    )
    .expect("plan");
    assert_eq!(
        p.denied,
        vec![vec!["organizations".to_owned(), "memberCount".to_owned()]]
    );
    assert_eq!(p.fields[1].kind, RootKind::Denied);
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("sql")
    };
    assert!(
        s.sql.contains("'memberCount', NULL") && !s.sql.contains("tb_member"),
        "{}",
        s.sql
    );
}

#[test]
fn rbac_applies_to_objects_computed_by_resolvers() {
    struct NoSecrets;
    impl Access for NoSecrets {
        fn allows(&self, type_name: &str, field: &str) -> bool {
            (type_name, field) != ("Me", "secret")
        }
    }
    let sdl = "type Query { me: Me } type Me { name: String secret: String }";
    let b =
        fraiseql_schema::build_with_resolvers(sdl, "s.graphql", &["Query.me".to_owned()].into())
            .expect("schema");
    let p = plan_in(
        &b,
        "{ me { name secret } }",
        serde_json::json!({}),
        PlanLimits::default(),
        &NoSecrets,
    )
    .expect("plan");
    assert_eq!(p.denied, vec![vec!["me".to_owned(), "secret".to_owned()]]);
    let RootKind::Resolver(r) = &p.fields[0].kind else {
        panic!("resolver")
    };
    let OutputPlan::Value {
        projection: Some(proj),
        ..
    } = &r.output
    else {
        panic!("projection")
    };
    assert_eq!(proj.fields[1].source, Projected::Denied);
}

#[test]
fn null_and_unset_limits_keep_a_limit() {
    // `limit: null` takes the argument's default; an unset variable too (GraphQL's
    // CoerceArgumentValues), never "no LIMIT".
    for (q, vars) in [
        (
            "{ organizations(limit: null) { id } }",
            serde_json::json!({}),
        ),
        (
            "query($l: Int) { organizations(limit: $l) { id } }",
            serde_json::json!({}),
        ),
        (
            "query($l: Int) { organizations(limit: $l) { id } }",
            serde_json::json!({"l": null}),
        ),
    ] {
        let p = plan_of(q, vars).expect("plan");
        let RootKind::Sql(s) = &p.fields[0].kind else {
            panic!("sql")
        };
        // The bound is in the text (`row_bound`), never a parameter.
        assert!(s.sql.contains("LIMIT 50)"), "{q}: {}", s.sql);
        assert!(s.params.is_empty(), "{q}: {:?}", s.params);
    }
    // Nested lists too.
    let p = plan_of(
        "{ organizations { projects(limit: null) { id } } }",
        serde_json::json!({}),
    )
    .expect("plan");
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("sql")
    };
    assert!(
        s.sql.contains("LIMIT 100) t1") && s.sql.contains("LIMIT 50) t0"),
        "{}",
        s.sql
    );
    // A list without a `limit` argument and without a default is bounded by [limits] max_limit.
    let sdl = "type Query { all: [T!]! } type T @view(name: \"v\") { id: ID! }";
    let b = fraiseql_schema::build(sdl, "s.graphql").expect("schema");
    let p = plan_in(
        &b,
        "{ all { id } }",
        serde_json::json!({}),
        PlanLimits::default(),
        &AllowAll,
    )
    .expect("plan");
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("sql")
    };
    assert!(
        s.sql.contains("LIMIT 1000)") && s.params.is_empty(),
        "{}",
        s.sql
    );
    // No default to fall back on: refused.
    let sdl = "type Query { all(limit: Int): [T!]! } type T @view(name: \"v\") { id: ID! }";
    let b = fraiseql_schema::build(sdl, "s.graphql").expect("schema");
    let e = plan_in(
        &b,
        "{ all(limit: null) { id } }",
        serde_json::json!({}),
        PlanLimits::default(),
        &AllowAll,
    )
    .expect_err("null without default");
    assert!(
        matches!(e, PlanError::BadArgument { ref message, .. } if message.contains("cannot be null")),
        "{e:?}"
    );
}

#[test]
fn the_rows_an_operation_may_produce_are_capped() {
    let limits = PlanLimits {
        max_rows: 1_000,
        ..PlanLimits::default()
    };
    let ok = plan_in(
        &bundle(),
        "{ organizations(limit: 10) { projects(limit: 10) { tasks(limit: 8) { id } } } }",
        serde_json::json!({}),
        limits,
        &AllowAll,
    );
    assert!(ok.is_ok(), "10 + 100 + 800 rows: {ok:?}");
    let e = plan_in(
        &bundle(),
        "{ organizations(limit: 10) { projects(limit: 10) { tasks(limit: 9) { id } } } }",
        serde_json::json!({}),
        limits,
        &AllowAll,
    )
    .expect_err("1010 rows");
    assert!(matches!(e, PlanError::TooComplex(_)), "{e:?}");
    // Every root field of the operation counts.
    let e = plan_in(
        &bundle(),
        "{ a: organizations(limit: 600) { id } b: organizations(limit: 600) { id } }",
        serde_json::json!({}),
        limits,
        &AllowAll,
    )
    .expect_err("1200 rows");
    assert!(matches!(e, PlanError::TooComplex(_)), "{e:?}");
}

#[test]
fn filtering_or_ordering_on_a_denied_field_is_forbidden() {
    struct NoTier;
    impl Access for NoTier {
        fn allows(&self, ty: &str, field: &str) -> bool {
            !matches!(
                (ty, field),
                ("Organization", "subscriptionTier") | ("Organization", "createdAt")
            )
        }
    }
    for q in [
        r#"{ organizations(subscriptionTier: "pro") { name } }"#,
        "{ organizations(orderBy: [CREATED_AT_DESC]) { name } }",
        r#"query($t: String) { organizations(subscriptionTier: $t) { name } }"#,
    ] {
        let e = plan_in(
            &bundle(),
            q,
            serde_json::json!({"t": "pro"}),
            PlanLimits::default(),
            &NoTier,
        )
        .expect_err(q);
        assert!(
            matches!(e, PlanError::Forbidden { ref message, ref path } if message.contains("Organization.") && path == &["organizations"]),
            "{q}: {e:?}"
        );
    }
    // The schema's default ordering and unset variables are not the caller's choice.
    for (q, vars) in [
        ("{ organizations { name } }", serde_json::json!({})),
        (
            "query($t: String) { organizations(subscriptionTier: $t) { name } }",
            serde_json::json!({}),
        ),
    ] {
        assert!(
            plan_in(&bundle(), q, vars, PlanLimits::default(), &NoTier).is_ok(),
            "{q}"
        );
    }
}

#[test]
fn entities_of_one_database_are_one_statement_with_key_lookups() {
    let p = plan_of(
        "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on Organization { name } ... on Project { name } } }",
        serde_json::json!({"r": [
            {"__typename": "Project", "id": "00000000-0000-4000-8000-000000000001"},
            {"__typename": "Organization", "id": "00000000-0000-4000-8000-000000000002"},
        ]}),
    )
    .expect("plan");
    insta::assert_snapshot!(render(&p));
}

#[test]
fn federated_fields_in_another_database_become_calls_with_their_statement() {
    let p = plan_of(
        "{ project(id: \"00000000-0000-4000-8000-000000000001\") { name analytics(limit: 2) { eventType } } }",
        serde_json::json!({}),
    )
    .expect("plan");
    let RootKind::Sql(s) = &p.fields[0].kind else {
        panic!("a statement: {p:?}");
    };
    assert_eq!(s.calls.len(), 1);
    let CallKind::Federated(f) = &s.calls[0].kind else {
        panic!("a federated call");
    };
    assert_eq!(f.database, "shared");
    assert_eq!(f.params[0], "", "$1 is filled with the lookup values");
    insta::assert_snapshot!(format!(
        "{}\n-- then on {}:\n{}\n-- params: {:?}",
        s.sql, f.database, f.sql, f.params
    ));
}

fn plan_subscription_of(
    query: &str,
    vars: serde_json::Value,
    access: &dyn Access,
) -> Result<SubscriptionPlan, PlanError> {
    let b = bundle();
    let doc =
        ExecutableDocument::parse_and_validate(&b.api, query, "q.graphql").expect("valid query");
    let op = doc.operations.get(None).expect("one operation");
    let vars: JsonMap = serde_json::from_value(vars).expect("vars");
    let vars = coerce_variable_values(&b.api, op, &vars).expect("coerced");
    plan_subscription(
        &b.api,
        &b.catalog,
        &doc,
        op,
        &vars,
        PlanLimits::default(),
        access,
    )
}

#[test]
fn subscriptions_read_a_batch_of_changed_rows_by_key_with_their_filters() {
    let p = plan_subscription_of(
        "subscription($org: ID) { created: projectCreated(orgId: $org) { id name organization { name } } }",
        serde_json::json!({ "org": "7d9c0b57-0000-4000-8000-000000000000" }),
        &AllowAll,
    )
    .expect("plan");
    assert_eq!(p.response_key, "created");
    assert_eq!(p.field, "projectCreated");
    assert_eq!(
        (p.change.entity.as_str(), p.change.operation.as_str()),
        ("Project", "CREATE")
    );
    insta::assert_snapshot!(p.read.sql, @r#"SELECT coalesce(json_agg((SELECT json_build_object('id', t2."data"->'id', 'name', t2."data"->'name', 'organization', (SELECT json_build_object('name', t3."data"->'name') FROM "v_organization" t3 WHERE t3."pk_org" = t2."fk_org" LIMIT 1)) FROM "v_project" t2 WHERE t2."id" = t1.v AND t2."org_id" = $2 LIMIT 1) ORDER BY t0.n), '[]'::json)::text FROM json_array_elements_text($1::json) WITH ORDINALITY AS t0(v, n) CROSS JOIN LATERAL (SELECT (json_populate_record(NULL::"v_project", json_build_object('id', t0.v)))."id" AS v OFFSET 0) t1"#);
    assert_eq!(
        p.read.params,
        ["", "7d9c0b57-0000-4000-8000-000000000000"],
        "$1 (the keys) is filled per batch"
    );
    // Without the argument, no filter.
    let p = plan_subscription_of(
        "subscription { taskStatusChanged { id status } }",
        serde_json::json!({}),
        &AllowAll,
    )
    .expect("plan");
    assert!(!p.read.sql.contains("project_id"), "{}", p.read.sql);
    assert_eq!(p.read.params, [""]);
}

#[test]
fn subscriptions_filter_changed_rows_with_where() {
    let p = plan_subscription_of(
        r#"subscription($w: ProjectWhereInput) { projectCreated(where: $w) { id } }"#,
        serde_json::json!({ "w": { "name": { "startswith": "Q" }, "_not": { "name": { "eq": "Quiet" } } } }),
        &AllowAll,
    )
    .expect("plan");
    insta::assert_snapshot!(p.read.sql, @r#"SELECT coalesce(json_agg((SELECT json_build_object('id', t2."data"->'id') FROM "v_project" t2 WHERE t2."id" = t1.v AND (t2."data"->>'name' LIKE $2 AND NOT (t2."data"->>'name' = $3)) LIMIT 1) ORDER BY t0.n), '[]'::json)::text FROM json_array_elements_text($1::json) WITH ORDINALITY AS t0(v, n) CROSS JOIN LATERAL (SELECT (json_populate_record(NULL::"v_project", json_build_object('id', t0.v)))."id" AS v OFFSET 0) t1"#);
    assert_eq!(p.read.params[0], "", "$1 (the keys) is filled per batch");
    // Subscribers with other filters do not share the statement: the values are parameters.
    assert_eq!(p.read.params.len(), 3, "{:?}", p.read.params);
    // A field the role may not read cannot be filtered on.
    let denied = plan_subscription_of(
        r#"subscription { projectCreated(where: {name: {eq: "x"}}) { id } }"#,
        serde_json::json!({}),
        &Deny("Project", "name"),
    )
    .expect_err("forbidden");
    assert!(denied.to_string().contains("name"), "{denied}");
}

struct Deny(&'static str, &'static str);

impl Access for Deny {
    fn allows(&self, t: &str, f: &str) -> bool {
        (t, f) != (self.0, self.1)
    }
}

#[test]
fn subscriptions_follow_rbac_like_queries() {
    let q = "subscription { projectCreated { id name } }";
    let denied = plan_subscription_of(
        q,
        serde_json::json!({}),
        &Deny("Subscription", "projectCreated"),
    )
    .expect_err("root denied");
    insta::assert_snapshot!(denied.to_string(), @"you are not allowed to subscribe to `Subscription.projectCreated` ([rbac])");
    let p = plan_subscription_of(q, serde_json::json!({}), &Deny("Project", "name")).expect("plan");
    assert_eq!(
        p.denied,
        vec![vec!["projectCreated".to_owned(), "name".to_owned()]]
    );
    assert!(p.read.sql.contains("'name', NULL"), "{}", p.read.sql);
    // A query planner refuses subscription operations with a pointer to the transports.
    let err = plan_of(q, serde_json::json!({})).expect_err("not a query");
    assert!(err.to_string().contains("graphql-transport-ws"), "{err}");
}
