//! fraiseql's operations: what the `fraiseql` binary does to tenants and events besides serving
//! them. Provisioning (`fraiseql tenant create|list|suspend|resume`, `fraiseql migrate` of
//! tenants), backup, restore, move and drop-copy of one tenant, pointing tenants at a promoted
//! replica (`tenant set-server`), `fraiseql events status`, and `fraiseql schema init` (a
//! starting schema read from a database's tables).
//!
//! The serving path (`fraiseql-engine`, `fraiseql-server`) does not depend on this crate: it
//! reads the registry these commands write.
//!
//! Commands: [`provision`], [`plans`] (`tenant set-tier`, usage), [`failover`], [`transfer`] (a
//! file per command), [`events_status`], [`scaffold`] (`schema init`).
//! Beneath them: `strategy/` (what differs per tenancy strategy, a file each), `home.rs` (roles,
//! grants, migrations), `archive/` (the archive format and its key), `dump/` and `rows/` (a
//! tenant's data out and in), `catalog.rs`, `fence.rs`, `tools.rs`, `scratch.rs` (private
//! scratch folders), `interrupt.rs` (SIGINT / SIGTERM), `server.rs` (connections, the tenant
//! lock, where a tenant lives), `error.rs`. Nothing beneath imports a command.

pub mod events_status;
pub mod failover;
pub mod plans;
pub mod provision;
pub mod scaffold;
pub mod transfer;

mod archive;
mod catalog;
mod dump;
mod error;
mod fence;
mod home;
pub mod interrupt;
mod names;
mod rows;
mod scratch;
mod server;
mod strategy;
mod tools;

pub use error::{ProvisionError, ScaffoldError, TransferError};
