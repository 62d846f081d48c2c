//! SQL identifiers and literals built from schema text: validated, then quoted.

use std::fmt;

/// Quotes an identifier for PostgreSQL (`"name"`, with `"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for PostgreSQL (`'text'`, with `'` doubled). Only for schema text
/// (JSON keys, type names); request values are always bind parameters.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Checks that `name` is a plain identifier: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes.
pub fn is_plain_ident(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A relation name, optionally schema-qualified (`v_org` or `app.v_org`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    /// The schema, if given.
    pub schema: Option<String>,
    /// The relation.
    pub name: String,
}

impl QualifiedName {
    /// Parses `name` or `schema.name`, each part a plain identifier.
    pub fn parse(text: &str) -> Option<Self> {
        let (schema, name) = match text.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, text),
        };
        if !is_plain_ident(name) || schema.is_some_and(|s| !is_plain_ident(s)) {
            return None;
        }
        Some(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for QualifiedName {
    /// The quoted SQL form, e.g. `"app"."v_org"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.schema {
            write!(f, "{}.", quote_ident(s))?;
        }
        f.write_str(&quote_ident(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn qualified_names_are_validated() {
        assert_eq!(
            QualifiedName::parse("app.v_org")
                .map(|q| q.to_string())
                .as_deref(),
            Some("\"app\".\"v_org\"")
        );
        assert!(QualifiedName::parse("v_org; DROP TABLE x").is_none());
        assert!(QualifiedName::parse("a.b.c").is_none());
        assert!(QualifiedName::parse("").is_none());
    }
}
