//! Who is signed in: the host application's answer, through [`SignIn`].
//!
//! The settings router has no sign-in of its own. The host implements
//! [`SignIn`] over its session (a cookie, a JWT, an auth proxy's header) and
//! the router asks it on every API request; `None` is a 401. For an
//! authenticating reverse proxy, [`ProxyHeaderSignIn`] is ready-made.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ConnectInfo;
use http::HeaderName;
use http::request::Parts;

use super::proxies::TrustedProxies;

/// How the host application says who is signed in.
///
/// `account_id` gets the request's parts (headers, extensions: whatever the
/// host's session layer put there) and answers the signed-in user's account
/// id, the one the host uses with [`Manager::set_account_plan`](crate::Manager::set_account_plan),
/// or `None` when nobody is signed in (the API then answers 401 in the
/// error envelope, and the page says "Your session has expired. Sign in
/// again."). Implement it with an `async fn`:
///
/// ```
/// use http::request::Parts;
/// use tokengate::http::SignIn;
///
/// /// The account id that the host's own session middleware stored in the
/// /// request extensions.
/// #[derive(Clone)]
/// struct CurrentUser(String);
///
/// struct FromExtensions;
///
/// impl SignIn for FromExtensions {
///     async fn account_id(&self, parts: &mut Parts) -> Option<String> {
///         parts.extensions.get::<CurrentUser>().map(|user| user.0.clone())
///     }
/// }
/// ```
///
/// With `tower-sessions`, call `Session::from_request_parts(parts, &())`
/// and read the account id from the session (`examples/settings.rs`).
/// An id that is not a valid account id (1 to 255 characters, no control
/// characters, no surrounding spaces) is treated as `None` and logged.
pub trait SignIn: Send + Sync + 'static {
    /// The signed-in account's id, or `None`.
    fn account_id(&self, parts: &mut Parts) -> impl Future<Output = Option<String>> + Send;
}

/// A boxed future of a sign-in answer.
pub(super) type SignInFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// [`SignIn`] as a trait object, so the router's handlers are not generic.
pub(super) trait DynSignIn: Send + Sync + 'static {
    fn signed_in_account<'a>(&'a self, parts: &'a mut Parts) -> SignInFuture<'a>;
}

impl<T: SignIn> DynSignIn for T {
    fn signed_in_account<'a>(&'a self, parts: &'a mut Parts) -> SignInFuture<'a> {
        Box::pin(SignIn::account_id(self, parts))
    }
}

/// Sign-in by an authenticating reverse proxy: the account id is in a
/// request header (e.g. `X-Forwarded-User`) that the proxy sets after it
/// has signed the user in, the way Grafana's auth proxy and Gitea's
/// reverse-proxy authentication work.
///
/// The header is believed only from a peer in the trusted proxies (the TCP
/// peer address, from axum's `ConnectInfo<SocketAddr>`: serve the app with
/// `into_make_service_with_connect_info::<SocketAddr>()`); from anyone
/// else, or without `ConnectInfo`, the request is not signed in. So is a
/// request with the header twice or empty. The proxy must set the header
/// itself, replacing any value the client sent.
///
/// ```
/// use http::HeaderName;
/// use tokengate::http::{ProxyHeaderSignIn, TrustedProxies};
///
/// let sign_in = ProxyHeaderSignIn::new(
///     HeaderName::from_static("x-forwarded-user"),
///     TrustedProxies::loopback(),
/// );
/// # let _ = sign_in;
/// ```
#[derive(Clone, Debug)]
pub struct ProxyHeaderSignIn {
    header: HeaderName,
    trusted: TrustedProxies,
}

impl ProxyHeaderSignIn {
    /// Believes `header` from peers in `trusted`.
    pub fn new(header: HeaderName, trusted: TrustedProxies) -> Self {
        Self { header, trusted }
    }

    /// The header that carries the account id.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The peers the header is believed from.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// The account id in `parts`, if a trusted peer sent exactly one.
    fn read(&self, parts: &Parts) -> Option<String> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            warn_missing_connect_info();
            return None;
        };
        if !self.trusted.contains(peer.ip()) {
            if parts.headers.contains_key(&self.header) {
                tracing::debug!(peer = %peer.ip(), header = %self.header, "sign-in header from an untrusted peer ignored");
            }
            return None;
        }
        let mut values = parts.headers.get_all(&self.header).iter();
        let value = values.next()?;
        if values.next().is_some() {
            tracing::warn!(header = %self.header, "sign-in header sent more than once: not signed in");
            return None;
        }
        let account_id = std::str::from_utf8(value.as_bytes()).ok()?.trim();
        (!account_id.is_empty()).then(|| account_id.to_owned())
    }
}

impl SignIn for ProxyHeaderSignIn {
    async fn account_id(&self, parts: &mut Parts) -> Option<String> {
        self.read(parts)
    }
}

/// Says once per process that the peer address is missing.
fn warn_missing_connect_info() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "ProxyHeaderSignIn needs the peer address: serve the app with \
             into_make_service_with_connect_info::<SocketAddr>(); every request is signed out until then"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: Option<&str>, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().uri("/settings/api-tokens/account");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        if let Some(peer) = peer {
            parts
                .extensions
                .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        }
        parts
    }

    fn sign_in() -> ProxyHeaderSignIn {
        ProxyHeaderSignIn::new(
            HeaderName::from_static("x-forwarded-user"),
            TrustedProxies::loopback(),
        )
    }

    #[tokio::test]
    async fn only_a_trusted_peer_signs_in() {
        let header = [("x-forwarded-user", " acct_42 ")];
        let mut trusted = parts(Some("127.0.0.1:5000"), &header);
        assert_eq!(
            sign_in().account_id(&mut trusted).await.as_deref(),
            Some("acct_42")
        );
        let mut mapped = parts(Some("[::ffff:127.0.0.1]:5000"), &header);
        assert!(sign_in().account_id(&mut mapped).await.is_some());
        let mut untrusted = parts(Some("203.0.113.9:5000"), &header);
        assert_eq!(sign_in().account_id(&mut untrusted).await, None);
        let mut unknown_peer = parts(None, &header);
        assert_eq!(sign_in().account_id(&mut unknown_peer).await, None);
    }

    #[tokio::test]
    async fn a_missing_empty_or_repeated_header_is_not_signed_in() {
        let peer = Some("127.0.0.1:5000");
        for headers in [
            &[][..],
            &[("x-forwarded-user", "  ")][..],
            &[("x-forwarded-user", "a"), ("x-forwarded-user", "b")][..],
            &[("x-other-user", "acct_42")][..],
        ] {
            let mut parts = parts(peer, headers);
            assert_eq!(sign_in().account_id(&mut parts).await, None, "{headers:?}");
        }
    }
}
