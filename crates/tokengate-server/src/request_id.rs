//! Request ids for the server's logs: `x-request-id` is kept when the client
//! (or a proxy in front) sends a well-formed one, generated otherwise, and
//! echoed on every response. An incoming id that holds something
//! token-shaped (see `tokengate::http::redact_token_shaped`) is replaced: it
//! would reach every log line and audit event of the request.
//!
//! A generated id is 128 random bits as 32 hex digits, e.g.
//! `6f1c0b3e9a2d4c5b8e7f0a1b2c3d4e5f`: unique across restarts and
//! instances, and unpredictable, so ids reveal nothing about request volume
//! or each other. They come from the thread's CSPRNG (`rand::thread_rng`,
//! ChaCha12 seeded from the OS): no syscall, no lock, about 30 ns.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;
use tokengate::http::redact_token_shaped;

/// The request id header.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id that is kept (Heroku's router uses 200).
const MAX_INCOMING_LEN: usize = 128;

/// The request's id: its well-formed `x-request-id`, or a fresh one that
/// replaces whatever was there. The stack (`stack.rs`) echoes it on the
/// response.
pub(crate) fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(value) if is_well_formed(value.as_bytes()) => value.clone(),
        _ => {
            let id = new_id();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    }
}

fn new_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut random = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut random);
    let mut text = [0u8; 32];
    for (i, byte) in random.iter().enumerate() {
        text[2 * i] = HEX[usize::from(byte >> 4)];
        text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Short, printable, and not token-shaped: an id is written to every log
/// line of its request and to audit events, so a client that sends a token
/// as its request id gets a fresh id instead.
fn is_well_formed(id: &[u8]) -> bool {
    (1..=MAX_INCOMING_LEN).contains(&id.len())
        && id.iter().all(u8::is_ascii_graphic)
        && std::str::from_utf8(id)
            .is_ok_and(|id| matches!(redact_token_shaped(id), Cow::Borrowed(_)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn generate() -> String {
        new_id().to_str().unwrap().to_owned()
    }

    #[test]
    fn generated_ids_are_128_random_bits_and_unique_across_threads() {
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
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        // No shared prefix: consecutive ids differ from their first digits.
        let shared_prefixes = ids
            .windows(2)
            .filter(|pair| pair[0][..4] == pair[1][..4])
            .count();
        assert!(shared_prefixes < ids.len() / 100, "{shared_prefixes}");
    }

    #[test]
    fn well_formed_ids_are_kept_and_others_replaced() {
        let call = |value: Option<&'static [u8]>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(&X_REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
            }
            let id = request_id(&mut headers);
            assert_eq!(headers[&X_REQUEST_ID], id, "the handler sees the same id");
            id.as_bytes().to_vec()
        };
        let kept = b"f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
        assert_eq!(call(Some(kept)), kept);
        // The longest kept (dots: 128 letters in a row would be token-shaped).
        assert_eq!(call(Some(&[b'.'; 128])), [b'.'; 128]);
        for bad in [
            &[b'a'; 129][..],
            b"",
            b"two words",
            b"caf\xc3\xa9",
            &[b'A'; 74],
        ] {
            let replaced = call(Some(bad));
            assert_ne!(replaced, bad);
            assert!(is_well_formed(&replaced));
        }
        let fresh = call(None);
        assert_eq!(fresh.len(), 32);
    }
}
