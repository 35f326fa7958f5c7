//! The lease script (`lease.lua`, run atomically by Redis) and how it is
//! called. [`RedisRateLimiter`](super::RedisRateLimiter) asks for leases
//! with it; the twin that the lease model is property-tested with is
//! `lease_model.rs`'s `Twin`, checked against this script in `redis.rs`.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::LimitError;
use super::lease::{Ask, Grant, Limits, Room};
use super::window::WindowConfig;
use crate::token::TokenId;

/// Gives back, grants and counts permits; see the comments at its top.
pub(super) const SCRIPT: &str = include_str!("lease.lua");

/// The keys and limits of one check.
pub(super) struct Windows<'a> {
    pub(super) token: &'a TokenId,
    pub(super) limit: u32,
    pub(super) account: Option<(&'a str, u32)>,
}

impl Windows<'_> {
    pub(super) fn limits(&self) -> Limits {
        (self.limit, self.account.map(|(_, ceiling)| ceiling))
    }
}

/// Calls of the script: everything but the connection, so that the idle
/// sweep can give permits back from a task of its own.
#[derive(Debug, Clone)]
pub(super) struct ScriptCall {
    pub(super) script: redis::Script,
    pub(super) key_prefix: String,
    pub(super) lease_ms: u64,
    pub(super) timeout: Duration,
}

impl ScriptCall {
    /// Gives back `ask.give_back`, then asks for `ask.permits` (0: only give
    /// back). `now_ms` replaces Redis's clock (tests only).
    pub(super) async fn call(
        &self,
        connection: &mut ConnectionManager,
        windows: &Windows<'_>,
        ask: Ask,
        now_ms: Option<u64>,
    ) -> Result<Grant, LimitError> {
        let window = WindowConfig::default();
        let prefix = &self.key_prefix;
        let mut invocation = self.script.key(format!("{prefix}:rl:{}", windows.token));
        if let Some((account, _)) = windows.account {
            invocation.key(format!("{prefix}:rla:{account}"));
        }
        let (give_bucket, give_count) = ask.give_back.unwrap_or((0, 0));
        invocation
            .arg(windows.limit)
            .arg(window.bucket_ms())
            .arg(window.buckets())
            .arg(windows.account.map_or(0, |(_, ceiling)| ceiling))
            .arg(ask.permits)
            .arg(self.lease_ms)
            .arg(give_bucket)
            .arg(give_count);
        if let Some(now_ms) = now_ms {
            invocation.arg(now_ms);
        }
        let answer: Vec<u64> =
            tokio::time::timeout(self.timeout, invocation.invoke_async(connection))
                .await
                .map_err(|_| LimitError("Redis did not answer in time".into()))?
                .map_err(|e| LimitError(Box::new(e)))?;
        let room = |remaining: u64, reset_at_ms: u64| Room {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_at_ms,
        };
        let (permits, record, now_ms, token, account) = match (windows.account, answer.as_slice()) {
            (None, &[permits, record, now, remaining, reset]) => {
                (permits, record, now, room(remaining, reset), None)
            }
            (Some(_), &[permits, record, now, remaining, reset, left, account_reset]) => (
                permits,
                record,
                now,
                room(remaining, reset),
                Some(room(left, account_reset)),
            ),
            _ => {
                return Err(LimitError(
                    "unexpected answer from the rate-limit script".into(),
                ));
            }
        };
        Ok(Grant {
            permits: u32::try_from(permits).unwrap_or(0),
            record,
            now_ms,
            token,
            account,
        })
    }
}
