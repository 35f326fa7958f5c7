//! Guarding any stack against the real binary: `/forward-auth` behind real
//! nginx and Caddy with the shipped configs, and `POST /v1/verify`, each
//! compared byte for byte with the embedded layer (the demo API's
//! `/api/v1/external_tests`, which needs `tests:read`, like the route rule
//! the proxied path gets here).

use serde_json::{Value, json};
use tempfile::TempDir;
use tokengate_testkit::{FORBIDDEN, UNAUTHORIZED};

use crate::process::{Server, base_env};
use crate::proxies::{
    Proxy, RawResponse, find_or_skip, raw, start_caddy, start_nginx, start_upstream,
};
use crate::support::ADMIN_TOKEN;

const VERIFY_TOKEN: &str = "verify-only-credential-0123456789";
const GUARDED: &str = "/api/v1/external_tests";
const SCOPE_403: &str =
    r#"{"success": false, "error": "Token is missing the required scope: tests:read"}"#;

const ROUTES: &str = r#"
[[route]]
path = "/api/v1/external_tests"
methods = ["GET"]
scopes = ["tests:read"]

[[route]]
path = "/api/v1/reports/**"
scopes = ["reports:read"]
"#;

/// The headers of the contract that must match exactly (the remaining
/// count steps, and is compared on its own).
const CONTRACT: [&str; 6] = [
    "content-type",
    "www-authenticate",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-reset",
    "ratelimit-policy",
];

struct Stack {
    dir: TempDir,
    server: Server,
    tokens: Tokens,
}

struct Tokens {
    pro: String,
    pro_id: String,
    free: String,
    providers_only: String,
    tiny: String,
    doomed: String,
    doomed_id: String,
}

async fn admin(server: &Server, method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut request = crate::process::client()
        .request(method.clone(), server.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let json: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {json}");
    json["data"].clone()
}

async fn token(server: &Server, account: &str, scopes: Option<&[&str]>) -> (String, String) {
    let mut body = json!({"name": "proxy test"});
    if let Some(scopes) = scopes {
        body["scopes"] = json!(scopes);
    }
    let data = admin(
        server,
        reqwest::Method::POST,
        &format!("/admin/accounts/{account}/tokens"),
        body,
    )
    .await;
    (
        data["token"].as_str().unwrap().to_owned(),
        data["id"].as_str().unwrap().to_owned(),
    )
}

/// tokengate with the route rules and a verify-only credential, and its tokens.
async fn start_stack(extra: &[(&str, &str)]) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, ROUTES).unwrap();
    let mut env = base_env(dir.path());
    env.push(("FORWARD_AUTH_ROUTES".into(), routes.display().to_string()));
    env.push(("VERIFY_TOKEN".into(), VERIFY_TOKEN.into()));
    for (name, value) in extra {
        env.push(((*name).into(), (*value).into()));
    }
    let server = Server::start(dir.path(), &env);
    let put = reqwest::Method::PUT;
    admin(
        &server,
        put.clone(),
        "/admin/plans/tiny",
        json!({"api_access": true, "requests_per_hour": 3}),
    )
    .await;
    for (account, plan) in [
        ("acct-pro", "pro"),
        // On Pro until its token is made: a plan without API access gets
        // no new tokens; then it moves to Free, for the 403.
        ("acct-free", "pro"),
        ("acct-tiny", "tiny"),
    ] {
        admin(
            &server,
            put.clone(),
            &format!("/admin/accounts/{account}"),
            json!({"plan": plan}),
        )
        .await;
    }
    let (pro, pro_id) = token(&server, "acct-pro", None).await;
    let (free, _) = token(&server, "acct-free", None).await;
    admin(
        &server,
        put.clone(),
        "/admin/accounts/acct-free",
        json!({"plan": "free"}),
    )
    .await;
    let (providers_only, _) = token(&server, "acct-pro", Some(&["providers:read"])).await;
    let (tiny, _) = token(&server, "acct-tiny", None).await;
    let (doomed, doomed_id) = token(&server, "acct-pro", None).await;
    Stack {
        dir,
        server,
        tokens: Tokens {
            pro,
            pro_id,
            free,
            providers_only,
            tiny,
            doomed,
            doomed_id,
        },
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET path` with `token` (if any) and `extra` headers.
async fn get(addr: &str, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> RawResponse {
    let authorization = token.map(bearer);
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(value) = &authorization {
        headers.push(("Authorization", value));
    }
    raw(addr, "GET", path, &headers).await
}

/// The 429 body for the response's own `Retry-After`.
fn rate_limited_body(response: &RawResponse) -> String {
    let wait = response.one("retry-after").expect("Retry-After on a 429");
    format!(r#"{{"success": false, "error": "Rate limit exceeded. Try again in {wait} seconds."}}"#)
}

/// `proxied` is what the embedded layer answered (`direct`, just before):
/// the same status, body and contract headers, one request later.
fn assert_same_contract(what: &str, direct: &RawResponse, proxied: &RawResponse) {
    assert_eq!(proxied.status, direct.status, "{what}: {proxied:?}");
    if direct.status == 429 {
        // The wait is whole seconds from now: a second may pass between the two.
        assert_eq!(proxied.body, rate_limited_body(proxied), "{what}");
        let wait = |r: &RawResponse| r.one("retry-after").unwrap().parse::<i64>().unwrap();
        assert!((wait(direct) - wait(proxied)).abs() <= 1, "{what}");
    } else {
        assert_eq!(proxied.body, direct.body, "{what}");
    }
    for name in CONTRACT {
        if name == "retry-after" && direct.status == 429 {
            continue;
        }
        assert_eq!(
            proxied.one(name),
            direct.one(name),
            "{what}: {name}\n{direct:?}\n{proxied:?}"
        );
    }
    let remaining = |r: &RawResponse| {
        r.one("x-ratelimit-remaining")
            .map(|v| v.parse::<u64>().unwrap())
    };
    match (remaining(direct), remaining(proxied)) {
        (Some(d), Some(p)) if direct.status == 429 => assert_eq!((d, p), (0, 0), "{what}"),
        (Some(d), Some(p)) => assert_eq!(p + 1, d, "{what}: one request, one count"),
        (None, None) => {}
        other => panic!("{what}: X-RateLimit-Remaining {other:?}"),
    }
}

/// The five outcomes, revocation, counting, forged headers and path tricks
/// through one proxy. `strips_every_prefixed_header`: Caddy removes any
/// `X-Tokengate-*` a client sends; nginx replaces the identity headers.
async fn exercise(stack: &Stack, proxy: &Proxy, strips_every_prefixed_header: bool) {
    let tg = stack.server.addr();
    let px = proxy.addr.as_str();
    let t = &stack.tokens;

    // 401 without a token, 401 with a bad one, 403 for the plan, the scope's 403.
    for (what, token) in [
        ("missing token", None),
        ("invalid token", Some("iit_not-a-real-token")),
        ("plan without access", Some(t.free.as_str())),
        ("missing scope", Some(t.providers_only.as_str())),
    ] {
        let direct = get(tg, GUARDED, token, &[]).await;
        let proxied = get(px, GUARDED, token, &[]).await;
        assert_same_contract(what, &direct, &proxied);
    }
    let scoped = get(px, GUARDED, Some(&t.providers_only), &[]).await;
    assert_eq!((scoped.status, scoped.body.as_str()), (403, SCOPE_403));
    // Rendering the denial did not count it again.
    let after = get(tg, GUARDED, Some(&t.providers_only), &[]).await;
    let remaining = |r: &RawResponse| {
        r.one("x-ratelimit-remaining")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(remaining(&after) + 1, remaining(&scoped), "{after:?}");
    assert_eq!(get(px, GUARDED, Some(&t.free), &[]).await.body, FORBIDDEN);
    assert_eq!(get(px, GUARDED, None, &[]).await.body, UNAUTHORIZED);

    // 200: the upstream's answer with the rate-limit headers; it got the identity.
    let direct = get(tg, GUARDED, Some(&t.pro), &[]).await;
    let mut forged = vec![
        ("X-Tokengate-Account-Id", "acct-evil"),
        ("X-Tokengate-Token-Id", "forged"),
        ("X-Tokengate-Plan", "enterprise"),
        ("X-Tokengate-Scopes", "*"),
        ("X-Tokengate-Status", "200"),
    ];
    let extra = ("X-Tokengate-Extra", "forged");
    if strips_every_prefixed_header {
        forged.push(extra);
    }
    let proxied = get(px, GUARDED, Some(&t.pro), &forged).await;
    assert_eq!(proxied.status, 200, "{proxied:?}");
    for name in ["x-ratelimit-limit", "x-ratelimit-reset", "ratelimit-policy"] {
        assert_eq!(proxied.one(name), direct.one(name), "{name}: {proxied:?}");
    }
    assert_eq!(remaining(&proxied) + 1, remaining(&direct));
    assert!(proxied.one("ratelimit").is_some());
    let seen = proxied.json();
    let upstream = &seen["headers"];
    assert_eq!(upstream["x-tokengate-account-id"], "acct-pro", "{seen}");
    assert_eq!(upstream["x-tokengate-token-id"], t.pro_id.as_str());
    assert_eq!(upstream["x-tokengate-plan"], "pro");
    assert_eq!(upstream["x-tokengate-scopes"], "*");
    assert!(upstream.get("x-tokengate-status").is_none(), "{seen}");
    let mut last = remaining(&proxied);
    if strips_every_prefixed_header {
        assert!(upstream.get("x-tokengate-extra").is_none(), "{seen}");
    } else {
        // nginx replaces the headers it knows; another X-Tokengate-* header
        // it cannot drop, so the request is refused before it is counted.
        forged.push(extra);
        let forged_extra = get(px, GUARDED, Some(&t.pro), &forged).await;
        assert_eq!(forged_extra.status, 400, "{forged_extra:?}");
        assert!(
            forged_extra.body.contains("remove x-tokengate-extra"),
            "{forged_extra:?}"
        );
        let again = get(px, GUARDED, Some(&t.pro), &[]).await;
        assert_eq!(remaining(&again) + 1, last, "the 400 was not counted");
        last = remaining(&again);
    }

    // Each proxied request counts exactly once, a scope's 403 included.
    for path in ["/anything", GUARDED, "/api/v1/reports/7", "/x?y=z"] {
        let response = get(px, path, Some(&t.pro), &[]).await;
        let now = remaining(&response);
        assert_eq!(now + 1, last, "{path}: {response:?}");
        last = now;
    }

    // 429, after the tiny plan's three requests.
    for _ in 0..3 {
        assert_eq!(get(tg, GUARDED, Some(&t.tiny), &[]).await.status, 200);
    }
    let direct = get(tg, GUARDED, Some(&t.tiny), &[]).await;
    let proxied = get(px, GUARDED, Some(&t.tiny), &[]).await;
    assert_eq!(direct.status, 429);
    assert_same_contract("over the limit", &direct, &proxied);

    // Revoked: the next proxied request is a 401.
    assert_eq!(get(px, "/a", Some(&t.doomed), &[]).await.status, 200);
    admin(
        &stack.server,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{}", t.doomed_id),
        json!(null),
    )
    .await;
    let revoked = get(px, "/a", Some(&t.doomed), &[]).await;
    assert_eq!((revoked.status, revoked.body.as_str()), (401, UNAUTHORIZED));

    // Path tricks against the scoped rule: the scope's 403 or a refusal, never the upstream.
    for trick in [
        "/API/V1/EXTERNAL_TESTS",
        "/api/v1/External_Tests",
        "/api/v1/external%5Ftests",
        "/api/v1/external_tests/",
        "/api/v1//external_tests",
        "/api/v1/x/../external_tests",
        "/api/v1/./external_tests",
        "/api/v1/%2e%2e/v1/external_tests",
        "/api/v1/external_tests;jsessionid=1",
        "/api/v1%2Fexternal_tests",
        "/api/v1/external_tests%00",
    ] {
        let response = get(px, trick, Some(&t.providers_only), &[]).await;
        assert!(
            response.status == 403 || response.status == 400,
            "{trick}: {response:?}"
        );
        // (nginx refuses some of them itself, with its own 400 page.)
        assert!(
            !response.body.contains("\"headers\""),
            "{trick} reached the upstream"
        );
    }
    let head = raw(
        px,
        "HEAD",
        GUARDED,
        &[("Authorization", &bearer(&t.providers_only))],
    )
    .await;
    assert_eq!(head.status, 403, "HEAD covered by the GET rule");
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_with_the_shipped_config_relays_the_contract() {
    let Some(nginx) = find_or_skip("nginx", "nginx_with_the_shipped_config_relays_the_contract")
    else {
        return;
    };
    let stack = start_stack(&[]).await;
    let upstream = start_upstream().await;
    let proxy = start_nginx(&nginx, stack.dir.path(), stack.server.addr(), upstream);
    exercise(&stack, &proxy, false).await;
    stack.server.assert_no_panic();
}

/// Sockets in TIME_WAIT whose remote end is `addr` (`/proc/net/tcp`): each
/// is a connection to it that the local side (here nginx) closed.
fn closed_connections_to(addr: &str) -> usize {
    let port = addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let remote = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"06")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_keeps_its_connection_to_tokengate_through_a_flood_of_denials() {
    let Some(nginx) = find_or_skip(
        "nginx",
        "nginx_keeps_its_connection_to_tokengate_through_a_flood_of_denials",
    ) else {
        return;
    };
    let stack = start_stack(&[]).await;
    let upstream = start_upstream().await;
    let proxy = start_nginx(&nginx, stack.dir.path(), stack.server.addr(), upstream);
    let tg = stack.server.addr();
    let before = closed_connections_to(tg);
    // 401s, the plan's 403s and the 429s of a spent hour, one after another.
    for _ in 0..3 {
        assert_eq!(
            get(tg, GUARDED, Some(&stack.tokens.tiny), &[]).await.status,
            200
        );
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        for token in [
            None,
            Some(stack.tokens.free.as_str()),
            Some(stack.tokens.tiny.as_str()),
        ] {
            statuses.push(get(&proxy.addr, GUARDED, token, &[]).await.status);
        }
    }
    assert_eq!(statuses, [401, 403, 429].repeat(10));
    let closed = closed_connections_to(tg).saturating_sub(before);
    // Without keep-alive each of the 30 denials closes one.
    assert!(
        closed <= 2,
        "nginx closed {closed} connections to tokengate"
    );
    stack.server.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_with_the_shipped_config_relays_the_contract() {
    let Some(caddy) = find_or_skip("caddy", "caddy_with_the_shipped_config_relays_the_contract")
    else {
        return;
    };
    let stack = start_stack(&[]).await;
    let upstream = start_upstream().await;
    let proxy = start_caddy(&caddy, stack.dir.path(), stack.server.addr(), upstream);
    exercise(&stack, &proxy, true).await;
    // The request body still reaches the upstream after the auth request.
    let posted = crate::process::client()
        .post(format!("{}/upload", proxy.base))
        .bearer_auth(&stack.tokens.pro)
        .body("0123456789")
        .send()
        .await
        .unwrap();
    let seen: Value = posted.json().await.unwrap();
    assert_eq!(seen["body_len"], 10, "{seen}");
    stack.server.assert_no_panic();
}

#[tokio::test]
async fn forward_auth_answers_only_trusted_proxies_with_the_original_request() {
    let stack = start_stack(&[]).await;
    let tg = stack.server.addr();
    let pro = bearer(&stack.tokens.pro);
    // Caddy's and Traefik's headers, then nginx's.
    let allowed = raw(
        tg,
        "GET",
        "/forward-auth",
        &[
            ("Authorization", &pro),
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/api/v1/reports/7?full=1"),
        ],
    )
    .await;
    // Allowed by the token's `*`, with the identity for the upstream.
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.one("x-tokengate-account-id"), Some("acct-pro"));
    assert_eq!(allowed.one("x-tokengate-plan"), Some("pro"));
    assert_eq!(allowed.one("x-tokengate-scopes"), Some("*"));
    assert_eq!(
        allowed.one("x-tokengate-token-id"),
        Some(stack.tokens.pro_id.as_str())
    );
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "ratelimit-policy",
        "ratelimit",
    ] {
        assert!(allowed.one(name).is_some(), "{name}: {allowed:?}");
    }
    // A scoped route asked for by a token without the scope, as Caddy and as nginx ask.
    let providers_only = bearer(&stack.tokens.providers_only);
    let ask_for_reports = |proxy: &'static [(&'static str, &'static str)]| {
        let mut headers = vec![
            ("Authorization", providers_only.as_str()),
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/api/v1/reports/7"),
        ];
        headers.extend_from_slice(proxy);
        async move { raw(tg, "GET", "/forward-auth", &headers).await }
    };
    let scoped = ask_for_reports(&[]).await;
    assert_eq!(scoped.status, 403);
    assert_eq!(
        scoped.body,
        r#"{"success": false, "error": "Token is missing the required scope: reports:read"}"#
    );
    assert!(
        scoped.one("x-ratelimit-remaining").is_some(),
        "counted: {scoped:?}"
    );
    assert!(scoped.one("x-tokengate-body").is_none(), "only for nginx");
    // For nginx the denial is in headers and the body is empty: nginx keeps
    // a connection for the next subrequest only after an answer without one.
    let for_nginx = ask_for_reports(&[("X-Tokengate-Proxy", "nginx")]).await;
    assert_eq!(for_nginx.status, 403);
    assert_eq!(for_nginx.one("x-tokengate-status"), Some("403"));
    assert_eq!(
        for_nginx.one("x-tokengate-body"),
        Some(scoped.body.as_str())
    );
    assert_eq!(
        (for_nginx.body.as_str(), for_nginx.one("content-length")),
        ("", Some("0")),
        "{for_nginx:?}"
    );
    // Without the original request, or with two, nothing is guessed.
    for headers in [
        vec![("X-Forwarded-Method", "GET")],
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/public"),
            ("X-Original-URI", "/api/v1/reports/7"),
        ],
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/api/v1/reports/../x"),
        ],
    ] {
        let mut headers = headers;
        headers.push(("Authorization", &pro));
        let refused = raw(tg, "GET", "/forward-auth", &headers).await;
        assert_eq!(refused.status, 400, "{headers:?}: {refused:?}");
        assert_eq!(refused.json()["success"], false);
    }

    // A peer that is not a trusted proxy gets 404, as for no route at all.
    let elsewhere = start_stack(&[("FORWARD_AUTH_TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    let refused = raw(
        elsewhere.server.addr(),
        "GET",
        "/forward-auth",
        &[
            ("Authorization", &bearer(&elsewhere.tokens.pro)),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/x"),
        ],
    )
    .await;
    assert_eq!(refused.status, 404);
    assert_eq!(
        refused.json(),
        json!({"success": false, "error": "Not found"})
    );
}

/// `POST /v1/verify` with `credential` and `body`.
async fn verify(stack: &Stack, credential: &str, body: Value) -> (u16, Value) {
    let response = crate::process::client()
        .post(stack.server.url("/v1/verify"))
        .bearer_auth(credential)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A verify verdict as the response a client would have been relayed.
fn relayed(data: &Value) -> RawResponse {
    let headers = data["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    RawResponse {
        status: u16::try_from(data["status"].as_u64().unwrap()).unwrap(),
        headers,
        body: data["body"].as_str().unwrap_or_default().to_owned(),
    }
}

#[tokio::test]
async fn verify_gives_the_layers_answer_and_counts_like_a_request() {
    let stack = start_stack(&[]).await;
    let tg = stack.server.addr();
    let t = &stack.tokens;
    let route = |token: &str| json!({"token": token, "method": "GET", "path": GUARDED});

    for (what, token) in [
        ("invalid token", "iit_not-a-real-token"),
        ("plan without access", t.free.as_str()),
        ("missing scope", t.providers_only.as_str()),
    ] {
        let direct = get(tg, GUARDED, Some(token), &[]).await;
        let (status, json) = verify(&stack, VERIFY_TOKEN, route(token)).await;
        assert_eq!((status, &json["success"]), (200, &json!(true)), "{json}");
        assert_eq!(json["data"]["valid"], false);
        assert_same_contract(what, &direct, &relayed(&json["data"]));
    }
    let (_, missing) = verify(&stack, VERIFY_TOKEN, json!({"token": ""})).await;
    assert_eq!(relayed(&missing["data"]).body, UNAUTHORIZED);
    assert_eq!(
        missing["data"]["headers"]["www-authenticate"],
        r#"Bearer realm="api""#
    );

    // Valid: the headers to add, the identity, one count per call.
    let direct = get(tg, GUARDED, Some(&t.pro), &[]).await;
    let (_, json) = verify(&stack, VERIFY_TOKEN, route(&t.pro)).await;
    let data = &json["data"];
    assert_eq!(data["valid"], true, "{json}");
    assert_eq!(data["status"], 200);
    assert_eq!(data["body"], Value::Null);
    assert_eq!(data["account_id"], "acct-pro");
    assert_eq!(data["token_id"], t.pro_id.as_str());
    assert_eq!(data["plan"], "pro");
    assert_eq!(data["scopes"], json!(["*"]));
    let verdict = relayed(data);
    assert_eq!(
        verdict.one("x-ratelimit-limit"),
        direct.one("x-ratelimit-limit")
    );
    let remaining = |r: &RawResponse| {
        r.one("x-ratelimit-remaining")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(remaining(&verdict) + 1, remaining(&direct));
    let (_, again) = verify(
        &stack,
        ADMIN_TOKEN,
        json!({"token": t.pro, "scopes": ["tests:read"]}),
    )
    .await;
    assert_eq!(remaining(&relayed(&again["data"])) + 1, remaining(&verdict));

    // Scopes asked for directly.
    let (_, json) = verify(
        &stack,
        VERIFY_TOKEN,
        json!({"token": t.providers_only, "scopes": ["tests:read"]}),
    )
    .await;
    assert_eq!(relayed(&json["data"]).body, SCOPE_403);
    assert_eq!(json["data"]["account_id"], "acct-pro");

    // 429.
    for _ in 0..3 {
        assert_eq!(get(tg, GUARDED, Some(&t.tiny), &[]).await.status, 200);
    }
    let direct = get(tg, GUARDED, Some(&t.tiny), &[]).await;
    let (_, json) = verify(&stack, VERIFY_TOKEN, route(&t.tiny)).await;
    assert_same_contract("over the limit", &direct, &relayed(&json["data"]));

    // An ambiguous path is refused, not guessed.
    let (_, json) = verify(
        &stack,
        VERIFY_TOKEN,
        json!({"token": t.pro, "path": "/api/v1//external_tests"}),
    )
    .await;
    assert_eq!(json["data"]["status"], 400, "{json}");
    // A malformed call is the caller's 400, not a verdict.
    let (status, json) = verify(
        &stack,
        VERIFY_TOKEN,
        json!({"token": t.pro, "path": "/a", "scopes": ["x"]}),
    )
    .await;
    assert_eq!((status, &json["success"]), (400, &json!(false)));
}

#[tokio::test]
async fn the_verify_token_can_verify_and_nothing_else() {
    let stack = start_stack(&[]).await;
    let client = crate::process::client();
    for path in [
        "/admin/plans",
        "/admin/scopes",
        "/admin/accounts/acct-pro/tokens",
    ] {
        let response = client
            .get(stack.server.url(path))
            .bearer_auth(VERIFY_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    let (status, _) = verify(&stack, VERIFY_TOKEN, json!({"token": stack.tokens.pro})).await;
    assert_eq!(status, 200);
    for wrong in [
        stack.tokens.pro.as_str(),
        "verify-only-credential-0123456780",
    ] {
        let (status, json) = verify(&stack, wrong, json!({"token": stack.tokens.pro})).await;
        assert_eq!((status, &json["success"]), (401, &json!(false)), "{json}");
    }
    // The route rules' scopes are the server's: the admin API offers them.
    let scopes = admin(
        &stack.server,
        reqwest::Method::GET,
        "/admin/scopes",
        json!(null),
    )
    .await;
    assert!(scopes.to_string().contains("reports:read"), "{scopes}");
}

#[test]
fn a_malformed_rules_file_stops_the_server_at_start_with_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[[route]]\npath = \"/api/v1/reports/**\"\n\n[[route]]\npath = \"/api/**/x\"\n",
    )
    .unwrap();
    let mut env = base_env(dir.path());
    env.push(("FORWARD_AUTH_ROUTES".into(), routes.display().to_string()));
    let out = crate::process::cli_within(
        dir.path(),
        &env,
        &["serve"],
        std::time::Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("invalid FORWARD_AUTH_ROUTES"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(
        stderr.contains("'**' (the rest of the path) can only be the last segment"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}
