//! The server's integration tests, one crate: the admin API, the CLI, the
//! release binary over HTTP, hostile input, crashes and file faults, the
//! accept loop and the connection limits, one server per SQLite file, the
//! OpenAPI document (against the router, and through generated TypeScript and
//! Python clients), metrics, request ids, scale-out, the Settings > API
//! Tokens page in headless Chromium, and forward auth behind real nginx and
//! Caddy.
#![allow(unreachable_pub)] // helpers are `pub` for their sibling modules
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth_proxy;
mod browser;
mod process;
mod proxies;
mod support;

mod admin_api;
mod audit_and_leaks;
mod cli;
mod connections;
mod crash;
mod file_faults;
mod forward_auth;
mod generated_clients;
mod hostile;
mod log_redaction;
mod metrics;
mod openapi;
mod openapi_routes;
mod rate_limit;
mod request_id;
mod scale_out;
mod secrets;
mod serve_lock;
mod serve_loop;
mod server_e2e;
mod settings_page;
mod slow_bodies;
mod webhooks;
