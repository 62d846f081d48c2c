//! The engine: everything between an HTTP body and the JSON the client gets back.
//!
//! Pipeline (see ARCHITECTURE.md), one module per step: [`identity`] (token, tenant, RBAC) ->
//! [`request`] (JSON body -> GraphQL request) -> [`document`] (parse, [`limits`], validate;
//! cached by query text) -> [`planning`] (variables, one SQL statement per root field; cached)
//! -> [`execution`] (connections from [`connections`] and [`tenancy`], pipelined statements,
//! resolvers) -> [`response`] (PostgreSQL's JSON text spliced into the body). [`events`] runs
//! beside it: outbox, relay, subscribers; [`subscriptions`] is a second way out of the pipeline
//! (change events read through the subscriber's view, as a query would).

pub mod cache;
pub mod catalog_check;
pub mod connections;
pub mod document;
pub mod engine;
pub mod error;
pub mod events;
pub mod execution;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod nats;
mod planning;
pub mod quota;
pub mod request;
pub mod resolvers;
pub mod response;
pub mod routing;
pub mod subscriptions;
pub mod telemetry;
pub mod tenancy;
pub mod trace;

pub use engine::{Engine, EngineError, Method};
pub use error::{ErrorCode, GraphqlError};
pub use execution::CommitGate;
pub use identity::{IdentifyError, RequestContext, TenantHeader};
pub use request::{GraphqlRequest, RequestParseError};
pub use resolvers::{
    Args, Change, Context, Event, EventContext, EventMessage, FieldBatch, ResolverError, Resolvers,
    Transaction,
};
pub use response::{Outcome, ResponseBody};
