//! Our sliding window against `governor`'s keyed GCRA, side by side in one run.
//!
//! `cargo bench --bench limiter`
//!
//! Both are given a limit they never reach, so every check is an admission
//! that updates state: the common case on the request path.

#![allow(missing_docs)] // criterion_group! generates undocumented functions
// A benchmark: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::QuantaUpkeepClock;
use governor::{Quota, RateLimiter};
use tokengate::TokenId;
use tokengate::test_util::WindowLimiter;

fn bench_limiters(c: &mut Criterion) {
    let keys: Vec<TokenId> = (0..10_000).map(|_| TokenId::random()).collect();
    let hot = keys[0];

    let ours = WindowLimiter::new();
    let quota = Quota::per_hour(NonZeroU32::MAX);
    let theirs = RateLimiter::keyed(quota);
    // governor with a coarse clock too (updated every 1 ms), like ours.
    let upkeep = QuantaUpkeepClock::from_interval(Duration::from_millis(1)).unwrap();
    let theirs_coarse = RateLimiter::dashmap_with_clock(quota, upkeep);

    let mut group = c.benchmark_group("limiter_one_token");
    group.bench_function("tokengate_sliding_window", |b| {
        b.iter(|| ours.check_now(black_box(&hot), u32::MAX).allowed)
    });
    group.bench_function("governor_keyed_gcra", |b| {
        b.iter(|| theirs.check_key(black_box(&hot)).is_ok())
    });
    group.bench_function("governor_keyed_gcra_coarse_clock", |b| {
        b.iter(|| theirs_coarse.check_key(black_box(&hot)).is_ok())
    });
    group.finish();

    let mut group = c.benchmark_group("limiter_10k_tokens");
    let mut i = 0;
    group.bench_function("tokengate_sliding_window", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            ours.check_now(black_box(&keys[i]), u32::MAX).allowed
        })
    });
    let mut j = 0;
    group.bench_function("governor_keyed_gcra", |b| {
        b.iter(|| {
            j = (j + 1) % keys.len();
            theirs.check_key(black_box(&keys[j])).is_ok()
        })
    });
    let mut k = 0;
    group.bench_function("governor_keyed_gcra_coarse_clock", |b| {
        b.iter(|| {
            k = (k + 1) % keys.len();
            theirs_coarse.check_key(black_box(&keys[k])).is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_limiters);
criterion_main!(benches);
