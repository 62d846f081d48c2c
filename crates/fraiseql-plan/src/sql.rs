//! SQL text for one root field: `json_build_object` per object, `json_agg` per list, relations and
//! `@sql` fields as correlated subqueries, so the whole tree is one statement.

use apollo_compiler::executable::Field;
use apollo_compiler::Node;
use fraiseql_schema::{
    quote_ident, quote_literal, ArgRole, Catalog, Collection, Embedded, FieldSource, ObjectMapping,
    Target, TypeMapping,
};

use crate::collect::Cx;
use crate::error::PlanError;
use crate::values::{
    arg, arg_enums, arg_json, arg_text, check_sizes, given_by_client, scalar_text,
};
use crate::{
    Access, CallKind, FieldCall, PlanLimits, Projected, ProjectedField, Projection, RootKind,
    SqlPlan,
};

/// `json_build_object` takes at most 100 arguments: 50 key/value pairs.
const MAX_PAIRS: usize = 50;

/// What a selection is read from.
pub(crate) enum Obj<'c> {
    /// A row of a view, by its alias.
    Row { ty: &'c TypeMapping, alias: String },
    /// A JSON object of a type without a view: a `jsonb` expression.
    Json { ty: &'c ObjectMapping, expr: String },
}

impl<'c> Obj<'c> {
    fn type_name(&self) -> &'c str {
        match self {
            Obj::Row { ty, .. } => &ty.name,
            Obj::Json { ty, .. } => &ty.name,
        }
    }

    fn fields(&self) -> &'c indexmap::IndexMap<String, FieldSource> {
        match self {
            Obj::Row { ty, .. } => &ty.fields,
            Obj::Json { ty, .. } => &ty.fields,
        }
    }

    /// The JSON value under `key` of the row's `data` or of the object.
    fn json(&self, key: &str) -> String {
        match self {
            Obj::Row { ty, alias } => format!(
                "{alias}.{}->{}",
                quote_ident(&ty.data_column),
                quote_literal(key)
            ),
            Obj::Json { expr, .. } => format!("{expr}->{}", quote_literal(key)),
        }
    }

    /// What `{parent}` stands for in `@sql` and what a resolver's marker carries.
    fn parent(&self) -> String {
        match self {
            Obj::Row { alias, .. } => alias.clone(),
            Obj::Json { expr, .. } => expr.clone(),
        }
    }

    /// The value of `column` (a view column, or a key of the object) as JSON.
    fn lookup_json(&self, column: &str) -> String {
        match self {
            Obj::Row { alias, .. } => format!("to_json({alias}.{})", quote_ident(column)),
            Obj::Json { expr, .. } => format!("{expr}->{}", quote_literal(column)),
        }
    }
}

/// `value_text` (SQL text) in the type of column `column` of `view`, typed through the view's
/// row type: comparisons with the column keep its type and can use its index.
pub(crate) fn typed(view: &str, column: &str, value_text: &str) -> String {
    format!(
        "(json_populate_record(NULL::{view}, json_build_object({}, {value_text}))).{}",
        quote_literal(column),
        quote_ident(column)
    )
}

/// A `LIMIT`, `OFFSET` or page size in the statement's text: the one kind of request value that
/// is not a bind parameter. It is an integer the planner parsed and bounded itself (`int_arg`), so
/// nothing of the client's text reaches the SQL. Why not a parameter: PostgreSQL estimates a
/// `LIMIT $n` as "10% of the rows" in a generic plan, which then always costs more than a custom
/// one, so a prepared statement with one is planned again at every execution. For the keyset
/// page of the benchmark that planning (0.3 ms) cost more than running the statement; with the
/// bound in the text the generic plan is kept after five executions. Plans are cached per
/// variables already (`Planner::plan_cached`), so a page size given as a variable costs no more.
pub(crate) fn row_bound(n: i64) -> String {
    n.to_string()
}

/// Where the rows of one collection come from, before it is rendered as a list or a single object.
pub(crate) struct Source {
    pub(crate) view: String,
    pub(crate) alias: String,
    /// Join, filters and `where`, ANDed.
    pub(crate) conditions: Vec<String>,
    order: Vec<String>,
    /// The sort keys chosen (`orderBy`), for connections' keyset paging.
    pub(crate) keys: Vec<fraiseql_schema::SortKey>,
    /// The `LIMIT` (always set on lists): an integer literal, see [`row_bound`].
    pub(crate) limit: Option<String>,
    offset: Option<String>,
    /// Most rows it yields per parent row.
    rows: u64,
}

impl Source {
    pub(crate) fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// `FROM` clause for an aggregate over the rows (a subquery when rows are ordered or paged).
    fn rows_clause(&self) -> String {
        if self.order.is_empty() && self.limit.is_none() && self.offset.is_none() {
            return format!("{} {}{}", self.view, self.alias, self.where_clause());
        }
        let mut s = format!(
            "(SELECT * FROM {} {}{}",
            self.view,
            self.alias,
            self.where_clause()
        );
        if !self.order.is_empty() {
            s.push_str(" ORDER BY ");
            s.push_str(&self.order.join(", "));
        }
        if let Some(l) = &self.limit {
            s.push_str(" LIMIT ");
            s.push_str(l);
        }
        if let Some(o) = &self.offset {
            s.push_str(" OFFSET ");
            s.push_str(o);
        }
        s.push_str(") ");
        s.push_str(&self.alias);
        s
    }

    /// `FROM` clause for at most one row.
    fn one_row_clause(&self) -> String {
        format!(
            "{} {}{} LIMIT 1",
            self.view,
            self.alias,
            self.where_clause()
        )
    }
}

pub(crate) struct Builder<'c, 'a> {
    pub(crate) cx: &'c Cx<'a>,
    pub(crate) catalog: &'c Catalog,
    pub(crate) limits: PlanLimits,
    params: Vec<String>,
    aliases: usize,
    pub(crate) path: Vec<String>,
    pub(crate) access: &'c dyn Access,
    pub(crate) denied: Vec<Vec<String>>,
    calls: Vec<FieldCall>,
    /// Rows the enclosing levels may produce (the product of their limits).
    pub(crate) scale: u64,
    /// The database the statement runs on: relations to views elsewhere become calls.
    pub(crate) database: String,
    /// The `@view` types read (for the result cache's invalidation).
    reads: Vec<String>,
}

fn target_expr(alias: &str, ty: &TypeMapping, t: &Target, as_text: bool) -> String {
    match t {
        Target::Column(c) => format!("{alias}.{}", quote_ident(c)),
        Target::Key(k) => format!(
            "{alias}.{}{}{}",
            quote_ident(&ty.data_column),
            if as_text { "->>" } else { "->" },
            quote_literal(k)
        ),
    }
}

impl<'c, 'a> Builder<'c, 'a> {
    pub(crate) fn new(
        cx: &'c Cx<'a>,
        catalog: &'c Catalog,
        limits: PlanLimits,
        access: &'c dyn Access,
        path: Vec<String>,
    ) -> Self {
        Self {
            cx,
            catalog,
            limits,
            params: Vec::new(),
            aliases: 0,
            path,
            access,
            denied: Vec::new(),
            calls: Vec::new(),
            scale: 1,
            database: fraiseql_schema::DEFAULT_DATABASE.to_owned(),
            reads: Vec::new(),
        }
    }

    /// Notes that the statement reads `type_name`'s view.
    pub(crate) fn read(&mut self, type_name: String) {
        if !self.reads.contains(&type_name) {
            self.reads.push(type_name);
        }
    }

    /// Plans for a statement on `database`.
    pub(crate) fn on(mut self, database: &str) -> Self {
        database.clone_into(&mut self.database);
        self
    }

    /// Counts `per_parent` rows for each row of the enclosing levels, against `[limits] max_rows`.
    pub(crate) fn count_rows(&mut self, per_parent: u64) -> Result<(), PlanError> {
        // Shared by every root field of the operation.
        let rows = self
            .cx
            .rows
            .get()
            .saturating_add(self.scale.saturating_mul(per_parent));
        self.cx.rows.set(rows);
        if rows > self.limits.max_rows {
            return Err(PlanError::TooComplex(format!(
                "the operation may return more than {} rows (the product of nested list limits), above [limits] max_rows; ask for fewer rows with smaller `limit` arguments",
                self.limits.max_rows
            )));
        }
        Ok(())
    }

    /// Refuses a filter or ordering on data the caller may not read: a field of `ty` reading the
    /// same column or JSON key (or the argument's namesake field) is denied by `[rbac]`.
    fn guard(&self, ty: &TypeMapping, t: &Target, argument: &str) -> Result<(), PlanError> {
        let wanted = match t {
            Target::Column(c) | Target::Key(c) => c.as_str(),
        };
        for (fname, src) in &ty.fields {
            let reads = match src {
                FieldSource::Json { key } => key == wanted,
                FieldSource::Column { name } => name == wanted,
                _ => false,
            } || fname == argument;
            if reads && !self.access.allows(&ty.name, fname) {
                return Err(PlanError::Forbidden {
                    message: format!(
                        "argument `{argument}` filters or orders on `{}.{fname}`, which you are not allowed to read",
                        ty.name
                    ),
                    path: self.path.clone(),
                });
            }
        }
        Ok(())
    }

    /// Every argument of `field` as JSON: defaults applied, a single value given for a list
    /// argument wrapped in a list (input coercion), sizes checked against the limits.
    pub(crate) fn args_json(
        &self,
        field: &Node<Field>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, PlanError> {
        let mut out = serde_json::Map::new();
        for def in &field.definition.arguments {
            let name = def.name.as_str();
            let a = arg(field, name, self.cx.variables);
            if matches!(a, crate::values::Arg::Absent) {
                continue;
            }
            let mut json = arg_json(a, self.cx.variables);
            if def.ty.is_list() && !json.is_array() && !json.is_null() {
                json = serde_json::Value::Array(vec![json]);
            }
            check_sizes(
                &json,
                self.limits.max_string_length,
                self.limits.max_list_length,
                name,
            )
            .map_err(|m| self.bad(m))?;
            out.insert(name.to_owned(), json);
        }
        Ok(out)
    }

    /// The selection of an object type whose values come from Rust code (`None` for leaves).
    pub(crate) fn projection(
        &mut self,
        type_name: &str,
        group: &[&'a Node<Field>],
    ) -> Result<Option<Projection>, PlanError> {
        match self.cx.schema.types.get(type_name) {
            Some(t) if t.is_leaf() => return Ok(None),
            Some(apollo_compiler::schema::ExtendedType::Object(_)) => {}
            _ => {
                return Err(PlanError::unsupported(format!(
                    "values of `{type_name}` computed by a resolver cannot be selected (only scalars, enums and object types)"
                )))
            }
        }
        let grouped = self
            .cx
            .collect(type_name, group.iter().map(|f| &f.selection_set))?;
        let mut fields = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            let name = nodes[0].name.as_str();
            self.path.push(key.clone());
            let source = if name == "__typename" {
                Projected::Typename(type_name.to_owned())
            } else if !self.access.allows(type_name, name) {
                // [rbac] holds for values computed in Rust as for SQL: null and FORBIDDEN.
                self.denied.push(self.path.clone());
                Projected::Denied
            } else {
                let inner = nodes[0].definition.ty.inner_named_type().as_str();
                Projected::Field {
                    name: name.to_owned(),
                    projection: self.projection(inner, &nodes)?,
                }
            };
            self.path.pop();
            fields.push(ProjectedField { key, source });
        }
        Ok(Some(Projection { fields }))
    }

    /// The statement reading back rows of `ty` by the keys the mutation just returned (kept in
    /// the transaction's `fraiseql.keys`), with the client's selection, in the order returned.
    /// It takes no key parameter, so it can be sent together with the mutation.
    pub(crate) fn readback(
        mut self,
        ty: &'c TypeMapping,
        list: bool,
        non_null: bool,
        group: &[&'a Node<Field>],
    ) -> Result<(SqlPlan, Vec<Vec<String>>), PlanError> {
        ty.database.clone_into(&mut self.database);
        let alias = self.alias();
        let key_col = format!("{alias}.{}", quote_ident(&ty.key_column));
        let obj = self.object(
            &Obj::Row {
                ty,
                alias: alias.clone(),
            },
            group,
        )?;
        let keys = fraiseql_schema::returned_keys(&ty.view.to_string(), &ty.key_column);
        let sql = match list {
            true => format!(
                "SELECT coalesce(json_agg({obj} ORDER BY array_position({keys}, {key_col})), '[]'::json)::text FROM {} {alias} WHERE {key_col} = ANY({keys})",
                ty.view
            ),
            false => format!(
                "SELECT {obj}::text FROM {} {alias} WHERE {key_col} = ANY({keys}) LIMIT 1",
                ty.view
            ),
        };
        Ok((
            SqlPlan {
                database: ty.database.clone(),
                sql,
                params: self.params,
                nullable: !non_null,
                calls: self.calls,
                marker: crate::marker_key(self.limits.marker_nonce),
                reads: self.reads,
            },
            self.denied,
        ))
    }

    /// The statement reading the rows of a subscription's entity changed by a batch of events:
    /// `$1` (left empty here, filled per batch) is the JSON array of their keys as text; it
    /// answers a JSON array with one element per key, in order: the row with the selection, or
    /// `null` where no row is visible (another tenant's, deleted, filtered out by the
    /// subscription's arguments or by row-level security).
    pub(crate) fn changed_rows(
        mut self,
        c: &Collection,
        group: &[&'a Node<Field>],
    ) -> Result<(SqlPlan, Vec<Vec<String>>), PlanError> {
        let ty = self.mapping(&c.target)?;
        ty.database.clone_into(&mut self.database);
        let keys = self.param(String::new());
        let e = self.alias();
        let k = self.alias();
        let alias = self.alias();
        let mut source = self.source(c, ty, alias, group[0], None)?;
        // The key is typed in the outer query, so inside the look-up it is a plain value: under
        // row-level security PostgreSQL uses an index only for leakproof conditions (see
        // `entities.rs`).
        source.conditions.insert(
            0,
            format!("{}.{} = {k}.v", source.alias, quote_ident(&ty.key_column)),
        );
        let obj = self.object(
            &Obj::Row {
                ty,
                alias: source.alias.clone(),
            },
            group,
        )?;
        let sql = format!(
            "SELECT coalesce(json_agg((SELECT {obj} FROM {}) ORDER BY {e}.n), '[]'::json)::text FROM json_array_elements_text({keys}::json) WITH ORDINALITY AS {e}(v, n) CROSS JOIN LATERAL (SELECT {} AS v OFFSET 0) {k}",
            source.one_row_clause(),
            typed(&ty.view.to_string(), &ty.key_column, &format!("{e}.v"))
        );
        Ok(self.finish(sql, !c.non_null))
    }

    /// The statement `sql` with the parameters and calls gathered while building it.
    pub(crate) fn finish(self, sql: String, nullable: bool) -> (SqlPlan, Vec<Vec<String>>) {
        (
            SqlPlan {
                database: self.database,
                sql,
                params: self.params,
                nullable,
                calls: self.calls,
                marker: crate::marker_key(self.limits.marker_nonce),
                reads: self.reads,
            },
            self.denied,
        )
    }

    pub(crate) fn into_denied(self) -> Vec<Vec<String>> {
        self.denied
    }

    pub(crate) fn alias(&mut self) -> String {
        let a = format!("t{}", self.aliases);
        self.aliases += 1;
        a
    }

    pub(crate) fn param(&mut self, text: String) -> String {
        self.params.push(text);
        format!("${}", self.params.len())
    }

    pub(crate) fn bad(&self, message: String) -> PlanError {
        PlanError::BadArgument {
            message,
            path: self.path.clone(),
        }
    }

    pub(crate) fn mapping(&mut self, name: &str) -> Result<&'c TypeMapping, PlanError> {
        let ty = self
            .catalog
            .type_mapping(name)
            .ok_or_else(|| PlanError::unsupported(format!("type `{name}` has no view")))?;
        self.read(ty.name.clone());
        Ok(ty)
    }

    pub(crate) fn root_sql(self, expr: &str) -> (RootKind, Vec<Vec<String>>) {
        let kind = RootKind::Sql(SqlPlan {
            database: fraiseql_schema::DEFAULT_DATABASE.to_owned(),
            sql: format!("SELECT to_json({expr})::text"),
            params: self.params,
            nullable: true,
            calls: self.calls,
            marker: crate::marker_key(self.limits.marker_nonce),
            reads: self.reads,
        });
        (kind, self.denied)
    }

    pub(crate) fn root_rows(
        mut self,
        c: &Collection,
        group: &[&'a Node<Field>],
    ) -> Result<(RootKind, Vec<Vec<String>>), PlanError> {
        let ty = self.mapping(&c.target)?;
        ty.database.clone_into(&mut self.database);
        if c.connection.is_some() {
            let page = self.connection(c, ty, group, None)?;
            let sql = format!("SELECT {}::text FROM {}", page.json, page.from);
            let (plan, denied) = self.finish(sql, !c.non_null);
            return Ok((RootKind::Sql(plan), denied));
        }
        let alias = self.alias();
        let source = self.source(c, ty, alias, group[0], None)?;
        self.scale = source.rows;
        let obj = self.object(
            &Obj::Row {
                ty,
                alias: source.alias.clone(),
            },
            group,
        )?;
        self.scale = 1;
        let sql = if c.list {
            format!(
                "SELECT coalesce(json_agg({obj}), '[]'::json)::text FROM {}",
                source.rows_clause()
            )
        } else {
            format!("SELECT {obj}::text FROM {}", source.one_row_clause())
        };
        let kind = RootKind::Sql(SqlPlan {
            database: ty.database.clone(),
            sql,
            params: self.params,
            nullable: !c.non_null,
            calls: self.calls,
            marker: crate::marker_key(self.limits.marker_nonce),
            reads: self.reads,
        });
        Ok((kind, self.denied))
    }

    pub(crate) fn int_arg(
        &self,
        name: &str,
        text: Option<String>,
        max: i64,
    ) -> Result<Option<i64>, PlanError> {
        let Some(text) = text else { return Ok(None) };
        let n: i64 = text
            .parse()
            .map_err(|_| self.bad(format!("argument `{name}` must be an integer")))?;
        if n < 0 || n > max {
            return Err(self.bad(format!(
                "argument `{name}` must be between 0 and {max}, got {n}"
            )));
        }
        Ok(Some(n))
    }

    pub(crate) fn source(
        &mut self,
        c: &Collection,
        ty: &'c TypeMapping,
        alias: String,
        field: &Node<Field>,
        parent: Option<String>,
    ) -> Result<Source, PlanError> {
        let mut s = Source {
            view: ty.view.to_string(),
            alias,
            conditions: Vec::new(),
            order: Vec::new(),
            keys: Vec::new(),
            limit: None,
            offset: None,
            rows: 1,
        };
        if let (Some(j), Some(p)) = (&c.join, parent) {
            s.conditions
                .push(format!("{}.{} = {p}", s.alias, quote_ident(&j.references)));
        }
        let vars = self.cx.variables;
        // A list is always bounded: its `limit` (defaults applied, `null` refused), else
        // `[limits] max_limit`.
        let mut limit = self.limits.max_limit;
        for (name, role) in &c.args {
            let a = arg(field, name, vars);
            let client = given_by_client(field, name, vars);
            match role {
                ArgRole::Limit => {
                    if a.is_null() {
                        let default = field
                            .definition
                            .argument_by_name(name)
                            .and_then(|d| d.default_value.as_deref())
                            .filter(|v| !v.is_null());
                        let Some(d) = default else {
                            return Err(self.bad(format!(
                                "argument `{name}` cannot be null; give a number from 0 to {}",
                                self.limits.max_limit
                            )));
                        };
                        if let Some(n) =
                            self.int_arg(name, scalar_text(d, vars), self.limits.max_limit)?
                        {
                            limit = n;
                        }
                    } else if let Some(n) =
                        self.int_arg(name, arg_text(a, vars), self.limits.max_limit)?
                    {
                        limit = n;
                    }
                }
                ArgRole::Offset => {
                    if let Some(n) = self.int_arg(name, arg_text(a, vars), i64::from(i32::MAX))? {
                        // `OFFSET 0` skips nothing: left out.
                        s.offset = (n > 0).then(|| row_bound(n));
                    }
                }
                ArgRole::OrderBy(keys) => {
                    let chosen = if a.is_null() {
                        // `null` asks for no particular order: the schema's default applies.
                        field
                            .definition
                            .argument_by_name(name)
                            .and_then(|d| d.default_value.as_deref())
                            .map(|d| arg_enums(crate::values::Arg::Literal(d), vars))
                            .unwrap_or_default()
                    } else {
                        arg_enums(a, vars)
                    };
                    for v in chosen {
                        let key = keys.get(&v).ok_or_else(|| {
                            self.bad(format!("unknown ordering `{v}` for `{name}`"))
                        })?;
                        if client {
                            self.guard(ty, &key.target, name)?;
                        }
                        let dir = if key.desc { " DESC" } else { "" };
                        s.order.push(format!(
                            "{}{dir}",
                            target_expr(&s.alias, ty, &key.target, false)
                        ));
                        s.keys.push(key.clone());
                    }
                }
                ArgRole::Where => {
                    let value = arg_json(a, vars);
                    if let Some(p) = self.where_predicate(ty, &s.alias, name, &value, client)? {
                        s.conditions.push(p);
                    }
                }
                // Paging a connection: `connection.rs`; grouping: `aggregate.rs`.
                ArgRole::First
                | ArgRole::Last
                | ArgRole::After
                | ArgRole::Before
                | ArgRole::GroupBy
                | ArgRole::Having
                | ArgRole::AggregateOrderBy => {}
                ArgRole::Filter(t) => {
                    if let Some(text) = arg_text(a, vars) {
                        if client {
                            self.guard(ty, t, name)?;
                        }
                        if text.len() > self.limits.max_string_length
                            && text.chars().count() > self.limits.max_string_length
                        {
                            return Err(self.bad(format!(
                                "argument `{name}` holds a string longer than {} characters",
                                self.limits.max_string_length
                            )));
                        }
                        let p = self.param(text);
                        s.conditions
                            .push(format!("{} = {p}", target_expr(&s.alias, ty, t, true)));
                    }
                }
            }
        }
        if c.connection.is_some() {
            // The page size is counted where the page is read.
            return Ok(s);
        }
        if c.list {
            s.limit = Some(row_bound(limit));
            s.rows = u64::try_from(limit).unwrap_or(0);
        }
        self.count_rows(s.rows)?;
        Ok(s)
    }

    /// The filter of argument `name` at response path `path` (a copy of [`Self::path`]: the
    /// filter is planned while the builder is borrowed), under the operation's `[limits]` and
    /// filter budget.
    pub(crate) fn filter<'p>(
        &self,
        path: &'p [String],
        name: &'p str,
        guarded: bool,
    ) -> crate::filter::Filter<'p>
    where
        'c: 'p,
    {
        crate::filter::Filter {
            catalog: self.catalog,
            access: self.access,
            bounds: crate::filter::Bounds {
                max_depth: self.limits.max_depth,
                max_list: self.limits.max_list_length,
                max_string: self.limits.max_string_length,
                max_nodes: self.limits.max_filter_nodes,
            },
            nodes: &self.cx.filter_nodes,
            path,
            argument: name,
            guarded,
        }
    }

    /// The predicate of `where` argument `name` (value `value`) on row `alias` of `ty`.
    pub(crate) fn where_predicate(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        name: &str,
        value: &serde_json::Value,
        guarded: bool,
    ) -> Result<Option<String>, PlanError> {
        let path = self.path.clone();
        self.filter(&path, name, guarded)
            .predicate(self, ty, alias, value)
    }

    /// `json_build_object(...)` for one object, the fields of every field node in `group` merged.
    pub(crate) fn object(
        &mut self,
        obj: &Obj<'c>,
        group: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let grouped = self
            .cx
            .collect(obj.type_name(), group.iter().map(|f| &f.selection_set))?;
        let mut pairs = Vec::with_capacity(grouped.len());
        for (key, fields) in grouped {
            self.path.push(key.clone());
            let expr = self.field_expr(obj, &fields)?;
            self.path.pop();
            pairs.push((key, expr));
        }
        json_object(&pairs)
    }
}

/// `json_build_object` of `(response key, SQL)` pairs; past [`MAX_PAIRS`], a row's columns.
pub(crate) fn json_object(pairs: &[(String, String)]) -> Result<String, PlanError> {
    {
        if pairs.len() <= MAX_PAIRS {
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, e)| format!("{}, {e}", quote_literal(k)))
                .collect();
            return Ok(format!("json_build_object({})", body.join(", ")));
        }
        // Wide selections: a row's columns keep their order and have no argument limit.
        if let Some((k, _)) = pairs.iter().find(|(k, _)| k.len() > 63) {
            return Err(PlanError::unsupported(format!(
                "response key `{k}` is longer than 63 bytes in a selection of more than {MAX_PAIRS} fields"
            )));
        }
        let cols: Vec<String> = pairs
            .iter()
            .map(|(k, e)| format!("{e} AS {}", quote_ident(k)))
            .collect();
        Ok(format!(
            "(SELECT row_to_json(r) FROM (SELECT {}) r)",
            cols.join(", ")
        ))
    }
}

impl<'c, 'a> Builder<'c, 'a> {
    fn field_expr(
        &mut self,
        obj: &Obj<'c>,
        fields: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let name = fields[0].name.as_str();
        let type_name = obj.type_name();
        if name == "__typename" {
            return Ok(format!("{}::text", quote_literal(type_name)));
        }
        if !self.access.allows(type_name, name) {
            self.denied.push(self.path.clone());
            return Ok("NULL".to_owned());
        }
        let src = obj.fields().get(name).ok_or_else(|| {
            PlanError::unsupported(format!("field `{type_name}.{name}` has no mapping"))
        })?;
        Ok(match src {
            FieldSource::Json { key } => obj.json(key),
            FieldSource::Column { name } => match obj {
                Obj::Row { alias, .. } => format!("{alias}.{}", quote_ident(name)),
                Obj::Json { .. } => {
                    return Err(PlanError::unsupported(format!(
                        "`{type_name}.{name}` reads a column, but `{type_name}` has no view"
                    )))
                }
            },
            FieldSource::Sql { expr, .. } => {
                // The expression may read any table: a cached answer holding it is outdated by
                // any mutation of the tenant.
                self.read(crate::ANY_ENTITY.to_owned());
                format!("({})", expr.replace("{parent}", &obj.parent()))
            }
            FieldSource::Resolver => {
                // So may a Rust resolver.
                self.read(crate::ANY_ENTITY.to_owned());
                let inner = fields[0].definition.ty.inner_named_type().as_str();
                let call = FieldCall {
                    kind: CallKind::Resolver,
                    type_name: type_name.to_owned(),
                    field: name.to_owned(),
                    args: self.args_json(fields[0])?,
                    projection: self.projection(inner, fields)?,
                    path: self.path.clone(),
                };
                let row = match obj {
                    Obj::Row { alias, .. } => format!("to_jsonb({alias})"),
                    Obj::Json { expr, .. } => expr.clone(),
                };
                self.marker(call, &row)
            }
            FieldSource::Embedded(e) => self.embedded(e, obj.json(&e.key), fields)?,
            FieldSource::Relation(c) => {
                let target = self.mapping(&c.target)?;
                let Some(join) = &c.join else {
                    return Err(PlanError::unsupported(format!(
                        "`{type_name}.{name}` has no join"
                    )));
                };
                if target.database != self.database {
                    return self.federated(obj, c, target, &join.column, fields);
                }
                let view = target.view.to_string();
                let parent = match obj {
                    Obj::Row { alias, .. } => format!("{alias}.{}", quote_ident(&join.column)),
                    Obj::Json { expr, .. } => typed(
                        &view,
                        &join.references,
                        &format!("{expr}->>{}", quote_literal(&join.column)),
                    ),
                };
                if c.connection.is_some() {
                    let page = self.connection(c, target, fields, Some(parent))?;
                    return Ok(format!("(SELECT {} FROM {})", page.json, page.from));
                }
                let a = self.alias();
                let source = self.source(c, target, a, fields[0], Some(parent))?;
                let outer = self.scale;
                self.scale = outer.saturating_mul(source.rows);
                let inner = Obj::Row {
                    ty: target,
                    alias: source.alias.clone(),
                };
                let o = self.object(&inner, fields);
                self.scale = outer;
                let o = o?;
                if c.list {
                    format!(
                        "(SELECT coalesce(json_agg({o}), '[]'::json) FROM {})",
                        source.rows_clause()
                    )
                } else {
                    format!("(SELECT {o} FROM {})", source.one_row_clause())
                }
            }
        })
    }

    /// The marker standing for `call`'s value, carrying `row`.
    fn marker(&mut self, call: FieldCall, row: &str) -> String {
        self.calls.push(call);
        format!(
            "json_build_object({}, {}, 'row', {row})",
            quote_literal(&crate::marker_key(self.limits.marker_nonce)),
            self.calls.len() - 1
        )
    }

    /// A JSON object (or list of them) of a type without a view, found at `value`: projected
    /// onto the selection, `null` where it is not an object (or not a list).
    fn embedded(
        &mut self,
        e: &Embedded,
        value: String,
        fields: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let ty = self.catalog.objects.get(&e.target).ok_or_else(|| {
            PlanError::unsupported(format!("type `{}` is not read from JSON", e.target))
        })?;
        let v = self.alias();
        if !e.list {
            let o = self.object(
                &Obj::Json {
                    ty,
                    expr: format!("{v}.v"),
                },
                fields,
            )?;
            return Ok(format!(
                "(SELECT CASE WHEN jsonb_typeof({v}.v) = 'object' THEN {o} END FROM (SELECT ({value})::jsonb AS v) {v})"
            ));
        }
        let item = self.alias();
        let o = self.object(
            &Obj::Json {
                ty,
                expr: format!("{item}.v"),
            },
            fields,
        )?;
        Ok(format!(
            "(SELECT CASE WHEN jsonb_typeof({v}.v) = 'array' THEN (SELECT coalesce(json_agg(CASE WHEN jsonb_typeof({item}.v) = 'object' THEN {o} END ORDER BY {item}.n), '[]'::json) FROM jsonb_array_elements({v}.v) WITH ORDINALITY AS {item}(v, n)) END FROM (SELECT ({value})::jsonb AS v) {v})"
        ))
    }

    /// A relation to a view in another database: a marker carrying the parent's lookup value,
    /// and the statement that answers every marker of this place at once over there.
    fn federated(
        &mut self,
        obj: &Obj<'c>,
        c: &Collection,
        target: &'c TypeMapping,
        lookup: &str,
        fields: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        if c.connection.is_some() {
            return Err(PlanError::unsupported(format!(
                "`{}.{}` is a connection over another database's view; connections read the parent's database only",
                obj.type_name(),
                fields[0].name
            )));
        }
        let mut sub = Builder::new(
            self.cx,
            self.catalog,
            self.limits,
            self.access,
            self.path.clone(),
        )
        .on(&target.database);
        // $1: the lookup values, filled in when the markers are known.
        sub.params.push(String::new());
        sub.scale = self.scale;
        let keys = sub.alias();
        let view = target.view.to_string();
        let references = c.join.as_ref().map_or("", |j| j.references.as_str());
        let parent = typed(&view, references, &format!("{keys}.v"));
        let a = sub.alias();
        let source = sub.source(c, target, a, fields[0], Some(parent))?;
        sub.scale = self.scale.saturating_mul(source.rows);
        let o = sub.object(
            &Obj::Row {
                ty: target,
                alias: source.alias.clone(),
            },
            fields,
        )?;
        let value = if c.list {
            format!(
                "(SELECT coalesce(json_agg({o}), '[]'::json) FROM {})",
                source.rows_clause()
            )
        } else {
            format!("(SELECT {o} FROM {})", source.one_row_clause())
        };
        let sql = format!(
            "SELECT coalesce(json_agg({value} ORDER BY {keys}.n), '[]'::json)::text FROM json_array_elements_text($1::json) WITH ORDINALITY AS {keys}(v, n)"
        );
        self.denied.append(&mut sub.denied);
        for r in sub.reads {
            self.read(r);
        }
        let plan = SqlPlan {
            database: target.database.clone(),
            sql,
            params: sub.params,
            nullable: !c.non_null,
            calls: sub.calls,
            marker: crate::marker_key(self.limits.marker_nonce),
            reads: Vec::new(),
        };
        let call = FieldCall {
            kind: CallKind::Federated(Box::new(plan)),
            type_name: obj.type_name().to_owned(),
            field: fields[0].name.to_string(),
            args: serde_json::Map::new(),
            projection: None,
            path: self.path.clone(),
        };
        let row = obj.lookup_json(lookup);
        Ok(self.marker(call, &row))
    }
}

impl crate::filter::Sink for Builder<'_, '_> {
    fn param(&mut self, text: String) -> String {
        Builder::param(self, text)
    }

    fn alias(&mut self) -> String {
        Builder::alias(self)
    }

    fn read(&mut self, type_name: &str) {
        Builder::read(self, type_name.to_owned());
    }
}
