//! Markers: where a value is computed after the statement (a Rust field resolver's, or a
//! `@federated` field's from another database), the planner puts
//! `{"<marker key>": <call index>, "row": <parent row or lookup value>}`. After the statement,
//! the JSON is parsed once, the rows of each call are answered by ONE resolver call or statement
//! (`transaction.rs`), and the answers replace the markers. Plans without calls never parse
//! JSON.

use fraiseql_plan::{FieldCall, Projected, Projection};
use serde_json::Value;

use crate::error::{ErrorCode, GraphqlError};
use crate::resolvers::{Context, FieldBatch, Resolvers};

/// Keeps the selected keys of an object value (recursively), in selection order.
pub(crate) fn project(value: &Value, p: &Projection) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|i| project(i, p)).collect()),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(p.fields.len());
            for f in &p.fields {
                let v = match &f.source {
                    Projected::Typename(t) => Value::String(t.clone()),
                    Projected::Denied => Value::Null,
                    Projected::Field { name, projection } => {
                        let v = map.get(name).cloned().unwrap_or(Value::Null);
                        match projection {
                            Some(sub) => project(&v, sub),
                            None => v,
                        }
                    }
                };
                out.insert(f.key.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn is_marker(v: &Value, key: &str) -> Option<usize> {
    let obj = v.as_object()?;
    if obj.len() != 2 {
        return None;
    }
    obj.get(key)?.as_u64().map(|n| n as usize)
}

pub(crate) fn collect_markers(v: &mut Value, key: &str, rows: &mut [Vec<Value>]) {
    if let Some(i) = is_marker(v, key) {
        if let Some(slot) = rows.get_mut(i) {
            let row = v.get_mut("row").map(Value::take).unwrap_or(Value::Null);
            slot.push(row);
        }
        return;
    }
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| collect_markers(i, key, rows)),
        Value::Object(map) => map.values_mut().for_each(|i| collect_markers(i, key, rows)),
        _ => {}
    }
}

pub(crate) fn replace_markers(v: &mut Value, key: &str, values: &mut [std::vec::IntoIter<Value>]) {
    if let Some(i) = is_marker(v, key) {
        *v = values
            .get_mut(i)
            .and_then(Iterator::next)
            .unwrap_or(Value::Null);
        return;
    }
    match v {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| replace_markers(i, key, values)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|i| replace_markers(i, key, values)),
        _ => {}
    }
}

/// Calls the field resolver of `call` once with every parent row of its place.
pub(crate) async fn resolve_batch(
    resolvers: &Resolvers,
    ctx: &Context,
    call: &FieldCall,
    parents: Vec<Value>,
) -> Result<Vec<Value>, GraphqlError> {
    let coordinate = format!("{}.{}", call.type_name, call.field);
    let n = parents.len();
    let f = resolvers.field_fn(&coordinate).ok_or_else(|| {
        GraphqlError::new(
            ErrorCode::InternalServerError,
            format!("no resolver is registered for `{coordinate}`"),
        )
    })?;
    let values = f(
        ctx.clone(),
        FieldBatch {
            parents,
            args: call.args.clone(),
        },
    )
    .await
    .map_err(|e| e.into_graphql())?;
    if values.len() != n {
        tracing::error!(%coordinate, expected = n, got = values.len(), "resolver returned a wrong number of values");
        return Err(GraphqlError::new(
            ErrorCode::InternalServerError,
            format!(
                "the resolver of `{coordinate}` returned {} values for {n} parents",
                values.len()
            ),
        ));
    }
    Ok(match &call.projection {
        Some(p) => values.iter().map(|v| project(v, p)).collect(),
        None => values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_selected_keys_in_order() {
        let p = Projection {
            fields: vec![
                fraiseql_plan::ProjectedField {
                    key: "b".into(),
                    source: Projected::Field {
                        name: "b".into(),
                        projection: None,
                    },
                },
                fraiseql_plan::ProjectedField {
                    key: "kind".into(),
                    source: Projected::Typename("T".into()),
                },
                fraiseql_plan::ProjectedField {
                    key: "alias".into(),
                    source: Projected::Field {
                        name: "a".into(),
                        projection: None,
                    },
                },
            ],
        };
        let v = serde_json::json!([{"a": 1, "b": 2, "secret": 3}, null]);
        assert_eq!(
            project(&v, &p).to_string(),
            r#"[{"b":2,"kind":"T","alias":1},null]"#
        );
    }

    #[test]
    fn markers_are_collected_and_replaced_in_order() {
        let mut v = serde_json::json!([
            {"x": {"__fraiseql": 0, "row": {"id": "a"}}},
            {"x": {"__fraiseql": 0, "row": {"id": "b"}}, "y": {"__fraiseql": 1, "row": {"id": "c"}}}
        ]);
        let mut rows = vec![Vec::new(), Vec::new()];
        collect_markers(&mut v, "__fraiseql", &mut rows);
        assert_eq!(rows[0].len(), 2);
        assert_eq!(rows[1], vec![serde_json::json!({"id": "c"})]);
        let mut values = vec![
            vec![Value::from(1), Value::from(2)].into_iter(),
            vec![Value::from(3)].into_iter(),
        ];
        replace_markers(&mut v, "__fraiseql", &mut values);
        assert_eq!(v.to_string(), r#"[{"x":1},{"x":2,"y":3}]"#);
    }
}
