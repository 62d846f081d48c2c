//! From the tables to the API: which tables become types, what each column becomes, the key
//! of each view, the relations both ways, and the names of it all. Pure: `sdl.rs` and `sql.rs`
//! write the files from the [`Plan`].

use std::collections::BTreeSet;

use super::model::{DatabaseModel, ForeignKey, Table};
use super::names::{self, Names};

/// What a column's PostgreSQL type becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `ID` (the key, uuids): text in `data`.
    Id,
    /// `Int`: smallint, integer, bigint.
    Int,
    /// `Float`: numeric, real, double precision.
    Float,
    /// `String`: text, varchar, char, citext, name.
    String,
    /// `Boolean`.
    Boolean,
    /// `DateTime`: timestamp with or without time zone.
    DateTime,
    /// `Date`.
    Date,
    /// `JSON`: json, jsonb.
    Json,
    /// Any other type (arrays, enums, intervals, ...): a `String` holding its text; the type.
    Text(String),
}

impl Kind {
    fn of(pg_type: &str) -> Self {
        match pg_type {
            "smallint" | "integer" | "bigint" => Self::Int,
            "numeric" | "real" | "double precision" => Self::Float,
            "text" | "character varying" | "character" | "citext" | "name" => Self::String,
            "boolean" => Self::Boolean,
            "uuid" => Self::Id,
            "timestamp with time zone" | "timestamp without time zone" => Self::DateTime,
            "date" => Self::Date,
            "json" | "jsonb" => Self::Json,
            other => Self::Text(other.to_owned()),
        }
    }

    /// The GraphQL type's name.
    pub fn graphql(&self) -> &'static str {
        match self {
            Self::Id => "ID",
            Self::Int => "Int",
            Self::Float => "Float",
            Self::String | Self::Text(_) => "String",
            Self::Boolean => "Boolean",
            Self::DateTime => "DateTime",
            Self::Date => "Date",
            Self::Json => "JSON",
        }
    }

    /// A view column of this kind serves filters and orderings (JSON and text of other types
    /// are read from `data` only).
    fn exposed(&self) -> bool {
        !matches!(self, Self::Json | Self::Text(_))
    }
}

/// What a column is to its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The column identifying a row (`@view(key:)`): an `ID!` field.
    Key,
    /// A `pk_*` / `fk_*` key column of the `tb_*` convention: a view column for relations, not
    /// a field.
    Internal,
    /// A field read from `data`.
    Value,
}

/// One column in the API.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// The table's column.
    pub column: String,
    /// Its field name and its `data` key / view column.
    pub names: Names,
    /// Its GraphQL type.
    pub kind: Kind,
    /// `NOT NULL`.
    pub not_null: bool,
    /// What it is.
    pub role: Role,
    /// Whether the view has it as a column too.
    pub exposed: bool,
}

impl Field {
    /// An `orderBy` value is made for it.
    pub fn orderable(&self) -> bool {
        self.exposed && self.role != Role::Internal
    }
}

/// A field following a foreign key, one way or the other.
#[derive(Debug, Clone)]
pub(crate) struct Relation {
    /// The field's name.
    pub name: String,
    /// The entity it reads.
    pub target: usize,
    /// This view's column (`@relation(column:)`).
    pub column: String,
    /// The target view's column (`@relation(references:)`).
    pub references: String,
    /// The shape of the field.
    pub shape: Shape,
    /// The foreign key's columns are `NOT NULL` (a single relation is then non-null).
    pub not_null: bool,
}

/// How a relation field returns its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// The referenced row.
    Single,
    /// The referencing rows, a list.
    List,
    /// The referencing rows, a Relay connection.
    Connection,
}

/// One table in the API: a type reading a view.
#[derive(Debug, Clone)]
pub(crate) struct Entity {
    /// The table.
    pub table: String,
    /// The type's name (`Organization`) and its snake form (`organization`).
    pub type_names: Names,
    /// The view (`v_organization`).
    pub view: String,
    /// Its columns, in the table's order.
    pub fields: Vec<Field>,
    /// The index of the key in `fields`.
    pub key: usize,
    /// The root list field (`organizations`).
    pub plural: String,
    /// The root look-up by key (`organization`).
    pub singular: String,
    /// The root connection (`organizationsConnection`).
    pub connection: String,
    /// Its relation fields.
    pub relations: Vec<Relation>,
}

impl Entity {
    /// The key's field.
    pub fn key_field(&self) -> &Field {
        &self.fields[self.key]
    }

    /// The `orderBy` enum's name.
    pub fn order_enum(&self) -> String {
        format!("{}Order", self.type_names.graphql)
    }

    /// The default ordering: by key.
    pub fn default_order(&self) -> String {
        format!("{}_ASC", names::shouty(&self.key_field().names.graphql))
    }
}

/// The API `schema init` writes.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The PostgreSQL schema read.
    pub schema: String,
    /// The types, by table name.
    pub entities: Vec<Entity>,
    /// What was left out or guessed, for the user.
    pub notes: Vec<String>,
}

/// The API for the tables of `db`.
pub(crate) fn plan(db: &DatabaseModel) -> Plan {
    let mut notes = Vec::new();
    let mut entities: Vec<Entity> = Vec::new();
    let mut type_names: BTreeSet<String> = BTreeSet::new();
    let mut roots: BTreeSet<String> = BTreeSet::new();
    for table in &db.tables {
        // The engine's own bookkeeping (migrations, outbox, ...).
        if table.name.starts_with("fraiseql_") {
            continue;
        }
        match entity(db, table, &mut notes) {
            Err(why) => notes.push(format!("table `{}` skipped: {why}", table.name)),
            Ok(mut e) => {
                let t = &e.type_names.graphql;
                let derived =
                    ["", "Connection", "Edge", "WhereInput", "Order"].map(|s| format!("{t}{s}"));
                if let Some(clash) = derived.iter().find(|n| type_names.contains(*n)) {
                    notes.push(format!(
                        "table `{}` skipped: its type `{t}` clashes with `{clash}` of an earlier table; rename one",
                        table.name
                    ));
                    continue;
                }
                type_names.extend(derived);
                for name in [&mut e.plural, &mut e.singular, &mut e.connection] {
                    *name = names::free(std::mem::take(name), |n| roots.contains(n));
                    roots.insert(name.clone());
                }
                entities.push(e);
            }
        }
    }
    relations(db, &mut entities, &mut notes);
    Plan {
        schema: db.schema.clone(),
        entities,
        notes,
    }
}

/// Table `table` as a type, or why it cannot be one.
fn entity(db: &DatabaseModel, table: &Table, notes: &mut Vec<String>) -> Result<Entity, String> {
    let base = table
        .name
        .strip_prefix("tb_")
        .filter(|b| !b.is_empty())
        .unwrap_or(&table.name);
    let type_names = names::type_name(base)?;
    let view = format!("v_{}", type_names.snake);
    if view.len() > 63 {
        return Err(format!("its view name `{view}` is over 63 bytes"));
    }
    if db.relations.contains(&view) {
        notes.push(format!(
            "`{view}` already exists in schema `{}`: the migration's CREATE VIEW fails until it is dropped or renamed",
            db.schema
        ));
    }
    let key_column = key_column(table).ok_or_else(|| {
        "no single column identifies its rows (a one-column primary key, or a NOT NULL unique `id`)"
            .to_owned()
    })?;
    let mut fields: Vec<Field> = Vec::new();
    for c in &table.columns {
        let n = match names::field(&c.name) {
            Ok(n) => n,
            Err(why) => {
                notes.push(format!("column `{}.{}` skipped: {why}", table.name, c.name));
                continue;
            }
        };
        if let Some(other) = fields
            .iter()
            .find(|f| f.names.graphql == n.graphql || f.names.snake == n.snake)
        {
            notes.push(format!(
                "column `{}.{}` skipped: its field `{}` is also column `{}`'s",
                table.name, c.name, n.graphql, other.column
            ));
            continue;
        }
        let in_key = table.primary_key.contains(&c.name)
            || table
                .foreign_keys
                .iter()
                .any(|f| f.columns.contains(&c.name));
        let role = if c.name == key_column {
            Role::Key
        } else if in_key && (n.snake.starts_with("pk_") || n.snake.starts_with("fk_")) {
            Role::Internal
        } else {
            Role::Value
        };
        let kind = if role == Role::Key {
            Kind::Id
        } else {
            Kind::of(&c.pg_type)
        };
        if let Kind::Text(t) = &kind {
            notes.push(format!(
                "column `{}.{}` ({t}): no GraphQL type for it, read as text (a String)",
                table.name, c.name
            ));
        }
        // The view's `data` column holds the JSON: a column named `data` stays in it only.
        let exposed = n.snake != "data" && (role != Role::Value || kind.exposed());
        fields.push(Field {
            column: c.name.clone(),
            names: n,
            kind,
            not_null: c.not_null,
            role,
            exposed,
        });
    }
    let key = fields
        .iter()
        .position(|f| f.role == Role::Key && f.exposed)
        .ok_or_else(|| format!("its key column `{key_column}` has no usable name"))?;
    let singular = type_names.graphql[..1].to_ascii_lowercase() + &type_names.graphql[1..];
    let plural = names::plural(&singular);
    let singular = if plural == singular {
        format!("{singular}By{}", names::pascal(&fields[key].names.graphql))
    } else {
        singular
    };
    Ok(Entity {
        table: table.name.clone(),
        view,
        connection: format!("{plural}Connection"),
        plural,
        singular,
        type_names,
        fields,
        key,
        relations: Vec::new(),
    })
}

/// The column identifying a row: a NOT NULL `id` under a one-column unique index, else the
/// one-column primary key.
fn key_column(table: &Table) -> Option<String> {
    let id_unique = table.unique.iter().any(|u| u.len() == 1 && u[0] == "id");
    let id_not_null = table.columns.iter().any(|c| c.name == "id" && c.not_null);
    if id_unique && id_not_null {
        return Some("id".to_owned());
    }
    match table.primary_key.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The relation fields of every foreign key between two entities: the referenced row on the
/// referencing type, the referencing rows (a list and a connection) on the referenced one.
fn relations(db: &DatabaseModel, entities: &mut [Entity], notes: &mut Vec<String>) {
    let mut taken: Vec<BTreeSet<String>> = entities
        .iter()
        .map(|e| e.fields.iter().map(|f| f.names.graphql.clone()).collect())
        .collect();
    let table_of = |name: &str| entities.iter().position(|e| e.table == name);
    let mut found: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (child, e) in entities.iter().enumerate() {
        let Some(table) = db.tables.iter().find(|t| t.name == e.table) else {
            continue;
        };
        let mut fks: Vec<&ForeignKey> = table.foreign_keys.iter().collect();
        fks.sort_by(|a, b| a.name.cmp(&b.name));
        for fk in fks {
            let at = format!("foreign key `{}` of `{}`", fk.name, e.table);
            let ([col], [ref_col]) = (fk.columns.as_slice(), fk.ref_columns.as_slice()) else {
                notes.push(format!(
                    "{at}: {} columns, no relation made (@relation joins on one column)",
                    fk.columns.len()
                ));
                continue;
            };
            let parent = table_of(&fk.ref_table).filter(|_| fk.ref_schema == db.schema);
            let Some(parent) = parent else {
                notes.push(format!(
                    "{at}: `{}.{}` is not in the API, no relation made",
                    fk.ref_schema, fk.ref_table
                ));
                continue;
            };
            let usable = |e: &Entity, c: &str| {
                e.fields
                    .iter()
                    .position(|f| f.column == c && f.names.snake != "data")
            };
            match (usable(e, col), usable(&entities[parent], ref_col)) {
                (Some(c), Some(r)) => found.push((child, parent, c, r)),
                _ => notes.push(format!(
                    "{at}: a column has no usable name, no relation made"
                )),
            }
        }
    }
    let mut added: Vec<(usize, Relation)> = Vec::new();
    for &(child, parent, c, r) in &found {
        let child_field = &entities[child].fields[c];
        let parent_field = &entities[parent].fields[r];
        let same_pair = found
            .iter()
            .filter(|f| f.0 == child && f.1 == parent)
            .count();
        let stripped = child_field
            .names
            .snake
            .strip_prefix("fk_")
            .or_else(|| child_field.names.snake.strip_suffix("_id"))
            .filter(|s| !s.is_empty())
            .and_then(|s| names::field(s).ok())
            .map(|n| n.graphql);
        let parent_singular = entities[parent].singular.clone();
        let single = match &stripped {
            Some(s) if !taken[child].contains(s) => s.clone(),
            _ if stripped.is_none() && !taken[child].contains(&parent_singular) => {
                parent_singular.clone()
            }
            _ => format!(
                "{}{}",
                child_field.names.graphql,
                names::pascal(&parent_singular)
            ),
        };
        let single = names::free(single, |n| taken[child].contains(n));
        taken[child].insert(single.clone());
        let mut list = names::plural(&entities[child].singular);
        // Two keys to one table, or a table's key to itself (`manager_id`): say which.
        if same_pair > 1 || child == parent {
            let by = stripped
                .clone()
                .unwrap_or(child_field.names.graphql.clone());
            list = format!("{list}By{}", names::pascal(&by));
        }
        let list = names::free(list, |n| taken[parent].contains(n));
        taken[parent].insert(list.clone());
        let connection = names::free(format!("{list}Connection"), |n| taken[parent].contains(n));
        taken[parent].insert(connection.clone());
        let (column, references) = (
            child_field.names.snake.clone(),
            parent_field.names.snake.clone(),
        );
        let not_null = child_field.not_null;
        added.push((
            child,
            Relation {
                name: single,
                target: parent,
                column: column.clone(),
                references: references.clone(),
                shape: Shape::Single,
                not_null,
            },
        ));
        for (name, shape) in [(list, Shape::List), (connection, Shape::Connection)] {
            added.push((
                parent,
                Relation {
                    name,
                    target: child,
                    column: references.clone(),
                    references: column.clone(),
                    shape,
                    not_null,
                },
            ));
        }
        entities[child].fields[c].exposed = true;
        entities[parent].fields[r].exposed = true;
    }
    for (at, rel) in added {
        entities[at].relations.push(rel);
    }
}
