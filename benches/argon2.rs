//! argon2id at the default (OWASP) parameters: the cost the cache avoids.
//!
//! `cargo bench --bench argon2`

use criterion::{Criterion, criterion_group, criterion_main};
use tokengate::{Argon2Params, SecretHasher, TokenFormat};

fn bench_argon2(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hasher = SecretHasher::new(Argon2Params::default(), 1).unwrap();
    let minted = TokenFormat::default().generate();
    let phc = rt.block_on(hasher.hash(minted.secret.clone())).unwrap();
    let mut group = c.benchmark_group("argon2id_owasp");
    group.sample_size(10);
    group.bench_function("verify", |b| {
        b.iter(|| {
            rt.block_on(hasher.verify(minted.secret.clone(), phc.clone()))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_argon2);
criterion_main!(benches);
