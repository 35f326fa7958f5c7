//! Browser safety for the settings routes: state changes only from the
//! page's own origin and only as JSON, and the headers that keep the page
//! from being framed, scripted from elsewhere or leaking its URL.
//!
//! Cross-site refusal follows the Fetch Metadata approach (as Go's
//! `http.CrossOriginProtection` does): `Sec-Fetch-Site`, sent by every
//! current browser, decides; without it, `Origin` must name the request's
//! own host (`X-Forwarded-Host` / `X-Forwarded-Proto` are believed only from
//! a trusted proxy); a request with neither header is not from a browser
//! and passes. Requiring `Content-Type: application/json` on top of every
//! request with a body means a plain HTML form can never forge a state
//! change (a form always sends a body type, even with no fields), and a
//! cross-site `fetch` with that type needs a CORS preflight that is never
//! granted. A request with no body and no `Content-Type` (a `DELETE` from
//! a generated client) carries nothing a form could have sent, so only the
//! cross-site check applies to it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, ORIGIN, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::request::Parts;
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::proxies::TrustedProxies;
use crate::http::envelope::ApiError;
use crate::redact::redact_token_shaped;

/// The page's policy: its own script and style files only, no inline code,
/// requests only to its own origin, never framed.
pub(crate) const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The answer to a state change from another site.
pub(crate) const CROSS_SITE_MESSAGE: &str = "Cross-site request refused";

static CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");
static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Refuses a state-changing request (any method but GET, HEAD, OPTIONS and
/// TRACE) from another site (403), or with a body or a body type that is
/// not JSON (415), before the sign-in is even asked.
pub(super) async fn refuse_cross_site(
    State(trusted): State<Arc<TrustedProxies>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.method().is_safe() {
        let (parts, body) = request.into_parts();
        if !is_same_origin(&parts, &trusted) {
            tracing::info!(
                method = %parts.method,
                path = %redact_token_shaped(parts.uri.path()),
                "cross-site request refused"
            );
            return ApiError::Forbidden(CROSS_SITE_MESSAGE.into()).into_response();
        }
        let bodyless = body.is_end_stream() && !parts.headers.contains_key(CONTENT_TYPE);
        if !bodyless && !is_json(&parts.headers) {
            return ApiError::UnsupportedMediaType.into_response();
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    next.run(request).await
}

/// Adds the security headers to every response of the settings routes
/// (the page, its assets, the API and its errors), and `Cache-Control:
/// no-store` unless the route chose its own.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        ),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        // For browsers that predate `frame-ancestors`.
        (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        // No other site may even embed these responses (`<script src>`, `<img src>`).
        (
            CROSS_ORIGIN_RESOURCE_POLICY.clone(),
            HeaderValue::from_static("same-origin"),
        ),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ] {
        headers.entry(name).or_insert(value);
    }
    response
}

/// Whether a request comes from the page's own origin (or from no browser).
fn is_same_origin(parts: &Parts, trusted: &TrustedProxies) -> bool {
    if let Some(site) = parts.headers.get(&SEC_FETCH_SITE) {
        // `none`: the user's own action (address bar, bookmark).
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = parts.headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let from_trusted_proxy = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| trusted.contains(peer.ip()));
    let forwarded = |name: &HeaderName| {
        from_trusted_proxy
            .then(|| last_forwarded_value(&parts.headers, name))
            .flatten()
    };
    let host = forwarded(&X_FORWARDED_HOST)
        .or_else(|| parts.headers.get(HOST).and_then(|h| h.to_str().ok()))
        .or_else(|| parts.uri.authority().map(Authority::as_str));
    let scheme = forwarded(&X_FORWARDED_PROTO).or_else(|| parts.uri.scheme_str());
    host.is_some_and(|host| origin_matches(origin, host, scheme))
}

/// The value a proxy appended last (the one our trusted peer wrote).
fn last_forwarded_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then_some(last)
}

/// Whether `origin` (`scheme://host[:port]`) is `host` (`host[:port]`) with
/// `scheme`; when the scheme is unknown (no TLS information reaches the
/// app), hosts and ports are compared alone, as Go's cross-origin check does.
fn origin_matches(origin: &str, host: &str, scheme: Option<&str>) -> bool {
    let Some((origin_scheme, origin_authority)) = origin.split_once("://") else {
        return false; // includes `null`
    };
    let origin_scheme = origin_scheme.to_ascii_lowercase();
    if origin_scheme != "http" && origin_scheme != "https" {
        return false;
    }
    if scheme.is_some_and(|scheme| !scheme.eq_ignore_ascii_case(&origin_scheme)) {
        return false;
    }
    let (Ok(origin_authority), Ok(host)) = (
        origin_authority.parse::<Authority>(),
        host.parse::<Authority>(),
    ) else {
        return false;
    };
    let default_port = |scheme: &str| if scheme == "https" { 443 } else { 80 };
    let host_scheme = scheme.map_or(origin_scheme.clone(), str::to_ascii_lowercase);
    origin_authority.host().eq_ignore_ascii_case(host.host())
        && origin_authority
            .port_u16()
            .unwrap_or(default_port(&origin_scheme))
            == host.port_u16().unwrap_or(default_port(&host_scheme))
}

/// Whether the body is declared as JSON (`application/json`, parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("/settings/api-tokens/tokens");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        parts
    }

    const LOCAL: &str = "127.0.0.1:4000";
    const REMOTE: &str = "203.0.113.9:4000";

    #[test]
    fn fetch_metadata_decides_when_present() {
        let trusted = TrustedProxies::loopback();
        for (site, same) in [
            ("same-origin", true),
            ("none", true),
            ("same-site", false),
            ("cross-site", false),
        ] {
            // Even with a matching Origin: Sec-Fetch-Site comes from the browser itself.
            let p = parts(
                LOCAL,
                &[
                    ("sec-fetch-site", site),
                    ("host", "app.example"),
                    ("origin", "http://app.example"),
                ],
            );
            assert_eq!(is_same_origin(&p, &trusted), same, "{site}");
        }
    }

    #[test]
    fn origin_must_name_the_host() {
        let none = TrustedProxies::none();
        let same = |origin: &str, host: &str| {
            is_same_origin(&parts(REMOTE, &[("origin", origin), ("host", host)]), &none)
        };
        assert!(same("http://app.example", "app.example"));
        assert!(same("https://APP.example", "app.example"));
        assert!(same("http://app.example:8080", "app.example:8080"));
        assert!(same("http://app.example", "app.example:80"));
        assert!(same("http://[::1]:8080", "[::1]:8080"));
        assert!(!same("http://evil.example", "app.example"));
        assert!(!same("http://app.example.evil", "app.example"));
        assert!(!same("http://app.example:8081", "app.example:8080"));
        assert!(!same("null", "app.example"));
        assert!(!same("file://", "app.example"));
        // No Origin and no Sec-Fetch-Site: not a browser.
        assert!(is_same_origin(&parts(REMOTE, &[("host", "x")]), &none));
    }

    #[test]
    fn forwarded_host_and_scheme_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::loopback();
        let behind_proxy = [
            ("origin", "https://app.example"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
        ];
        assert!(is_same_origin(&parts(LOCAL, &behind_proxy), &trusted));
        // From an untrusted peer, the forwarded headers are ignored: Host decides.
        assert!(!is_same_origin(&parts(REMOTE, &behind_proxy), &trusted));
        // A trusted proxy that says http while the page is https: refused.
        let downgraded = [
            ("origin", "https://app.example"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "http"),
        ];
        assert!(!is_same_origin(&parts(LOCAL, &downgraded), &trusted));
        // A list: the last value is the one the trusted peer appended.
        let appended = [
            ("origin", "http://app.example"),
            ("x-forwarded-host", "evil.example, app.example"),
        ];
        assert!(is_same_origin(&parts(LOCAL, &appended), &trusted));
    }

    #[test]
    fn json_content_types() {
        let json = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json(&headers)
        };
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(!json("text/plain"));
        assert!(!json("application/x-www-form-urlencoded"));
        assert!(!json("multipart/form-data; boundary=x"));
        assert!(!json("application/json-patch+json"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
