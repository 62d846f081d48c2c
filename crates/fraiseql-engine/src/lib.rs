//! The engine: everything between an HTTP body and the JSON the client gets back.
//!
//! Pipeline (see ARCHITECTURE.md): [`request`] (JSON body -> GraphQL request) ->
//! [`document`] (parse, limits, validate; cached by query text) -> variables coerced ->
//! `fraiseql_plan::plan` (one SQL statement per root field) -> [`execute`] (pooled connection,
//! pipelined statements) -> [`response`] (PostgreSQL's JSON text spliced into the body).

pub mod catalog_check;
pub mod db;
pub mod document;
pub mod engine;
pub mod error;
pub mod events;
pub mod execute;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod request;
pub mod resolvers;
pub mod response;
mod work;

pub use engine::{Engine, EngineError, IdentifyError, RequestContext};
pub use error::{ErrorCode, GraphqlError};
pub use request::{GraphqlRequest, RequestParseError};
pub use resolvers::{
    Args, Change, Context, Event, EventContext, EventMessage, FieldBatch, ResolverError, Resolvers,
    Transaction,
};
pub use response::{Outcome, ResponseBody};
pub mod auth;
pub mod tenancy;
