//! The request path in process: parsing, the cached check, and the whole layer.
//!
//! `cargo bench --bench gate`

#![allow(missing_docs)] // criterion_group! generates undocumented functions
// A benchmark: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::handler::Handler;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Request};
use sha2::{Digest, Sha256};
use tokengate::{
    Argon2Params, Manager, RequireScopeLayer, SqliteStore, TokenGate, TokenStore, require_scope,
};
use tower::ServiceExt;

/// A token whose one request per hour is spent: every request is a 429.
fn spent_token(rt: &tokio::runtime::Runtime, gate: &TokenGate) -> String {
    rt.block_on(async {
        let manager = Manager::new(gate);
        manager
            .set_plan(&tokengate::Plan::new("spent", true, 1))
            .await
            .unwrap();
        manager
            .set_account_plan("acct_spent", "spent")
            .await
            .unwrap();
        let token = manager
            .create_token("acct_spent", "spent", None)
            .await
            .unwrap();
        let token = token.token.expose_secret().to_owned();
        let principal = gate.authenticate_token(&token).await.unwrap();
        gate.check_rate_limit(&principal).await.unwrap();
        token
    })
}

fn setup(rt: &tokio::runtime::Runtime) -> (TokenGate, String) {
    rt.block_on(async {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let gate = TokenGate::builder(Arc::new(store))
            .with_argon2_params(Argon2Params::insecure_fast_for_tests())
            .with_scopes(["reports:read", "reports:write", "usage:read"])
            .build()
            .unwrap();
        // A limit that never runs out, so every iteration takes the admit path.
        let manager = Manager::new(&gate);
        manager
            .set_plan(&tokengate::Plan::new("bench", true, u32::MAX))
            .await
            .unwrap();
        manager.set_account_plan("acct", "bench").await.unwrap();
        // Explicit scopes, so the scoped routes below run the real lookup
        // (a token with every scope would answer at once).
        let spec = tokengate::TokenSpec::new("bench").scopes(Some([
            "reports:read",
            "reports:write",
            "usage:read",
        ]));
        let token = manager.create_token_with("acct", spec).await.unwrap();
        let token = token.token.expose_secret().to_owned();
        gate.authenticate_token(&token).await.unwrap();
        (gate, token)
    })
}

fn bench_checks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (gate, token) = setup(&rt);
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let mut garbage = HeaderMap::new();
    garbage.insert(
        "authorization",
        HeaderValue::from_static("Bearer not-a-token"),
    );
    let mut typo = token.clone().into_bytes();
    typo[40] = if typo[40] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();

    let mut group = c.benchmark_group("check");
    group.bench_function("shape_and_crc32", |b| {
        b.iter(|| gate.format().check_shape(black_box(&token)).is_ok())
    });
    group.bench_function("sha256_of_token", |b| {
        b.iter(|| Sha256::digest(black_box(token.as_bytes())))
    });
    group.bench_function("authenticate_cached", |b| {
        b.iter(|| {
            gate.authenticate_token(black_box(&token))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("authenticate_cached_from_header_and_limit", |b| {
        b.iter(|| {
            let principal = gate
                .authenticate(black_box(&headers))
                .now_or_never()
                .unwrap()
                .unwrap();
            gate.check_rate_limit(&principal)
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("reject_garbage_header", |b| {
        b.iter(|| {
            gate.authenticate(black_box(&garbage))
                .now_or_never()
                .unwrap()
                .unwrap_err()
        })
    });
    group.bench_function("reject_checksum_typo", |b| {
        b.iter(|| {
            gate.authenticate_token(black_box(&typo))
                .now_or_never()
                .unwrap()
                .unwrap_err()
        })
    });
    let decision = tokengate::Decision {
        allowed: true,
        limit: 1000,
        remaining: 998,
        reset_at_ms: 1_800_000_060_000,
        now_ms: 1_800_000_000_000,
        window_secs: 3600,
    };
    group.bench_function("write_rate_limit_headers", |b| {
        b.iter(|| {
            let mut response = axum::response::Response::new(Body::empty());
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            tokengate::test_util::write_rate_limit_headers(
                black_box(&decision),
                response.headers_mut(),
            );
            response
        })
    });
    group.finish();

    // The layer on a one-route router, against the same router without it.
    // Each router is finished with `with_state(())`, as `axum::serve` does
    // (`into_make_service`): otherwise axum rebuilds a handler's route, and
    // its layers, on every call.
    let guarded: Router = Router::new()
        .route("/api", get(|| async { "ok" }))
        .layer(gate.layer())
        .with_state(());
    let open: Router = Router::new()
        .route("/api", get(|| async { "ok" }))
        .with_state(());
    // The same, with a route that requires a scope: as a route layer (axum
    // boxes the route a second time), on the handler (`require_scope!`),
    // and through axum's `Handler::layer` (a service and a future per
    // request, and the handler is no longer zero-sized).
    let scoped: Router = Router::new()
        .route(
            "/api",
            get(|| async { "ok" }).route_layer(RequireScopeLayer::new("reports:read")),
        )
        .layer(gate.layer())
        .with_state(());
    let scoped_handler: Router = Router::new()
        .route(
            "/api",
            get(require_scope!("reports:read", || async { "ok" })),
        )
        .layer(gate.layer())
        .with_state(());
    let scoped_handler_layer: Router = Router::new()
        .route(
            "/api",
            get((|| async { "ok" }).layer(RequireScopeLayer::new("reports:read"))),
        )
        .layer(gate.layer())
        .with_state(());
    let request = |auth: bool| {
        let mut builder = Request::builder().uri("/api");
        if auth {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    };
    let spent = spent_token(&rt, &gate);
    let over_limit = || {
        Request::builder()
            .uri("/api")
            .header("authorization", format!("Bearer {spent}"))
            .body(Body::empty())
            .unwrap()
    };
    let mut group = c.benchmark_group("router");
    group.bench_function("without_layer", |b| {
        b.iter(|| rt.block_on(open.clone().oneshot(request(true))).unwrap())
    });
    group.bench_function("with_layer_cached_token", |b| {
        b.iter(|| rt.block_on(guarded.clone().oneshot(request(true))).unwrap())
    });
    group.bench_function("with_layer_cached_token_scoped_route", |b| {
        b.iter(|| rt.block_on(scoped.clone().oneshot(request(true))).unwrap())
    });
    group.bench_function("with_layer_cached_token_scoped_handler", |b| {
        b.iter(|| {
            rt.block_on(scoped_handler.clone().oneshot(request(true)))
                .unwrap()
        })
    });
    group.bench_function("with_layer_cached_token_scoped_handler_layer", |b| {
        b.iter(|| {
            rt.block_on(scoped_handler_layer.clone().oneshot(request(true)))
                .unwrap()
        })
    });
    // The 429 path against the 200 path above (issue 26: no lock, the
    // principal's prebuilt header values).
    group.bench_function("with_layer_rate_limited_token", |b| {
        b.iter(|| {
            let response = rt.block_on(guarded.clone().oneshot(over_limit())).unwrap();
            assert_eq!(response.status(), 429);
            response
        })
    });
    group.bench_function("with_layer_missing_token", |b| {
        b.iter(|| {
            rt.block_on(guarded.clone().oneshot(request(false)))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_checks);
criterion_main!(benches);
