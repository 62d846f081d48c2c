use fraiseql_config::LimitsConfig;

use super::*;

const SDL: &str = r#"
type Query { organizations(limit: Int): [Organization!]! }
type Organization @view(name: "v_organization") {
  id: ID!
  name: String!
  projects: [Project!]! @relation(column: "pk_org", references: "fk_org")
}
type Project @view(name: "v_project") {
  name: String!
  organization: Organization! @relation(column: "fk_org", references: "pk_org")
}
"#;

fn schema() -> apollo_compiler::validation::Valid<apollo_compiler::Schema> {
    fraiseql_schema::build(SDL, "s.graphql")
        .expect("schema")
        .api
}

fn codes(query: &str, limits: &LimitsConfig) -> Vec<ErrorCode> {
    match prepare(&schema(), limits, query) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.extensions.code).collect(),
    }
}

fn deep(levels: usize) -> String {
    let mut q = String::from("{ organizations { ");
    for i in 0..levels {
        q.push_str(if i % 2 == 0 {
            "projects { "
        } else {
            "organization { "
        });
    }
    q.push_str("__typename");
    for _ in 0..levels {
        q.push_str(" }");
    }
    q.push_str(" } }");
    q
}

#[test]
fn valid_queries_pass() {
    assert!(codes(
        "{ organizations { id name projects { name } } }",
        &LimitsConfig::default()
    )
    .is_empty());
}

#[test]
fn syntax_errors_are_parse_failures_with_locations() {
    let errs = prepare(
        &schema(),
        &LimitsConfig::default(),
        "{ organizations { id }",
    )
    .expect_err("syntax");
    assert_eq!(errs[0].extensions.code, ErrorCode::GraphqlParseFailed);
    assert!(!errs[0].locations.is_empty());
}

#[test]
fn unknown_fields_are_validation_failures() {
    let errs = prepare(
        &schema(),
        &LimitsConfig::default(),
        "{ organizations { nope } }",
    )
    .expect_err("unknown");
    assert_eq!(errs[0].extensions.code, ErrorCode::GraphqlValidationFailed);
    assert!(errs[0].message.contains("nope"), "{}", errs[0].message);
}

#[test]
fn depth_limit_rejects_a_50_deep_query() {
    let errs = prepare(&schema(), &LimitsConfig::default(), &deep(50)).expect_err("too deep");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].extensions.code, ErrorCode::QueryTooComplex);
    insta::assert_snapshot!(errs[0].message, @"operation (anonymous): query depth is 52, above the limit of 12 ([limits] max_depth)");
    assert!(codes(&deep(9), &LimitsConfig::default()).is_empty());
}

#[test]
fn depth_counts_through_fragments() {
    let q = "{ organizations { ...A } } fragment A on Organization { projects { ...B } } fragment B on Project { organization { name } }";
    let limits = LimitsConfig {
        max_depth: 3,
        ..LimitsConfig::default()
    };
    assert_eq!(codes(q, &limits), vec![ErrorCode::QueryTooComplex]);
}

#[test]
fn fragment_cycles_do_not_hang_and_are_reported() {
    let q = "{ organizations { ...A } } fragment A on Organization { projects { organization { ...A } } }";
    let c = codes(q, &LimitsConfig::default());
    assert_eq!(c, vec![ErrorCode::GraphqlValidationFailed]);
}

#[test]
fn alias_root_field_and_token_limits() {
    let limits = LimitsConfig {
        max_aliases: 2,
        max_root_fields: 2,
        max_tokens: 40,
        ..LimitsConfig::default()
    };
    assert_eq!(
        codes("{ a: organizations { b: id c: id } }", &limits),
        vec![ErrorCode::QueryTooComplex]
    );
    assert_eq!(
        codes(
            "{ organizations { id } x: organizations { id } y: organizations { id } }",
            &LimitsConfig {
                max_root_fields: 2,
                ..LimitsConfig::default()
            }
        ),
        vec![ErrorCode::QueryTooComplex]
    );
    let long = format!("{{ organizations {{ {} }} }}", "id ".repeat(100));
    assert_eq!(codes(&long, &limits), vec![ErrorCode::QueryTooComplex]);
}

/// `fragment F0 { ...F1 ...F1 } fragment F1 { ...F2 ...F2 } ...`: 2^levels fields if expanded.
fn fragment_chain(levels: usize) -> String {
    let mut q = String::from("{ organizations { ...F0 } }\n");
    for i in 0..levels {
        q.push_str(&format!(
            "fragment F{i} on Organization {{ ...F{n} ...F{n} a{i}: name }}\n",
            n = i + 1
        ));
    }
    q.push_str(&format!("fragment F{levels} on Organization {{ id }}\n"));
    q
}

#[test]
fn a_chain_of_doubling_fragments_is_linear_work() {
    let q = fragment_chain(40);
    assert!(q.len() < 3000, "{}", q.len());
    let limits = LimitsConfig {
        max_aliases: 100,
        ..LimitsConfig::default()
    };
    // The schema is built before the clock starts: what is timed is the document's preparation.
    let schema = schema();
    let started = std::time::Instant::now();
    let result = prepare(&schema, &limits, &q);
    let took = started.elapsed();
    // Spread twice in one selection set, a fragment counts once (CollectFields merges it), so
    // this is 41 fields deep in fragments but small: it validates and plans.
    assert!(
        took < std::time::Duration::from_millis(50),
        "took {took:?}: {result:?}"
    );
    // With aliases per level it is rejected by the alias limit, still at once.
    let started = std::time::Instant::now();
    let errs = prepare(&schema, &LimitsConfig::default(), &q).expect_err("aliases");
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    assert_eq!(errs[0].extensions.code, ErrorCode::QueryTooComplex);
}

#[test]
fn the_selection_budget_counts_fields_after_expansion() {
    // Each level spreads two different fragments that both select the next level: the
    // expansion doubles per level.
    let mut q = String::from("{ organizations { ...L0a ...L0b } }\n");
    for i in 0..20 {
        let next = if i == 19 {
            "id".to_owned()
        } else {
            format!("...L{n}a ...L{n}b", n = i + 1)
        };
        q.push_str(&format!("fragment L{i}a on Organization {{ {next} }}\n"));
        q.push_str(&format!("fragment L{i}b on Organization {{ {next} }}\n"));
    }
    let schema = schema();
    let started = std::time::Instant::now();
    let errs = prepare(&schema, &LimitsConfig::default(), &q).expect_err("budget");
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
    assert_eq!(errs[0].extensions.code, ErrorCode::QueryTooComplex);
    assert!(
        errs[0].message.contains("max_fields"),
        "{}",
        errs[0].message
    );
    let small = LimitsConfig {
        max_fields: 3,
        ..LimitsConfig::default()
    };
    assert_eq!(
        codes("{ organizations { id name projects { name } } }", &small),
        vec![ErrorCode::QueryTooComplex]
    );
    assert!(codes("{ organizations { id name } }", &small).is_empty());
}
