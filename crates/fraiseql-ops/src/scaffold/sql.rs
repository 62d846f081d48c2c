//! The migration of a [`Plan`]: one view per type, with the key, the JSON `data` the fields
//! read, and as columns the keys relations join on and the fields filters and orderings use
//! (so an index on the table's column serves them, as in the example's
//! `migrations/tenant/0005_filter_columns.sql`).

use std::fmt::Write;

use fraiseql_schema::{quote_ident, quote_literal};

use super::plan::{Entity, Field, Kind, Plan, Role};

/// The first line of every migration `schema init` writes (how it finds its own file again).
pub(crate) const HEADER: &str = "-- Written by `fraiseql schema init`";

/// `jsonb_build_object` takes at most 100 arguments: 50 keys and values per call.
const PAIRS_PER_CALL: usize = 50;

/// PostgreSQL's reserved key words: a schema name among them is quoted (column and table names
/// always follow a `.`, where PostgreSQL takes any word).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// The migration creating the views of `plan`.
pub(crate) fn render(plan: &Plan) -> String {
    let mut out = format!(
        "{HEADER} from the tables of schema `{}`: a starting point to edit.\n\
         -- One view per table: its key, its fields as the JSON `data` the API reads, and as columns\n\
         -- the keys relations join on and the fields `where` and `orderBy` use (index the table's\n\
         -- column to serve a filter: docs/schema.md, \"Indexing filtered fields\"). The views run\n\
         -- with the caller's rights, so row-level security on the tables applies through them.\n",
        plan.schema
    );
    for e in &plan.entities {
        view(&mut out, plan, e);
    }
    out
}

fn view(out: &mut String, plan: &Plan, e: &Entity) {
    let (view, table) = if plan.schema == "public" {
        (e.view.clone(), ident(&e.table))
    } else {
        let s = schema_ident(&plan.schema);
        (
            format!("{s}.{}", e.view),
            format!("{s}.{}", ident(&e.table)),
        )
    };
    let _ = write!(
        out,
        "\nCREATE VIEW {view} WITH (security_invoker = true) AS\nSELECT\n    {},\n",
        column(e.key_field())
    );
    let values: Vec<&Field> = e
        .fields
        .iter()
        .filter(|f| f.role != Role::Internal)
        .collect();
    let calls: Vec<String> = values
        .chunks(PAIRS_PER_CALL)
        .map(|chunk| {
            let pairs: Vec<String> = chunk
                .iter()
                .map(|f| format!("        {}, {}", quote_literal(&f.names.snake), value(f)))
                .collect();
            format!("jsonb_build_object(\n{}\n    )", pairs.join(",\n"))
        })
        .collect();
    let _ = write!(out, "    {} AS data", calls.join(" || "));
    for f in e.fields.iter().filter(|f| f.exposed && f.role != Role::Key) {
        let _ = write!(out, ",\n    {}", column(f));
    }
    let _ = writeln!(out, "\nFROM {table} t;");
}

/// The view column of field `f`: `t.name`, or `t."Name" AS name`.
fn column(f: &Field) -> String {
    let c = ident(&f.column);
    if f.column == f.names.snake {
        format!("t.{c}")
    } else {
        format!("t.{c} AS {}", f.names.snake)
    }
}

/// What `data` holds for field `f`: ids and types without a GraphQL type as text.
fn value(f: &Field) -> String {
    let c = format!("t.{}", ident(&f.column));
    match f.kind {
        Kind::Id | Kind::Text(_) => format!("{c}::text"),
        _ => c,
    }
}

/// A table or column name after a `.`: bare when plain lower case, else quoted.
fn ident(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

/// A schema name, which no `.` precedes: quoted when reserved too.
fn schema_ident(name: &str) -> String {
    if RESERVED.contains(&name) {
        quote_ident(name)
    } else {
        ident(name)
    }
}
