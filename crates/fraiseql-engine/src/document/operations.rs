//! A manifest from `.graphql` files (`fraiseql documents manifest`): one document per
//! operation, holding the operation and the fragments it spreads (from any of the files), as
//! Apollo's `generate-persisted-query-manifest` and GraphQL Codegen's persisted documents write
//! them. Each document is checked as the server would check it (parse, limits, validation
//! against the schema), so a manifest never holds a document the server refuses.

use std::collections::{BTreeMap, BTreeSet};

use apollo_compiler::executable::{ExecutableDocument, Fragment, Operation, SelectionSet};
use apollo_compiler::parser::Parser;
use apollo_compiler::validation::{DiagnosticList, Valid};
use apollo_compiler::{Name, Node, Schema};
use fraiseql_config::LimitsConfig;

use super::manifest::sha256_hex;
use super::prepare;

/// The documents of `sources` (file name, text) by the hex SHA-256 of their text, or every
/// problem found (each naming its file or operation).
pub fn manifest_documents(
    schema: &Valid<Schema>,
    limits: &LimitsConfig,
    sources: &[(String, String)],
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut errors = DiagnosticList::new(schema.sources.clone());
    let mut builder = ExecutableDocument::builder(Some(schema), &mut errors);
    let mut parser = Parser::new();
    for (path, text) in sources {
        parser.parse_into_executable_builder(text.as_str(), path, &mut builder);
    }
    let doc = builder.build();
    if !errors.is_empty() {
        return Err(errors.iter().map(|d| d.to_string()).collect());
    }
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    let operations = doc
        .operations
        .anonymous
        .iter()
        .chain(doc.operations.named.values());
    for op in operations {
        let text = standalone(&doc, op);
        let name = op.name.as_ref().map_or("(anonymous)", Name::as_str);
        if let Err(errs) = prepare(schema, limits, &text) {
            for e in errs {
                let at = e
                    .locations
                    .first()
                    .map(|l| format!(" (line {}:{} of the printed document)", l.line, l.column))
                    .unwrap_or_default();
                problems.push(format!("operation {name}: {}{at}", e.message));
            }
            continue;
        }
        out.insert(sha256_hex(&text), text);
    }
    if out.is_empty() && problems.is_empty() {
        problems.push("the files hold no operation".to_owned());
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// `op` with the fragments it spreads, transitively, in name order.
fn standalone(doc: &ExecutableDocument, op: &Node<Operation>) -> String {
    let mut used: BTreeSet<Name> = BTreeSet::new();
    let mut todo: Vec<&SelectionSet> = vec![&op.selection_set];
    while let Some(set) = todo.pop() {
        for s in &set.selections {
            match s {
                apollo_compiler::executable::Selection::Field(f) => todo.push(&f.selection_set),
                apollo_compiler::executable::Selection::InlineFragment(i) => {
                    todo.push(&i.selection_set)
                }
                apollo_compiler::executable::Selection::FragmentSpread(s) => {
                    if used.insert(s.fragment_name.clone()) {
                        if let Some(f) = doc.fragments.get(&s.fragment_name) {
                            todo.push(&f.selection_set);
                        }
                    }
                }
            }
        }
    }
    let mut text = op.serialize().to_string();
    let fragments = used.iter().filter_map(|n| doc.fragments.get(n));
    for f in fragments {
        let f: &Node<Fragment> = f;
        text.push_str("\n\n");
        text.push_str(&f.serialize().to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str = r#"
type Query { organizations(limit: Int): [Organization!]! }
type Organization @view(name: "v_organization") { id: ID! name: String! }
"#;

    #[test]
    fn one_document_per_operation_with_its_fragments() {
        let schema = fraiseql_schema::build(SDL, "s.graphql")
            .expect("schema")
            .api;
        let sources = vec![
            (
                "orgs.graphql".to_owned(),
                "query Orgs { organizations { ...OrgFields } }\nquery Names { organizations { name } }"
                    .to_owned(),
            ),
            (
                "fragments.graphql".to_owned(),
                "fragment OrgFields on Organization { id name }".to_owned(),
            ),
        ];
        let docs =
            manifest_documents(&schema, &LimitsConfig::default(), &sources).expect("manifest");
        assert_eq!(docs.len(), 2);
        for (id, text) in &docs {
            assert_eq!(*id, sha256_hex(text));
        }
        let orgs = docs
            .values()
            .find(|t| t.starts_with("query Orgs"))
            .expect("Orgs");
        assert!(
            orgs.contains("fragment OrgFields on Organization"),
            "{orgs}"
        );
        let names = docs
            .values()
            .find(|t| t.starts_with("query Names"))
            .expect("Names");
        assert!(!names.contains("fragment"), "{names}");
    }

    #[test]
    fn documents_the_server_would_refuse_are_reported() {
        let schema = fraiseql_schema::build(SDL, "s.graphql")
            .expect("schema")
            .api;
        let sources = vec![(
            "bad.graphql".to_owned(),
            "query Bad { organizations { nope } }".to_owned(),
        )];
        let errs =
            manifest_documents(&schema, &LimitsConfig::default(), &sources).expect_err("invalid");
        assert!(errs.iter().any(|e| e.contains("nope")), "{errs:?}");
        let sources = vec![("x.graphql".to_owned(), "query { ".to_owned())];
        let errs =
            manifest_documents(&schema, &LimitsConfig::default(), &sources).expect_err("syntax");
        assert!(errs.iter().any(|e| e.contains("x.graphql")), "{errs:?}");
    }
}
