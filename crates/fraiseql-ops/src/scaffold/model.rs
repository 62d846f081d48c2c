//! What `schema init` reads from the database: the tables of one PostgreSQL schema with their
//! columns and keys. Plain data: `read.rs` fills it, `plan.rs` turns it into the API.

use std::collections::BTreeSet;

/// The tables of one schema, and the names already taken there.
#[derive(Debug, Clone, Default)]
pub struct DatabaseModel {
    /// The PostgreSQL schema read (`public` by default).
    pub schema: String,
    /// Its tables (ordinary and partitioned, not partitions), by name.
    pub tables: Vec<Table>,
    /// Every relation name of the schema (tables, views, ...): a view to create may exist.
    pub relations: BTreeSet<String>,
}

/// One table.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Its name, as PostgreSQL spells it.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// The primary key's columns (empty without one).
    pub primary_key: Vec<String>,
    /// The columns of each unique index without predicate or expression (the primary key's too).
    pub unique: Vec<Vec<String>>,
    /// Its foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name, as PostgreSQL spells it.
    pub name: String,
    /// `format_type` of its type (of a domain's base type), without modifiers: `integer`,
    /// `timestamp with time zone`, `text[]`.
    pub pg_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
}

/// A foreign key of a table.
#[derive(Debug, Clone)]
pub struct ForeignKey {
    /// The constraint's name.
    pub name: String,
    /// The referencing columns.
    pub columns: Vec<String>,
    /// The referenced table's schema.
    pub ref_schema: String,
    /// The referenced table.
    pub ref_table: String,
    /// The referenced columns.
    pub ref_columns: Vec<String>,
}
