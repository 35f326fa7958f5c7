//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! keyed by the bytes of the secret after `whsec_`, base64-decoded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use tokengate::{WebhookEndpoint, WebhookSecret};

/// One signature (`v1,...`) of `body` sent as `msg_id` at `timestamp`;
/// `None` if the secret is not `whsec_<base64>` (the store holds only ones we made).
pub(crate) fn sign(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let key = STANDARD
        .decode(secret.expose().strip_prefix("whsec_")?)
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header's value: the current secret's signature,
/// and during a rotation the previous secret's too, space-separated.
pub(crate) fn signature_header(
    endpoint: &WebhookEndpoint,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    now: OffsetDateTime,
) -> Option<String> {
    let mut header = sign(&endpoint.secret, msg_id, timestamp, body)?;
    if let Some((previous, until)) = &endpoint.previous_secret
        && *until > now
        && let Some(old) = sign(previous, msg_id, timestamp, body)
    {
        header.push(' ');
        header.push_str(&old);
    }
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's example (standard-webhooks, `spec/standard-webhooks.md`).
    #[test]
    fn matches_the_specification_example() {
        let secret = WebhookSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(
            signature.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn a_malformed_secret_signs_nothing() {
        let secret = WebhookSecret::new("nope".into());
        assert_eq!(sign(&secret, "msg_1", 1, b"{}"), None);
    }
}
