//! SQL text for one root field: `json_build_object` per object, `json_agg` per list, relations and
//! `@sql` fields as correlated subqueries, so the whole tree is one statement.

use apollo_compiler::executable::Field;
use apollo_compiler::Node;
use fraiseql_schema::{
    quote_ident, quote_literal, ArgRole, Catalog, Collection, FieldSource, Target, TypeMapping,
};

use crate::collect::Cx;
use crate::error::PlanError;
use crate::values::{enum_list, scalar_text};
use crate::{Access, PlanLimits, RootKind, SqlPlan};

/// `json_build_object` takes at most 100 arguments: 50 key/value pairs.
const MAX_PAIRS: usize = 50;

/// Where the rows of one collection come from, before it is rendered as a list or a single object.
struct Source {
    view: String,
    alias: String,
    conditions: Vec<String>,
    order: Vec<String>,
    limit: Option<String>,
    offset: Option<String>,
}

impl Source {
    fn where_clause(&self) -> String {
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
    cx: &'c Cx<'a>,
    catalog: &'c Catalog,
    limits: PlanLimits,
    params: Vec<String>,
    aliases: usize,
    path: Vec<String>,
    access: &'c dyn Access,
    denied: Vec<Vec<String>>,
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
        }
    }

    fn alias(&mut self) -> String {
        let a = format!("t{}", self.aliases);
        self.aliases += 1;
        a
    }

    fn param(&mut self, text: String) -> String {
        self.params.push(text);
        format!("${}", self.params.len())
    }

    fn bad(&self, message: String) -> PlanError {
        PlanError::BadArgument {
            message,
            path: self.path.clone(),
        }
    }

    fn mapping(&self, name: &str) -> Result<&'c TypeMapping, PlanError> {
        self.catalog
            .type_mapping(name)
            .ok_or_else(|| PlanError::unsupported(format!("type `{name}` has no view")))
    }

    pub(crate) fn root_sql(self, expr: &str) -> (RootKind, Vec<Vec<String>>) {
        let kind = RootKind::Sql(SqlPlan {
            database: fraiseql_schema::DEFAULT_DATABASE.to_owned(),
            sql: format!("SELECT to_json({expr})::text"),
            params: self.params,
            nullable: true,
        });
        (kind, self.denied)
    }

    pub(crate) fn root_rows(
        mut self,
        c: &Collection,
        group: &[&'a Node<Field>],
    ) -> Result<(RootKind, Vec<Vec<String>>), PlanError> {
        let ty = self.mapping(&c.target)?;
        let alias = self.alias();
        let source = self.source(c, ty, alias, group[0], None)?;
        let obj = self.object(ty, &source.alias, group)?;
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
        });
        Ok((kind, self.denied))
    }

    fn int_arg(
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

    fn source(
        &mut self,
        c: &Collection,
        ty: &TypeMapping,
        alias: String,
        field: &Node<Field>,
        parent: Option<&str>,
    ) -> Result<Source, PlanError> {
        let mut s = Source {
            view: ty.view.to_string(),
            alias,
            conditions: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
        };
        if let (Some(j), Some(p)) = (&c.join, parent) {
            s.conditions.push(format!(
                "{}.{} = {p}.{}",
                s.alias,
                quote_ident(&j.references),
                quote_ident(&j.column)
            ));
        }
        for (name, role) in &c.args {
            let Ok(value) = field.argument_by_name(name) else {
                continue;
            };
            let vars = self.cx.variables;
            match role {
                ArgRole::Limit => {
                    if let Some(n) =
                        self.int_arg(name, scalar_text(value, vars), self.limits.max_limit)?
                    {
                        s.limit = Some(self.param(n.to_string()));
                    }
                }
                ArgRole::Offset => {
                    if let Some(n) =
                        self.int_arg(name, scalar_text(value, vars), i64::from(i32::MAX))?
                    {
                        s.offset = Some(self.param(n.to_string()));
                    }
                }
                ArgRole::OrderBy(keys) => {
                    for v in enum_list(value, vars) {
                        let key = keys.get(&v).ok_or_else(|| {
                            self.bad(format!("unknown ordering `{v}` for `{name}`"))
                        })?;
                        let dir = if key.desc { " DESC" } else { "" };
                        s.order.push(format!(
                            "{}{dir}",
                            target_expr(&s.alias, ty, &key.target, false)
                        ));
                    }
                }
                ArgRole::Filter(t) => {
                    if let Some(text) = scalar_text(value, vars) {
                        let p = self.param(text);
                        s.conditions
                            .push(format!("{} = {p}", target_expr(&s.alias, ty, t, true)));
                    }
                }
            }
        }
        Ok(s)
    }

    /// `json_build_object(...)` for one object, the fields of every field node in `group` merged.
    fn object(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        group: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let grouped = self
            .cx
            .collect(&ty.name, group.iter().map(|f| &f.selection_set))?;
        let mut pairs = Vec::with_capacity(grouped.len());
        for (key, fields) in grouped {
            self.path.push(key.clone());
            let expr = self.field_expr(ty, alias, &fields)?;
            self.path.pop();
            pairs.push((key, expr));
        }
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

    fn field_expr(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        fields: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let name = fields[0].name.as_str();
        if name == "__typename" {
            return Ok(format!("{}::text", quote_literal(&ty.name)));
        }
        if !self.access.allows(&ty.name, name) {
            self.denied.push(self.path.clone());
            return Ok("NULL".to_owned());
        }
        let src = ty.fields.get(name).ok_or_else(|| {
            PlanError::unsupported(format!("field `{}.{name}` has no mapping", ty.name))
        })?;
        Ok(match src {
            FieldSource::Json { key } => format!(
                "{alias}.{}->{}",
                quote_ident(&ty.data_column),
                quote_literal(key)
            ),
            FieldSource::Column { name } => format!("{alias}.{}", quote_ident(name)),
            FieldSource::Sql { expr, .. } => format!("({})", expr.replace("{parent}", alias)),
            FieldSource::Relation(c) => {
                let target = self.mapping(&c.target)?;
                let a = self.alias();
                let source = self.source(c, target, a, fields[0], Some(alias))?;
                let obj = self.object(target, &source.alias, fields)?;
                if c.list {
                    format!(
                        "(SELECT coalesce(json_agg({obj}), '[]'::json) FROM {})",
                        source.rows_clause()
                    )
                } else {
                    format!("(SELECT {obj} FROM {})", source.one_row_clause())
                }
            }
        })
    }
}
