//! The SaaS example end to end against real PostgreSQL: one test binary, a shared harness.

mod harness;
mod queries;
mod tenancy;
