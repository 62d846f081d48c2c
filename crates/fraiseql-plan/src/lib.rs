//! The planner: a validated operation + the catalog -> ONE parameterised SQL statement per root
//! field, whose single text column is the field's JSON, built by PostgreSQL.
//!
//! Pure: no I/O. Every request value becomes a bind parameter (sent as text, so PostgreSQL parses
//! it into the column's own type); identifiers come from the validated catalog and are quoted.

mod aggregate;
mod collect;
mod connection;
mod cursor;
mod entities;
mod error;
mod filter;
mod root;
mod sql;
mod subscription;
mod values;

pub use error::PlanError;
pub use subscription::{plan_subscription, SubscriptionPlan};
pub use values::param_text;

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
    /// Longest string (in characters) accepted in an argument value.
    pub max_string_length: usize,
    /// Longest list accepted in an argument value.
    pub max_list_length: usize,
    /// Most rows an operation may produce (the product of nested list limits, summed).
    pub max_rows: u64,
    /// Deepest nesting of a `where` value's input objects.
    pub max_depth: usize,
    /// Most entries (keys of input objects) in all the `where` values of an operation: what
    /// is left of the selection budget (`[limits] max_fields`) after its fields.
    pub max_filter_nodes: usize,
    /// Makes field-resolver markers unguessable (`__fraiseql_<nonce>`), so JSON stored by users
    /// can never pass for one. The engine draws it at random once.
    pub marker_nonce: u64,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            max_limit: 1000,
            max_string_length: 65_536,
            max_list_length: 10_000,
            max_rows: 100_000,
            max_depth: 12,
            max_filter_nodes: 1000,
            marker_nonce: 0,
        }
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
    /// The most rows the operation may produce, as counted against [`PlanLimits::max_rows`]
    /// (the product of nested list limits, summed over the root fields), so a lower limit (a
    /// tenant's plan) can be checked on a cached plan.
    pub rows: u64,
}

/// One root response key.
#[derive(Debug, Clone, PartialEq)]
pub struct RootPlan {
    /// The key in `data` (alias or field name).
    pub response_key: String,
    /// How its value is produced.
    pub kind: RootKind,
    /// For `@cache` fields: how long and what invalidates the answer.
    pub cache: Option<CachePlan>,
}

/// How a `@cache` root field's answer is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePlan {
    /// Seconds.
    pub ttl_secs: u32,
    /// The key includes the caller (token subject).
    pub per_user: bool,
    /// The `@view` types whose mutations invalidate it; [`ANY_ENTITY`] when unknown.
    pub reads: Vec<String>,
}

/// In [`CachePlan::reads`]: any mutation of the tenant invalidates the answer.
pub const ANY_ENTITY: &str = "*";

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
    /// A mutation statement, then its output.
    Mutation(MutationPlan),
    /// A Rust query or mutation resolver, then its output.
    Resolver(ResolverPlan),
    /// A value known from the schema alone (`_service { sdl }`): its JSON text.
    Constant(String),
    /// `_entities` over types read from several databases: one statement per database, their
    /// answers put back in the representations' order. (Over one database it is plain `Sql`.)
    Entities(EntitiesPlan),
}

/// `_entities` over several databases.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitiesPlan {
    /// One statement per database; each answers a JSON array.
    pub parts: Vec<EntityPart>,
    /// How many representations there are.
    pub len: usize,
}

/// The statement of one database of an `_entities` field.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityPart {
    /// It answers a JSON array, one element per position.
    pub plan: SqlPlan,
    /// Where each element goes in `_entities`.
    pub positions: Vec<usize>,
}

/// A declarative mutation: one statement in the request's read-write transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationPlan {
    /// The `[databases.<name>]` to run it on.
    pub database: String,
    /// The statement (wrapped at start-up so that it returns one text column: the JSON array of
    /// the first column of its rows).
    pub sql: String,
    /// Its bind parameters, `$1..$n`.
    pub params: Vec<BoundParam>,
    /// What the client gets back.
    pub output: OutputPlan,
    /// The entity change it makes, for observers.
    pub change: Option<fraiseql_schema::Change>,
}

/// A bind parameter of a mutation statement.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundParam {
    /// A request value as text (`None` is `NULL`).
    Value(Option<String>),
    /// A request context value, filled in at execution.
    Context(fraiseql_schema::ContextValue),
}

/// A call of a Rust query or mutation resolver.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverPlan {
    /// `Query.field` or `Mutation.field`.
    pub coordinate: String,
    /// Every argument, coerced, defaults applied.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// What the client gets back.
    pub output: OutputPlan,
    /// For mutation resolvers: the entity change it makes, for observers.
    pub change: Option<fraiseql_schema::Change>,
}

/// How the value a mutation or resolver returns becomes the response value.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputPlan {
    /// The returned keys are read back through the view (in the order returned, for lists);
    /// the statement finds them in the transaction's `fraiseql.keys` setting.
    Readback {
        /// The statement.
        plan: SqlPlan,
        /// `[T]` or `T`.
        list: bool,
    },
    /// The returned value is the answer, projected onto the selection when it is an object.
    Value {
        /// `[T]` or `T`.
        list: bool,
        /// Whether `null` is allowed.
        nullable: bool,
        /// For object types: the selection.
        projection: Option<Projection>,
    },
}

/// The selection of an object value computed outside the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Response keys in order.
    pub fields: Vec<ProjectedField>,
}

/// One response key of a [`Projection`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedField {
    /// The response key (alias or name).
    pub key: String,
    /// Where its value comes from.
    pub source: Projected,
}

/// Where a projected value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Projected {
    /// `__typename`: this type name.
    Typename(String),
    /// A field the caller may not read (`[rbac]`): `null`.
    Denied,
    /// A key of the object, projected further if it is an object.
    Field {
        /// The field name (the key read from the object).
        name: String,
        /// The sub-selection, for object types.
        projection: Option<Projection>,
    },
}

/// A value computed after a statement, for every parent row of one place in the selection at
/// once: by a Rust field resolver, or by a statement on another database. In the statement's
/// JSON, each such value is a marker `{"__fraiseql_<nonce>": <index>, "row": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCall {
    /// Who computes it.
    pub kind: CallKind,
    /// The parent type.
    pub type_name: String,
    /// The field.
    pub field: String,
    /// The field's arguments, coerced.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// For object values: the selection.
    pub projection: Option<Projection>,
    /// Response path (keys only) for errors.
    pub path: Vec<String>,
}

/// Who computes a [`FieldCall`].
#[derive(Debug, Clone, PartialEq)]
pub enum CallKind {
    /// The Rust field resolver of `type_name.field`; the marker's `row` is the parent row.
    Resolver,
    /// A statement on another database (`@federated`): `$1` is the JSON array of the markers'
    /// `row`s (the parents' lookup values, in order) and it answers a JSON array of as many
    /// values. Its own markers are resolved the same way.
    Federated(Box<SqlPlan>),
}

/// The prefix of a field-resolver marker object's key in a statement's JSON.
pub const MARKER_KEY: &str = "__fraiseql";

/// The marker key for `nonce`.
pub fn marker_key(nonce: u64) -> String {
    format!("{MARKER_KEY}_{nonce:016x}")
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
    /// Rust field resolvers whose markers the JSON holds (empty: the JSON is final).
    pub calls: Vec<FieldCall>,
    /// The markers' key (see [`PlanLimits::marker_nonce`]).
    pub marker: String,
    /// The `@view` types it reads (those of its `@federated` calls included).
    pub reads: Vec<String>,
}

impl Plan {
    /// Whether answering needs Rust code (resolvers) or writes (mutations): if not, the plan is
    /// plain SQL.
    pub fn needs_transaction_work(&self) -> bool {
        self.fields.iter().any(|f| match &f.kind {
            RootKind::Sql(p) => !p.calls.is_empty(),
            RootKind::Mutation(_) | RootKind::Resolver(_) | RootKind::Entities(_) => true,
            _ => false,
        })
    }
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
        rows: std::cell::Cell::new(0),
        filter_nodes: std::cell::Cell::new(0),
    };
    let root_type = operation.object_type().as_str();
    let mutation = operation.is_mutation();
    if !operation.is_query() && !mutation {
        return Err(PlanError::unsupported(format!(
            "{} operations are answered over a WebSocket (graphql-transport-ws) or Server-Sent Events (Accept: text/event-stream), not as a single response",
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
            name if mutation => {
                let m = catalog.mutations.get(name).ok_or_else(|| {
                    PlanError::unsupported(format!("mutation field `{name}` has no mapping"))
                })?;
                let (kind, d) =
                    root::mutation(&cx, catalog, limits, access, &key, root_type, m, &group)?;
                denied.extend(d);
                kind
            }
            name => {
                let root = catalog.queries.get(name).ok_or_else(|| {
                    PlanError::unsupported(format!("root field `{name}` has no mapping"))
                })?;
                let b = sql::Builder::new(&cx, catalog, limits, access, vec![key.clone()]);
                let (kind, d) = match root {
                    RootField::Rows(c) => b.root_rows(c, &group)?,
                    RootField::Aggregate(c) => b.root_aggregate(c, &group)?,
                    RootField::Sql { expr, .. } => b.root_sql(expr),
                    RootField::Resolver(output) => root::resolver(
                        &cx, catalog, limits, access, &key, root_type, output, None, &group,
                    )?,
                    RootField::Entities => {
                        entities::plan(&cx, catalog, limits, access, &key, &group)?
                    }
                    RootField::Service => (entities::service(&cx, catalog, &group)?, Vec::new()),
                };
                denied.extend(d);
                kind
            }
        };
        let cache = match (mutation, catalog.cache.get(field.name.as_str())) {
            (false, Some(policy)) => {
                let reads = match (&policy.entities, &kind) {
                    (Some(e), _) => e.clone(),
                    (None, RootKind::Sql(p)) if !p.reads.is_empty() => p.reads.clone(),
                    _ => vec![ANY_ENTITY.to_owned()],
                };
                Some(CachePlan {
                    ttl_secs: policy.ttl_secs,
                    per_user: policy.per_user,
                    reads,
                })
            }
            _ => None,
        };
        fields.push(RootPlan {
            response_key: key,
            kind,
            cache,
        });
    }
    Ok(Plan {
        fields,
        denied,
        rows: cx.rows.get(),
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_aggregate;
#[cfg(test)]
mod tests_where;
