//! Protocol numbers and their names: the one place flowscope spells them.

/// The IANA keyword of protocol number `n`, for the protocols seen in VPCs (`6` → `TCP`,
/// `58` → `IPv6-ICMP`).
pub fn keyword(n: i32) -> Option<&'static str> {
    Some(match n {
        0 => "HOPOPT",
        1 => "ICMP",
        2 => "IGMP",
        4 => "IPv4",
        6 => "TCP",
        17 => "UDP",
        41 => "IPv6",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "IPv6-ICMP",
        89 => "OSPF",
        112 => "VRRP",
        115 => "L2TP",
        132 => "SCTP",
        136 => "UDPLite",
        137 => "MPLS-in-IP",
        _ => return None,
    })
}

/// The name the EC2 console gives the protocols security group and network ACL rules name
/// (`TCP`, `UDP`, `ICMP`, `ICMPv6`); `None` for other numbers.
pub fn rule_name(n: i64) -> Option<&'static str> {
    Some(match n {
        6 => "TCP",
        17 => "UDP",
        1 => "ICMP",
        58 => "ICMPv6",
        _ => return None,
    })
}

/// The number of a protocol as EC2 rules name it (`tcp`, `udp`, `icmp`, `icmpv6`, any case;
/// `all` or `-1` for every protocol, given as -1), or a number written out.
pub fn rule_number(text: &str) -> Option<i64> {
    match text.to_ascii_lowercase().as_str() {
        "all" | "-1" => Some(-1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_agree() {
        for n in [1, 6, 17, 58] {
            let name = rule_name(n).unwrap();
            assert_eq!(rule_number(name), Some(n));
            assert_eq!(rule_number(&name.to_ascii_lowercase()), Some(n));
        }
        assert_eq!(rule_number("ALL"), Some(-1));
        assert_eq!(rule_number("47"), Some(47));
        assert_eq!(rule_name(47), None);
        assert_eq!(keyword(6), Some("TCP"));
        assert_eq!(keyword(58), Some("IPv6-ICMP"));
        assert_eq!(keyword(3), None);
    }
}
