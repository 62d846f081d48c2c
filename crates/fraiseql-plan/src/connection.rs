//! Relay connections (`@connection`): one page of rows read by keyset, its cursors, `pageInfo`
//! and `totalCount`, as ONE SQL expression: a root field's statement, or a correlated subquery
//! under a parent row.
//!
//! The page is `SELECT *, row_number() OVER (ORDER BY o), <cursor> FROM view WHERE <filters>
//! AND <keyset> ORDER BY o LIMIT $n + 1`: the extra row tells whether more follow, the keyset
//! predicate (`(created_at, id) < ($1, $2)`) starts the page where the cursor points, so an index
//! on the ordering serves page 5,000 as it serves page 1 (no `OFFSET`). `last` reads in the
//! reverse order and the edges are put back. `totalCount` and the `EXISTS` of the other
//! direction's `has*Page` are subqueries of the same statement, planned only when selected.

use apollo_compiler::executable::Field;
use apollo_compiler::Node;
use fraiseql_schema::{quote_literal, ArgRole, Collection, TypeMapping};

use crate::cursor::{Bound, Ordering};
use crate::error::PlanError;
use crate::sql::{json_object, row_bound, Builder, Obj};
use crate::values::{arg, arg_text};

/// The page's row number (1 = the first row in the reading direction).
const N: &str = "\"__fraiseql_n\"";
/// The page's rows' cursors.
const CURSOR: &str = "\"__fraiseql_cursor\"";

/// The paging arguments of a connection, checked and bound.
struct Paging {
    size: i64,
    backward: bool,
    after: Option<Bound>,
    before: Option<Bound>,
}

/// One planned page: what its selection refers to.
struct Page<'t> {
    ty: &'t TypeMapping,
    ordering: Ordering<'t>,
    paging: Paging,
    /// The page's derived table alias.
    rows: String,
    /// The view and its alias, and the filters (without the cursors): for counts and `EXISTS`.
    base: String,
    base_alias: String,
    base_conditions: Vec<String>,
}

/// A planned connection: the JSON expression over its page's rows, and their `FROM` item.
pub(crate) struct Planned {
    pub json: String,
    pub from: String,
}

impl Page<'_> {
    /// `EXISTS` a row matching the filters (not the cursors) and `extra`.
    fn exists(&self, extra: String) -> String {
        let mut conds = self.base_conditions.clone();
        conds.push(extra);
        format!(
            "EXISTS (SELECT 1 FROM {} WHERE {})",
            self.base,
            conds.join(" AND ")
        )
    }

    /// The first edge's cursor in the page's order (`last`: the last).
    fn cursor_at(&self, first: bool) -> String {
        let asc = first != self.paging.backward;
        format!(
            "(array_agg({r}.{CURSOR} ORDER BY {r}.{N}{dir}) FILTER (WHERE {r}.{N} <= {size}))[1]",
            r = self.rows,
            dir = if asc { "" } else { " DESC" },
            size = row_bound(self.paging.size)
        )
    }
}

impl<'c, 'a> Builder<'c, 'a> {
    /// Plans connection field `group` over `c`'s rows of `ty` (under the parent row expression
    /// `parent` for relations).
    pub(crate) fn connection(
        &mut self,
        c: &Collection,
        ty: &'c TypeMapping,
        group: &[&'a Node<Field>],
        parent: Option<String>,
    ) -> Result<Planned, PlanError> {
        let alias = self.alias();
        let source = self.source(c, ty, alias, group[0], parent)?;
        let ordering = Ordering::new(ty, &source.keys);
        let paging = self.paging(c, ty, &ordering, group[0])?;
        self.count_rows(u64::try_from(paging.size).unwrap_or(0))?;
        let t0 = source.alias.clone();
        let mut conds = source.conditions.clone();
        if let Some(a) = &paging.after {
            conds.push(ordering.after(&t0, a, true));
        }
        if let Some(b) = &paging.before {
            conds.push(ordering.reversed().after(&t0, b, true));
        }
        let read = if paging.backward {
            ordering.reversed()
        } else {
            ordering.clone()
        };
        let o = read.order_by(&t0);
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let rows = self.alias();
        let from = format!(
            "(SELECT {t0}.*, row_number() OVER (ORDER BY {o}) AS {N}, {cursor} AS {CURSOR} FROM {view} {t0}{filter} ORDER BY {o} LIMIT {one_more}) {rows}",
            one_more = row_bound(paging.size.saturating_add(1)),
            cursor = ordering.cursor_sql(&t0),
            view = source.view,
        );
        let page = Page {
            ty,
            ordering,
            paging,
            rows,
            base: format!("{} {t0}", source.view),
            base_alias: t0,
            base_conditions: source.conditions,
        };
        let outer = self.scale;
        self.scale = outer.saturating_mul(u64::try_from(page.paging.size).unwrap_or(0));
        let json = self.connection_object(&page, group);
        self.scale = outer;
        Ok(Planned { json: json?, from })
    }

    /// `first`/`last`/`after`/`before`: bounded, exclusive where they must be, cursors decoded
    /// and bound.
    fn paging(
        &mut self,
        c: &Collection,
        ty: &TypeMapping,
        ordering: &Ordering<'_>,
        field: &Node<Field>,
    ) -> Result<Paging, PlanError> {
        let max = c
            .connection
            .as_ref()
            .and_then(|s| s.max_page_size)
            .map_or(self.limits.max_limit, |m| m.min(self.limits.max_limit));
        let vars = self.cx.variables;
        let (mut first, mut last, mut after, mut before) = (None, None, None, None);
        for (name, role) in &c.args {
            let a = arg(field, name, vars);
            match role {
                ArgRole::First => first = self.int_arg(name, arg_text(a, vars), max)?,
                ArgRole::Last => last = self.int_arg(name, arg_text(a, vars), max)?,
                ArgRole::After => after = arg_text(a, vars).map(|t| (name.as_str(), t)),
                ArgRole::Before => before = arg_text(a, vars).map(|t| (name.as_str(), t)),
                _ => {}
            }
        }
        if first.is_some() && last.is_some() {
            return Err(self
                .bad("give `first` or `last`, not both (a page is read from one end)".to_owned()));
        }
        let columns = self.catalog.columns.get(&ty.name);
        let mut decode = |given: Option<(&str, String)>| -> Result<Option<Bound>, PlanError> {
            let Some((name, text)) = given else {
                return Ok(None);
            };
            let values = ordering.decode(&text, columns).map_err(|why| {
                self.bad(format!("argument `{name}` is not a valid cursor: {why}"))
            })?;
            Ok(Some(ordering.bind(values, &mut |v| self.param(v))))
        };
        let after = decode(after)?;
        let before = decode(before)?;
        Ok(Paging {
            size: first.or(last).unwrap_or(max),
            backward: last.is_some(),
            after,
            before,
        })
    }

    /// The connection object: `edges`, `pageInfo`, `totalCount`, as selected.
    fn connection_object(
        &mut self,
        page: &Page<'c>,
        group: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let conn_type = group[0].definition.ty.inner_named_type().as_str();
        let grouped = self
            .cx
            .collect(conn_type, group.iter().map(|f| &f.selection_set))?;
        let mut pairs = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            self.path.push(key.clone());
            let expr = match nodes[0].name.as_str() {
                "__typename" => Ok(format!("{}::text", quote_literal(conn_type))),
                name if !self.access.allows(conn_type, name) => {
                    self.denied.push(self.path.clone());
                    Ok("NULL".to_owned())
                }
                "edges" => self.edges(page, &nodes),
                "pageInfo" => self.page_info(page, &nodes),
                "totalCount" => Ok(format!(
                    "(SELECT count(*) FROM {}{})",
                    page.base,
                    where_of(&page.base_conditions)
                )),
                other => Err(PlanError::unsupported(format!(
                    "field `{conn_type}.{other}` has no mapping"
                ))),
            };
            self.path.pop();
            pairs.push((key, expr?));
        }
        json_object(&pairs)
    }

    fn edges(&mut self, page: &Page<'c>, group: &[&'a Node<Field>]) -> Result<String, PlanError> {
        let edge_type = group[0].definition.ty.inner_named_type().as_str();
        let grouped = self
            .cx
            .collect(edge_type, group.iter().map(|f| &f.selection_set))?;
        let mut pairs = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            self.path.push(key.clone());
            let expr = match nodes[0].name.as_str() {
                "__typename" => Ok(format!("{}::text", quote_literal(edge_type))),
                name if !self.access.allows(edge_type, name) => {
                    self.denied.push(self.path.clone());
                    Ok("NULL".to_owned())
                }
                "cursor" => Ok(format!("{}.{CURSOR}", page.rows)),
                "node" => self.object(
                    &Obj::Row {
                        ty: page.ty,
                        alias: page.rows.clone(),
                    },
                    &nodes,
                ),
                other => Err(PlanError::unsupported(format!(
                    "field `{edge_type}.{other}` has no mapping"
                ))),
            };
            self.path.pop();
            pairs.push((key, expr?));
        }
        Ok(format!(
            "coalesce(json_agg({} ORDER BY {r}.{N}{dir}) FILTER (WHERE {r}.{N} <= {size}), '[]'::json)",
            json_object(&pairs)?,
            r = page.rows,
            dir = if page.paging.backward { " DESC" } else { "" },
            size = row_bound(page.paging.size)
        ))
    }

    fn page_info(
        &mut self,
        page: &Page<'c>,
        group: &[&'a Node<Field>],
    ) -> Result<String, PlanError> {
        let info_type = group[0].definition.ty.inner_named_type().as_str();
        let grouped = self
            .cx
            .collect(info_type, group.iter().map(|f| &f.selection_set))?;
        let more = format!("count(*) > {}", row_bound(page.paging.size));
        let t0 = &page.base_alias;
        // Rows at or before `after` (the other side of a forward page), at or after `before`.
        let before_after = page
            .paging
            .after
            .as_ref()
            .map(|a| page.exists(page.ordering.reversed().after(t0, a, false)));
        let after_before = page
            .paging
            .before
            .as_ref()
            .map(|b| page.exists(page.ordering.after(t0, b, false)));
        let mut pairs = Vec::with_capacity(grouped.len());
        for (key, nodes) in grouped {
            let name = nodes[0].name.as_str();
            self.path.push(key.clone());
            let expr = match name {
                "__typename" => format!("{}::text", quote_literal(info_type)),
                _ if !self.access.allows(info_type, name) => {
                    self.denied.push(self.path.clone());
                    "NULL".to_owned()
                }
                "hasNextPage" if !page.paging.backward => more.clone(),
                "hasNextPage" => after_before.clone().unwrap_or_else(|| "false".to_owned()),
                "hasPreviousPage" if page.paging.backward => more.clone(),
                "hasPreviousPage" => before_after.clone().unwrap_or_else(|| "false".to_owned()),
                "startCursor" => page.cursor_at(true),
                "endCursor" => page.cursor_at(false),
                other => {
                    self.path.pop();
                    return Err(PlanError::unsupported(format!(
                        "field `{info_type}.{other}` has no mapping"
                    )));
                }
            };
            self.path.pop();
            pairs.push((key, expr));
        }
        json_object(&pairs)
    }
}

fn where_of(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}
