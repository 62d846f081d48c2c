//! SDL with directives -> [`Catalog`]. Every mapping mistake is an error naming its coordinate.

use apollo_compiler::ast::{FieldDefinition, InputValueDefinition, Type};
use apollo_compiler::schema::{ExtendedType, ObjectType};
use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;
use heck::ToSnakeCase;
use indexmap::IndexMap;

use crate::catalog::*;
use crate::error::SchemaError;
use crate::ident::{is_plain_ident, quote_ident, QualifiedName};
use crate::template;

use std::collections::BTreeSet;

/// The subgraph inputs of [`lower`]: the federation link and the SDL to serve.
pub(crate) struct Subgraph<'a> {
    pub link: &'a crate::federation::Link,
    pub sdl: String,
}

pub(crate) fn lower(
    schema: &Valid<Schema>,
    resolvers: &BTreeSet<String>,
    subgraph: Option<Subgraph<'_>>,
) -> Result<Catalog, SchemaError> {
    for coord in resolvers {
        check_resolver_coordinate(schema, coord)?;
    }
    let mut catalog = Catalog::default();
    for (name, ty) in &schema.types {
        if let ExtendedType::Object(obj) = ty {
            if let Some(view) = obj.directives.get("view") {
                let mapping = lower_type(schema, name.as_str(), obj, view, resolvers)?;
                catalog.types.insert(name.to_string(), mapping);
            }
        }
    }
    let entity_names: Vec<String> = match &subgraph {
        Some(sg) => schema
            .types
            .iter()
            .filter(|(_, t)| matches!(t, ExtendedType::Object(o) if has_resolvable_key(o, sg.link)))
            .map(|(n, _)| n.to_string())
            .collect(),
        None => Vec::new(),
    };
    lower_objects(schema, resolvers, &entity_names, &mut catalog)?;
    if let Some(query) = schema.root_operation(apollo_compiler::ast::OperationType::Query) {
        let obj = schema.get_object(query.as_str()).ok_or_else(|| {
            SchemaError::mapping(query.as_str(), "the query root must be an object type")
        })?;
        if obj.directives.has("view") {
            return Err(SchemaError::mapping(
                query.as_str(),
                "the query root type cannot have @view",
            ));
        }
        for (fname, field) in &obj.fields {
            if subgraph.is_some() && (fname == "_entities" || fname == "_service") {
                continue;
            }
            let coord = format!("{query}.{fname}");
            if let Some(d) = field.directives.get("cache") {
                catalog
                    .cache
                    .insert(fname.to_string(), cache_policy(&catalog, &coord, d)?);
            }
            let root = if resolvers.contains(&coord) {
                RootField::Resolver(output(schema, &catalog, &coord, &field.ty, true)?)
            } else {
                lower_root_field(schema, &coord, field)?
            };
            catalog.queries.insert(fname.to_string(), root);
        }
    }
    if let Some(mutation) = schema.root_operation(apollo_compiler::ast::OperationType::Mutation) {
        let obj = schema.get_object(mutation.as_str()).ok_or_else(|| {
            SchemaError::mapping(
                mutation.as_str(),
                "the mutation root must be an object type",
            )
        })?;
        for (fname, field) in &obj.fields {
            let coord = format!("{mutation}.{fname}");
            let m = lower_mutation(schema, &catalog, &coord, field, resolvers)?;
            catalog.mutations.insert(fname.to_string(), m);
        }
    }
    // A relation's target must be a mapped type; checked once all types are known.
    let fields = catalog
        .types
        .values()
        .map(|t| (&t.name, &t.fields))
        .chain(catalog.objects.values().map(|o| (&o.name, &o.fields)));
    for (name, fields) in fields {
        for (fname, src) in fields {
            if let FieldSource::Relation(c) = src {
                check_target(&catalog, &format!("{name}.{fname}"), c)?;
            }
        }
    }
    if let Some(sg) = subgraph {
        let mut entities = IndexMap::new();
        for name in &entity_names {
            entities.insert(name.clone(), lower_entity(schema, &catalog, sg.link, name)?);
        }
        if !entities.is_empty() {
            catalog
                .queries
                .insert("_entities".to_owned(), RootField::Entities);
        }
        catalog
            .queries
            .insert("_service".to_owned(), RootField::Service);
        catalog.federation = Some(Federation {
            version: sg.link.version.clone(),
            sdl: sg.sdl,
            entities,
        });
    }
    for (fname, root) in &catalog.queries {
        if let RootField::Rows(c) | RootField::Aggregate(c) = root {
            check_target(&catalog, &format!("Query.{fname}"), c)?;
        }
    }
    Ok(catalog)
}

/// Longest `@cache(ttl:)`: a week.
const MAX_TTL_SECS: i64 = 7 * 24 * 3600;

fn cache_policy(
    catalog: &Catalog,
    coord: &str,
    d: &apollo_compiler::ast::Directive,
) -> Result<CachePolicy, SchemaError> {
    let ttl = d
        .specified_argument_by_name("ttl")
        .and_then(|v| v.to_i32())
        .map(i64::from)
        .unwrap_or(0);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return Err(SchemaError::mapping(
            coord,
            format!("@cache(ttl:) is in seconds, from 1 to {MAX_TTL_SECS}; got {ttl}"),
        ));
    }
    let per_user = d
        .specified_argument_by_name("perUser")
        .and_then(|v| v.to_bool())
        .unwrap_or(false);
    let entities = match d.specified_argument_by_name("entities").map(|v| v.as_ref()) {
        None | Some(apollo_compiler::ast::Value::Null) => None,
        Some(apollo_compiler::ast::Value::List(items)) => {
            let mut out = Vec::new();
            for item in items {
                let name = item.as_str().unwrap_or_default();
                if !catalog.types.contains_key(name) {
                    return Err(SchemaError::mapping(
                        coord,
                        format!("@cache(entities:) names {name:?}, which is not a type with @view"),
                    ));
                }
                out.push(name.to_owned());
            }
            Some(out)
        }
        Some(apollo_compiler::ast::Value::String(s)) => {
            if !catalog.types.contains_key(s.as_str()) {
                return Err(SchemaError::mapping(
                    coord,
                    format!(
                        "@cache(entities:) names {:?}, which is not a type with @view",
                        s.as_str()
                    ),
                ));
            }
            Some(vec![s.to_string()])
        }
        Some(_) => {
            return Err(SchemaError::mapping(
                coord,
                "@cache(entities:) is a list of type names",
            ))
        }
    };
    Ok(CachePolicy {
        ttl_secs: u32::try_from(ttl).unwrap_or(u32::MAX),
        per_user,
        entities,
    })
}

/// A resolver must name a field of an object type: `Type.field`.
fn check_resolver_coordinate(schema: &Schema, coord: &str) -> Result<(), SchemaError> {
    let found = coord.split_once('.').and_then(|(t, f)| {
        let obj = schema.get_object(t)?;
        obj.fields.get(f)?;
        Some(())
    });
    found.ok_or_else(|| {
        SchemaError::mapping(
            coord,
            "a resolver is registered for this coordinate, but it is not a field of an object type of the schema",
        )
    })
}

/// How the value of a mutation or resolver field is produced from what it returns.
fn output(
    schema: &Schema,
    catalog: &Catalog,
    coord: &str,
    ty: &Type,
    resolver: bool,
) -> Result<Output, SchemaError> {
    let list = ty.is_list();
    if list && ty.item_type().is_list() {
        return Err(SchemaError::mapping(
            coord,
            "lists of lists are not supported",
        ));
    }
    let named = ty.inner_named_type().as_str();
    if catalog.types.contains_key(named) {
        return Ok(Output::Entity {
            target: named.to_owned(),
            list,
            non_null: ty.is_non_null(),
        });
    }
    let leaf = schema.types.get(named).is_some_and(|t| t.is_leaf());
    if !leaf && !resolver {
        return Err(SchemaError::mapping(
            coord,
            format!("returns `{named}`, which has no @view: a SQL mutation returns a @view type (read back by its key) or a scalar"),
        ));
    }
    Ok(Output::Value {
        list,
        non_null: ty.is_non_null(),
    })
}

fn lower_mutation(
    schema: &Schema,
    catalog: &Catalog,
    coord: &str,
    field: &FieldDefinition,
    resolvers: &BTreeSet<String>,
) -> Result<MutationField, SchemaError> {
    if field.directives.has("cache") {
        return Err(SchemaError::mapping(
            coord,
            "@cache applies to root query fields only; a mutation's answer is never cached",
        ));
    }
    if resolvers.contains(coord) {
        let output = output(schema, catalog, coord, &field.ty, true)?;
        let change = match field.directives.get("mutation") {
            Some(d) => change(catalog, coord, d, &output)?,
            None => None,
        };
        return Ok(MutationField {
            action: MutationAction::Resolver,
            output,
            change,
        });
    }
    let Some(d) = field.directives.get("mutation") else {
        return Err(SchemaError::mapping(
            coord,
            "needs @mutation(sql: ...) or @mutation(function: ...), or a Rust mutation resolver registered for it",
        ));
    };
    let args: Vec<&str> = field.arguments.iter().map(|a| a.name.as_str()).collect();
    let template = match (string_arg(d, "sql"), string_arg(d, "function")) {
        (Some(sql), None) => sql,
        (None, Some(function)) => {
            let f = QualifiedName::parse(&function).ok_or_else(|| {
                SchemaError::mapping(
                    coord,
                    format!("@mutation(function: {function:?}) is not a function name (`fn` or `schema.fn`, plain identifiers)"),
                )
            })?;
            let named: Vec<String> = args
                .iter()
                .map(|a| {
                    Ok(format!(
                        "{} => ${a}",
                        quote_ident(&ident(coord, "argument", a.to_snake_case())?)
                    ))
                })
                .collect::<Result<_, SchemaError>>()?;
            format!("SELECT * FROM {f}({})", named.join(", "))
        }
        _ => {
            return Err(SchemaError::mapping(
                coord,
                "@mutation needs exactly one of `sql` or `function`",
            ))
        }
    };
    let compiled = template::compile(&template, &args)
        .map_err(|m| SchemaError::mapping(coord, format!("@mutation(sql:) {m}")))?;
    let database = string_arg(d, "database").unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let output = output(schema, catalog, coord, &field.ty, false)?;
    if let Output::Entity { target, .. } = &output {
        let ty = &catalog.types[target];
        if ty.database != database {
            return Err(SchemaError::mapping(
                coord,
                format!(
                    "runs on database `{database}` but `{target}` is read from `{}`; both must be the same",
                    ty.database
                ),
            ));
        }
    }
    let change = change(catalog, coord, d, &output)?;
    // A data-modifying statement can only be read from in a WITH; json_each keeps the columns'
    // order, so the first column is found whatever its name. The newline ends a trailing `--`.
    // The keys are also kept in the transaction-local setting `fraiseql.keys`, where the
    // read-back and the outbox statements find them: so all of them can be sent at once.
    let sql = format!(
        "WITH m AS ({}\n) SELECT set_config('{KEYS_SETTING}', coalesce(json_agg((SELECT e.value FROM json_each(row_to_json(m)) e LIMIT 1)), '[]'::json)::text, true) FROM m",
        compiled.sql
    );
    Ok(MutationField {
        action: MutationAction::Sql {
            database,
            sql,
            params: compiled.params,
        },
        output,
        change,
    })
}

/// `@mutation(operation:, entity:)`: the change observers see.
fn change(
    catalog: &Catalog,
    coord: &str,
    d: &apollo_compiler::ast::Directive,
    output: &Output,
) -> Result<Option<Change>, SchemaError> {
    let Some(operation) = string_arg(d, "operation") else {
        if d.specified_argument_by_name("entity").is_some() {
            return Err(SchemaError::mapping(
                coord,
                "@mutation(entity:) needs operation: \"CREATE\", \"UPDATE\" or \"DELETE\"",
            ));
        }
        return Ok(None);
    };
    if !matches!(operation.as_str(), "CREATE" | "UPDATE" | "DELETE") {
        return Err(SchemaError::mapping(
            coord,
            format!("@mutation(operation: {operation:?}) is not one of \"CREATE\", \"UPDATE\", \"DELETE\""),
        ));
    }
    let entity = match (string_arg(d, "entity"), output) {
        (Some(e), _) => e,
        (None, Output::Entity { target, .. }) => target.clone(),
        (None, Output::Value { .. }) => {
            return Err(SchemaError::mapping(
                coord,
                "@mutation(operation:) on a field that does not return a @view type needs entity: \"Type\"",
            ))
        }
    };
    if !catalog.types.contains_key(&entity) {
        return Err(SchemaError::mapping(
            coord,
            format!("@mutation(entity: {entity:?}) is not a type with @view"),
        ));
    }
    Ok(Some(Change { entity, operation }))
}

fn check_target(catalog: &Catalog, coord: &str, c: &Collection) -> Result<(), SchemaError> {
    if catalog.types.contains_key(&c.target) {
        Ok(())
    } else {
        Err(SchemaError::mapping(
            coord,
            format!(
                "type `{}` has no @view, so it cannot be read from the database",
                c.target
            ),
        ))
    }
}

pub(crate) fn string_arg(d: &apollo_compiler::ast::Directive, name: &str) -> Option<String> {
    d.specified_argument_by_name(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

fn ident(coord: &str, what: &str, value: String) -> Result<String, SchemaError> {
    if is_plain_ident(&value) {
        Ok(value)
    } else {
        Err(SchemaError::mapping(
            coord,
            format!("{what} {value:?} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)"),
        ))
    }
}

fn lower_type(
    schema: &Schema,
    name: &str,
    obj: &ObjectType,
    view: &apollo_compiler::ast::Directive,
    resolvers: &BTreeSet<String>,
) -> Result<TypeMapping, SchemaError> {
    let view_name = string_arg(view, "name").unwrap_or_default();
    let view_q = QualifiedName::parse(&view_name).ok_or_else(|| {
        SchemaError::mapping(
            name,
            format!("@view(name: {view_name:?}) is not a view name (`view` or `schema.view`, plain identifiers)"),
        )
    })?;
    let database = string_arg(view, "database").unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let data_column = ident(
        name,
        "@view(data:)",
        string_arg(view, "data").unwrap_or_else(|| "data".to_owned()),
    )?;
    let key_column = ident(
        name,
        "@view(key:)",
        string_arg(view, "key").unwrap_or_else(|| "id".to_owned()),
    )?;
    let mut fields = IndexMap::new();
    for (fname, field) in &obj.fields {
        let coord = format!("{name}.{fname}");
        let source = if resolvers.contains(&coord) {
            FieldSource::Resolver
        } else {
            lower_field(schema, &coord, field, Parent::View)?
        };
        fields.insert(fname.to_string(), source);
    }
    let filters = crate::filters::lower(schema, name, &database, obj, &fields)?;
    Ok(TypeMapping {
        name: name.to_owned(),
        view: view_q,
        database,
        data_column,
        key_column,
        fields,
        filters,
    })
}

/// The type of the field being lowered: a view row, or a JSON object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    View,
    Object,
}

/// The `@view(database:)` of object type `name`, if it has a view.
fn view_database(schema: &Schema, name: &str) -> Option<String> {
    let view = schema.get_object(name)?.directives.get("view")?;
    Some(string_arg(view, "database").unwrap_or_else(|| DEFAULT_DATABASE.to_owned()))
}

fn lower_field(
    schema: &Schema,
    coord: &str,
    field: &FieldDefinition,
    parent: Parent,
) -> Result<FieldSource, SchemaError> {
    let d = &field.directives;
    if d.has("cache") {
        return Err(SchemaError::mapping(
            coord,
            "@cache applies to root query fields only (their whole answer is cached)",
        ));
    }
    let used: Vec<&str> = ["json", "column", "sql", "relation", "federated"]
        .into_iter()
        .filter(|n| d.has(n))
        .collect();
    if used.len() > 1 {
        return Err(SchemaError::mapping(
            coord,
            format!("use only one of @{}", used.join(", @")),
        ));
    }
    let named = rows_target(field);
    let leaf = schema.types.get(named).is_some_and(|t| t.is_leaf());
    let target_db = view_database(schema, named);
    if let Some(rel) = d.get("relation").or_else(|| d.get("federated")) {
        let which = rel.name.as_str();
        if leaf {
            return Err(SchemaError::mapping(
                coord,
                format!("@{which} needs an object type (or a list of one)"),
            ));
        }
        let Some(target_db) = target_db else {
            return Err(SchemaError::mapping(
                coord,
                format!("@{which} reads rows of a type with @view; `{named}` has none"),
            ));
        };
        let (column, references) = if which == "relation" {
            (
                string_arg(rel, "column").unwrap_or_default(),
                string_arg(rel, "references").unwrap_or_default(),
            )
        } else {
            if let Some(db) = string_arg(rel, "database") {
                if db != target_db {
                    return Err(SchemaError::mapping(
                        coord,
                        format!("@federated(database: {db:?}) but `{named}` is read from `{target_db}` (its @view(database:)); they must agree"),
                    ));
                }
            }
            let key = string_arg(rel, "key").unwrap_or_else(|| {
                schema
                    .get_object(named)
                    .and_then(|o| o.directives.get("view"))
                    .and_then(|v| string_arg(v, "key"))
                    .unwrap_or_else(|| "id".to_owned())
            });
            (string_arg(rel, "lookup").unwrap_or_default(), key)
        };
        let what = if parent == Parent::Object {
            "key of the parent object"
        } else {
            "column"
        };
        let arg_names = if which == "relation" {
            ("@relation(column:)", "@relation(references:)")
        } else {
            ("@federated(lookup:)", "@federated(key:)")
        };
        let column = ident(coord, &format!("{} ({what})", arg_names.0), column)?;
        let references = ident(coord, arg_names.1, references)?;
        let mut c = collection(schema, coord, field)?;
        c.join = Some(Join { column, references });
        return Ok(FieldSource::Relation(Box::new(c)));
    }
    if !leaf {
        if target_db.is_some() {
            return Err(SchemaError::mapping(
                coord,
                format!(
                    "field of object type `{named}` needs @relation(column: ..., references: ...) or @federated(lookup: ...) to say how it joins"
                ),
            ));
        }
        if schema.get_object(named).is_none() {
            return Err(SchemaError::mapping(
                coord,
                format!(
                    "`{named}` is an interface or union: only object types can be read from JSON"
                ),
            ));
        }
        if d.has("column") || d.has("sql") {
            return Err(SchemaError::mapping(
                coord,
                format!("`{named}` has no @view, so its values are JSON objects under a key of the parent's JSON (@json(key:)); @column and @sql do not apply"),
            ));
        }
        if !field.arguments.is_empty() {
            return Err(SchemaError::mapping(
                coord,
                "fields read from JSON take no arguments",
            ));
        }
        if field.ty.is_list() && field.ty.item_type().is_list() {
            return Err(SchemaError::mapping(
                coord,
                "lists of lists are not supported",
            ));
        }
        return Ok(FieldSource::Embedded(Box::new(Embedded {
            target: named.to_owned(),
            list: field.ty.is_list(),
            key: json_key(coord, field)?,
        })));
    }
    if !field.arguments.is_empty() {
        return Err(SchemaError::mapping(
            coord,
            "only relation fields and root fields take arguments",
        ));
    }
    if let Some(sql) = d.get("sql") {
        return Ok(FieldSource::Sql {
            expr: sql_expr(coord, sql)?,
            scalar: named.to_string(),
        });
    }
    if let Some(col) = d.get("column") {
        if parent == Parent::Object {
            return Err(SchemaError::mapping(
                coord,
                "this type has no @view, so it has no columns: its fields are keys of a JSON object (@json(key:))",
            ));
        }
        let name = ident(
            coord,
            "@column(name:)",
            string_arg(col, "name").unwrap_or_default(),
        )?;
        return Ok(FieldSource::Column { name });
    }
    Ok(FieldSource::Json {
        key: json_key(coord, field)?,
    })
}

/// `@json(key:)`, else the field's name in snake_case.
fn json_key(coord: &str, field: &FieldDefinition) -> Result<String, SchemaError> {
    let key = match field.directives.get("json") {
        Some(j) => string_arg(j, "key").unwrap_or_default(),
        None => field.name.as_str().to_snake_case(),
    };
    if key.is_empty() {
        return Err(SchemaError::mapping(coord, "@json(key:) cannot be empty"));
    }
    Ok(key)
}

/// Object types without a view that the schema needs as JSON objects: the targets of embedded
/// fields (transitively) and the entities without a view. Other such types (values of Rust
/// resolvers) are left alone.
fn lower_objects(
    schema: &Schema,
    resolvers: &BTreeSet<String>,
    entities: &[String],
    catalog: &mut Catalog,
) -> Result<(), SchemaError> {
    let mut queue: Vec<String> = entities
        .iter()
        .filter(|n| !catalog.types.contains_key(*n))
        .cloned()
        .collect();
    let embedded_targets = |fields: &IndexMap<String, FieldSource>| -> Vec<String> {
        fields
            .values()
            .filter_map(|f| match f {
                FieldSource::Embedded(e) => Some(e.target.clone()),
                _ => None,
            })
            .collect()
    };
    for ty in catalog.types.values() {
        queue.extend(embedded_targets(&ty.fields));
    }
    while let Some(name) = queue.pop() {
        if catalog.objects.contains_key(&name) || catalog.types.contains_key(&name) {
            continue;
        }
        let obj = schema.get_object(name.as_str()).ok_or_else(|| {
            SchemaError::mapping(&name, "only object types can be read from JSON")
        })?;
        let mut fields = IndexMap::new();
        let mut databases: Vec<String> = Vec::new();
        for (fname, field) in &obj.fields {
            let coord = format!("{name}.{fname}");
            let source = if resolvers.contains(&coord) {
                FieldSource::Resolver
            } else {
                lower_field(schema, &coord, field, Parent::Object)?
            };
            if let FieldSource::Relation(c) = &source {
                if let Some(db) = view_database(schema, &c.target) {
                    if !databases.contains(&db) {
                        databases.push(db);
                    }
                }
            }
            fields.insert(fname.to_string(), source);
        }
        queue.extend(embedded_targets(&fields));
        let database = match databases.as_slice() {
            [one] => one.clone(),
            _ => DEFAULT_DATABASE.to_owned(),
        };
        catalog.objects.insert(
            name.clone(),
            ObjectMapping {
                name,
                fields,
                database,
            },
        );
    }
    Ok(())
}

fn has_resolvable_key(obj: &ObjectType, link: &crate::federation::Link) -> bool {
    obj.directives.get_all(link.name("key")).any(|d| {
        d.specified_argument_by_name("resolvable")
            .and_then(|v| v.to_bool())
            != Some(false)
    })
}

/// An entity's keys: each resolvable `@key`'s field set checked against the schema, its leaves
/// mapped to what a lookup compares.
fn lower_entity(
    schema: &Valid<Schema>,
    catalog: &Catalog,
    link: &crate::federation::Link,
    name: &str,
) -> Result<Entity, SchemaError> {
    let obj = schema
        .get_object(name)
        .ok_or_else(|| SchemaError::mapping(name, "@key applies to object types here"))?;
    let view = catalog.types.get(name);
    let mut keys = Vec::new();
    for d in obj.directives.get_all(link.name("key")) {
        if d.specified_argument_by_name("resolvable")
            .and_then(|v| v.to_bool())
            == Some(false)
        {
            continue;
        }
        let fields = string_arg(d, "fields").unwrap_or_default();
        let coord = format!("{name} @key(fields: {fields:?})");
        let set = apollo_compiler::executable::FieldSet::parse_and_validate(
            schema,
            apollo_compiler::Name::new(name)
                .map_err(|_| SchemaError::mapping(name, "not a type name"))?,
            fields.as_str(),
            "key.graphql",
        )
        .map_err(|e| SchemaError::mapping(&coord, e.errors.to_string()))?;
        let mut leaves = Vec::new();
        key_leaves(&coord, &set.selection_set, &mut Vec::new(), &mut leaves)?;
        if let Some(ty) = view {
            for leaf in &mut leaves {
                leaf.lookup = key_lookup(catalog, ty, &coord, &leaf.path)?;
            }
        }
        keys.push(EntityKey { fields, leaves });
    }
    Ok(Entity {
        keys,
        view: view.is_some(),
        database: view.map_or_else(
            || {
                catalog
                    .objects
                    .get(name)
                    .map_or_else(|| DEFAULT_DATABASE.to_owned(), |o| o.database.clone())
            },
            |t| t.database.clone(),
        ),
    })
}

fn key_leaves(
    coord: &str,
    set: &apollo_compiler::executable::SelectionSet,
    path: &mut Vec<String>,
    out: &mut Vec<KeyLeaf>,
) -> Result<(), SchemaError> {
    for sel in &set.selections {
        let apollo_compiler::executable::Selection::Field(f) = sel else {
            return Err(SchemaError::mapping(
                coord,
                "fragments in @key field sets are not supported",
            ));
        };
        if f.alias.is_some() || !f.arguments.is_empty() {
            return Err(SchemaError::mapping(
                coord,
                "key fields take no alias and no arguments",
            ));
        }
        path.push(f.name.to_string());
        let inner = f.definition.ty.inner_named_type().as_str();
        if f.definition.ty.is_list() {
            return Err(SchemaError::mapping(
                coord,
                format!("key field `{}` is a list", path.join(".")),
            ));
        }
        if f.selection_set.selections.is_empty() {
            out.push(KeyLeaf {
                path: path.clone(),
                scalar: inner.to_owned(),
                lookup: KeyLookup::Representation,
            });
        } else {
            key_leaves(coord, &f.selection_set, path, out)?;
        }
        path.pop();
    }
    Ok(())
}

/// What a key leaf of a view type is compared with: a column for a one-field path read from a
/// column (or from the JSON key named like `@view(key:)`), else the JSON path into `data`.
fn key_lookup(
    catalog: &Catalog,
    ty: &TypeMapping,
    coord: &str,
    path: &[String],
) -> Result<KeyLookup, SchemaError> {
    let first = ty.fields.get(&path[0]).ok_or_else(|| {
        SchemaError::mapping(
            coord,
            format!("`{}` is not a field of {}", path[0], ty.name),
        )
    })?;
    let mut keys = match first {
        FieldSource::Column { name } if path.len() == 1 => {
            return Ok(KeyLookup::Column(name.clone()))
        }
        FieldSource::Json { key } if path.len() == 1 && *key == ty.key_column => {
            return Ok(KeyLookup::Column(key.clone()))
        }
        FieldSource::Json { key } => vec![key.clone()],
        FieldSource::Embedded(e) => vec![e.key.clone()],
        _ => {
            return Err(SchemaError::mapping(
                coord,
                format!("key field `{}` must be read from a column or from the `data` JSON (not @sql, @relation or a resolver)", path[0]),
            ))
        }
    };
    let mut current = match first {
        FieldSource::Embedded(e) => Some(e.target.clone()),
        _ => None,
    };
    for seg in &path[1..] {
        let obj = current
            .as_deref()
            .and_then(|t| catalog.objects.get(t))
            .ok_or_else(|| {
                SchemaError::mapping(
                    coord,
                    format!("key path `{}` must go through JSON objects", path.join(".")),
                )
            })?;
        match obj.fields.get(seg) {
            Some(FieldSource::Json { key }) => {
                keys.push(key.clone());
                current = None;
            }
            Some(FieldSource::Embedded(e)) => {
                keys.push(e.key.clone());
                current = Some(e.target.clone());
            }
            _ => {
                return Err(SchemaError::mapping(
                    coord,
                    format!("key field `{}` must be read from JSON", path.join(".")),
                ))
            }
        }
    }
    Ok(KeyLookup::Json(keys))
}

fn sql_expr(coord: &str, d: &apollo_compiler::ast::Directive) -> Result<String, SchemaError> {
    let expr = string_arg(d, "expr").unwrap_or_default();
    if expr.trim().is_empty() {
        return Err(SchemaError::mapping(coord, "@sql(expr:) cannot be empty"));
    }
    if expr.contains(';') {
        return Err(SchemaError::mapping(
            coord,
            "@sql(expr:) must be one expression (no `;`)",
        ));
    }
    Ok(expr)
}

fn lower_root_field(
    schema: &Schema,
    coord: &str,
    field: &FieldDefinition,
) -> Result<RootField, SchemaError> {
    if let Some(sql) = field.directives.get("sql") {
        if !field.arguments.is_empty() {
            return Err(SchemaError::mapping(
                coord,
                "a root @sql field takes no arguments",
            ));
        }
        return Ok(RootField::Sql {
            expr: sql_expr(coord, sql)?,
            scalar: field.ty.inner_named_type().to_string(),
        });
    }
    if field.directives.has("relation")
        || field.directives.has("json")
        || field.directives.has("column")
    {
        return Err(SchemaError::mapping(
            coord,
            "root fields read a type's view; @relation, @json and @column do not apply",
        ));
    }
    if field.directives.has("aggregate") {
        return Ok(RootField::Aggregate(collection(schema, coord, field)?));
    }
    let is_object = schema
        .get_object(field.ty.inner_named_type().as_str())
        .is_some();
    if !is_object {
        return Err(SchemaError::mapping(
            coord,
            "a root field returns a type with @view (or a list of one), has @sql(expr: ...), or has a Rust query resolver registered for it",
        ));
    }
    Ok(RootField::Rows(collection(schema, coord, field)?))
}

/// The type whose rows a field reads: `T` for `@connection` fields returning `TConnection`
/// and `@aggregate` fields returning `[TAggregate!]!`, else the field's named type.
fn rows_target(field: &FieldDefinition) -> &str {
    let named = field.ty.inner_named_type().as_str();
    if field.directives.has("connection") {
        named
            .strip_suffix(crate::generate::CONNECTION)
            .unwrap_or(named)
    } else if field.directives.has("aggregate") {
        named
            .strip_suffix(crate::catalog::AGGREGATE)
            .unwrap_or(named)
    } else {
        named
    }
}

/// `@connection(maxPageSize:)`, checked.
fn connection_spec(
    coord: &str,
    d: &apollo_compiler::ast::Directive,
) -> Result<ConnectionSpec, SchemaError> {
    let max_page_size = match d.specified_argument_by_name("maxPageSize") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => match v.to_i32() {
            Some(n) if n >= 1 => Some(i64::from(n)),
            _ => {
                return Err(SchemaError::mapping(
                    coord,
                    "@connection(maxPageSize:) must be at least 1",
                ))
            }
        },
    };
    Ok(ConnectionSpec { max_page_size })
}

pub(crate) fn collection(
    schema: &Schema,
    coord: &str,
    field: &FieldDefinition,
) -> Result<Collection, SchemaError> {
    let ty = &field.ty;
    let connection = match field.directives.get("connection") {
        Some(d) => Some(connection_spec(coord, d)?),
        None => None,
    };
    let list = match ty {
        _ if connection.is_some() => true,
        Type::Named(_) | Type::NonNullNamed(_) => false,
        Type::List(inner) | Type::NonNullList(inner) => {
            if inner.is_list() {
                return Err(SchemaError::mapping(
                    coord,
                    "lists of lists cannot be read from a view",
                ));
            }
            true
        }
    };
    let target = rows_target(field);
    let mut roles = IndexMap::new();
    for arg in &field.arguments {
        let acoord = format!("{coord}({}:)", arg.name);
        let aggregate = field.directives.has("aggregate").then_some(target);
        let role = arg_role(
            schema,
            &acoord,
            arg,
            target,
            connection.is_some(),
            aggregate,
        )?;
        // A subscription field (`@event`) is one changed row at a time: `where` decides whether
        // it is delivered.
        let subscribed = field.directives.has("event") && matches!(role, ArgRole::Where);
        if !list && !subscribed && !matches!(role, ArgRole::Filter(_)) {
            return Err(SchemaError::mapping(
                acoord,
                "limit, offset, orderBy and where only apply to list fields",
            ));
        }
        if connection.is_some() && matches!(role, ArgRole::Limit | ArgRole::Offset) {
            return Err(SchemaError::mapping(
                acoord,
                "a connection pages with first, after, last and before, not limit and offset",
            ));
        }
        roles.insert(arg.name.to_string(), role);
    }
    Ok(Collection {
        target: target.to_owned(),
        list,
        non_null: ty.is_non_null(),
        join: None,
        args: roles,
        connection,
    })
}

fn target(coord: &str, d: &apollo_compiler::ast::Directive) -> Result<Option<Target>, SchemaError> {
    match (string_arg(d, "column"), string_arg(d, "key")) {
        (Some(c), None) => Ok(Some(Target::Column(ident(coord, "column", c)?))),
        (None, Some(k)) if !k.is_empty() => Ok(Some(Target::Key(k))),
        (None, None) => Ok(None),
        _ => Err(SchemaError::mapping(
            coord,
            "give exactly one of `column` or a non-empty `key`",
        )),
    }
}

fn arg_role(
    schema: &Schema,
    coord: &str,
    arg: &InputValueDefinition,
    rows: &str,
    connection: bool,
    aggregate: Option<&str>,
) -> Result<ArgRole, SchemaError> {
    let named = arg.ty.inner_named_type().as_str();
    if let Some(role) = aggregate
        .and_then(|t| crate::aggregates::arg_role(arg.name.as_str(), named, arg.ty.is_list(), t))
    {
        return role.map_err(|m| SchemaError::mapping(coord, m));
    }
    if let Some(f) = arg.directives.get("filter") {
        let t = target(coord, f)?.unwrap_or(Target::Column(ident(
            coord,
            "column",
            arg.name.as_str().to_snake_case(),
        )?));
        return Ok(ArgRole::Filter(t));
    }
    let paging = |want: &str, role: ArgRole| {
        if named != want || arg.ty.is_list() {
            Err(SchemaError::mapping(
                coord,
                format!("must be of type {want}"),
            ))
        } else {
            Ok(role)
        }
    };
    match arg.name.as_str() {
        "where" if named == where_input_name(rows) && !arg.ty.is_list() => Ok(ArgRole::Where),
        "first" if connection => paging("Int", ArgRole::First),
        "last" if connection => paging("Int", ArgRole::Last),
        "after" if connection => paging("String", ArgRole::After),
        "before" if connection => paging("String", ArgRole::Before),
        "limit" | "offset" => {
            if named != "Int" || arg.ty.is_list() {
                return Err(SchemaError::mapping(coord, "must be of type Int"));
            }
            Ok(if arg.name == "limit" {
                ArgRole::Limit
            } else {
                ArgRole::Offset
            })
        }
        "orderBy" => {
            let en = schema.get_enum(named).ok_or_else(|| {
                SchemaError::mapping(
                    coord,
                    "orderBy must be an enum (or a list of one) whose values have @orderBy",
                )
            })?;
            let mut keys = IndexMap::new();
            for (vname, v) in &en.values {
                let vcoord = format!("{named}.{vname}");
                let d = v.directives.get("orderBy").ok_or_else(|| {
                    SchemaError::mapping(
                        &vcoord,
                        "needs @orderBy(column: ...) or @orderBy(key: ...)",
                    )
                })?;
                let t = target(&vcoord, d)?.ok_or_else(|| {
                    SchemaError::mapping(&vcoord, "@orderBy needs `column` or `key`")
                })?;
                let desc = d
                    .specified_argument_by_name("desc")
                    .and_then(|v| v.to_bool())
                    .unwrap_or(false);
                let nullable = !never_null(schema, rows, &t);
                keys.insert(
                    vname.to_string(),
                    SortKey {
                        target: t,
                        desc,
                        nullable,
                    },
                );
            }
            Ok(ArgRole::OrderBy(keys))
        }
        other => {
            if arg.ty.is_list() || !schema.types.get(named).is_some_and(|t| t.is_leaf()) {
                return Err(SchemaError::mapping(
                    coord,
                    "equality filters take one scalar or enum value",
                ));
            }
            Ok(ArgRole::Filter(Target::Column(ident(
                coord,
                "column",
                other.to_snake_case(),
            )?)))
        }
    }
}

/// Whether sort target `t` of view type `type_name` never holds NULL: it is the `@view(key:)`
/// column, or a non-null field reads it (the column of `@column`, or the `data` key, which is
/// also taken to be what a same-named column holds).
fn never_null(schema: &Schema, type_name: &str, t: &Target) -> bool {
    let Some(obj) = schema.get_object(type_name) else {
        return false;
    };
    let key_column = obj
        .directives
        .get("view")
        .and_then(|v| string_arg(v, "key"))
        .unwrap_or_else(|| "id".to_owned());
    let wanted = match t {
        Target::Column(c) if *c == key_column => return true,
        Target::Column(c) | Target::Key(c) => c,
    };
    obj.fields.values().any(|f| {
        if !f.ty.is_non_null() || f.ty.is_list() {
            return false;
        }
        let key = match f.directives.get("json") {
            Some(j) => string_arg(j, "key").unwrap_or_default(),
            None => f.name.as_str().to_snake_case(),
        };
        let column = f
            .directives
            .get("column")
            .and_then(|c| string_arg(c, "name"));
        match t {
            Target::Column(_) => {
                column.as_deref() == Some(wanted)
                    || (column.is_none() && key == *wanted && !f.directives.has("sql"))
            }
            Target::Key(_) => column.is_none() && key == *wanted && !f.directives.has("sql"),
        }
    })
}
