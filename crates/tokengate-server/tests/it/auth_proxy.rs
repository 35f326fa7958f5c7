//! A tiny authenticating reverse proxy, the way oauth2-proxy or nginx
//! `auth_request` sit in front of the server: every request it forwards is
//! "signed in" as one account (`X-Forwarded-User`, replacing whatever the
//! client sent), with `X-Forwarded-Host` and `X-Forwarded-Proto`. It keeps a
//! log of the paths it saw, so a test can tell that a page made no request
//! it should not have (an injected `<img src=x>`, say).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue};
use tokio::task::JoinHandle;

pub const USER_HEADER: &str = "x-forwarded-user";

pub struct AuthProxy {
    /// `http://127.0.0.1:<port>`, where the browser goes.
    pub base: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct Forward {
    upstream: String,
    account: HeaderValue,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

impl AuthProxy {
    /// Forwards `http://127.0.0.1:<random port>` to `upstream` (a base URL),
    /// signed in as `account`.
    pub async fn start(upstream: &str, account: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let forward = Forward {
            upstream: upstream.trim_end_matches('/').to_owned(),
            account: HeaderValue::from_str(account).unwrap(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            seen: Arc::clone(&seen),
        };
        let app = Router::new().fallback(forward_request).with_state(forward);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, seen, task }
    }

    /// `METHOD /path?query` of every request forwarded so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers that belong to one hop, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    [CONNECTION, TRANSFER_ENCODING, CONTENT_LENGTH, HOST].contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward_request(State(forward): State<Forward>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    forward
        .seen
        .lock()
        .unwrap()
        .push(format!("{} {path}", parts.method));
    let body = to_bytes(body, 2 << 20).await.unwrap();
    let mut headers = http::HeaderMap::new();
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) && name.as_str() != USER_HEADER {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(USER_HEADER, forward.account.clone());
    if let Some(host) = parts.headers.get(HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let upstream = forward
        .client
        .request(parts.method, format!("{}{path}", forward.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let bytes = upstream.bytes().await.unwrap();
    response.body(Body::from(bytes)).unwrap()
}
