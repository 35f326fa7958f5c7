//! The state the server's routes share.

use std::sync::Arc;

use tokengate::TokenGate;
use tokengate::http::{AdminAuth, ProxyHeaderSignIn};

/// What the server's routes need.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The token engine.
    pub gate: TokenGate,
    /// The admin credential.
    pub admin: Arc<AdminAuth>,
    /// The Settings > API Tokens page's sign-in (`SETTINGS_AUTH_HEADER`);
    /// `None`: the page and its API are not served.
    pub settings: Option<ProxyHeaderSignIn>,
}
