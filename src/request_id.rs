//! Request ids for the server's logs: `x-request-id` is kept when the client
//! (or a proxy in front) sends a well-formed one, generated otherwise, and
//! echoed on every response.
//!
//! A generated id is a random per-process prefix and a counter, e.g.
//! `Xk3Jd9xQ-4097`: unique across restarts and instances (48 random bits)
//! without a syscall, a lock or a shared cache line per request. Each thread
//! takes counter values in blocks, so ids are unique but not ordered.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue, Request};
use rand::RngCore;
use rand::rngs::OsRng;
use tower_http::request_id::{MakeRequestId, RequestId};

/// The request id header.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is kept (Heroku's router uses 200).
const MAX_INCOMING_LEN: usize = 128;

/// Counter values a thread takes from the shared counter at a time.
const BLOCK: u64 = 4096;

/// Generates request ids: `<8-character random prefix>-<counter>`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MakeRequestIds;

impl MakeRequestId for MakeRequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_bytes(next_id(&mut [0u8; ID_CAPACITY]))
            .ok()
            .map(RequestId::new)
    }
}

const PREFIX_LEN: usize = 8;
/// Prefix, '-', and up to 20 digits of a u64.
const ID_CAPACITY: usize = PREFIX_LEN + 1 + 20;

fn process_prefix() -> &'static [u8; PREFIX_LEN] {
    static PREFIX: OnceLock<[u8; PREFIX_LEN]> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut random = [0u8; 6];
        OsRng.fill_bytes(&mut random);
        let mut prefix = [0u8; PREFIX_LEN];
        // 6 bytes are exactly 8 base64 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(random, &mut prefix);
        prefix
    })
}

fn next_counter() -> u64 {
    static SHARED: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        // (next value, end of this thread's block); empty until first use.
        static RESERVED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    RESERVED.with(|reserved| {
        let (mut next, mut end) = reserved.get();
        if next == end {
            next = SHARED.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        reserved.set((next + 1, end));
        next
    })
}

/// Writes the next id into `buf` and returns it.
fn next_id(buf: &mut [u8; ID_CAPACITY]) -> &[u8] {
    buf[..PREFIX_LEN].copy_from_slice(process_prefix());
    buf[PREFIX_LEN] = b'-';
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(next_counter()).as_bytes();
    let len = PREFIX_LEN + 1 + digits.len();
    buf[PREFIX_LEN + 1..len].copy_from_slice(digits);
    &buf[..len]
}

/// Removes an incoming `x-request-id` that is empty, longer than 128 bytes or
/// not printable ASCII, so a fresh one is generated: whatever a client sends
/// ends up in the logs.
pub(crate) fn drop_malformed_request_id<B>(mut request: Request<B>) -> Request<B> {
    let malformed = request
        .headers()
        .get(&X_REQUEST_ID)
        .is_some_and(|value| !is_well_formed(value.as_bytes()));
    if malformed {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
}

fn is_well_formed(id: &[u8]) -> bool {
    (1..=MAX_INCOMING_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn generate() -> String {
        let request = Request::new(());
        let id = MakeRequestIds.make_request_id(&request).unwrap();
        id.header_value().to_str().unwrap().to_owned()
    }

    #[test]
    fn generated_ids_share_a_prefix_and_are_unique_across_threads() {
        let ids: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..5000).map(|_| generate()).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap())
                .collect()
        });
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let prefix = &ids[0][..PREFIX_LEN + 1];
        for id in &ids {
            assert!(id.starts_with(prefix), "{id}");
            assert!(is_well_formed(id.as_bytes()), "{id}");
            assert!(
                id[PREFIX_LEN + 1..].bytes().all(|b| b.is_ascii_digit()),
                "{id}"
            );
        }
    }

    #[test]
    fn only_malformed_incoming_ids_are_dropped() {
        let with = |value: &[u8]| {
            let request = Request::builder()
                .header(&X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap())
                .body(())
                .unwrap();
            drop_malformed_request_id(request)
                .headers()
                .get(&X_REQUEST_ID)
                .map(|v| v.as_bytes().to_vec())
        };
        let kept = b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
        assert_eq!(with(kept).as_deref(), Some(&kept[..]));
        assert_eq!(with(&[b'a'; 128]).as_deref(), Some(&[b'a'; 128][..]));
        assert_eq!(with(&[b'a'; 129]), None);
        assert_eq!(with(b""), None);
        assert_eq!(with(b"two words"), None);
        assert_eq!(with(b"caf\xc3\xa9"), None);
        let absent = drop_malformed_request_id(Request::new(()));
        assert!(absent.headers().is_empty());
    }
}
