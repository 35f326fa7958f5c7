//! The library's integration tests, one crate: the layer's contract, the
//! stores against every backend, the Redis limiter, the settings router,
//! and the fuzz properties.
#![allow(unreachable_pub)] // helpers are `pub` for their sibling modules
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_token;
mod audit_and_usage;
mod fuzz_equivalent;
mod layer;
mod module_graph;
mod readme;
mod redis_limiter;
mod scopes_and_limits;
mod settings;
mod store_conformance;
mod webhook_store;
