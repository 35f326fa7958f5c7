//! The Lua scripts (run atomically by Redis) and how they are called:
//! `lease.lua` asks for leases, `reseed.lua` adds an instance's counts back
//! into a new generation of the windows, `generation_check.lua` only checks
//! the generation. Each starts with `generation.lua`, which detects that
//! Redis lost the windows. The lease script's twin, which the lease model is
//! property-tested with, is `lease_model.rs`'s `Twin`, checked against the
//! script in `redis.rs`.

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;

use super::LimitError;
use super::lease::{Ask, Grant, Limits, Room};
use super::reseed::Seeds;
use super::window::WindowConfig;
use crate::token::TokenId;

/// Gives back, grants and counts permits; see the comments at its top.
const LEASE: &str = concat!(
    include_str!("generation.lua"),
    "\n",
    include_str!("lease.lua")
);

/// Adds an instance's counts into a new generation, once.
const RESEED: &str = concat!(
    include_str!("generation.lua"),
    "\n",
    include_str!("reseed.lua")
);

/// Only the generation check.
const CHECK: &str = concat!(
    include_str!("generation.lua"),
    "\n",
    include_str!("generation_check.lua")
);

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

/// One shared window, by what it counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum WindowKey {
    Token(TokenId),
    Account(Box<str>),
}

/// The generation a call is made in.
#[derive(Debug, Clone, Copy)]
pub(super) struct InGeneration<'a> {
    /// The generation this instance knows (`None`: none yet, it adopts the current one).
    pub(super) known: Option<&'a str>,
    /// The id to open a new generation under, if Redis has none.
    pub(super) candidate: &'a str,
}

/// A script's answer, when the windows are those of the caller's generation
/// or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer<T> {
    /// Done in `generation` (the caller's, or the one it adopted).
    Done { generation: String, value: T },
    /// The windows are those of another generation: re-seed into it, then call again.
    Reseed(String),
    /// The generation is new and waits for the instances' re-seeds: no
    /// permit is granted before Unix ms `until` (Redis's clock: `now`).
    Settling {
        generation: String,
        until: u64,
        now: u64,
    },
}

/// What a re-seed did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seeded {
    /// Counts were added to this many keys.
    Keys(u64),
    /// This instance had already re-seeded this generation.
    Already,
    /// The generation changed again: detect it anew.
    Stale,
}

/// Calls of the scripts: everything but the connection, so that the idle
/// sweep and the generation watch can call from tasks of their own.
#[derive(Debug, Clone)]
pub(super) struct ScriptCall {
    lease: redis::Script,
    reseed: redis::Script,
    check: redis::Script,
    key_prefix: String,
    pub(super) lease_ms: u64,
    pub(super) settle_ms: u64,
    timeout: Duration,
}

fn failed(what: &str) -> LimitError {
    LimitError(format!("unexpected answer from the rate-limit {what} script").into())
}

fn text(value: Option<&Value>) -> Option<String> {
    redis::from_redis_value(value?).ok()
}

fn number(value: Option<&Value>) -> Option<u64> {
    redis::from_redis_value(value?).ok()
}

impl ScriptCall {
    pub(super) fn new(key_prefix: &str, lease_ms: u64, settle_ms: u64, timeout: Duration) -> Self {
        Self {
            lease: redis::Script::new(LEASE),
            reseed: redis::Script::new(RESEED),
            check: redis::Script::new(CHECK),
            key_prefix: key_prefix.to_owned(),
            lease_ms,
            settle_ms,
            timeout,
        }
    }

    fn generation_key(&self) -> String {
        format!("{}:gen", self.key_prefix)
    }

    /// The key of a window.
    pub(super) fn window_key(&self, key: &WindowKey) -> String {
        let prefix = &self.key_prefix;
        match key {
            WindowKey::Token(token) => format!("{prefix}:rl:{token}"),
            WindowKey::Account(account) => format!("{prefix}:rla:{account}"),
        }
    }

    async fn invoke(
        &self,
        invocation: redis::ScriptInvocation<'_>,
        connection: &mut ConnectionManager,
    ) -> Result<Vec<Value>, LimitError> {
        tokio::time::timeout(self.timeout, invocation.invoke_async(connection))
            .await
            .map_err(|_| LimitError("Redis did not answer in time".into()))?
            .map_err(|e| LimitError(Box::new(e)))
    }

    /// `{'gen', id}` and `{'settling', id, until}`, common to the scripts.
    fn stale<T>(answer: &[Value]) -> Option<Answer<T>> {
        match text(answer.first())?.as_str() {
            "gen" => Some(Answer::Reseed(text(answer.get(1))?)),
            "settling" => Some(Answer::Settling {
                generation: text(answer.get(1))?,
                until: number(answer.get(2))?,
                now: number(answer.get(3))?,
            }),
            _ => None,
        }
    }

    /// Gives back `ask.give_back`, then asks for `ask.permits` (0: only give
    /// back), in generation `generation`. `now_ms` replaces Redis's clock
    /// (tests only).
    pub(super) async fn call(
        &self,
        connection: &mut ConnectionManager,
        windows: &Windows<'_>,
        ask: Ask,
        generation: InGeneration<'_>,
        now_ms: Option<u64>,
    ) -> Result<Answer<Grant>, LimitError> {
        let window = WindowConfig::default();
        let mut invocation = self.lease.key(self.generation_key());
        invocation.key(self.window_key(&WindowKey::Token(*windows.token)));
        if let Some((account, _)) = windows.account {
            invocation.key(self.window_key(&WindowKey::Account(account.into())));
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
            .arg(give_count)
            .arg(generation.known.unwrap_or(""))
            .arg(generation.candidate)
            .arg(self.settle_ms);
        if let Some(now_ms) = now_ms {
            invocation.arg(now_ms);
        }
        let answer = self.invoke(invocation, connection).await?;
        if let Some(stale) = Self::stale(&answer) {
            return Ok(stale);
        }
        let generation = text(answer.get(1)).ok_or_else(|| failed("lease"))?;
        let numbers: Option<Vec<u64>> = answer[2..].iter().map(|v| number(Some(v))).collect();
        let room = |remaining: u64, reset_at_ms: u64| Room {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_at_ms,
        };
        let (permits, record, now_ms, token, account) = match (windows.account, numbers.as_deref())
        {
            (None, Some(&[permits, record, now, remaining, reset])) => {
                (permits, record, now, room(remaining, reset), None)
            }
            (Some(_), Some(&[permits, record, now, remaining, reset, left, account_reset])) => (
                permits,
                record,
                now,
                room(remaining, reset),
                Some(room(left, account_reset)),
            ),
            _ => return Err(failed("lease")),
        };
        Ok(Answer::Done {
            generation,
            value: Grant {
                permits: u32::try_from(permits).unwrap_or(0),
                record,
                now_ms,
                token,
                account,
            },
        })
    }

    /// Only checks the generation; the value is Redis's clock (Unix ms).
    pub(super) async fn check_generation(
        &self,
        connection: &mut ConnectionManager,
        generation: InGeneration<'_>,
        now_ms: Option<u64>,
    ) -> Result<Answer<u64>, LimitError> {
        let mut invocation = self.check.key(self.generation_key());
        invocation
            .arg(generation.known.unwrap_or(""))
            .arg(generation.candidate)
            .arg(self.settle_ms);
        if let Some(now_ms) = now_ms {
            invocation.arg(now_ms);
        }
        let answer = self.invoke(invocation, connection).await?;
        if let Some(stale) = Self::stale(&answer) {
            return Ok(stale);
        }
        match (text(answer.get(1)), number(answer.get(2))) {
            (Some(generation), Some(now)) => Ok(Answer::Done {
                generation,
                value: now,
            }),
            _ => Err(failed("generation")),
        }
    }

    /// Adds `seeds` into the windows of `generation`: once per instance and
    /// generation, merged with what the windows kept, when `once` (a
    /// re-seed); otherwise as more counts (local admissions Redis has not seen).
    pub(super) async fn reseed(
        &self,
        connection: &mut ConnectionManager,
        generation: &str,
        instance: &str,
        once: bool,
        seeds: &[(WindowKey, Seeds)],
        now_ms: Option<u64>,
    ) -> Result<Seeded, LimitError> {
        let window = WindowConfig::default();
        let prefix = &self.key_prefix;
        let mut invocation = self.reseed.key(self.generation_key());
        invocation.key(format!("{prefix}:seeded:{generation}:{instance}"));
        for (key, _) in seeds {
            invocation.key(self.window_key(key));
        }
        invocation
            .arg(generation)
            .arg(if once { "once" } else { "more" })
            .arg(window.bucket_ms())
            .arg(window.buckets())
            .arg(now_ms.map_or(String::new(), |now| now.to_string()));
        for (_, buckets) in seeds {
            let counts: Vec<String> = buckets.iter().map(|(b, n)| format!("{b}:{n}")).collect();
            invocation.arg(counts.join(" "));
        }
        let answer = self.invoke(invocation, connection).await?;
        match (text(answer.first()).as_deref(), number(answer.get(1))) {
            (Some("seeded"), Some(keys)) => Ok(Seeded::Keys(keys)),
            (Some("done"), _) => Ok(Seeded::Already),
            (Some("gen"), _) => Ok(Seeded::Stale),
            _ => Err(failed("re-seed")),
        }
    }
}
