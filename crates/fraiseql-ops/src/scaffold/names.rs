//! GraphQL names from PostgreSQL names: camelCase fields, PascalCase types, plurals, and the
//! snake_case key the schema crate derives back from a field name (`heck`, as it does).

use heck::{ToLowerCamelCase, ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};

/// Type names the engine or GraphQL already uses: a table cannot take them.
const RESERVED_TYPES: &[&str] = &[
    "Query",
    "Mutation",
    "Subscription",
    "PageInfo",
    "String",
    "Int",
    "Float",
    "Boolean",
    "ID",
    "DateTime",
    "Date",
    "JSON",
];

/// The names one column or table takes in the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The GraphQL name: `createdAt` (fields) or `Organization` (types).
    pub graphql: String,
    /// The snake_case name the engine reads it by (`created_at`): the `data` key and the view
    /// column. A plain SQL identifier.
    pub snake: String,
}

/// The field names of column `column`, or why it has none.
pub(crate) fn field(column: &str) -> Result<Names, String> {
    let graphql = column.to_lower_camel_case();
    names(column, graphql)
}

/// The type names of a table whose name, without its `tb_` prefix, is `base`.
pub(crate) fn type_name(base: &str) -> Result<Names, String> {
    let graphql = base.to_upper_camel_case();
    let n = names(base, graphql)?;
    if RESERVED_TYPES.contains(&n.graphql.as_str()) || n.graphql.ends_with("Filter") {
        return Err(format!(
            "its GraphQL type would be `{}`, a name the engine uses",
            n.graphql
        ));
    }
    Ok(n)
}

fn names(original: &str, graphql: String) -> Result<Names, String> {
    let valid = graphql.starts_with(|c: char| c.is_ascii_alphabetic())
        && graphql
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "no GraphQL name can be made of {original:?} (ASCII letters and digits, starting with a letter)"
        ));
    }
    let snake = graphql.to_snake_case();
    if !fraiseql_schema::is_plain_ident(&snake) {
        return Err(format!("{original:?} gives no plain SQL name ({snake:?})"));
    }
    Ok(Names { graphql, snake })
}

/// `name` in the plural (naive English: the names are a starting point to edit).
pub(crate) fn plural(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let consonant_y = lower.ends_with('y')
        && !matches!(
            lower.chars().rev().nth(1),
            Some('a' | 'e' | 'i' | 'o' | 'u')
        );
    if consonant_y {
        format!("{}ies", &name[..name.len() - 1])
    } else if ["ss", "us", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        format!("{name}es")
    } else if lower.ends_with('s') {
        // Already plural (`orders`).
        name.to_owned()
    } else {
        format!("{name}s")
    }
}

/// `createdAt` -> `CreatedAt`.
pub(crate) fn pascal(name: &str) -> String {
    name.to_upper_camel_case()
}

/// `createdAt` -> `CREATED_AT`, for enum values.
pub(crate) fn shouty(name: &str) -> String {
    name.to_shouty_snake_case()
}

/// `name`, or `name2`, `name3`, ... : the first `taken` does not hold.
pub(crate) fn free(name: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&name) {
        return name;
    }
    (2..)
        .map(|n| format!("{name}{n}"))
        .find(|c| !taken(c))
        .unwrap_or(name)
}
