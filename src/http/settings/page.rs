//! The page itself: one HTML file, one script, one style sheet, embedded in
//! the library (no Node build step, no third-party assets). The HTML names
//! the router's prefix in three places (`{{PREFIX}}`), filled in once when
//! the router is built.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

const PAGE_TEMPLATE: &str = include_str!("assets/settings.html");
const SCRIPT: &[u8] = include_bytes!("assets/settings.js");
const STYLE: &[u8] = include_bytes!("assets/settings.css");

/// The page, ready to serve.
#[derive(Clone, Debug)]
pub(super) struct Page {
    html: Bytes,
}

impl Page {
    /// The page for a router mounted at `prefix`.
    pub(super) fn new(prefix: &str) -> Self {
        let html = PAGE_TEMPLATE.replace("{{PREFIX}}", &escape_attribute(prefix));
        Self {
            html: Bytes::from(html),
        }
    }

    /// `GET {prefix}`: never cached, like the data it shows.
    pub(super) fn response(&self) -> Response {
        (
            [
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            self.html.clone(),
        )
            .into_response()
    }
}

/// A static file of the page, with an `ETag` so a browser revalidates
/// cheaply after an upgrade instead of running a stale script.
#[derive(Clone, Debug)]
pub(super) struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    /// `settings.js`.
    pub(super) fn script() -> Self {
        Self::new(SCRIPT, "text/javascript; charset=utf-8")
    }

    /// `settings.css`.
    pub(super) fn style() -> Self {
        Self::new(STYLE, "text/css; charset=utf-8")
    }

    /// The ETag is `"` + the first 16 hex digits of the file's SHA-256 + `"`.
    fn new(body: &'static [u8], content_type: &'static str) -> Self {
        let digest = Sha256::digest(body);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\""))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        Self {
            body,
            content_type,
            etag,
        }
    }

    /// The file, or 304 when the browser already has this version.
    pub(super) fn response(&self, request_headers: &HeaderMap) -> Response {
        let etag = self.etag.clone();
        let cached = request_headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| tag.trim() == etag || tag.trim() == "*");
        let headers = [
            (CONTENT_TYPE, HeaderValue::from_static(self.content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (ETAG, etag),
        ];
        if cached {
            (StatusCode::NOT_MODIFIED, headers).into_response()
        } else {
            (headers, Bytes::from_static(self.body)).into_response()
        }
    }
}

/// Escapes text for a double- or single-quoted HTML attribute value.
fn escape_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_fills_every_placeholder_escaped() {
        let page = Page::new("/a&b\"c");
        let html = std::str::from_utf8(&page.html).unwrap();
        assert!(!html.contains("{{PREFIX}}"));
        assert_eq!(html.matches("/a&amp;b&quot;c").count(), 3, "{html}");
        assert!(html.contains(r#"<body data-api-base="/a&amp;b&quot;c">"#));
    }

    #[test]
    fn assets_revalidate_by_etag() {
        let script = Asset::script();
        let fresh = script.response(&HeaderMap::new());
        assert_eq!(fresh.status(), StatusCode::OK);
        let etag = fresh.headers()[ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, etag);
        assert_eq!(script.response(&headers).status(), StatusCode::NOT_MODIFIED);
        assert_ne!(script.etag, Asset::style().etag);
    }
}
