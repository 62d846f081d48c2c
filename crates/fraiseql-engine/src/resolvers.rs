//! Rust resolvers: business logic registered through the library, next to the schema's
//! declarative SQL.
//!
//! - A **field resolver** (`Type.field`) is called once per place in the selection with ALL the
//!   parent rows of that level (no N+1) and returns one value per parent, in order.
//! - A **query** or **mutation resolver** (`Query.field`, `Mutation.field`) gets the coerced
//!   arguments. For fields of a `@view` type it returns the key (or a list of keys) of the rows,
//!   which are read back through the view with the client's selection; otherwise the value itself.
//!
//! Every resolver gets a [`Context`]: the tenant, the caller, and [`Context::db`], the request's
//! transaction on the tenant database (tenant context and row-level security already set; read
//! only for queries). A registered resolver replaces the field's directive, if it has one.
//!
//! ```no_run
//! use fraiseql_engine::resolvers::{Resolvers, ResolverError};
//! use serde_json::Value;
//!
//! let resolvers = Resolvers::new().field("Project", "taskCount", |ctx, batch| async move {
//!     let ids: Vec<String> = batch.parents.iter()
//!         .map(|p| p["id"].as_str().unwrap_or_default().to_owned()).collect();
//!     let rows = ctx.db().query(
//!         "SELECT count(t.pk_task) FROM unnest($1::text[]) WITH ORDINALITY AS k(id, n)
//!          LEFT JOIN tb_project p ON p.id::text = k.id LEFT JOIN tb_task t ON t.fk_project = p.pk_project
//!          GROUP BY k.n ORDER BY k.n", &[&ids]).await?;
//!     Ok(rows.iter().map(|r| Value::from(r.get::<_, i64>(0))).collect())
//! });
//! ```

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::connections::{Lease, Pools};
use crate::error::db_error;
use crate::error::{ErrorCode, GraphqlError};
use crate::tenancy::TenantRecord;

/// A boxed future, as resolvers return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type FieldFn =
    dyn Fn(Context, FieldBatch) -> BoxFuture<Result<Vec<Value>, ResolverError>> + Send + Sync;
type RootFn = dyn Fn(Context, Args) -> BoxFuture<Result<Value, ResolverError>> + Send + Sync;
type ObserverFn =
    dyn Fn(Context, Change) -> BoxFuture<Result<Vec<Event>, ResolverError>> + Send + Sync;
pub(crate) type SubscriberFn =
    dyn Fn(EventContext, EventMessage) -> BoxFuture<Result<(), ResolverError>> + Send + Sync;

/// The Rust code an engine serves: resolvers by coordinate, observers by entity change, and
/// subscriber handlers by consumer group.
#[derive(Clone, Default)]
pub struct Resolvers {
    fields: HashMap<String, Arc<FieldFn>>,
    roots: HashMap<String, Arc<RootFn>>,
    observers: HashMap<(String, String), Vec<Arc<ObserverFn>>>,
    subscribers: HashMap<String, Arc<SubscriberFn>>,
}

impl std::fmt::Debug for Resolvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolvers")
            .field("coordinates", &self.coordinates())
            .field("observers", &self.observers.keys().collect::<Vec<_>>())
            .field("subscribers", &self.subscribers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Resolvers {
    /// No resolvers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a batched field resolver for `type_name.field` (a type with `@view`).
    pub fn field<F, Fut>(mut self, type_name: &str, field: &str, f: F) -> Self
    where
        F: Fn(Context, FieldBatch) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Value>, ResolverError>> + Send + 'static,
    {
        let f: Arc<FieldFn> = Arc::new(move |ctx, batch| Box::pin(f(ctx, batch)));
        self.fields.insert(format!("{type_name}.{field}"), f);
        self
    }

    /// Registers a resolver for the root field `Query.<field>`.
    pub fn query<F, Fut>(self, field: &str, f: F) -> Self
    where
        F: Fn(Context, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ResolverError>> + Send + 'static,
    {
        self.root(format!("Query.{field}"), f)
    }

    /// Registers a resolver for the root field `Mutation.<field>`. It runs in the request's
    /// read-write transaction: if it (or anything after it in the operation) fails, its writes
    /// are rolled back.
    pub fn mutation<F, Fut>(self, field: &str, f: F) -> Self
    where
        F: Fn(Context, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ResolverError>> + Send + 'static,
    {
        self.root(format!("Mutation.{field}"), f)
    }

    fn root<F, Fut>(mut self, coordinate: String, f: F) -> Self
    where
        F: Fn(Context, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ResolverError>> + Send + 'static,
    {
        let f: Arc<RootFn> = Arc::new(move |ctx, args| Box::pin(f(ctx, args)));
        self.roots.insert(coordinate, f);
        self
    }

    /// Registers a Rust observer of `entity` (a `@view` type) for `operation` (`CREATE`,
    /// `UPDATE`, `DELETE`), i.e. for every mutation declaring that change
    /// (`@mutation(operation:, entity:)`). It runs in the mutation's transaction with the changed
    /// keys; the events it returns are written to the outbox there, so they commit with the
    /// change (and `event_id`, `event_type`, `tenant_id`, `timestamp` are added to each payload).
    pub fn observer<F, Fut>(mut self, entity: &str, operation: &str, f: F) -> Self
    where
        F: Fn(Context, Change) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Event>, ResolverError>> + Send + 'static,
    {
        let f: Arc<ObserverFn> = Arc::new(move |ctx, change| Box::pin(f(ctx, change)));
        self.observers
            .entry((entity.to_owned(), operation.to_owned()))
            .or_default()
            .push(f);
        self
    }

    /// Registers the handler of `[[subscribers]]` entry `consumer_group` (one without `sql`).
    /// The message is acknowledged once it returns `Ok` (commit your writes before returning);
    /// an `Err` redelivers it with backoff, up to `max_deliver` times, then dead-letters it.
    pub fn subscriber<F, Fut>(mut self, consumer_group: &str, f: F) -> Self
    where
        F: Fn(EventContext, EventMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ResolverError>> + Send + 'static,
    {
        let f: Arc<SubscriberFn> = Arc::new(move |ctx, msg| Box::pin(f(ctx, msg)));
        self.subscribers.insert(consumer_group.to_owned(), f);
        self
    }

    pub(crate) fn observers_of(&self, entity: &str, operation: &str) -> &[Arc<ObserverFn>] {
        self.observers
            .get(&(entity.to_owned(), operation.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    pub(crate) fn subscriber_fn(&self, group: &str) -> Option<&Arc<SubscriberFn>> {
        self.subscribers.get(group)
    }

    /// Every registered coordinate (`Type.field`).
    pub fn coordinates(&self) -> BTreeSet<String> {
        self.fields
            .keys()
            .chain(self.roots.keys())
            .cloned()
            .collect()
    }

    pub(crate) fn field_fn(&self, coordinate: &str) -> Option<&Arc<FieldFn>> {
        self.fields.get(coordinate)
    }

    pub(crate) fn root_fn(&self, coordinate: &str) -> Option<&Arc<RootFn>> {
        self.roots.get(coordinate)
    }
}

/// A change a Rust observer is told about.
#[derive(Debug, Clone)]
pub struct Change {
    /// The `@view` type.
    pub entity: String,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: String,
    /// The keys of the changed rows (for DELETE, of rows that no longer exist).
    pub keys: Vec<Value>,
}

/// An event a Rust observer asks to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The subject (must be captured by `[observers.stream] subjects`).
    pub subject: String,
    /// A JSON object.
    pub payload: Value,
}

impl Event {
    /// An event on `subject` with `payload` (a JSON object).
    pub fn new(subject: impl Into<String>, payload: Value) -> Self {
        Self {
            subject: subject.into(),
            payload,
        }
    }
}

/// A message a Rust subscriber handles.
#[derive(Debug, Clone)]
pub struct EventMessage {
    /// Its subject.
    pub subject: String,
    /// Its JSON body.
    pub payload: Value,
    /// Which delivery this is (1 for the first).
    pub delivered: i64,
}

/// What a Rust subscriber can reach: the configured databases.
#[derive(Clone)]
pub struct EventContext {
    pub(crate) pools: Arc<Pools>,
}

impl EventContext {
    /// A pooled connection to `[databases.<name>]` (run your writes in a transaction and commit
    /// before returning).
    pub async fn database(&self, name: &str) -> Result<Lease, ResolverError> {
        let db = self.pools.get(name).ok_or_else(|| {
            ResolverError::internal(format!("database `{name}` is not configured"))
        })?;
        Ok(db.lease().await?)
    }
}

/// What a field resolver is called with.
#[derive(Debug, Clone)]
pub struct FieldBatch {
    /// Every parent row of this level: the parent view's row as JSON (each column by name,
    /// the `data` column as an object).
    pub parents: Vec<Value>,
    /// The field's arguments (coerced, defaults applied): the same for every parent.
    pub args: Map<String, Value>,
}

/// The coerced arguments of a root field (defaults applied).
#[derive(Debug, Clone, Default)]
pub struct Args(pub Map<String, Value>);

impl Args {
    /// Argument `name` deserialised as `T` (`null`/absent as `Option::None` if `T` allows it).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, ResolverError> {
        let v = self.0.get(name).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| {
            ResolverError::new(ErrorCode::BadUserInput, format!("argument `{name}`: {e}"))
        })
    }

    /// Argument `name` as a string.
    pub fn str(&self, name: &str) -> Result<&str, ResolverError> {
        self.0.get(name).and_then(Value::as_str).ok_or_else(|| {
            ResolverError::new(
                ErrorCode::BadUserInput,
                format!("argument `{name}` must be a string"),
            )
        })
    }
}

/// A resolver's failure: a GraphQL error with a code. Database errors convert with `?` and are
/// mapped like declarative SQL's (constraint violations get their codes, other details only
/// reach the log).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverError {
    /// `extensions.code`.
    pub code: ErrorCode,
    /// The message the client sees.
    pub message: String,
}

impl ResolverError {
    /// An error with a code and a message for the client.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `BAD_USER_INPUT`.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }

    /// `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `INTERNAL_SERVER_ERROR`: `detail` is logged, the client sees a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "resolver failed");
        Self::new(
            ErrorCode::InternalServerError,
            "internal error in a resolver (see server log)",
        )
    }

    pub(crate) fn into_graphql(self) -> GraphqlError {
        GraphqlError::new(self.code, self.message)
    }
}

impl std::fmt::Display for ResolverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for ResolverError {}

impl From<tokio_postgres::Error> for ResolverError {
    fn from(e: tokio_postgres::Error) -> Self {
        let g = db_error(&e, "resolver");
        Self::new(g.extensions.code, g.message)
    }
}

impl From<crate::connections::PoolError> for ResolverError {
    fn from(e: crate::connections::PoolError) -> Self {
        let g = crate::connections::pool_error(&e, "database");
        Self::new(g.extensions.code, g.message)
    }
}

/// The request's open transaction on one database. Statements run in it see the tenant context
/// (`app.tenant_id`, row-level security) and its earlier writes.
#[derive(Clone)]
pub struct Transaction {
    pub(crate) lease: Arc<Lease>,
    pub(crate) statements: Arc<AtomicU64>,
}

impl Transaction {
    fn client(&self) -> &Client {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.lease.client()
    }

    /// Runs a statement and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ResolverError> {
        Ok(self.client().query(sql, params).await?)
    }

    /// Runs a statement that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, ResolverError> {
        Ok(self.client().query_opt(sql, params).await?)
    }

    /// Runs a statement that returns exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, ResolverError> {
        Ok(self.client().query_one(sql, params).await?)
    }

    /// Runs a statement and returns how many rows it changed.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, ResolverError> {
        Ok(self.client().execute(sql, params).await?)
    }
}

/// What a resolver knows about the request.
#[derive(Clone)]
pub struct Context {
    pub(crate) tenant: Option<Arc<TenantRecord>>,
    pub(crate) user_id: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) tx: Transaction,
    pub(crate) pools: Arc<Pools>,
}

impl Context {
    /// The tenant's key (`acme_corp`), with multi-tenancy on.
    pub fn tenant_key(&self) -> Option<&str> {
        self.tenant.as_deref().map(|t| t.key.as_str())
    }

    /// The tenant's id (the value of `app.tenant_id` and of its `tenant_id` columns).
    pub fn tenant_id(&self) -> Option<uuid::Uuid> {
        self.tenant.as_deref().map(|t| t.id)
    }

    /// The token's subject.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The caller's roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The request's transaction on the tenant database.
    pub fn db(&self) -> &Transaction {
        &self.tx
    }

    /// A connection (outside the request's transaction) to `[databases.<name>]`, e.g. `shared`.
    pub async fn database(&self, name: &str) -> Result<Lease, ResolverError> {
        let db = self.pools.get(name).ok_or_else(|| {
            ResolverError::internal(format!("database `{name}` is not configured"))
        })?;
        Ok(db.lease().await?)
    }
}
