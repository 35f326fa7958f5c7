//! Safe targets: `https://` (or `http://` with `WEBHOOK_ALLOW_PRIVATE_URLS`),
//! and only public addresses, checked at registration and at every
//! delivery, where the client connects only to addresses this resolver let
//! through (no second resolution between the check and the connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address on the public internet: not loopback,
/// private, link-local (cloud metadata), shared (CGNAT), unspecified,
/// multicast, broadcast, documentation or reserved; IPv4 inside IPv6
/// (mapped, compatible, NAT64) is judged as IPv4.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form (::/96).
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0; 6] {
        let [_, _, _, _, _, _, hi, lo] = segments;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return !ip.is_loopback() && !ip.is_unspecified() && is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 metadata)
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

/// Checks a URL's form: `https://` (or `http://` when private targets are
/// allowed), a host, no credentials. Answers the message to show.
pub(crate) fn check_url(url: &str, allow_private: bool) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("url is not a valid URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => {
            return Err(
                "url must be https:// (http:// only with WEBHOOK_ALLOW_PRIVATE_URLS=true)".into(),
            );
        }
        other => return Err(format!("url must be https://, not {other}://")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "url must not carry credentials (they would be listed); verify the signature instead"
                .into(),
        );
    }
    Ok(parsed)
}

/// Resolves `url`'s host and refuses it when any address is not public
/// (unless `allow_private`): the check at registration.
pub(crate) async fn check_target(url: &str, allow_private: bool) -> Result<Url, String> {
    let parsed = check_url(url, allow_private)?;
    if allow_private {
        return Ok(parsed);
    }
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("url's host {host} does not resolve: {e}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("url's host {host} does not resolve"));
    }
    if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(format!(
            "url's host {host} resolves to {}, which is not a public address (loopback, \
             private, link-local and metadata targets are refused; set \
             WEBHOOK_ALLOW_PRIVATE_URLS=true to allow them)",
            private.ip()
        ));
    }
    Ok(parsed)
}

/// The delivery client's resolver: resolves each time, and hands the
/// connector only public addresses (all, with `allow_private`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublicOnlyResolver {
    pub(crate) allow_private: bool,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// A URL whose host is an IP literal never reaches the resolver: checked here.
pub(crate) fn literal_host_allowed(url: &Url, allow_private: bool) -> bool {
    let host = url.host_str().unwrap_or_default();
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => allow_private || is_public(ip),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} passed as public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} refused");
        }
    }

    #[test]
    fn urls_need_https_unless_private_targets_are_allowed() {
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("http://example.com/hook", false).is_err());
        assert!(check_url("http://example.com/hook", true).is_ok());
        assert!(check_url("ftp://example.com/hook", true).is_err());
        assert!(check_url("https://user:pw@example.com/", false).is_err());
        assert!(check_url("not a url", false).is_err());
    }

    /// The delivery client's resolver drops what the check would refuse, so
    /// a name that resolves (or re-resolves) to loopback is never connected to.
    #[tokio::test]
    async fn the_resolver_hands_over_public_addresses_only() {
        let name: Name = "localhost".parse().unwrap();
        let refused = PublicOnlyResolver {
            allow_private: false,
        }
        .resolve(name)
        .await;
        let error = refused
            .err()
            .expect("localhost resolved for delivery")
            .to_string();
        assert!(error.contains("no public address"), "{error}");
        let name: Name = "localhost".parse().unwrap();
        let allowed = PublicOnlyResolver {
            allow_private: true,
        }
        .resolve(name)
        .await;
        let addresses: Vec<SocketAddr> = allowed.unwrap().collect();
        assert!(
            addresses.iter().any(|a| a.ip().is_loopback()),
            "{addresses:?}"
        );
    }

    #[test]
    fn literal_addresses_are_checked_before_sending() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(!literal_host_allowed(&url("https://127.0.0.1/"), false));
        assert!(!literal_host_allowed(&url("https://[::1]/"), false));
        assert!(literal_host_allowed(&url("https://127.0.0.1/"), true));
        assert!(literal_host_allowed(&url("https://8.8.8.8/"), false));
        assert!(literal_host_allowed(&url("https://example.com/"), false));
    }

    #[tokio::test]
    async fn loopback_targets_are_refused_without_the_setting() {
        let refused = check_target("https://127.0.0.1/hook", false)
            .await
            .unwrap_err();
        assert!(refused.contains("WEBHOOK_ALLOW_PRIVATE_URLS"), "{refused}");
        let refused = check_target("https://localhost/hook", false)
            .await
            .unwrap_err();
        assert!(refused.contains("not a public address"), "{refused}");
        assert!(check_target("http://127.0.0.1:9/hook", true).await.is_ok());
    }
}
