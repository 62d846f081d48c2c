//! What the engine adds to the SDL before it is validated: the `where` filters and the Relay
//! types. Every list field of a `@view` type (a root field, a `@relation` or `@federated` list)
//! gets `where: <T>WhereInput` unless it declares an argument named `where`; each `@view` type
//! gets its `<T>WhereInput` (a `<Scalar>Filter` per scalar or enum field, the target's
//! `<U>WhereInput` per relation in the same database, `_and`, `_or`, `_not`); each `@connection`
//! field returning `<T>Connection` gets `<T>Connection`, `<T>Edge`, `PageInfo` (once) and the
//! arguments `first`, `after`, `last`, `before`, `where` it does not declare; each `@aggregate`
//! root field returning `[<T>Aggregate!]!` gets the types of `aggregates.rs` and the arguments
//! `where`, `groupBy`, `having`, `orderBy`, `limit` it does not declare.
//!
//! It works on the document as written (before validation), so the rules here mirror what
//! `lower.rs` maps; `lower.rs` checks that each `<T>WhereInput` lists exactly the fields it can
//! filter on.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use apollo_compiler::ast::{
    Definition, Directive, Document, FieldDefinition, InputValueDefinition, OperationType, Type,
};
use apollo_compiler::{Name, Node};

use crate::aggregates;
use crate::catalog::{where_input_name, ValueKind, AGGREGATE, DEFAULT_DATABASE};
use crate::error::SchemaError;

/// The suffix of a connection type's name: `OrganizationConnection`.
pub(crate) const CONNECTION: &str = "Connection";

/// The comparison operators of every `<Scalar>Filter` but `BooleanFilter`.
const COMPARISONS: [&str; 6] = ["eq", "neq", "gt", "gte", "lt", "lte"];

/// The string operators of `StringFilter`: each takes a `String`.
pub(crate) const STRING_OPERATORS: [&str; 8] = [
    "like",
    "ilike",
    "contains",
    "icontains",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
];

/// `where` combinators.
pub(crate) const COMBINATORS: [&str; 3] = ["_and", "_or", "_not"];

/// An object type as written: its definition and extensions merged.
#[derive(Default)]
struct Object {
    /// `@view(database:)` when it has a view.
    view: Option<String>,
    fields: Vec<Node<FieldDefinition>>,
}

/// What the generation needs to know about the document.
struct Doc {
    objects: BTreeMap<String, Object>,
    scalars: HashSet<String>,
    enums: HashSet<String>,
    defined: HashSet<String>,
    query: String,
    roots: HashSet<String>,
}

fn directive_string(d: &Directive, name: &str) -> Option<String> {
    d.specified_argument_by_name(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

impl Doc {
    fn read(doc: &Document) -> Self {
        let mut objects: BTreeMap<String, Object> = BTreeMap::new();
        let (mut scalars, mut enums, mut defined) =
            (HashSet::new(), HashSet::new(), HashSet::new());
        let mut roots: Vec<(OperationType, String)> = Vec::new();
        for def in &doc.definitions {
            if let Some(name) = def.name() {
                defined.insert(name.to_string());
            }
            let (name, directives, fields) = match def {
                Definition::ObjectTypeDefinition(o) => (&o.name, &o.directives, &o.fields),
                Definition::ObjectTypeExtension(o) => (&o.name, &o.directives, &o.fields),
                Definition::ScalarTypeDefinition(s) => {
                    scalars.insert(s.name.to_string());
                    continue;
                }
                Definition::EnumTypeDefinition(e) => {
                    enums.insert(e.name.to_string());
                    continue;
                }
                Definition::SchemaDefinition(s) => {
                    for op in &s.root_operations {
                        roots.push((op.0, op.1.to_string()));
                    }
                    continue;
                }
                Definition::SchemaExtension(s) => {
                    for op in &s.root_operations {
                        roots.push((op.0, op.1.to_string()));
                    }
                    continue;
                }
                _ => continue,
            };
            let o = objects.entry(name.to_string()).or_default();
            if let Some(v) = directives.get("view") {
                o.view = Some(
                    directive_string(v, "database").unwrap_or_else(|| DEFAULT_DATABASE.to_owned()),
                );
            }
            o.fields.extend(fields.iter().cloned());
        }
        let root = |op: OperationType, default: &str| {
            roots
                .iter()
                .rev()
                .find(|(o, _)| *o == op)
                .map_or_else(|| default.to_owned(), |(_, n)| n.clone())
        };
        Self {
            query: root(OperationType::Query, "Query"),
            roots: [
                root(OperationType::Mutation, "Mutation"),
                root(OperationType::Subscription, "Subscription"),
            ]
            .into_iter()
            .collect(),
            objects,
            scalars,
            enums,
            defined,
        }
    }

    fn view(&self, name: &str) -> Option<&str> {
        self.objects.get(name).and_then(|o| o.view.as_deref())
    }

    /// A scalar or enum that a `<Scalar>Filter` compares (`JSON` is not).
    fn filterable_leaf(&self, name: &str) -> bool {
        name != "JSON"
            && (matches!(name, "String" | "Int" | "Float" | "Boolean" | "ID")
                || self.scalars.contains(name)
                || self.enums.contains(name))
    }
}

/// The `@view` type whose rows field `f` reads: the `T` of `@connection ... : TConnection`, else
/// the field's named type.
fn rows_type<'a>(doc: &Doc, f: &'a FieldDefinition) -> Option<&'a str> {
    let named = f.ty.inner_named_type().as_str();
    let target = if f.directives.has("connection") {
        named.strip_suffix(CONNECTION)?
    } else if f.directives.has("aggregate") {
        named.strip_suffix(AGGREGATE)?
    } else {
        named
    };
    doc.view(target).map(|_| target)
}

/// The `where` entries of view type `name`: (field, input type), in field order.
fn filter_fields(
    doc: &Doc,
    name: &str,
    obj: &Object,
    resolvers: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in &obj.fields {
        if resolvers.contains(&format!("{name}.{}", f.name)) {
            continue;
        }
        let named = f.ty.inner_named_type().as_str();
        if f.directives.has("relation") || f.directives.has("federated") {
            // A relation is filtered by EXISTS when it is joined in the same statement.
            if let Some(target) = rows_type(doc, f) {
                if doc.view(target) == obj.view.as_deref() {
                    out.push((f.name.to_string(), where_input_name(target)));
                }
            }
            continue;
        }
        if !f.ty.is_list() && doc.filterable_leaf(named) {
            out.push((f.name.to_string(), format!("{named}Filter")));
        }
    }
    out
}

fn name(s: &str) -> Result<Name, SchemaError> {
    Name::new(s).map_err(|_| SchemaError::mapping(s, "not a GraphQL name"))
}

fn argument(
    arg: &str,
    ty: Type,
    description: &str,
) -> Result<Node<InputValueDefinition>, SchemaError> {
    Ok(Node::new(InputValueDefinition {
        description: Some(description.into()),
        name: name(arg)?,
        ty: Node::new(ty),
        default_value: None,
        directives: Default::default(),
    }))
}

/// Adds the arguments `field` (reading rows of `target`) gets and does not declare: `where`,
/// and on connections the paging arguments.
fn add_arguments(
    field: &mut Node<FieldDefinition>,
    target: &str,
    connection: bool,
) -> Result<(), SchemaError> {
    let has = |f: &FieldDefinition, a: &str| f.arguments.iter().any(|x| x.name == a);
    let mut new = Vec::new();
    if connection {
        for (a, ty, what) in [
            (
                "first",
                "Int",
                "The first rows (after `after`, when given).",
            ),
            (
                "after",
                "String",
                "A cursor: the page starts after its row.",
            ),
            (
                "last",
                "Int",
                "The last rows (before `before`, when given).",
            ),
            (
                "before",
                "String",
                "A cursor: the page ends before its row.",
            ),
        ] {
            if !has(field, a) {
                new.push(argument(a, Type::Named(name(ty)?), what)?);
            }
        }
    }
    if !has(field, "where") {
        new.push(argument(
            "where",
            Type::Named(name(&where_input_name(target))?),
            "Only the rows this filter matches.",
        )?);
    }
    field.make_mut().arguments.extend(new);
    Ok(())
}

/// Adds the arguments an `@aggregate` field over `target` gets and does not declare: `where`,
/// `groupBy`, `having`, `orderBy`, `limit`.
fn add_aggregate_arguments(
    field: &mut Node<FieldDefinition>,
    target: &str,
) -> Result<(), SchemaError> {
    let has = |f: &FieldDefinition, a: &str| f.arguments.iter().any(|x| x.name == a);
    let named = |n: String| -> Result<Type, SchemaError> { Ok(Type::Named(name(&n)?)) };
    let order = Type::List(Box::new(Type::NonNullNamed(name(
        &aggregates::order_by_name(target),
    )?)));
    let mut new = Vec::new();
    for (a, ty, what) in [
        (
            "where",
            named(where_input_name(target))?,
            "Only the rows this filter matches are grouped.",
        ),
        (
            "groupBy",
            named(aggregates::group_by_name(target))?,
            "The keys rows are grouped by (none: one group of every row).",
        ),
        (
            "having",
            named(aggregates::having_name(target))?,
            "Only the groups whose aggregates this filter matches.",
        ),
        (
            "orderBy",
            order,
            "The groups' order (then by their keys, ascending).",
        ),
        (
            "limit",
            named("Int".to_owned())?,
            "At most this many groups (at most `[limits] max_limit`, the default).",
        ),
    ] {
        if !has(field, a) {
            new.push(argument(a, ty, what)?);
        }
    }
    field.make_mut().arguments.extend(new);
    Ok(())
}

/// The `@view` types that need generated object types.
#[derive(Default)]
struct Needed {
    connections: BTreeSet<String>,
    aggregates: BTreeSet<String>,
}

/// Adds `where`, the paging and the aggregate arguments to the fields that take them; returns
/// the `@view` types that need connection and aggregate types.
fn augment_fields(
    doc: &mut Document,
    info: &Doc,
    resolvers: &BTreeSet<String>,
) -> Result<Needed, SchemaError> {
    let mut needed = Needed::default();
    for def in &mut doc.definitions {
        let (type_name, fields) = match def {
            Definition::ObjectTypeDefinition(o) => {
                let o = o.make_mut();
                (o.name.to_string(), &mut o.fields)
            }
            Definition::ObjectTypeExtension(o) => {
                let o = o.make_mut();
                (o.name.to_string(), &mut o.fields)
            }
            _ => continue,
        };
        if info.roots.contains(&type_name) {
            // A subscription field (`@event`) filters the changed rows it delivers with
            // `where` too, as a list field filters its rows.
            for field in fields.iter_mut() {
                let named = field.ty.inner_named_type().as_str().to_owned();
                if field.directives.has("event") && info.view(&named).is_some() {
                    add_arguments(field, &named, false)?;
                }
            }
            continue;
        }
        let root = type_name == info.query;
        for field in fields.iter_mut() {
            let coord = format!("{type_name}.{}", field.name);
            if resolvers.contains(&coord) {
                continue;
            }
            if field.directives.has("aggregate") {
                let named = field.ty.inner_named_type().as_str();
                let target = named
                    .strip_suffix(AGGREGATE)
                    .filter(|t| info.view(t).is_some() && field.ty.is_list() && !field.ty.item_type().is_list())
                    .ok_or_else(|| {
                        SchemaError::mapping(
                            &coord,
                            format!("@aggregate fields return `[<T>{AGGREGATE}!]!` where T is a type with @view; `{}` is not one", field.ty),
                        )
                    })?
                    .to_owned();
                if !root || field.directives.has("connection") || field.directives.has("sql") {
                    return Err(SchemaError::mapping(
                        &coord,
                        "@aggregate applies to root query fields (without @connection or @sql)",
                    ));
                }
                add_aggregate_arguments(field, &target)?;
                needed.aggregates.insert(target);
                continue;
            }
            let connection = field.directives.has("connection");
            let joined = field.directives.has("relation") || field.directives.has("federated");
            if connection {
                let named = field.ty.inner_named_type().as_str();
                let target = named
                    .strip_suffix(CONNECTION)
                    .filter(|t| info.view(t).is_some() && !field.ty.is_list())
                    .ok_or_else(|| {
                        SchemaError::mapping(
                            &coord,
                            format!("@connection fields return `<T>{CONNECTION}` where T is a type with @view; `{}` is not one", field.ty),
                        )
                    })?
                    .to_owned();
                if !root && !joined {
                    return Err(SchemaError::mapping(
                        &coord,
                        "@connection applies to root query fields and to @relation / @federated fields",
                    ));
                }
                add_arguments(field, &target, true)?;
                needed.connections.insert(target);
                continue;
            }
            let reads_rows = (root && !field.directives.has("sql")) || joined;
            let named = field.ty.inner_named_type().as_str().to_owned();
            if reads_rows && field.ty.is_list() && info.view(&named).is_some() {
                add_arguments(field, &named, false)?;
            }
        }
    }
    Ok(needed)
}

/// The operators of a `<Scalar>Filter` over `scalar` of kind `kind`: (name, GraphQL type).
pub(crate) fn operators(scalar: &str, kind: ValueKind) -> Vec<(&'static str, String)> {
    let mut ops: Vec<(&'static str, String)> = Vec::new();
    if kind == ValueKind::Boolean {
        ops.push(("eq", scalar.to_owned()));
        ops.push(("neq", scalar.to_owned()));
    } else {
        ops.extend(COMPARISONS.iter().map(|op| (*op, scalar.to_owned())));
        ops.push(("in", format!("[{scalar}!]")));
        ops.push(("nin", format!("[{scalar}!]")));
    }
    ops.push(("isnull", "Boolean".to_owned()));
    if kind.is_string() {
        ops.extend(STRING_OPERATORS.iter().map(|op| (*op, "String".to_owned())));
    }
    ops
}

fn describe(op: &str) -> &'static str {
    match op {
        "eq" => "Equal to.",
        "neq" => "Not equal to (rows where the value is null do not match).",
        "gt" => "Greater than.",
        "gte" => "Greater than or equal to.",
        "lt" => "Less than.",
        "lte" => "Less than or equal to.",
        "in" => "Equal to one of these.",
        "nin" => "Equal to none of these (rows where the value is null do not match).",
        "isnull" => "true: the value is null; false: it is not.",
        "like" => "SQL LIKE pattern (`%` any characters, `_` one).",
        "ilike" => "SQL ILIKE pattern (LIKE ignoring case).",
        "contains" => "Contains this text.",
        "icontains" => "Contains this text, ignoring case.",
        "startswith" => "Starts with this text.",
        "istartswith" => "Starts with this text, ignoring case.",
        "endswith" => "Ends with this text.",
        "iendswith" => "Ends with this text, ignoring case.",
        _ => "",
    }
}

/// The SDL of the generated types.
fn generated_sdl(
    info: &Doc,
    resolvers: &BTreeSet<String>,
    needed: &Needed,
    shareable: Option<&str>,
) -> String {
    let mut sdl = String::new();
    let mut leaves: BTreeSet<String> = BTreeSet::new();
    let share = shareable.map(|s| format!(" @{s}")).unwrap_or_default();
    for (name, obj) in info.objects.iter().filter(|(_, o)| o.view.is_some()) {
        if needed.aggregates.contains(name) {
            let fields: Vec<(String, String, ValueKind)> =
                filter_fields(info, name, obj, resolvers)
                    .into_iter()
                    .filter_map(|(f, ty)| {
                        let leaf = ty.strip_suffix("Filter")?.to_owned();
                        let kind = ValueKind::of(&leaf, info.enums.contains(&leaf));
                        Some((f, leaf, kind))
                    })
                    .collect();
            sdl.push_str(&aggregates::sdl(name, &fields, &share, &mut leaves));
        }
        let input = where_input_name(name);
        sdl.push_str(&format!(
            "\"Filters `{name}` rows: every entry given must hold (AND).\"\ninput {input} {{\n"
        ));
        for (field, ty) in filter_fields(info, name, obj, resolvers) {
            if let Some(leaf) = ty.strip_suffix("Filter") {
                leaves.insert(leaf.to_owned());
                sdl.push_str(&format!("  \"Compares `{field}`.\"\n  {field}: {ty}\n"));
            } else {
                sdl.push_str(&format!(
                    "  \"At least one related row matches.\"\n  {field}: {ty}\n"
                ));
            }
        }
        sdl.push_str(&format!(
            "  \"Every one of these filters holds.\"\n  _and: [{input}!]\n  \"At least one of these filters holds.\"\n  _or: [{input}!]\n  \"This filter does not hold.\"\n  _not: {input}\n}}\n"
        ));
    }
    for leaf in &leaves {
        let kind = ValueKind::of(leaf, info.enums.contains(leaf));
        sdl.push_str(&format!(
            "\"Compares a `{leaf}` value: every operator given must hold.\"\ninput {leaf}Filter {{\n"
        ));
        for (op, ty) in operators(leaf, kind) {
            sdl.push_str(&format!("  \"{}\"\n  {op}: {ty}\n", describe(op)));
        }
        sdl.push_str("}\n");
    }
    if !needed.aggregates.is_empty() {
        sdl.push_str(&aggregates::direction_sdl());
    }
    for t in &needed.connections {
        sdl.push_str(&format!(
            "\"A page of `{t}` rows (a Relay connection).\"\ntype {t}{CONNECTION}{share} {{\n  \"The page's rows, each with its cursor.\"\n  edges: [{t}Edge!]!\n  \"Where the page stands.\"\n  pageInfo: PageInfo!\n  \"How many rows match `where` on every page (counted only when selected).\"\n  totalCount: Int!\n}}\n\"A row of a `{t}` page and its cursor.\"\ntype {t}Edge{share} {{\n  \"Opaque: pass it as `after` or `before`.\"\n  cursor: String!\n  \"The row.\"\n  node: {t}!\n}}\n"
        ));
    }
    if !needed.connections.is_empty() {
        sdl.push_str(&format!(
            "\"Where a page of a connection stands.\"\ntype PageInfo{share} {{\n  \"Rows follow this page.\"\n  hasNextPage: Boolean!\n  \"Rows precede this page.\"\n  hasPreviousPage: Boolean!\n  \"The cursor of the page's first row.\"\n  startCursor: String\n  \"The cursor of the page's last row.\"\n  endCursor: String\n}}\n"
        ));
    }
    sdl
}

/// Adds the `where` and connection arguments to `doc`'s fields and the generated types to its
/// definitions. `shareable`: the name `@shareable` goes by in a subgraph (the generated object
/// types may be defined by several subgraphs).
pub(crate) fn augment(
    doc: &mut Document,
    resolvers: &BTreeSet<String>,
    shareable: Option<&str>,
) -> Result<(), SchemaError> {
    let info = Doc::read(doc);
    let needed = augment_fields(doc, &info, resolvers)?;
    let sdl = generated_sdl(&info, resolvers, &needed, shareable);
    if sdl.is_empty() {
        return Ok(());
    }
    let generated = Document::parse(sdl, "fraiseql-generated.graphql")
        .map_err(|e| SchemaError::Graphql(e.errors.to_string()))?;
    for def in generated.definitions {
        if let Some(n) = def.name() {
            if info.defined.contains(n.as_str()) {
                return Err(SchemaError::mapping(
                    n.as_str(),
                    "this type is generated by the engine (`where` filters, @connection, @aggregate); rename yours",
                ));
            }
        }
        doc.definitions.push(def);
    }
    Ok(())
}
