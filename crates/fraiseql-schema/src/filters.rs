//! What a `where` can filter on, per `@view` type: the catalog side of `generate.rs`'s
//! `<T>WhereInput`.

use apollo_compiler::schema::ObjectType;
use apollo_compiler::Schema;
use indexmap::IndexMap;

use crate::catalog::{
    where_input_name, FieldSource, Filterable, ValueKind, ValueSource, DEFAULT_DATABASE,
};
use crate::error::SchemaError;
use crate::generate::COMBINATORS;

/// The `@view(database:)` of object type `name`, if it has a view.
fn view_database(schema: &Schema, name: &str) -> Option<String> {
    let view = schema.get_object(name)?.directives.get("view")?;
    Some(
        view.specified_argument_by_name("database")
            .and_then(|v| v.as_str())
            .unwrap_or(DEFAULT_DATABASE)
            .to_owned(),
    )
}

/// The filterable fields of view type `name` (in `database`), from its lowered `fields`.
pub(crate) fn lower(
    schema: &Schema,
    name: &str,
    database: &str,
    obj: &ObjectType,
    fields: &IndexMap<String, FieldSource>,
) -> Result<IndexMap<String, Filterable>, SchemaError> {
    let mut out = IndexMap::new();
    for (fname, src) in fields {
        let Some(def) = obj.fields.get(fname.as_str()) else {
            continue;
        };
        let named = def.ty.inner_named_type().as_str();
        let leaf = named != "JSON"
            && !def.ty.is_list()
            && schema.types.get(named).is_some_and(|t| t.is_leaf());
        let kind = || ValueKind::of(named, schema.get_enum(named).is_some());
        let filter = match src {
            FieldSource::Json { key } if leaf => Filterable::Value {
                kind: kind(),
                source: ValueSource::Key(key.clone()),
            },
            FieldSource::Column { name } if leaf => Filterable::Value {
                kind: kind(),
                source: ValueSource::Column(name.clone()),
            },
            FieldSource::Sql { expr, .. } if leaf => Filterable::Value {
                kind: kind(),
                source: ValueSource::Sql(expr.clone()),
            },
            FieldSource::Relation(c)
                if view_database(schema, &c.target).as_deref() == Some(database) =>
            {
                let Some(join) = &c.join else { continue };
                Filterable::Rows {
                    target: c.target.clone(),
                    join: join.clone(),
                }
            }
            _ => continue,
        };
        out.insert(fname.clone(), filter);
    }
    check_input(schema, name, &out)?;
    Ok(out)
}

/// The generated `<T>WhereInput` lists exactly the fields the planner can filter on.
fn check_input(
    schema: &Schema,
    name: &str,
    filters: &IndexMap<String, Filterable>,
) -> Result<(), SchemaError> {
    let input = where_input_name(name);
    let Some(def) = schema.get_input_object(input.as_str()) else {
        return Err(SchemaError::mapping(
            name,
            format!("`{input}` was not generated"),
        ));
    };
    let listed: Vec<&str> = def
        .fields
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !COMBINATORS.contains(k))
        .collect();
    let mapped: Vec<&str> = filters.keys().map(String::as_str).collect();
    if listed != mapped {
        return Err(SchemaError::mapping(
            name,
            format!(
                "`{input}` lists {listed:?} but the fields that can be filtered are {mapped:?}"
            ),
        ));
    }
    Ok(())
}
