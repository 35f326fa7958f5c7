//! The tokengate server as a library: [`server::app`] builds the router
//! that `main` serves and the tests drive in process; [`serve::serve`] is
//! the accept loop it is served with (timeouts, a connection cap, a bounded
//! shutdown); [`serve_lock`] keeps one server per SQLite file.

pub mod serve;
pub mod serve_lock;
pub mod server;

mod body_deadline;
pub mod demo;
pub mod forward;
mod openapi;
mod ops;
mod request_id;
mod settings_sign_in;
mod stack;
mod state;
pub mod webhooks;

pub use settings_sign_in::SettingsSignIn;
