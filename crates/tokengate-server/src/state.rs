//! The state the server's routes share.

use std::sync::Arc;

use tokengate::TokenGate;
use tokengate::http::AdminAuth;

/// What the server's routes need.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The token engine.
    pub gate: TokenGate,
    /// The admin credential.
    pub admin: Arc<AdminAuth>,
}
