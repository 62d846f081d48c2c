//! [`Engine::subscribe`]: a subscription operation through the pipeline's first stages
//! (document, planning with the caller's roles), then registered with the instance's
//! subscriptions. Identity was resolved by the transport, as for a request.

use std::sync::Arc;

use super::Engine;
use crate::error::{ErrorCode, GraphqlError};
use crate::planning::PlanKey;
use crate::request::GraphqlRequest;
use crate::subscriptions::{ConnectionGuard, Refused};

impl Engine {
    /// Starts subscription `id` on `conn` (identified) for `req`: live from now, or from
    /// `after`, a position an earlier event carried (missed events first). Returns the position
    /// of "now" for a live one (an SSE stream sends it first, so a client that gets no event
    /// before it reconnects still resumes from there). A query or mutation is
    /// [`Refused::NotSubscription`]: run it with [`Engine::execute`].
    pub async fn subscribe(
        self: &Arc<Self>,
        conn: &ConnectionGuard,
        id: &str,
        req: &GraphqlRequest,
        after: Option<&str>,
    ) -> Result<Option<String>, Refused> {
        let prepared = self
            .prepare(req)
            .map_err(|r| Refused::Errors(vec![r.error]))?;
        let doc = match &prepared.document {
            Ok(doc) => doc,
            Err(errors) => return Err(Refused::Errors(errors.clone())),
        };
        let op = doc
            .operations
            .get(req.operation_name.as_deref())
            .map_err(|e| {
                Refused::Errors(vec![GraphqlError::new(
                    ErrorCode::OperationNotFound,
                    e.message().to_string(),
                )])
            })?;
        if !op.is_subscription() {
            return Err(Refused::NotSubscription);
        }
        let Some(subs) = self.subscriptions.get() else {
            return Err(Refused::Errors(vec![GraphqlError::new(
                ErrorCode::OperationNotSupported,
                self.subscriptions_unavailable(),
            )]));
        };
        let Some(ctx) = conn.context().cloned() else {
            return Err(Refused::Errors(vec![GraphqlError::new(
                ErrorCode::Unauthenticated,
                "the connection is not identified yet",
            )]));
        };
        let key = PlanKey::new(
            &prepared,
            req.operation_name.as_deref(),
            req.variables_key().into(),
            ctx.identity.roles.clone(),
        );
        let planned = match subs.plan(&key) {
            Some(p) => p,
            None => {
                let plan = self
                    .planner()
                    .plan_subscription(req, doc, op, &ctx.identity.roles)
                    .map_err(|e| {
                        subs.refused(crate::metrics::Refusal::Invalid);
                        Refused::Errors(e)
                    })?;
                let planned = Arc::new(crate::subscriptions::planned(plan));
                subs.keep(key, prepared.clone(), planned.clone());
                planned
            }
        };
        let after = after.or_else(|| {
            req.extensions
                .as_ref()
                .and_then(|e| e.get("after"))
                .and_then(|v| v.as_str())
        });
        subs.register(conn, id, planned, ctx, after).await
    }

    /// Whether `req` names a subscription operation (of a valid document).
    pub fn is_subscription(&self, req: &GraphqlRequest) -> bool {
        let Ok(prepared) = self.prepare(req) else {
            return false;
        };
        let Ok(doc) = &prepared.document else {
            return false;
        };
        doc.operations
            .get(req.operation_name.as_deref())
            .is_ok_and(|op| op.is_subscription())
    }

    /// Why this server serves no subscriptions.
    pub fn subscriptions_unavailable(&self) -> String {
        let c = &self.config;
        if self.schema.catalog.subscriptions.is_empty() {
            "this schema has no Subscription fields".to_owned()
        } else if !c.subscriptions.enabled {
            "subscriptions are turned off on this server ([subscriptions] enabled = false)"
                .to_owned()
        } else if !c.observers.enabled {
            "subscriptions need the event relay: this server runs with [observers] enabled = false"
                .to_owned()
        } else {
            "subscriptions are starting on this server (NATS not reached yet); retry shortly"
                .to_owned()
        }
    }
}
