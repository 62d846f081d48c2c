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
            desc: true
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
        @"A.b: field of object type `A` needs @relation(column: ..., references: ...) to say how it joins"
    );
    insta::assert_snapshot!(
        err("type Query { a: [A] } type A @view(name: \"v; drop table x\") { x: Int }"),
        @r#"A: @view(name: "v; drop table x") is not a view name (`view` or `schema.view`, plain identifiers)"#
    );
    insta::assert_snapshot!(
        err("type Query { a(limit: Int): A } type A @view(name: \"v\") { x: Int }"),
        @"Query.a(limit:): limit, offset and orderBy only apply to list fields"
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
        @"Mutation: mutation fields are not supported by this version of the engine; remove the `Mutation` type"
    );
}

#[test]
fn graphql_errors_are_reported() {
    let e = err("type Query { a: [Nope] }");
    assert!(e.contains("Nope"), "{e}");
    let e = err("type Query { a: [A] } type A @view(nam: \"v\") { x: Int }");
    assert!(e.contains("nam"), "{e}");
}
