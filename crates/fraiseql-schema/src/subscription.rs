//! `Subscription` root fields: each is fed by the change events of one `@view` type
//! (`@event(entity:, operation:)`) and reads the changed row through the type's view, its
//! arguments being equality filters on that row.

use apollo_compiler::schema::ObjectType;
use apollo_compiler::Schema;
use indexmap::IndexMap;

use crate::catalog::{ArgRole, Catalog, Change, SubscriptionField};
use crate::error::SchemaError;
use crate::lower::{collection, string_arg};

/// The `Subscription` type's fields, each checked: `@event` present, a `@view` type (one
/// object) as its type, the entity its own type, arguments that are filters.
pub(crate) fn lower(
    schema: &Schema,
    catalog: &Catalog,
    root: &str,
) -> Result<IndexMap<String, SubscriptionField>, SchemaError> {
    let obj: &ObjectType = schema.get_object(root).ok_or_else(|| {
        SchemaError::mapping(root, "the subscription root must be an object type")
    })?;
    let mut out = IndexMap::new();
    for (fname, field) in &obj.fields {
        let coord = format!("{root}.{fname}");
        let Some(d) = field.directives.get("event") else {
            return Err(SchemaError::mapping(
                &coord,
                "a subscription field needs @event(entity: \"Type\", operation: \"CREATE\" | \"UPDATE\"): the changes it delivers",
            ));
        };
        for other in [
            "sql",
            "json",
            "column",
            "relation",
            "federated",
            "cache",
            "mutation",
        ] {
            if field.directives.has(other) {
                return Err(SchemaError::mapping(
                    &coord,
                    format!("@{other} does not apply to a subscription field (it reads the changed row through its type's view)"),
                ));
            }
        }
        let named = field.ty.inner_named_type().as_str();
        if field.ty.is_list() || !catalog.types.contains_key(named) {
            return Err(SchemaError::mapping(
                &coord,
                format!("a subscription field returns one object of a type with @view (`Project!`), one per changed row; `{}` is not", field.ty),
            ));
        }
        let operation = string_arg(d, "operation").unwrap_or_default();
        match operation.as_str() {
            "CREATE" | "UPDATE" => {}
            "DELETE" => {
                return Err(SchemaError::mapping(
                    &coord,
                    "@event(operation: \"DELETE\") is not supported: a deleted row can no longer be read through its view, so neither row-level security nor the selection could be applied",
                ))
            }
            other => {
                return Err(SchemaError::mapping(
                    &coord,
                    format!("@event(operation: {other:?}) is not \"CREATE\" or \"UPDATE\""),
                ))
            }
        }
        let entity = string_arg(d, "entity").unwrap_or_else(|| named.to_owned());
        if entity != named {
            return Err(SchemaError::mapping(
                &coord,
                format!("@event(entity: {entity:?}) but the field returns `{named}`: a subscription field delivers the changed rows of its own type"),
            ));
        }
        let rows = collection(schema, &coord, field)?;
        if let Some((arg, _)) = rows
            .args
            .iter()
            .find(|(_, r)| !matches!(r, ArgRole::Filter(_) | ArgRole::Where))
        {
            return Err(SchemaError::mapping(
                format!("{coord}({arg}:)"),
                "the arguments of a subscription field are equality filters on the changed row and `where`",
            ));
        }
        out.insert(
            fname.to_string(),
            SubscriptionField {
                change: Change { entity, operation },
                rows,
            },
        );
    }
    Ok(out)
}
