//! Cost limits checked on the parsed document, before validation and before any SQL.

use std::collections::HashMap;

use apollo_compiler::executable::{Selection, SelectionSet};
use apollo_compiler::ExecutableDocument;
use fraiseql_config::LimitsConfig;

use crate::error::{ErrorCode, GraphqlError};

/// Depth, alias and root-field counts of one selection set (fragments expanded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Deepest field nesting (a root field alone is depth 1).
    pub depth: usize,
    /// Aliased fields, counting each fragment every time it is spread.
    pub aliases: usize,
}

struct Walker<'a> {
    doc: &'a ExecutableDocument,
    memo: HashMap<&'a str, Cost>,
    visiting: Vec<&'a str>,
}

impl<'a> Walker<'a> {
    fn set(&mut self, set: &'a SelectionSet) -> Cost {
        let mut c = Cost::default();
        for sel in &set.selections {
            let inner = match sel {
                // Introspection is bounded by apollo-compiler's own check (its schema is recursive).
                Selection::Field(f) if matches!(f.name.as_str(), "__schema" | "__type") => {
                    Cost::default()
                }
                Selection::Field(f) => {
                    let sub = self.set(&f.selection_set);
                    Cost {
                        depth: sub.depth + 1,
                        aliases: sub.aliases + usize::from(f.alias.is_some()),
                    }
                }
                Selection::InlineFragment(i) => self.set(&i.selection_set),
                Selection::FragmentSpread(s) => self.fragment(s.fragment_name.as_str()),
            };
            c.depth = c.depth.max(inner.depth);
            c.aliases = c.aliases.saturating_add(inner.aliases);
        }
        c
    }

    fn fragment(&mut self, name: &'a str) -> Cost {
        if let Some(c) = self.memo.get(name) {
            return *c;
        }
        // A cycle is a validation error reported later; it adds nothing here.
        if self.visiting.contains(&name) {
            return Cost::default();
        }
        let Some(frag) = self.doc.fragments.get(name) else {
            return Cost::default();
        };
        self.visiting.push(name);
        let c = self.set(&frag.selection_set);
        self.visiting.pop();
        self.memo.insert(name, c);
        c
    }
}

/// Rejects any operation of `doc` that exceeds `limits`, with a message naming the limit.
pub fn check(doc: &ExecutableDocument, limits: &LimitsConfig) -> Result<(), GraphqlError> {
    let mut w = Walker {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
    };
    for op in doc.operations.iter() {
        let name = op.name.as_ref().map_or("(anonymous)", |n| n.as_str());
        let cost = w.set(&op.selection_set);
        let too = |what: &str, got: usize, max: usize| {
            GraphqlError::new(
                ErrorCode::QueryTooComplex,
                format!("operation {name}: {what} is {got}, above the limit of {max}"),
            )
        };
        if cost.depth > limits.max_depth {
            return Err(too("query depth", cost.depth, limits.max_depth));
        }
        if cost.aliases > limits.max_aliases {
            return Err(too(
                "the number of aliases",
                cost.aliases,
                limits.max_aliases,
            ));
        }
        let mut roots = Walker {
            doc,
            memo: HashMap::new(),
            visiting: Vec::new(),
        };
        let root_fields = count_root_fields(&mut roots, &op.selection_set);
        if root_fields > limits.max_root_fields {
            return Err(too(
                "the number of root fields",
                root_fields,
                limits.max_root_fields,
            ));
        }
    }
    Ok(())
}

fn count_root_fields<'a>(w: &mut Walker<'a>, set: &'a SelectionSet) -> usize {
    set.selections
        .iter()
        .map(|s| match s {
            Selection::Field(_) => 1,
            Selection::InlineFragment(i) => count_root_fields(w, &i.selection_set),
            Selection::FragmentSpread(s) => {
                let name = s.fragment_name.as_str();
                if w.visiting.contains(&name) {
                    return 0;
                }
                let Some(frag) = w.doc.fragments.get(name) else {
                    return 0;
                };
                w.visiting.push(name);
                let n = count_root_fields(w, &frag.selection_set);
                w.visiting.pop();
                n
            }
        })
        .sum()
}
