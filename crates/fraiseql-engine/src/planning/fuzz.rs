//! Generated documents through parse -> limits -> validate -> plan: whatever a client sends,
//! nothing panics, a refused document is refused with a document error, and a document that
//! passes respects every limit. (How fast they are answered is for a benchmark, not a test.)
//! Documents are drawn from the example's
//! schema (fields, relations, arguments with hostile values, aliases, fragments that spread
//! each other, repeatedly and in cycles, directives, variables given or not), plus raw noise.

use apollo_compiler::collections::HashMap;
use fraiseql_config::LimitsConfig;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Planner;
use crate::error::ErrorCode;
use crate::identity::rbac::RbacRules;
use crate::request::GraphqlRequest;

const SDL: &str = include_str!("../../../../examples/saas/schema.graphql");

/// A field: its name, its object type (if it is one), whether it takes `limit`.
type FieldSpec = (&'static str, Option<&'static str>, bool);

/// Each type's fields.
const TYPES: &[(&str, &[FieldSpec])] = &[
    (
        "Query",
        &[
            ("organizations", Some("Organization"), true),
            ("organization", Some("Organization"), false),
            ("projectsByOrg", Some("Project"), true),
            ("project", Some("Project"), false),
            (
                "organizationsConnection",
                Some("OrganizationConnection"),
                false,
            ),
            ("tenantConfig", None, false),
            ("__typename", None, false),
        ],
    ),
    (
        "Organization",
        &[
            ("id", None, false),
            ("name", None, false),
            ("subscriptionTier", None, false),
            ("memberCount", None, false),
            ("createdAt", None, false),
            ("members", Some("Member"), true),
            ("projects", Some("Project"), true),
            ("__typename", None, false),
        ],
    ),
    (
        "Project",
        &[
            ("id", None, false),
            ("name", None, false),
            ("taskCount", None, false),
            ("organization", Some("Organization"), false),
            ("tasks", Some("Task"), true),
            ("tasksConnection", Some("TaskConnection"), false),
        ],
    ),
    (
        "OrganizationConnection",
        &[
            ("edges", Some("OrganizationEdge"), false),
            ("pageInfo", Some("PageInfo"), false),
            ("totalCount", None, false),
        ],
    ),
    (
        "OrganizationEdge",
        &[
            ("cursor", None, false),
            ("node", Some("Organization"), false),
        ],
    ),
    (
        "TaskConnection",
        &[
            ("edges", Some("TaskEdge"), false),
            ("pageInfo", Some("PageInfo"), false),
            ("totalCount", None, false),
        ],
    ),
    (
        "TaskEdge",
        &[("cursor", None, false), ("node", Some("Task"), false)],
    ),
    (
        "PageInfo",
        &[
            ("hasNextPage", None, false),
            ("hasPreviousPage", None, false),
            ("startCursor", None, false),
            ("endCursor", None, false),
        ],
    ),
    (
        "Member",
        &[
            ("id", None, false),
            ("name", None, false),
            ("email", None, false),
        ],
    ),
    (
        "Task",
        &[
            ("id", None, false),
            ("title", None, false),
            ("status", None, false),
        ],
    ),
];

fn fields_of(ty: &str) -> &'static [FieldSpec] {
    TYPES
        .iter()
        .find(|(t, _)| *t == ty)
        .map_or(&[], |(_, f)| *f)
}

fn int_value(r: &mut StdRng, used: &mut std::collections::BTreeSet<&'static str>) -> String {
    match r.random_range(0..12) {
        0 => "null".into(),
        1 => "-1".into(),
        2 => "2147483647".into(),
        3 => "99999999999".into(),
        4 | 5 => {
            used.insert("l");
            "$l".into()
        }
        6 => "\"5\"".into(),
        _ => r.random_range(0..200).to_string(),
    }
}

/// Each `@view` type's filterable fields: (name, its filter's type name or the related type).
const FILTERS: &[(&str, &[(&str, &str)])] = &[
    (
        "Organization",
        &[
            ("name", "String"),
            ("createdAt", "DateTime"),
            ("memberCount", "Int"),
            ("projects", "Project"),
            ("members", "Member"),
        ],
    ),
    (
        "Project",
        &[
            ("name", "String"),
            ("organization", "Organization"),
            ("tasks", "Task"),
        ],
    ),
    (
        "Task",
        &[
            ("title", "String"),
            ("status", "String"),
            ("createdAt", "DateTime"),
        ],
    ),
    ("Member", &[("name", "String"), ("email", "String")]),
];

/// Hostile or odd operand values.
const VALUES: &[&str] = &[
    "\"x\"",
    "\"'; DROP TABLE tb_task; --\"",
    "\"%_\\\\\"",
    "\"2026-01-01T00:00:00Z\"",
    "\"not a time\"",
    "5",
    "-1",
    "null",
    "[]",
    "[\"a\", \"b\"]",
    "true",
];

struct Gen {
    r: StdRng,
    fragments: Vec<(String, &'static str, String)>,
    /// Variables used so far (only those are declared: GraphQL refuses unused ones).
    used: std::collections::BTreeSet<&'static str>,
}

impl Gen {
    fn selection(&mut self, ty: &'static str, depth: usize) -> String {
        let fields = fields_of(ty);
        let n = self.r.random_range(1..5);
        let mut out = Vec::new();
        for _ in 0..n {
            let choice = self.r.random_range(0..10);
            if choice == 0 && depth > 0 {
                // A fragment spread: a new fragment, or one seen before (repeats, cycles).
                let reuse = !self.fragments.is_empty() && self.r.random_bool(0.5);
                let name = if reuse {
                    let i = self.r.random_range(0..self.fragments.len());
                    self.fragments[i].0.clone()
                } else {
                    let name = format!("F{}", self.fragments.len());
                    self.fragments.push((name.clone(), ty, String::new()));
                    let body = self.selection(ty, depth - 1);
                    if let Some(f) = self.fragments.iter_mut().find(|f| f.0 == name) {
                        f.2 = body;
                    }
                    name
                };
                out.push(format!("...{name}"));
                continue;
            }
            if choice == 1 {
                out.push(format!(
                    "... on {ty} {{ {} }}",
                    self.selection(ty, depth.saturating_sub(1))
                ));
                continue;
            }
            let (name, target, limit) = fields[self.r.random_range(0..fields.len())];
            let mut f = String::new();
            if self.r.random_bool(0.2) {
                f.push_str(&format!("a{}: ", self.r.random_range(0..40)));
            }
            f.push_str(name);
            let mut args = Vec::new();
            if limit && self.r.random_bool(0.5) {
                args.push(format!("limit: {}", int_value(&mut self.r, &mut self.used)));
            }
            if limit && self.r.random_bool(0.2) {
                args.push(format!(
                    "offset: {}",
                    int_value(&mut self.r, &mut self.used)
                ));
            }
            if matches!(name, "organization" | "project" | "projectsByOrg") {
                let key = if name == "projectsByOrg" {
                    "orgId"
                } else {
                    "id"
                };
                let v = match self.r.random_range(0..10) {
                    0..=3 => "\"5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b\"".to_owned(),
                    4 | 5 => "\"'; DROP TABLE tb_organization; --\"".to_owned(),
                    6..=8 => {
                        self.used.insert("id");
                        "$id".to_owned()
                    }
                    _ => "null".to_owned(),
                };
                args.push(format!("{key}: {v}"));
            }
            if name == "organizations" && self.r.random_bool(0.3) {
                args.push("orderBy: [NAME_DESC, CREATED_AT_ASC]".into());
            }
            let rows = match name {
                "organizations" | "organizationsConnection" => Some("Organization"),
                "projectsByOrg" | "projects" => Some("Project"),
                "tasks" | "tasksConnection" => Some("Task"),
                "members" => Some("Member"),
                _ => None,
            };
            if let Some(rows) = rows.filter(|_| self.r.random_bool(0.4)) {
                let w = self.filter(rows, 3);
                args.push(format!("where: {w}"));
            }
            if name.ends_with("Connection") {
                for paging in ["first", "last", "after", "before"] {
                    if self.r.random_bool(0.3) {
                        let v = if paging.starts_with('a') || paging.starts_with('b') {
                            ["\"WyJ4Il0\"", "\"%%%\"", "null", "\"\""][self.r.random_range(0..4)]
                                .to_owned()
                        } else {
                            int_value(&mut self.r, &mut self.used)
                        };
                        args.push(format!("{paging}: {v}"));
                    }
                }
            }
            if !args.is_empty() {
                f.push_str(&format!("({})", args.join(", ")));
            }
            if self.r.random_bool(0.1) {
                self.used.insert("s");
                f.push_str(" @skip(if: $s)");
            }
            if let Some(t) = target {
                if depth == 0 {
                    f.push_str(" { __typename }");
                } else {
                    f.push_str(&format!(" {{ {} }}", self.selection(t, depth - 1)));
                }
            }
            out.push(f);
        }
        out.join(" ")
    }

    /// A `where` value over `ty` (nested combinators and relations, any operator, any value:
    /// many are invalid, which validation or the planner must refuse without panicking).
    fn filter(&mut self, ty: &str, depth: usize) -> String {
        let fields = FILTERS
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(&[][..], |(_, f)| *f);
        let n = self.r.random_range(0..4);
        let mut entries = Vec::new();
        for _ in 0..n {
            let c = self.r.random_range(0..10);
            if depth > 0 && c < 3 {
                let key = ["_and", "_or", "_not"][c];
                let inner = self.filter(ty, depth - 1);
                entries.push(if key == "_not" {
                    format!("{key}: {inner}")
                } else {
                    format!("{key}: [{inner}, {}]", self.filter(ty, depth - 1))
                });
                continue;
            }
            if fields.is_empty() {
                continue;
            }
            let (field, of) = fields[self.r.random_range(0..fields.len())];
            if FILTERS.iter().any(|(t, _)| *t == of) {
                if depth > 0 {
                    entries.push(format!("{field}: {}", self.filter(of, depth - 1)));
                }
                continue;
            }
            let op = [
                "eq",
                "neq",
                "gt",
                "lte",
                "in",
                "nin",
                "isnull",
                "contains",
                "istartswith",
                "like",
                "bogus",
            ][self.r.random_range(0..11)];
            let v = VALUES[self.r.random_range(0..VALUES.len())];
            entries.push(format!("{field}: {{{op}: {v}}}"));
        }
        format!("{{{}}}", entries.join(", "))
    }

    fn document(&mut self) -> String {
        if self.r.random_bool(0.05) {
            // Noise: random bytes of GraphQL punctuation and words.
            let parts = [
                "{", "}", "(", ")", "...", "on", "query", "$", ":", "\"", "#", "@", "x",
            ];
            let n = self.r.random_range(0..200);
            return (0..n)
                .map(|_| parts[self.r.random_range(0..parts.len())])
                .collect::<Vec<_>>()
                .join(" ");
        }
        let depth = self.r.random_range(1..8);
        let body = self.selection("Query", depth);
        let decls: Vec<&str> = self
            .used
            .iter()
            .map(|v| match *v {
                "l" => "$l: Int",
                "id" => "$id: ID!",
                _ => "$s: Boolean = false",
            })
            .collect();
        let decls = if decls.is_empty() {
            String::new()
        } else {
            format!("({})", decls.join(", "))
        };
        let mut doc = format!("query Q{decls} {{ {body} }}\n");
        for (name, ty, sel) in &self.fragments {
            if !sel.is_empty() {
                doc.push_str(&format!("fragment {name} on {ty} {{ {sel} }}\n"));
            }
        }
        doc
    }
}

/// Cases run (the corpus): each is a fresh document.
const CASES: u32 = 3000;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn any_document_is_refused_with_a_document_error_or_within_the_limits_and_never_panics(seed in any::<u64>(), vars in 0u8..4) {
        let bundle = fraiseql_schema::build(SDL, "schema.graphql").expect("schema");
        let implementers: HashMap<_, _> = bundle.api.implementers_map();
        let limits = LimitsConfig::default();
        let rbac = RbacRules::default();
        let mut g = Gen {
            r: StdRng::seed_from_u64(seed),
            fragments: Vec::new(),
            used: Default::default(),
        };
        let query = g.document();
        let variables = match vars {
            0 => None,
            1 => Some(serde_json::json!({"l": null, "id": "x"}).as_object().cloned().unwrap_or_default()),
            2 => Some(serde_json::json!({"l": 7, "id": "5f0c5b8e-2f6a-4d8e-9a51-0f3b0d0c1a2b", "s": true}).as_object().cloned().unwrap_or_default()),
            _ => Some(serde_json::json!({"l": "many", "id": 5}).as_object().cloned().unwrap_or_default()),
        };
        match crate::document::prepare(&bundle.api, &limits, &query) {
            Ok(doc) => {
                for (name, c) in crate::limits::costs(&doc) {
                    prop_assert!(
                        c.depth <= limits.max_depth
                            && c.aliases <= limits.max_aliases
                            && c.fields <= limits.max_fields
                            && c.level_fields <= limits.max_root_fields,
                        "operation {name} passed with {c:?} for {query}"
                    );
                }
                let req = GraphqlRequest { query: Some(query.clone()), variables, ..GraphqlRequest::default() };
                if let Ok(op) = doc.operations.get(None) {
                    let planner = Planner {
                        schema: &bundle,
                        catalog: &bundle.catalog,
                        implementers: &implementers,
                        limits: &limits,
                        rbac: &rbac,
                        marker_nonce: 1,
                    };
                    let _ = planner.plan(&req, &doc, op, &[]);
                }
            }
            Err(errs) => {
                prop_assert!(!errs.is_empty(), "refused without an error: {query}");
                for e in &errs {
                    prop_assert!(
                        matches!(
                            e.extensions.code,
                            ErrorCode::GraphqlParseFailed
                                | ErrorCode::GraphqlValidationFailed
                                | ErrorCode::QueryTooComplex
                        ),
                        "{e:?} for {query}"
                    );
                }
            }
        }
    }
}
