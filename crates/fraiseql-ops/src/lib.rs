//! fraiseql's operations: what the `fraiseql` binary does to tenants and events besides serving
//! them. Provisioning (`fraiseql tenant create|list|suspend|resume`, `fraiseql migrate` of
//! tenants), backup, restore, move and drop-copy of one tenant, pointing tenants at a promoted
//! replica (`tenant set-server`), and `fraiseql events status`.
//!
//! The serving path (`fraiseql-engine`, `fraiseql-server`) does not depend on this crate: it
//! reads the registry these commands write.

pub mod events_status;
pub mod failover;
pub mod provision;
pub mod transfer;
