//! The API token format: generation, offline validation and parsing.
//!
//! A token is `<prefix><id><secret><checksum>`, parsed by position:
//!
//! | part       | bytes | characters | content                                        |
//! | ---------- | ----- | ---------- | ---------------------------------------------- |
//! | `prefix`   | —     | 2–16       | configurable, default `iit_`                    |
//! | `id`       | 15    | 20         | public random token id (120 bits, `OsRng`)      |
//! | `secret`   | 33    | 44         | 264 bits from `OsRng`; only its argon2id hash is stored |
//! | `checksum` | 4     | 6          | CRC-32 (IEEE) of the preceding characters, big-endian |
//!
//! Every part after the prefix is base64 URL-safe without padding, so a token is
//! safe in headers, URLs and shells, and always `prefix.len() + 70` characters.
//! The byte counts are multiples of three (except the checksum, whose unused
//! trailing bits must be zero), so every token has exactly one spelling.
//!
//! A secret scanner matches `iit_[A-Za-z0-9_-]{70}` and confirms a hit with
//! [`TokenFormat::is_well_formed`]: the checksum rejects typos, truncation and
//! random strings before any database or argon2 work.
//!
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config_error::ConfigError;

const ID_BYTES: usize = 15;
const ID_CHARS: usize = 20;
const SECRET_BYTES: usize = 33;
const SECRET_CHARS: usize = 44;
const CHECKSUM_CHARS: usize = 6;
/// Characters after the prefix: id, secret and checksum.
pub(crate) const TOKEN_BODY_CHARS: usize = ID_CHARS + SECRET_CHARS + CHECKSUM_CHARS;
/// The prefix used when none is configured.
pub(crate) const DEFAULT_PREFIX: &str = "iit_";
const MAX_PREFIX_CHARS: usize = 16;

/// The public identifier of a token: 120 random bits, shown as 20 URL-safe characters.
///
/// It is the primary key of a token, safe to log and to put in URLs. It is
/// never a sequential number, so it reveals nothing about other tokens.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenId([u8; ID_BYTES]);

impl TokenId {
    /// A fresh random id from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes of the id.
    pub(crate) fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }
}

impl std::hash::Hash for TokenId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // One write of the raw bytes, so `RandomIdHasher` can use them directly.
        state.write(&self.0);
    }
}

/// A hasher for maps keyed by ids that tokengate itself generated from `OsRng`
/// (never by attacker-chosen ids): the first 8 random bytes are already a
/// uniform hash. Maps keyed by untrusted input use std's keyed SipHash instead.
#[derive(Default, Clone, Copy)]
pub(crate) struct RandomIdHasher(u64);

impl std::hash::Hasher for RandomIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `BuildHasher` for [`RandomIdHasher`].
pub(crate) type RandomIdState = std::hash::BuildHasherDefault<RandomIdHasher>;

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_CHARS];
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        // The alphabet is ASCII, so this cannot fail.
        f.write_str(std::str::from_utf8(&buf[..written]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

impl FromStr for TokenId {
    type Err = TokenFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != ID_CHARS {
            return Err(TokenFormatError::Length);
        }
        let mut bytes = [0u8; ID_BYTES];
        decode_exact(s.as_bytes(), &mut bytes)?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A plaintext API token. Its `Debug` and `Display` are redacted; the only way
/// to read it is [`PlaintextToken::expose_secret`], used exactly where the token
/// is shown once (the creation response or the CLI's stdout).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PlaintextToken(String);

impl PlaintextToken {
    /// The token text. Call this only to hand the token to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Wraps a freshly generated token (an API token, or the admin token).
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    /// The last four characters, stored as a hint so people can tell tokens apart.
    pub fn hint(&self) -> String {
        self.0[self.0.len() - 4..].to_owned()
    }
}

impl fmt::Debug for PlaintextToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextToken(<redacted>)")
    }
}

impl fmt::Display for PlaintextToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The secret part of a token, as raw bytes (the argon2id input). Redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretBytes([u8; SECRET_BYTES]);

impl SecretBytes {
    /// The raw secret. Call this only to hash or verify it.
    pub(crate) fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    fn random() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A freshly generated token: its public id, the plaintext (shown once) and the secret to hash.
pub(crate) struct MintedToken {
    /// The public id embedded in the token.
    pub(crate) id: TokenId,
    /// The whole token, to show to its owner once.
    pub(crate) token: PlaintextToken,
    /// The secret part, to hash with argon2id.
    pub(crate) secret: SecretBytes,
}

impl MintedToken {
    /// The tag stored beside the secret's hash.
    pub(crate) fn secret_tag(&self) -> u32 {
        secret_tag(&self.id, &self.secret)
    }
}

/// A 32-bit tag of a token's secret, bound to its id: the first four bytes
/// of `SHA-256("tokengate secret tag v1" ‖ id ‖ secret)`.
///
/// It is stored beside the argon2id hash and checked first, so a wrong
/// secret for a known token id is refused with one SHA-256 (well under a
/// microsecond) instead of an argon2 verification (~27 ms): guessing cannot
/// exhaust the argon2 pool, and nobody's guesses slow down the owner. A
/// wrong secret passes the tag once in 2^32 tries and then meets argon2.
/// The tag reveals 32 of the secret's 264 random bits, which leaves 232:
/// the secret stays out of reach even of someone holding the database.
pub(crate) fn secret_tag(id: &TokenId, secret: &SecretBytes) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"tokengate secret tag v1")
        .chain_update(id.0)
        .chain_update(secret.0)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("id", &self.id)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A token that passed the offline checks (prefix, length, alphabet, checksum).
pub(crate) struct ParsedToken {
    id: TokenId,
    secret: SecretBytes,
}

impl ParsedToken {
    /// The public token id.
    pub(crate) fn id(&self) -> TokenId {
        self.id
    }

    /// The secret part, for argon2id verification.
    pub(crate) fn secret(&self) -> &SecretBytes {
        &self.secret
    }

    /// The secret's tag (see [`secret_tag`]).
    pub(crate) fn secret_tag(&self) -> u32 {
        secret_tag(&self.id, &self.secret)
    }
}

impl fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a string is not a well-formed token. Deliberately coarse: it never echoes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFormatError {
    /// The string does not start with the configured prefix.
    #[error("token does not start with the expected prefix")]
    Prefix,
    /// The string has the wrong length.
    #[error("token has the wrong length")]
    Length,
    /// A character outside the base64 URL-safe alphabet, or a non-canonical encoding.
    #[error("token contains characters outside the URL-safe base64 alphabet")]
    Alphabet,
    /// The checksum does not match: a typo, truncation or a made-up string.
    #[error("token checksum does not match")]
    Checksum,
}

/// The token format, parameterised by its prefix: offline validation needs
/// no database and no secret.
///
/// # Example
///
/// ```
/// use tokengate::{TokenFormat, TokenFormatError};
///
/// let format = TokenFormat::default();
/// let token = "iit_AQIDBAUGBwgJCgsMDQ4PZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1-f4CBgoOEiucYRg";
/// assert_eq!(token.len(), format.token_len());
/// assert!(format.is_well_formed(token));
/// assert_eq!(format.token_id(token)?.to_string(), "AQIDBAUGBwgJCgsMDQ4P");
///
/// // One wrong character and the checksum rejects it, offline.
/// let typo = token.replace("ZGVm", "ZGVn");
/// assert_eq!(format.check_shape(&typo), Err(TokenFormatError::Checksum));
/// # Ok::<(), TokenFormatError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: String,
}

impl Default for TokenFormat {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl TokenFormat {
    /// A format with the given prefix.
    ///
    /// The prefix is 2–16 characters of `a-z`, `0-9` and `_`, starts with a letter
    /// and ends with `_`, so it is recognisable to people and secret scanners.
    /// It is covered by the checksum: changing it invalidates existing tokens.
    pub fn new(prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let bytes = prefix.as_bytes();
        let valid = (2..=MAX_PREFIX_CHARS).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes.ends_with(b"_")
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if valid {
            Ok(Self { prefix })
        } else {
            Err(ConfigError::TokenPrefix(prefix))
        }
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The length of every token in this format.
    pub fn token_len(&self) -> usize {
        self.prefix.len() + TOKEN_BODY_CHARS
    }

    /// Mints a new token with a random id and a 264-bit secret from `OsRng`.
    pub(crate) fn generate(&self) -> MintedToken {
        let id = TokenId::random();
        let secret = SecretBytes::random();
        let mut text = String::with_capacity(self.token_len());
        text.push_str(&self.prefix);
        URL_SAFE_NO_PAD.encode_string(id.0, &mut text);
        URL_SAFE_NO_PAD.encode_string(secret.0, &mut text);
        let checksum = crc32fast::hash(text.as_bytes());
        URL_SAFE_NO_PAD.encode_string(checksum.to_be_bytes(), &mut text);
        debug_assert_eq!(text.len(), self.token_len());
        MintedToken {
            id,
            token: PlaintextToken(text),
            secret,
        }
    }

    /// Offline validation: prefix, length, alphabet and checksum. No I/O, no allocation.
    pub fn is_well_formed(&self, token: &str) -> bool {
        self.check_shape(token).is_ok()
    }

    /// Like [`is_well_formed`](Self::is_well_formed), with the reason for a rejection.
    pub fn check_shape(&self, token: &str) -> Result<(), TokenFormatError> {
        let bytes = token.as_bytes();
        if bytes.len() != self.token_len() {
            return Err(TokenFormatError::Length);
        }
        if !bytes.starts_with(self.prefix.as_bytes()) {
            return Err(TokenFormatError::Prefix);
        }
        let body = &bytes[self.prefix.len()..];
        // A fold, not `all`: no early exit, so the compiler vectorises it.
        if !body.iter().fold(true, |ok, &b| ok & is_url_safe_base64(b)) {
            return Err(TokenFormatError::Alphabet);
        }
        let (covered, checksum_text) = bytes.split_at(bytes.len() - CHECKSUM_CHARS);
        let mut checksum = [0u8; 4];
        decode_exact(checksum_text, &mut checksum)?;
        if u32::from_be_bytes(checksum) == crc32fast::hash(covered) {
            Ok(())
        } else {
            Err(TokenFormatError::Checksum)
        }
    }

    /// The public id inside a well-formed token (validated offline).
    pub fn token_id(&self, token: &str) -> Result<TokenId, TokenFormatError> {
        self.parse(token).map(|parsed| parsed.id())
    }

    /// Validates a token offline and splits it into its id and secret.
    pub(crate) fn parse(&self, token: &str) -> Result<ParsedToken, TokenFormatError> {
        self.check_shape(token)?;
        let body = &token.as_bytes()[self.prefix.len()..];
        let mut id = [0u8; ID_BYTES];
        decode_exact(&body[..ID_CHARS], &mut id)?;
        let mut secret = SecretBytes([0u8; SECRET_BYTES]);
        decode_exact(&body[ID_CHARS..ID_CHARS + SECRET_CHARS], &mut secret.0)?;
        Ok(ParsedToken {
            id: TokenId(id),
            secret,
        })
    }
}

fn is_url_safe_base64(b: u8) -> bool {
    // Branch-free: letters (either case), digits, '-' and '_'.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'_')
}

/// Decodes base64 URL-safe text into exactly `out.len()` bytes, rejecting
/// non-canonical spellings (non-zero trailing bits).
fn decode_exact(text: &[u8], out: &mut [u8]) -> Result<(), TokenFormatError> {
    match URL_SAFE_NO_PAD.decode_slice(text, out) {
        Ok(n) if n == out.len() => Ok(()),
        _ => Err(TokenFormatError::Alphabet),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let format = TokenFormat::default();
        let minted = format.generate();
        let text = minted.token.expose_secret();
        assert_eq!(text.len(), 74);
        assert!(text.starts_with("iit_"));
        assert!(text[4..].bytes().all(is_url_safe_base64));
        assert_eq!(&text[4..24], minted.id.to_string());
        let parsed = format.parse(text).unwrap();
        assert_eq!(parsed.id(), minted.id);
        assert_eq!(
            parsed.secret().expose_secret(),
            minted.secret.expose_secret()
        );
        assert_eq!(minted.token.hint(), &text[70..]);
    }

    #[test]
    fn tokens_are_unique() {
        let format = TokenFormat::default();
        let a = format.generate();
        let b = format.generate();
        assert_ne!(a.id, b.id);
        assert_ne!(a.token.expose_secret(), b.token.expose_secret());
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let minted = TokenFormat::default().generate();
        let text = minted.token.expose_secret().to_owned();
        let secret_part = &text[24..68];
        for shown in [
            format!("{:?}", minted),
            format!("{:?}", minted.token),
            format!("{}", minted.token),
            format!("{:?}", minted.secret),
            format!("{:?}", TokenFormat::default().parse(&text).unwrap()),
        ] {
            assert!(!shown.contains(&text), "{shown}");
            assert!(!shown.contains(secret_part), "{shown}");
            assert!(!shown.contains(&text[24..34]), "{shown}");
        }
    }

    #[test]
    fn rejects_wrong_prefix_length_alphabet_and_checksum() {
        let format = TokenFormat::default();
        let text = format.generate().token.expose_secret().to_owned();
        let other = TokenFormat::new("abcd_").unwrap();
        assert_eq!(other.check_shape(&text), Err(TokenFormatError::Length));
        let swapped = format!("xyz_{}", &text[4..]);
        assert_eq!(format.check_shape(&swapped), Err(TokenFormatError::Prefix));
        assert_eq!(
            format.check_shape(&text[..73]),
            Err(TokenFormatError::Length)
        );
        let mut bad_char = text.clone().into_bytes();
        bad_char[30] = b'+';
        let bad_char = String::from_utf8(bad_char).unwrap();
        assert_eq!(
            format.check_shape(&bad_char),
            Err(TokenFormatError::Alphabet)
        );
        let mut typo = text.clone().into_bytes();
        typo[30] = if typo[30] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(format.check_shape(&typo), Err(TokenFormatError::Checksum));
    }

    #[test]
    fn prefix_validation() {
        for good in ["iit_", "sk_", "acme_live_", "a1_"] {
            assert!(TokenFormat::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "_",
            "iit",
            "IIT_",
            "1it_",
            "i-t_",
            "iit_\n",
            "toolongprefix_abc_",
            "i t_",
        ] {
            assert!(TokenFormat::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_id_round_trips_and_rejects_garbage() {
        let id = TokenId::random();
        assert_eq!(id.to_string().parse::<TokenId>().unwrap(), id);
        assert!("short".parse::<TokenId>().is_err());
        assert!("' OR 1=1 --aaaaaaaaa".parse::<TokenId>().is_err());
        assert!("aaaaaaaaaaaaaaaaaaa!".parse::<TokenId>().is_err());
    }

    #[test]
    fn token_ids_keep_their_bytes_and_hash_to_the_first_eight() {
        use std::hash::{BuildHasher, Hasher};

        let bytes: [u8; ID_BYTES] = std::array::from_fn(|i| u8::try_from(i + 1).unwrap());
        let id = TokenId(bytes);
        assert_eq!(id.as_bytes(), &bytes);
        assert_eq!(
            RandomIdState::default().hash_one(id),
            u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8])
        );
        // Further writes are folded in by xor, so they never saturate the hash.
        let mut hasher = RandomIdHasher::default();
        hasher.write(&[0b11, 2, 3]);
        hasher.write(&[0b01, 2]);
        assert_eq!(hasher.finish(), 0b10 | 3 << 16);
    }

    #[test]
    fn debug_and_display_are_exact_and_redacted() {
        let id = TokenId([0; ID_BYTES]);
        assert_eq!(id.to_string(), "AAAAAAAAAAAAAAAAAAAA");
        assert_eq!(format!("{id:?}"), "TokenId(AAAAAAAAAAAAAAAAAAAA)");
        let format = TokenFormat::default();
        let minted = format.generate();
        assert_eq!(format!("{:?}", minted.token), "PlaintextToken(<redacted>)");
        assert_eq!(minted.token.to_string(), "<redacted>");
        assert_eq!(format!("{:?}", minted.secret), "SecretBytes(<redacted>)");
        assert_eq!(
            format!("{minted:?}"),
            format!(
                "MintedToken {{ id: {:?}, token: PlaintextToken(<redacted>), .. }}",
                minted.id
            )
        );
        let parsed = format.parse(minted.token.expose_secret()).unwrap();
        assert_eq!(
            format!("{parsed:?}"),
            format!("ParsedToken {{ id: {:?}, .. }}", minted.id)
        );
    }

    #[test]
    fn the_secret_is_the_decoded_middle_of_the_token() {
        let minted = TokenFormat::default().generate();
        let text = minted.token.expose_secret();
        let decoded = URL_SAFE_NO_PAD.decode(&text[24..68]).unwrap();
        assert_eq!(decoded.len(), SECRET_BYTES);
        assert_eq!(minted.secret.expose_secret(), decoded.as_slice());
        let parsed = TokenFormat::default().parse(text).unwrap();
        assert_eq!(parsed.secret().expose_secret(), decoded.as_slice());
    }

    /// Two bad characters are as bad as one (the alphabet check is a fold,
    /// where an even number of failures must not cancel out).
    #[test]
    fn any_number_of_bad_characters_fails_the_alphabet() {
        let format = TokenFormat::default();
        let text = format.generate().token.expose_secret().to_owned();
        for bad in [&[30][..], &[30, 31], &[10, 40, 50]] {
            let mut bytes = text.clone().into_bytes();
            for &pos in bad {
                bytes[pos] = b'.';
            }
            let token = String::from_utf8(bytes).unwrap();
            assert_eq!(format.check_shape(&token), Err(TokenFormatError::Alphabet));
        }
    }

    #[test]
    fn generated_tokens_are_well_formed() {
        for format in [
            TokenFormat::default(),
            TokenFormat::new("acme_live_").unwrap(),
        ] {
            for _ in 0..8 {
                let minted = format.generate();
                assert!(format.is_well_formed(minted.token.expose_secret()));
            }
        }
    }

    #[test]
    fn the_prefix_is_kept() {
        assert_eq!(TokenFormat::default().prefix(), "iit_");
        assert_eq!(
            TokenFormat::new("acme_live_").unwrap().prefix(),
            "acme_live_"
        );
    }

    /// Every byte, so the classes' edges (`/ 0 9 :`, `@ A Z [`, `` ` a z {``) are covered.
    #[test]
    fn the_alphabet_is_exactly_url_safe_base64() {
        for b in 0..=u8::MAX {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_url_safe_base64(b), expected, "{:?}", b as char);
        }
    }

    #[test]
    fn decode_exact_wants_exactly_the_output_length() {
        let mut three = [0u8; 3];
        assert_eq!(decode_exact(b"AQID", &mut three), Ok(()));
        assert_eq!(three, [1, 2, 3]);
        assert_eq!(
            decode_exact(b"AQID", &mut [0u8; 4]),
            Err(TokenFormatError::Alphabet)
        );
        assert_eq!(
            decode_exact(b"AQJ", &mut [0u8; 2]),
            Err(TokenFormatError::Alphabet),
            "trailing bits must be zero"
        );
    }

    proptest! {
        #[test]
        fn any_single_character_change_is_rejected(pos in 4usize..74, replacement in "[A-Za-z0-9_-]") {
            let format = TokenFormat::default();
            let text = format.generate().token.expose_secret().to_owned();
            let mut bytes = text.clone().into_bytes();
            let new = replacement.as_bytes()[0];
            prop_assume!(bytes[pos] != new);
            bytes[pos] = new;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(!format.is_well_formed(&changed));
        }

        #[test]
        fn arbitrary_strings_never_panic_and_rarely_pass(s in ".{0,100}") {
            let format = TokenFormat::default();
            let _ = format.parse(&s);
            prop_assert!(!format.is_well_formed(&s) || s.len() == 74);
        }

        #[test]
        fn arbitrary_bodies_of_the_right_length_fail_the_checksum(body in "[A-Za-z0-9_-]{70}") {
            let format = TokenFormat::default();
            // A random 70-character body passes CRC-32 with probability 2^-32.
            let token = format!("iit_{body}");
            prop_assert!(!format.is_well_formed(&token));
        }
    }
}
