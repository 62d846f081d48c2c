//! The SaaS example end to end against real PostgreSQL: one test binary, a shared harness.

#[macro_use]
mod harness;
mod admin;
mod cache;
mod events;
mod federation;
mod hardening;
mod mutations;
mod operations;
mod plans;
mod queries;
mod resolvers;
mod tenancy;
