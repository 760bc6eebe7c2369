//! Security groups, network ACLs and the per-interface firewall that combines them.

use std::fmt;
use std::net::IpAddr;

use flowscope_record::net::Cidr;

use crate::tracking::{Handle, Key, Seen, Table, Timeouts};

/// Which way a packet passes the interface (or the subnet boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Towards the interface.
    Inbound,
    /// Away from the interface.
    Outbound,
}

/// A rule's protocol: all, or one IP protocol number (AWS writes all as `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Every protocol.
    All,
    /// One protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    Number(u8),
}

impl Protocol {
    fn matches(self, protocol: u8) -> bool {
        match self {
            Self::All => true,
            Self::Number(n) => n == protocol,
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port.
    pub to: u16,
}

impl PortRange {
    /// A range, checked to be in order.
    ///
    /// # Errors
    /// [`RuleError::PortRange`] when `from > to`.
    pub fn new(from: u16, to: u16) -> Result<Self, RuleError> {
        if from > to {
            return Err(RuleError::PortRange { from, to });
        }
        Ok(Self { from, to })
    }

    /// One port.
    pub fn single(port: u16) -> Self {
        Self {
            from: port,
            to: port,
        }
    }

    fn contains(self, port: u16) -> bool {
        (self.from..=self.to).contains(&port)
    }
}

/// One packet as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port (0 for protocols without ports).
    pub dst_port: u16,
}

impl Packet {
    /// The packet going the other way (a reply).
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }

    /// Whether the protocol carries ports (TCP, UDP, SCTP, UDP-Lite).
    fn has_ports(&self) -> bool {
        matches!(self.protocol, 6 | 17 | 132 | 136)
    }

    /// The address on the far side for `direction`: the source of inbound packets, the
    /// destination of outbound ones.
    fn peer(&self, direction: Direction) -> IpAddr {
        match direction {
            Direction::Inbound => self.src,
            Direction::Outbound => self.dst,
        }
    }
}

/// Whether a rule with `protocol` and `ports` matches `packet` (rules filter on the
/// destination port, in both directions).
fn matches_traffic(protocol: Protocol, ports: Option<PortRange>, packet: &Packet) -> bool {
    if !protocol.matches(packet.protocol) {
        return false;
    }
    match ports {
        None => true,
        Some(range) => !packet.has_ports() || range.contains(packet.dst_port),
    }
}

/// A rule that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// A port range whose first port is after its last.
    PortRange {
        /// First port given.
        from: u16,
        /// Last port given.
        to: u16,
    },
    /// A network ACL rule number outside 1–32766.
    RuleNumber(u32),
    /// Two rules of one direction with the same number.
    DuplicateRule(u16),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PortRange { from, to } => {
                write!(f, "port range {from}-{to} ends before it starts")
            }
            Self::RuleNumber(n) => write!(f, "rule number {n} is outside 1 to 32766"),
            Self::DuplicateRule(n) => write!(f, "rule number {n} is used twice"),
        }
    }
}

impl std::error::Error for RuleError {}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Let the packet through.
    Allow,
    /// Drop it.
    Deny,
}

/// One numbered network ACL rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaclRule {
    /// Rule number, 1–32766; lower numbers are evaluated first.
    pub number: u16,
    /// Protocol matched.
    pub protocol: Protocol,
    /// Destination ports matched (`None`: all).
    pub ports: Option<PortRange>,
    /// The source (inbound rules) or destination (outbound rules) block.
    pub cidr: Cidr,
    /// What a match does.
    pub action: RuleAction,
}

/// What a network ACL decided, and which rule decided it (`None`: the final `*` rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaclVerdict {
    /// Allow or deny.
    pub action: RuleAction,
    /// The rule number that matched, or `None` for `*`.
    pub rule: Option<u16>,
}

/// A network ACL: stateless, numbered rules per direction, lowest number first, first match wins,
/// everything else denied by `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAcl {
    /// The ACL's id (`acl-...`).
    pub id: String,
    inbound: Vec<NaclRule>,
    outbound: Vec<NaclRule>,
}

impl NetworkAcl {
    /// An ACL with these rules (in any order; they are sorted by number).
    ///
    /// # Errors
    /// [`RuleError::RuleNumber`] or [`RuleError::DuplicateRule`].
    pub fn new(
        id: impl Into<String>,
        mut inbound: Vec<NaclRule>,
        mut outbound: Vec<NaclRule>,
    ) -> Result<Self, RuleError> {
        for rules in [&mut inbound, &mut outbound] {
            rules.sort_by_key(|r| r.number);
            for pair in rules.windows(2) {
                if pair[0].number == pair[1].number {
                    return Err(RuleError::DuplicateRule(pair[0].number));
                }
            }
            if let Some(r) = rules.iter().find(|r| r.number == 0 || r.number > 32_766) {
                return Err(RuleError::RuleNumber(u32::from(r.number)));
            }
        }
        Ok(Self {
            id: id.into(),
            inbound,
            outbound,
        })
    }

    /// The default ACL AWS creates: rule 100 allows all IPv4 both ways (101 all IPv6 when the
    /// VPC has an IPv6 block), then `*` denies.
    pub fn default_acl(id: impl Into<String>, ipv6: bool) -> Self {
        let mut rules = vec![NaclRule {
            number: 100,
            protocol: Protocol::All,
            ports: None,
            cidr: Cidr::parse("0.0.0.0/0").expect("valid"),
            action: RuleAction::Allow,
        }];
        if ipv6 {
            rules.push(NaclRule {
                number: 101,
                protocol: Protocol::All,
                ports: None,
                cidr: Cidr::parse("::/0").expect("valid"),
                action: RuleAction::Allow,
            });
        }
        Self::new(id, rules.clone(), rules).expect("valid rules")
    }

    /// Judges `packet` travelling in `direction` across the subnet boundary.
    pub fn evaluate(&self, direction: Direction, packet: &Packet) -> NaclVerdict {
        let rules = match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        let peer = packet.peer(direction);
        for rule in rules {
            if rule.cidr.contains(peer) && matches_traffic(rule.protocol, rule.ports, packet) {
                return NaclVerdict {
                    action: rule.action,
                    rule: Some(rule.number),
                };
            }
        }
        NaclVerdict {
            action: RuleAction::Deny,
            rule: None,
        }
    }
}

/// The far side of a security group rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// An address block.
    Cidr(Cidr),
    /// The interfaces that have this security group.
    Group(String),
}

/// One security group rule (security groups only allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgRule {
    /// Protocol matched.
    pub protocol: Protocol,
    /// Destination ports matched (`None`: all).
    pub ports: Option<PortRange>,
    /// The source (inbound) or destination (outbound).
    pub peer: Peer,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// The group's id (`sg-...`).
    pub id: String,
    /// Inbound allow rules.
    pub inbound: Vec<SgRule>,
    /// Outbound allow rules.
    pub outbound: Vec<SgRule>,
}

impl SecurityGroup {
    /// A new group as AWS creates it: no inbound rules, one outbound rule allowing everything.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            inbound: Vec::new(),
            outbound: vec![all_to("0.0.0.0/0"), all_to("::/0")],
        }
    }

    /// A VPC's default group: inbound everything from members of itself, outbound everything.
    pub fn default_group(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            inbound: vec![SgRule {
                protocol: Protocol::All,
                ports: None,
                peer: Peer::Group(id.clone()),
            }],
            outbound: vec![all_to("0.0.0.0/0"), all_to("::/0")],
            id,
        }
    }
}

fn all_to(cidr: &str) -> SgRule {
    SgRule {
        protocol: Protocol::All,
        ports: None,
        peer: Peer::Cidr(Cidr::parse(cidr).expect("valid")),
    }
}

/// What the firewall of one interface decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the packet passes (`ACCEPT` in flow logs) or not (`REJECT`).
    pub accepted: bool,
    /// The ACL's decision, when the packet crossed the subnet boundary.
    pub nacl: Option<NaclVerdict>,
    /// Whether the security groups let it through (by a rule or as a tracked reply).
    pub security_groups: bool,
    /// Whether it passed the groups as the reply of a tracked connection.
    pub tracked: bool,
}

/// What the rules alone say of a packet on one interface — the same for every packet of a flow,
/// so worked out once per flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ruling {
    /// The ACL's decision, when the packet crosses the subnet boundary.
    nacl: Option<NaclVerdict>,
    /// The groups' rules allow it (or the interface has no groups).
    by_rule: bool,
    /// Not tracked: no groups, or an untracked flow (see [`Firewall::untracked`]).
    untracked: bool,
}

impl Ruling {
    /// The verdict when it depends on the rules alone (an untracked flow), else `None`.
    pub(crate) fn fixed(&self) -> Option<bool> {
        self.untracked
            .then(|| self.by_rule && self.nacl.is_none_or(|v| v.action == RuleAction::Allow))
    }
}

/// The firewall of one interface: its security groups (stateful, with a connection table) and
/// its subnet's network ACL (stateless).
#[derive(Debug, Clone)]
pub struct Firewall {
    /// `None`: the interface has no security groups (NAT and transit gateway interfaces).
    groups: Option<Vec<SecurityGroup>>,
    nacl: NetworkAcl,
    connections: Table,
}

impl Firewall {
    /// The firewall of an interface with `groups`, in a subnet with `nacl`, tracking
    /// connections with AWS's default timeouts.
    pub fn new(groups: Vec<SecurityGroup>, nacl: NetworkAcl) -> Self {
        Self::with_timeouts(groups, nacl, Timeouts::default())
    }

    /// [`new`](Self::new) with the interface's own connection tracking timeouts.
    pub fn with_timeouts(groups: Vec<SecurityGroup>, nacl: NetworkAcl, timeouts: Timeouts) -> Self {
        Self {
            groups: Some(groups),
            nacl,
            connections: Table::new(timeouts),
        }
    }

    /// The firewall of an interface that security groups do not apply to (a NAT gateway's or a
    /// transit gateway's): only the subnet's ACL judges.
    pub fn without_groups(nacl: NetworkAcl) -> Self {
        Self {
            groups: None,
            nacl,
            connections: Table::default(),
        }
    }

    /// The interface's connection tracking timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.connections.timeouts()
    }

    /// Judges `packet` passing the interface in `direction`, seen as `seen`. `crosses_subnet`
    /// says whether it also crosses the subnet boundary (the ACL is consulted only then);
    /// `in_group` answers whether an address belongs to an interface that has a given security
    /// group (for rules whose peer is a group).
    ///
    /// A packet the groups' rules let through opens a tracked connection, so its replies pass the
    /// groups whatever their rules until the connection closes (a FIN each way, an RST) or idles
    /// out (the timeouts of [`Timeouts`] and `tracking`'s constants); the ACL judges every packet
    /// on its own. An untracked flow ([`untracked`](Self::untracked)) is judged by the rules,
    /// packet by packet.
    pub fn judge(
        &mut self,
        direction: Direction,
        packet: &Packet,
        crosses_subnet: bool,
        in_group: &dyn Fn(&str, IpAddr) -> bool,
        seen: Seen,
    ) -> Verdict {
        let ruling = self.rule(direction, packet, crosses_subnet, in_group, false);
        self.pass(direction, packet, &ruling, seen, &mut Handle::default())
    }

    /// What the rules alone say of `packet`; `auto_tracked` when the connection is one AWS
    /// tracks whatever the rules (through a NAT gateway, a load balancer, an endpoint).
    pub(crate) fn rule(
        &self,
        direction: Direction,
        packet: &Packet,
        crosses_subnet: bool,
        in_group: &dyn Fn(&str, IpAddr) -> bool,
        auto_tracked: bool,
    ) -> Ruling {
        let nacl = crosses_subnet.then(|| self.nacl.evaluate(direction, packet));
        let by_rule = self.groups_allow(direction, packet, in_group);
        let untracked =
            self.groups.is_none() || (!auto_tracked && self.untracked(direction, packet));
        Ruling {
            nacl,
            by_rule,
            untracked,
        }
    }

    /// Whether a flow of `packet` in `direction` goes untracked (always, on an interface without
    /// groups). AWS (*Untracked connections*): "If a security group rule permits TCP or UDP
    /// flows for all traffic (0.0.0.0/0 or ::/0) and there is a corresponding rule in the other
    /// direction that permits all response traffic (0.0.0.0/0 or ::/0) for any port (0-65535),
    /// then that flow of traffic is not tracked, unless it is part of an automatically tracked
    /// connection." And: "ICMP traffic is always tracked." A packet belongs to an untracked
    /// flow as its request or as its response ("The response traffic for an untracked flow is
    /// allowed based on the inbound or outbound rule that permits the response traffic").
    pub fn untracked(&self, direction: Direction, packet: &Packet) -> bool {
        let back = match direction {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        };
        self.untracked_request(direction, packet)
            || self.untracked_request(back, &packet.reversed())
    }

    /// Whether `packet`, as the request of a flow in `direction`, opens an untracked flow.
    fn untracked_request(&self, direction: Direction, packet: &Packet) -> bool {
        let Some(groups) = &self.groups else {
            return true;
        };
        if !matches!(packet.protocol, 6 | 17) {
            return false;
        }
        let peer = packet.peer(direction);
        let everyone = |p: &Peer| matches!(p, Peer::Cidr(c) if c.prefix() == 0 && c.contains(peer));
        fn side(g: &SecurityGroup, direction: Direction) -> &[SgRule] {
            match direction {
                Direction::Inbound => &g.inbound,
                Direction::Outbound => &g.outbound,
            }
        }
        let back = match direction {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        };
        let opened = groups.iter().any(|g| {
            side(g, direction)
                .iter()
                .any(|r| everyone(&r.peer) && matches_traffic(r.protocol, r.ports, packet))
        });
        opened
            && groups.iter().any(|g| {
                side(g, back).iter().any(|r| {
                    everyone(&r.peer)
                        && r.protocol.matches(packet.protocol)
                        && r.ports.is_none_or(|p| p.from == 0 && p.to == 65535)
                })
            })
    }

    /// The verdict on a packet whose [`Ruling`] is known; `handle` caches where its connection
    /// is in the table.
    pub(crate) fn pass(
        &mut self,
        direction: Direction,
        packet: &Packet,
        ruling: &Ruling,
        seen: Seen,
        handle: &mut Handle,
    ) -> Verdict {
        let nacl_allows = ruling.nacl.is_none_or(|v| v.action == RuleAction::Allow);
        if ruling.untracked {
            return Verdict {
                accepted: ruling.by_rule && nacl_allows,
                nacl: ruling.nacl,
                security_groups: ruling.by_rule,
                tracked: false,
            };
        }
        if nacl_allows && self.connections.refresh(*handle, direction, seen) {
            return Verdict {
                accepted: true,
                nacl: ruling.nacl,
                security_groups: true,
                tracked: true,
            };
        }
        let key = Key::of(direction, packet);
        let live = self.connections.find(&key, seen, handle);
        let tracked = live.is_some();
        let security_groups = tracked || ruling.by_rule;
        let accepted = security_groups && nacl_allows;
        if accepted {
            let slot = match live {
                Some(slot) => Some(slot),
                None => self.connections.open(key, direction, seen, handle),
            };
            if let Some(slot) = slot {
                self.connections.see(slot, direction, seen);
            }
        }
        Verdict {
            accepted,
            nacl: ruling.nacl,
            security_groups,
            tracked,
        }
    }

    fn groups_allow(
        &self,
        direction: Direction,
        packet: &Packet,
        in_group: &dyn Fn(&str, IpAddr) -> bool,
    ) -> bool {
        let Some(groups) = &self.groups else {
            return true;
        };
        let peer = packet.peer(direction);
        groups.iter().any(|group| {
            let rules = match direction {
                Direction::Inbound => &group.inbound,
                Direction::Outbound => &group.outbound,
            };
            rules.iter().any(|rule| {
                matches_traffic(rule.protocol, rule.ports, packet)
                    && match &rule.peer {
                        Peer::Cidr(c) => c.contains(peer),
                        Peer::Group(g) => in_group(g, peer),
                    }
            })
        })
    }

    /// Forgets every tracked connection.
    pub fn clear_connections(&mut self) {
        self.connections.clear();
    }

    /// Connections held in the table (expired ones may not have been forgotten yet).
    pub fn tracked_connections(&self) -> usize {
        self.connections.len()
    }

    /// Forgets the connections that have expired by `now` (Unix seconds), when the table has
    /// grown enough since it last did for that to pay.
    pub fn expire_connections(&mut self, now: i64) {
        self.connections.sweep_if_grown(now);
    }
}
