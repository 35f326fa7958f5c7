//! Trusted reverse proxies: the peers whose forwarded headers are believed.
//!
//! A list of CIDR blocks (`127.0.0.0/8, ::1/128`), parsed by hand: the
//! arithmetic is a mask comparison, not worth a dependency.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::config_error::ConfigError;

fn trusted_proxy(entry: &str, reason: &'static str) -> ConfigError {
    ConfigError::TrustedProxy {
        entry: entry.to_owned(),
        reason,
    }
}

/// The peers (reverse proxies) whose forwarded headers are believed: the
/// sign-in header of [`ProxyHeaderSignIn`](super::ProxyHeaderSignIn), and
/// `X-Forwarded-Host` / `X-Forwarded-Proto` for the same-origin check.
///
/// Parsed from comma-separated CIDR blocks; a bare address is a block of
/// one. IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`, as a dual-stack
/// listener reports them) match the IPv4 blocks.
///
/// ```
/// use tokengate::http::TrustedProxies;
///
/// let proxies: TrustedProxies = "10.0.0.0/8, 192.0.2.7, ::1/128".parse().unwrap();
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(proxies.contains("::ffff:192.0.2.7".parse().unwrap()));
/// assert!(!proxies.contains("192.0.2.8".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    blocks: Vec<Block>,
}

/// One CIDR block, its address already masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    prefix_len: u8,
}

impl TrustedProxies {
    /// No proxy is trusted: forwarded headers are never believed.
    pub fn none() -> Self {
        Self::default()
    }

    /// The loopback addresses, `127.0.0.0/8` and `::1/128`: an auth proxy on
    /// the same machine (the standalone server's default).
    pub fn loopback() -> Self {
        Self {
            blocks: vec![
                Block {
                    network: IpAddr::from([127, 0, 0, 0]),
                    prefix_len: 8,
                },
                Block {
                    network: IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
                    prefix_len: 128,
                },
            ],
        }
    }

    /// Whether `peer` is in one of the blocks.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.blocks.iter().any(|block| block.contains(peer))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

impl Block {
    fn contains(&self, peer: IpAddr) -> bool {
        match (self.network, peer) {
            (IpAddr::V4(network), IpAddr::V4(peer)) => {
                mask_v4(u32::from(peer), self.prefix_len) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(peer)) => {
                mask_v6(u128::from(peer), self.prefix_len) == u128::from(network)
            }
            _ => false,
        }
    }
}

fn mask_v4(address: u32, prefix_len: u8) -> u32 {
    address
        & u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0)
}

fn mask_v6(address: u128, prefix_len: u8) -> u128 {
    address
        & u128::MAX
            .checked_shl(128 - u32::from(prefix_len))
            .unwrap_or(0)
}

impl FromStr for Block {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix_len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| "not an IPv4 or IPv6 address")?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len =
            match prefix_len {
                None => max,
                Some(len) => len.parse::<u8>().ok().filter(|len| *len <= max).ok_or(
                    if address.is_ipv4() {
                        "the prefix length must be 0 to 32"
                    } else {
                        "the prefix length must be 0 to 128"
                    },
                )?,
            };
        // Host bits are cleared, as most tools do: 10.1.2.3/8 is 10.0.0.0/8.
        let network = match address {
            IpAddr::V4(v4) => IpAddr::from(mask_v4(u32::from(v4), prefix_len).to_be_bytes()),
            IpAddr::V6(v6) => IpAddr::from(mask_v6(u128::from(v6), prefix_len).to_be_bytes()),
        };
        Ok(Block {
            network,
            prefix_len,
        })
    }
}

impl FromStr for TrustedProxies {
    type Err = ConfigError;

    /// Comma-separated CIDR blocks; spaces around entries are ignored, and an
    /// empty string trusts no proxy.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut blocks = Vec::new();
        for entry in text.split(',').map(str::trim) {
            if entry.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(trusted_proxy(entry, "empty entry"));
            }
            let block = entry
                .parse()
                .map_err(|reason| trusted_proxy(entry, reason))?;
            blocks.push(block);
        }
        Ok(Self { blocks })
    }
}

impl fmt::Display for TrustedProxies {
    /// The blocks, comma-separated, in the form `FromStr` reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, block) in self.blocks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}/{}", block.network, block.prefix_len)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_match_by_prefix() {
        let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.0/24,fd00::/8, 203.0.113.9"
            .parse()
            .unwrap();
        for inside in [
            "10.0.0.1",
            "10.255.255.255",
            "192.168.1.77",
            "fd12::1",
            "203.0.113.9",
        ] {
            assert!(proxies.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.2.1", "fe80::1", "203.0.113.10", "::1"] {
            assert!(!proxies.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn loopback_and_mapped_addresses() {
        let loopback = TrustedProxies::loopback();
        assert!(loopback.contains(ip("127.0.0.1")));
        assert!(loopback.contains(ip("127.3.2.1")));
        assert!(loopback.contains(ip("::1")));
        assert!(loopback.contains(ip("::ffff:127.0.0.1")));
        assert!(!loopback.contains(ip("::2")));
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert_eq!(loopback.to_string(), "127.0.0.0/8,::1/128");
        assert_eq!(
            loopback.to_string().parse::<TrustedProxies>().unwrap(),
            loopback
        );
        assert!(TrustedProxies::none().is_empty());
        assert!(!TrustedProxies::none().contains(ip("127.0.0.1")));
    }

    #[test]
    fn zero_length_prefixes_match_everything_of_their_family() {
        let all: TrustedProxies = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        let all6: TrustedProxies = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn host_bits_are_cleared() {
        let proxies: TrustedProxies = "10.1.2.3/8".parse().unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8");
        assert!(proxies.contains(ip("10.9.9.9")));
    }

    #[test]
    fn malformed_lists_are_refused_with_the_entry() {
        assert_eq!(
            "".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::none()
        );
        for (bad, says) in [
            ("10.0.0.0/33", "0 to 32"),
            ("::1/129", "0 to 128"),
            ("10.0.0.0/x", "0 to 32"),
            ("localhost", "not an IPv4"),
            ("10.0.0.0/8,,::1", "empty entry"),
            ("10.0.0/8", "not an IPv4"),
        ] {
            let error = bad.parse::<TrustedProxies>().unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
