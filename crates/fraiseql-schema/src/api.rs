//! The API schema: the SDL as written, minus the engine's directives (view names and SQL stay private).

use apollo_compiler::schema::{DirectiveList, ExtendedType};
use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;

use crate::error::SchemaError;

/// The engine's directives (`prelude.graphql`): never shown to clients or gateways.
pub(crate) const OURS: [&str; 13] = [
    "view",
    "json",
    "column",
    "sql",
    "relation",
    "filter",
    "orderBy",
    "mutation",
    "federated",
    "cache",
    "event",
    "connection",
    "aggregate",
];

fn strip_list(list: &mut DirectiveList) {
    list.retain(|d| !OURS.contains(&d.name.as_str()));
}

pub(crate) fn strip(full: &Valid<Schema>) -> Result<Valid<Schema>, SchemaError> {
    let mut s: Schema = full.clone().into_inner();
    for name in OURS {
        s.directive_definitions.shift_remove(name);
    }
    for ty in s.types.values_mut() {
        match ty {
            ExtendedType::Object(o) => {
                let o = o.make_mut();
                strip_list(&mut o.directives);
                for f in o.fields.values_mut() {
                    let f = f.make_mut();
                    f.directives.retain(|d| !OURS.contains(&d.name.as_str()));
                    for a in f.arguments.iter_mut() {
                        a.make_mut()
                            .directives
                            .retain(|d| !OURS.contains(&d.name.as_str()));
                    }
                }
            }
            ExtendedType::Enum(e) => {
                for v in e.make_mut().values.values_mut() {
                    v.make_mut()
                        .directives
                        .retain(|d| !OURS.contains(&d.name.as_str()));
                }
            }
            _ => {}
        }
    }
    s.validate()
        .map_err(|e| SchemaError::Graphql(e.errors.to_string()))
}
