//! `GET /openapi.json`: an OpenAPI 3.1 document that lists every admin path of
//! DESIGN.md, both security schemes, and the error envelope on every error
//! response; and the documented shapes match what the server actually sends.

use std::collections::BTreeSet;

use crate::support::{FORBIDDEN, TestApp, UNAUTHORIZED, UNAVAILABLE};
use http::Method;
use serde_json::Value;

/// DESIGN.md's admin table, plus health and readiness.
const ADMIN_OPERATIONS: [(&str, &[&str]); 8] = [
    ("/health", &["get"]),
    ("/ready", &["get"]),
    ("/admin/plans", &["get"]),
    ("/admin/plans/{plan}", &["put", "patch"]),
    ("/admin/accounts/{account_id}", &["get", "put"]),
    ("/admin/accounts/{account_id}/tokens", &["get", "post"]),
    ("/admin/tokens/{token_id}", &["delete", "get"]),
    ("/admin/tokens/{token_id}/rotate", &["post"]),
];

const API_PATHS: [&str; 2] = ["/api/v1/external_tests/providers", "/api/v1/external_tests"];

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

async fn fetch_document(app: &TestApp) -> Value {
    let response = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), "application/json");
    response.json()
}

fn methods(path_item: &Value) -> BTreeSet<&str> {
    HTTP_METHODS
        .into_iter()
        .filter(|method| path_item.get(*method).is_some())
        .collect()
}

/// Follows a local `$ref` (`#/components/...`), or returns `value` itself.
fn resolve<'d>(document: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {reference}"));
            let target = document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(document, target)
        }
        None => value,
    }
}

fn collect_refs<'v>(value: &'v Value, refs: &mut Vec<&'v str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference);
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// Every operation of the document, as (path, method, operation).
fn operations(document: &Value) -> Vec<(&str, &str, &Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in methods(item) {
            all.push((path.as_str(), method, &item[method]));
        }
    }
    all
}

fn security_schemes_of(operation: &Value) -> Vec<&str> {
    operation["security"]
        .as_array()
        .map(|requirements| {
            requirements
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a JSON value against a documented object schema: every required
/// property is there, and nothing undocumented is.
fn assert_documented(document: &Value, schema: &Value, value: &Value, what: &str) {
    let schema = resolve(document, schema);
    if let Some(items) = schema.get("items") {
        for item in value
            .as_array()
            .unwrap_or_else(|| panic!("{what}: not an array"))
        {
            assert_documented(document, items, item, what);
        }
        return;
    }
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {value}"));
    // An `allOf` (a flattened struct) documents the union of its parts.
    let parts: Vec<&Value> = match schema["allOf"].as_array() {
        Some(parts) => parts.iter().map(|part| resolve(document, part)).collect(),
        None => vec![schema],
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in parts {
        properties.extend(
            part["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{what}: schema without properties: {part}"))
                .clone(),
        );
        required.extend(part["required"].as_array().into_iter().flatten().cloned());
    }
    for key in object.keys() {
        assert!(
            properties.contains_key(key),
            "{what}: undocumented field {key}"
        );
    }
    for required in required {
        let required = required.as_str().unwrap();
        assert!(
            object.contains_key(required),
            "{what}: missing required {required}"
        );
    }
}

/// The `data` schema of an operation's success response.
fn success_data_schema<'d>(
    document: &'d Value,
    path: &str,
    method: &str,
    status: &str,
) -> &'d Value {
    let response = resolve(
        document,
        &document["paths"][path][method]["responses"][status],
    );
    let envelope = resolve(document, &response["content"]["application/json"]["schema"]);
    assert_eq!(
        envelope["properties"]["success"]["enum"],
        serde_json::json!([true]),
        "{method} {path}: not a success envelope"
    );
    &envelope["properties"]["data"]
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_package_version() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert_eq!(document["info"]["title"], "tokengate");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!document["info"]["description"].as_str().unwrap().is_empty());

    // Every reference points at something that exists.
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("local $ref");
        assert!(
            document.pointer(pointer).is_some(),
            "dangling $ref {reference}"
        );
    }
}

#[tokio::test]
async fn every_admin_path_is_listed_with_its_methods_and_the_admin_scheme() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let paths = &document["paths"];
    for (path, expected) in ADMIN_OPERATIONS {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is missing from the document"));
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(methods(item), expected, "methods of {path}");
        for method in expected {
            let operation = &item[method];
            assert!(operation["operationId"].is_string(), "{method} {path}");
            assert!(
                !operation["summary"].as_str().unwrap_or("").is_empty(),
                "{method} {path}"
            );
            let schemes = security_schemes_of(operation);
            if path.starts_with("/admin/") {
                assert_eq!(schemes, ["admin_token"], "{method} {path}");
                let unauthorized = resolve(&document, &operation["responses"]["401"]);
                assert_eq!(
                    unauthorized["content"]["application/json"]["example"]["error"],
                    "Invalid or missing admin token",
                    "{method} {path}"
                );
            } else {
                assert!(schemes.is_empty(), "{path} needs no auth: {schemes:?}");
            }
        }
    }
    // Creation and rotation answer 201; the bodies are documented.
    for (path, method) in [
        ("/admin/accounts/{account_id}/tokens", "post"),
        ("/admin/tokens/{token_id}/rotate", "post"),
    ] {
        let operation = &paths[path][method];
        assert!(operation["responses"]["201"].is_object(), "{method} {path}");
        assert!(operation["requestBody"].is_object(), "{method} {path}");
    }
    assert!(paths["/admin/plans/{plan}"]["put"]["requestBody"].is_object());
    assert!(paths["/admin/accounts/{account_id}"]["put"]["requestBody"].is_object());
    // Path parameters are declared.
    let parameters = &paths["/admin/tokens/{token_id}"]["get"]["parameters"];
    assert_eq!(parameters[0]["name"], "token_id");
    assert_eq!(parameters[0]["in"], "path");
    assert_eq!(parameters[0]["required"], true);
}

#[tokio::test]
async fn both_bearer_schemes_exist() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let schemes = &document["components"]["securitySchemes"];
    for name in ["admin_token", "api_token"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }
    assert_eq!(schemes.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn every_error_response_is_the_error_envelope() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let envelope = &document["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(envelope["type"], "object");
    assert_eq!(envelope["properties"]["success"]["type"], "boolean");
    assert_eq!(
        envelope["properties"]["success"]["enum"],
        serde_json::json!([false])
    );
    assert_eq!(envelope["properties"]["error"]["type"], "string");
    let required: BTreeSet<&str> = envelope["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, BTreeSet::from(["error", "success"]));

    let mut error_responses = 0;
    for (path, method, operation) in operations(&document) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            error_responses += 1;
            let response = resolve(&document, response);
            let content = response["content"].as_object().unwrap();
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/json"],
                "{method} {path} {status}"
            );
            assert_eq!(
                content["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorEnvelope",
                "{method} {path} {status}"
            );
            // One example, or several (a route's 403 for two reasons).
            let media = &content["application/json"];
            let examples: Vec<&Value> = match media["examples"].as_object() {
                Some(examples) => examples.values().map(|e| &e["value"]).collect(),
                None => vec![&media["example"]],
            };
            for example in examples {
                assert_eq!(example["success"], false, "{method} {path} {status}");
                assert!(example["error"].is_string(), "{method} {path} {status}");
            }
        }
    }
    assert!(
        error_responses > 30,
        "only {error_responses} error responses"
    );
}

#[tokio::test]
async fn the_api_routes_document_the_gate_contract() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let exact = |body: &str| serde_json::from_str::<Value>(body).unwrap();
    for path in API_PATHS {
        let item = &document["paths"][path];
        assert_eq!(methods(item), BTreeSet::from(["get"]), "{path}");
        let operation = &item["get"];
        assert_eq!(security_schemes_of(operation), ["api_token"], "{path}");
        let responses = &operation["responses"];
        let example = |status: &str| {
            resolve(&document, &responses[status])["content"]["application/json"]["example"].clone()
        };
        assert_eq!(example("401"), exact(UNAUTHORIZED), "{path}");
        // The 403: no API access, or the token lacks the route's scope.
        let scope = if path.ends_with("providers") {
            "providers:read"
        } else {
            "tests:read"
        };
        assert_eq!(
            operation["security"][0]["api_token"],
            serde_json::json!([scope]),
            "{path}"
        );
        let forbidden =
            &resolve(&document, &responses["403"])["content"]["application/json"]["examples"];
        assert_eq!(
            forbidden["no_api_access"]["value"],
            exact(FORBIDDEN),
            "{path}"
        );
        assert_eq!(
            forbidden[format!("missing_scope_{scope}")]["value"]["error"],
            format!("Token is missing the required scope: {scope}"),
            "{path}"
        );
        assert_eq!(example("503"), exact(UNAVAILABLE), "{path}");
        let message = example("429")["error"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with("Rate limit exceeded. Try again in ")
                && message.ends_with(" seconds."),
            "{message}"
        );

        let rate_limit_headers = [
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ];
        let ok = resolve(&document, &responses["200"]);
        let limited = resolve(&document, &responses["429"]);
        for name in rate_limit_headers {
            for (status, response) in [("200", ok), ("429", limited)] {
                assert_eq!(
                    response["headers"][name]["schema"]["type"], "integer",
                    "{path} {status} {name}"
                );
            }
        }
        assert_eq!(
            limited["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
        assert!(resolve(&document, &responses["401"])["headers"]["WWW-Authenticate"].is_object());
    }
}

#[tokio::test]
async fn documented_shapes_match_real_responses() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let data = |response: crate::support::TestResponse| {
        assert!(response.status.is_success(), "{}", response.body);
        response.json()["data"].clone()
    };

    let admin = app.admin_api();
    let plan = admin.set_plan("team", true, 500).await;
    let schema = success_data_schema(&document, "/admin/plans/{plan}", "put", "200");
    assert_documented(&document, schema, &plan, "PUT plan");
    let plans = data(app.admin(Method::GET, "/admin/plans", None).await);
    let schema = success_data_schema(&document, "/admin/plans", "get", "200");
    assert_documented(&document, schema, &plans, "GET plans");

    let account = admin.set_account("acct_1", "pro").await;
    let schema = success_data_schema(&document, "/admin/accounts/{account_id}", "put", "200");
    assert_documented(&document, schema, &account, "PUT account");

    let created = admin.create_token("acct_1", "CI").await;
    let schema = success_data_schema(
        &document,
        "/admin/accounts/{account_id}/tokens",
        "post",
        "201",
    );
    assert_documented(&document, schema, &created, "POST token");
    let id = created["id"].as_str().unwrap();

    let tokens = admin.tokens("acct_1").await;
    let schema = success_data_schema(
        &document,
        "/admin/accounts/{account_id}/tokens",
        "get",
        "200",
    );
    assert_documented(&document, schema, &tokens, "GET tokens");

    let rotated = admin.rotate(id, 60).await;
    let schema = success_data_schema(&document, "/admin/tokens/{token_id}/rotate", "post", "201");
    assert_documented(&document, schema, &rotated, "rotate");
    assert!(rotated["replaces"].is_object());

    let revoked = admin.revoke(rotated["id"].as_str().unwrap()).await;
    let schema = success_data_schema(&document, "/admin/tokens/{token_id}", "delete", "200");
    assert_documented(&document, schema, &revoked, "revoke");

    let token = created["token"].as_str().unwrap();
    for path in API_PATHS {
        let response = app
            .call(Method::GET, path, Some(&format!("Bearer {token}")), None)
            .await;
        let schema = success_data_schema(&document, path, "get", "200");
        assert_documented(&document, schema, &data(response), path);
    }
    let health = data(app.call(Method::GET, "/health", None, None).await);
    assert_documented(
        &document,
        success_data_schema(&document, "/health", "get", "200"),
        &health,
        "health",
    );
}

#[tokio::test]
async fn documented_error_headers_are_sent() {
    let app = TestApp::new().await;
    let document = fetch_document(&app).await;
    let documented = |path: &str, method: &str, status: &str| -> Vec<String> {
        let response = resolve(
            &document,
            &document["paths"][path][method]["responses"][status],
        );
        response["headers"]
            .as_object()
            .map(|headers| headers.keys().map(|name| name.to_lowercase()).collect())
            .unwrap_or_default()
    };
    let assert_sent =
        |response: &crate::support::TestResponse, headers: Vec<String>, what: &str| {
            assert!(!headers.is_empty(), "{what}: no documented headers");
            for name in headers {
                assert!(
                    response.headers.contains_key(&name),
                    "{what}: {name} not sent"
                );
            }
        };

    let admin = app.call(Method::GET, "/admin/plans", None, None).await;
    assert_eq!(admin.status, 401);
    assert_sent(
        &admin,
        documented("/admin/plans", "get", "401"),
        "admin 401",
    );
    let api = app
        .call(Method::GET, "/api/v1/external_tests", None, None)
        .await;
    assert_eq!(api.status, 401);
    assert_sent(
        &api,
        documented("/api/v1/external_tests", "get", "401"),
        "api 401",
    );

    app.store.fail(true);
    let admin = app.admin(Method::GET, "/admin/plans", None).await;
    assert_eq!(admin.status, 503);
    assert_sent(
        &admin,
        documented("/admin/plans", "get", "503"),
        "admin 503",
    );
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, 503);
    assert_sent(&ready, documented("/ready", "get", "503"), "ready 503");
}
