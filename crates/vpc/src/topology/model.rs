//! The checked model of a topology: VPCs, subnets, interfaces, rules, routes, flow logs.

use std::fmt;
use std::net::IpAddr;

use flowscope_record::LogFormat;
use flowscope_record::net::{Cidr, is_private};

use crate::rules::{NetworkAcl, SecurityGroup};

use super::config::EcsConfig;

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
    /// What `account-id` shows for it when not the topology's account (`unknown` for an
    /// interface an AWS service created).
    pub account_id: Option<String>,
    /// Flows per aggregation interval before SKIPDATA.
    pub flow_capacity: Option<usize>,
    /// Its idle connection tracking timeouts.
    pub connection_tracking: crate::tracking::Timeouts,
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

    /// The interface's own address as `srcaddr`/`dstaddr` show it for traffic to or from
    /// `like`: for IPv4, the primary private address (AWS, *Flow log limitations*: "If your
    /// network interface has multiple IPv4 addresses and traffic is sent to a secondary private
    /// IPv4 address, the flow log displays the primary private IPv4 address in the dstaddr
    /// field"); an IPv6 address of the interface as it is (AWS documents the
    /// substitution for secondary private IPv4 addresses only); for another address of the
    /// family (a public one), the first of the interface's.
    pub fn primary_like(&self, like: IpAddr) -> IpAddr {
        let found = match like {
            IpAddr::V4(_) => self.private_ips.first(),
            IpAddr::V6(_) if self.ipv6_ips.contains(&like) => return like,
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

impl Topology {
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
