//! The Flow Logs service at work: packets in, per-interface records per aggregation interval out.
//!
//! For each packet the [`Emulator`] works out the interfaces it passes (the sender's, a NAT
//! gateway's two legs, the receiver's), asks each interface's [`Firewall`] for a verdict — the
//! subnet's network ACL when the packet crosses a subnet boundary, the security groups with
//! connection tracking — and adds the packet to that interface's record of the flow in the current
//! capture window. A packet rejected on one interface goes no further. When a window ends its
//! records are handed out as a [`ClosedWindow`], with a NODATA record for each logged interface
//! that saw nothing and a SKIPDATA record for each that exceeded its capacity.
//!
//! The path of a flow and what the rules say of it on each interface are computed once and
//! cached (rules do not change); what varies packet by packet is connection tracking — a reply
//! passes the security groups only while its connection holds — and that costs a table slot
//! cached on the hop, not a hash lookup. An untracked flow's verdict is fixed, so the hot path
//! for most packets is one hash lookup and a few additions.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arrow_array::RecordBatch;

use crate::record::{FlowRecord, LogStatus, to_batch};
use crate::rules::{Direction, Firewall, Packet, Ruling};
use crate::topology::{BlockPublicAccess, RouteTarget, Topology};
use crate::tracking::{Handle, Seen};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A packet as captured: when, between whom, and how big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WirePacket {
    /// Capture time, microseconds since the Unix epoch.
    pub time_us: i64,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port (0 without ports).
    pub src_port: u16,
    /// Destination port (0 without ports).
    pub dst_port: u16,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
    /// Size of the IP packet in bytes (what `bytes` counts).
    pub bytes: u32,
}

/// Why a packet was left out without being logged, as AWS leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// To or from the Amazon DNS server (VPC base + 2, 169.254.169.253, fd00:ec2::253).
    AmazonDns,
    /// Instance metadata (169.254.169.254, fd00:ec2::254).
    InstanceMetadata,
    /// Amazon Time Sync (169.254.169.123, fd00:ec2::123).
    TimeSync,
    /// Windows license activation (169.254.169.250/251).
    WindowsActivation,
    /// DHCP (UDP 67/68).
    Dhcp,
    /// The subnet's reserved router address (base + 1).
    DefaultRouter,
    /// Between an endpoint interface and a Network Load Balancer interface.
    EndpointToLoadBalancer,
}

impl Exclusion {
    /// Every kind, in report order.
    pub const ALL: [Exclusion; 7] = [
        Exclusion::AmazonDns,
        Exclusion::InstanceMetadata,
        Exclusion::TimeSync,
        Exclusion::WindowsActivation,
        Exclusion::Dhcp,
        Exclusion::DefaultRouter,
        Exclusion::EndpointToLoadBalancer,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::AmazonDns => "Amazon DNS",
            Self::InstanceMetadata => "instance metadata",
            Self::TimeSync => "Time Sync",
            Self::WindowsActivation => "Windows activation",
            Self::Dhcp => "DHCP",
            Self::DefaultRouter => "VPC router",
            Self::EndpointToLoadBalancer => "endpoint to NLB",
        }
    }
}

/// Counters of what the emulator saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// Packets given to the emulator.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Packets that touched at least one interface of the topology.
    pub routed: u64,
    /// Packets that touched no interface (neither end in the topology).
    pub outside: u64,
    /// Packets AWS never logs, by [`Exclusion::ALL`] position.
    pub excluded: [u64; 7],
    /// Records produced (OK, NODATA and SKIPDATA), over all intervals.
    pub records: u64,
    /// Flows dropped into SKIPDATA because an interface's capacity was exceeded.
    pub skipped_flows: u64,
}

/// The records of one capture window of one aggregation interval, for the interfaces whose
/// windows run on the same phase.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    /// The interval, seconds (60 or 600).
    pub interval: u32,
    /// Window start, Unix seconds.
    pub start: i64,
    /// Window end, Unix seconds (exclusive): at most `interval` after `start`.
    pub end: i64,
    /// The records, OK ones in order of first packet, then NODATA/SKIPDATA by interface.
    pub records: Vec<FlowRecord>,
}

/// One interface a packet passes, and what its record shows.
#[derive(Debug, Clone)]
struct Hop {
    interface: u32,
    egress: bool,
    srcaddr: IpAddr,
    dstaddr: IpAddr,
    pkt_srcaddr: IpAddr,
    pkt_dstaddr: IpAddr,
    /// The packet as the firewall judges it.
    judged: Packet,
    crosses_subnet: bool,
    traffic_path: Option<u8>,
    /// Rejected by VPC Block Public Access.
    blocked: bool,
    next_hop: Option<usize>,
    /// What the rules say of it here (worked out at its first packet).
    ruling: Option<Ruling>,
    /// Where its connection is in the interface's tracking table.
    conn: Handle,
    /// Per interval of its interface (shortest first) and action: (window number, accumulator
    /// index).
    slots: [[(u32, u32); 2]; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
}

#[derive(Debug)]
struct Flow {
    hops: Vec<Hop>,
    /// The path may grow (a NAT reply seen before its request).
    provisional: bool,
    /// Second of its last packet.
    last_seen: i64,
    /// It passes an interface whose connections AWS always tracks.
    auto_tracked: bool,
    /// Its path is to be worked out again (a NAT gateway's port now maps to another host).
    repath: bool,
}

/// Connections through these are tracked whatever the rules. AWS (*Automatically tracked
/// connections*): "Connections made through the following are automatically tracked, even if
/// the security group configuration does not otherwise require tracking: Egress-only internet
/// gateways, Global Accelerator accelerators, NAT gateways, Network Firewall firewall endpoints,
/// Network Load Balancers, AWS PrivateLink (interface VPC endpoints), AWS Lambda (Hyperplane
/// elastic network interfaces)" — and, in another version of the page, Gateway Load Balancers
/// and transit gateway attachments.
const AUTO_TRACKED: [&str; 7] = [
    "nat_gateway",
    "network_load_balancer",
    "vpc_endpoint",
    "lambda",
    "gateway_load_balancer",
    "gateway_load_balancer_endpoint",
    "transit_gateway",
];

#[derive(Debug, Clone)]
struct Acc {
    hop: Hop,
    accepted: bool,
    packets: u64,
    bytes: u64,
    start: i64,
    end: i64,
    flags: u8,
}

/// The capture windows of the interfaces that share an interval and a phase.
#[derive(Debug)]
struct Aggregator {
    interval: u32,
    /// Windows end at `phase + k * interval`.
    phase: i64,
    /// Start of the open window (`None` before the first packet).
    window: Option<i64>,
    number: u32,
    accs: Vec<Acc>,
    /// The interfaces it aggregates.
    members: Vec<usize>,
    /// Windows cut on multiples of the interval, from the first one.
    aligned: bool,
}

impl Aggregator {
    /// Where the first window opens for a run or a packet at `t`: at `t`, or, aligned, where
    /// the window holding `t` starts.
    fn first_start(&self, t: i64) -> i64 {
        if self.aligned {
            self.end_after(t) - i64::from(self.interval)
        } else {
            t
        }
    }

    /// The first end of a window after `t`.
    fn end_after(&self, t: i64) -> i64 {
        let i = i64::from(self.interval);
        self.phase + ((t - self.phase).div_euclid(i) + 1) * i
    }
}

/// No aggregator.
const NONE: u32 = u32::MAX;

/// Where interface `id`'s windows of `interval` seconds end, as an offset in seconds — drawn
/// from `seed`, so that a run is reproducible and interfaces' windows are not aligned to one
/// another or to the minute (AWS's own examples straddle minute boundaries).
fn phase(seed: u64, id: &str, interval: u32) -> i64 {
    // FNV-1a over the id, then SplitMix64's finalizer: stable across builds and platforms.
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % u64::from(interval)) as i64
}

/// Who owns an address.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// An interface's private or IPv6 address.
    Private(usize),
    /// An interface's public address (internet gateway 1:1 NAT).
    Public(usize),
    /// A NAT gateway's Elastic IP.
    Nat(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NatKey {
    nat: usize,
    protocol: u8,
    remote: IpAddr,
    remote_port: u16,
    local_port: u16,
}

/// The Flow Logs service for one topology.
#[derive(Debug)]
pub struct Emulator {
    topology: Topology,
    firewalls: Vec<Firewall>,
    owners: Map<IpAddr, Owner>,
    excluded_addresses: Map<IpAddr, Exclusion>,
    flows: Map<FlowKey, Flow>,
    nat_table: Map<NatKey, IpAddr>,
    aggregators: Vec<Aggregator>,
    /// Per interface: the aggregators of its intervals, shortest first (`NONE`: no more).
    members: Vec<[u32; 2]>,
    /// No window ends before this second (`i64::MIN`: some aggregator has no window yet).
    next_end: i64,
    /// Idle flows and expired connections are next forgotten at or after this second.
    tidy_at: i64,
    closed: Vec<ClosedWindow>,
    stats: EmulatorStats,
}

/// The longest a record of interface `i` under flow log `f` spans, seconds: the flow log's
/// maximum aggregation interval, or 60 on a Nitro-based instance — AWS (EC2 API reference,
/// CreateFlowLogs `MaxAggregationInterval`): "When a network interface is attached to a
/// Nitro-based instance, the aggregation interval is always 60 seconds or less, regardless of
/// the value that you specify."
fn interval(topology: &Topology, f: &crate::topology::FlowLogDefinition, i: usize) -> u32 {
    let eni = &topology.interfaces[i];
    if eni.nitro && eni.instance_id.is_some() {
        f.max_aggregation_interval.min(60)
    } else {
        f.max_aggregation_interval
    }
}

fn supported_flags(flags: u8) -> u8 {
    const FIN: u8 = 1;
    const SYN: u8 = 2;
    const RST: u8 = 4;
    const ACK: u8 = 16;
    let mut v = flags & (FIN | RST);
    if flags & SYN != 0 {
        v |= if flags & ACK != 0 { 18 } else { SYN };
    }
    v
}

impl Emulator {
    /// An emulator for `topology`; records are kept for the interfaces its flow logs cover.
    /// Each interface's capture windows run on their own phase, drawn from seed 0
    /// ([`with_seed`](Self::with_seed)).
    pub fn new(topology: Topology) -> Self {
        Self::build(topology, 0, false)
    }

    /// [`new`](Self::new) with the interfaces' window phases drawn from `seed`: the same seed,
    /// the same windows.
    pub fn with_seed(topology: Topology, seed: u64) -> Self {
        Self::build(topology, seed, false)
    }

    /// [`new`](Self::new) with every window aligned to multiples of its interval (Unix time),
    /// as a fixed clock would cut them: for reproducing AWS's examples by hand.
    pub fn aligned(topology: Topology) -> Self {
        Self::build(topology, 0, true)
    }

    fn build(topology: Topology, seed: u64, aligned: bool) -> Self {
        let firewalls = topology
            .interfaces
            .iter()
            .map(|eni| {
                let nacl = topology.network_acls[topology.subnets[eni.subnet].network_acl].clone();
                if eni.has_security_groups() {
                    let groups = eni
                        .security_groups
                        .iter()
                        .map(|&g| topology.security_groups[g].clone())
                        .collect();
                    Firewall::with_timeouts(groups, nacl, eni.connection_tracking)
                } else {
                    Firewall::without_groups(nacl)
                }
            })
            .collect();
        let mut owners = Map::default();
        for (i, eni) in topology.interfaces.iter().enumerate() {
            for ip in eni.private_ips.iter().chain(&eni.ipv6_ips) {
                owners.insert(*ip, Owner::Private(i));
            }
            if let Some(ip) = eni.public_ip {
                owners.insert(ip, Owner::Public(i));
            }
        }
        for (i, nat) in topology.nat_gateways.iter().enumerate() {
            owners.insert(nat.public_ip, Owner::Nat(i));
        }
        let mut excluded_addresses = Map::default();
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let v6 = |last| IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, last));
        for (ip, why) in [
            (v4(169, 254, 169, 254), Exclusion::InstanceMetadata),
            (v6(0x254), Exclusion::InstanceMetadata),
            (v4(169, 254, 169, 123), Exclusion::TimeSync),
            (v6(0x123), Exclusion::TimeSync),
            (v4(169, 254, 169, 253), Exclusion::AmazonDns),
            (v6(0x253), Exclusion::AmazonDns),
            (v4(169, 254, 169, 250), Exclusion::WindowsActivation),
            (v4(169, 254, 169, 251), Exclusion::WindowsActivation),
        ] {
            excluded_addresses.insert(ip, why);
        }
        for vpc in &topology.vpcs {
            for block in &vpc.cidr_blocks {
                if let IpAddr::V4(net) = block.network() {
                    excluded_addresses.insert(
                        IpAddr::V4((u32::from(net) + 2).into()),
                        Exclusion::AmazonDns,
                    );
                }
            }
        }
        for subnet in &topology.subnets {
            if let IpAddr::V4(net) = subnet.cidr_block.network() {
                excluded_addresses.insert(
                    IpAddr::V4((u32::from(net) + 1).into()),
                    Exclusion::DefaultRouter,
                );
            }
        }
        let mut aggregators: Vec<Aggregator> = Vec::new();
        let mut members = vec![[NONE; 2]; topology.interfaces.len()];
        let mut index: Map<(u32, i64), u32> = Map::default();
        for (i, eni) in topology.interfaces.iter().enumerate() {
            let mut intervals: Vec<u32> = topology
                .flow_logs
                .iter()
                .filter(|f| f.interfaces.binary_search(&i).is_ok())
                .map(|f| interval(&topology, f, i))
                .collect();
            intervals.sort_unstable();
            intervals.dedup();
            for (m, interval) in intervals.into_iter().take(2).enumerate() {
                let phase = if aligned {
                    0
                } else {
                    phase(seed, &eni.id, interval)
                };
                let a = *index.entry((interval, phase)).or_insert_with(|| {
                    aggregators.push(Aggregator {
                        interval,
                        phase,
                        window: None,
                        number: 1,
                        accs: Vec::new(),
                        members: Vec::new(),
                        aligned,
                    });
                    (aggregators.len() - 1) as u32
                });
                aggregators[a as usize].members.push(i);
                members[i][m] = a;
            }
        }
        Self {
            topology,
            firewalls,
            owners,
            excluded_addresses,
            flows: Map::default(),
            nat_table: Map::default(),
            aggregators,
            members,
            next_end: i64::MIN,
            tidy_at: i64::MIN,
            closed: Vec::new(),
            stats: EmulatorStats::default(),
        }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// What has been seen so far.
    pub fn stats(&self) -> &EmulatorStats {
        &self.stats
    }

    /// Opens the first windows at `time` (Unix seconds) instead of at the first packet, so idle
    /// interfaces get NODATA records from then on.
    pub fn start_at(&mut self, time: i64) {
        for agg in &mut self.aggregators {
            let start = agg.first_start(time);
            agg.window.get_or_insert(start);
        }
    }

    /// Feeds one packet. Packets should come in time order; a packet older than the open window
    /// is counted in it (AWS's records may lag the wire too).
    pub fn process(&mut self, packet: &WirePacket) {
        let now = packet.time_us.div_euclid(1_000_000);
        self.advance_to(now);
        self.stats.packets += 1;
        self.stats.bytes += u64::from(packet.bytes);
        if let Some(why) = self.exclusion(packet) {
            self.stats.excluded[why as usize] += 1;
            return;
        }
        let key = FlowKey {
            src: packet.src,
            dst: packet.dst,
            protocol: packet.protocol,
            src_port: packet.src_port,
            dst_port: packet.dst_port,
        };
        let Self {
            topology,
            firewalls,
            owners,
            flows,
            nat_table,
            aggregators,
            members,
            stats,
            ..
        } = self;
        // One hash lookup for a known flow; the path is worked out once.
        let flow = match flows.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(Flow {
                hops: Vec::new(),
                provisional: true,
                last_seen: 0,
                auto_tracked: false,
                repath: false,
            }),
        };
        let mut stale = None;
        if flow.provisional {
            let mut paths = Paths {
                topology,
                owners,
                nat_table,
                stale: None,
            };
            let (mut hops, provisional) = paths.path(packet);
            stale = paths.stale;
            if flow.repath {
                // Records of this window go on where the path is the same.
                for (new, old) in hops.iter_mut().zip(&flow.hops) {
                    if (new.interface, new.egress) == (old.interface, old.egress) {
                        new.slots = old.slots;
                    }
                }
                flow.hops.clear();
                flow.repath = false;
            }
            if flow.hops.len() < hops.len() {
                flow.hops = hops;
                flow.auto_tracked = flow.hops.iter().any(|h| {
                    AUTO_TRACKED.contains(
                        &topology.interfaces[h.interface as usize]
                            .interface_type
                            .as_str(),
                    )
                });
            }
            flow.provisional = provisional;
        }
        flow.last_seen = now;
        if flow.hops.is_empty() {
            stats.outside += 1;
            return;
        }
        stats.routed += 1;
        let in_group = |group: &str, ip: IpAddr| match owners.get(&ip) {
            Some(Owner::Private(i)) => topology.interfaces[*i]
                .security_groups
                .iter()
                .any(|&g| topology.security_groups[g].id == group),
            _ => false,
        };
        let flags = supported_flags(packet.tcp_flags);
        let seen = Seen {
            time: now,
            tcp_flags: packet.tcp_flags,
        };
        let auto_tracked = flow.auto_tracked;
        for hop in &mut flow.hops {
            let accepted = if hop.blocked {
                false
            } else {
                let direction = if hop.egress {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                let firewall = &mut firewalls[hop.interface as usize];
                let ruling = *hop.ruling.get_or_insert_with(|| {
                    firewall.rule(
                        direction,
                        &hop.judged,
                        hop.crosses_subnet,
                        &in_group,
                        auto_tracked,
                    )
                });
                match ruling.fixed() {
                    Some(accepted) => accepted,
                    None => {
                        firewall
                            .pass(direction, &hop.judged, &ruling, seen, &mut hop.conn)
                            .accepted
                    }
                }
            };
            for (m, &a) in members[hop.interface as usize].iter().enumerate() {
                if a == NONE {
                    break;
                }
                let agg = &mut aggregators[a as usize];
                let slot = &mut hop.slots[m][usize::from(accepted)];
                if slot.0 == agg.number {
                    let acc = &mut agg.accs[slot.1 as usize];
                    acc.packets += 1;
                    acc.bytes += u64::from(packet.bytes);
                    acc.start = acc.start.min(now);
                    acc.end = acc.end.max(now);
                    acc.flags |= flags;
                } else {
                    *slot = (agg.number, agg.accs.len() as u32);
                    agg.accs.push(Acc {
                        hop: hop.clone(),
                        accepted,
                        packets: 1,
                        bytes: u64::from(packet.bytes),
                        start: now,
                        end: now,
                        flags,
                    });
                }
            }
            if !accepted {
                break;
            }
        }
        if let Some(flow) = stale.and_then(|k| flows.get_mut(&k)) {
            flow.provisional = true;
            flow.repath = true;
        }
    }

    /// Closes every window that ends at or before `time` (Unix seconds). A window opens when
    /// the one before it closes — the first at the first packet (or [`start_at`](Self::start_at))
    /// — and closes at the next end of its interfaces' phase: at most one interval later.
    pub fn advance_to(&mut self, time: i64) {
        if time < self.next_end {
            return;
        }
        let mut closed_any = false;
        let mut next_end = i64::MAX;
        for a in 0..self.aggregators.len() {
            let first = self.aggregators[a].first_start(time);
            let mut start = *self.aggregators[a].window.get_or_insert(first);
            loop {
                let end = self.aggregators[a].end_after(start);
                if end > time {
                    next_end = next_end.min(end);
                    break;
                }
                self.close(a, start, end);
                start = end;
                closed_any = true;
            }
            self.aggregators[a].window = Some(start);
        }
        self.next_end = next_end;
        // Forget idle flows (their paths and verdicts are recomputed if they come back) and
        // expired connections when a window ends, at most once a minute: windows of many phases
        // end every few seconds, and this is never per packet.
        if closed_any && time >= self.tidy_at {
            self.tidy_at = time + 60;
            if self.flows.len() > 65_536
                && let Some(longest) = self.aggregators.iter().map(|a| i64::from(a.interval)).max()
            {
                self.flows.retain(|_, f| f.last_seen + 2 * longest >= time);
            }
            for firewall in &mut self.firewalls {
                firewall.expire_connections(time);
            }
        }
    }

    /// Closes the open windows (the end of the input).
    pub fn finish(&mut self) {
        self.close_open_before(i64::MAX);
    }

    /// Closes the open windows that start before `end`.
    fn close_open_before(&mut self, end: i64) {
        for a in 0..self.aggregators.len() {
            if let Some(start) = self.aggregators[a].window
                && start < end
            {
                // The run's end cuts the last window short.
                let until = self.aggregators[a].end_after(start).min(end);
                self.close(a, start, until);
                self.aggregators[a].window = Some(until);
            }
        }
        self.next_end = i64::MIN;
    }

    /// The earliest start of a window still open (`i64::MAX` before the first): no record still
    /// to come ends before it.
    pub fn open_since(&self) -> i64 {
        self.aggregators
            .iter()
            .filter_map(|a| a.window)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Takes the windows closed so far, in order of their ends.
    pub fn take_closed(&mut self) -> Vec<ClosedWindow> {
        self.closed.sort_by_key(|w| w.end);
        std::mem::take(&mut self.closed)
    }

    /// The records of `window` that flow log `flow_log` (an index into the topology's flow logs)
    /// publishes — its interfaces, its traffic type — as a batch in its format; `None` when the
    /// window is of another interval or holds nothing for it.
    pub fn flow_log_batch(&self, flow_log: usize, window: &ClosedWindow) -> Option<RecordBatch> {
        let records = self.flow_log_records(flow_log, window);
        let format = &self.topology.flow_logs[flow_log].log_format;
        (!records.is_empty()).then(|| to_batch(&records, &self.topology, format))
    }

    /// The records of `window` that flow log `flow_log` publishes (empty when the window is of
    /// another interval).
    pub fn flow_log_records(&self, flow_log: usize, window: &ClosedWindow) -> Vec<FlowRecord> {
        let def = &self.topology.flow_logs[flow_log];
        if def.max_aggregation_interval < window.interval {
            return Vec::new();
        }
        window
            .records
            .iter()
            .filter(|r| def.interfaces.binary_search(&r.interface).is_ok())
            .filter(|r| interval(&self.topology, def, r.interface) == window.interval)
            .filter(|r| r.log_status != LogStatus::Ok || def.traffic_type.admits(r.accepted))
            .cloned()
            .collect()
    }

    /// Closes every window that starts before `end` (Unix seconds): the end of a run whose last
    /// second is `end - 1`.
    pub fn finish_at(&mut self, end: i64) {
        self.advance_to(end);
        self.close_open_before(end);
    }

    fn close(&mut self, a: usize, start: i64, until: i64) {
        let agg = &mut self.aggregators[a];
        let interval = agg.interval;
        let accs = std::mem::take(&mut agg.accs);
        agg.number = agg.number.wrapping_add(1).max(1);
        let end = until - 1;
        let mut counts = vec![0usize; self.topology.interfaces.len()];
        let mut skipped = vec![false; self.topology.interfaces.len()];
        let mut records = Vec::with_capacity(accs.len());
        for acc in accs {
            let i = acc.hop.interface as usize;
            let capacity = self.topology.interfaces[i]
                .flow_capacity
                .unwrap_or(usize::MAX);
            if counts[i] >= capacity {
                skipped[i] = true;
                self.stats.skipped_flows += 1;
                continue;
            }
            counts[i] += 1;
            let hop = acc.hop;
            records.push(FlowRecord {
                interface: i,
                log_status: LogStatus::Ok,
                egress: hop.egress,
                srcaddr: hop.srcaddr,
                dstaddr: hop.dstaddr,
                pkt_srcaddr: hop.pkt_srcaddr,
                pkt_dstaddr: hop.pkt_dstaddr,
                src_port: hop.judged.src_port,
                dst_port: hop.judged.dst_port,
                protocol: hop.judged.protocol,
                packets: acc.packets,
                bytes: (!hop.blocked).then_some(acc.bytes),
                start: acc.start,
                end: acc.end,
                accepted: acc.accepted,
                tcp_flags: acc.flags,
                traffic_path: hop.traffic_path,
                reject_reason: hop.blocked.then_some("BPA"),
                next_hop: hop.next_hop,
            });
        }
        for &i in &self.aggregators[a].members {
            if skipped[i] {
                records.push(FlowRecord::status(i, LogStatus::SkipData, start, end));
            } else if counts[i] == 0 {
                records.push(FlowRecord::status(i, LogStatus::NoData, start, end));
            }
        }
        self.stats.records += records.len() as u64;
        self.closed.push(ClosedWindow {
            interval,
            start,
            end: until,
            records,
        });
    }

    fn exclusion(&self, p: &WirePacket) -> Option<Exclusion> {
        if let Some(why) = self
            .excluded_addresses
            .get(&p.dst)
            .or_else(|| self.excluded_addresses.get(&p.src))
        {
            return Some(*why);
        }
        if p.protocol == 17
            && matches!(
                (p.src_port, p.dst_port),
                (68, 67) | (67, 68) | (546, 547) | (547, 546)
            )
        {
            return Some(Exclusion::Dhcp);
        }
        let kind = |ip: &IpAddr| match self.owners.get(ip) {
            Some(Owner::Private(i)) => Some(self.topology.interfaces[*i].interface_type.as_str()),
            _ => None,
        };
        match (kind(&p.src), kind(&p.dst)) {
            (Some("vpc_endpoint"), Some("network_load_balancer"))
            | (Some("network_load_balancer"), Some("vpc_endpoint")) => {
                Some(Exclusion::EndpointToLoadBalancer)
            }
            _ => None,
        }
    }
}

/// Works out the interfaces a packet passes.
struct Paths<'a> {
    topology: &'a Topology,
    owners: &'a Map<IpAddr, Owner>,
    nat_table: &'a mut Map<NatKey, IpAddr>,
    /// A flow whose cached path no longer holds.
    stale: Option<FlowKey>,
}

impl Paths<'_> {
    fn hop(&self, interface: usize, egress: bool, src: IpAddr, dst: IpAddr, p: &WirePacket) -> Hop {
        Hop {
            interface: interface as u32,
            egress,
            srcaddr: src,
            dstaddr: dst,
            pkt_srcaddr: src,
            pkt_dstaddr: dst,
            judged: Packet {
                src,
                dst,
                protocol: p.protocol,
                src_port: p.src_port,
                dst_port: p.dst_port,
            },
            crosses_subnet: true,
            traffic_path: None,
            blocked: false,
            next_hop: None,
            ruling: None,
            conn: Handle::default(),
            slots: [[(0, 0); 2]; 2],
        }
    }

    /// The interfaces `p` passes, in order; `true` when the path may still grow.
    fn path(&mut self, p: &WirePacket) -> (Vec<Hop>, bool) {
        let t = &self.topology;
        let mut hops = Vec::new();
        let sender = match self.owners.get(&p.src).copied() {
            Some(Owner::Private(s)) => Some((s, p.src)),
            // Sent from the public address: the internet gateway translates it on the way out.
            Some(Owner::Public(s)) => Some((s, t.interfaces[s].primary_like(p.src))),
            _ => None,
        };
        match sender {
            Some((s, src)) => {
                let sender = &t.interfaces[s];
                let subnet = &t.subnets[sender.subnet];
                let bpa = t.vpcs[subnet.vpc].block_public_access;
                let mut out = self.hop(s, true, sender.primary_like(src), p.dst, p);
                out.pkt_srcaddr = src;
                out.judged.src = src;
                let route = t
                    .route_table_of(sender.subnet)
                    .and_then(|r| r.lookup(p.dst))
                    .map(|r| r.target.clone());
                let receiver = match self.owners.get(&p.dst) {
                    Some(Owner::Private(d)) => Some(*d),
                    _ => None,
                };
                match route {
                    Some(RouteTarget::Local) | None if receiver.is_some() || route.is_some() => {
                        out.traffic_path = Some(1);
                        if let Some(d) = receiver {
                            let same = t.interfaces[d].subnet == sender.subnet;
                            out.crosses_subnet = !same;
                            out.next_hop = Some(d);
                            let into = self.receive(d, src, p.dst, p, !same);
                            hops.push(out);
                            hops.push(into);
                        } else {
                            hops.push(out);
                        }
                    }
                    None => hops.push(out),
                    Some(RouteTarget::NatGateway(n)) => {
                        let nat = &t.nat_gateways[n];
                        let ne = nat.interface;
                        let nat_eni = &t.interfaces[ne];
                        let nat_ip = nat_eni.primary();
                        let crosses = nat_eni.subnet != sender.subnet;
                        out.traffic_path = Some(1);
                        out.crosses_subnet = crosses;
                        out.next_hop = Some(ne);
                        let mut into_nat = self.hop(ne, false, src, nat_ip, p);
                        into_nat.pkt_dstaddr = p.dst;
                        into_nat.judged.dst = p.dst;
                        into_nat.crosses_subnet = crosses;
                        let mut from_nat = self.hop(ne, true, nat_ip, p.dst, p);
                        from_nat.traffic_path = Some(2);
                        from_nat.blocked = bpa == BlockPublicAccess::Bidirectional;
                        let earlier = self.nat_table.insert(
                            NatKey {
                                nat: n,
                                protocol: p.protocol,
                                remote: p.dst,
                                remote_port: p.dst_port,
                                local_port: p.src_port,
                            },
                            src,
                        );
                        if earlier.is_some_and(|e| e != src) {
                            // The port now maps to another host: the replies' path (worked out
                            // for the earlier one) must be worked out again.
                            self.stale = Some(FlowKey {
                                src: p.dst,
                                dst: nat.public_ip,
                                protocol: p.protocol,
                                src_port: p.dst_port,
                                dst_port: p.src_port,
                            });
                        }
                        hops.extend([out, into_nat, from_nat]);
                    }
                    Some(target) => {
                        let nitro = sender.nitro && sender.instance_id.is_some();
                        out.traffic_path = Some(match target {
                            RouteTarget::InternetGateway(_) => {
                                out.blocked = bpa == BlockPublicAccess::Bidirectional;
                                if nitro { 8 } else { 2 }
                            }
                            RouteTarget::GatewayEndpoint(_) => {
                                if nitro {
                                    7
                                } else {
                                    2
                                }
                            }
                            RouteTarget::VpnGateway(_) => 3,
                            RouteTarget::Peering { inter_region, .. } => {
                                if inter_region {
                                    5
                                } else {
                                    4
                                }
                            }
                            _ => 1,
                        });
                        hops.push(out);
                        if let (
                            Some(d),
                            RouteTarget::Peering { .. } | RouteTarget::TransitGateway(_),
                        ) = (receiver, target)
                        {
                            hops.push(self.receive(d, src, p.dst, p, true));
                        }
                    }
                }
                (hops, false)
            }
            _ => match self.owners.get(&p.dst).copied() {
                Some(Owner::Private(d)) => {
                    hops.push(self.receive(d, p.src, p.dst, p, true));
                    (hops, false)
                }
                Some(Owner::Public(d)) => {
                    let private = t.interfaces[d].primary_like(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                    let mut into = self.receive(d, p.src, private, p, true);
                    let bpa = t.vpcs[t.subnets[t.interfaces[d].subnet].vpc].block_public_access;
                    into.blocked = bpa != BlockPublicAccess::Off;
                    hops.push(into);
                    (hops, false)
                }
                Some(Owner::Nat(n)) => {
                    let nat = &t.nat_gateways[n];
                    let ne = nat.interface;
                    let nat_ip = t.interfaces[ne].primary();
                    let bpa = t.vpcs[t.subnets[t.interfaces[ne].subnet].vpc].block_public_access;
                    let mut into_nat = self.hop(ne, false, p.src, nat_ip, p);
                    into_nat.blocked = bpa != BlockPublicAccess::Off;
                    hops.push(into_nat);
                    let key = NatKey {
                        nat: n,
                        protocol: p.protocol,
                        remote: p.src,
                        remote_port: p.src_port,
                        local_port: p.dst_port,
                    };
                    let Some(&inner) = self.nat_table.get(&key) else {
                        return (hops, true);
                    };
                    let Some(Owner::Private(d)) = self.owners.get(&inner).copied() else {
                        return (hops, false);
                    };
                    let crosses = t.interfaces[d].subnet != t.interfaces[ne].subnet;
                    let mut from_nat = self.hop(ne, true, nat_ip, inner, p);
                    from_nat.pkt_srcaddr = p.src;
                    from_nat.judged.dst = inner;
                    from_nat.crosses_subnet = crosses;
                    from_nat.traffic_path = Some(1);
                    from_nat.next_hop = Some(d);
                    let into = self.receive(d, p.src, inner, p, crosses);
                    hops.extend([from_nat, into]);
                    (hops, false)
                }
                None => (hops, false),
            },
        }
    }

    /// The ingress hop on interface `d` of a packet from `src` to `dst` (one of `d`'s addresses).
    fn receive(&self, d: usize, src: IpAddr, dst: IpAddr, p: &WirePacket, crosses: bool) -> Hop {
        let eni = &self.topology.interfaces[d];
        let mut hop = self.hop(d, false, src, eni.primary_like(dst), p);
        hop.pkt_dstaddr = dst;
        hop.judged.dst = dst;
        hop.crosses_subnet = crosses;
        hop
    }
}

#[cfg(test)]
mod tests {
    use super::supported_flags;

    #[test]
    fn only_supported_flags_count() {
        assert_eq!(supported_flags(0x02), 2, "SYN");
        assert_eq!(supported_flags(0x12), 18, "SYN-ACK");
        assert_eq!(supported_flags(0x10), 0, "ACK alone");
        assert_eq!(supported_flags(0x18), 0, "PSH-ACK");
        assert_eq!(supported_flags(0x11), 1, "FIN-ACK");
        assert_eq!(supported_flags(0x04), 4, "RST");
        assert_eq!(supported_flags(0x42), 2, "SYN+ECE");
        assert_eq!(supported_flags(0x02) | supported_flags(0x11), 3);
        assert_eq!(supported_flags(0x12) | supported_flags(0x11), 19);
    }
}
