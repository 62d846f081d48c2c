//! The pipeline's response stage: `{"data":{…}}` assembled from each root field's JSON text as
//! PostgreSQL returned it, byte for byte; a failed non-null root field nulls `data`.

use fraiseql_plan::{OutputPlan, Plan, RootKind};

use super::ResponseBody;
use crate::error::{ErrorCode, GraphqlError};
use crate::execution::FieldResult;

/// Introspection answers computed for this request, by response key.
pub(crate) type Introspection = apollo_compiler::response::JsonMap;

/// The body of `plan`'s answers: `results[i]` is root field `i`'s (`None`: not run).
pub(crate) fn assemble(
    plan: &Plan,
    results: Vec<Option<FieldResult>>,
    introspection: Option<&Introspection>,
) -> ResponseBody {
    let mut body = ResponseBody::with_capacity(
        results
            .iter()
            .map(|r| match r {
                Some(Ok(Some(s))) => s.len(),
                _ => 8,
            })
            .sum(),
    );
    for (field, result) in plan.fields.iter().zip(results) {
        let key = field.response_key.as_str();
        match (&field.kind, result) {
            (RootKind::Typename(t), _) => {
                let json = serde_json::to_vec(t).unwrap_or_default();
                body.field(key, &json);
            }
            (RootKind::Introspection, _) => {
                let value = introspection.and_then(|d| d.get(key));
                let json = value
                    .and_then(|v| serde_json::to_vec(v).ok())
                    .unwrap_or_else(|| b"null".to_vec());
                body.field(key, &json);
            }
            (RootKind::Denied, _) => {
                body.field(key, b"null");
                body.errors.push(forbidden(vec![key.to_owned()]));
            }
            (RootKind::Constant(json), _) => body.field(key, json.as_bytes()),
            (_, Some(Ok(Some(text)))) => body.field(key, text.as_bytes()),
            (kind, Some(Ok(None))) => {
                body.field(key, b"null");
                if !nullable(kind) {
                    body.null_data();
                }
            }
            (kind, Some(Err(e))) => {
                body.field(key, b"null");
                body.errors.push(e.with_path([key.to_owned()]));
                if !nullable(kind) {
                    body.null_data();
                }
            }
            (_, None) => body.field(key, b"null"),
        }
    }
    for path in plan.denied.iter().cloned() {
        body.errors.push(forbidden(path));
    }
    body
}

/// Whether a root field may be `null` (else `null` propagates to `data`).
fn nullable(kind: &RootKind) -> bool {
    match kind {
        RootKind::Sql(p) => p.nullable,
        RootKind::Mutation(m) => output_nullable(&m.output),
        RootKind::Resolver(r) => output_nullable(&r.output),
        RootKind::Entities(_) => false,
        RootKind::Typename(_)
        | RootKind::Introspection
        | RootKind::Denied
        | RootKind::Constant(_) => true,
    }
}

fn output_nullable(o: &OutputPlan) -> bool {
    match o {
        OutputPlan::Readback { plan, .. } => plan.nullable,
        OutputPlan::Value { nullable, .. } => *nullable,
    }
}

fn forbidden(path: Vec<String>) -> GraphqlError {
    GraphqlError::new(
        ErrorCode::Forbidden,
        "you are not allowed to read this field",
    )
    .with_path(path)
}
