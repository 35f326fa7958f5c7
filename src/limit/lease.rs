//! Leases: how one instance admits most requests of a shared (Redis) window
//! without a round trip, while all instances together never exceed the limit.
//!
//! An instance asks the shared window for a batch of permits (a *lease*).
//! The script grants `min(asked, room)` and counts the granted permits in the
//! window at once, as if they had all been used, so a permit held by one
//! instance can never be granted to another. The instance then admits
//! locally while its lease has permits and has not expired.
//!
//! **Never over the limit.** Permits are counted in the bucket of
//! `grant time + ttl`, and a lease is used only until `send time + ttl`
//! (`send time` is before Redis's grant time). So each admission is counted
//! in a bucket no older than its own, and stays in the window at least as
//! long as the admission itself would. Every rolling window therefore counts
//! all admissions in it, and the script grants only what fits.
//!
//! **Cheap.** The first lease of a token is one permit; each lease used up
//! before it expired doubles the next, up to `max` (50 by default): steady
//! traffic costs one round trip per 50 admissions. A lease that expired with
//! permits left asks next for what was used.
//!
//! **Smaller near the limit.** A lease is at most 1/16 of the room left at
//! the last grant (never less than one), so as the window fills the leases
//! shrink to one permit and the permits held unused by the other instances
//! shrink with them.
//!
//! **Nothing lost while running.** Unused permits of an expired lease go back
//! to the window with the next ask (same round trip) or in the idle sweep
//! ([`RateLimitStore::evict_idle`](super::RateLimitStore::evict_idle), every
//! 30 s), so only an instance that stops (crash or restart) strands permits:
//! at most its last lease per token, until that lease's bucket leaves the
//! window.
//!
//! **Worst case under-admission.** A request is refused only when the window
//! is full of requests admitted in the last window + one bucket + ttl,
//! permits held unused by the other instances (each at most its last lease,
//! which near the limit is one permit), and permits stranded by stopped
//! instances (at most one lease each per token). Property-tested against an
//! exact log with several instances, expiries and crashes (`lease_model.rs`).
//! A refusal cached on one instance (below) may also miss permits that other
//! instances give back before the announced reset.
//!
//! **Denials are cached.** A refusal carries when the binding window next
//! frees a permit; until then this instance refuses that token without a
//! round trip. Measured from the send time, so the wait never outlasts the
//! window's own.
//!
//! `X-RateLimit-Remaining` on a local admission is the room at the last grant
//! plus the permits still held: on one instance it only decreases, by one
//! per admission, until the window frees room. Across instances the figures
//! may differ by the permits the others hold.

use super::window::{Decision, binding};

/// The window length in seconds (`RateLimit-Policy`); leases use the default window.
const WINDOW_SECS: u64 = 3600;

/// A lease is at most this fraction (1/n) of the room left at the last grant.
pub(crate) const FILL_DIVISOR: u32 = 16;

/// One window's state after a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// Requests left in the window (permits granted count as used).
    pub(crate) remaining: u32,
    /// Unix time in ms at which `remaining` next grows.
    pub(crate) reset_at_ms: u64,
}

/// The shared window's answer to an [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// Permits granted (0: refused); already counted in the window(s).
    pub(crate) permits: u32,
    /// The bucket they are counted in.
    pub(crate) record: u64,
    /// The shared clock (Unix ms) at the grant.
    pub(crate) now_ms: u64,
    /// The token's window after the grant.
    pub(crate) token: Room,
    /// The account's window after the grant, when there is one.
    pub(crate) account: Option<Room>,
}

/// What to ask the shared window for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ask {
    /// Permits wanted (at least one).
    pub(crate) permits: u32,
    /// Unused permits to give back first: `(bucket, count)`.
    pub(crate) give_back: Option<(u64, u32)>,
}

/// The limits a lease was granted under: a token limit and maybe an account ceiling.
pub(crate) type Limits = (u32, Option<u32>);

/// One token's lease on one instance. Times are this instance's monotonic
/// milliseconds; the shared window's clock appears only in [`Grant`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Lease {
    /// The last grant and the limits it was asked under.
    last: Option<(Grant, Limits)>,
    /// Permits of the last grant not used yet.
    held: u32,
    /// Permits of the last grant used so far.
    used: u32,
    /// When the ask for the last grant was sent.
    sent_at: u64,
    /// Until when the held permits may be used (`sent_at + ttl`).
    expires_at: u64,
    /// Until when a refusal stands without asking again.
    denied_until: u64,
}

impl Lease {
    /// Admits or refuses from this instance's lease, or `None`: ask the
    /// shared window ([`ask`](Self::ask), then [`granted`](Self::granted)).
    pub(crate) fn take(&mut self, now: u64, limits: Limits) -> Option<Decision> {
        let (_, under) = self.last?;
        if under != limits {
            return None;
        }
        if self.held > 0 && now < self.expires_at {
            self.held -= 1;
            self.used += 1;
            return Some(self.decision(now, true));
        }
        (now < self.denied_until).then(|| self.decision(now, false))
    }

    /// The next ask: its size (see the module docs) and the held permits
    /// to give back (expired, or granted under other limits). The lease
    /// lets go of those at once: if the answer is lost they stay counted
    /// (stranded), but they are never given back twice.
    pub(crate) fn ask(&mut self, limits: Limits, max: u32) -> Ask {
        let (wanted, room) = match self.last {
            Some((grant, under)) if under == limits => {
                let wanted = if self.held == 0 {
                    grant.permits.saturating_mul(2)
                } else {
                    self.used
                };
                let account = grant.account.map_or(u32::MAX, |a| a.remaining);
                (wanted, grant.token.remaining.min(account) + self.held)
            }
            _ => (1, limits.0.min(limits.1.unwrap_or(u32::MAX))),
        };
        let give_back = match self.last {
            Some((grant, _)) if self.held > 0 => {
                Some((grant.record, std::mem::take(&mut self.held)))
            }
            _ => None,
        };
        let cap = (room / FILL_DIVISOR).max(1);
        Ask {
            permits: wanted.clamp(1, max.max(1)).min(cap),
            give_back,
        }
    }

    /// Records the answer to an ask sent at `sent_at` and decides the request
    /// that asked: it takes the first permit, or is refused.
    pub(crate) fn granted(
        &mut self,
        sent_at: u64,
        ttl_ms: u64,
        grant: Grant,
        limits: Limits,
    ) -> Decision {
        self.last = Some((grant, limits));
        self.sent_at = sent_at;
        self.expires_at = sent_at + ttl_ms;
        self.held = grant.permits.saturating_sub(1);
        self.used = grant.permits.min(1);
        let allowed = grant.permits > 0;
        let decision = self.decision(sent_at, allowed);
        self.denied_until = if allowed {
            0
        } else {
            sent_at + decision.reset_at_ms.saturating_sub(grant.now_ms)
        };
        decision
    }

    /// Permits to give back once the lease has expired: `(bucket, count)`.
    /// Taking them empties the lease.
    pub(crate) fn take_expired(&mut self, now: u64) -> Option<(u64, u32)> {
        let (grant, _) = self.last?;
        if self.held == 0 || now < self.expires_at {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        Some((grant.record, held))
    }

    /// Whether the lease holds nothing and no refusal stands: the entry can go.
    pub(crate) fn is_idle(&self, now: u64) -> bool {
        self.held == 0 && now >= self.expires_at && now >= self.denied_until
    }

    /// The limits of the last grant, if any.
    pub(crate) fn limits(&self) -> Option<Limits> {
        self.last.map(|(_, limits)| limits)
    }

    /// Permits held unused (for tests and the model).
    #[cfg(test)]
    pub(crate) fn held(&self) -> u32 {
        self.held
    }

    /// The headers' view: the room at the last grant plus the held permits.
    fn decision(&self, now: u64, allowed: bool) -> Decision {
        let Some((grant, (limit, ceiling))) = self.last else {
            unreachable!("decisions are made only after a grant")
        };
        let now_ms = grant.now_ms + now.saturating_sub(self.sent_at);
        let view = |limit: u32, room: Room| Decision {
            allowed,
            limit,
            remaining: room.remaining.saturating_add(self.held),
            reset_at_ms: room.reset_at_ms,
            now_ms,
            window_secs: WINDOW_SECS,
        };
        match (ceiling, grant.account) {
            (Some(ceiling), Some(account)) => {
                binding(view(limit, grant.token), view(ceiling, account))
            }
            _ => view(limit, grant.token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(permits: u32, remaining: u32, now_ms: u64) -> Grant {
        Grant {
            permits,
            record: 7,
            now_ms,
            token: Room {
                remaining,
                reset_at_ms: now_ms + 3_600_000,
            },
            account: None,
        }
    }

    #[test]
    fn the_first_ask_is_one_permit_and_leases_double_when_used_up() {
        let mut lease = Lease::default();
        let limits = (1000, None);
        assert_eq!(lease.take(0, limits), None);
        assert_eq!(
            lease.ask(limits, 50),
            Ask {
                permits: 1,
                give_back: None
            }
        );
        let first = lease.granted(0, 2000, grant(1, 999, 10_000), limits);
        assert!(first.allowed);
        assert_eq!(first.remaining, 999);
        assert_eq!(lease.take(1, limits), None, "the one permit was used");
        assert_eq!(lease.ask(limits, 50).permits, 2);
        lease.granted(1, 2000, grant(2, 997, 10_001), limits);
        let local = lease.take(2, limits).unwrap();
        assert!(local.allowed);
        assert_eq!(local.remaining, 997);
        assert_eq!(
            local.now_ms, 10_002,
            "the shared clock plus local time since the ask"
        );
        assert_eq!(lease.ask(limits, 50).permits, 4);
        lease.granted(3, 2000, grant(40, 900, 10_003), limits);
        assert_eq!(
            lease.clone().ask(limits, 50).permits,
            1,
            "ask only for what was used"
        );
        for t in 4..43 {
            assert!(lease.take(t, limits).unwrap().allowed);
        }
        assert_eq!(lease.take(43, limits), None);
        assert_eq!(lease.ask(limits, 50).permits, 50, "capped by max");
        assert_eq!(lease.ask(limits, 3).permits, 3);
    }

    #[test]
    fn remaining_falls_by_one_per_local_admission() {
        let mut lease = Lease::default();
        let limits = (1000, None);
        let first = lease.granted(0, 2000, grant(5, 900, 0), limits);
        assert_eq!(first.remaining, 904);
        let seen: Vec<u32> = (1..=4)
            .map(|t| lease.take(t, limits).unwrap().remaining)
            .collect();
        assert_eq!(seen, [903, 902, 901, 900]);
        assert_eq!(lease.take(5, limits), None);
    }

    #[test]
    fn leases_expire_and_give_their_rest_back() {
        let mut lease = Lease::default();
        let limits = (1000, None);
        lease.granted(100, 2000, grant(10, 900, 0), limits);
        assert!(
            lease.take(2099, limits).is_some(),
            "usable until send + ttl"
        );
        assert_eq!(lease.take(2100, limits), None, "expired");
        // Two were used of ten: the next ask is for two and gives eight back.
        assert_eq!(
            lease.ask(limits, 50),
            Ask {
                permits: 2,
                give_back: Some((7, 8))
            }
        );
        assert_eq!(lease.held(), 0, "given back with the ask, never twice");
        assert_eq!(lease.ask(limits, 50).give_back, None);
        // Or in the idle sweep, once expired.
        let mut lease = Lease::default();
        lease.granted(100, 2000, grant(10, 900, 0), limits);
        assert_eq!(lease.take_expired(2099), None);
        assert!(!lease.is_idle(2099));
        assert_eq!(lease.take_expired(2100), Some((7, 9)));
        assert_eq!(lease.held(), 0);
        assert!(lease.is_idle(2100));
    }

    #[test]
    fn leases_shrink_as_the_window_fills() {
        let mut lease = Lease::default();
        let limits = (1000, None);
        lease.granted(0, 2000, grant(50, 320, 0), limits);
        for t in 1..50 {
            lease.take(t, limits).unwrap();
        }
        assert_eq!(lease.ask(limits, 50).permits, 20, "320 / 16");
        lease.granted(60, 2000, grant(20, 10, 0), limits);
        for t in 61..80 {
            lease.take(t, limits).unwrap();
        }
        assert_eq!(lease.ask(limits, 50).permits, 1, "never below one");
        // The first ask of a small limit is one permit too.
        assert_eq!(Lease::default().ask((5, None), 50).permits, 1);
    }

    #[test]
    fn the_cap_counts_the_permits_given_back() {
        let mut lease = Lease::default();
        let limits = (1000, None);
        lease.granted(0, 2000, grant(13, 20, 0), limits);
        assert_eq!(lease.limits(), Some(limits));
        lease.take(1, limits).unwrap();
        // Expired with 11 held of 13 (2 used): the room is 20 + 11 back.
        let ask = lease.ask(limits, 50);
        assert_eq!(ask.give_back, Some((7, 11)));
        assert_eq!(ask.permits, 1, "min(2 used, (20 + 11) / 16 = 1)");
        let mut lease = Lease::default();
        lease.granted(0, 2000, grant(40, 20, 0), limits);
        for t in 1..5 {
            lease.take(t, limits).unwrap();
        }
        assert_eq!(
            lease.ask(limits, 50).permits,
            3,
            "min(5 used, (20 + 35) / 16 = 3)"
        );
        assert_eq!(Lease::default().limits(), None);
    }

    #[test]
    fn a_used_up_lease_under_other_limits_starts_again_at_one() {
        let mut lease = Lease::default();
        lease.granted(0, 2000, grant(8, 900, 0), (1000, None));
        for t in 1..8 {
            lease.take(t, (1000, None)).unwrap();
        }
        assert_eq!(lease.clone().ask((1000, None), 50).permits, 16);
        assert_eq!(lease.ask((2000, None), 50).permits, 1);
    }

    #[test]
    fn other_limits_need_a_new_grant_and_give_the_old_permits_back() {
        let mut lease = Lease::default();
        lease.granted(0, 2000, grant(10, 900, 0), (1000, None));
        assert_eq!(lease.take(1, (2000, None)), None);
        assert_eq!(lease.take(1, (1000, Some(5))), None);
        let ask = lease.ask((2000, None), 50);
        assert_eq!(ask.give_back, Some((7, 9)));
        assert_eq!(ask.permits, 1, "a fresh start under the new limits");
    }

    #[test]
    fn a_refusal_stands_until_the_window_frees_room() {
        let mut lease = Lease::default();
        let limits = (5, None);
        let mut refused = grant(0, 0, 50_000);
        refused.token.reset_at_ms = 80_000;
        let decision = lease.granted(1_000, 2000, refused, limits);
        assert!(!decision.allowed);
        assert_eq!(decision.remaining, 0);
        assert_eq!(decision.retry_after_secs(), 30);
        let cached = lease.take(30_999, limits).unwrap();
        assert!(!cached.allowed);
        assert_eq!(cached.reset_at_ms, 80_000);
        assert_eq!(cached.now_ms, 79_999);
        assert_eq!(lease.take(31_000, limits), None, "then ask again");
        assert_eq!(lease.take(1_000, (6, None)), None, "a new limit asks again");
        assert!(!lease.is_idle(30_999));
        assert!(lease.is_idle(31_000));
    }

    #[test]
    fn the_account_window_binds_when_it_has_less_room() {
        let mut lease = Lease::default();
        let limits = (100, Some(20));
        let mut both = grant(4, 90, 0);
        both.account = Some(Room {
            remaining: 10,
            reset_at_ms: 5,
        });
        let decision = lease.granted(0, 2000, both, limits);
        assert_eq!((decision.limit, decision.remaining), (20, 13));
        assert_eq!(
            lease.ask(limits, 50).permits,
            1,
            "(10 + 3) / 16 rounds down, then one"
        );
    }
}
