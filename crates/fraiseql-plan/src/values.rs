//! Argument values: literals or variables, turned into the text that is bound as a parameter.

use apollo_compiler::ast::Value;
use apollo_compiler::response::{JsonMap, JsonValue};

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
