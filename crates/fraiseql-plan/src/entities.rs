//! Federation's root fields. `_entities(representations:)`: every representation checked (its
//! `__typename` an entity, one of its keys present and well typed), then ONE statement per
//! database for all of them: the representations go in as one JSON parameter and each finds
//! its object by a correlated look-up on its type's view (by key column, so by index), or is
//! the object itself for types without a view. The answer is in the representations' order,
//! `null` where nothing matched (also for another tenant's keys: row-level security and the
//! tenant's schema apply as to any root field). `_service { sdl }` is a constant.

use apollo_compiler::executable::Field;
use apollo_compiler::Node;
use fraiseql_schema::{
    quote_literal, Catalog, Entity, FieldSource, KeyLookup, ObjectMapping, RootField,
};
use serde_json::{Map, Value};

use crate::collect::Cx;
use crate::error::PlanError;
use crate::sql::{typed, Builder, Obj};
use crate::values::param_text;
use crate::{Access, EntitiesPlan, EntityPart, PlanLimits, RootKind, SqlPlan};

type Planned = (RootKind, Vec<Vec<String>>);

/// One representation, checked.
struct Rep {
    /// Its position in `representations`.
    index: usize,
    type_name: String,
    /// Which of the type's keys it uses.
    key: usize,
    /// The key's leaf values as text, in the key's leaf order.
    values: Vec<Option<String>>,
    /// For types without a view: the object it stands for (fields under their JSON keys).
    object: Option<Value>,
}

fn bad(index: usize, message: String) -> PlanError {
    PlanError::BadArgument {
        message: format!("representations[{index}]: {message}"),
        path: vec!["_entities".to_owned()],
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Whether `v` is a value of GraphQL scalar `scalar` (custom scalars and enums: any leaf).
fn fits(scalar: &str, v: &Value) -> bool {
    match scalar {
        "ID" => v.is_string() || v.is_i64() || v.is_u64(),
        "String" => v.is_string(),
        "Int" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        "Float" => v.is_number(),
        "Boolean" => v.is_boolean(),
        _ => !v.is_object() && !v.is_array() && !v.is_null(),
    }
}

fn at<'v>(rep: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(rep, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

/// The object a representation stands for, for a type without a view: the fields it carries,
/// under their JSON keys (embedded objects likewise), so the type's fields read it like JSON
/// stored in a view.
fn to_object(catalog: &Catalog, ty: &ObjectMapping, rep: &Value, depth: usize) -> Value {
    let Value::Object(fields) = rep else {
        return rep.clone();
    };
    let mut out = Map::new();
    for (name, src) in &ty.fields {
        let Some(v) = fields.get(name) else { continue };
        match src {
            FieldSource::Json { key } => {
                out.insert(key.clone(), v.clone());
            }
            FieldSource::Embedded(e) if depth < 32 => {
                let inner = catalog.objects.get(&e.target);
                let conv = |v: &Value| match inner {
                    Some(t) => to_object(catalog, t, v, depth + 1),
                    None => v.clone(),
                };
                let value = match v {
                    Value::Array(items) => Value::Array(items.iter().map(conv).collect()),
                    other => conv(other),
                };
                out.insert(e.key.clone(), value);
            }
            _ => {}
        }
    }
    Value::Object(out)
}

fn check(
    catalog: &Catalog,
    entities: &indexmap::IndexMap<String, Entity>,
    index: usize,
    rep: &Value,
) -> Result<Rep, PlanError> {
    let Value::Object(map) = rep else {
        return Err(bad(
            index,
            format!("a representation is an object, got {}", json_type(rep)),
        ));
    };
    let type_name = match map.get("__typename") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(bad(
                index,
                format!("`__typename` must be a string, got {}", json_type(other)),
            ))
        }
        None => return Err(bad(index, "`__typename` is missing".to_owned())),
    };
    let entity = entities.get(type_name).ok_or_else(|| {
        bad(
            index,
            format!(
                "`{type_name}` is not an entity of this subgraph (a type with a resolvable @key)"
            ),
        )
    })?;
    let key = entity
        .keys
        .iter()
        .position(|k| k.leaves.iter().all(|l| at(rep, &l.path).is_some()))
        .ok_or_else(|| {
            let keys: Vec<String> = entity
                .keys
                .iter()
                .map(|k| format!("`{}`", k.fields))
                .collect();
            bad(
                index,
                format!(
                    "`{type_name}` carries none of its keys ({})",
                    keys.join(", ")
                ),
            )
        })?;
    let mut values = Vec::new();
    for leaf in &entity.keys[key].leaves {
        let v = at(rep, &leaf.path).unwrap_or(&Value::Null);
        if !fits(&leaf.scalar, v) {
            return Err(bad(
                index,
                format!(
                    "key field `{}` of `{type_name}` must be of type {}, got {}",
                    leaf.path.join("."),
                    leaf.scalar,
                    json_type(v)
                ),
            ));
        }
        values.push(param_text(v));
    }
    let object = match entity.view {
        true => None,
        false => catalog
            .objects
            .get(type_name)
            .map(|t| to_object(catalog, t, rep, 0)),
    };
    Ok(Rep {
        index,
        type_name: type_name.to_owned(),
        key,
        values,
        object,
    })
}

/// `_entities` is another way in to a type's rows: a caller may use it for a type only if it may
/// read one of the root query fields that read that type (where there are any), so `[rbac]`
/// rules on those root fields are not side-stepped through the gateway's entity fetches.
fn entry_allowed(
    catalog: &Catalog,
    access: &dyn Access,
    type_name: &str,
    key: &str,
) -> Result<(), PlanError> {
    let entries: Vec<&str> = catalog
        .queries
        .iter()
        .filter(|(_, r)| matches!(r, RootField::Rows(c) if c.target == type_name))
        .map(|(name, _)| name.as_str())
        .collect();
    if entries.is_empty() || entries.iter().any(|f| access.allows("Query", f)) {
        return Ok(());
    }
    let fields: Vec<String> = entries.iter().map(|f| format!("Query.{f}")).collect();
    Err(PlanError::Forbidden {
        message: format!(
            "reading {type_name} entities needs a role that may read {} ([rbac])",
            fields.join(" or ")
        ),
        path: vec![key.to_owned()],
    })
}

/// Plans `_entities`.
pub(crate) fn plan<'a>(
    cx: &Cx<'a>,
    catalog: &Catalog,
    limits: PlanLimits,
    access: &dyn Access,
    key: &str,
    group: &[&'a Node<Field>],
) -> Result<Planned, PlanError> {
    let federation = catalog
        .federation
        .as_ref()
        .ok_or_else(|| PlanError::unsupported("this schema is not a subgraph".to_owned()))?;
    let args =
        Builder::new(cx, catalog, limits, access, vec![key.to_owned()]).args_json(group[0])?;
    let reps = match args.get("representations") {
        Some(Value::Array(items)) => items,
        _ => {
            return Err(PlanError::BadArgument {
                message: "`representations` must be a list".to_owned(),
                path: vec![key.to_owned()],
            })
        }
    };
    // Each representation is (at most) one row.
    let rows = cx.rows.get().saturating_add(reps.len() as u64);
    cx.rows.set(rows);
    if rows > limits.max_rows {
        return Err(PlanError::TooComplex(format!(
            "{} representations are more than [limits] max_rows ({}) allows in one operation",
            reps.len(),
            limits.max_rows
        )));
    }
    let checked: Vec<Rep> = reps
        .iter()
        .enumerate()
        .map(|(i, r)| check(catalog, &federation.entities, i, r))
        .collect::<Result<_, _>>()?;
    for rep in &checked {
        entry_allowed(catalog, access, &rep.type_name, key)?;
    }
    // One statement per database, in order of first appearance.
    let mut parts: Vec<(String, Vec<Rep>)> = Vec::new();
    for rep in checked {
        let db = &federation.entities[&rep.type_name].database;
        match parts.iter_mut().find(|(d, _)| d == db) {
            Some((_, reps)) => reps.push(rep),
            None => parts.push((db.clone(), vec![rep])),
        }
    }
    let mut denied = Vec::new();
    let mut planned = Vec::with_capacity(parts.len());
    for (database, reps) in parts {
        let b = Builder::new(cx, catalog, limits, access, vec![key.to_owned()]).on(&database);
        let (plan, d) = statement(b, catalog, &federation.entities, &reps, group)?;
        denied.extend(d);
        planned.push(EntityPart {
            plan,
            positions: reps.iter().map(|r| r.index).collect(),
        });
    }
    if planned.len() == 1 {
        if let Some(part) = planned.pop() {
            return Ok((RootKind::Sql(part.plan), denied));
        }
    }
    if planned.is_empty() {
        return Ok((RootKind::Constant("[]".to_owned()), denied));
    }
    Ok((
        RootKind::Entities(EntitiesPlan {
            parts: planned,
            len: reps.len(),
        }),
        denied,
    ))
}

/// The statement answering `reps` (all on the builder's database) as a JSON array in their
/// order.
fn statement<'c, 'a>(
    mut b: Builder<'c, 'a>,
    catalog: &'c Catalog,
    entities: &indexmap::IndexMap<String, Entity>,
    reps: &[Rep],
    group: &[&'a Node<Field>],
) -> Result<(SqlPlan, Vec<Vec<String>>), PlanError> {
    // The (type, key) pairs present, each a branch of the CASE.
    let mut branches: Vec<(&str, usize)> = Vec::new();
    let mut input = Vec::with_capacity(reps.len());
    for rep in reps {
        let pair = (rep.type_name.as_str(), rep.key);
        let g = match branches.iter().position(|p| *p == pair) {
            Some(g) => g,
            None => {
                branches.push(pair);
                branches.len() - 1
            }
        };
        let mut entry = Map::new();
        entry.insert("g".to_owned(), Value::from(g));
        entry.insert(
            "v".to_owned(),
            Value::Array(
                rep.values
                    .iter()
                    .map(|v| v.clone().map_or(Value::Null, Value::String))
                    .collect(),
            ),
        );
        if let Some(o) = &rep.object {
            entry.insert("r".to_owned(), o.clone());
        }
        input.push(Value::Object(entry));
    }
    let param = b.param(Value::Array(input).to_string());
    let e = b.alias();
    // The keys are computed in the outer query (one column per key field of each branch), so
    // that inside each lookup they are plain parameters: under row-level security PostgreSQL
    // uses an index only for leakproof conditions, and a conversion of the representation's text
    // (json_populate_record, ->>) is not; `view.id = $param` is. 1,000 Project representations: 1 s
    // with the conversion inside the lookup (a sequential scan each), 29 ms with it outside.
    let k = b.alias();
    let mut keys: Vec<String> = Vec::new();
    let mut arms = Vec::with_capacity(branches.len());
    for (g, (type_name, key)) in branches.iter().enumerate() {
        let entity = &entities[*type_name];
        let value = match catalog.types.get(*type_name) {
            Some(ty) => {
                b.read(ty.name.clone());
                let alias = b.alias();
                let mut conditions = Vec::new();
                for (j, leaf) in entity.keys[*key].leaves.iter().enumerate() {
                    let given = format!("{e}.rep->'v'->>{j}");
                    let mut outer = |expr: String| {
                        let name = format!("k{g}_{j}");
                        keys.push(format!(
                            "CASE WHEN ({e}.rep->>'g')::int = {g} THEN {expr} END AS {name}"
                        ));
                        format!("{k}.{name}")
                    };
                    conditions.push(match &leaf.lookup {
                        KeyLookup::Column(c) => format!(
                            "{alias}.{} = {}",
                            fraiseql_schema::quote_ident(c),
                            outer(typed(&ty.view.to_string(), c, &given))
                        ),
                        KeyLookup::Json(path) => {
                            let mut expr = format!(
                                "{alias}.{}",
                                fraiseql_schema::quote_ident(&ty.data_column)
                            );
                            for (i, k) in path.iter().enumerate() {
                                let op = if i + 1 == path.len() { "->>" } else { "->" };
                                expr.push_str(op);
                                expr.push_str(&quote_literal(k));
                            }
                            format!("{expr} = {}", outer(given))
                        }
                        KeyLookup::Representation => "false".to_owned(),
                    });
                }
                let obj = b.object(
                    &Obj::Row {
                        ty,
                        alias: alias.clone(),
                    },
                    group,
                )?;
                format!(
                    "(SELECT {obj} FROM {} {alias} WHERE {} LIMIT 1)",
                    ty.view,
                    conditions.join(" AND ")
                )
            }
            None => {
                let ty = catalog.objects.get(*type_name).ok_or_else(|| {
                    PlanError::unsupported(format!("entity `{type_name}` has no mapping"))
                })?;
                b.object(
                    &Obj::Json {
                        ty,
                        expr: format!("({e}.rep->'r')::jsonb"),
                    },
                    group,
                )?
            }
        };
        arms.push(format!("WHEN {g} THEN {value}"));
    }
    let lateral = if keys.is_empty() {
        String::new()
    } else {
        // OFFSET 0 keeps the planner from folding the expressions back into the lookups.
        format!(
            " CROSS JOIN LATERAL (SELECT {} OFFSET 0) {k}",
            keys.join(", ")
        )
    };
    let sql = format!(
        "SELECT coalesce(json_agg(CASE ({e}.rep->>'g')::int {} END ORDER BY {e}.n), '[]'::json)::text FROM json_array_elements({param}::json) WITH ORDINALITY AS {e}(rep, n){lateral}",
        arms.join(" ")
    );
    Ok(b.finish(sql, false))
}

/// `_service { sdl }` (and `__typename`), as JSON text.
pub(crate) fn service<'a>(
    cx: &Cx<'a>,
    catalog: &Catalog,
    group: &[&'a Node<Field>],
) -> Result<RootKind, PlanError> {
    let sdl = catalog
        .federation
        .as_ref()
        .map(|f| f.sdl.as_str())
        .unwrap_or_default();
    let grouped = cx.collect("_Service", group.iter().map(|f| &f.selection_set))?;
    let mut out = Map::new();
    for (key, fields) in grouped {
        let v = match fields[0].name.as_str() {
            "__typename" => Value::from("_Service"),
            "sdl" => Value::from(sdl),
            _ => Value::Null,
        };
        out.insert(key, v);
    }
    Ok(RootKind::Constant(Value::Object(out).to_string()))
}
