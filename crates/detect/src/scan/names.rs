//! Addresses and interfaces as numbers: an IPv4 address is its value; anything else (IPv6, or
//! text that is not an address) is the xxh3 of its text with the top bit set, its text kept.

use std::net::{IpAddr, Ipv4Addr};

use flowscope_record::net::{is_private, is_private_v4};
use xxhash_rust::xxh3::xxh3_64;

use super::Map;

/// An address as a number (see the module's documentation).
pub(crate) type Addr = u64;
/// The top bit: set on the numbers of addresses kept by their text.
pub(crate) const NAMED: u64 = 1 << 63;

#[derive(Default, Clone)]
struct Named {
    text: String,
    ip: Option<IpAddr>,
}

/// The texts behind numbered addresses and interfaces.
#[derive(Default, Clone)]
pub(crate) struct Names {
    addrs: Map<u64, Named>,
    interfaces: Map<u64, String>,
}

/// A dotted-quad IPv4 address in its canonical form (no leading zeros), without the general
/// parser's cost; anything else is `None`.
pub(crate) fn dotted_quad(text: &[u8]) -> Option<u32> {
    let (mut value, mut octet, mut digits, mut dots) = (0u32, 0u32, 0u32, 0u32);
    for &c in text {
        if c.is_ascii_digit() {
            if digits == 1 && octet == 0 {
                return None;
            }
            octet = octet * 10 + u32::from(c - b'0');
            digits += 1;
            if octet > 255 {
                return None;
            }
        } else if c == b'.' && digits > 0 && dots < 3 {
            value = (value << 8) | octet;
            (octet, digits) = (0, 0);
            dots += 1;
        } else {
            return None;
        }
    }
    (dots == 3 && digits > 0).then_some((value << 8) | octet)
}

impl Names {
    /// Takes in the names another partition numbered.
    pub(crate) fn absorb(&mut self, o: &mut Names) {
        self.addrs.extend(std::mem::take(&mut o.addrs));
        self.interfaces.extend(std::mem::take(&mut o.interfaces));
    }

    /// How many texts are kept.
    pub(crate) fn count(&self) -> usize {
        self.addrs.len() + self.interfaces.len()
    }

    pub(crate) fn addr(&mut self, text: &str) -> Addr {
        if let Some(v4) = dotted_quad(text.as_bytes()) {
            return u64::from(v4);
        }
        let key = xxh3_64(text.as_bytes()) | NAMED;
        self.addrs.entry(key).or_insert_with(|| Named {
            text: text.to_string(),
            ip: text.parse().ok(),
        });
        key
    }

    pub(crate) fn interface(&mut self, text: &str) -> u64 {
        let key = xxh3_64(text.as_bytes());
        self.interfaces
            .entry(key)
            .or_insert_with(|| text.to_string());
        key
    }

    pub(crate) fn ip(&self, a: Addr) -> Option<IpAddr> {
        if a & NAMED == 0 {
            Some(IpAddr::V4(Ipv4Addr::from(a as u32)))
        } else {
            self.addrs.get(&a).and_then(|n| n.ip)
        }
    }

    /// Whether `a` is a private address; `None` when it is not an address.
    pub(crate) fn private(&self, a: Addr) -> Option<bool> {
        if a & NAMED == 0 {
            Some(is_private_v4(a as u32))
        } else {
            self.ip(a).map(is_private)
        }
    }

    pub(crate) fn text(&self, a: Addr) -> String {
        if a & NAMED == 0 {
            Ipv4Addr::from(a as u32).to_string()
        } else {
            self.addrs
                .get(&a)
                .map(|n| n.text.clone())
                .unwrap_or_default()
        }
    }

    pub(crate) fn interface_text(&self, i: u64) -> String {
        self.interfaces.get(&i).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_read_like_the_standard_parser() {
        for text in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "192.168.10.200",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "2001:db8::1",
            "-",
            "",
            "1.2.3.0400",
        ] {
            let std = text.parse::<Ipv4Addr>().ok().map(u32::from);
            assert_eq!(dotted_quad(text.as_bytes()), std, "{text:?}");
        }
        // Many texts made of digits and dots (and a few other bytes), valid or not.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789012345678901234..... a:";
        let mut valid = 0;
        for _ in 0..300_000 {
            let len = (next() % 18) as usize;
            let text: String = (0..len)
                .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
                .collect();
            let std = text.parse::<Ipv4Addr>().ok().map(u32::from);
            valid += usize::from(std.is_some());
            assert_eq!(dotted_quad(text.as_bytes()), std, "{text:?}");
        }
        for _ in 0..100_000 {
            let a = Ipv4Addr::from(next() as u32 >> (next() % 32));
            assert_eq!(dotted_quad(a.to_string().as_bytes()), Some(u32::from(a)));
        }
        assert!(valid > 100, "{valid} valid texts drawn");
    }

    #[test]
    fn names_keep_text_and_classify_addresses() {
        let mut names = Names::default();
        let v4 = names.addr("10.1.2.3");
        let v6 = names.addr("2001:db8::7");
        let junk = names.addr("not-an-address");
        assert_eq!(v4, u64::from(u32::from(Ipv4Addr::new(10, 1, 2, 3))));
        assert_eq!(names.text(v4), "10.1.2.3");
        assert_eq!(names.text(v6), "2001:db8::7");
        assert_eq!(names.text(junk), "not-an-address");
        assert_eq!(names.private(v4), Some(true));
        let public = names.addr("198.51.100.1");
        assert_eq!(names.private(public), Some(false));
        assert_eq!(names.private(v6), Some(false));
        let unique_local = names.addr("fd00::1");
        assert_eq!(names.private(unique_local), Some(true));
        assert_eq!(names.private(junk), None);
        let eni = names.interface("eni-0abc");
        assert_eq!(names.interface_text(eni), "eni-0abc");
    }
}
