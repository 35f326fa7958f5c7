//! The fuzz targets' properties on the stable toolchain, for CI: the same
//! property functions as `fuzz/fuzz_targets/` (included from
//! `fuzz/src/properties.rs`), driven by proptest instead of libFuzzer.
//!
//! Arbitrary bytes rarely get past the first check, so besides them each
//! parser gets structured input that reaches every branch: tokens one edit
//! away from valid, and header values assembled from near-miss pieces.

#[path = "../../fuzz/src/properties.rs"]
#[allow(unreachable_pub)] // shared with the fuzz crate, where these are its API
mod properties;

use proptest::prelude::*;
use tokengate::TokenFormat;

use properties::{
    ALPHABET, PREFIXES, bearer_value, is_token68, reference_decode, reference_parse_bearer,
    token_round_trip, token_text,
};

const CASES: u32 = 4000;

/// A generated token with one random edit: replace, insert, delete or truncate.
fn edited_token() -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..4,
        any::<prop::sample::Index>(),
        any::<u8>(),
        0usize..4,
    )
        .prop_map(|(prefix, at, byte, edit)| {
            let format = TokenFormat::new(PREFIXES[prefix]).unwrap();
            let mut token = tokengate::test_util::mint(&format).1.into_bytes();
            let position = at.index(token.len());
            match edit {
                0 => token[position] = byte,
                1 => token.insert(position, byte),
                2 => {
                    token.remove(position);
                }
                _ => token.truncate(position),
            }
            token
        })
}

/// `Authorization` values from near-miss pieces: schemes, separators, token
/// characters (valid and not) and padding.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let scheme = prop_oneof![
        Just(b"Bearer".to_vec()),
        Just(b"bearer".to_vec()),
        Just(b"BeArEr".to_vec()),
        Just(b"Bearer:".to_vec()),
        Just(b"Basic".to_vec()),
        Just(b"Bear".to_vec()),
        Just(b" Bearer".to_vec()),
        Just(b"B\xc3\xa9arer".to_vec()),
        Just(Vec::new()),
    ];
    let separator = prop::collection::vec(
        prop_oneof![4 => Just(b' '), 1 => Just(b'\t'), 1 => Just(b','), 1 => Just(0u8)],
        0..4,
    );
    let token = prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(ALPHABET.to_vec()),
            1 => prop::sample::select(b".~+/=\"', ;:\0\x7f\xff".to_vec()),
        ],
        0..80,
    );
    let padding = prop::collection::vec(Just(b'='), 0..3);
    (scheme, separator, token, padding).prop_map(|(mut value, separator, token, padding)| {
        value.extend(separator);
        value.extend(token);
        value.extend(padding);
        value
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn token_parse_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        token_text(&data);
        token_round_trip(&data);
    }

    #[test]
    fn token_parse_on_arbitrary_strings(text in "\\PC{0,100}") {
        token_text(text.as_bytes());
    }

    #[test]
    fn token_parse_on_tokens_one_edit_from_valid(token in edited_token()) {
        token_text(&token);
    }

    #[test]
    fn token_round_trip_and_one_character_changes(data in prop::collection::vec(any::<u8>(), 49..60)) {
        token_round_trip(&data);
    }

    #[test]
    fn bearer_header_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        bearer_value(&data);
    }

    #[test]
    fn bearer_header_on_near_miss_values(value in header_value()) {
        bearer_value(&value);
    }
}

/// The oracles themselves: if they accepted nothing (or everything), the
/// properties above would pass vacuously.
#[test]
fn the_oracles_accept_valid_input_and_reject_near_misses() {
    for prefix in PREFIXES {
        let format = TokenFormat::new(prefix).unwrap();
        let (minted_id, token) = tokengate::test_util::mint(&format);
        let token = token.as_str();
        let parts = tokengate::test_util::parse_token(&format, token).unwrap();
        let (id, secret) = reference_decode(prefix, token.as_bytes()).expect("valid token");
        assert_eq!(&id[..], tokengate::test_util::token_id_bytes(&minted_id));
        assert_eq!(&secret[..], parts.secret);
        assert!(reference_decode(prefix, &token.as_bytes()[1..]).is_none());
        let mut typo = token.as_bytes().to_vec();
        let last = typo.len() - 1;
        typo[last] = if typo[last] == b'A' { b'B' } else { b'A' };
        assert!(reference_decode(prefix, &typo).is_none());
    }
    assert_eq!(
        reference_parse_bearer(b"bEaReR  a-b.c~+/=="),
        Some("a-b.c~+/==")
    );
    for rejected in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Bearer =",
        b"Bearer a=b",
        b"Bearer\tabc",
        b"Bearer abc ",
        b"Basic abc",
    ] {
        assert_eq!(reference_parse_bearer(rejected), None, "{rejected:?}");
    }
    assert!(is_token68(b"abc=="));
    assert!(!is_token68(b"=="));
    // And the shared properties run without tripping on valid input.
    let (_, token) = tokengate::test_util::mint(&TokenFormat::default());
    token_text(token.as_bytes());
    bearer_value(format!("Bearer {token}").as_bytes());
}
