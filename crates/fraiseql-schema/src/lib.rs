//! The schema: one GraphQL SDL file whose directives map types to PostgreSQL views.
//!
//! [`build`] parses and validates the SDL (with the directive prelude in `prelude.graphql`), then
//! produces two things: the **API schema** clients see (our directives stripped) and the
//! **catalog** the planner reads (type -> view, field -> JSON key / column / SQL / relation,
//! root field -> view + arguments). Pure: no database is touched; `fraiseql-engine` checks the
//! catalog against the database at start-up.

mod aggregates;
mod api;
mod catalog;
mod error;
pub mod federation;
mod filters;
mod generate;
mod ident;
mod lower;
mod subscription;
mod template;

pub use apollo_compiler;
pub use catalog::*;
pub use error::SchemaError;
pub use ident::{is_plain_ident, quote_ident, quote_literal, QualifiedName};
pub use template::compile_open;

use std::collections::BTreeSet;

use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;

/// The directive definitions every schema gets (documented in `docs/schema.md`).
pub const PRELUDE: &str = include_str!("prelude.graphql");

/// A validated schema: what clients see and what the planner reads.
#[derive(Debug)]
pub struct SchemaBundle {
    /// The schema served to clients (introspection, validation of operations).
    pub api: Valid<Schema>,
    /// Types, fields and root fields mapped to SQL sources.
    pub catalog: Catalog,
}

/// Parses, validates and lowers an SDL document. `path` names it in error messages.
pub fn build(sdl: &str, path: &str) -> Result<SchemaBundle, SchemaError> {
    build_with_resolvers(sdl, path, &BTreeSet::new())
}

/// Like [`build`], with the coordinates (`Type.field`) that Rust resolvers answer: those fields
/// take their values from the resolvers instead of their directives, and root fields without a
/// mapping become valid. A coordinate that names no field is an error.
pub fn build_with_resolvers(
    sdl: &str,
    path: &str,
    resolvers: &BTreeSet<String>,
) -> Result<SchemaBundle, SchemaError> {
    let mut doc = apollo_compiler::ast::Document::parse(sdl, path)
        .map_err(|e| SchemaError::Graphql(e.errors.to_string()))?;
    let link = federation::detect(&doc)?;
    generate::augment(
        &mut doc,
        resolvers,
        link.as_ref().map(|l| l.name("shareable")),
    )?;
    let mut builder = Schema::builder()
        .adopt_orphan_extensions()
        .parse(PRELUDE, "fraiseql-prelude.graphql");
    if let Some(link) = &link {
        builder = builder.parse(federation::prelude(link), "federation-prelude.graphql");
    }
    builder = builder.add_ast(&doc);
    if let Some(link) = &link {
        let query = query_type_name(&doc);
        let entities = federation::entity_types(&doc, link);
        builder = builder.parse(
            federation::root_fields(&query, &entities),
            "federation-fields.graphql",
        );
    }
    let full = builder
        .build()
        .map_err(|e| SchemaError::Graphql(e.errors.to_string()))?
        .validate()
        .map_err(|e| SchemaError::Graphql(e.errors.to_string()))?;
    let subgraph = link.as_ref().map(|link| lower::Subgraph {
        link,
        sdl: federation::subgraph_sdl(&doc, &api::OURS),
    });
    let mut catalog = lower::lower(&full, resolvers, subgraph)?;
    if let Some(root) = full.root_operation(apollo_compiler::ast::OperationType::Subscription) {
        catalog.subscriptions = subscription::lower(&full, &catalog, root.as_str())?;
    }
    let api = api::strip(&full)?;
    Ok(SchemaBundle { api, catalog })
}

/// The query root's name: `schema { query: X }` if the document says, else `Query`.
fn query_type_name(doc: &apollo_compiler::ast::Document) -> String {
    for def in &doc.definitions {
        let ops = match def {
            apollo_compiler::ast::Definition::SchemaDefinition(s) => &s.root_operations,
            apollo_compiler::ast::Definition::SchemaExtension(s) => &s.root_operations,
            _ => continue,
        };
        for op in ops {
            if op.0 == apollo_compiler::ast::OperationType::Query {
                return op.1.to_string();
            }
        }
    }
    "Query".to_owned()
}

#[cfg(test)]
mod tests;
