//! Aggregates (`@aggregate` root fields): groups of a view's rows and what they add up to, as
//! ONE statement:
//!
//! ```sql
//! SELECT coalesce(json_agg(g.j ORDER BY g.n), '[]'::json)::text
//! FROM (SELECT json_build_object(<selection>) AS j, row_number() OVER (ORDER BY <order>) AS n
//!       FROM view t0 WHERE <where> GROUP BY <keys> HAVING <having> ORDER BY <order> LIMIT $n) g
//! ```
//!
//! - a key is a value `where` compares (the view's column found at start-up, a typed `data`
//!   key, an `@sql` expression: `filter::value_expr`), or a time bucket of a `DateTime`
//!   (`date_trunc(unit, value, 'UTC')`, answered as `2026-01-05T00:00:00Z`);
//! - `count` is `count(*)`; `<field>_sum`/`_avg`/`_min`/`_max` apply to numeric fields;
//! - `where` and equality filters come before grouping (`sql.rs`' `source`), `having` after it
//!   (`filter.rs` over the computed values), then `orderBy` and the group keys (ascending), so a
//!   `limit` keeps the same groups every time;
//! - `[rbac]`: grouping, aggregating, filtering or ordering on a field the caller may not read
//!   is `FORBIDDEN`; `groupBy` and `orderBy` entries count against the selection budget as
//!   `where` entries do, `having` is a filter; the groups are bounded like a list's rows.

use apollo_compiler::executable::Field;
use apollo_compiler::Node;
use fraiseql_schema::{
    quote_literal, ArgRole, Bucket, Collection, Filterable, Measure, TypeMapping, ValueKind,
    ValueSource,
};
use indexmap::IndexMap;
use serde_json::Value;

use crate::error::PlanError;
use crate::filter::{count_entry, value_expr, Computed, Scope};
use crate::sql::{json_object, Builder};
use crate::values::{arg, arg_json, given_by_client};
use crate::RootKind;

/// A group key: a field's value or a time bucket of it.
struct Key {
    /// The field of the view type it is read from (for `[rbac]`).
    field: String,
    /// What `GROUP BY` and `ORDER BY` use.
    group: String,
    /// What the answer shows.
    output: String,
}

/// The `Filterable::Value` field `name` of `ty`: its kind and source.
fn value_field<'t>(ty: &'t TypeMapping, name: &str) -> Option<(ValueKind, &'t ValueSource)> {
    match ty.filters.get(name)? {
        Filterable::Value { kind, source } => Some((*kind, source)),
        Filterable::Rows { .. } => None,
    }
}

/// `field_suffix` split at its last `_`, when the suffix is one of `names`.
fn suffixed<'n, T: Copy>(
    name: &'n str,
    all: &[T],
    names: fn(T) -> &'static str,
) -> Option<(&'n str, T)> {
    let (field, suffix) = name.rsplit_once('_')?;
    all.iter()
        .find(|t| names(**t) == suffix)
        .map(|t| (field, *t))
}

impl<'c, 'a> Builder<'c, 'a> {
    /// The SQL of value field `field` of row `alias`, noting what an `@sql` field may read.
    fn value_sql(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        field: &str,
    ) -> Option<(ValueKind, String)> {
        let (kind, source) = value_field(ty, field)?;
        if matches!(source, ValueSource::Sql(_)) {
            self.read(crate::ANY_ENTITY.to_owned());
        }
        Some((
            kind,
            value_expr(self.catalog, ty, alias, field, kind, source).0,
        ))
    }

    /// The key `name` names (`status`, `createdAt_day`), if it is one.
    fn key(&mut self, ty: &TypeMapping, alias: &str, name: &str) -> Option<Key> {
        if let Some((_, sql)) = self.value_sql(ty, alias, name) {
            return Some(Key {
                field: name.to_owned(),
                group: sql.clone(),
                output: sql,
            });
        }
        let (field, bucket) = suffixed(name, &Bucket::ALL, Bucket::name)?;
        let (kind, _) = value_field(ty, field)?;
        if kind != ValueKind::DateTime {
            return None;
        }
        let (_, sql) = self.value_sql(ty, alias, field)?;
        // In UTC whatever the session's TimeZone, answered as an ISO-8601 instant.
        let group = format!(
            "date_trunc('{}', ({sql})::timestamptz, 'UTC')",
            bucket.name()
        );
        Some(Key {
            field: field.to_owned(),
            output: format!(
                "to_char({group} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            ),
            group,
        })
    }

    /// The aggregate `name` names (`count`, `estimate_sum`), if it is one.
    fn measure(&mut self, ty: &TypeMapping, alias: &str, name: &str) -> Option<Computed> {
        if name == "count" {
            return Some(Computed {
                sql: "count(*)".to_owned(),
                kind: ValueKind::Int,
                field: None,
            });
        }
        let (field, m) = suffixed(name, &Measure::ALL, Measure::name)?;
        let (kind, sql) = self.value_sql(ty, alias, field)?;
        if !matches!(kind, ValueKind::Int | ValueKind::Float) {
            return None;
        }
        Some(Computed {
            sql: format!("{}({sql})", m.name()),
            kind: if m == Measure::Avg {
                ValueKind::Float
            } else {
                kind
            },
            field: Some(field.to_owned()),
        })
    }

    /// Refuses `what` (an argument or the selection) using field `field` of `ty` when the caller
    /// may not read it.
    fn guard_field(&self, ty: &TypeMapping, field: &str, what: &str) -> Result<(), PlanError> {
        if self.access.allows(&ty.name, field) {
            return Ok(());
        }
        Err(PlanError::Forbidden {
            message: format!(
                "{what} uses `{}.{field}`, which you are not allowed to read",
                ty.name
            ),
            path: self.path.clone(),
        })
    }

    fn count_entry(&self) -> Result<(), PlanError> {
        count_entry(&self.cx.filter_nodes, self.limits.max_filter_nodes)
    }

    /// The entries of an input object argument (`groupBy: {status: true}`).
    fn entries<'v>(
        &self,
        name: &str,
        v: &'v Value,
    ) -> Result<Vec<(&'v String, &'v Value)>, PlanError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                for entry in map {
                    self.count_entry()?;
                    out.push(entry);
                }
                Ok(out)
            }
            _ => Err(self.bad(format!("argument `{name}` must be an input object"))),
        }
    }

    /// Plans `@aggregate` root field `group` over the rows of `c`.
    pub(crate) fn root_aggregate(
        mut self,
        c: &Collection,
        group: &[&'a Node<Field>],
    ) -> Result<(RootKind, Vec<Vec<String>>), PlanError> {
        let ty = self.mapping(&c.target)?;
        ty.database.clone_into(&mut self.database);
        let alias = self.alias();
        let source = self.source(c, ty, alias, group[0], None)?;
        let t0 = source.alias.clone();
        let field = group[0];
        let vars = self.cx.variables;
        let mut keys: IndexMap<String, Key> = IndexMap::new();
        let mut having = None;
        let mut order: Vec<String> = Vec::new();
        // What `order` sorts on, without directions.
        let mut sorted: Vec<String> = Vec::new();
        // `groupBy` first: `orderBy` and the selection refer to its keys.
        let roles = || c.args.iter().map(|(n, r)| (n.as_str(), r));
        for (name, _) in roles().filter(|(_, r)| **r == ArgRole::GroupBy) {
            let value = arg_json(arg(field, name, vars), vars);
            let guarded = given_by_client(field, name, vars);
            for (k, on) in self.entries(name, &value)? {
                if *on != Value::Bool(true) {
                    continue;
                }
                let key = self.key(ty, &t0, k).ok_or_else(|| {
                    self.bad(format!("`{name}.{k}` is not a key of {}GroupBy", ty.name))
                })?;
                if guarded {
                    self.guard_field(ty, &key.field, &format!("`{name}.{k}`"))?;
                }
                keys.insert(k.clone(), key);
            }
        }
        for (name, role) in roles() {
            let a = arg(field, name, vars);
            let guarded = given_by_client(field, name, vars);
            match role {
                ArgRole::Having => {
                    having = self.having(ty, &t0, name, &arg_json(a, vars), guarded)?;
                }
                ArgRole::AggregateOrderBy => {
                    let value = arg_json(a, vars);
                    let items = match &value {
                        Value::Array(items) => items.as_slice(),
                        one => std::slice::from_ref(one),
                    };
                    for item in items {
                        for (k, dir) in self.entries(name, item)? {
                            let dir = match dir.as_str() {
                                None => continue,
                                Some("DESC") => " DESC",
                                Some(_) => "",
                            };
                            let sql = self.order_term(ty, &t0, &keys, name, k, guarded)?;
                            order.push(format!("{sql}{dir}"));
                            sorted.push(sql);
                        }
                    }
                }
                _ => {}
            }
        }
        // Then the keys, so that a `limit` keeps the same groups every time.
        for k in keys.values() {
            if !sorted.contains(&k.group) {
                order.push(k.group.clone());
            }
        }
        let obj = self.selection(ty, &t0, &keys, group)?;
        let order = order.join(", ");
        let g = self.alias();
        let limit = source
            .limit
            .clone()
            .ok_or_else(|| PlanError::unsupported("an aggregate without a limit".to_owned()))?;
        let mut sql = format!(
            "SELECT coalesce(json_agg({g}.j ORDER BY {g}.n), '[]'::json)::text FROM (SELECT {obj} AS j, row_number() OVER ({}) AS n FROM {} {t0}{}",
            if order.is_empty() { String::new() } else { format!("ORDER BY {order}") },
            source.view,
            source.where_clause()
        );
        if !keys.is_empty() {
            let by: Vec<&str> = keys.values().map(|k| k.group.as_str()).collect();
            sql.push_str(&format!(" GROUP BY {}", by.join(", ")));
        }
        if let Some(h) = having {
            sql.push_str(&format!(" HAVING {h}"));
        }
        if !order.is_empty() {
            sql.push_str(&format!(" ORDER BY {order}"));
        }
        sql.push_str(&format!(" LIMIT {limit}) {g}"));
        let (plan, denied) = self.finish(sql, !c.non_null);
        Ok((RootKind::Sql(plan), denied))
    }

    /// The predicate of `having` argument `name` over the aggregates of `ty`'s rows.
    fn having(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        name: &str,
        value: &Value,
        guarded: bool,
    ) -> Result<Option<String>, PlanError> {
        let mut values = IndexMap::new();
        let numeric: Vec<String> = ty
            .filters
            .iter()
            .filter(|(_, f)| {
                matches!(
                    f,
                    Filterable::Value {
                        kind: ValueKind::Int | ValueKind::Float,
                        ..
                    }
                )
            })
            .map(|(n, _)| n.clone())
            .collect();
        let names = std::iter::once("count".to_owned()).chain(
            numeric
                .iter()
                .flat_map(|f| Measure::ALL.map(|m| format!("{f}_{}", m.name()))),
        );
        for n in names {
            if let Some(m) = self.measure(ty, alias, &n) {
                values.insert(n, m);
            }
        }
        let input = format!("{}Having", ty.name);
        let path = self.path.clone();
        let filter = self.filter(&path, name, guarded);
        let scope = Scope::Values {
            input: &input,
            type_name: &ty.name,
            values: &values,
        };
        filter.predicate_in(self, scope, value)
    }

    /// The SQL `orderBy` entry `k` (of argument `name`) sorts on: a grouped key or an aggregate.
    fn order_term(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        keys: &IndexMap<String, Key>,
        name: &str,
        k: &str,
        guarded: bool,
    ) -> Result<String, PlanError> {
        let what = format!("`{name}.{k}`");
        if let Some(key) = keys.get(k) {
            return Ok(key.group.clone());
        }
        if let Some(m) = self.measure(ty, alias, k) {
            if let (Some(f), true) = (&m.field, guarded) {
                self.guard_field(ty, f, &what)?;
            }
            return Ok(m.sql);
        }
        Err(match self.key(ty, alias, k) {
            Some(_) => self.bad(format!(
                "{what} orders by a key the rows are not grouped by: add `groupBy: {{{k}: true}}`"
            )),
            None => self.bad(format!(
                "{what} is not a field of {}AggregateOrderBy",
                ty.name
            )),
        })
    }

    /// `json_build_object` of the selected group keys and aggregates.
    fn selection(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        keys: &IndexMap<String, Key>,
        group: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let agg_type = group[0].definition.ty.inner_named_type().as_str();
        let grouped = self
            .cx
            .collect(agg_type, group.iter().map(|f| &f.selection_set))?;
        let mut pairs = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            let name = nodes[0].name.as_str();
            self.path.push(key.clone());
            let expr = self.selected(ty, alias, keys, agg_type, name);
            self.path.pop();
            pairs.push((key, expr?));
        }
        json_object(&pairs)
    }

    /// The SQL of selected field `name` of a group.
    fn selected(
        &mut self,
        ty: &TypeMapping,
        alias: &str,
        keys: &IndexMap<String, Key>,
        agg_type: &str,
        name: &str,
    ) -> Result<String, PlanError> {
        if name == "__typename" {
            return Ok(format!("{}::text", quote_literal(agg_type)));
        }
        if !self.access.allows(agg_type, name) {
            self.denied.push(self.path.clone());
            return Ok("NULL".to_owned());
        }
        if let Some(k) = keys.get(name) {
            return Ok(k.output.clone());
        }
        if let Some(m) = self.measure(ty, alias, name) {
            if let Some(f) = &m.field {
                self.guard_field(ty, f, &format!("`{name}`"))?;
            }
            return Ok(m.sql);
        }
        if self.key(ty, alias, name).is_some() {
            return Err(self.bad(format!(
                "`{name}` is selected but the rows are not grouped by it: add `groupBy: {{{name}: true}}`"
            )));
        }
        Err(PlanError::unsupported(format!(
            "field `{agg_type}.{name}` has no mapping"
        )))
    }
}
