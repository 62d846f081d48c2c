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
