//! The document against the router itself: every route the server answers
//! is documented and every documented operation is a route, with ids,
//! parameters, security and headers that generated clients can rely on.
//!
//! The routes are read from the router's own table (axum's `Debug` of a
//! `Router` lists each path and, per path, the methods it allows), on an
//! app with every optional router on (Settings, GitHub leak reports). A
//! route added without `#[utoipa::path]` (or documented without a route)
//! fails [`every_route_is_documented_and_every_operation_is_a_route`].

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use http::{HeaderName, Method, Request};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand_core::OsRng;
use serde_json::{Value, json};
use tokengate::http::{AdminAuth, GithubKeys, ProxyHeaderSignIn, TrustedProxies};
use tokengate_server::server::{AppState, app};
use tokengate_server::webhooks::Webhooks;

use crate::support::{ADMIN_TOKEN, TestApp, send};

/// Routes that are not an API: the Settings page itself, its two files, and
/// the redirect of its path with a trailing slash (a browser loads them).
const NOT_API: [(&str, &str); 4] = [
    ("GET", "/settings/api-tokens"),
    ("GET", "/settings/api-tokens/"),
    ("GET", "/settings/api-tokens/assets/settings.css"),
    ("GET", "/settings/api-tokens/assets/settings.js"),
];

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// The server with every optional router on.
async fn full_app() -> (TestApp, Router) {
    let test_app = TestApp::new().await;
    let key = SigningKey::random(&mut OsRng);
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let file = json!({"public_keys": [{"key_identifier": "k1", "key": pem, "is_current": true}]});
    let keys = GithubKeys::from_json(&file.to_string()).unwrap();
    let sign_in = ProxyHeaderSignIn::new(
        HeaderName::from_static("x-forwarded-user"),
        TrustedProxies::loopback(),
    );
    let router = app(AppState::new(
        test_app.gate.clone(),
        AdminAuth::from_token(ADMIN_TOKEN).unwrap(),
    )
    .with_github_keys(keys, None)
    .with_settings(sign_in)
    .with_webhooks(Webhooks::new(std::sync::Arc::new(
        tokengate::SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap(),
    ))));
    (test_app, router)
}

async fn document_of(router: &Router) -> Value {
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let response = send(router, request).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

/// `(METHOD, path)` of every route in `router`'s table, and the paths of
/// routes that take any method (the catch-alls). HEAD is left out where GET
/// is there (axum answers it with the GET handler).
fn routes_of(router: &Router) -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let table = format!("{router:?}");
    // The path router comes first; the fallback router's table follows.
    let table = &table[..table.find("fallback_router:").expect("a Router's Debug")];
    let (routes, node) = table.split_at(table.find("node: Node").expect("a route table"));
    let mut paths = std::collections::BTreeMap::new();
    for entry in node.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once("): \"").expect("RouteId(n): \"path\"");
        let path = &rest[..rest.find('"').unwrap()];
        paths.insert(id.to_owned(), path.to_owned());
    }
    let mut routed = BTreeSet::new();
    let mut any_method = BTreeSet::new();
    for entry in routes.split("RouteId(").skip(1) {
        let (id, rest) = entry.split_once(')').unwrap();
        let path = paths[id].clone();
        let allow = rest
            .split("allow_header: ")
            .nth(1)
            .unwrap_or_else(|| panic!("{path}: not a method router: {rest}"));
        let Some(methods) = allow.strip_prefix("Bytes(b\"") else {
            assert!(allow.starts_with("Skip"), "{path}: allow header {allow}");
            any_method.insert(path);
            continue;
        };
        let methods: Vec<&str> = methods[..methods.find('"').unwrap()].split(',').collect();
        for method in &methods {
            if *method == "HEAD" && methods.contains(&"GET") {
                continue;
            }
            routed.insert((method.to_string(), path.clone()));
        }
    }
    (routed, any_method)
}

fn documented_operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in HTTP_METHODS {
            if let Some(operation) = item.get(method) {
                operations.push((method.to_uppercase(), path.clone(), operation));
            }
        }
    }
    operations
}

#[tokio::test]
async fn every_route_is_documented_and_every_operation_is_a_route() {
    let (_app, router) = full_app().await;
    let document = document_of(&router).await;
    let (routed, any_method) = routes_of(&router);
    assert!(
        routed.len() > 25,
        "only {} routes read from the router's table: {routed:?}",
        routed.len()
    );
    // Taking any method is for the catch-alls that answer 404 in the
    // envelope (`/admin` itself is one: behind the admin check, like the
    // rest), and for `/forward-auth`: a proxy's auth subrequest keeps the
    // client's method (nginx), so it answers every method. It is the
    // proxies' protocol (README, "Put it in front of any API"), not a client
    // API, and the one route left out of the document.
    for path in &any_method {
        assert!(
            path.contains("{*") || path == "/admin" || path == "/forward-auth",
            "{path} takes any method"
        );
    }
    let not_api: BTreeSet<(String, String)> = NOT_API
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let api: BTreeSet<(String, String)> = routed.difference(&not_api).cloned().collect();
    let documented: BTreeSet<(String, String)> = documented_operations(&document)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let undocumented: Vec<_> = api.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&api).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes without documentation: {undocumented:?}; documented without a route: {unrouted:?}"
    );
    // The page's routes really are routes (so the list above stays true).
    for route in &not_api {
        assert!(routed.contains(route), "{route:?} is no longer routed");
    }
}

#[tokio::test]
async fn operation_ids_are_unique_and_name_their_surface() {
    let (_app, router) = full_app().await;
    let document = document_of(&router).await;
    let mut ids = BTreeSet::new();
    for (method, path, operation) in documented_operations(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: {id} is used twice"
        );
        // The surfaces this issue named; a route of another surface (added
        // later) only needs a unique id.
        let surface = match path.split('/').nth(1).unwrap() {
            "admin" => "admin_",
            "settings" => "settings_",
            "api" => "api_",
            "leaks" => "leaks_",
            "health" | "ready" | "metrics" | "openapi.json" => "ops_",
            _ => "",
        };
        assert!(
            id.starts_with(surface),
            "{method} {path}: {id} does not start with {surface}"
        );
    }
}

#[tokio::test]
async fn parameters_security_servers_and_request_ids_are_declared() {
    let (_app, router) = full_app().await;
    let document = document_of(&router).await;
    assert_eq!(document["servers"][0]["url"], "/");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["settings_sign_in"]["type"], "apiKey");
    assert_eq!(schemes["settings_sign_in"]["in"], "header");
    assert_eq!(schemes["settings_sign_in"]["name"], "x-forwarded-user");

    for (method, path, operation) in documented_operations(&document) {
        let what = format!("{method} {path}");
        // Security: said on every operation, and what the route needs.
        let security = operation["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no security"));
        let schemes: Vec<&str> = security
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
            .collect();
        // (A route of another surface, added later, only has to say.)
        let expected: Option<&[&str]> = match path.split('/').nth(1).unwrap() {
            "admin" => Some(&["admin_token"]),
            "settings" => Some(&["settings_sign_in"]),
            "api" => Some(&["api_token"]),
            "leaks" | "health" | "ready" | "metrics" | "openapi.json" => Some(&[]),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(schemes, expected, "{what}");
        }
        // Parameters: every `{name}` of the path is a path parameter, and
        // nothing else is.
        let in_path: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .map(|rest| &rest[..rest.find('}').unwrap()])
            .collect();
        let mut declared_path = BTreeSet::new();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            match parameter["in"].as_str().unwrap() {
                "path" => {
                    assert!(in_path.contains(name), "{what}: {name} is not in the path");
                    declared_path.insert(name);
                }
                "query" => assert!(!in_path.contains(name), "{what}: {name}"),
                "header" => {}
                other => panic!("{what}: {name} in {other}"),
            }
        }
        assert_eq!(declared_path, in_path, "{what}: path parameters");
        // Every response says it carries X-Request-Id.
        for (status, response) in operation["responses"].as_object().unwrap() {
            let response = match response["$ref"].as_str() {
                Some(reference) => document.pointer(&reference[1..]).unwrap(),
                None => response,
            };
            assert_eq!(
                response["headers"]["X-Request-Id"]["schema"]["type"], "string",
                "{what} {status}"
            );
        }
    }
    // The query parameters the old document put in the path.
    let query_of = |path: &str, method: &str| -> BTreeSet<String> {
        document["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        query_of("/admin/audit", "get"),
        ["account_id", "action", "before", "limit", "token_id"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        query_of("/admin/tokens/{token_id}/usage", "get"),
        ["hours".to_owned()].into()
    );
    assert_eq!(
        query_of("/settings/api-tokens/audit", "get"),
        ["before", "limit"].map(String::from).into()
    );
    let hours = &document["paths"]["/admin/tokens/{token_id}/usage"]["get"]["parameters"][1];
    assert_eq!(hours["schema"]["minimum"], 1, "{hours}");
    assert_eq!(hours["schema"]["maximum"], 2160, "{hours}");
    // The rotation body may be left out, as the server and the README say.
    for path in [
        "/admin/tokens/{token_id}/rotate",
        "/settings/api-tokens/tokens/{id}/rotate",
    ] {
        assert_eq!(
            document["paths"][path]["post"]["requestBody"]["required"], false,
            "{path}"
        );
    }
    // Both creation routes list the token cap's 409.
    for path in [
        "/admin/accounts/{account_id}/tokens",
        "/settings/api-tokens/tokens",
    ] {
        assert_eq!(
            document["paths"][path]["post"]["responses"]["409"]["$ref"],
            "#/components/responses/TokenCapReached",
            "{path}"
        );
    }
}

#[tokio::test]
async fn shared_responses_are_referenced_not_written_out() {
    let (_app, router) = full_app().await;
    let document = document_of(&router).await;
    let text = document.to_string();
    for name in document["components"]["responses"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(
            text.contains(&format!("\"#/components/responses/{name}\"")),
            "response component {name} is never used"
        );
    }
    for name in document["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
    {
        assert!(
            text.contains(&format!("\"#/components/schemas/{name}\"")),
            "schema {name} is never used"
        );
    }
    for path in ["/api/v1/external_tests", "/api/v1/external_tests/providers"] {
        assert_eq!(
            document["paths"][path]["get"]["responses"]["403"]["$ref"],
            "#/components/responses/ApiForbidden",
            "{path}"
        );
    }
    // The in-process app without Settings has no settings scheme.
    let plain = TestApp::new().await;
    let response = plain.call(Method::GET, "/openapi.json", None, None).await;
    assert!(
        response.json()["components"]["securitySchemes"]
            .get("settings_sign_in")
            .is_none()
    );
}
