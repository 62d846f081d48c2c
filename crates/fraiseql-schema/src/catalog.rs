//! The catalog: what the planner needs to turn a selection into SQL.

use indexmap::IndexMap;

use crate::ident::QualifiedName;

/// The database a type lives in when `@view(database:)` is not given.
pub const DEFAULT_DATABASE: &str = "tenant";

/// The transaction-local setting holding the keys a mutation returned (a JSON array), read by
/// the statements that follow it in the transaction (read-back, outbox).
pub const KEYS_SETTING: &str = "fraiseql.keys";

/// SQL for the keys in [`KEYS_SETTING`] as an array of the type of column `column` of relation
/// `view` (typed through the relation's row type, so no type has to be known here), in the order
/// returned. An uncorrelated array constructor: PostgreSQL evaluates it once and can use an
/// index for `column = ANY(...)`.
pub fn returned_keys(view: &str, column: &str) -> String {
    let col = crate::ident::quote_ident(column);
    format!(
        "ARRAY(SELECT (json_populate_record(NULL::{view}, json_build_object({lit}, e.value))).{col} FROM json_array_elements_text(coalesce(current_setting('{KEYS_SETTING}', true), '[]')::json) WITH ORDINALITY AS e(value, n) ORDER BY e.n)",
        lit = crate::ident::quote_literal(column)
    )
}

/// Every mapped type and root field of a schema.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Object types backed by a view, by GraphQL type name.
    pub types: IndexMap<String, TypeMapping>,
    /// Object types without a view whose values are JSON objects: embedded in a parent's JSON,
    /// or an entity's representation (federation), by GraphQL type name.
    pub objects: IndexMap<String, ObjectMapping>,
    /// Root `Query` fields, by field name.
    pub queries: IndexMap<String, RootField>,
    /// Root `Mutation` fields, by field name.
    pub mutations: IndexMap<String, MutationField>,
    /// Set when the schema links the federation spec: it is then a subgraph.
    pub federation: Option<Federation>,
    /// Root `Query` fields with `@cache`, by field name.
    pub cache: IndexMap<String, CachePolicy>,
    /// Root `Subscription` fields (`@event`), by field name.
    pub subscriptions: IndexMap<String, SubscriptionField>,
    /// The columns of the views, by GraphQL type name, as the database has them. Empty in the
    /// schema alone; the engine fills it at start-up (it reads every view's columns), so a
    /// `where` on a field read from `data` compares the view's same-named column instead.
    pub columns: IndexMap<String, ViewColumns>,
}

/// A root `Subscription` field: the changes of an entity it delivers, read through the
/// entity's view with the subscriber's selection.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionField {
    /// The entity and the operation (`CREATE`, `UPDATE`) whose events feed it.
    pub change: Change,
    /// How a changed row is read: the entity's view (one object, never a list) and the
    /// field's arguments, all equality filters on the row.
    pub rows: Collection,
}

/// The columns of one type's view, found in the database at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewColumns {
    /// Column name -> its type as PostgreSQL names it (`format_type`: `timestamp with time zone`).
    pub types: IndexMap<String, String>,
    /// Field name -> the column that holds the same value as the field's `data` key (named like
    /// the key, of a type that fits the field's scalar): filters compare it, so its index serves.
    pub fields: IndexMap<String, String>,
}

/// `@cache` on a root query field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Seconds an answer is kept.
    pub ttl_secs: u32,
    /// The answer depends on the caller (the token's subject), not only on the roles.
    pub per_user: bool,
    /// The `@view` types whose mutations invalidate it (`None`: derived from the plan).
    pub entities: Option<Vec<String>>,
}

impl Catalog {
    /// The mapping of a type, if it is backed by a view.
    pub fn type_mapping(&self, name: &str) -> Option<&TypeMapping> {
        self.types.get(name)
    }
}

/// An object type without a view: its values are JSON objects (a key of a parent's JSON, or a
/// federation representation), its fields read from their keys (or computed).
#[derive(Debug, Clone)]
pub struct ObjectMapping {
    /// GraphQL type name.
    pub name: String,
    /// Fields by GraphQL name: `Json`, `Embedded`, `Relation` (its `column` is a key of the
    /// object), `Sql` (`{parent}` is the object, as `jsonb`) or `Resolver` (the parent row is the
    /// object).
    pub fields: IndexMap<String, FieldSource>,
    /// Where its entities' statements run (`_entities`): the database its relations read from
    /// when they all read from one, else `tenant`. Embedded values follow their parent's.
    pub database: String,
}

/// A field holding a JSON object (or a list of them) of a type without a view, under a key of
/// the parent's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The type of the objects.
    pub target: String,
    /// `[T]` or `T`.
    pub list: bool,
    /// The key in the parent's JSON.
    pub key: String,
}

/// The subgraph side of a schema linking Apollo Federation v2.
#[derive(Debug, Clone)]
pub struct Federation {
    /// The linked spec version (`2.3`).
    pub version: String,
    /// What `_service { sdl }` returns: the SDL as written, minus the engine's directives.
    pub sdl: String,
    /// Types `_entities` resolves, by name.
    pub entities: IndexMap<String, Entity>,
}

/// How `_entities` finds the object a representation stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Its resolvable `@key`s, in the order declared (a representation uses the first whose
    /// fields it carries).
    pub keys: Vec<EntityKey>,
    /// A `@view` type (looked up by key) or not (the representation is the object).
    pub view: bool,
    /// Where its statement runs.
    pub database: String,
}

/// One `@key(fields: ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityKey {
    /// The field set as written.
    pub fields: String,
    /// Each leaf of the field set.
    pub leaves: Vec<KeyLeaf>,
}

/// One leaf of a key: `variation { id }` is the path `["variation", "id"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLeaf {
    /// GraphQL field names from the entity down to the leaf.
    pub path: Vec<String>,
    /// The leaf's GraphQL type name (`ID`, `String`, `Int` ...), for checking values.
    pub scalar: String,
    /// What the value is compared with.
    pub lookup: KeyLookup,
}

/// Where a key's value is found in a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// A view column (compared in the column's own type: it can use an index).
    Column(String),
    /// A path of keys into the `data` column (compared as text).
    Json(Vec<String>),
    /// Not looked up: the entity has no view.
    Representation,
}

/// An object type backed by a view.
#[derive(Debug, Clone)]
pub struct TypeMapping {
    /// GraphQL type name.
    pub name: String,
    /// The view.
    pub view: QualifiedName,
    /// The `[databases.<name>]` the view lives in.
    pub database: String,
    /// The JSON(B) column holding the fields.
    pub data_column: String,
    /// The column identifying a row: mutations and resolvers return its values, and the
    /// entities are read back through the view by it.
    pub key_column: String,
    /// Fields by GraphQL name.
    pub fields: IndexMap<String, FieldSource>,
    /// The fields a `where` (`<Type>WhereInput`) can filter on, by GraphQL name, in order.
    pub filters: IndexMap<String, Filterable>,
}

impl TypeMapping {
    /// The name of the input type of its `where` arguments.
    pub fn where_input(&self) -> String {
        where_input_name(&self.name)
    }
}

/// `<Type>WhereInput`: the `where` input of a `@view` type.
pub fn where_input_name(type_name: &str) -> String {
    format!("{type_name}WhereInput")
}

/// A field a `where` can filter on.
#[derive(Debug, Clone, PartialEq)]
pub enum Filterable {
    /// A scalar or enum value, compared with the operators of its `<Scalar>Filter`.
    Value {
        /// How values are typed.
        kind: ValueKind,
        /// Where the value is read.
        source: ValueSource,
    },
    /// Rows of another view of the same database, joined as the field reads them: the filter
    /// holds when at least one of them matches the nested `<Target>WhereInput` (`EXISTS`).
    Rows {
        /// The GraphQL type of the rows.
        target: String,
        /// The join (parent column = target column).
        join: Join,
    },
}

/// Where a filtered value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A key of the `data` column (unless the view has a same-named column: [`ViewColumns`]).
    Key(String),
    /// A column of the view.
    Column(String),
    /// A `@sql` expression over the row (`{parent}` is the row).
    Sql(String),
}

/// How a filtered value is typed in SQL: the parameter is cast to it when the value is read
/// from `data` (a column or `@sql` expression gives the parameter its own type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// `String`: text, with the string operators.
    String,
    /// `Int`: numeric.
    Int,
    /// `Float`: numeric.
    Float,
    /// `Boolean`: boolean.
    Boolean,
    /// `ID`: text on a `data` key (an id need not be a uuid); a uuid column stays a uuid.
    Id,
    /// A scalar named `DateTime`: timestamptz.
    DateTime,
    /// A scalar named `Date`: date.
    Date,
    /// An enum: its value's name, as text.
    Enum,
    /// Any other custom scalar: text.
    Other,
}

impl ValueKind {
    /// The kind of GraphQL leaf type `named` (`is_enum`: it is an enum type).
    pub fn of(named: &str, is_enum: bool) -> Self {
        match named {
            _ if is_enum => Self::Enum,
            "String" => Self::String,
            "Int" => Self::Int,
            "Float" => Self::Float,
            "Boolean" => Self::Boolean,
            "ID" => Self::Id,
            "DateTime" => Self::DateTime,
            "Date" => Self::Date,
            _ => Self::Other,
        }
    }

    /// The SQL type a `data` key's text is cast to (`None`: compared as text).
    pub fn cast(self) -> Option<&'static str> {
        match self {
            Self::Int | Self::Float => Some("numeric"),
            Self::Boolean => Some("boolean"),
            Self::DateTime => Some("timestamptz"),
            Self::Date => Some("date"),
            Self::String | Self::Id | Self::Enum | Self::Other => None,
        }
    }

    /// Whether the string operators (`like`, `contains`, ...) apply.
    pub fn is_string(self) -> bool {
        self == Self::String
    }
}

/// What a root `Query` field reads.
#[derive(Debug, Clone, PartialEq)]
pub enum RootField {
    /// Rows of a type's view.
    Rows(Collection),
    /// One value computed by a SQL expression (no parent row).
    Sql {
        /// The expression.
        expr: String,
        /// The GraphQL scalar it must produce.
        scalar: String,
    },
    /// `@aggregate`: groups of a type's view rows and what they add up to (`[<T>Aggregate!]!`),
    /// ONE row per group. Its arguments: `where`, equality filters, `groupBy`, `having`,
    /// `orderBy`, `limit` (of groups).
    Aggregate(Collection),
    /// A Rust query resolver registered through the library.
    Resolver(Output),
    /// `_entities(representations:)` (federation).
    Entities,
    /// `_service { sdl }` (federation).
    Service,
}

/// A root `Mutation` field.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationField {
    /// What it runs.
    pub action: MutationAction,
    /// What it returns.
    pub output: Output,
    /// What it changes (`@mutation(operation:, entity:)`), for observers.
    pub change: Option<Change>,
}

/// An entity change a mutation makes: observers publish events for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The `@view` type changed.
    pub entity: String,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: String,
}

/// What a mutation runs.
#[derive(Debug, Clone, PartialEq)]
pub enum MutationAction {
    /// One SQL statement (`@mutation(sql:)`, or `@mutation(function:)` turned into a call).
    Sql {
        /// The `[databases.<name>]` it runs on.
        database: String,
        /// The statement with `$1..$n` placeholders, wrapped so that its one text column is the
        /// JSON array of the first column of the rows it returns.
        sql: String,
        /// What each placeholder is bound to, in order.
        params: Vec<ParamSource>,
    },
    /// A Rust mutation resolver registered through the library.
    Resolver,
}

/// A value bound to a mutation statement's placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamSource {
    /// A GraphQL argument of the field, by name.
    Arg(String),
    /// A value of the request context.
    Context(ContextValue),
}

/// Request context values a statement can use (`$ctx.tenant_id` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextValue {
    /// The tenant's id (uuid text).
    TenantId,
    /// The tenant's key (`acme_corp`).
    TenantKey,
    /// The token's subject.
    UserId,
    /// The caller's roles (a PostgreSQL text array).
    Roles,
}

impl ContextValue {
    /// The name used in SQL templates and in the `app.*` settings.
    pub fn name(self) -> &'static str {
        match self {
            Self::TenantId => "tenant_id",
            Self::TenantKey => "tenant_key",
            Self::UserId => "user_id",
            Self::Roles => "roles",
        }
    }

    /// Every context value.
    pub const ALL: [ContextValue; 4] = [Self::TenantId, Self::TenantKey, Self::UserId, Self::Roles];
}

/// What a mutation or resolver produces and how the response value is made from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Keys of a `@view` type's rows, read back through the view with the client's selection.
    Entity {
        /// The GraphQL type.
        target: String,
        /// `[T]` or `T`.
        list: bool,
        /// Whether the field is non-null.
        non_null: bool,
    },
    /// A value returned as is: a scalar or enum (or a list of one); for resolvers also an object
    /// not backed by a view, projected onto the selection.
    Value {
        /// `[T]` or `T`.
        list: bool,
        /// Whether the field is non-null.
        non_null: bool,
    },
}

impl Output {
    /// Whether the field may be `null`.
    pub fn nullable(&self) -> bool {
        match self {
            Self::Entity { non_null, .. } | Self::Value { non_null, .. } => !non_null,
        }
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    /// A key of the view's `data` column.
    Json {
        /// The JSON key.
        key: String,
    },
    /// A column of the view.
    Column {
        /// The column.
        name: String,
    },
    /// A SQL expression over the parent row (`{parent}` is replaced by the row's alias).
    Sql {
        /// The expression.
        expr: String,
        /// The GraphQL scalar it must produce (`Int`, `String`, ...), checked at start-up.
        scalar: String,
    },
    /// Rows of another type's view joined on a key column (`@relation`, `@federated`); when the
    /// view is in another database, read there in one statement per level.
    Relation(Box<Collection>),
    /// A JSON object (or list) of a type without a view, under a key of the parent's JSON.
    Embedded(Box<Embedded>),
    /// A Rust field resolver registered through the library: called once per level with every
    /// parent row. Its value is a scalar, an enum, JSON, or an object projected onto the selection.
    Resolver,
}

/// Rows of a view: a root field, or a relation from a parent row.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// The GraphQL type of the rows.
    pub target: String,
    /// A list (`[T]`) or one object (`T`).
    pub list: bool,
    /// Whether the field itself is non-null.
    pub non_null: bool,
    /// For relations: the parent's column and the target's column that must be equal.
    pub join: Option<Join>,
    /// How each argument shapes the query, by argument name.
    pub args: IndexMap<String, ArgRole>,
    /// `@connection`: the field is a Relay connection over the rows (`list` is then true).
    pub connection: Option<ConnectionSpec>,
}

/// A Relay connection field (`@connection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    /// `@connection(maxPageSize:)`: the largest `first`/`last` (default `[limits] max_limit`).
    pub max_page_size: Option<i64>,
}

/// `parent.column = target.references`
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// Column of the parent view.
    pub column: String,
    /// Column of the target view.
    pub references: String,
}

/// What an argument does.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgRole {
    /// `LIMIT` (an `Int`).
    Limit,
    /// `OFFSET` (an `Int`).
    Offset,
    /// `ORDER BY` from an enum (or a list of them): enum value -> sort key.
    OrderBy(IndexMap<String, SortKey>),
    /// `target = $n`, equality on a column or a JSON key.
    Filter(Target),
    /// `where: <Type>WhereInput`: a filter over the rows' fields and relations.
    Where,
    /// Connections: `first: Int`, the page size counted from the start (or from `after`).
    First,
    /// Connections: `last: Int`, the page size counted from the end (or from `before`).
    Last,
    /// Connections: `after: String`, the cursor the page starts after.
    After,
    /// Connections: `before: String`, the cursor the page ends before.
    Before,
    /// Aggregates: `groupBy: <T>GroupBy`, the fields and time buckets rows are grouped by.
    GroupBy,
    /// Aggregates: `having: <T>Having`, a filter on the groups' aggregates.
    Having,
    /// Aggregates: `orderBy: [<T>AggregateOrderBy!]`, the groups' order.
    AggregateOrderBy,
}

/// A time bucket a `DateTime` field is grouped by (`createdAt_day`): `date_trunc` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The hour.
    Hour,
    /// The day (UTC midnight).
    Day,
    /// The ISO week (Monday, UTC midnight).
    Week,
    /// The month (its first day, UTC midnight).
    Month,
}

impl Bucket {
    /// Every bucket, in the order the generated types list them.
    pub const ALL: [Bucket; 4] = [Self::Hour, Self::Day, Self::Week, Self::Month];

    /// The suffix of its aggregate field (`createdAt_day`) and its `date_trunc` unit.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// An aggregate of a numeric field (`estimate_sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `sum`: the field's type.
    Sum,
    /// `avg`: a `Float`.
    Avg,
    /// `min`: the field's type.
    Min,
    /// `max`: the field's type.
    Max,
}

impl Measure {
    /// Every measure, in the order the generated types list them.
    pub const ALL: [Measure; 4] = [Self::Sum, Self::Avg, Self::Min, Self::Max];

    /// The suffix of its aggregate field and its SQL function.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// `<Type>Aggregate`: the groups an `@aggregate` field returns.
pub fn aggregate_type_name(type_name: &str) -> String {
    format!("{type_name}{AGGREGATE}")
}

/// The suffix of an aggregate type's name: `TaskAggregate`.
pub const AGGREGATE: &str = "Aggregate";

/// A column of the view or a key of its `data` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A view column.
    Column(String),
    /// A key of the `data` column (compared as text).
    Key(String),
}

/// One `ORDER BY` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// What to sort on.
    pub target: Target,
    /// Descending?
    pub desc: bool,
    /// Whether the value may be NULL: false when a non-null field of the type reads the same
    /// column or key (or it is the `@view(key:)` column). Keyset paging compares non-null keys
    /// as one row value (an index range); nullable ones with NULLs placed as `ORDER BY` does.
    pub nullable: bool,
}
