//! The topology file: a VPC described in TOML, checked into a [`Topology`].
//!
//! [`Topology::from_toml`] reads the file section by section so that one mistake does not hide
//! the next: a syntax error, an unknown key, a wrong type, a reference to a resource that does
//! not exist, an address outside its subnet — each is reported as a [`Mistake`] with its line
//! and column, and all of them are reported at once. The section types are in [`config`]; the
//! format is documented in `docs/topology.md`.

pub mod config;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use flowscope_record::LogFormat;
use flowscope_record::net::{Cidr, is_private};
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::rules::{
    NaclRule, NetworkAcl, Peer, PortRange, Protocol, RuleAction, SecurityGroup, SgRule,
};
use config::{
    AwsRangeConfig, DestinationOptionsConfig, EndpointConfig, FlowLogConfig, GatewayConfig,
    InterfaceConfig, NaclRuleConfig, NatGatewayConfig, NetworkAclConfig, PeeringConfig,
    PortsConfig, ProtocolConfig, RouteTableConfig, SecurityGroupConfig, SgRuleConfig, SubnetConfig,
    Text, VpcConfig,
};

pub use config::EcsConfig;

/// One thing wrong in a topology file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Mistake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// VPC Block Public Access mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPublicAccess {
    /// Off.
    Off,
    /// Traffic through the internet gateway is blocked both ways.
    Bidirectional,
    /// Only traffic coming in through the internet gateway is blocked.
    Ingress,
}

/// A VPC.
#[derive(Debug, Clone)]
pub struct Vpc {
    /// `vpc-...`.
    pub id: String,
    /// IPv4 blocks, primary first.
    pub cidr_blocks: Vec<Cidr>,
    /// IPv6 blocks.
    pub ipv6_cidr_blocks: Vec<Cidr>,
    /// Block Public Access mode.
    pub block_public_access: BlockPublicAccess,
    /// Index of its default network ACL in [`Topology::network_acls`].
    pub default_acl: usize,
    /// Index of its main route table, if one is declared.
    pub main_route_table: Option<usize>,
}

impl Vpc {
    /// Whether `ip` is inside one of the VPC's blocks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr_blocks
            .iter()
            .chain(&self.ipv6_cidr_blocks)
            .any(|c| c.contains(ip))
    }
}

/// A subnet.
#[derive(Debug, Clone)]
pub struct Subnet {
    /// `subnet-...`.
    pub id: String,
    /// Index of its VPC.
    pub vpc: usize,
    /// IPv4 block.
    pub cidr_block: Cidr,
    /// IPv6 block.
    pub ipv6_cidr_block: Option<Cidr>,
    /// Availability zone ID.
    pub az_id: String,
    /// Index of its network ACL.
    pub network_acl: usize,
    /// Index of its route table (the VPC's main one when not set).
    pub route_table: Option<usize>,
    /// Sublocation type and ID.
    pub sublocation: Option<(String, String)>,
}

/// A network interface.
#[derive(Debug, Clone)]
pub struct Interface {
    /// `eni-...`.
    pub id: String,
    /// Index of its subnet.
    pub subnet: usize,
    /// Private IPv4 addresses, primary first.
    pub private_ips: Vec<IpAddr>,
    /// IPv6 addresses.
    pub ipv6_ips: Vec<IpAddr>,
    /// Public IPv4 mapped by the internet gateway.
    pub public_ip: Option<IpAddr>,
    /// The attached instance.
    pub instance_id: Option<String>,
    /// `interface`, `nat_gateway`, `load_balancer`, ...
    pub interface_type: String,
    /// Indexes of its security groups.
    pub security_groups: Vec<usize>,
    /// Nitro-based instance.
    pub nitro: bool,
    /// Flows per aggregation interval before SKIPDATA.
    pub flow_capacity: Option<usize>,
    /// ECS metadata.
    pub ecs: EcsConfig,
}

impl Interface {
    /// The primary private IPv4 address (or the first IPv6 one for IPv6-only interfaces).
    pub fn primary(&self) -> IpAddr {
        self.private_ips
            .first()
            .or(self.ipv6_ips.first())
            .copied()
            .expect("validated: an interface has an address")
    }

    /// The interface's own address of the family of `like` (what `srcaddr`/`dstaddr` show).
    pub fn primary_like(&self, like: IpAddr) -> IpAddr {
        let found = match like {
            IpAddr::V4(_) => self.private_ips.first(),
            IpAddr::V6(_) => self.ipv6_ips.first(),
        };
        found.copied().unwrap_or(like)
    }

    /// Whether security groups apply to the interface (not to NAT or transit gateway ones).
    pub fn has_security_groups(&self) -> bool {
        !matches!(
            self.interface_type.as_str(),
            "nat_gateway" | "transit_gateway" | "gateway_load_balancer_endpoint"
        )
    }

    /// Whether the interface is managed by an AWS service (instance-id is `-`).
    pub fn requester_managed(&self) -> bool {
        self.instance_id.is_none()
    }
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Within the VPC.
    Local,
    /// An internet gateway.
    InternetGateway(String),
    /// A NAT gateway (index into [`Topology::nat_gateways`]).
    NatGateway(usize),
    /// A transit gateway.
    TransitGateway(String),
    /// A virtual private gateway.
    VpnGateway(String),
    /// A peering connection.
    Peering {
        /// `pcx-...`.
        id: String,
        /// In another region.
        inter_region: bool,
    },
    /// A gateway VPC endpoint.
    GatewayEndpoint(String),
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Destination block.
    pub destination: Cidr,
    /// Target.
    pub target: RouteTarget,
}

/// A route table, with its implicit `local` routes first.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// `rtb-...`.
    pub id: String,
    /// Index of its VPC.
    pub vpc: usize,
    /// Routes; lookups take the longest matching prefix.
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The route for `dst` (longest prefix).
    pub fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| r.destination.contains(dst))
            .max_by_key(|r| r.destination.prefix())
    }
}

/// A NAT gateway.
#[derive(Debug, Clone)]
pub struct NatGateway {
    /// `nat-...`.
    pub id: String,
    /// Index of its interface.
    pub interface: usize,
    /// Its Elastic IP.
    pub public_ip: IpAddr,
}

/// What a flow log is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    /// Every interface in the VPCs.
    Vpc,
    /// Every interface in the subnets.
    Subnet,
    /// The interfaces named.
    NetworkInterface,
}

/// `--traffic-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficType {
    /// Accepted traffic only.
    Accept,
    /// Rejected traffic only.
    Reject,
    /// Both.
    All,
}

impl TrafficType {
    /// Whether a record with this action is captured.
    pub fn admits(self, accepted: bool) -> bool {
        match self {
            Self::Accept => accepted,
            Self::Reject => !accepted,
            Self::All => true,
        }
    }
}

/// S3 file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// gzip text with a header line.
    PlainText,
    /// Parquet.
    Parquet,
}

/// Firehose HTTP endpoint settings.
#[derive(Debug, Clone, Default)]
pub struct FirehoseOptions {
    /// `X-Amz-Firehose-Source-Arn`.
    pub delivery_stream_arn: Option<String>,
    /// `X-Amz-Firehose-Access-Key`.
    pub access_key: Option<String>,
    /// `X-Amz-Firehose-Common-Attributes`.
    pub common_attributes: Vec<(String, String)>,
    /// gzip request bodies.
    pub gzip: bool,
    /// Seconds to keep retrying a batch.
    pub retry_duration: u64,
}

/// Where a flow log delivers.
#[derive(Debug, Clone)]
pub enum LogDestination {
    /// S3 layout: a local folder or `s3://bucket/prefix` (`None`: the output folder).
    S3 {
        /// Folder, `s3://` URL, or none.
        location: Option<String>,
        /// Text or Parquet.
        file_format: FileFormat,
        /// Hive-compatible prefixes.
        hive_compatible_partitions: bool,
        /// An hour level in the prefix.
        per_hour_partition: bool,
    },
    /// CloudWatch Logs layout: a folder per log group, a file per stream.
    CloudWatchLogs {
        /// The folder holding log groups (`None`: the output folder).
        location: Option<String>,
        /// The log group.
        log_group_name: String,
    },
    /// A Firehose stream delivering to an HTTP endpoint.
    Firehose {
        /// The endpoint URL.
        url: String,
        /// Headers and retries.
        options: FirehoseOptions,
    },
    /// A flowscope lake.
    Lake {
        /// Its folder (`None`: the output folder).
        location: Option<String>,
    },
}

/// A flow log: `create-flow-logs` checked.
#[derive(Debug, Clone)]
pub struct FlowLogDefinition {
    /// `fl-...`.
    pub id: String,
    /// What it is attached to.
    pub resource_type: ResourceType,
    /// The resources.
    pub resource_ids: Vec<String>,
    /// Indexes of the interfaces it covers.
    pub interfaces: Vec<usize>,
    /// The capture filter.
    pub traffic_type: TrafficType,
    /// 60 or 600 seconds.
    pub max_aggregation_interval: u32,
    /// The record format.
    pub log_format: LogFormat,
    /// Where records go.
    pub destination: LogDestination,
}

/// A checked VPC topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The account that owns everything.
    pub account_id: String,
    /// The region.
    pub region: String,
    /// VPCs.
    pub vpcs: Vec<Vpc>,
    /// Subnets.
    pub subnets: Vec<Subnet>,
    /// Network interfaces.
    pub interfaces: Vec<Interface>,
    /// Security groups.
    pub security_groups: Vec<SecurityGroup>,
    /// Network ACLs (declared ones, then one default ACL per VPC).
    pub network_acls: Vec<NetworkAcl>,
    /// Route tables.
    pub route_tables: Vec<RouteTable>,
    /// NAT gateways.
    pub nat_gateways: Vec<NatGateway>,
    /// AWS ip-ranges blocks and their service codes.
    pub aws_ranges: Vec<(Cidr, String)>,
    /// Flow logs.
    pub flow_logs: Vec<FlowLogDefinition>,
}

const SECTIONS: &[&str] = &[
    "account_id",
    "region",
    "vpc",
    "subnet",
    "security_group",
    "network_acl",
    "network_interface",
    "route_table",
    "internet_gateway",
    "nat_gateway",
    "transit_gateway",
    "vpn_gateway",
    "vpc_peering_connection",
    "vpc_endpoint",
    "aws_ip_range",
    "flow_log",
];

/// The raw sections, each element with its span.
#[derive(Default)]
struct Raw {
    account_id: Option<Text>,
    region: Option<Text>,
    vpc: Vec<Spanned<VpcConfig>>,
    subnet: Vec<Spanned<SubnetConfig>>,
    security_group: Vec<Spanned<SecurityGroupConfig>>,
    network_acl: Vec<Spanned<NetworkAclConfig>>,
    network_interface: Vec<Spanned<InterfaceConfig>>,
    route_table: Vec<Spanned<RouteTableConfig>>,
    internet_gateway: Vec<Spanned<GatewayConfig>>,
    nat_gateway: Vec<Spanned<NatGatewayConfig>>,
    transit_gateway: Vec<Spanned<GatewayConfig>>,
    vpn_gateway: Vec<Spanned<GatewayConfig>>,
    vpc_peering_connection: Vec<Spanned<PeeringConfig>>,
    vpc_endpoint: Vec<Spanned<EndpointConfig>>,
    aws_ip_range: Vec<Spanned<AwsRangeConfig>>,
    flow_log: Vec<Spanned<FlowLogConfig>>,
}

/// Collects mistakes with positions computed from byte offsets.
struct Checker<'a> {
    text: &'a str,
    mistakes: Vec<(usize, String)>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.mistakes.push((span.start, message.into()));
    }

    fn finish(mut self) -> Vec<Mistake> {
        self.mistakes.sort_by_key(|(offset, _)| *offset);
        self.mistakes.dedup();
        let text = self.text;
        self.mistakes
            .into_iter()
            .map(|(offset, message)| {
                let (line, column) = flowscope_record::position::line_col(text, offset);
                Mistake {
                    line,
                    column,
                    message,
                }
            })
            .collect()
    }

    fn element<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| value.span());
                self.at(span, e.message().trim().to_string());
                None
            }
        }
    }

    fn section<T: DeserializeOwned>(
        &mut self,
        name: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Vec<Spanned<T>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.at(
                value.span(),
                format!("`{name}` is a list of tables: write each one as [[{name}]]"),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let span = item.span();
                self.element::<T>(item).map(|v| Spanned::new(span, v))
            })
            .collect()
    }

    fn cidr(&mut self, text: &Text) -> Option<Cidr> {
        match Cidr::parse(text.get_ref()) {
            Ok(c) => Some(c),
            Err(e) => {
                self.at(text.span(), format!("invalid CIDR block {e}"));
                None
            }
        }
    }

    fn address(&mut self, text: &Text) -> Option<IpAddr> {
        match text.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    text.span(),
                    format!("`{}` is not an IP address", text.get_ref()),
                );
                None
            }
        }
    }

    fn id(&mut self, text: &Text, prefix: &str, seen: &mut HashSet<String>) {
        let id = text.get_ref();
        if !id.starts_with(prefix) || id.len() == prefix.len() {
            self.at(text.span(), format!("`{id}` should start with `{prefix}`"));
        }
        if !seen.insert(id.clone()) {
            self.at(text.span(), format!("`{id}` is declared twice"));
        }
    }

    fn reference(
        &mut self,
        text: &Text,
        kind: &str,
        index: &HashMap<String, usize>,
    ) -> Option<usize> {
        let found = index.get(text.get_ref().as_str()).copied();
        if found.is_none() {
            let mut message = format!("no {kind} `{}` is declared", text.get_ref());
            if let Some(near) = nearest(text.get_ref(), index.keys()) {
                message.push_str(&format!(" (did you mean `{near}`?)"));
            }
            self.at(text.span(), message);
        }
        found
    }

    fn protocol(&mut self, value: &Spanned<ProtocolConfig>) -> Option<Protocol> {
        let number = match value.get_ref() {
            ProtocolConfig::Number(n) => Some(*n),
            ProtocolConfig::Text(t) => flowscope_record::protocol::rule_number(t),
        };
        match number {
            Some(-1) => Some(Protocol::All),
            Some(n) if (0..=255).contains(&n) => Some(Protocol::Number(n as u8)),
            _ => {
                self.at(
                    value.span(),
                    "protocol must be tcp, udp, icmp, icmpv6, all (-1) or a number 0-255",
                );
                None
            }
        }
    }

    fn ports(&mut self, value: &Option<Spanned<PortsConfig>>) -> Option<Option<PortRange>> {
        let Some(value) = value else {
            return Some(None);
        };
        let parsed = match value.get_ref() {
            PortsConfig::Number(n) => u16::try_from(*n).ok().map(PortRange::single),
            PortsConfig::Text(t) => match t.split_once('-') {
                None => t.trim().parse().ok().map(PortRange::single),
                Some((a, b)) => match (a.trim().parse(), b.trim().parse()) {
                    (Ok(a), Ok(b)) => match PortRange::new(a, b) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.at(value.span(), e.to_string());
                            return None;
                        }
                    },
                    _ => None,
                },
            },
        };
        if parsed.is_none() {
            self.at(
                value.span(),
                "port_range must be a port (443) or a range (\"1024-65535\") within 0-65535",
            );
            return None;
        }
        Some(parsed)
    }
}

/// The declared name closest to `name`, when close enough to be a typo.
fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    candidates
        .map(|c| (flowscope_record::edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c.as_str())
}

fn index_of<T>(items: &[Spanned<T>], id: impl Fn(&T) -> &Text) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        map.entry(id(item.get_ref()).get_ref().clone()).or_insert(i);
    }
    map
}

impl Topology {
    /// Reads and checks a topology file's text.
    ///
    /// # Errors
    /// Every mistake found, in file order.
    pub fn from_toml(text: &str) -> Result<Topology, Vec<Mistake>> {
        let mut check = Checker {
            text,
            mistakes: Vec::new(),
        };
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            for e in syntax {
                check.at(e.span().unwrap_or(0..0), e.message().trim().to_string());
            }
            return Err(check.finish());
        }
        let raw = read_sections(&mut check, root.get_ref());
        let topology = build(&mut check, raw, root.span());
        let mistakes = check.finish();
        match topology {
            Some(t) if mistakes.is_empty() => Ok(t),
            _ => Err(mistakes),
        }
    }

    /// The interface that owns `ip` as a private IPv4 or IPv6 address.
    pub fn interface_by_address(&self, ip: IpAddr) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.private_ips.contains(&ip) || i.ipv6_ips.contains(&ip))
    }

    /// The route table of `subnet`.
    pub fn route_table_of(&self, subnet: usize) -> Option<&RouteTable> {
        let s = &self.subnets[subnet];
        s.route_table
            .or(self.vpcs[s.vpc].main_route_table)
            .map(|i| &self.route_tables[i])
    }

    /// The AWS service whose published range holds `ip`, for public addresses.
    pub fn aws_service(&self, ip: IpAddr) -> Option<&str> {
        if is_private(ip) {
            return None;
        }
        self.aws_ranges
            .iter()
            .filter(|(c, _)| c.contains(ip))
            .max_by_key(|(c, _)| c.prefix())
            .map(|(_, s)| s.as_str())
    }
}

fn read_sections(check: &mut Checker<'_>, root: &DeTable<'_>) -> Raw {
    let mut raw = Raw::default();
    for (key, value) in root.iter() {
        let name: &str = key.get_ref();
        match name {
            "account_id" => {
                raw.account_id = check.element(value).map(|v| Spanned::new(value.span(), v))
            }
            "region" => raw.region = check.element(value).map(|v| Spanned::new(value.span(), v)),
            "vpc" => raw.vpc = check.section(name, value),
            "subnet" => raw.subnet = check.section(name, value),
            "security_group" => raw.security_group = check.section(name, value),
            "network_acl" => raw.network_acl = check.section(name, value),
            "network_interface" => raw.network_interface = check.section(name, value),
            "route_table" => raw.route_table = check.section(name, value),
            "internet_gateway" => raw.internet_gateway = check.section(name, value),
            "nat_gateway" => raw.nat_gateway = check.section(name, value),
            "transit_gateway" => raw.transit_gateway = check.section(name, value),
            "vpn_gateway" => raw.vpn_gateway = check.section(name, value),
            "vpc_peering_connection" => raw.vpc_peering_connection = check.section(name, value),
            "vpc_endpoint" => raw.vpc_endpoint = check.section(name, value),
            "aws_ip_range" => raw.aws_ip_range = check.section(name, value),
            "flow_log" => raw.flow_log = check.section(name, value),
            other => {
                let mut message = format!("unknown key `{other}`");
                let known: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
                if let Some(near) = nearest(other, known.iter()) {
                    message.push_str(&format!(" (did you mean `{near}`?)"));
                } else {
                    message.push_str(&format!(", expected one of {}", SECTIONS.join(", ")));
                }
                check.at(key.span(), message);
            }
        }
    }
    raw
}

/// Checks references and values; `None` when something is missing that later steps need.
fn build(check: &mut Checker<'_>, raw: Raw, whole: Range<usize>) -> Option<Topology> {
    let account_id = match &raw.account_id {
        Some(a) => {
            if a.get_ref().len() != 12 || !a.get_ref().bytes().all(|b| b.is_ascii_digit()) {
                check.at(a.span(), "account_id must be 12 digits");
            }
            a.get_ref().clone()
        }
        None => {
            check.at(whole.start..whole.start, "missing `account_id`");
            String::new()
        }
    };
    let region = match &raw.region {
        Some(r) => r.get_ref().clone(),
        None => {
            check.at(whole.start..whole.start, "missing `region`");
            String::new()
        }
    };

    let mut seen = HashSet::new();
    let mut broken = false;
    let vpc_index = index_of(&raw.vpc, |v| &v.id);
    let subnet_index = index_of(&raw.subnet, |v| &v.id);
    let sg_index = index_of(&raw.security_group, |v| &v.id);
    let acl_index = index_of(&raw.network_acl, |v| &v.id);
    let eni_index = index_of(&raw.network_interface, |v| &v.id);
    let rtb_index = index_of(&raw.route_table, |v| &v.id);
    let nat_index = index_of(&raw.nat_gateway, |v| &v.id);
    let igw: HashMap<String, usize> = index_of(&raw.internet_gateway, |v| &v.id);
    let tgw: HashMap<String, usize> = index_of(&raw.transit_gateway, |v| &v.id);
    let vgw: HashMap<String, usize> = index_of(&raw.vpn_gateway, |v| &v.id);
    let pcx = index_of(&raw.vpc_peering_connection, |v| &v.id);
    let vpce = index_of(&raw.vpc_endpoint, |v| &v.id);

    // VPCs.
    let mut vpcs = Vec::new();
    for v in &raw.vpc {
        let v = v.get_ref();
        check.id(&v.id, "vpc-", &mut seen);
        if v.cidr_blocks.is_empty() {
            check.at(
                v.id.span(),
                format!("`{}` has no cidr_blocks", v.id.get_ref()),
            );
        }
        let mut blocks = Vec::new();
        for c in &v.cidr_blocks {
            if let Some(cidr) = check.cidr(c) {
                if !cidr.is_ipv4() {
                    check.at(
                        c.span(),
                        "cidr_blocks are IPv4; put IPv6 blocks in ipv6_cidr_blocks",
                    );
                }
                blocks.push(cidr);
            }
        }
        let mut v6 = Vec::new();
        for c in &v.ipv6_cidr_blocks {
            if let Some(cidr) = check.cidr(c) {
                if cidr.is_ipv4() {
                    check.at(c.span(), "ipv6_cidr_blocks must be IPv6 blocks");
                }
                v6.push(cidr);
            }
        }
        let bpa = match v
            .block_public_access
            .as_ref()
            .map(|b| (b, b.get_ref().as_str()))
        {
            None | Some((_, "off")) => BlockPublicAccess::Off,
            Some((_, "block-bidirectional")) => BlockPublicAccess::Bidirectional,
            Some((_, "block-ingress")) => BlockPublicAccess::Ingress,
            Some((b, other)) => {
                check.at(
                    b.span(),
                    format!("block_public_access `{other}`: use off, block-bidirectional or block-ingress"),
                );
                BlockPublicAccess::Off
            }
        };
        vpcs.push(Vpc {
            id: v.id.get_ref().clone(),
            cidr_blocks: blocks,
            ipv6_cidr_blocks: v6,
            block_public_access: bpa,
            default_acl: 0,
            main_route_table: None,
        });
    }

    // Security groups.
    let mut groups = Vec::new();
    for g in &raw.security_group {
        let g = g.get_ref();
        check.id(&g.id, "sg-", &mut seen);
        check.reference(&g.vpc, "vpc", &vpc_index);
        let mut group = SecurityGroup::new(g.id.get_ref().clone());
        group.inbound = sg_rules(check, &g.inbound, &sg_index);
        if let Some(outbound) = &g.outbound {
            group.outbound = sg_rules(check, outbound, &sg_index);
        }
        groups.push(group);
    }

    // Network ACLs, then one default ACL per VPC.
    let mut acls = Vec::new();
    for a in &raw.network_acl {
        let a = a.get_ref();
        check.id(&a.id, "acl-", &mut seen);
        check.reference(&a.vpc, "vpc", &vpc_index);
        let inbound = nacl_rules(check, &a.inbound);
        let outbound = nacl_rules(check, &a.outbound);
        match NetworkAcl::new(a.id.get_ref().clone(), inbound, outbound) {
            Ok(acl) => acls.push(acl),
            Err(e) => {
                check.at(a.id.span(), e.to_string());
                acls.push(NetworkAcl::default_acl(a.id.get_ref().clone(), true));
            }
        }
    }
    for vpc in &mut vpcs {
        vpc.default_acl = acls.len();
        let ipv6 = !vpc.ipv6_cidr_blocks.is_empty();
        acls.push(NetworkAcl::default_acl(
            format!("{}-default-acl", vpc.id),
            ipv6,
        ));
    }

    // NAT gateways, peering, endpoints: what route targets resolve to.
    let mut nats = Vec::new();
    for n in &raw.nat_gateway {
        let n = n.get_ref();
        check.id(&n.id, "nat-", &mut seen);
        let eni = check.reference(&n.network_interface, "network_interface", &eni_index);
        if let Some(i) = eni {
            let t = raw.network_interface[i].get_ref().interface_type.as_ref();
            if t.map(|t| t.get_ref().as_str()) != Some("nat_gateway") {
                check.at(
                    n.network_interface.span(),
                    format!(
                        "`{}` should have interface_type = \"nat_gateway\"",
                        n.network_interface.get_ref()
                    ),
                );
            }
        }
        let ip = check.address(&n.public_ip);
        if let Some(ip) = ip.filter(|ip| is_private(*ip)) {
            check.at(
                n.public_ip.span(),
                format!("{ip} is a private address, not an Elastic IP"),
            );
        }
        if let (Some(interface), Some(public_ip)) = (eni, ip) {
            nats.push(NatGateway {
                id: n.id.get_ref().clone(),
                interface,
                public_ip,
            });
        }
    }
    for (kind, list, prefix) in [
        ("internet_gateway", &raw.internet_gateway, "igw-"),
        ("transit_gateway", &raw.transit_gateway, "tgw-"),
        ("vpn_gateway", &raw.vpn_gateway, "vgw-"),
    ] {
        for g in list {
            let g = g.get_ref();
            check.id(&g.id, prefix, &mut seen);
            match &g.vpc {
                Some(v) => {
                    check.reference(v, "vpc", &vpc_index);
                }
                None if kind != "transit_gateway" => {
                    check.at(
                        g.id.span(),
                        format!("{kind} `{}` needs a vpc", g.id.get_ref()),
                    );
                }
                None => {}
            }
        }
    }
    for p in &raw.vpc_peering_connection {
        let p = p.get_ref();
        check.id(&p.id, "pcx-", &mut seen);
        check.reference(&p.vpc, "vpc", &vpc_index);
        for c in &p.peer_cidr_blocks {
            check.cidr(c);
        }
    }
    for e in &raw.vpc_endpoint {
        let e = e.get_ref();
        check.id(&e.id, "vpce-", &mut seen);
        check.reference(&e.vpc, "vpc", &vpc_index);
        if !matches!(
            e.vpc_endpoint_type.get_ref().as_str(),
            "Gateway" | "Interface"
        ) {
            check.at(
                e.vpc_endpoint_type.span(),
                "vpc_endpoint_type must be Gateway or Interface",
            );
        }
        for c in &e.prefix_list_cidrs {
            check.cidr(c);
        }
    }

    // Route tables.
    let mut tables = Vec::new();
    for t in &raw.route_table {
        let t = t.get_ref();
        check.id(&t.id, "rtb-", &mut seen);
        let vpc = check.reference(&t.vpc, "vpc", &vpc_index);
        let mut routes = Vec::new();
        if let Some(v) = vpc.and_then(|v| vpcs.get(v)) {
            for c in v.cidr_blocks.iter().chain(&v.ipv6_cidr_blocks) {
                routes.push(Route {
                    destination: *c,
                    target: RouteTarget::Local,
                });
            }
            if t.main {
                if vpcs[vpc.unwrap_or(0)].main_route_table.is_some() {
                    check.at(
                        t.id.span(),
                        format!("{} has a second main route table", v.id),
                    );
                }
                let i = tables.len();
                if let Some(v) = vpc {
                    vpcs[v].main_route_table = Some(i);
                }
            }
        }
        for r in &t.routes {
            let r = r.get_ref();
            let destination = check.cidr(&r.destination);
            let target = route_target(
                check,
                &r.target,
                &raw,
                &nat_index,
                [&igw, &tgw, &vgw, &pcx, &vpce],
            );
            if let (Some(destination), Some(target)) = (destination, target) {
                routes.push(Route {
                    destination,
                    target,
                });
            }
        }
        tables.push(RouteTable {
            id: t.id.get_ref().clone(),
            vpc: vpc.unwrap_or(0),
            routes,
        });
    }

    // Subnets.
    let mut subnets: Vec<Subnet> = Vec::new();
    for s in &raw.subnet {
        let s = s.get_ref();
        check.id(&s.id, "subnet-", &mut seen);
        let vpc = check.reference(&s.vpc, "vpc", &vpc_index);
        let cidr = check.cidr(&s.cidr_block);
        let v6 = s.ipv6_cidr_block.as_ref().and_then(|c| check.cidr(c));
        if let (Some(v), Some(c)) = (vpc, cidr) {
            let inside = vpcs[v]
                .cidr_blocks
                .iter()
                .any(|b| b.prefix() <= c.prefix() && b.contains(c.network()));
            if !inside {
                check.at(
                    s.cidr_block.span(),
                    format!("{c} is not inside {}'s blocks", vpcs[v].id),
                );
            }
            for other in subnets.iter().filter(|o| o.vpc == v) {
                if other.cidr_block.contains(c.network()) || c.contains(other.cidr_block.network())
                {
                    check.at(
                        s.cidr_block.span(),
                        format!("{c} overlaps {} ({})", other.id, other.cidr_block),
                    );
                }
            }
        }
        if let (Some(v), Some(c), Some(text)) = (vpc, v6, &s.ipv6_cidr_block) {
            let inside = vpcs[v]
                .ipv6_cidr_blocks
                .iter()
                .any(|b| b.prefix() <= c.prefix() && b.contains(c.network()));
            if !inside {
                check.at(
                    text.span(),
                    format!("{c} is not inside {}'s IPv6 blocks", vpcs[v].id),
                );
            }
        }
        let acl = match &s.network_acl {
            Some(a) => check.reference(a, "network_acl", &acl_index),
            None => vpc.map(|v| vpcs[v].default_acl),
        };
        let route_table = s
            .route_table
            .as_ref()
            .and_then(|r| check.reference(r, "route_table", &rtb_index));
        if let (Some(r), Some(v), Some(text)) = (route_table, vpc, &s.route_table)
            && tables[r].vpc != v
        {
            check.at(
                text.span(),
                format!("{} belongs to another VPC", tables[r].id),
            );
        }
        let sublocation = match (&s.sublocation_type, &s.sublocation_id) {
            (None, None) => None,
            (Some(t), Some(i)) => {
                if !matches!(t.get_ref().as_str(), "wavelength" | "outpost" | "localzone") {
                    check.at(
                        t.span(),
                        "sublocation_type must be wavelength, outpost or localzone",
                    );
                }
                Some((t.get_ref().clone(), i.get_ref().clone()))
            }
            (Some(t), None) | (None, Some(t)) => {
                check.at(t.span(), "sublocation_type and sublocation_id go together");
                None
            }
        };
        if let (Some(vpc), Some(cidr_block), Some(network_acl)) = (vpc, cidr, acl) {
            subnets.push(Subnet {
                id: s.id.get_ref().clone(),
                vpc,
                cidr_block,
                ipv6_cidr_block: v6,
                az_id: s.az_id.get_ref().clone(),
                network_acl,
                route_table,
                sublocation,
            });
        } else {
            // Keep indexes aligned with the file so later sections still get checked.
            broken = true;
            subnets.push(Subnet {
                id: s.id.get_ref().clone(),
                vpc: vpc.unwrap_or(usize::MAX),
                cidr_block: Cidr::parse("0.0.0.0/32").expect("valid"),
                ipv6_cidr_block: None,
                az_id: String::new(),
                network_acl: 0,
                route_table: None,
                sublocation: None,
            });
        }
    }

    // Interfaces.
    let mut interfaces = Vec::new();
    let mut addresses: HashMap<IpAddr, String> = HashMap::new();
    for e in &raw.network_interface {
        let e = e.get_ref();
        check.id(&e.id, "eni-", &mut seen);
        let subnet = check.reference(&e.subnet, "subnet", &subnet_index);
        let mut private_ips = Vec::new();
        for a in &e.private_ip_addresses {
            let Some(ip) = check.address(a) else { continue };
            if let Some(s) = subnet
                .and_then(|s| subnets.get(s))
                .filter(|s| s.vpc != usize::MAX)
            {
                let c = s.cidr_block;
                if !c.contains(ip) {
                    check.at(a.span(), format!("{ip} is not in {} ({c})", s.id));
                } else if let Some(reason) = reserved(c, ip) {
                    check.at(
                        a.span(),
                        format!("{ip} is reserved by AWS in {c} ({reason})"),
                    );
                }
            }
            if let Some(owner) = addresses.insert(ip, e.id.get_ref().clone()) {
                check.at(a.span(), format!("{ip} is already an address of {owner}"));
            }
            private_ips.push(ip);
        }
        let mut ipv6_ips = Vec::new();
        for a in &e.ipv6_addresses {
            let Some(ip) = check.address(a) else { continue };
            if let Some(s) = subnet
                .and_then(|s| subnets.get(s))
                .filter(|s| s.vpc != usize::MAX)
            {
                match s.ipv6_cidr_block {
                    Some(c) if c.contains(ip) => {}
                    _ => check.at(a.span(), format!("{ip} is not in {}'s IPv6 block", s.id)),
                }
            }
            if let Some(owner) = addresses.insert(ip, e.id.get_ref().clone()) {
                check.at(a.span(), format!("{ip} is already an address of {owner}"));
            }
            ipv6_ips.push(ip);
        }
        if e.private_ip_addresses.is_empty() && e.ipv6_addresses.is_empty() {
            check.at(e.id.span(), format!("{} has no address", e.id.get_ref()));
        }
        let public_ip = e.public_ip.as_ref().and_then(|p| {
            let ip = check.address(p)?;
            if is_private(ip) {
                check.at(
                    p.span(),
                    format!("{ip} is a private address, not a public one"),
                );
            }
            if let Some(owner) = addresses.insert(ip, e.id.get_ref().clone()) {
                check.at(p.span(), format!("{ip} is already an address of {owner}"));
            }
            Some(ip)
        });
        let interface_type = e
            .interface_type
            .as_ref()
            .map_or_else(|| "interface".to_string(), |t| t.get_ref().clone());
        let mut security_groups = Vec::new();
        for g in &e.security_groups {
            if let Some(i) = check.reference(g, "security_group", &sg_index) {
                let group_vpc = raw.security_group[i].get_ref().vpc.get_ref();
                if let Some(vpc) = subnet
                    .and_then(|s| subnets.get(s))
                    .and_then(|s| vpcs.get(s.vpc))
                    && vpc.id != *group_vpc
                {
                    check.at(
                        g.span(),
                        format!("{} belongs to {group_vpc}, not {}", g.get_ref(), vpc.id),
                    );
                }
                security_groups.push(i);
            }
        }
        let flow_capacity =
            e.flow_capacity
                .as_ref()
                .and_then(|c| match usize::try_from(*c.get_ref()) {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        check.at(c.span(), "flow_capacity must be a positive number of flows");
                        None
                    }
                });
        if let Some(subnet) = subnet {
            interfaces.push(Interface {
                id: e.id.get_ref().clone(),
                subnet,
                private_ips,
                ipv6_ips,
                public_ip,
                instance_id: e.instance_id.as_ref().map(|i| i.get_ref().clone()),
                interface_type,
                security_groups,
                nitro: e.nitro.unwrap_or(true),
                flow_capacity,
                ecs: e.ecs.clone().unwrap_or_default(),
            });
        } else {
            broken = true;
        }
    }

    // AWS ranges.
    let mut aws_ranges = Vec::new();
    for r in &raw.aws_ip_range {
        let r = r.get_ref();
        if let Some(c) = check.cidr(&r.cidr_block) {
            aws_ranges.push((c, r.service.clone()));
        }
    }

    // Flow logs.
    let mut flow_logs = Vec::new();
    for f in &raw.flow_log {
        let f = f.get_ref();
        check.id(&f.id, "fl-", &mut seen);
        if let Some(def) = flow_log(
            check,
            f,
            &subnets,
            &interfaces,
            [&vpc_index, &subnet_index, &eni_index],
        ) {
            flow_logs.push(def);
        }
    }

    if broken {
        return None;
    }
    Some(Topology {
        account_id,
        region,
        vpcs,
        subnets,
        interfaces,
        security_groups: groups,
        network_acls: acls,
        route_tables: tables,
        nat_gateways: nats,
        aws_ranges,
        flow_logs,
    })
}

/// Why AWS reserves `ip` in subnet `c` (the first four addresses and the last one of IPv4
/// subnets), or `None`.
fn reserved(c: Cidr, ip: IpAddr) -> Option<&'static str> {
    let (IpAddr::V4(net), IpAddr::V4(a)) = (c.network(), ip) else {
        return None;
    };
    let offset = u32::from(a) - u32::from(net);
    let size = 1u64 << (32 - u32::from(c.prefix()));
    match offset {
        0 => Some("network address"),
        1 => Some("VPC router"),
        2 => Some("DNS server"),
        3 => Some("reserved for future use"),
        o if u64::from(o) == size - 1 => Some("broadcast address"),
        _ => None,
    }
}

fn sg_rules(
    check: &mut Checker<'_>,
    rules: &[Spanned<SgRuleConfig>],
    groups: &HashMap<String, usize>,
) -> Vec<SgRule> {
    let mut out = Vec::new();
    for r in rules {
        let span = r.span();
        let r = r.get_ref();
        let protocol = check.protocol(&r.protocol);
        let ports = check.ports(&r.port_range);
        let peer = match (&r.cidr_block, &r.group_id) {
            (Some(c), None) => check.cidr(c).map(Peer::Cidr),
            (None, Some(g)) => check
                .reference(g, "security_group", groups)
                .map(|_| Peer::Group(g.get_ref().clone())),
            _ => {
                check.at(
                    span,
                    "a security group rule needs exactly one of cidr_block and group_id",
                );
                None
            }
        };
        if let (Some(protocol), Some(ports), Some(peer)) = (protocol, ports, peer) {
            out.push(SgRule {
                protocol,
                ports,
                peer,
            });
        }
    }
    out
}

fn nacl_rules(check: &mut Checker<'_>, rules: &[Spanned<NaclRuleConfig>]) -> Vec<NaclRule> {
    let mut out = Vec::new();
    let mut numbers = HashSet::new();
    for r in rules {
        let r = r.get_ref();
        let n = *r.rule_number.get_ref();
        let number = match u16::try_from(n) {
            Ok(n) if (1..=32_766).contains(&n) => Some(n),
            _ => {
                check.at(
                    r.rule_number.span(),
                    format!("rule_number {n} is outside 1 to 32766"),
                );
                None
            }
        };
        if number.is_some() && !numbers.insert(n) {
            check.at(
                r.rule_number.span(),
                format!("rule_number {n} is used twice in this direction"),
            );
        }
        let protocol = check.protocol(&r.protocol);
        let ports = check.ports(&r.port_range);
        let cidr = check.cidr(&r.cidr_block);
        let action = match r.rule_action.get_ref().to_ascii_lowercase().as_str() {
            "allow" => Some(RuleAction::Allow),
            "deny" => Some(RuleAction::Deny),
            other => {
                check.at(
                    r.rule_action.span(),
                    format!("rule_action `{other}`: use allow or deny"),
                );
                None
            }
        };
        if let (Some(number), Some(protocol), Some(ports), Some(cidr), Some(action)) =
            (number, protocol, ports, cidr, action)
        {
            out.push(NaclRule {
                number,
                protocol,
                ports,
                cidr,
                action,
            });
        }
    }
    out.sort_by_key(|r| r.number);
    out.dedup_by_key(|r| r.number);
    out
}

fn route_target(
    check: &mut Checker<'_>,
    target: &Text,
    raw: &Raw,
    nats: &HashMap<String, usize>,
    [igw, tgw, vgw, pcx, vpce]: [&HashMap<String, usize>; 5],
) -> Option<RouteTarget> {
    let t = target.get_ref();
    let id = t.clone();
    if t == "local" {
        return Some(RouteTarget::Local);
    }
    let kinds: [(&str, &str, &HashMap<String, usize>); 6] = [
        ("igw-", "internet_gateway", igw),
        ("nat-", "nat_gateway", nats),
        ("tgw-", "transit_gateway", tgw),
        ("vgw-", "vpn_gateway", vgw),
        ("pcx-", "vpc_peering_connection", pcx),
        ("vpce-", "vpc_endpoint", vpce),
    ];
    let Some((prefix, kind, index)) = kinds.iter().find(|(p, _, _)| t.starts_with(p)) else {
        check.at(
            target.span(),
            format!("route target `{t}`: use local, igw-, nat-, tgw-, vgw-, pcx- or vpce- ids"),
        );
        return None;
    };
    let i = check.reference(target, kind, index)?;
    Some(match *prefix {
        "igw-" => RouteTarget::InternetGateway(id),
        "nat-" => RouteTarget::NatGateway(i),
        "tgw-" => RouteTarget::TransitGateway(id),
        "vgw-" => RouteTarget::VpnGateway(id),
        "pcx-" => RouteTarget::Peering {
            id,
            inter_region: raw.vpc_peering_connection[i].get_ref().inter_region,
        },
        _ => {
            let endpoint = raw.vpc_endpoint[i].get_ref();
            if endpoint.vpc_endpoint_type.get_ref() != "Gateway" {
                check.at(
                    target.span(),
                    format!(
                        "{t} is an Interface endpoint; only Gateway endpoints are route targets"
                    ),
                );
            }
            RouteTarget::GatewayEndpoint(id)
        }
    })
}

fn flow_log(
    check: &mut Checker<'_>,
    f: &FlowLogConfig,
    subnets: &[Subnet],
    interfaces: &[Interface],
    [vpcs, subnet_index, enis]: [&HashMap<String, usize>; 3],
) -> Option<FlowLogDefinition> {
    let resource_type = match f.resource_type.get_ref().as_str() {
        "VPC" => ResourceType::Vpc,
        "Subnet" => ResourceType::Subnet,
        "NetworkInterface" => ResourceType::NetworkInterface,
        other => {
            check.at(
                f.resource_type.span(),
                format!("resource_type `{other}`: use VPC, Subnet or NetworkInterface"),
            );
            return None;
        }
    };
    if f.resource_ids.is_empty() {
        check.at(f.resource_type.span(), "resource_ids is empty");
    }
    let mut covered = Vec::new();
    for r in &f.resource_ids {
        let (kind, index) = match resource_type {
            ResourceType::Vpc => ("vpc", vpcs),
            ResourceType::Subnet => ("subnet", subnet_index),
            ResourceType::NetworkInterface => ("network_interface", enis),
        };
        let Some(i) = check.reference(r, kind, index) else {
            continue;
        };
        for (e, interface) in interfaces.iter().enumerate() {
            let hit = match resource_type {
                ResourceType::Vpc => subnets.get(interface.subnet).is_some_and(|s| s.vpc == i),
                ResourceType::Subnet => interface.subnet == i,
                ResourceType::NetworkInterface => e == i,
            };
            if hit && !covered.contains(&e) {
                covered.push(e);
            }
        }
    }
    covered.sort_unstable();
    let traffic_type = match f.traffic_type.get_ref().as_str() {
        "ACCEPT" => TrafficType::Accept,
        "REJECT" => TrafficType::Reject,
        "ALL" => TrafficType::All,
        other => {
            check.at(
                f.traffic_type.span(),
                format!("traffic_type `{other}`: use ACCEPT, REJECT or ALL"),
            );
            TrafficType::All
        }
    };
    let interval = match &f.max_aggregation_interval {
        None => 600,
        Some(i) if matches!(*i.get_ref(), 60 | 600) => *i.get_ref() as u32,
        Some(i) => {
            check.at(i.span(), "max_aggregation_interval must be 60 or 600");
            600
        }
    };
    let log_format = match &f.log_format {
        None => LogFormat::default_format(),
        Some(text) => match LogFormat::parse(text.get_ref()) {
            Ok(format) => format,
            Err(e) => {
                check.at(text.span(), e.to_string());
                LogFormat::default_format()
            }
        },
    };
    let destination_type = f
        .log_destination_type
        .as_ref()
        .map_or("cloud-watch-logs", |t| t.get_ref().as_str());
    let location = f.log_destination.as_ref().map(|d| d.get_ref().clone());
    if f.destination_options.is_some() && destination_type != "s3" {
        check.at(
            f.id.span(),
            "destination_options apply to s3 destinations only",
        );
    }
    if f.firehose.is_some() && destination_type != "kinesis-data-firehose" {
        check.at(
            f.id.span(),
            "firehose options apply to kinesis-data-firehose destinations only",
        );
    }
    let destination = match destination_type {
        "s3" => {
            let options = f.destination_options.clone().unwrap_or_default();
            s3_destination(check, location, &options)
        }
        "cloud-watch-logs" => match &f.log_group_name {
            Some(group) => LogDestination::CloudWatchLogs {
                location,
                log_group_name: group.get_ref().clone(),
            },
            None => {
                check.at(
                    f.id.span(),
                    "a cloud-watch-logs flow log needs log_group_name",
                );
                return None;
            }
        },
        "kinesis-data-firehose" => {
            let Some(url) =
                location.filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            else {
                let span = f
                    .log_destination
                    .as_ref()
                    .or(f.log_destination_type.as_ref())
                    .map_or(f.id.span(), |d| d.span());
                check.at(span, "a kinesis-data-firehose flow log needs log_destination = the endpoint's http(s):// URL");
                return None;
            };
            let config = f.firehose.clone().unwrap_or_default();
            let gzip = match config
                .content_encoding
                .as_ref()
                .map(|c| (c, c.get_ref().as_str()))
            {
                None | Some((_, "none")) => false,
                Some((_, "gzip")) => true,
                Some((c, other)) => {
                    check.at(
                        c.span(),
                        format!("content_encoding `{other}`: use gzip or none"),
                    );
                    false
                }
            };
            LogDestination::Firehose {
                url,
                options: FirehoseOptions {
                    delivery_stream_arn: config.delivery_stream_arn,
                    access_key: config.access_key,
                    common_attributes: config.common_attributes.into_iter().collect(),
                    gzip,
                    retry_duration: config.retry_duration.unwrap_or(300),
                },
            }
        }
        "lake" => LogDestination::Lake { location },
        other => {
            let span = f
                .log_destination_type
                .as_ref()
                .map_or(f.id.span(), |t| t.span());
            check.at(span, format!("log_destination_type `{other}`: use s3, cloud-watch-logs, kinesis-data-firehose or lake"));
            return None;
        }
    };
    Some(FlowLogDefinition {
        id: f.id.get_ref().clone(),
        resource_type,
        resource_ids: f.resource_ids.iter().map(|r| r.get_ref().clone()).collect(),
        interfaces: covered,
        traffic_type,
        max_aggregation_interval: interval,
        log_format,
        destination,
    })
}

fn s3_destination(
    check: &mut Checker<'_>,
    location: Option<String>,
    options: &DestinationOptionsConfig,
) -> LogDestination {
    let file_format = match options
        .file_format
        .as_ref()
        .map(|f| (f, f.get_ref().as_str()))
    {
        None | Some((_, "plain-text")) => FileFormat::PlainText,
        Some((_, "parquet")) => FileFormat::Parquet,
        Some((f, other)) => {
            check.at(
                f.span(),
                format!("file_format `{other}`: use plain-text or parquet"),
            );
            FileFormat::PlainText
        }
    };
    let location = location.map(|l| match l.strip_prefix("arn:aws:s3:::") {
        Some(rest) => format!("s3://{rest}"),
        None => l,
    });
    LogDestination::S3 {
        location,
        file_format,
        hive_compatible_partitions: options.hive_compatible_partitions,
        per_hour_partition: options.per_hour_partition,
    }
}
