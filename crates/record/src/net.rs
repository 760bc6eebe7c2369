//! Network vocabulary: CIDR blocks (IPv4 and IPv6) and the private address ranges.

use std::net::IpAddr;

/// An IPv4 or IPv6 network: the address with host bits cleared and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x:y::/n`; a bare address is a /32 or /128.
    ///
    /// # Errors
    /// A message naming what is wrong when the text is not a network.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not a CIDR block (expected e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{text}`: prefix length must be 0 to {max}")),
            },
        };
        let network = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Self { network, prefix })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 block.
    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// Whether `addr` lies in this network (never across address families).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(n)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// The private ranges [`is_private`] tests: RFC 1918, RFC 6598 shared space, IPv6 ULA.
fn private_ranges() -> &'static [Cidr] {
    static RANGES: std::sync::OnceLock<Vec<Cidr>> = std::sync::OnceLock::new();
    RANGES.get_or_init(|| {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
        ]
        .iter()
        .map(|c| Cidr::parse(c).expect("valid"))
        .collect()
    })
}

/// Whether `ip` is a private address: 10/8, 172.16/12, 192.168/16, 100.64/10 or fc00::/7.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(u32::from(v4)),
        IpAddr::V6(_) => private_ranges().iter().any(|c| c.contains(ip)),
    }
}

/// [`is_private`] for an IPv4 address given as its number (a few bit tests, for hot loops).
pub fn is_private_v4(a: u32) -> bool {
    a >> 24 == 10 || a >> 20 == 0xac1 || a >> 16 == 0xc0a8 || a >> 22 == 0x191
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_v4_bit_tests_match_the_ranges() {
        let v4: Vec<Cidr> = super::private_ranges()
            .iter()
            .filter(|c| c.is_ipv4())
            .cloned()
            .collect();
        // Every /12 boundary region and a spread of addresses in between.
        let mut a: u32 = 0;
        loop {
            for probe in [a, a.wrapping_add(1), a.wrapping_sub(1), a | 0x000f_ffff] {
                let ip = IpAddr::V4(probe.into());
                assert_eq!(
                    is_private_v4(probe),
                    v4.iter().any(|c| c.contains(ip)),
                    "{ip}"
                );
            }
            let Some(next) = a.checked_add(0x0004_0000) else {
                break;
            };
            a = next;
        }
        assert!(is_private("100.127.255.255".parse().unwrap()));
        assert!(!is_private("100.128.0.0".parse().unwrap()));
        assert!(is_private("fd00::1".parse().unwrap()));
    }

    #[test]
    fn cidr_membership_both_families() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.255.1.2".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let host_bits = Cidr::parse("192.0.2.77/24").unwrap();
        assert!(host_bits.contains("192.0.2.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "172.32.0.1",
            "8.8.8.8",
            "203.0.113.9",
            "2001:db8::1",
            "100.128.0.1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
