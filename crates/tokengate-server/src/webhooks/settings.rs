//! The webhooks' settings (`WEBHOOK_*`), read by `serve` and by the CLI's
//! `webhooks add` (which checks a URL as the server would).

use std::time::Duration;

use clap::Args;

/// The default retry schedule, the Standard Webhooks one: after the first
/// attempt, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_RETRY_SECS: &str = "5,300,1800,7200,18000,36000,36000";

/// `WEBHOOK_*` options.
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Allow webhook URLs that resolve to loopback, private, link-local or
    /// metadata addresses, and `http://` URLs (for a receiver on your own
    /// network, and tests). Off: such URLs are refused at registration and
    /// at delivery.
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE_URLS", global = true,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) webhook_allow_private_urls: bool,

    /// Seconds between a failed webhook attempt and the next, as a comma
    /// list (fractions allowed); after the last one the delivery is failed.
    #[arg(long, env = "WEBHOOK_RETRY_SECS", global = true, default_value = DEFAULT_RETRY_SECS,
        value_parser = parse_retry_secs)]
    pub(crate) webhook_retry_secs: RetrySchedule,

    /// Seconds a webhook attempt may take (connect, send, answer).
    #[arg(
        long,
        env = "WEBHOOK_TIMEOUT_SECS",
        global = true,
        default_value_t = 10
    )]
    pub(crate) webhook_timeout_secs: u64,

    /// Milliseconds between two looks at the outbox for due deliveries.
    #[arg(
        long,
        env = "WEBHOOK_POLL_MILLIS",
        global = true,
        default_value_t = 1000
    )]
    pub(crate) webhook_poll_millis: u64,

    /// Seconds between two expiry sweeps (`token.expiring`, `token.expired`);
    /// at most 60.
    #[arg(long, env = "WEBHOOK_EXPIRY_SWEEP_SECS", global = true, default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=60))]
    pub(crate) webhook_expiry_sweep_secs: u64,
}

/// The waits between attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(pub(crate) Vec<Duration>);

/// `WEBHOOK_RETRY_SECS`: a comma list of seconds (may be empty: no retry).
pub fn parse_retry_secs(text: &str) -> Result<RetrySchedule, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.parse::<f64>() {
            Ok(secs) if secs.is_finite() && (0.0..=604_800.0).contains(&secs) => {
                Ok(Duration::from_secs_f64(secs))
            }
            _ => Err(format!(
                "{part:?} is not a number of seconds from 0 to 604800, e.g. {DEFAULT_RETRY_SECS}"
            )),
        })
        .collect::<Result<_, _>>()
        .map(RetrySchedule)
}

impl WebhookArgs {
    /// The worker's settings.
    pub fn settings(&self) -> WebhookSettings {
        WebhookSettings {
            allow_private: self.webhook_allow_private_urls,
            retry: self.webhook_retry_secs.0.clone(),
            timeout: Duration::from_secs(self.webhook_timeout_secs.max(1)),
            poll: Duration::from_millis(self.webhook_poll_millis.clamp(10, 60_000)),
            sweep: Duration::from_secs(self.webhook_expiry_sweep_secs),
        }
    }
}

/// What the delivery worker and the admin routes need to know (from
/// [`WebhookArgs::settings`], or the defaults).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub(crate) allow_private: bool,
    pub(crate) retry: Vec<Duration>,
    pub(crate) timeout: Duration,
    pub(crate) poll: Duration,
    pub(crate) sweep: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry: parse_retry_secs(DEFAULT_RETRY_SECS)
                .map(|s| s.0)
                .unwrap_or_default(),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            sweep: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedules_parse() {
        let default = parse_retry_secs(DEFAULT_RETRY_SECS).unwrap().0;
        assert_eq!(default.len(), 7);
        assert_eq!(default[0], Duration::from_secs(5));
        assert_eq!(default[6], Duration::from_secs(36_000));
        assert_eq!(
            parse_retry_secs("0.1, 0.2").unwrap().0,
            vec![Duration::from_millis(100), Duration::from_millis(200)]
        );
        assert_eq!(parse_retry_secs("").unwrap().0, Vec::<Duration>::new());
        assert!(parse_retry_secs("5,soon").unwrap_err().contains("soon"));
        assert!(parse_retry_secs("-1").is_err());
    }
}
