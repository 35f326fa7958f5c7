//! The library's integration tests, one crate: the layer's contract, the
//! stores against every backend, the Redis limiter, and the fuzz properties.
#![allow(unreachable_pub)] // helpers are `pub` for their sibling modules

mod admin_token;
mod fuzz_equivalent;
mod layer;
mod redis_limiter;
mod store_conformance;
