//! Hooks for tests, benchmarks and fuzzing (feature `test-util`): the
//! parsers on their own, and the in-memory limiter. Not for production use;
//! nothing here is covered by semver.

use http::HeaderMap;

pub use crate::bearer::BearerError;
use crate::limit::MemoryRateLimiter;

/// The bearer token of a request's only `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    crate::bearer::bearer_token(headers)
}

/// Parses one `Authorization` value; `Some(token)` only for `Bearer 1*SP token68`.
pub fn parse_bearer(value: &[u8]) -> Option<&str> {
    crate::bearer::parse_bearer(value)
}

/// The in-process sliding-window limiter, keyed by token id.
#[derive(Default)]
pub struct WindowLimiter(MemoryRateLimiter);

impl std::fmt::Debug for WindowLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowLimiter")
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl WindowLimiter {
    /// An empty limiter: one hour in 60 one-minute buckets.
    pub fn new() -> Self {
        Self(MemoryRateLimiter::new(crate::limit::WindowConfig::default()))
    }

    /// Checks one request for `token` at `now_ms` (Unix milliseconds).
    pub fn check_at(&self, token: &crate::TokenId, limit: u32, now_ms: u64) -> crate::Decision {
        self.0.check_at(token, limit, now_ms)
    }

    /// Number of tokens with state.
    pub fn tracked(&self) -> usize {
        self.0.tracked()
    }
}

/// A new random token in `format` (well formed, never stored): its id and text.
pub fn mint(format: &crate::TokenFormat) -> (crate::TokenId, String) {
    let minted = format.generate();
    (minted.id, minted.token.expose_secret().to_owned())
}

/// A token split into its parts, for oracles that check the parser.
#[derive(Debug)]
pub struct TokenParts {
    /// The public id.
    pub id: crate::TokenId,
    /// The id's 15 bytes.
    pub id_bytes: Vec<u8>,
    /// The secret's 33 bytes.
    pub secret: Vec<u8>,
    /// The parsed token's `Debug` text (which must not show the secret).
    pub debug: String,
}

/// Validates `text` offline and splits it, as the gate does.
pub fn parse_token(
    format: &crate::TokenFormat,
    text: &str,
) -> Result<TokenParts, crate::TokenFormatError> {
    let parsed = format.parse(text)?;
    Ok(TokenParts {
        id: parsed.id(),
        id_bytes: parsed.id().as_bytes().to_vec(),
        secret: parsed.secret().expose_secret().to_vec(),
        debug: format!("{parsed:?}"),
    })
}

/// The 15 bytes of a token id.
pub fn token_id_bytes(id: &crate::TokenId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// argon2id on the gate's bounded argon2 threads, for the benchmark of its cost.
pub struct Argon2 {
    hasher: crate::hash::SecretHasher,
    secret: crate::token::SecretBytes,
}

impl std::fmt::Debug for Argon2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2").finish_non_exhaustive()
    }
}

impl Argon2 {
    /// A hasher with `params` and one concurrent computation, and a random secret.
    pub fn new(params: crate::Argon2Params) -> Result<Self, crate::config_error::ConfigError> {
        Ok(Self {
            hasher: crate::hash::SecretHasher::with_metrics(params, 1, None)?,
            secret: crate::TokenFormat::default().generate().secret,
        })
    }

    /// The secret's PHC string.
    #[expect(
        clippy::expect_used,
        reason = "a benchmark hook: a failure fails the benchmark"
    )]
    pub async fn hash(&self) -> String {
        self.hasher
            .hash(self.secret.clone())
            .await
            .expect("argon2 hashes")
    }

    /// Verifies the secret against `phc`.
    #[expect(
        clippy::expect_used,
        reason = "a benchmark hook: a failure fails the benchmark"
    )]
    pub async fn verify(&self, phc: &str) -> bool {
        self.hasher
            .verify(self.secret.clone(), phc.to_owned())
            .await
            .expect("a PHC string we made")
    }
}

impl WindowLimiter {
    /// Checks one request for `token` now (the monotonic clock the gate uses).
    pub fn check_now(&self, token: &crate::TokenId, limit: u32) -> crate::Decision {
        self.0.check_now(token, limit)
    }
}

impl WindowLimiter {
    /// Drops the windows idle at `now_ms`; returns how many.
    pub fn evict_idle_at(&self, now_ms: u64) -> usize {
        self.0.evict_idle_at(now_ms)
    }
}

/// Writes the rate-limit headers of `decision`, as the layer does.
pub fn write_rate_limit_headers(decision: &crate::Decision, headers: &mut HeaderMap) {
    crate::response::write_rate_limit_headers(decision, headers);
}
