//! `where` arguments: a `<T>WhereInput` value (JSON, variables substituted) over a `@view` type
//! becomes ONE SQL predicate on a row alias, every value a bind parameter. Pure: it needs the
//! catalog, the caller's access and something that hands out parameters and aliases ([`Sink`]),
//! so lists, connections and aggregates share it.
//!
//! - keys of one object are ANDed; `_and: [..]`, `_or: [..]`, `_not: {..}` combine; `{}` and
//!   `_and: []` hold for every row, `_or: []` and `_not: {}` for none, an operator given `null`
//!   is not applied;
//! - a field read from a column (declared, or a `data` key whose same-named column the engine
//!   found at start-up) is compared as the column: the parameter takes the column's type, so a
//!   B-tree index on it serves; a `data` key is compared as `(data->>'key')::<type>` (text for
//!   strings, ids and enums), which an expression index can serve; `@sql` fields compare their
//!   expression;
//! - a relation matches when one of its rows does: `EXISTS` over the target's view, joined as
//!   the field reads it;
//! - a field the caller may not read (`[rbac]`) is `FORBIDDEN`; entries count against the
//!   operation's budget, nesting against `max_depth`, `in` lists against `max_list_length`.
//!
//! The same rules filter values a statement computes ([`Scope::Values`]): an aggregate's
//! `having` compares `count(*)` and `sum(...)` with the operators of `where`.

use std::cell::Cell;

use fraiseql_schema::{
    quote_ident, quote_literal, Catalog, Filterable, TypeMapping, ValueKind, ValueSource,
};
use indexmap::IndexMap;
use serde_json::Value;

use crate::error::PlanError;
use crate::values::param_text;
use crate::Access;

/// The statement a predicate goes into: it numbers parameters and aliases, and learns what is
/// read (for the result cache).
pub(crate) trait Sink {
    /// Binds `text` as the next parameter; returns its placeholder (`$3`).
    fn param(&mut self, text: String) -> String;
    /// A fresh table alias.
    fn alias(&mut self) -> String;
    /// The statement reads `type_name`'s view (a relation filter), or anything (`@sql`: `*`).
    fn read(&mut self, type_name: &str);
}

/// What a filter may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Deepest nesting of input objects (`[limits] max_depth`).
    pub max_depth: usize,
    /// Longest `in` / `nin` list and `_and` / `_or` list (`[limits] max_list_length`).
    pub max_list: usize,
    /// Longest string value, in characters (`[limits] max_string_length`).
    pub max_string: usize,
    /// Most entries (keys of input objects) in all the operation's filters.
    pub max_nodes: usize,
}

/// One `where` argument being planned.
pub(crate) struct Filter<'c> {
    pub catalog: &'c Catalog,
    pub access: &'c dyn Access,
    pub bounds: Bounds,
    /// Entries counted so far in the operation (all its filters share the budget).
    pub nodes: &'c Cell<usize>,
    /// Response path of the field, for errors.
    pub path: &'c [String],
    /// The argument's name, for messages.
    pub argument: &'c str,
    /// Whether `[rbac]` applies (the client chose the value, not the schema's default).
    pub guarded: bool,
}

/// What the keys of a filter name.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'s> {
    /// The fields and relations of a view's row, by its alias.
    Row { ty: &'s TypeMapping, alias: &'s str },
    /// Values the statement computes (an aggregate's `having`), by name.
    Values {
        /// The input type's name, for messages.
        input: &'s str,
        /// The `@view` type whose fields they are computed from (for `[rbac]`).
        type_name: &'s str,
        values: &'s IndexMap<String, Computed>,
    },
}

impl Scope<'_> {
    fn input(&self) -> String {
        match self {
            Scope::Row { ty, .. } => ty.where_input(),
            Scope::Values { input, .. } => (*input).to_owned(),
        }
    }
}

/// A value a statement computes, filtered by name ([`Scope::Values`]).
#[derive(Debug, Clone)]
pub(crate) struct Computed {
    /// Its SQL.
    pub sql: String,
    /// How it is typed: the operators that apply.
    pub kind: ValueKind,
    /// The field of the `@view` type it is computed from (`None`: `count`), which the caller
    /// must be allowed to read.
    pub field: Option<String>,
}

const COMPARISONS: [(&str, &str); 6] = [
    ("eq", "="),
    ("neq", "<>"),
    ("gt", ">"),
    ("gte", ">="),
    ("lt", "<"),
    ("lte", "<="),
];

fn conjunction(mut parts: Vec<String>) -> Option<String> {
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(format!("({})", parts.join(" AND "))),
    }
}

/// Escapes LIKE's wildcards (`%`, `_`) and its escape character (`\`).
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Filter<'_> {
    /// The predicate `value` (a `<ty>WhereInput`) puts on row `alias`; `None` when it holds for
    /// every row.
    pub(crate) fn predicate(
        &self,
        sink: &mut dyn Sink,
        ty: &TypeMapping,
        alias: &str,
        value: &Value,
    ) -> Result<Option<String>, PlanError> {
        let mut at = vec![self.argument.to_owned()];
        self.object(sink, Scope::Row { ty, alias }, value, &mut at, 1)
    }

    /// The predicate `value` puts on the values of `scope` (an aggregate's `having`); `None`
    /// when it holds for every group.
    pub(crate) fn predicate_in(
        &self,
        sink: &mut dyn Sink,
        scope: Scope<'_>,
        value: &Value,
    ) -> Result<Option<String>, PlanError> {
        let mut at = vec![self.argument.to_owned()];
        self.object(sink, scope, value, &mut at, 1)
    }

    fn bad(&self, at: &[String], message: impl std::fmt::Display) -> PlanError {
        PlanError::BadArgument {
            message: format!("`{}` {message}", at.join(".")),
            path: self.path.to_vec(),
        }
    }

    /// Counts one entry against the operation's budget (aggregates count their `groupBy` and
    /// `orderBy` entries here too).
    fn count(&self) -> Result<(), PlanError> {
        count_entry(self.nodes, self.bounds.max_nodes)
    }

    fn object(
        &self,
        sink: &mut dyn Sink,
        scope: Scope<'_>,
        value: &Value,
        at: &mut Vec<String>,
        depth: usize,
    ) -> Result<Option<String>, PlanError> {
        if depth > self.bounds.max_depth {
            return Err(PlanError::TooComplex(format!(
                "`{}` nests filters deeper than {} levels ([limits] max_depth)",
                at.join("."),
                self.bounds.max_depth
            )));
        }
        let map = match value {
            Value::Null => return Ok(None),
            Value::Object(map) => map,
            _ => return Err(self.bad(at, format!("must be a {}", scope.input()))),
        };
        let mut parts = Vec::new();
        for (key, v) in map {
            self.count()?;
            at.push(key.clone());
            let part = match key.as_str() {
                _ if v.is_null() => None,
                "_and" => {
                    let items = self.items(sink, scope, v, at, depth)?;
                    conjunction(items.into_iter().flatten().collect())
                }
                "_or" => {
                    // Every item is kept, a filter holding for every row as TRUE (PostgreSQL
                    // folds it): each parameter bound stays referenced.
                    let items: Vec<String> = self
                        .items(sink, scope, v, at, depth)?
                        .into_iter()
                        .map(|p| p.unwrap_or_else(|| "TRUE".to_owned()))
                        .collect();
                    Some(if items.is_empty() {
                        "FALSE".to_owned()
                    } else {
                        format!("({})", items.join(" OR "))
                    })
                }
                "_not" => Some(match self.object(sink, scope, v, at, depth + 1)? {
                    None => "FALSE".to_owned(),
                    Some(p) => format!("NOT ({p})"),
                }),
                field => self.field(sink, scope, field, v, at, depth)?,
            };
            at.pop();
            parts.extend(part);
        }
        Ok(conjunction(parts))
    }

    /// The filters of an `_and` / `_or` list (a single object counts as a list of one).
    fn items(
        &self,
        sink: &mut dyn Sink,
        scope: Scope<'_>,
        v: &Value,
        at: &mut Vec<String>,
        depth: usize,
    ) -> Result<Vec<Option<String>>, PlanError> {
        let items: &[Value] = match v {
            Value::Array(items) => items,
            one => std::slice::from_ref(one),
        };
        if items.len() > self.bounds.max_list {
            return Err(self.bad(
                at,
                format!(
                    "holds {} filters; at most {} are accepted ([limits] max_list_length)",
                    items.len(),
                    self.bounds.max_list
                ),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            at.push(i.to_string());
            out.push(self.object(sink, scope, item, at, depth + 1)?);
            at.pop();
        }
        Ok(out)
    }

    fn forbidden(&self, at: &[String], type_name: &str, field: &str) -> PlanError {
        PlanError::Forbidden {
            message: format!(
                "`{}` filters on `{type_name}.{field}`, which you are not allowed to read",
                at.join(".")
            ),
            path: self.path.to_vec(),
        }
    }

    fn field(
        &self,
        sink: &mut dyn Sink,
        scope: Scope<'_>,
        field: &str,
        v: &Value,
        at: &mut Vec<String>,
        depth: usize,
    ) -> Result<Option<String>, PlanError> {
        let (ty, alias) = match scope {
            Scope::Row { ty, alias } => (ty, alias),
            Scope::Values {
                input,
                type_name,
                values,
            } => {
                let Some(c) = values.get(field) else {
                    return Err(self.bad(at, format!("is not a field of {input}")));
                };
                if let Some(f) = &c.field {
                    if self.guarded && !self.access.allows(type_name, f) {
                        return Err(self.forbidden(at, type_name, f));
                    }
                }
                return self.operators(sink, &c.sql, None, c.kind, v, at);
            }
        };
        let Some(filter) = ty.filters.get(field) else {
            return Err(self.bad(
                at,
                format!(
                    "is not a field of {} (it cannot be filtered on)",
                    ty.where_input()
                ),
            ));
        };
        if self.guarded && !self.access.allows(&ty.name, field) {
            return Err(self.forbidden(at, &ty.name, field));
        }
        match filter {
            Filterable::Rows { target, join } => {
                let target = self.catalog.type_mapping(target).ok_or_else(|| {
                    PlanError::unsupported(format!("type `{target}` has no view"))
                })?;
                sink.read(&target.name);
                let a = sink.alias();
                let inner = self.object(
                    sink,
                    Scope::Row {
                        ty: target,
                        alias: &a,
                    },
                    v,
                    at,
                    depth + 1,
                )?;
                let joined = format!(
                    "{a}.{} = {alias}.{}",
                    quote_ident(&join.references),
                    quote_ident(&join.column)
                );
                Ok(Some(format!(
                    "EXISTS (SELECT 1 FROM {} {a} WHERE {joined}{})",
                    target.view,
                    inner.map(|p| format!(" AND {p}")).unwrap_or_default()
                )))
            }
            Filterable::Value { kind, source } => {
                if matches!(source, ValueSource::Sql(_)) {
                    sink.read(crate::ANY_ENTITY);
                }
                let (expr, cast) = value_expr(self.catalog, ty, alias, field, *kind, source);
                self.operators(sink, &expr, cast, *kind, v, at)
            }
        }
    }

    /// The text of one scalar operand.
    fn scalar(&self, at: &[String], v: &Value) -> Result<String, PlanError> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(self.bad(at, "must be a single value")),
        };
        if text.len() > self.bounds.max_string && text.chars().count() > self.bounds.max_string {
            return Err(self.bad(
                at,
                format!(
                    "holds a string longer than {} characters",
                    self.bounds.max_string
                ),
            ));
        }
        Ok(text)
    }

    /// The conditions of a `<Scalar>Filter` (`{gte: .., lt: ..}`) on `expr`.
    fn operators(
        &self,
        sink: &mut dyn Sink,
        expr: &str,
        cast: Option<&str>,
        kind: ValueKind,
        v: &Value,
        at: &mut Vec<String>,
    ) -> Result<Option<String>, PlanError> {
        let Value::Object(ops) = v else {
            return Err(self.bad(at, "must be an input object of operators (`{eq: ...}`)"));
        };
        let cast = cast.map(|c| format!("::{c}")).unwrap_or_default();
        let mut parts = Vec::new();
        for (op, arg) in ops {
            self.count()?;
            at.push(op.clone());
            if arg.is_null() {
                at.pop();
                continue;
            }
            let comparison = COMPARISONS.iter().find(|(name, _)| name == op);
            let part = match op.as_str() {
                _ if kind == ValueKind::Boolean
                    && !matches!(op.as_str(), "eq" | "neq" | "isnull") =>
                {
                    return Err(self.unknown(at, op, kind));
                }
                _ if comparison.is_some() => {
                    let sql = comparison.map_or("=", |(_, s)| *s);
                    let p = sink.param(self.scalar(at, arg)?);
                    format!("{expr} {sql} {p}{cast}")
                }
                "in" | "nin" => {
                    let items: Vec<Value> = match arg {
                        Value::Array(items) => items.clone(),
                        one => vec![one.clone()],
                    };
                    if items.len() > self.bounds.max_list {
                        return Err(self.bad(
                            at,
                            format!(
                                "holds a list of {} items; at most {} are accepted ([limits] max_list_length)",
                                items.len(),
                                self.bounds.max_list
                            ),
                        ));
                    }
                    let mut texts = Vec::with_capacity(items.len());
                    for item in &items {
                        texts.push(Value::String(self.scalar(at, item)?));
                    }
                    let p = sink.param(param_text(&Value::Array(texts)).unwrap_or_default());
                    let array = if cast.is_empty() {
                        String::new()
                    } else {
                        format!("{cast}[]")
                    };
                    if op == "in" {
                        format!("{expr} = ANY({p}{array})")
                    } else {
                        format!("{expr} <> ALL({p}{array})")
                    }
                }
                "isnull" => match arg {
                    Value::Bool(true) => format!("{expr} IS NULL"),
                    Value::Bool(false) => format!("{expr} IS NOT NULL"),
                    _ => return Err(self.bad(at, "must be true or false")),
                },
                string if kind.is_string() => {
                    let text = self.scalar(at, arg)?;
                    let (pattern, sql) = match string {
                        "like" => (text, "LIKE"),
                        "ilike" => (text, "ILIKE"),
                        "contains" => (format!("%{}%", like_literal(&text)), "LIKE"),
                        "icontains" => (format!("%{}%", like_literal(&text)), "ILIKE"),
                        "startswith" => (format!("{}%", like_literal(&text)), "LIKE"),
                        "istartswith" => (format!("{}%", like_literal(&text)), "ILIKE"),
                        "endswith" => (format!("%{}", like_literal(&text)), "LIKE"),
                        "iendswith" => (format!("%{}", like_literal(&text)), "ILIKE"),
                        _ => return Err(self.unknown(at, op, kind)),
                    };
                    let p = sink.param(pattern);
                    format!("{expr} {sql} {p}")
                }
                _ => return Err(self.unknown(at, op, kind)),
            };
            at.pop();
            parts.push(part);
        }
        Ok(conjunction(parts))
    }

    fn unknown(&self, at: &[String], op: &str, kind: ValueKind) -> PlanError {
        self.bad(
            at,
            format!("is not an operator of this filter (`{op}` does not apply to {kind:?} values)"),
        )
    }
}

/// Counts one entry of a `where` (or of an aggregate's `groupBy`, `having`, `orderBy`) against
/// the operation's budget, `max` entries.
pub(crate) fn count_entry(nodes: &Cell<usize>, max: usize) -> Result<(), PlanError> {
    let n = nodes.get().saturating_add(1);
    nodes.set(n);
    if n > max {
        return Err(PlanError::TooComplex(format!(
            "the operation's `where` filters (and aggregates' `groupBy`, `having`, `orderBy` entries) and fields exceed the selection budget ([limits] max_fields); at most {max} filter entries fit with this selection"
        )));
    }
    Ok(())
}

/// The SQL of a filtered (or grouped, or aggregated) value of row `alias`, and the type its
/// parameters are cast to (`None`: they take the type of the column or expression they are
/// compared with).
pub(crate) fn value_expr(
    catalog: &Catalog,
    ty: &TypeMapping,
    alias: &str,
    field: &str,
    kind: ValueKind,
    source: &ValueSource,
) -> (String, Option<&'static str>) {
    match source {
        ValueSource::Column(c) => (format!("{alias}.{}", quote_ident(c)), None),
        // The expression may read any table: the caller notes it (`Sink::read`).
        ValueSource::Sql(e) => (format!("({})", e.replace("{parent}", alias)), None),
        ValueSource::Key(k) => {
            let found = catalog
                .columns
                .get(&ty.name)
                .and_then(|c| c.fields.get(field));
            if let Some(col) = found {
                return (format!("{alias}.{}", quote_ident(col)), None);
            }
            let text = format!(
                "{alias}.{}->>{}",
                quote_ident(&ty.data_column),
                quote_literal(k)
            );
            match kind.cast() {
                Some(c) => (format!("({text})::{c}"), Some(c)),
                None => (text, None),
            }
        }
    }
}
