//! argon2id at the default (OWASP) parameters: the cost the cache avoids,
//! and the cold verify queue (a restart storm in miniature).
//!
//! `cargo bench --bench argon2`

#![allow(missing_docs)] // criterion_group! generates undocumented functions
// A benchmark: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use tokengate::test_util::Argon2;
use tokengate::{Argon2Params, Manager, SqliteStore, TokenGate, TokenStore};

fn bench_argon2(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hasher = Argon2::new(Argon2Params::default()).unwrap();
    let phc = rt.block_on(hasher.hash());
    let mut group = c.benchmark_group("argon2id_owasp");
    group.sample_size(10);
    group.bench_function("verify", |b| {
        b.iter(|| {
            assert!(rt.block_on(hasher.verify(&phc)));
        })
    });
    group.finish();
}

/// The first uses of `4 × cores` distinct known tokens at once, on a gate
/// with an empty cache (as after a restart), at the default parameters: with
/// every core verifying, one iteration costs about `4 × one verify`; with
/// half of them (the default before issue 29) twice that.
fn bench_cold_verify_queue(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (store, tokens) = rt.block_on(async {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let store: Arc<dyn TokenStore> = Arc::new(store);
        let gate = TokenGate::new(Arc::clone(&store)).unwrap();
        let manager = Manager::new(&gate);
        manager.set_account_plan("acct", "pro").await.unwrap();
        let mut tokens = Vec::new();
        for i in 0..4 * cores {
            let created = manager
                .create_token("acct", &format!("cold {i}"), None)
                .await
                .unwrap();
            tokens.push(created.token.expose_secret().to_owned());
        }
        (store, tokens)
    });
    // A fresh gate per iteration: nothing cached, the known ids loaded.
    let fresh_gate = |slots: usize| {
        let gate = TokenGate::builder(Arc::clone(&store))
            .with_max_concurrent_verifies(slots)
            .build()
            .unwrap();
        rt.block_on(gate.poll_changes());
        gate
    };
    let first_uses = |gate: TokenGate| {
        rt.block_on(async {
            let answers = join_all(tokens.iter().map(|t| gate.authenticate_token(t))).await;
            assert!(answers.iter().all(Result::is_ok));
            assert_eq!(
                gate.argon2_verifications(),
                u64::try_from(tokens.len()).unwrap()
            );
        })
    };
    let mut group = c.benchmark_group("cold_verify_queue");
    group.sample_size(10);
    group.bench_function(
        format!("first_uses_of_{}_tokens_every_core", tokens.len()),
        |b| b.iter_batched(|| fresh_gate(cores), first_uses, BatchSize::PerIteration),
    );
    group.bench_function(
        format!("first_uses_of_{}_tokens_half_the_cores", tokens.len()),
        |b| {
            b.iter_batched(
                || fresh_gate((cores / 2).max(1)),
                first_uses,
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
}

criterion_group!(benches, bench_argon2, bench_cold_verify_queue);
criterion_main!(benches);
