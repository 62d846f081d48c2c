//! SDL with directives -> [`Catalog`]. Every mapping mistake is an error naming its coordinate.

use apollo_compiler::ast::{FieldDefinition, InputValueDefinition, Type};
use apollo_compiler::schema::{ExtendedType, ObjectType};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Node, Schema};
use heck::ToSnakeCase;
use indexmap::IndexMap;

use crate::catalog::*;
use crate::error::SchemaError;
use crate::ident::{is_plain_ident, QualifiedName};

pub(crate) fn lower(schema: &Valid<Schema>) -> Result<Catalog, SchemaError> {
    let mut catalog = Catalog::default();
    for (name, ty) in &schema.types {
        if let ExtendedType::Object(obj) = ty {
            if let Some(view) = obj.directives.get("view") {
                let mapping = lower_type(schema, name.as_str(), obj, view)?;
                catalog.types.insert(name.to_string(), mapping);
            }
        }
    }
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
            let coord = format!("{query}.{fname}");
            let root = lower_root_field(schema, &coord, field)?;
            catalog.queries.insert(fname.to_string(), root);
        }
    }
    for op in [
        apollo_compiler::ast::OperationType::Mutation,
        apollo_compiler::ast::OperationType::Subscription,
    ] {
        if let Some(root) = schema.root_operation(op) {
            return Err(SchemaError::mapping(
                root.as_str(),
                format!("{op} fields are not supported by this version of the engine; remove the `{root}` type"),
            ));
        }
    }
    // A relation's target must be a mapped type; checked once all types are known.
    for ty in catalog.types.values() {
        for (fname, src) in &ty.fields {
            if let FieldSource::Relation(c) = src {
                check_target(&catalog, &format!("{}.{fname}", ty.name), c)?;
            }
        }
    }
    for (fname, root) in &catalog.queries {
        if let RootField::Rows(c) = root {
            check_target(&catalog, &format!("Query.{fname}"), c)?;
        }
    }
    Ok(catalog)
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

fn string_arg(d: &apollo_compiler::ast::Directive, name: &str) -> Option<String> {
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
    let mut fields = IndexMap::new();
    for (fname, field) in &obj.fields {
        let coord = format!("{name}.{fname}");
        fields.insert(fname.to_string(), lower_field(schema, &coord, field)?);
    }
    Ok(TypeMapping {
        name: name.to_owned(),
        view: view_q,
        database,
        data_column,
        fields,
    })
}

fn lower_field(
    schema: &Schema,
    coord: &str,
    field: &FieldDefinition,
) -> Result<FieldSource, SchemaError> {
    let d = &field.directives;
    let used: Vec<&str> = ["json", "column", "sql", "relation"]
        .into_iter()
        .filter(|n| d.has(n))
        .collect();
    if used.len() > 1 {
        return Err(SchemaError::mapping(
            coord,
            format!("use only one of @{}", used.join(", @")),
        ));
    }
    let leaf = schema
        .types
        .get(field.ty.inner_named_type())
        .is_some_and(|t| t.is_leaf());
    if let Some(rel) = d.get("relation") {
        if leaf {
            return Err(SchemaError::mapping(
                coord,
                "@relation needs an object type (or a list of one)",
            ));
        }
        let column = ident(
            coord,
            "@relation(column:)",
            string_arg(rel, "column").unwrap_or_default(),
        )?;
        let references = ident(
            coord,
            "@relation(references:)",
            string_arg(rel, "references").unwrap_or_default(),
        )?;
        let mut c = collection(schema, coord, &field.ty, &field.arguments)?;
        c.join = Some(Join { column, references });
        return Ok(FieldSource::Relation(Box::new(c)));
    }
    if !leaf {
        return Err(SchemaError::mapping(
            coord,
            format!(
                "field of object type `{}` needs @relation(column: ..., references: ...) to say how it joins",
                field.ty.inner_named_type()
            ),
        ));
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
            scalar: field.ty.inner_named_type().to_string(),
        });
    }
    if let Some(col) = d.get("column") {
        let name = ident(
            coord,
            "@column(name:)",
            string_arg(col, "name").unwrap_or_default(),
        )?;
        return Ok(FieldSource::Column { name });
    }
    let key = match d.get("json") {
        Some(j) => string_arg(j, "key").unwrap_or_default(),
        None => field.name.as_str().to_snake_case(),
    };
    if key.is_empty() {
        return Err(SchemaError::mapping(coord, "@json(key:) cannot be empty"));
    }
    Ok(FieldSource::Json { key })
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
    let is_object = schema
        .get_object(field.ty.inner_named_type().as_str())
        .is_some();
    if !is_object {
        return Err(SchemaError::mapping(
            coord,
            "a root field returns a type with @view (or a list of one), or has @sql(expr: ...)",
        ));
    }
    Ok(RootField::Rows(collection(
        schema,
        coord,
        &field.ty,
        &field.arguments,
    )?))
}

fn collection(
    schema: &Schema,
    coord: &str,
    ty: &Type,
    args: &[Node<InputValueDefinition>],
) -> Result<Collection, SchemaError> {
    let list = match ty {
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
    let mut roles = IndexMap::new();
    for arg in args {
        let acoord = format!("{coord}({}:)", arg.name);
        let role = arg_role(schema, &acoord, arg)?;
        if !list && !matches!(role, ArgRole::Filter(_)) {
            return Err(SchemaError::mapping(
                acoord,
                "limit, offset and orderBy only apply to list fields",
            ));
        }
        roles.insert(arg.name.to_string(), role);
    }
    Ok(Collection {
        target: ty.inner_named_type().to_string(),
        list,
        non_null: ty.is_non_null(),
        join: None,
        args: roles,
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
) -> Result<ArgRole, SchemaError> {
    if let Some(f) = arg.directives.get("filter") {
        let t = target(coord, f)?.unwrap_or(Target::Column(ident(
            coord,
            "column",
            arg.name.as_str().to_snake_case(),
        )?));
        return Ok(ArgRole::Filter(t));
    }
    let named = arg.ty.inner_named_type().as_str();
    match arg.name.as_str() {
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
                keys.insert(vname.to_string(), SortKey { target: t, desc });
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
