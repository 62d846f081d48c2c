//! Subscription operations: the one root field's change events, and the statement that reads
//! the changed rows of a batch of them with the subscriber's selection.

use apollo_compiler::executable::Operation;
use apollo_compiler::response::JsonMap;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use fraiseql_schema::{Catalog, Change};

use crate::collect::Cx;
use crate::error::PlanError;
use crate::sql::Builder;
use crate::{Access, PlanLimits, SqlPlan};

/// How to answer a subscription: which change events feed it and how a batch of them is read.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionPlan {
    /// The root field's response key (alias or name).
    pub response_key: String,
    /// The root field's name.
    pub field: String,
    /// The entity and operation whose events feed it.
    pub change: Change,
    /// The read of a batch of changed rows: `$1` is the JSON array of their keys (as text),
    /// filled in per batch; it answers a JSON array with one element per key, in order, `null`
    /// where the subscriber sees no row.
    pub read: SqlPlan,
    /// Response paths of nested fields `[rbac]` denied (read as `null`, with `FORBIDDEN`).
    pub denied: Vec<Vec<String>>,
}

/// Plans subscription `operation` of `document` (variables coerced, defaults applied).
pub fn plan_subscription(
    schema: &Valid<Schema>,
    catalog: &Catalog,
    document: &Valid<ExecutableDocument>,
    operation: &Operation,
    variables: &JsonMap,
    limits: PlanLimits,
    access: &dyn Access,
) -> Result<SubscriptionPlan, PlanError> {
    if !operation.is_subscription() {
        return Err(PlanError::unsupported(format!(
            "a {} operation is not a subscription",
            operation.operation_type
        )));
    }
    let cx = Cx {
        schema,
        document,
        variables,
        rows: std::cell::Cell::new(0),
        filter_nodes: std::cell::Cell::new(0),
    };
    let root_type = operation.object_type().as_str();
    let grouped = cx.collect(root_type, std::iter::once(&operation.selection_set))?;
    let mut roots = grouped.into_iter();
    let (Some((key, group)), None) = (roots.next(), roots.next()) else {
        return Err(PlanError::BadArgument {
            message: "a subscription selects exactly one root field".to_owned(),
            path: Vec::new(),
        });
    };
    let name = group[0].name.as_str();
    let field = catalog.subscriptions.get(name).ok_or_else(|| {
        PlanError::unsupported(format!("subscription field `{name}` has no @event mapping"))
    })?;
    if !access.allows(root_type, name) {
        return Err(PlanError::Forbidden {
            message: format!("you are not allowed to subscribe to `{root_type}.{name}` ([rbac])"),
            path: vec![key],
        });
    }
    let b = Builder::new(&cx, catalog, limits, access, vec![key.clone()]);
    let (read, denied) = b.changed_rows(&field.rows, &group)?;
    Ok(SubscriptionPlan {
        response_key: key,
        field: name.to_owned(),
        change: field.change.clone(),
        read,
        denied,
    })
}
