//! The planner: a validated operation + the catalog -> ONE parameterised SQL statement per root
//! field, whose single text column is the field's JSON, built by PostgreSQL.
//!
//! Pure: no I/O. Every request value becomes a bind parameter (sent as text, so PostgreSQL parses
//! it into the column's own type); identifiers come from the validated catalog and are quoted.

mod collect;
mod error;
mod sql;
mod values;

pub use error::PlanError;

use apollo_compiler::executable::Operation;
use apollo_compiler::response::JsonMap;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use fraiseql_schema::{Catalog, RootField};

/// What a request may ask of the planner.
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    /// Largest `limit` accepted on a list field.
    pub max_limit: i64,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self { max_limit: 1000 }
    }
}

/// Who may read what: asked once per selected field while planning.
pub trait Access {
    /// Whether field `field` of type `type_name` may be read.
    fn allows(&self, type_name: &str, field: &str) -> bool;
}

/// Everything is readable.
pub struct AllowAll;

impl Access for AllowAll {
    fn allows(&self, _: &str, _: &str) -> bool {
        true
    }
}

/// How to answer one operation: one entry per root response key, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Root fields in response order.
    pub fields: Vec<RootPlan>,
    /// Response paths (keys, no list indices) of nested fields that were denied and read as `null`.
    pub denied: Vec<Vec<String>>,
}

/// One root response key.
#[derive(Debug, Clone, PartialEq)]
pub struct RootPlan {
    /// The key in `data` (alias or field name).
    pub response_key: String,
    /// How its value is produced.
    pub kind: RootKind,
}

/// How a root value is produced.
#[derive(Debug, Clone, PartialEq)]
pub enum RootKind {
    /// `__typename` on the root: the root type's name.
    Typename(String),
    /// `__schema` / `__type`: answered from the schema by the engine.
    Introspection,
    /// One SQL statement returning the value's JSON text (zero rows means `null`).
    Sql(SqlPlan),
    /// The caller may not read this field: `null` and a `FORBIDDEN` error.
    Denied,
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlPlan {
    /// The `[databases.<name>]` to run it on.
    pub database: String,
    /// The statement; its only column is the JSON text.
    pub sql: String,
    /// Bind parameters, `$1..$n`, in text form.
    pub params: Vec<String>,
    /// Whether the field may be `null` (else a failure nulls the whole `data`).
    pub nullable: bool,
}

/// Plans `operation` of `document`. `variables` must already be coerced
/// (`apollo_compiler::request::coerce_variable_values`), so defaults are applied.
pub fn plan(
    schema: &Valid<Schema>,
    catalog: &Catalog,
    document: &Valid<ExecutableDocument>,
    operation: &Operation,
    variables: &JsonMap,
    limits: PlanLimits,
    access: &dyn Access,
) -> Result<Plan, PlanError> {
    let cx = collect::Cx {
        schema,
        document,
        variables,
    };
    let root_type = operation.object_type().as_str();
    if !operation.is_query() {
        return Err(PlanError::unsupported(format!(
            "{} operations are not supported by this server",
            operation.operation_type
        )));
    }
    let grouped = cx.collect(root_type, std::iter::once(&operation.selection_set))?;
    let mut fields = Vec::with_capacity(grouped.len());
    let mut denied = Vec::new();
    for (key, group) in grouped {
        let field = group[0];
        let kind = match field.name.as_str() {
            "__typename" => RootKind::Typename(root_type.to_owned()),
            "__schema" | "__type" => RootKind::Introspection,
            name if !access.allows(root_type, name) => RootKind::Denied,
            name => {
                let root = catalog.queries.get(name).ok_or_else(|| {
                    PlanError::unsupported(format!("root field `{name}` has no mapping"))
                })?;
                let b = sql::Builder::new(&cx, catalog, limits, access, vec![key.clone()]);
                let (kind, d) = match root {
                    RootField::Rows(c) => b.root_rows(c, &group)?,
                    RootField::Sql { expr, .. } => b.root_sql(expr),
                };
                denied.extend(d);
                kind
            }
        };
        fields.push(RootPlan {
            response_key: key,
            kind,
        });
    }
    Ok(Plan { fields, denied })
}

#[cfg(test)]
mod tests;
