//! Property tests of the two-window rule ([`check_both`]): a token's window
//! and its account's shared window, against an exact model.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::window::{HOUR_MS, WindowConfig, WindowState, check_both};

/// Admission times of one key, for counting any rolling hour exactly.
#[derive(Default)]
struct Log(VecDeque<u64>);

impl Log {
    fn in_last_hour(&self, now: u64) -> usize {
        self.0.iter().filter(|&&t| t + HOUR_MS > now).count()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Requests from several tokens of one account, with limits that change
    /// (plan edits) between requests: no rolling hour ever holds more than a
    /// token's limit for that token or the account's ceiling for the
    /// account, and a refused request changes neither window.
    #[test]
    fn never_over_either_limit_and_refusals_consume_nothing(
        token_limit in 1u32..12,
        account_limit in 1u32..20,
        lowered in prop::option::of(1u32..6),
        requests in prop::collection::vec((0usize..3, 0u64..300_000), 1..400),
        start in HOUR_MS..10 * HOUR_MS,
    ) {
        let config = WindowConfig::default();
        let mut tokens = [WindowState::new(&config), WindowState::new(&config), WindowState::new(&config)];
        let mut account = WindowState::new(&config);
        let mut token_logs: [Log; 3] = Default::default();
        let mut account_log = Log::default();
        let mut now = start;
        for (i, (which, gap)) in requests.into_iter().enumerate() {
            now += gap;
            // Halfway, the plan may lower the ceiling (to an exact bucket boundary or not).
            let account_limit = match lowered {
                Some(low) if i > 200 => low,
                _ => account_limit,
            };
            let before = (tokens[which].clone(), account.clone());
            let decision = check_both(
                &config,
                (&mut tokens[which], token_limit),
                Some((&mut account, account_limit)),
                now,
            );
            if decision.allowed {
                token_logs[which].0.push_back(now);
                account_log.0.push_back(now);
                prop_assert!(token_logs[which].in_last_hour(now) <= token_limit as usize);
                prop_assert!(account_log.in_last_hour(now) <= account_limit as usize);
                prop_assert!(decision.remaining < token_limit.max(account_limit));
            } else {
                // Nothing counted: both windows only moved forward in time.
                let (mut token_before, mut account_before) = before;
                token_before.advance_to(&config, now);
                account_before.advance_to(&config, now);
                prop_assert_eq!(&tokens[which], &token_before);
                prop_assert_eq!(&account, &account_before);
                prop_assert_eq!(decision.remaining, 0);
                prop_assert!(decision.reset_at_ms > now);
            }
        }
    }
}

/// The headers describe the window with fewer requests left; a refusal
/// reports the window that refused, and the later reset if both did.
#[test]
fn the_decision_is_the_binding_windows() {
    let config = WindowConfig::default();
    let t0 = 5 * HOUR_MS;
    let (mut token, mut account) = (WindowState::new(&config), WindowState::new(&config));
    // Token 10/h, account 3/h: the account binds from the start.
    let first = check_both(&config, (&mut token, 10), Some((&mut account, 3)), t0);
    assert!(first.allowed);
    assert_eq!((first.limit, first.remaining), (3, 2));
    check_both(&config, (&mut token, 10), Some((&mut account, 3)), t0);
    check_both(&config, (&mut token, 10), Some((&mut account, 3)), t0);
    let refused = check_both(&config, (&mut token, 10), Some((&mut account, 3)), t0 + 1);
    assert!(!refused.allowed);
    assert_eq!((refused.limit, refused.remaining), (3, 0));
    // Token 2/h, account 100/h: the token binds, and its refusal is reported.
    let (mut token, mut account) = (WindowState::new(&config), WindowState::new(&config));
    let first = check_both(&config, (&mut token, 2), Some((&mut account, 100)), t0);
    assert_eq!((first.limit, first.remaining), (2, 1));
    check_both(&config, (&mut token, 2), Some((&mut account, 100)), t0);
    let refused = check_both(
        &config,
        (&mut token, 2),
        Some((&mut account, 100)),
        t0 + 60_000,
    );
    assert!(!refused.allowed);
    assert_eq!(refused.limit, 2);
    // Both full, at different times: the wait is until the later one frees up.
    let (mut token, mut account) = (WindowState::new(&config), WindowState::new(&config));
    account.check(&config, 1, t0); // the account's request, from another token
    check_both(
        &config,
        (&mut token, 1),
        Some((&mut account, 2)),
        t0 + 10 * 60_000,
    );
    let refused = check_both(
        &config,
        (&mut token, 1),
        Some((&mut account, 2)),
        t0 + 20 * 60_000,
    );
    assert!(!refused.allowed);
    let token_free = token.decision(&config, 1, t0, false).reset_at_ms;
    assert_eq!(
        refused.reset_at_ms, token_free,
        "the later of the two resets"
    );
    assert!(refused.reset_at_ms > account.decision(&config, 2, t0, false).reset_at_ms);
}
