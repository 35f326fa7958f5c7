//! Bytes per tracked token in the rate limiter: 1,000,000 tokens, counted two ways.
//!
//! `cargo bench --bench memory`
//!
//! "requested" counts what the limiter asks the allocator for (a counting
//! global allocator); "resident" is the growth of the process's RSS, which
//! also includes allocator overhead and hash-table slack.

#![allow(missing_docs)]
// A benchmark: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::cast_precision_loss)]
// megabytes, for display
// criterion_group! generates undocumented functions

// A counting allocator is the one place this crate needs `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokengate::TokenId;
use tokengate::test_util::WindowLimiter;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    const TOKENS: usize = 1_000_000;
    let ids: Vec<TokenId> = (0..TOKENS).map(|_| TokenId::random()).collect();
    let (live_before, rss_before) = (LIVE.load(Ordering::Relaxed), resident_bytes());
    let limiter = WindowLimiter::new();
    let now_ms = 1_800_000_000_000;
    for id in &ids {
        std::hint::black_box(limiter.check_at(id, 1000, now_ms));
    }
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    let rss = resident_bytes().saturating_sub(rss_before);
    assert_eq!(limiter.tracked(), TOKENS);
    println!("rate limiter, {TOKENS} tracked tokens (60 one-minute buckets each):");
    println!(
        "  requested: {:>6.1} MB total, {:>4} bytes per token",
        live as f64 / 1e6,
        live / TOKENS
    );
    println!(
        "  resident:  {:>6.1} MB total, {:>4} bytes per token",
        rss as f64 / 1e6,
        rss / TOKENS
    );
    let evicted = limiter.evict_idle_at(now_ms + 62 * 60_000);
    println!(
        "  after an idle hour: {evicted} evicted, {} bytes still requested",
        LIVE.load(Ordering::Relaxed) - live_before
    );
}
