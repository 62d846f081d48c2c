//! CollectFields (GraphQL spec §6.3.2): fragments flattened, `@skip`/`@include` applied, fields
//! grouped by response key in order.

use std::collections::HashSet;

use apollo_compiler::executable::{Field, Selection, SelectionSet};
use apollo_compiler::response::JsonMap;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Node, Schema};
use indexmap::IndexMap;

use crate::error::PlanError;
use crate::values::boolean;

/// Fields grouped by response key.
pub(crate) type Grouped<'a> = IndexMap<String, Vec<&'a Node<Field>>>;

pub(crate) struct Cx<'a> {
    pub schema: &'a Valid<Schema>,
    pub document: &'a Valid<ExecutableDocument>,
    pub variables: &'a JsonMap,
    /// Rows the operation may produce, counted while planning (see `[limits] max_rows`).
    pub rows: std::cell::Cell<u64>,
    /// Entries of `where` values planned so far (see `PlanLimits::max_filter_nodes`).
    pub filter_nodes: std::cell::Cell<usize>,
}

impl<'a> Cx<'a> {
    fn included(&self, directives: &apollo_compiler::executable::DirectiveList) -> bool {
        let arg = |name: &str| {
            directives
                .get(name)
                .and_then(|d| d.specified_argument_by_name("if"))
                .and_then(|v| boolean(v, self.variables))
        };
        arg("skip") != Some(true) && arg("include") != Some(false)
    }

    fn applies(&self, condition: Option<&str>, object_type: &str) -> bool {
        match condition {
            None => true,
            Some(c) => c == object_type || self.schema.is_subtype(c, object_type),
        }
    }

    /// Collects the fields of `sets` (merged selection sets of one object) for `object_type`.
    pub(crate) fn collect(
        &self,
        object_type: &str,
        sets: impl IntoIterator<Item = &'a SelectionSet>,
    ) -> Result<Grouped<'a>, PlanError> {
        let mut out = Grouped::new();
        let mut visited = HashSet::new();
        for set in sets {
            self.collect_into(object_type, set, &mut out, &mut visited);
        }
        Ok(out)
    }

    fn collect_into(
        &self,
        object_type: &str,
        set: &'a SelectionSet,
        out: &mut Grouped<'a>,
        visited: &mut HashSet<&'a str>,
    ) {
        for sel in &set.selections {
            match sel {
                Selection::Field(f) => {
                    if self.included(&f.directives) {
                        out.entry(f.response_key().to_string()).or_default().push(f);
                    }
                }
                Selection::InlineFragment(inline) => {
                    if self.included(&inline.directives)
                        && self.applies(
                            inline.type_condition.as_ref().map(|n| n.as_str()),
                            object_type,
                        )
                    {
                        self.collect_into(object_type, &inline.selection_set, out, visited);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if !self.included(&spread.directives)
                        || !visited.insert(spread.fragment_name.as_str())
                    {
                        continue;
                    }
                    if let Some(frag) = self.document.fragments.get(&spread.fragment_name) {
                        if self.applies(Some(frag.type_condition().as_str()), object_type) {
                            self.collect_into(object_type, &frag.selection_set, out, visited);
                        }
                    }
                }
            }
        }
    }
}
