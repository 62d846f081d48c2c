//! The catalog: what the planner needs to turn a selection into SQL.

use indexmap::IndexMap;

use crate::ident::QualifiedName;

/// The database a type lives in when `@view(database:)` is not given.
pub const DEFAULT_DATABASE: &str = "tenant";

/// Every mapped type and root field of a schema.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Object types backed by a view, by GraphQL type name.
    pub types: IndexMap<String, TypeMapping>,
    /// Root `Query` fields, by field name.
    pub queries: IndexMap<String, RootField>,
}

impl Catalog {
    /// The mapping of a type, if it is backed by a view.
    pub fn type_mapping(&self, name: &str) -> Option<&TypeMapping> {
        self.types.get(name)
    }
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
    /// Fields by GraphQL name.
    pub fields: IndexMap<String, FieldSource>,
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
    /// Rows of another type's view joined on a key column.
    Relation(Box<Collection>),
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
}

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
}
