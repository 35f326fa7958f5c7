//! Who the standalone server's Settings > API Tokens page signs in: the
//! account an authenticating proxy names (`SETTINGS_AUTH_HEADER`), or, to
//! try the page on your own machine, one fixed account for every request
//! from loopback (`tokengate serve --settings-demo-user <account>`).
//!
//! This module owns that choice and the demo sign-in's one rule (loopback
//! peers only). It must not read configuration (`config.rs` in the binary)
//! nor build the page (`tokengate::http::settings_router`).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use http::request::Parts;
use tokengate::http::{ProxyHeaderSignIn, SignIn, TrustedProxies};

/// The settings page's sign-in in the standalone server.
#[derive(Clone, Debug)]
pub enum SettingsSignIn {
    /// An authenticating reverse proxy's header, believed from trusted proxies.
    Proxy(ProxyHeaderSignIn),
    /// Every request from a loopback peer is this account: for trying the
    /// page locally, never for production. Believes no header at all.
    Demo(String),
}

impl SettingsSignIn {
    /// The proxies whose `X-Forwarded-Host` / `-Proto` the page believes.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        match self {
            SettingsSignIn::Proxy(sign_in) => sign_in.trusted_proxies().clone(),
            // A browser on this machine talks to the server directly.
            SettingsSignIn::Demo(_) => TrustedProxies::loopback(),
        }
    }

    /// The header an authenticating proxy signs in with; none in demo mode.
    pub fn header(&self) -> Option<&http::HeaderName> {
        match self {
            SettingsSignIn::Proxy(sign_in) => Some(sign_in.header()),
            SettingsSignIn::Demo(_) => None,
        }
    }
}

impl From<ProxyHeaderSignIn> for SettingsSignIn {
    fn from(sign_in: ProxyHeaderSignIn) -> Self {
        SettingsSignIn::Proxy(sign_in)
    }
}

impl SignIn for SettingsSignIn {
    async fn account_id(&self, parts: &mut Parts) -> Option<String> {
        match self {
            SettingsSignIn::Proxy(sign_in) => sign_in.account_id(parts).await,
            SettingsSignIn::Demo(account) => {
                // The server also refuses to start on a non-loopback
                // address; this holds even behind a forwarding proxy setup.
                let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
                peer.ip().is_loopback().then(|| account.clone())
            }
        }
    }
}
