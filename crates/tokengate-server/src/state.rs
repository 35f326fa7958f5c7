//! The state the server's routes share.

use std::path::PathBuf;
use std::sync::Arc;

use tokengate::TokenGate;
use tokengate::http::{AdminAuth, GithubKeys};

use crate::SettingsSignIn;
use crate::forward::ForwardAuth;
use crate::stack::BodyDeadlines;
use crate::webhooks::Webhooks;

/// What the server's routes need.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The token engine.
    pub gate: TokenGate,
    /// The admin credential.
    pub admin: Arc<AdminAuth>,
    /// GitHub's secret scanning keys (and the file to re-read them from):
    /// `POST /leaks/github` exists only with them.
    pub github_keys: Option<(GithubKeys, Option<PathBuf>)>,
    /// The Settings > API Tokens page's sign-in (`SETTINGS_AUTH_HEADER`,
    /// or `--settings-demo-user`); `None`: the page and its API are not served.
    pub settings: Option<SettingsSignIn>,
    /// The deadlines of request bodies (`BODY_TIMEOUT_SECS`, `BODY_MIN_RATE`).
    pub body_deadlines: BodyDeadlines,
    /// `/forward-auth` and `/v1/verify`: route scopes, trusted proxies,
    /// `VERIFY_TOKEN`.
    pub forward_auth: ForwardAuth,
    /// `/admin/webhooks` and the webhook counters in `/metrics`; `None`: not served.
    pub webhooks: Option<Webhooks>,
}

impl AppState {
    /// The state of a server with `gate` and the admin credential `admin`.
    pub fn new(gate: TokenGate, admin: AdminAuth) -> Self {
        Self {
            gate,
            admin: Arc::new(admin),
            github_keys: None,
            settings: None,
            body_deadlines: BodyDeadlines::default(),
            forward_auth: ForwardAuth::default(),
            webhooks: None,
        }
    }

    /// With `POST /leaks/github`, checking signatures with `keys`.
    pub fn with_github_keys(mut self, keys: GithubKeys, file: Option<PathBuf>) -> Self {
        self.github_keys = Some((keys, file));
        self
    }

    /// With these deadlines for request bodies instead of the defaults.
    pub fn with_body_deadlines(mut self, deadlines: BodyDeadlines) -> Self {
        self.body_deadlines = deadlines;
        self
    }

    /// With this forward auth and verify configuration.
    pub fn with_forward_auth(mut self, forward_auth: ForwardAuth) -> Self {
        self.forward_auth = forward_auth;
        self
    }

    /// With `/admin/webhooks` (the delivery worker is started separately,
    /// with [`Webhooks::spawn`]).
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// With the Settings > API Tokens page, signed in by `sign_in`.
    pub fn with_settings(mut self, sign_in: impl Into<SettingsSignIn>) -> Self {
        self.settings = Some(sign_in.into());
        self
    }
}
