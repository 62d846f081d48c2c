//! Aggregates (`@aggregate` on a root field returning `[<T>Aggregate!]!`): the types the engine
//! generates for `@view` type `T` and the roles of the field's arguments.
//!
//! The names are FraiseQL v2's: `<T>Aggregate` (one object per group: `count`, the group's keys,
//! `<field>_sum`/`_avg`/`_min`/`_max` of numeric fields, `<field>_hour`/`_day`/`_week`/`_month`
//! buckets of `DateTime` fields), `<T>GroupBy` (a `Boolean` per key), `<T>Having` (the aggregates
//! with the `<Scalar>Filter` operators of `where`, and `_and`/`_or`/`_not`), `orderBy` with
//! `OrderDirection` (`ASC`, `DESC`). What can be grouped is what `where` can compare: a type's
//! scalar and enum fields (`filters.rs`), so both rules stay one.

use std::collections::BTreeSet;

use crate::catalog::{aggregate_type_name, ArgRole, Bucket, Measure, ValueKind};

/// `<T>GroupBy`.
pub(crate) fn group_by_name(t: &str) -> String {
    format!("{t}GroupBy")
}

/// `<T>Having`.
pub(crate) fn having_name(t: &str) -> String {
    format!("{t}Having")
}

/// `<T>AggregateOrderBy`.
pub(crate) fn order_by_name(t: &str) -> String {
    format!("{t}AggregateOrderBy")
}

/// The sort direction of an aggregate's `orderBy` entries.
pub(crate) const DIRECTION: &str = "OrderDirection";

/// Whether values of `kind` can be summed and averaged.
pub(crate) fn numeric(kind: ValueKind) -> bool {
    matches!(kind, ValueKind::Int | ValueKind::Float)
}

/// The SDL of the aggregate types of `t`, whose groupable fields are `fields` (field, leaf type,
/// kind), in field order. Adds to `leaves` the `<Scalar>Filter`s its `<T>Having` uses.
pub(crate) fn sdl(
    t: &str,
    fields: &[(String, String, ValueKind)],
    share: &str,
    leaves: &mut BTreeSet<String>,
) -> String {
    let agg = aggregate_type_name(t);
    let (mut out, mut group, mut having, mut order) =
        (String::new(), String::new(), String::new(), String::new());
    let mut key = |name: &str, ty: &str, what: &str| {
        out.push_str(&format!("  \"{what}\"\n  {name}: {ty}\n"));
        group.push_str(&format!("  \"Group by `{name}`.\"\n  {name}: Boolean\n"));
        order.push_str(&format!(
            "  \"Order by `{name}`.\"\n  {name}: {DIRECTION}\n"
        ));
    };
    for (f, leaf, kind) in fields {
        key(
            f,
            leaf,
            &format!("The group's `{f}` (null unless grouped by it)."),
        );
        if *kind == ValueKind::DateTime {
            for b in Bucket::ALL {
                key(
                    &format!("{f}_{}", b.name()),
                    leaf,
                    &format!(
                        "The group's `{f}`, truncated to its {} in UTC (null unless grouped by it).",
                        b.name()
                    ),
                );
            }
        }
    }
    let mut measure = |name: &str, ty: &str, leaf: &str, what: &str| {
        out.push_str(&format!("  \"{what}\"\n  {name}: {ty}\n"));
        having.push_str(&format!(
            "  \"Compares `{name}`.\"\n  {name}: {leaf}Filter\n"
        ));
        order.push_str(&format!(
            "  \"Order by `{name}`.\"\n  {name}: {DIRECTION}\n"
        ));
        leaves.insert(leaf.to_owned());
    };
    measure("count", "Int!", "Int", "How many rows the group holds.");
    for (f, leaf, _) in fields.iter().filter(|(_, _, k)| numeric(*k)) {
        for m in Measure::ALL {
            let ty = if m == Measure::Avg { "Float" } else { leaf };
            measure(
                &format!("{f}_{}", m.name()),
                ty,
                ty,
                &format!(
                    "The {} of the group's `{f}` values (null when all are null).",
                    m.name()
                ),
            );
        }
    }
    format!(
        "\"Groups of `{t}` rows: one object per group (one in all without `groupBy`).\"\ntype {agg}{share} {{\n{out}}}\n\
         \"What `{t}` rows are grouped by: every key given `true`.\"\ninput {gb} {{\n{group}}}\n\
         \"Filters `{t}` groups by their aggregates: every entry given must hold (AND).\"\ninput {hv} {{\n{having}  \"Every one of these filters holds.\"\n  _and: [{hv}!]\n  \"At least one of these filters holds.\"\n  _or: [{hv}!]\n  \"This filter does not hold.\"\n  _not: {hv}\n}}\n\
         \"Orders `{t}` groups: each object's entries in order, then the next object's.\"\ninput {ob} {{\n{order}}}\n",
        gb = group_by_name(t),
        hv = having_name(t),
        ob = order_by_name(t),
    )
}

/// The SDL of [`DIRECTION`], once per schema.
pub(crate) fn direction_sdl() -> String {
    format!("\"A sort direction.\"\nenum {DIRECTION} {{\n  \"Ascending (nulls last).\"\n  ASC\n  \"Descending (nulls first).\"\n  DESC\n}}\n")
}

/// The role of argument `name` (of named type `named`, a list or not) of an `@aggregate` field
/// over the rows of `rows`: `None` when it is not one of the aggregate arguments, else the role
/// or what is wrong with it.
pub(crate) fn arg_role(
    name: &str,
    named: &str,
    list: bool,
    rows: &str,
) -> Option<Result<ArgRole, String>> {
    let (want, role, list_ok) = match name {
        "groupBy" => (group_by_name(rows), ArgRole::GroupBy, false),
        "having" => (having_name(rows), ArgRole::Having, false),
        "orderBy" => (order_by_name(rows), ArgRole::AggregateOrderBy, true),
        "offset" => {
            return Some(Err(
                "aggregates take `limit` (of groups), not `offset`".to_owned()
            ))
        }
        _ => return None,
    };
    Some(if named == want && (list_ok || !list) {
        Ok(role)
    } else {
        Err(format!(
            "must be of type {}",
            if list_ok { format!("[{want}!]") } else { want }
        ))
    })
}
