//! Start-up check of the catalog against a live database: every view, column and `@sql`
//! expression must exist and have a type that fits, so mistakes surface before the first request.

use std::collections::HashMap;

use fraiseql_schema::{
    ArgRole, Catalog, Collection, FieldSource, Filterable, MutationAction, Output, RootField,
    Target, TypeMapping, ValueKind, ValueSource, ViewColumns,
};
use tokio_postgres::GenericClient;

/// One problem found in the schema against the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{coordinate}: {message}")]
pub struct CatalogProblem {
    /// `Type.field` or `Type`.
    pub coordinate: String,
    /// What does not match.
    pub message: String,
}

fn problem(coordinate: impl Into<String>, message: impl Into<String>) -> CatalogProblem {
    CatalogProblem {
        coordinate: coordinate.into(),
        message: message.into(),
    }
}

/// Columns of a relation: name -> type name.
async fn columns<C: GenericClient>(
    client: &C,
    view: &str,
) -> Result<Option<HashMap<String, String>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&view],
        )
        .await?;
    if rows.is_empty() {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&view])
            .await?
            .get(0);
        if !exists {
            return Ok(None);
        }
    }
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

fn scalar_fits(scalar: &str, pg: &str) -> bool {
    match scalar {
        "Int" => matches!(pg, "integer" | "bigint" | "smallint"),
        "Float" => {
            matches!(
                pg,
                "double precision" | "real" | "numeric" | "integer" | "bigint" | "smallint"
            ) || pg.starts_with("numeric")
        }
        "Boolean" => pg == "boolean",
        "String" | "ID" => matches!(pg, "text" | "uuid" | "name") || pg.starts_with("character"),
        _ => true, // custom scalars (DateTime, JSON, ...) accept any type
    }
}

/// Checks every type of `database` in `catalog` against `client`'s database.
pub async fn check<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
) -> Result<Vec<CatalogProblem>, tokio_postgres::Error> {
    Ok(check_and_find(client, catalog, database).await?.0)
}

/// Like [`check`], also returning the columns of `database`'s views, by type: what
/// `Catalog::columns` holds once the server has started.
pub async fn check_and_find<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
) -> Result<(Vec<CatalogProblem>, Vec<(String, ViewColumns)>), tokio_postgres::Error> {
    let mut problems = Vec::new();
    let cols = views(client, catalog, database, &mut problems).await?;
    let c = Columns(cols);
    type_fields(client, catalog, database, &c, &mut problems).await?;
    root_fields(client, catalog, database, &c, &mut problems).await?;
    foreign_relations(catalog, database, &c, &mut problems);
    object_sql(client, catalog, database, &mut problems).await?;
    entity_keys(catalog, database, &c, &mut problems);
    mutations(client, catalog, database, &c, &mut problems).await?;
    Ok((problems, found_columns(catalog, database, &c)))
}

/// The columns of each view of `database`, and the fields read from a `data` key that a column
/// of the same name and a fitting type holds (`createdAt` -> `created_at`, a timestamp): a
/// `where` on such a field compares the column, so an index on it serves. The view is taken
/// to hold the same value in both (the convention the example's views follow).
fn found_columns(catalog: &Catalog, database: &str, c: &Columns) -> Vec<(String, ViewColumns)> {
    let mut out = Vec::new();
    for ty in catalog.types.values().filter(|t| t.database == database) {
        let Some(cols) = c.0.get(&ty.name) else {
            continue;
        };
        let mut v = ViewColumns::default();
        let mut names: Vec<&String> = cols.keys().collect();
        names.sort();
        for name in names {
            v.types.insert(name.clone(), cols[name].clone());
        }
        for (field, f) in &ty.filters {
            let Filterable::Value {
                kind,
                source: ValueSource::Key(key),
            } = f
            else {
                continue;
            };
            if *key == ty.data_column {
                continue;
            }
            if cols.get(key).is_some_and(|pg| column_fits(*kind, pg)) {
                v.fields.insert(field.clone(), key.clone());
            }
        }
        out.push((ty.name.clone(), v));
    }
    out
}

/// Whether a column of PostgreSQL type `pg` can stand for a field of kind `kind`.
fn column_fits(kind: ValueKind, pg: &str) -> bool {
    let base = pg.split('(').next().unwrap_or(pg).trim();
    let integer = matches!(base, "integer" | "bigint" | "smallint");
    let text = matches!(
        base,
        "text" | "character varying" | "character" | "citext" | "name"
    );
    match kind {
        ValueKind::Int | ValueKind::Float => {
            integer || matches!(base, "numeric" | "real" | "double precision")
        }
        ValueKind::Boolean => base == "boolean",
        ValueKind::DateTime => base.starts_with("timestamp"),
        ValueKind::Date => base == "date",
        ValueKind::String => text,
        ValueKind::Id => text || integer || base == "uuid",
        ValueKind::Enum | ValueKind::Other => !matches!(base, "json" | "jsonb"),
    }
}

/// The columns of the views of `database`'s types, by type name.
struct Columns(HashMap<String, HashMap<String, String>>);

impl Columns {
    fn col(&self, ty: &str, name: &str) -> Option<String> {
        self.0.get(ty).and_then(|c| c.get(name)).cloned()
    }

    fn has_view(&self, ty: &str) -> bool {
        self.0.contains_key(ty)
    }
}

/// Every view exists and has its JSON data column; their columns, by type.
async fn views<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
    problems: &mut Vec<CatalogProblem>,
) -> Result<HashMap<String, HashMap<String, String>>, tokio_postgres::Error> {
    let mut cols: HashMap<String, HashMap<String, String>> = HashMap::new();
    for ty in catalog.types.values().filter(|t| t.database == database) {
        let view = ty.view.to_string();
        match columns(client, &view).await? {
            None => problems.push(problem(&ty.name, format!("view {view} does not exist"))),
            Some(c) => {
                match c.get(&ty.data_column).map(String::as_str) {
                    Some("jsonb" | "json") => {}
                    Some(other) => problems.push(problem(
                        &ty.name,
                        format!(
                            "column {view}.{} is {other}, not json or jsonb",
                            ty.data_column
                        ),
                    )),
                    None => problems.push(problem(
                        &ty.name,
                        format!(
                            "view {view} has no column `{}` (the JSON data column)",
                            ty.data_column
                        ),
                    )),
                }
                cols.insert(ty.name.clone(), c);
            }
        }
    }
    Ok(cols)
}

/// Columns, `@sql` expressions and relations of the types' fields.
async fn type_fields<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
    c: &Columns,
    problems: &mut Vec<CatalogProblem>,
) -> Result<(), tokio_postgres::Error> {
    let col = |ty: &str, name: &str| c.col(ty, name);
    for ty in catalog
        .types
        .values()
        .filter(|t| t.database == database && c.has_view(&t.name))
    {
        for (fname, src) in &ty.fields {
            let coord = format!("{}.{fname}", ty.name);
            match src {
                FieldSource::Json { .. } | FieldSource::Resolver | FieldSource::Embedded(_) => {}
                FieldSource::Column { name } => {
                    if col(&ty.name, name).is_none() {
                        problems.push(problem(
                            &coord,
                            format!("view {} has no column `{name}`", ty.view),
                        ));
                    }
                }
                FieldSource::Sql { expr, scalar } => {
                    let sql = format!(
                        "SELECT ({}) FROM {} t0 LIMIT 0",
                        expr.replace("{parent}", "t0"),
                        ty.view
                    );
                    check_sql(client, &coord, &sql, scalar, problems).await?;
                }
                FieldSource::Relation(c) => {
                    check_collection(catalog, Some(ty), c, &coord, &col, problems);
                }
            }
        }
    }
    Ok(())
}

/// Root fields: their collections, `@sql` expressions and resolvers' key columns.
async fn root_fields<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
    c: &Columns,
    problems: &mut Vec<CatalogProblem>,
) -> Result<(), tokio_postgres::Error> {
    let col = |ty: &str, name: &str| c.col(ty, name);
    for (fname, root) in &catalog.queries {
        let coord = format!("Query.{fname}");
        match root {
            RootField::Rows(coll) | RootField::Aggregate(coll) => {
                let here = catalog
                    .types
                    .get(&coll.target)
                    .is_some_and(|t| t.database == database);
                if here && c.has_view(&coll.target) {
                    check_collection(catalog, None, coll, &coord, &col, problems);
                }
            }
            RootField::Sql { expr, scalar } if database == fraiseql_schema::DEFAULT_DATABASE => {
                check_sql(
                    client,
                    &coord,
                    &format!("SELECT ({expr}) LIMIT 0"),
                    scalar,
                    problems,
                )
                .await?;
            }
            RootField::Sql { .. } | RootField::Entities | RootField::Service => {}
            RootField::Resolver(out) => check_key(catalog, &coord, out, &col, problems),
        }
    }
    Ok(())
}

/// Relations into this database from elsewhere (another database's views, JSON objects): their
/// target side is checked here.
fn foreign_relations(
    catalog: &Catalog,
    database: &str,
    c: &Columns,
    problems: &mut Vec<CatalogProblem>,
) {
    let col = |ty: &str, name: &str| c.col(ty, name);
    let foreign = catalog
        .types
        .values()
        .filter(|t| t.database != database)
        .map(|t| (&t.name, &t.fields))
        .chain(catalog.objects.values().map(|o| (&o.name, &o.fields)));
    for (name, fields) in foreign {
        for (fname, src) in fields {
            if let FieldSource::Relation(rel) = src {
                let here = catalog
                    .types
                    .get(&rel.target)
                    .is_some_and(|t| t.database == database);
                if here && c.has_view(&rel.target) {
                    let coord = format!("{name}.{fname}");
                    check_collection(catalog, None, rel, &coord, &col, problems);
                    if let (Some(j), Some(tm)) = (&rel.join, catalog.types.get(&rel.target)) {
                        if col(&tm.name, &j.references).is_none() {
                            problems.push(problem(
                                &coord,
                                format!("view {} has no column `{}`", tm.view, j.references),
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// `@sql` of types without a view: `{parent}` is a JSON object.
async fn object_sql<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
    problems: &mut Vec<CatalogProblem>,
) -> Result<(), tokio_postgres::Error> {
    for o in catalog.objects.values().filter(|o| o.database == database) {
        for (fname, src) in &o.fields {
            if let FieldSource::Sql { expr, scalar } = src {
                let sql = format!(
                    "SELECT ({}) LIMIT 0",
                    expr.replace("{parent}", "('{}'::jsonb)")
                );
                check_sql(
                    client,
                    &format!("{}.{fname}", o.name),
                    &sql,
                    scalar,
                    problems,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Entity keys read from columns: the columns exist.
fn entity_keys(
    catalog: &Catalog,
    database: &str,
    cols: &Columns,
    problems: &mut Vec<CatalogProblem>,
) {
    if let Some(f) = &catalog.federation {
        for (name, e) in &f.entities {
            let Some(tm) = catalog.types.get(name).filter(|t| t.database == database) else {
                continue;
            };
            for k in &e.keys {
                for leaf in &k.leaves {
                    if let fraiseql_schema::KeyLookup::Column(c) = &leaf.lookup {
                        if cols.has_view(name) && cols.col(name, c).is_none() {
                            problems.push(problem(
                                format!("{name} @key(fields: {:?})", k.fields),
                                format!("view {} has no column `{c}`", tm.view),
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Mutations: the key column of what they return, and their statements (prepared).
async fn mutations<C: GenericClient>(
    client: &C,
    catalog: &Catalog,
    database: &str,
    c: &Columns,
    problems: &mut Vec<CatalogProblem>,
) -> Result<(), tokio_postgres::Error> {
    let col = |ty: &str, name: &str| c.col(ty, name);
    for (fname, m) in &catalog.mutations {
        let coord = format!("Mutation.{fname}");
        check_key(catalog, &coord, &m.output, &col, problems);
        if let MutationAction::Sql {
            database: db, sql, ..
        } = &m.action
        {
            if db != database {
                continue;
            }
            // Preparing parses and plans the statement (tables, columns, functions, parameter
            // types) without running it.
            if let Err(e) = client.prepare(sql).await {
                let Some(d) = e.as_db_error() else {
                    return Err(e);
                };
                problems.push(problem(
                    &coord,
                    format!("@mutation statement does not prepare: {}", d.message()),
                ));
            }
        }
    }
    Ok(())
}

/// Entities returned by keys are read back by the type's key column: it must exist.
fn check_key(
    catalog: &Catalog,
    coord: &str,
    out: &Output,
    col: &dyn Fn(&str, &str) -> Option<String>,
    problems: &mut Vec<CatalogProblem>,
) {
    if let Output::Entity { target, .. } = out {
        if let Some(tm) = catalog.types.get(target) {
            if col(target, &tm.key_column).is_none() && col(target, &tm.data_column).is_some() {
                problems.push(problem(
                    coord,
                    format!(
                        "returns `{target}`, read back by its key column `{}`, which view {} does not have (set @view(key:))",
                        tm.key_column, tm.view
                    ),
                ));
            }
        }
    }
}

async fn check_sql<C: GenericClient>(
    client: &C,
    coord: &str,
    sql: &str,
    scalar: &str,
    problems: &mut Vec<CatalogProblem>,
) -> Result<(), tokio_postgres::Error> {
    match client.prepare(sql).await {
        Ok(stmt) => {
            let pg = stmt
                .columns()
                .first()
                .map(|c| c.type_().name().to_owned())
                .unwrap_or_default();
            let pretty = match pg.as_str() {
                "int4" => "integer",
                "int8" => "bigint",
                "int2" => "smallint",
                "float8" => "double precision",
                "float4" => "real",
                "bool" => "boolean",
                "varchar" => "character varying",
                other => other,
            };
            if !scalar_fits(scalar, pretty) {
                problems.push(problem(
                    coord,
                    format!("@sql expression has type {pretty}, which does not fit {scalar}"),
                ));
            }
        }
        Err(e) => {
            let reason = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            if e.as_db_error().is_none() {
                return Err(e);
            }
            problems.push(problem(
                coord,
                format!("@sql expression does not run: {reason}"),
            ));
        }
    }
    Ok(())
}

/// Checks a root field (`parent` None) or a relation from `parent`: join columns and arguments.
fn check_collection(
    catalog: &Catalog,
    parent: Option<&TypeMapping>,
    c: &Collection,
    coord: &str,
    col: &dyn Fn(&str, &str) -> Option<String>,
    problems: &mut Vec<CatalogProblem>,
) {
    let Some(tm) = catalog.types.get(&c.target) else {
        return;
    };
    if let (Some(j), Some(parent)) = (&c.join, parent) {
        if col(&parent.name, &j.column).is_none() {
            problems.push(problem(
                coord,
                format!("view {} has no column `{}`", parent.view, j.column),
            ));
        }
        // Across databases, the target side is checked with the target's database.
        if tm.database != parent.database {
            return;
        }
        if col(&tm.name, &j.references).is_none() {
            problems.push(problem(
                coord,
                format!("view {} has no column `{}`", tm.view, j.references),
            ));
        }
    }
    let mut check_target = |what: &str, t: &Target| {
        if let Target::Column(name) = t {
            if col(&tm.name, name).is_none() {
                problems.push(problem(
                    format!("{coord}{what}"),
                    format!("view {} has no column `{name}`", tm.view),
                ));
            }
        }
    };
    for (arg, role) in &c.args {
        match role {
            ArgRole::Filter(t) => check_target(&format!("({arg}:)"), t),
            ArgRole::OrderBy(keys) => {
                for (v, k) in keys {
                    check_target(&format!("({arg}: {v})"), &k.target);
                }
            }
            ArgRole::Limit
            | ArgRole::Offset
            | ArgRole::Where
            | ArgRole::First
            | ArgRole::Last
            | ArgRole::After
            | ArgRole::Before
            | ArgRole::GroupBy
            | ArgRole::Having
            | ArgRole::AggregateOrderBy => {}
        }
    }
}
