use crate::*;

const SDL: &str = r#"
scalar DateTime
type Query {
  organizations(limit: Int = 50, offset: Int, orderBy: OrgOrder): [Organization!]!
  organization(id: ID!): Organization
  projectsByOrg(orgId: ID! @filter(key: "org_id")): [Project!]!
  version: String! @sql(expr: "version()")
}
enum OrgOrder { NAME @orderBy(key: "name") NEWEST @orderBy(column: "created_at", desc: true) }
type Organization @view(name: "v_organization") {
  id: ID!
  name: String!
  createdAt: DateTime
  subscriptionTier: String!
  memberCount: Int! @sql(expr: "(SELECT count(*) FROM tb_member m WHERE m.fk_org = {parent}.pk_org)")
  projects(limit: Int): [Project!]! @relation(column: "pk_org", references: "fk_org")
}
type Project @view(name: "app.v_project") {
  id: ID!
  name: String! @json(key: "title")
  organization: Organization! @relation(column: "fk_org", references: "pk_org")
  pk: Int! @column(name: "pk_project")
}
"#;

fn err(sdl: &str) -> String {
    build(sdl, "schema.graphql")
        .expect_err("schema should be rejected")
        .to_string()
}

#[test]
fn lowers_types_fields_and_root_fields() {
    let b = build(SDL, "schema.graphql").expect("valid schema");
    let org = &b.catalog.types["Organization"];
    assert_eq!(org.view.to_string(), "\"v_organization\"");
    assert_eq!(org.database, "tenant");
    assert_eq!(
        org.fields["subscriptionTier"],
        FieldSource::Json {
            key: "subscription_tier".into()
        }
    );
    assert!(
        matches!(&org.fields["memberCount"], FieldSource::Sql { scalar, .. } if scalar == "Int")
    );
    let FieldSource::Relation(projects) = &org.fields["projects"] else {
        panic!("relation")
    };
    assert!(projects.list);
    assert_eq!(
        projects.join,
        Some(Join {
            column: "pk_org".into(),
            references: "fk_org".into()
        })
    );
    let project = &b.catalog.types["Project"];
    assert_eq!(project.view.to_string(), "\"app\".\"v_project\"");
    assert_eq!(
        project.fields["name"],
        FieldSource::Json {
            key: "title".into()
        }
    );
    assert_eq!(
        project.fields["pk"],
        FieldSource::Column {
            name: "pk_project".into()
        }
    );

    let RootField::Rows(orgs) = &b.catalog.queries["organizations"] else {
        panic!("rows")
    };
    assert!(orgs.list && orgs.non_null);
    assert_eq!(orgs.args["limit"], ArgRole::Limit);
    let ArgRole::OrderBy(order) = &orgs.args["orderBy"] else {
        panic!("orderBy")
    };
    assert_eq!(
        order["NEWEST"],
        SortKey {
            target: Target::Column("created_at".into()),
            desc: true,
            nullable: true,
        }
    );
    let RootField::Rows(one) = &b.catalog.queries["organization"] else {
        panic!("rows")
    };
    assert_eq!(one.args["id"], ArgRole::Filter(Target::Column("id".into())));
    let RootField::Rows(by_org) = &b.catalog.queries["projectsByOrg"] else {
        panic!("rows")
    };
    assert_eq!(
        by_org.args["orgId"],
        ArgRole::Filter(Target::Key("org_id".into()))
    );
    assert!(matches!(
        &b.catalog.queries["version"],
        RootField::Sql { .. }
    ));
}

#[test]
fn api_schema_hides_the_engines_directives() {
    let b = build(SDL, "schema.graphql").expect("valid schema");
    let sdl = b.api.to_string();
    for hidden in [
        "@view",
        "@sql",
        "@relation",
        "v_organization",
        "pk_org",
        "directive @",
    ] {
        assert!(!sdl.contains(hidden), "{hidden} leaked into:\n{sdl}");
    }
    assert!(sdl.contains("memberCount: Int!"));
}

#[test]
fn mapping_mistakes_are_reported_with_their_coordinate() {
    insta::assert_snapshot!(
        err("type Query { a: A } type A { b: B } type B @view(name: \"v\") { x: Int }"),
        @"Query.a: type `A` has no @view, so it cannot be read from the database"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type A @view(name: \"v\") { b: A }"),
        @"A.b: field of object type `A` needs @relation(column: ..., references: ...) or @federated(lookup: ...) to say how it joins"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type A @view(name: \"v; drop table x\") { x: Int }"),
        @r#"A: @view(name: "v; drop table x") is not a view name (`view` or `schema.view`, plain identifiers)"#
    );
    insta::assert_snapshot!(
        err("type Query { a(limit: Int): A } type A @view(name: \"v\") { x: Int }"),
        @"Query.a(limit:): limit, offset, orderBy and where only apply to list fields"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type A @view(name: \"v\") { x: Int @sql(expr: \"1; select 2\") }"),
        @"A.x: @sql(expr:) must be one expression (no `;`)"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type A @view(name: \"v\") { x: Int @json(key: \"x\") @column(name: \"x\") }"),
        @"A.x: use only one of @json, @column"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Mutation { m: Int } type A @view(name: \"v\") { x: Int }"),
        @"Mutation.m: needs @mutation(sql: ...) or @mutation(function: ...), or a Rust mutation resolver registered for it"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Mutation { m(name: String): A @mutation(sql: \"SELECT $nmae\") } type A @view(name: \"v\") { x: Int }"),
        @"Mutation.m: @mutation(sql:) `$nmae` is not an argument of the field (arguments: name)"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Mutation { m: B @mutation(sql: \"SELECT 1\") } type B { x: Int } type A @view(name: \"v\") { x: Int }"),
        @"Mutation.m: returns `B`, which has no @view: a SQL mutation returns a @view type (read back by its key) or a scalar"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Mutation { m: Int @mutation(sql: \"SELECT 1\", function: \"f\") } type A @view(name: \"v\") { x: Int }"),
        @"Mutation.m: @mutation needs exactly one of `sql` or `function`"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Subscription { s: Int } type A @view(name: \"v\") { x: Int }"),
        @r#"Subscription.s: a subscription field needs @event(entity: "Type", operation: "CREATE" | "UPDATE"): the changes it delivers"#
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Subscription { s: [A!]! @event(operation: \"CREATE\") } type A @view(name: \"v\") { x: Int }"),
        @"Subscription.s: a subscription field returns one object of a type with @view (`Project!`), one per changed row; `[A!]!` is not"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Subscription { s: A! @event(operation: \"DELETE\") } type A @view(name: \"v\") { x: Int }"),
        @r#"Subscription.s: @event(operation: "DELETE") is not supported: a deleted row can no longer be read through its view, so neither row-level security nor the selection could be applied"#
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Subscription { s(limit: Int): A! @event(operation: \"CREATE\") } type A @view(name: \"v\") { x: Int }"),
        @"Subscription.s(limit:): limit, offset, orderBy and where only apply to list fields"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type Subscription { s: A! @event(entity: \"B\", operation: \"CREATE\") } type A @view(name: \"v\") { x: Int } type B @view(name: \"w\") { x: Int }"),
        @r#"Subscription.s: @event(entity: "B") but the field returns `A`: a subscription field delivers the changed rows of its own type"#
    );
}

#[test]
fn subscription_fields_are_lowered() {
    let sdl = format!(
        "{SDL}\n{}",
        r#"type Subscription {
  projectCreated(orgId: ID @filter(column: "org_id")): Project! @event(entity: "Project", operation: "CREATE")
  projectChanged(name: String @filter(key: "name")): Project @event(operation: "UPDATE")
}"#
    );
    let b = build(&sdl, "schema.graphql").expect("valid schema");
    let s = &b.catalog.subscriptions;
    assert_eq!(
        s["projectCreated"].change,
        Change {
            entity: "Project".into(),
            operation: "CREATE".into()
        }
    );
    assert!(!s["projectCreated"].rows.list && s["projectCreated"].rows.non_null);
    assert_eq!(
        s["projectCreated"].rows.args["orgId"],
        ArgRole::Filter(Target::Column("org_id".into()))
    );
    assert_eq!(s["projectChanged"].change.operation, "UPDATE");
    assert_eq!(
        s["projectChanged"].rows.args["name"],
        ArgRole::Filter(Target::Key("name".into()))
    );
    // Each also filters with `where`, generated like a list field's.
    assert_eq!(s["projectCreated"].rows.args["where"], ArgRole::Where);
    assert_eq!(s["projectChanged"].rows.args["where"], ArgRole::Where);
    // Clients see the type, not the directive.
    let api = b.api.to_string();
    assert!(
        api.contains("orgId: ID,") && api.contains("where: ProjectWhereInput,\n  ): Project!"),
        "{api}"
    );
    assert!(!api.contains("@event"), "{api}");
}

/// A mutation statement as the catalog holds it: wrapped to return the first column as JSON.
fn wrapped(sql: &str) -> String {
    format!("WITH m AS ({sql}\n) SELECT set_config('fraiseql.keys', coalesce(json_agg((SELECT e.value FROM json_each(row_to_json(m)) e LIMIT 1)), '[]'::json)::text, true) FROM m")
}

#[test]
fn mutations_and_resolvers_are_lowered() {
    let sdl = format!(
        "{SDL}\n{}",
        r#"type Mutation {
  createOrganization(name: String!): Organization! @mutation(sql: "INSERT INTO tb_organization (tenant_id, name) VALUES ($ctx.tenant_id, $name) RETURNING id")
  bulk(orgId: ID!, names: [String!]!): [Project!]! @mutation(function: "app.fn_bulk")
  remove(id: ID!): ID @mutation(sql: "DELETE FROM t WHERE id = $id RETURNING id")
  custom(x: Int): Organization
}"#
    );
    let resolvers: std::collections::BTreeSet<String> =
        ["Mutation.custom", "Project.pk", "Query.organization"]
            .into_iter()
            .map(str::to_owned)
            .collect();
    let b = build_with_resolvers(&sdl, "schema.graphql", &resolvers).expect("valid schema");
    let m = &b.catalog.mutations;
    assert_eq!(
        m["createOrganization"].action,
        MutationAction::Sql {
            database: "tenant".into(),
            sql: wrapped(
                "INSERT INTO tb_organization (tenant_id, name) VALUES ($1, $2) RETURNING id"
            ),
            params: vec![
                ParamSource::Context(ContextValue::TenantId),
                ParamSource::Arg("name".into())
            ],
        }
    );
    assert_eq!(
        m["createOrganization"].output,
        Output::Entity {
            target: "Organization".into(),
            list: false,
            non_null: true
        }
    );
    let MutationAction::Sql { sql, .. } = &m["bulk"].action else {
        panic!("sql")
    };
    assert_eq!(
        *sql,
        wrapped(r#"SELECT * FROM "app"."fn_bulk"("org_id" => $1, "names" => $2)"#)
    );
    assert_eq!(
        m["remove"].output,
        Output::Value {
            list: false,
            non_null: false
        }
    );
    assert_eq!(m["custom"].action, MutationAction::Resolver);
    assert_eq!(
        b.catalog.types["Project"].fields["pk"],
        FieldSource::Resolver
    );
    assert!(matches!(
        b.catalog.queries["organization"],
        RootField::Resolver(Output::Entity { .. })
    ));
    assert_eq!(b.catalog.types["Organization"].key_column, "id");
    // The API schema keeps the fields but not the SQL.
    let api = b.api.to_string();
    assert!(api.contains("createOrganization(name: String!): Organization!"));
    assert!(!api.contains("INSERT"), "{api}");

    let unknown: std::collections::BTreeSet<String> = ["Project.nope".to_owned()].into();
    let e = build_with_resolvers(SDL, "schema.graphql", &unknown).expect_err("unknown coordinate");
    assert!(
        e.to_string()
            .starts_with("Project.nope: a resolver is registered"),
        "{e}"
    );
}

#[test]
fn graphql_errors_are_reported() {
    let e = err("type Query { a: [Nope] }");
    assert!(e.contains("Nope"), "{e}");
    let e = err("type Query { a: [A] } type A @view(nam: \"v\") { x: Int }");
    assert!(e.contains("nam"), "{e}");
}

const AGGREGATE_SDL: &str = r#"
scalar DateTime
type Query {
  tasksAggregate: [TaskAggregate!]! @aggregate
}
enum Status { TODO DONE }
type Task @view(name: "v_task") {
  id: ID!
  status: Status!
  createdAt: DateTime!
  estimate: Int
  weight: Float @column(name: "weight")
  data: JSON
  tags: [String!]
}
scalar JSON
"#;

#[test]
fn aggregate_fields_get_their_types_and_arguments() {
    let b = build(AGGREGATE_SDL, "schema.graphql").expect("valid schema");
    let RootField::Aggregate(c) = &b.catalog.queries["tasksAggregate"] else {
        panic!("an aggregate: {:?}", b.catalog.queries["tasksAggregate"])
    };
    assert_eq!(c.target, "Task");
    let roles: Vec<(&str, &ArgRole)> = c.args.iter().map(|(n, r)| (n.as_str(), r)).collect();
    assert_eq!(
        roles,
        [
            ("where", &ArgRole::Where),
            ("groupBy", &ArgRole::GroupBy),
            ("having", &ArgRole::Having),
            ("orderBy", &ArgRole::AggregateOrderBy),
            ("limit", &ArgRole::Limit),
        ]
    );
    let shown: String = [
        "TaskAggregate",
        "TaskGroupBy",
        "TaskHaving",
        "OrderDirection",
    ]
    .iter()
    .map(|t| {
        b.api.types[*t]
            .serialize()
            .to_string()
            .lines()
            .filter(|l| !l.trim_start().starts_with('"'))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .collect::<Vec<_>>()
    .join("\n");
    insta::assert_snapshot!(shown, @r#"
    Groups of `Task` rows: one object per group (one in all without `groupBy`).
    type TaskAggregate {
      id: ID
      status: Status
      createdAt: DateTime
      The group's `createdAt`, truncated to its hour in UTC (null unless grouped by it).
      createdAt_hour: DateTime
      The group's `createdAt`, truncated to its day in UTC (null unless grouped by it).
      createdAt_day: DateTime
      The group's `createdAt`, truncated to its week in UTC (null unless grouped by it).
      createdAt_week: DateTime
      The group's `createdAt`, truncated to its month in UTC (null unless grouped by it).
      createdAt_month: DateTime
      estimate: Int
      weight: Float
      count: Int!
      estimate_sum: Int
      estimate_avg: Float
      estimate_min: Int
      estimate_max: Int
      weight_sum: Float
      weight_avg: Float
      weight_min: Float
      weight_max: Float
    }
    input TaskGroupBy {
      id: Boolean
      status: Boolean
      createdAt: Boolean
      createdAt_hour: Boolean
      createdAt_day: Boolean
      createdAt_week: Boolean
      createdAt_month: Boolean
      estimate: Boolean
      weight: Boolean
    }
    Filters `Task` groups by their aggregates: every entry given must hold (AND).
    input TaskHaving {
      count: IntFilter
      estimate_sum: IntFilter
      estimate_avg: FloatFilter
      estimate_min: IntFilter
      estimate_max: IntFilter
      weight_sum: FloatFilter
      weight_avg: FloatFilter
      weight_min: FloatFilter
      weight_max: FloatFilter
      _and: [TaskHaving!]
      _or: [TaskHaving!]
      _not: TaskHaving
    }
    enum OrderDirection {
      ASC
      DESC
    }
    "#);
    let field = b
        .api
        .root_operation(apollo_compiler::ast::OperationType::Query)
        .expect("query");
    let args: Vec<String> = b.api.get_object(field.as_str()).expect("Query").fields
        ["tasksAggregate"]
        .arguments
        .iter()
        .map(|a| format!("{}: {}", a.name, a.ty))
        .collect();
    assert_eq!(
        args,
        [
            "where: TaskWhereInput",
            "groupBy: TaskGroupBy",
            "having: TaskHaving",
            "orderBy: [TaskAggregateOrderBy!]",
            "limit: Int"
        ]
    );
}

#[test]
fn aggregate_fields_are_checked() {
    let wrong_type = AGGREGATE_SDL.replace("[TaskAggregate!]! @aggregate", "[Task!]! @aggregate");
    assert!(
        err(&wrong_type).contains("@aggregate fields return `[<T>Aggregate!]!`"),
        "{}",
        err(&wrong_type)
    );
    let single = AGGREGATE_SDL.replace("[TaskAggregate!]! @aggregate", "TaskAggregate @aggregate");
    assert!(
        err(&single).contains("Query.tasksAggregate"),
        "{}",
        err(&single)
    );
    let offset = AGGREGATE_SDL.replace("tasksAggregate:", "tasksAggregate(offset: Int):");
    assert!(
        err(&offset).contains("aggregates take `limit` (of groups), not `offset`"),
        "{}",
        err(&offset)
    );
    let nested = AGGREGATE_SDL.replace(
        "  tags: [String!]\n",
        "  tags: [String!]\n  more: [TaskAggregate!]! @aggregate\n",
    );
    assert!(
        err(&nested).contains("@aggregate applies to root query fields"),
        "{}",
        err(&nested)
    );
    let taken = format!("{AGGREGATE_SDL}\ntype TaskHaving {{ x: Int }}");
    assert!(
        err(&taken).contains("this type is generated by the engine"),
        "{}",
        err(&taken)
    );
}

#[test]
fn aggregate_names_that_collide_are_refused() {
    let count = AGGREGATE_SDL.replace("  estimate: Int\n", "  estimate: Int\n  count: Int\n");
    let e = err(&count);
    assert!(e.contains("count"), "{e}");
    let sum = AGGREGATE_SDL.replace(
        "  estimate: Int\n",
        "  estimate: Int\n  estimate_sum: Int\n",
    );
    let e = err(&sum);
    assert!(e.contains("estimate_sum"), "{e}");
}
