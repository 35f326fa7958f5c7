//! Helpers shared by tokengate's test suites: requests in process and the
//! contract's bodies, a store that fails on demand, PostgreSQL and Redis for
//! the scale-out tests, a TCP proxy that can be cut, and a `redis-server`
//! of a test's own that can be killed and restarted empty.

#![forbid(unsafe_code)]
// Test helpers: a panic is how a helper fails the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backends;
pub mod flaky;
pub mod http;
pub mod proxy;
pub mod redis_server;

pub use flaky::FlakyStore;
pub use http::{FORBIDDEN, TestResponse, UNAUTHORIZED, UNAVAILABLE, forge_wrong_secret, send};
