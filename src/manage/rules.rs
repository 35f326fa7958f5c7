//! The lifecycle rules as plain functions: what a valid name, account id,
//! plan name and expiry are; which tokens may be rotated and when a rotated
//! one stops; the nearest plan name for "did you mean". No I/O here.

use time::OffsetDateTime;

use super::ManageError;
use crate::store::{Account, Plan, StoreError, TokenRecord, TokenUpdate, truncate_to_second};

/// Longest token name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 200;
/// Longest account id, in characters.
pub(crate) const MAX_ACCOUNT_ID_CHARS: usize = 255;

pub(super) fn invalid(message: impl Into<String>) -> ManageError {
    ManageError::Invalid(message.into())
}

/// Checks an account id: 1–255 characters, no control characters, no surrounding spaces.
pub(crate) fn validate_account_id(id: &str) -> Result<(), ManageError> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_ACCOUNT_ID_CHARS {
        return Err(invalid(format!(
            "account id must be 1 to {MAX_ACCOUNT_ID_CHARS} characters"
        )));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(invalid(
            "account id must not contain control characters or surrounding spaces",
        ));
    }
    Ok(())
}

/// Checks a token name: 1–200 characters, none of them invisible.
///
/// Names are printed raw by the CLI and the admin listings, so a character
/// that changes how text around it looks, or shows nothing at all, is
/// refused: Unicode categories Cc (controls), Cf (format: bidirectional
/// overrides such as U+202E, zero-width spaces and joiners), Zl and Zp
/// (line and paragraph separators), and noncharacters. The error names the
/// code point, so the caller can find it.
pub(crate) fn validate_token_name(name: &str) -> Result<(), ManageError> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if let Some((kind, c)) = name
        .chars()
        .find_map(|c| invisible(c).map(|kind| (kind, c)))
    {
        return Err(invalid(format!(
            "name must not contain {kind} characters: U+{:04X} is one",
            u32::from(c)
        )));
    }
    Ok(())
}

/// What kind of invisible or text-changing character `c` is, if it is one.
fn invisible(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let code = u32::from(c);
    // U+FDD0..U+FDEF and the last two code points of every plane.
    if (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE {
        return Some("noncharacter");
    }
    match c.general_category() {
        GeneralCategory::Control => Some("control"),
        GeneralCategory::Format => Some("invisible format"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("line or paragraph separator")
        }
        _ => None,
    }
}

/// Checks a plan name: 1–64 characters of `a-z`, `0-9`, `_` and `-`.
pub(crate) fn validate_plan_name(name: &str) -> Result<(), ManageError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "plan name must be 1 to 64 characters of a-z, 0-9, '_' and '-'",
        ))
    }
}

/// The one rule for who gets tokens and may call the API: an account whose
/// plan has API access. A missing plan (an unknown account, or a plan row
/// deleted under the account) has none.
pub(crate) fn has_api_access(plan: Option<&Plan>) -> bool {
    plan.is_some_and(|plan| plan.api_access)
}

/// [`has_api_access`], as the error every surface words for its audience.
pub(super) fn check_api_access(account: &Account, plan: Option<&Plan>) -> Result<(), ManageError> {
    if has_api_access(plan) {
        Ok(())
    } else {
        Err(ManageError::NoApiAccess {
            plan: account.plan.clone(),
        })
    }
}

/// Whether `token` may be rotated at `now`: not revoked, not expired, not
/// already rotated (then its successor is the one to rotate).
pub(super) fn check_rotatable(token: &TokenRecord, now: OffsetDateTime) -> Result<(), ManageError> {
    if token.revoked_at.is_some() {
        return Err(ManageError::TokenRevoked(token.id));
    }
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(ManageError::TokenExpired(token.id));
    }
    if token.revoked_reason.is_some() {
        return Err(ManageError::TokenAlreadyRotated {
            id: token.id,
            successor: token.replaced_by,
        });
    }
    Ok(())
}

/// When a rotated token stops: at once without grace, else after the grace
/// period, but never later than its own expiry.
pub(super) fn old_token_stops(
    token: &TokenRecord,
    now: OffsetDateTime,
    grace: time::Duration,
) -> TokenUpdate<'static> {
    if grace.is_zero() {
        TokenUpdate {
            expires_at: token.expires_at,
            revoked_at: Some(now),
            revoked_reason: Some("rotated"),
            replaced_by: None,
        }
    } else {
        let end = now + grace;
        TokenUpdate {
            expires_at: Some(token.expires_at.map_or(end, |own| own.min(end))),
            revoked_at: None,
            revoked_reason: Some("rotated"),
            replaced_by: None,
        }
    }
}

/// Whether `token` counts against its plan's token cap at `now`: it
/// authenticates (neither revoked nor expired), a rotated token still in
/// its grace period included. The store's `count_live_tokens` counts the same.
#[cfg(feature = "settings")]
pub(crate) fn counts_against_the_cap(token: &TokenRecord, now: OffsetDateTime) -> bool {
    token.revoked_at.is_none() && token.expires_at.is_none_or(|at| at > now)
}

/// Whether a rotation leaves one more token authenticating than before: a
/// grace period keeps the old token beside the new one, unless the rotation
/// ends the grace of the old token's own predecessor (`ended`) at once.
pub(super) fn adds_a_live_token(grace: time::Duration, ended: &[TokenRecord]) -> bool {
    !grace.is_zero() && ended.is_empty()
}

/// A rotated token in grace stops now (its successor is being rotated).
pub(super) fn grace_ends(token: &TokenRecord, now: OffsetDateTime) -> TokenUpdate<'static> {
    TokenUpdate {
        expires_at: token.expires_at,
        revoked_at: Some(now),
        revoked_reason: Some("rotated"),
        replaced_by: token.replaced_by,
    }
}

/// The existing name closest to `wanted` (same letters in another case, or
/// at most two edits away), for "did you mean".
pub(super) fn closest<'a>(
    wanted: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let current = row[j + 1];
                row[j + 1] = (previous + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(current + 1);
                previous = current;
            }
        }
        row[b.len()]
    }
    let wanted_lower = wanted.to_lowercase();
    names
        .into_iter()
        .map(|name| (distance(&wanted_lower, name), name))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, name)| name.to_owned())
}

/// A row this transaction inserted, read back.
pub(super) fn inserted(token: Option<TokenRecord>) -> Result<TokenRecord, ManageError> {
    token.ok_or_else(|| StoreError::Corrupt("an inserted token vanished".into()).into())
}

/// An optional expiry: in the future, in whole seconds, at most year 9999.
pub(super) fn validate_expiry(
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, ManageError> {
    let Some(at) = expires_at else {
        return Ok(None);
    };
    match truncate_to_second(at) {
        Some(at) if at <= now => Err(invalid("expires_at must be in the future")),
        Some(at) if at.year() <= 9999 => Ok(Some(at)),
        _ => Err(invalid("expires_at is too far in the future")),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::token::TokenId;

    #[test]
    fn names_and_ids_are_bounded() {
        assert!(validate_token_name("CI").is_ok());
        assert!(validate_token_name(&"é".repeat(200)).is_ok());
        assert!(validate_token_name(&"a".repeat(201)).is_err());
        assert!(validate_token_name("").is_err());
        assert!(validate_token_name("   ").is_err());
        assert!(validate_token_name("a\nb").is_err());
        // Letters of any script, emoji and ordinary spaces stay allowed.
        assert!(validate_token_name("CI déploiement 部署 🚀 x").is_ok());
        assert!(validate_account_id("acct_123").is_ok());
        assert!(validate_account_id("'; DROP TABLE accounts; --").is_ok());
        assert!(validate_account_id(" acct").is_err());
        assert!(validate_account_id("").is_err());
        assert!(validate_account_id(&"a".repeat(256)).is_err());
        assert!(validate_plan_name("pro").is_ok());
        assert!(validate_plan_name("Pro").is_err());
        assert!(validate_plan_name("").is_err());
        assert!(validate_plan_name("a b").is_err());
    }

    fn token(expires_at: Option<OffsetDateTime>) -> TokenRecord {
        TokenRecord {
            id: TokenId::random(),
            account_id: "acct".into(),
            name: "CI".into(),
            hint: "abcd".into(),
            created_at: datetime!(2026-01-01 0:00 UTC),
            last_used_at: None,
            expires_at,
            revoked_at: None,
            revoked_reason: None,
            replaced_by: None,
            scopes: vec!["*".into()],
        }
    }

    #[test]
    fn a_grace_period_ends_to_the_millisecond_but_never_after_the_token_expires() {
        let now = datetime!(2026-06-01 12:00:00.750 UTC);
        let grace = time::Duration::seconds(2);
        let update = old_token_stops(&token(None), now, grace);
        assert_eq!(
            update.expires_at,
            Some(datetime!(2026-06-01 12:00:02.750 UTC))
        );
        assert_eq!(update.revoked_at, None);
        let soon = datetime!(2026-06-01 12:00:01 UTC);
        assert_eq!(
            old_token_stops(&token(Some(soon)), now, grace).expires_at,
            Some(soon)
        );
        let at_once = old_token_stops(&token(Some(soon)), now, time::Duration::ZERO);
        assert_eq!(at_once.revoked_at, Some(now));
        assert_eq!(at_once.expires_at, Some(soon));
    }

    #[test]
    fn only_live_unrotated_tokens_rotate() {
        let now = datetime!(2026-06-01 12:00 UTC);
        assert!(check_rotatable(&token(None), now).is_ok());
        let expired = token(Some(now));
        assert!(matches!(
            check_rotatable(&expired, now),
            Err(ManageError::TokenExpired(_))
        ));
        let mut revoked = token(None);
        revoked.revoked_at = Some(now);
        assert!(matches!(
            check_rotatable(&revoked, now),
            Err(ManageError::TokenRevoked(_))
        ));
        let mut rotated = token(None);
        let successor = TokenId::random();
        rotated.revoked_reason = Some("rotated".into());
        rotated.replaced_by = Some(successor);
        assert!(matches!(
            check_rotatable(&rotated, now),
            Err(ManageError::TokenAlreadyRotated { successor: Some(s), .. }) if s == successor
        ));
    }

    #[test]
    fn invisible_characters_are_refused_by_code_point() {
        let cases = [
            ('\u{7}', "control", "U+0007"),
            ('\u{85}', "control", "U+0085"),
            ('\u{202E}', "invisible format", "U+202E"),
            ('\u{200B}', "invisible format", "U+200B"),
            ('\u{2066}', "invisible format", "U+2066"),
            ('\u{FEFF}', "invisible format", "U+FEFF"),
            ('\u{E0041}', "invisible format", "U+E0041"),
            ('\u{2028}', "line or paragraph separator", "U+2028"),
            ('\u{2029}', "line or paragraph separator", "U+2029"),
            ('\u{FDD0}', "noncharacter", "U+FDD0"),
            ('\u{FFFE}', "noncharacter", "U+FFFE"),
            ('\u{10FFFF}', "noncharacter", "U+10FFFF"),
        ];
        for (c, kind, code) in cases {
            let name = format!("deploy{c}key");
            let Err(ManageError::Invalid(message)) = validate_token_name(&name) else {
                panic!("{code} was accepted");
            };
            assert_eq!(
                message,
                format!("name must not contain {kind} characters: {code} is one")
            );
        }
    }

    #[test]
    fn closest_plan_names_are_suggested() {
        let plans = ["enterprise", "free", "pro"];
        assert_eq!(closest("Pro", plans), Some("pro".into()));
        assert_eq!(closest("entreprise", plans), Some("enterprise".into()));
        assert_eq!(closest("premium", plans), None);
    }
}
