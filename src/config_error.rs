//! [`ConfigError`]: a configuration value the library refuses, whichever
//! part it configures. Every message names the value (unless it is a
//! secret) and what to use instead.
//!
//! This module is a leaf: it imports nothing else of the crate.

/// A configuration value that cannot be used: the gate's (argon2
/// parameters, token prefix, scopes), the Redis limiter's URL, the admin
/// token, the settings page's prefix and trusted proxies, or the GitHub
/// secret scanning key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// argon2 refused the parameters (e.g. memory below 8 × parallelism KiB).
    #[error("invalid argon2 parameters: {0}")]
    Argon2(String),
    /// A token prefix that is not 2 to 16 characters of `a-z`, `0-9` and `_`,
    /// starting with a letter and ending with `_`.
    #[error(
        "invalid token prefix {0:?}: use 2 to 16 characters of a-z, 0-9 and '_', starting with a letter and ending with '_' (e.g. \"iit_\")"
    )]
    TokenPrefix(String),
    /// A declared scope is not a valid name.
    #[error(
        "scope {0:?} is not a valid name: use 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-'"
    )]
    InvalidScope(String),
    /// The Redis limiter's URL is malformed.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An admin token of fewer than 16 characters (never echoed).
    #[error("the admin token is too short: use at least 16 random characters")]
    AdminTokenTooShort,
    /// An admin token with a character a Bearer header cannot carry (never echoed).
    #[error(
        "the admin token can hold only A-Z a-z 0-9 - . _ ~ + / and a trailing =, the characters of a Bearer token (e.g. `openssl rand -base64 32`)"
    )]
    AdminTokenAlphabet,
    /// A prefix the settings routes cannot be mounted at.
    #[error("invalid settings prefix {prefix:?}: {reason}")]
    SettingsPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A trusted-proxy entry that is not a CIDR block.
    #[error(
        "invalid trusted proxy {entry:?}: {reason} (use CIDR blocks such as 127.0.0.0/8,::1/128)"
    )]
    TrustedProxy {
        /// The entry given.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A GitHub secret scanning key file that cannot be used; the message
    /// says why, naming the `key_identifier` of a bad key.
    #[error(transparent)]
    GithubKeys(Box<dyn std::error::Error + Send + Sync>),
}
