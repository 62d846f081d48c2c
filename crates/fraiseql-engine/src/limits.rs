//! Cost limits checked on the parsed document, before validation and before any SQL: depth,
//! aliases, root fields and the selection budget (fields once fragments are expanded).
//!
//! One walk, linear in the document: each fragment's cost is computed once and reused wherever
//! it is spread, and a fragment spread twice in one selection set counts once (as CollectFields
//! merges it). A chain of fragments each spreading the next twice costs its length, not 2^n.

use std::collections::{HashMap, HashSet};

use apollo_compiler::executable::{Selection, SelectionSet};
use apollo_compiler::ExecutableDocument;
use fraiseql_config::LimitsConfig;

use crate::error::{ErrorCode, GraphqlError};

/// What one selection set costs (fragments expanded).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Deepest field nesting (a root field alone is depth 1).
    pub depth: usize,
    /// Aliased fields.
    pub aliases: usize,
    /// Fields in all.
    pub fields: usize,
    /// Fields directly in this set (after inline fragments and spreads).
    pub level_fields: usize,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.depth = self.depth.max(other.depth);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.fields = self.fields.saturating_add(other.fields);
        self.level_fields = self.level_fields.saturating_add(other.level_fields);
    }
}

struct Walker<'a> {
    doc: &'a ExecutableDocument,
    memo: HashMap<&'a str, Cost>,
    visiting: HashSet<&'a str>,
}

impl<'a> Walker<'a> {
    /// The cost of `set`; `seen` holds the fragments already spread in this selection set.
    fn set(&mut self, set: &'a SelectionSet, seen: &mut HashSet<&'a str>) -> Cost {
        let mut c = Cost::default();
        for sel in &set.selections {
            match sel {
                // Introspection is bounded by apollo-compiler's own check (its schema is recursive).
                Selection::Field(f) if matches!(f.name.as_str(), "__schema" | "__type") => {
                    c.level_fields = c.level_fields.saturating_add(1);
                    c.fields = c.fields.saturating_add(1);
                    c.depth = c.depth.max(1);
                }
                Selection::Field(f) => {
                    let sub = self.set(&f.selection_set, &mut HashSet::new());
                    c.add(Cost {
                        depth: sub.depth + 1,
                        aliases: sub.aliases.saturating_add(usize::from(f.alias.is_some())),
                        fields: sub.fields.saturating_add(1),
                        level_fields: 1,
                    });
                }
                Selection::InlineFragment(i) => {
                    let inner = self.set(&i.selection_set, seen);
                    c.add(inner);
                }
                Selection::FragmentSpread(s) => {
                    let name = s.fragment_name.as_str();
                    if seen.insert(name) {
                        c.add(self.fragment(name));
                    }
                }
            }
        }
        c
    }

    fn fragment(&mut self, name: &'a str) -> Cost {
        if let Some(c) = self.memo.get(name) {
            return *c;
        }
        // A cycle is a validation error reported later; it adds nothing here.
        if !self.visiting.insert(name) {
            return Cost::default();
        }
        let Some(frag) = self.doc.fragments.get(name) else {
            self.visiting.remove(name);
            return Cost::default();
        };
        let c = self.set(&frag.selection_set, &mut HashSet::new());
        self.visiting.remove(name);
        self.memo.insert(name, c);
        c
    }
}

/// The cost of every operation of `doc`, by operation.
pub fn costs(doc: &ExecutableDocument) -> Vec<(String, Cost)> {
    let mut w = Walker {
        doc,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    doc.operations
        .iter()
        .map(|op| {
            let name = op
                .name
                .as_ref()
                .map_or_else(|| "(anonymous)".to_owned(), |n| n.to_string());
            (name, w.set(&op.selection_set, &mut HashSet::new()))
        })
        .collect()
}

/// The cost of operation `op` of `doc`.
pub fn cost_of(doc: &ExecutableDocument, op: &apollo_compiler::executable::Operation) -> Cost {
    let mut w = Walker {
        doc,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    w.set(&op.selection_set, &mut HashSet::new())
}

/// Rejects any operation of `doc` that exceeds `limits`, with a message naming the limit.
pub fn check(doc: &ExecutableDocument, limits: &LimitsConfig) -> Result<(), GraphqlError> {
    for (name, cost) in costs(doc) {
        let too = |what: &str, got: usize, max: usize, key: &str| {
            GraphqlError::new(
                ErrorCode::QueryTooComplex,
                format!(
                    "operation {name}: {what} is {}, above the limit of {max} ([limits] {key})",
                    if got == usize::MAX {
                        "beyond counting".to_owned()
                    } else {
                        got.to_string()
                    }
                ),
            )
        };
        let checks = [
            ("query depth", cost.depth, limits.max_depth, "max_depth"),
            (
                "the number of aliases",
                cost.aliases,
                limits.max_aliases,
                "max_aliases",
            ),
            (
                "the number of root fields",
                cost.level_fields,
                limits.max_root_fields,
                "max_root_fields",
            ),
            (
                "the number of fields once fragments are expanded",
                cost.fields,
                limits.max_fields,
                "max_fields",
            ),
        ];
        if let Some((what, got, max, key)) = checks.into_iter().find(|(_, got, max, _)| got > max) {
            return Err(too(what, got, max, key));
        }
    }
    Ok(())
}
