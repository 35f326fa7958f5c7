//! The tokengate server as a library: [`server::app`] builds the router
//! that `main` serves and the tests drive in process.

pub mod server;

pub mod demo;
mod openapi;
mod ops;
mod request_id;
mod state;
