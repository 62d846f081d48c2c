//! Subscriptions on `/graphql`, one file per transport: WebSocket with the
//! `graphql-transport-ws` subprotocol ([`ws`]: `GET` with `Upgrade: websocket`) and GraphQL over
//! Server-Sent Events in distinct-connections mode ([`sse`]: `POST` (or `GET`) with `Accept:
//! text/event-stream`). Both drive an engine `ConnectionGuard`: identity first (the same token
//! and tenant rules as HTTP), then subscriptions whose events the engine queues, each with its
//! position; queries and mutations run once through `Engine::execute`.

pub(crate) mod sse;
pub(crate) mod ws;

use fraiseql_engine::TenantHeader;
use http::{header, HeaderMap};

/// Whether the client asks for an event stream (`Accept: text/event-stream`).
pub(crate) fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            part.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// Credentials as a transport found them (owned: a WebSocket reads them after the upgrade).
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    /// `Authorization`: `Bearer <jwt>`.
    pub authorization: Option<String>,
    /// The tenant header's value; `Err` when it was sent malformed.
    pub tenant: Option<Result<String, ()>>,
}

impl Credentials {
    /// From request headers (`tenant_header`: `[multi_tenancy] auth_header`).
    pub fn from_headers(headers: &HeaderMap, tenant_header: &str) -> Result<Self, String> {
        let authorization = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) => Some(v.to_owned()),
            Some(Err(_)) => {
                return Err("the Authorization header must be `Bearer <jwt>` in ASCII".to_owned())
            }
        };
        let tenant = match crate::answer::tenant_header(headers, tenant_header) {
            TenantHeader::Absent => None,
            TenantHeader::Value(v) => Some(Ok(v.to_owned())),
            TenantHeader::Malformed => Some(Err(())),
        };
        Ok(Self {
            authorization,
            tenant,
        })
    }

    /// The tenant header as identity reads it.
    pub fn tenant_header(&self) -> TenantHeader<'_> {
        match &self.tenant {
            None => TenantHeader::Absent,
            Some(Ok(v)) => TenantHeader::Value(v),
            Some(Err(())) => TenantHeader::Malformed,
        }
    }

    /// Whether nothing was given.
    pub fn is_empty(&self) -> bool {
        self.authorization.is_none() && self.tenant.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_recognised_in_accept_lists() {
        let mut h = HeaderMap::new();
        assert!(!wants_event_stream(&h));
        h.insert(
            header::ACCEPT,
            "application/json, Text/Event-Stream;q=0.9"
                .parse()
                .expect("header"),
        );
        assert!(wants_event_stream(&h));
        h.insert(header::ACCEPT, "application/json".parse().expect("header"));
        assert!(!wants_event_stream(&h));
    }
}
