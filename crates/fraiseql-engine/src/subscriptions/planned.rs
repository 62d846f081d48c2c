//! A subscription plan with the fixed parts of its events' bodies worked out once, shared by
//! every subscriber that sent the same subscription.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use fraiseql_plan::SubscriptionPlan;

use crate::error::{ErrorCode, GraphqlError};

/// A subscription plan with the fixed parts of its events' bodies worked out once.
pub(crate) struct Planned {
    pub plan: SubscriptionPlan,
    /// `{"data":{"<response key>":`
    head: String,
    /// `,"errors":[...]` for the fields `[rbac]` denied, or nothing.
    errors: String,
    /// What subscribers must share to share a statement: its SQL and its parameters.
    pub statement: Arc<str>,
}

impl Planned {
    pub fn new(plan: SubscriptionPlan) -> Self {
        let key = serde_json::to_string(&plan.response_key).unwrap_or_else(|_| "\"\"".into());
        let denied: Vec<GraphqlError> = plan
            .denied
            .iter()
            .map(|path| {
                GraphqlError::new(
                    ErrorCode::Forbidden,
                    "you are not allowed to read this field",
                )
                .with_path(path.iter().cloned())
            })
            .collect();
        let errors = if denied.is_empty() {
            String::new()
        } else {
            format!(
                ",\"errors\":{}",
                serde_json::to_string(&denied).unwrap_or_else(|_| "[]".into())
            )
        };
        let statement = format!("{}\u{0}{:?}", plan.read.sql, &plan.read.params[1..]);
        Self {
            head: format!("{{\"data\":{{{key}:"),
            errors,
            statement: Arc::from(statement),
            plan,
        }
    }

    /// `{"data":{"<key>":<row>},"errors":[...],"extensions":{"position":"<position>"}}`
    pub fn body(&self, row: &str, position: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(
            self.head.len() + row.len() + self.errors.len() + position.len() + 32,
        );
        b.put_slice(self.head.as_bytes());
        b.put_slice(row.as_bytes());
        b.put_slice(b"}");
        b.put_slice(self.errors.as_bytes());
        // Positions are base64url: no escaping needed.
        b.put_slice(b",\"extensions\":{\"position\":\"");
        b.put_slice(position.as_bytes());
        b.put_slice(b"\"}}");
        b.freeze()
    }
}
