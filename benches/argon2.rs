//! argon2id at the default (OWASP) parameters: the cost the cache avoids.
//!
//! `cargo bench --bench argon2`

#![allow(missing_docs)] // criterion_group! generates undocumented functions
// A benchmark: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use tokengate::Argon2Params;
use tokengate::test_util::Argon2;

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

criterion_group!(benches, bench_argon2);
criterion_main!(benches);
