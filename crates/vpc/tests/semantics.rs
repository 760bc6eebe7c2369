//! The security group and network ACL behaviour of SPEC.md §6, packet by packet.

use std::net::IpAddr;

use flowscope_record::net::Cidr;
use flowscope_vpc::{
    Direction, Firewall, NaclRule, NaclVerdict, NetworkAcl, Packet, Peer, PortRange, Protocol,
    RuleAction, SecurityGroup, Seen, SgRule, Timeouts,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Packet {
    Packet {
        src: ip(src),
        dst: ip(dst),
        protocol: 6,
        src_port: sport,
        dst_port: dport,
    }
}

fn rule(number: u16, ports: Option<(u16, u16)>, cidr: &str, action: RuleAction) -> NaclRule {
    NaclRule {
        number,
        protocol: Protocol::Number(6),
        ports: ports.map(|(a, b)| PortRange::new(a, b).unwrap()),
        cidr: Cidr::parse(cidr).unwrap(),
        action,
    }
}

/// The custom ACL of the AWS documentation (SPEC.md §6).
fn documented_acl() -> NetworkAcl {
    use RuleAction::Allow;
    NetworkAcl::new(
        "acl-custom",
        vec![
            rule(100, Some((80, 80)), "0.0.0.0/0", Allow),
            rule(110, Some((443, 443)), "0.0.0.0/0", Allow),
            rule(120, Some((22, 22)), "192.0.2.0/24", Allow),
            rule(130, Some((3389, 3389)), "192.0.2.0/24", Allow),
            rule(140, Some((32768, 65535)), "0.0.0.0/0", Allow),
        ],
        vec![
            rule(100, Some((80, 80)), "0.0.0.0/0", Allow),
            rule(110, Some((443, 443)), "0.0.0.0/0", Allow),
            rule(120, Some((1024, 65535)), "192.0.2.0/24", Allow),
            rule(140, Some((32768, 65535)), "0.0.0.0/0", Allow),
        ],
    )
    .unwrap()
}

fn open_to(ports: u16) -> SecurityGroup {
    let mut sg = SecurityGroup::new("sg-web");
    sg.inbound.push(SgRule {
        protocol: Protocol::Number(6),
        ports: Some(PortRange::single(ports)),
        peer: Peer::Cidr(Cidr::parse("0.0.0.0/0").unwrap()),
    });
    sg
}

fn nobody(_: &str, _: IpAddr) -> bool {
    false
}

/// A packet without TCP flags seen at second `time`.
fn at(time: i64) -> Seen {
    Seen { time, tcp_flags: 0 }
}

#[test]
fn documented_acl_first_match_and_star() {
    let acl = documented_acl();
    let verdict = |p: &Packet| acl.evaluate(Direction::Inbound, p);
    assert_eq!(
        verdict(&tcp("198.51.100.1", 50000, "10.0.1.5", 80)),
        NaclVerdict {
            action: RuleAction::Allow,
            rule: Some(100)
        }
    );
    assert_eq!(
        verdict(&tcp("192.0.2.9", 50000, "10.0.1.5", 22)).rule,
        Some(120)
    );
    // SSH from outside 192.0.2.0/24 and port 139 match nothing: the `*` rule denies.
    for p in [
        tcp("203.0.113.1", 50000, "10.0.1.5", 22),
        tcp("192.0.2.9", 50000, "10.0.1.5", 139),
    ] {
        assert_eq!(
            verdict(&p),
            NaclVerdict {
                action: RuleAction::Deny,
                rule: None
            }
        );
    }
}

#[test]
fn lowest_rule_number_wins_whatever_the_order_given() {
    let acl = NetworkAcl::new(
        "acl-1",
        vec![
            rule(200, Some((22, 22)), "0.0.0.0/0", RuleAction::Allow),
            rule(90, Some((22, 22)), "203.0.113.0/24", RuleAction::Deny),
        ],
        vec![],
    )
    .unwrap();
    let blocked = acl.evaluate(Direction::Inbound, &tcp("203.0.113.7", 1, "10.0.0.1", 22));
    assert_eq!(
        blocked,
        NaclVerdict {
            action: RuleAction::Deny,
            rule: Some(90)
        }
    );
    let allowed = acl.evaluate(Direction::Inbound, &tcp("198.51.100.7", 1, "10.0.0.1", 22));
    assert_eq!(allowed.rule, Some(200));
    assert!(
        NetworkAcl::new(
            "a",
            vec![rule(0, None, "0.0.0.0/0", RuleAction::Allow)],
            vec![]
        )
        .is_err()
    );
    assert!(
        NetworkAcl::new(
            "a",
            vec![
                rule(5, None, "0.0.0.0/0", RuleAction::Allow),
                rule(5, None, "::/0", RuleAction::Allow)
            ],
            vec![]
        )
        .is_err()
    );
}

#[test]
fn stateful_group_accepts_the_reply_without_an_outbound_rule() {
    let mut sg = open_to(22);
    sg.outbound.clear(); // no outbound rules at all
    let mut fw = Firewall::new(vec![sg], NetworkAcl::default_acl("acl-default", false));
    let request = tcp("198.51.100.1", 43416, "10.0.1.5", 22);
    let inbound = fw.judge(Direction::Inbound, &request, true, &nobody, at(0));
    assert!(inbound.accepted && !inbound.tracked);
    let reply = fw.judge(
        Direction::Outbound,
        &request.reversed(),
        true,
        &nobody,
        at(0),
    );
    assert!(reply.accepted && reply.tracked, "{reply:?}");
    // A new outbound connection is not a reply: no rule allows it.
    let new = fw.judge(
        Direction::Outbound,
        &tcp("10.0.1.5", 40000, "198.51.100.1", 443),
        true,
        &nobody,
        at(0),
    );
    assert!(!new.accepted && !new.security_groups);
}

#[test]
fn acl_without_ephemeral_range_accepts_inbound_and_rejects_the_reply() {
    // Outbound allows only 80 and 443: the reply to an SSH client's ephemeral port is denied.
    let acl = NetworkAcl::new(
        "acl-strict",
        vec![rule(100, Some((22, 22)), "0.0.0.0/0", RuleAction::Allow)],
        vec![
            rule(100, Some((80, 80)), "0.0.0.0/0", RuleAction::Allow),
            rule(110, Some((443, 443)), "0.0.0.0/0", RuleAction::Allow),
        ],
    )
    .unwrap();
    let mut fw = Firewall::new(vec![open_to(22)], acl);
    let request = tcp("198.51.100.1", 43416, "10.0.1.5", 22);
    assert!(
        fw.judge(Direction::Inbound, &request, true, &nobody, at(0))
            .accepted
    );
    let reply = fw.judge(
        Direction::Outbound,
        &request.reversed(),
        true,
        &nobody,
        at(0),
    );
    assert!(!reply.accepted, "{reply:?}");
    // Inbound 22 from 0.0.0.0/0 and the new group's outbound "all to 0.0.0.0/0": an untracked
    // flow (AWS: "Inbound and outbound TCP traffic on port 80 (HTTP) is not tracked, because the
    // inbound and outbound rules allow traffic from all IP addresses"), let out by the rule.
    assert!(
        reply.security_groups && !reply.tracked,
        "the group would have let it out"
    );
    assert_eq!(
        reply.nacl,
        Some(NaclVerdict {
            action: RuleAction::Deny,
            rule: None
        })
    );
}

#[test]
fn acl_applies_only_across_the_subnet_boundary() {
    let deny_all = NetworkAcl::new("acl-deny", vec![], vec![]).unwrap();
    let mut fw = Firewall::new(vec![open_to(22)], deny_all);
    let p = tcp("10.0.1.9", 40000, "10.0.1.5", 22);
    assert!(
        fw.judge(Direction::Inbound, &p, false, &nobody, at(0))
            .accepted
    );
    let mut fw2 = Firewall::new(
        vec![open_to(22)],
        NetworkAcl::new("acl-deny", vec![], vec![]).unwrap(),
    );
    assert!(
        !fw2.judge(Direction::Inbound, &p, true, &nobody, at(0))
            .accepted
    );
}

#[test]
fn outbound_request_blocked_and_return_blocked_inbound() {
    // Outbound allowed by the group and the ACL, but the ACL has no inbound ephemeral rule.
    let acl = NetworkAcl::new(
        "acl-no-return",
        vec![rule(100, Some((22, 22)), "0.0.0.0/0", RuleAction::Allow)],
        vec![rule(100, Some((443, 443)), "0.0.0.0/0", RuleAction::Allow)],
    )
    .unwrap();
    let mut fw = Firewall::new(vec![SecurityGroup::new("sg-client")], acl);
    let request = tcp("10.0.1.5", 51000, "198.51.100.1", 443);
    assert!(
        fw.judge(Direction::Outbound, &request, true, &nobody, at(0))
            .accepted
    );
    let reply = fw.judge(
        Direction::Inbound,
        &request.reversed(),
        true,
        &nobody,
        at(0),
    );
    assert!(!reply.accepted && reply.tracked);
    // A group with no outbound rule blocks the request itself.
    let mut closed = SecurityGroup::new("sg-closed");
    closed.outbound.clear();
    let mut fw = Firewall::new(vec![closed], NetworkAcl::default_acl("acl-default", false));
    assert!(
        !fw.judge(Direction::Outbound, &request, true, &nobody, at(0))
            .accepted
    );
}

#[test]
fn default_group_admits_its_own_members_only() {
    let mut fw = Firewall::new(
        vec![SecurityGroup::default_group("sg-default")],
        NetworkAcl::default_acl("acl-default", true),
    );
    let member = |g: &str, a: IpAddr| g == "sg-default" && a == ip("10.0.1.7");
    assert!(
        fw.judge(
            Direction::Inbound,
            &tcp("10.0.1.7", 1000, "10.0.1.5", 5432),
            false,
            &member,
            at(0)
        )
        .accepted
    );
    assert!(
        !fw.judge(
            Direction::Inbound,
            &tcp("10.0.1.8", 1000, "10.0.1.5", 5432),
            false,
            &member,
            at(0)
        )
        .accepted
    );
    // IPv6 passes the default ACL's rule 101.
    let v6 = Packet {
        src: ip("2001:db8::1"),
        dst: ip("2001:db8::2"),
        protocol: 6,
        src_port: 1000,
        dst_port: 443,
    };
    let acl = NetworkAcl::default_acl("acl-default", true);
    assert_eq!(acl.evaluate(Direction::Inbound, &v6).rule, Some(101));
    assert_eq!(
        NetworkAcl::default_acl("acl-v4", false)
            .evaluate(Direction::Inbound, &v6)
            .rule,
        None
    );
}

#[test]
fn cidr_blocks_are_canonical() {
    assert_eq!(
        Cidr::parse("100.68.0.18/18").unwrap().to_string(),
        "100.68.0.0/18"
    );
    assert!(PortRange::new(100, 99).is_err());
}

/// AWS's example on *Amazon EC2 security group connection tracking*: inbound TCP 22 from
/// 203.0.113.1/32, TCP 80 from 0.0.0.0/0 and ::/0, ICMP from 0.0.0.0/0; outbound everything to
/// 0.0.0.0/0 and ::/0. "Inbound and outbound TCP traffic on port 22 (SSH) is tracked, because
/// the inbound rule allows traffic from 203.0.113.1/32 only, and not all IP addresses
/// (0.0.0.0/0). Inbound and outbound TCP traffic on port 80 (HTTP) is not tracked, because the
/// inbound and outbound rules allow traffic from all IP addresses. ICMP traffic is always
/// tracked. If you remove the outbound rule for IPv4 traffic, all inbound and outbound IPv4
/// traffic is tracked, including traffic on port 80 (HTTP). The same applies for IPv6 traffic
/// if you remove the outbound rule for IPv6 traffic."
#[test]
fn untracked_flows_follow_the_documented_example() {
    let cidr = |c: &str| Peer::Cidr(Cidr::parse(c).unwrap());
    let in_rule = |protocol, port: Option<u16>, c: &str| SgRule {
        protocol,
        ports: port.map(PortRange::single),
        peer: cidr(c),
    };
    let mut sg = SecurityGroup::new("sg-example");
    sg.inbound = vec![
        in_rule(Protocol::Number(6), Some(22), "203.0.113.1/32"),
        in_rule(Protocol::Number(6), Some(80), "0.0.0.0/0"),
        in_rule(Protocol::Number(6), Some(80), "::/0"),
        in_rule(Protocol::Number(1), None, "0.0.0.0/0"),
    ];
    let acl = || NetworkAcl::default_acl("acl-default", true);
    let ssh = tcp("203.0.113.1", 50000, "10.0.1.5", 22);
    let http = tcp("198.51.100.9", 50001, "10.0.1.5", 80);
    let http6 = Packet {
        src: ip("2001:db8::9"),
        dst: ip("2001:db8::5"),
        ..http
    };
    let icmp = Packet {
        protocol: 1,
        src_port: 0,
        dst_port: 0,
        ..http
    };
    let mut fw = Firewall::new(vec![sg.clone()], acl());
    assert!(!fw.untracked(Direction::Inbound, &ssh), "SSH is tracked");
    assert!(fw.untracked(Direction::Inbound, &http), "HTTP is not");
    assert!(fw.untracked(Direction::Inbound, &http6), "nor over IPv6");
    assert!(!fw.untracked(Direction::Inbound, &icmp), "ICMP always is");
    // Judged packet by packet, an untracked flow leaves nothing in the table.
    let v = fw.judge(Direction::Inbound, &http, true, &nobody, at(0));
    assert!(v.accepted && !v.tracked);
    let v = fw.judge(Direction::Outbound, &http.reversed(), true, &nobody, at(1));
    assert!(v.accepted && !v.tracked);
    assert_eq!(fw.tracked_connections(), 0);
    let v = fw.judge(Direction::Inbound, &ssh, true, &nobody, at(2));
    assert!(v.accepted && !v.tracked);
    assert_eq!(fw.tracked_connections(), 1);
    assert!(
        fw.judge(Direction::Outbound, &ssh.reversed(), true, &nobody, at(3))
            .tracked
    );

    // Without the IPv4 outbound rule, IPv4 port 80 is tracked too; IPv6 is not.
    sg.outbound
        .retain(|r| !matches!(&r.peer, Peer::Cidr(c) if c.is_ipv4()));
    let fw = Firewall::new(vec![sg], acl());
    assert!(!fw.untracked(Direction::Inbound, &http));
    assert!(fw.untracked(Direction::Inbound, &http6));
}

/// A tracked reply passes only while its connection holds; an interface's own timeouts apply.
#[test]
fn a_reply_after_the_connection_idled_out_faces_the_rules() {
    let mut sg = open_to(22);
    sg.outbound.clear();
    let timeouts = Timeouts {
        tcp_established: 60,
        ..Timeouts::default()
    };
    let mut fw = Firewall::with_timeouts(vec![sg], NetworkAcl::default_acl("a", false), timeouts);
    assert_eq!(fw.timeouts(), timeouts);
    let request = tcp("198.51.100.1", 43416, "10.0.1.5", 22);
    assert!(
        fw.judge(Direction::Inbound, &request, true, &nobody, at(0))
            .accepted
    );
    let reply = fw.judge(
        Direction::Outbound,
        &request.reversed(),
        true,
        &nobody,
        at(60),
    );
    assert!(reply.accepted && reply.tracked, "answered within 60 s");
    let late = fw.judge(
        Direction::Outbound,
        &request.reversed(),
        true,
        &nobody,
        at(121),
    );
    assert!(!late.accepted && !late.tracked, "{late:?}");
    assert_eq!(
        fw.tracked_connections(),
        0,
        "the idle connection is forgotten"
    );
}
