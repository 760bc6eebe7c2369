//! Security groups, network ACLs and the per-interface firewall that combines them.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use flowscope_record::net::Cidr;

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

/// A connection as the tracking table keys it: the interface's side first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Connection {
    local: IpAddr,
    local_port: u16,
    remote: IpAddr,
    remote_port: u16,
    protocol: u8,
}

impl Connection {
    fn of(direction: Direction, packet: &Packet) -> Self {
        match direction {
            Direction::Outbound => Self {
                local: packet.src,
                local_port: packet.src_port,
                remote: packet.dst,
                remote_port: packet.dst_port,
                protocol: packet.protocol,
            },
            Direction::Inbound => Self {
                local: packet.dst,
                local_port: packet.dst_port,
                remote: packet.src,
                remote_port: packet.src_port,
                protocol: packet.protocol,
            },
        }
    }
}

/// The firewall of one interface: its security groups (stateful, with a connection table) and
/// its subnet's network ACL (stateless).
#[derive(Debug, Clone)]
pub struct Firewall {
    /// `None`: the interface has no security groups (NAT and transit gateway interfaces).
    groups: Option<Vec<SecurityGroup>>,
    nacl: NetworkAcl,
    connections: HashSet<Connection>,
}

impl Firewall {
    /// The firewall of an interface with `groups`, in a subnet with `nacl`.
    pub fn new(groups: Vec<SecurityGroup>, nacl: NetworkAcl) -> Self {
        Self {
            groups: Some(groups),
            nacl,
            connections: HashSet::new(),
        }
    }

    /// The firewall of an interface that security groups do not apply to (a NAT gateway's or a
    /// transit gateway's): only the subnet's ACL judges.
    pub fn without_groups(nacl: NetworkAcl) -> Self {
        Self {
            groups: None,
            nacl,
            connections: HashSet::new(),
        }
    }

    /// Judges `packet` passing the interface in `direction`. `crosses_subnet` says whether it
    /// also crosses the subnet boundary (the ACL is consulted only then); `in_group` answers
    /// whether an address belongs to an interface that has a given security group (for rules
    /// whose peer is a group).
    ///
    /// A packet the groups let through opens (or refreshes) a tracked connection, so its replies
    /// pass the groups whatever their rules; the ACL judges every packet on its own.
    pub fn judge(
        &mut self,
        direction: Direction,
        packet: &Packet,
        crosses_subnet: bool,
        in_group: &dyn Fn(&str, IpAddr) -> bool,
    ) -> Verdict {
        let nacl = crosses_subnet.then(|| self.nacl.evaluate(direction, packet));
        let connection = Connection::of(direction, packet);
        let tracked = self.connections.contains(&connection);
        let by_rule = !tracked && self.groups_allow(direction, packet, in_group);
        let security_groups = tracked || by_rule;
        let nacl_allows = nacl.is_none_or(|v| v.action == RuleAction::Allow);
        let accepted = security_groups && nacl_allows;
        if accepted && by_rule {
            self.connections.insert(connection);
        }
        Verdict {
            accepted,
            nacl,
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

    /// Forgets every tracked connection (as when a connection times out).
    pub fn clear_connections(&mut self) {
        self.connections.clear();
    }
}
