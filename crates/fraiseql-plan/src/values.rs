//! Argument values: literals or variables, turned into the text that is bound as a parameter.

use apollo_compiler::ast::Value;
use apollo_compiler::executable::Field;
use apollo_compiler::response::{JsonMap, JsonValue};
use apollo_compiler::Node;

/// An argument's value after GraphQL's CoerceArgumentValues: what the client wrote (a literal
/// or a variable it provided), else the argument definition's default, else nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// Neither given nor defaulted.
    Absent,
    /// A literal of the document or of the schema's default.
    Literal(&'a Value),
    /// A variable's (coerced) value.
    Var(&'a JsonValue),
}

impl<'a> Arg<'a> {
    /// Whether the value is `null` (given as such, or a variable holding `null`).
    pub(crate) fn is_null(&self) -> bool {
        match self {
            Arg::Absent => false,
            Arg::Literal(v) => matches!(v, Value::Null),
            Arg::Var(j) => j.is_null(),
        }
    }
}

/// The value of argument `name` of `field`. A variable the client did not provide is treated
/// as if the argument were not given, so the argument's default applies (GraphQL spec §6.4.1):
/// `limit: $l` with `$l` unset is `limit`'s default, never "no limit".
pub(crate) fn arg<'a>(field: &'a Node<Field>, name: &str, vars: &'a JsonMap) -> Arg<'a> {
    let default = || {
        field
            .definition
            .argument_by_name(name)
            .and_then(|d| d.default_value.as_deref())
            .map_or(Arg::Absent, Arg::Literal)
    };
    match field.arguments.iter().find(|a| a.name == name) {
        None => default(),
        Some(a) => match a.value.as_ref() {
            Value::Variable(v) => match vars.get(v.as_str()) {
                Some(j) => Arg::Var(j),
                None => default(),
            },
            other => Arg::Literal(other),
        },
    }
}

/// Whether the client itself chose argument `name` (a literal, or a variable it provided);
/// schema defaults are not the client's choice.
pub(crate) fn given_by_client(field: &Node<Field>, name: &str, vars: &JsonMap) -> bool {
    field
        .arguments
        .iter()
        .find(|a| a.name == name)
        .is_some_and(|a| match a.value.as_ref() {
            Value::Variable(v) => vars.contains_key(v.as_str()),
            _ => true,
        })
}

/// The text of a scalar argument (`None` for absent or `null`).
pub(crate) fn arg_text(a: Arg<'_>, vars: &JsonMap) -> Option<String> {
    match a {
        Arg::Absent => None,
        Arg::Literal(v) => scalar_text(v, vars),
        Arg::Var(j) => json_text(j),
    }
}

/// The enum names of an enum (or list of enums) argument.
pub(crate) fn arg_enums(a: Arg<'_>, vars: &JsonMap) -> Vec<String> {
    match a {
        Arg::Absent => Vec::new(),
        Arg::Literal(v) => enum_list(v, vars),
        Arg::Var(JsonValue::String(s)) => vec![s.as_str().to_owned()],
        Arg::Var(JsonValue::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Arg::Var(_) => Vec::new(),
    }
}

/// The argument as JSON (`null` for absent).
pub(crate) fn arg_json(a: Arg<'_>, vars: &JsonMap) -> serde_json::Value {
    match a {
        Arg::Absent => serde_json::Value::Null,
        Arg::Literal(v) => to_json(v, vars),
        Arg::Var(j) => from_apollo_json(j),
    }
}

/// A scalar argument value, as PostgreSQL will parse it. `None` is GraphQL `null`.
pub(crate) fn scalar_text(value: &Value, vars: &JsonMap) -> Option<String> {
    match value {
        Value::Null => None,
        Value::Variable(name) => vars.get(name.as_str()).and_then(json_text),
        Value::Enum(name) => Some(name.to_string()),
        Value::String(s) => Some(s.to_string()),
        Value::Float(f) => Some(f.as_str().to_owned()),
        Value::Int(i) => Some(i.as_str().to_owned()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::List(_) | Value::Object(_) => None,
    }
}

fn json_text(v: &JsonValue) -> Option<String> {
    match v {
        JsonValue::Null => None,
        JsonValue::String(s) => Some(s.as_str().to_owned()),
        JsonValue::Number(n) => Some(n.to_string()),
        JsonValue::Bool(b) => Some(b.to_string()),
        JsonValue::Array(_) | JsonValue::Object(_) => None,
    }
}

/// Enum names of an argument that is an enum or a list of enums.
pub(crate) fn enum_list(value: &Value, vars: &JsonMap) -> Vec<String> {
    match value {
        Value::Variable(name) => match vars.get(name.as_str()) {
            Some(JsonValue::String(s)) => vec![s.as_str().to_owned()],
            Some(JsonValue::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        Value::Enum(name) => vec![name.to_string()],
        Value::List(items) => items.iter().flat_map(|i| enum_list(i, vars)).collect(),
        _ => Vec::new(),
    }
}

/// A boolean (for `@skip(if:)` / `@include(if:)`).
pub(crate) fn boolean(value: &Value, vars: &JsonMap) -> Option<bool> {
    match value {
        Value::Boolean(b) => Some(*b),
        Value::Variable(name) => vars.get(name.as_str()).and_then(JsonValue::as_bool),
        _ => None,
    }
}

/// An argument value as JSON, variables substituted (`None` when absent).
pub(crate) fn to_json(value: &Value, vars: &JsonMap) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Variable(name) => vars
            .get(name.as_str())
            .map(from_apollo_json)
            .unwrap_or(serde_json::Value::Null),
        Value::Enum(name) => serde_json::Value::String(name.to_string()),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Float(f) => f
            .try_to_f64()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Int(i) => match i.try_to_i32() {
            Ok(n) => serde_json::Value::from(n),
            // Out-of-range literals fail validation; keep the text for custom scalars.
            Err(_) => serde_json::Value::String(i.as_str().to_owned()),
        },
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::List(items) => {
            serde_json::Value::Array(items.iter().map(|i| to_json(i, vars)).collect())
        }
        Value::Object(fields) => serde_json::Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v, vars)))
                .collect(),
        ),
    }
}

/// apollo-compiler's JSON (serde_json_bytes) as serde_json.
pub(crate) fn from_apollo_json(v: &JsonValue) -> serde_json::Value {
    match v {
        JsonValue::Null => serde_json::Value::Null,
        JsonValue::Bool(b) => serde_json::Value::Bool(*b),
        JsonValue::Number(n) => {
            serde_json::from_str(&n.to_string()).unwrap_or(serde_json::Value::Null)
        }
        JsonValue::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        JsonValue::Array(items) => {
            serde_json::Value::Array(items.iter().map(from_apollo_json).collect())
        }
        JsonValue::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_owned(), from_apollo_json(v)))
                .collect(),
        ),
    }
}

/// The text PostgreSQL parses for a bound value: scalars as is, lists as array literals
/// (`{"a","b"}`), objects as JSON text. `None` is SQL `NULL`.
pub fn param_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Object(_) => Some(v.to_string()),
        serde_json::Value::Array(items) => {
            let mut out = String::from("{");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    serde_json::Value::Null => out.push_str("NULL"),
                    serde_json::Value::Array(_) => {
                        out.push_str(&param_text(item).unwrap_or_default())
                    }
                    other => {
                        let text = param_text(other).unwrap_or_default();
                        out.push('"');
                        for c in text.chars() {
                            if c == '"' || c == '\\' {
                                out.push('\\');
                            }
                            out.push(c);
                        }
                        out.push('"');
                    }
                }
            }
            out.push('}');
            Some(out)
        }
    }
}

/// Checks string lengths (in characters) and list lengths against the limits; the error names
/// the argument.
pub(crate) fn check_sizes(
    v: &serde_json::Value,
    max_string: usize,
    max_list: usize,
    argument: &str,
) -> Result<(), String> {
    match v {
        serde_json::Value::String(s) if s.len() > max_string && s.chars().count() > max_string => {
            Err(format!(
                "argument `{argument}` holds a string longer than {max_string} characters"
            ))
        }
        serde_json::Value::Array(items) => {
            if items.len() > max_list {
                return Err(format!(
                    "argument `{argument}` holds a list of {} items; at most {max_list} are accepted",
                    items.len()
                ));
            }
            items
                .iter()
                .try_for_each(|i| check_sizes(i, max_string, max_list, argument))
        }
        serde_json::Value::Object(map) => map
            .values()
            .try_for_each(|i| check_sizes(i, max_string, max_list, argument)),
        _ => Ok(()),
    }
}
