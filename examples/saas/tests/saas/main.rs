//! The SaaS example end to end against real PostgreSQL: one test binary, a shared harness.

#[macro_use]
mod harness;
mod admin;
mod aggregates;
mod cache;
mod connections;
mod documents;
mod events;
mod explain;
mod federation;
mod filters;
mod hardening;
mod mutations;
mod operations;
mod plans;
mod queries;
mod resolvers;
mod subscriptions;
mod tenancy;
