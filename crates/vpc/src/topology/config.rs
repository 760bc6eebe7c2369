//! The topology file as written: serde types with `deny_unknown_fields`, one per section.
//!
//! Names follow the AWS CLI and API (`cidr_block`, `rule_number`, `rule_action`, `traffic_type`,
//! `max_aggregation_interval`, `log_destination_type`, ...), in snake case. References to other
//! resources and every value that can be wrong keep their position in the file
//! ([`Spanned`]) so a mistake is reported where it is.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string that remembers where it was in the file.
pub type Text = Spanned<String>;

/// One `[[vpc]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcConfig {
    /// `vpc-...`.
    pub id: Text,
    /// IPv4 blocks; the first is the primary one (its base + 2 is the Amazon DNS server).
    pub cidr_blocks: Vec<Text>,
    /// IPv6 blocks.
    #[serde(default)]
    pub ipv6_cidr_blocks: Vec<Text>,
    /// VPC Block Public Access: `off` (default), `block-bidirectional` or `block-ingress`.
    #[serde(default)]
    pub block_public_access: Option<Text>,
}

/// One `[[subnet]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetConfig {
    /// `subnet-...`.
    pub id: Text,
    /// The VPC it is in.
    pub vpc: Text,
    /// Its IPv4 block (inside one of the VPC's).
    pub cidr_block: Text,
    /// Its IPv6 block, if any.
    #[serde(default)]
    pub ipv6_cidr_block: Option<Text>,
    /// The availability zone ID (`use1-az1`); `-` in records from a sublocation.
    pub az_id: Text,
    /// The network ACL; the VPC's default ACL (allow all) when absent.
    #[serde(default)]
    pub network_acl: Option<Text>,
    /// The route table; the VPC's main route table when absent.
    #[serde(default)]
    pub route_table: Option<Text>,
    /// `wavelength`, `outpost` or `localzone`, for subnets in a sublocation.
    #[serde(default)]
    pub sublocation_type: Option<Text>,
    /// The sublocation's ID.
    #[serde(default)]
    pub sublocation_id: Option<Text>,
}

/// A port or port range: `443`, `"443"` or `"1024-65535"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortsConfig {
    /// One port.
    Number(i64),
    /// `"80"` or `"1024-65535"`.
    Text(String),
}

/// A protocol: `tcp`, `udp`, `icmp`, `icmpv6`, `all` / `-1`, or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ProtocolConfig {
    /// A protocol number (or -1 for all).
    Number(i64),
    /// A name, or a number written as text.
    Text(String),
}

/// One security group rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleConfig {
    /// The protocol.
    pub protocol: Spanned<ProtocolConfig>,
    /// Destination ports (all when absent).
    #[serde(default)]
    pub port_range: Option<Spanned<PortsConfig>>,
    /// The peer block (IPv4 or IPv6); exactly one of `cidr_block` and `group_id`.
    #[serde(default)]
    pub cidr_block: Option<Text>,
    /// The peer security group.
    #[serde(default)]
    pub group_id: Option<Text>,
    /// A note.
    #[serde(default)]
    pub description: Option<String>,
}

/// One `[[security_group]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupConfig {
    /// `sg-...`.
    pub id: Text,
    /// The VPC it belongs to.
    pub vpc: Text,
    /// Inbound allow rules (none: nothing is allowed in).
    #[serde(default)]
    pub inbound: Vec<Spanned<SgRuleConfig>>,
    /// Outbound allow rules; absent means AWS's default, everything allowed out.
    #[serde(default)]
    pub outbound: Option<Vec<Spanned<SgRuleConfig>>>,
}

/// One network ACL rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NaclRuleConfig {
    /// 1–32766, lowest first.
    pub rule_number: Spanned<i64>,
    /// The protocol.
    pub protocol: Spanned<ProtocolConfig>,
    /// Destination ports (all when absent).
    #[serde(default)]
    pub port_range: Option<Spanned<PortsConfig>>,
    /// The source (inbound) or destination (outbound) block, IPv4 or IPv6.
    pub cidr_block: Text,
    /// `allow` or `deny`.
    pub rule_action: Text,
}

/// One `[[network_acl]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAclConfig {
    /// `acl-...`.
    pub id: Text,
    /// The VPC it belongs to.
    pub vpc: Text,
    /// Inbound rules (the final `*` deny is implicit).
    #[serde(default)]
    pub inbound: Vec<Spanned<NaclRuleConfig>>,
    /// Outbound rules (the final `*` deny is implicit).
    #[serde(default)]
    pub outbound: Vec<Spanned<NaclRuleConfig>>,
}

/// ECS metadata of an interface that belongs to a task (fills the `ecs-*` fields).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EcsConfig {
    /// `ecs-cluster-arn`.
    pub cluster_arn: Option<String>,
    /// `ecs-cluster-name`.
    pub cluster_name: Option<String>,
    /// `ecs-container-instance-arn`.
    pub container_instance_arn: Option<String>,
    /// `ecs-container-instance-id`.
    pub container_instance_id: Option<String>,
    /// `ecs-container-id`.
    pub container_id: Option<String>,
    /// `ecs-second-container-id`.
    pub second_container_id: Option<String>,
    /// `ecs-service-name`.
    pub service_name: Option<String>,
    /// `ecs-task-definition-arn`.
    pub task_definition_arn: Option<String>,
    /// `ecs-task-arn`.
    pub task_arn: Option<String>,
    /// `ecs-task-id`.
    pub task_id: Option<String>,
}

/// One `[[network_interface]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// `eni-...`.
    pub id: Text,
    /// The subnet it is in.
    pub subnet: Text,
    /// Private IPv4 addresses; the first is the primary one.
    pub private_ip_addresses: Vec<Text>,
    /// IPv6 addresses.
    #[serde(default)]
    pub ipv6_addresses: Vec<Text>,
    /// A public (or Elastic) IPv4 address mapped 1:1 by the internet gateway.
    #[serde(default)]
    pub public_ip: Option<Text>,
    /// The instance it is attached to (none for requester-managed interfaces).
    #[serde(default)]
    pub instance_id: Option<Text>,
    /// `interface` (default), `nat_gateway`, `load_balancer`, `network_load_balancer`,
    /// `vpc_endpoint`, `transit_gateway`, `lambda`, `efa`, ...
    #[serde(default)]
    pub interface_type: Option<Text>,
    /// Its security groups (interfaces of NAT gateways and transit gateways have none).
    #[serde(default)]
    pub security_groups: Vec<Text>,
    /// Whether the instance is Nitro-based (traffic-path 7 and 8 instead of 2, records of at
    /// most 60 s whatever the flow log's interval); default true.
    #[serde(default)]
    pub nitro: Option<bool>,
    /// The account `account-id` shows for this interface: another account's 12 digits, or
    /// `unknown` for an interface an AWS service created (a VPC endpoint's, a Network Load
    /// Balancer's); default the file's `account_id`.
    #[serde(default)]
    pub account_id: Option<Text>,
    /// Flows per aggregation interval before the rest are skipped (SKIPDATA).
    #[serde(default)]
    pub flow_capacity: Option<Spanned<i64>>,
    /// The interface's idle connection tracking timeouts, as the EC2 API's
    /// `ConnectionTrackingSpecification` sets them; AWS's defaults when not given.
    #[serde(default)]
    pub connection_tracking_specification: Option<ConnectionTrackingConfig>,
    /// ECS task metadata.
    #[serde(default)]
    pub ecs: Option<EcsConfig>,
}

/// A `connection_tracking_specification`: idle timeouts in seconds (the EC2 API's
/// `TcpEstablishedTimeout`, `UdpStreamTimeout`, `UdpTimeout`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionTrackingConfig {
    /// Idle TCP connections in an established state: 60–432000, default 432000.
    #[serde(default)]
    pub tcp_established_timeout: Option<Spanned<i64>>,
    /// Idle UDP streams (more than one request-response): 60–180, default 180.
    #[serde(default)]
    pub udp_stream_timeout: Option<Spanned<i64>>,
    /// Other idle UDP flows: 30–60, default 30.
    #[serde(default)]
    pub udp_timeout: Option<Spanned<i64>>,
}

/// One route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The destination block.
    pub destination: Text,
    /// `local`, `igw-...`, `nat-...`, `tgw-...`, `vgw-...`, `pcx-...` or `vpce-...`.
    pub target: Text,
}

/// One `[[route_table]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableConfig {
    /// `rtb-...`.
    pub id: Text,
    /// The VPC it belongs to.
    pub vpc: Text,
    /// The VPC's main route table (used by subnets without one).
    #[serde(default)]
    pub main: bool,
    /// Routes besides the implicit `local` ones; longest prefix wins.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
}

/// An `[[internet_gateway]]`, `[[transit_gateway]]` or `[[vpn_gateway]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `igw-...`, `tgw-...` or `vgw-...`.
    pub id: Text,
    /// The VPC it is attached to (transit gateways: optional).
    #[serde(default)]
    pub vpc: Option<Text>,
}

/// One `[[nat_gateway]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatGatewayConfig {
    /// `nat-...`.
    pub id: Text,
    /// Its interface (a `network_interface` of type `nat_gateway`).
    pub network_interface: Text,
    /// The Elastic IP it translates to.
    pub public_ip: Text,
}

/// One `[[vpc_peering_connection]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringConfig {
    /// `pcx-...`.
    pub id: Text,
    /// The local VPC.
    pub vpc: Text,
    /// The peer VPC's blocks.
    pub peer_cidr_blocks: Vec<Text>,
    /// Whether the peer is in another region (traffic-path 5 instead of 4).
    #[serde(default)]
    pub inter_region: bool,
}

/// One `[[vpc_endpoint]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `vpce-...`.
    pub id: Text,
    /// The VPC.
    pub vpc: Text,
    /// `Gateway` or `Interface`.
    pub vpc_endpoint_type: Text,
    /// The service (`com.amazonaws.us-east-1.s3`).
    pub service_name: String,
    /// Gateway endpoints: the prefix list's blocks (routes to them take traffic-path 7/2).
    #[serde(default)]
    pub prefix_list_cidrs: Vec<Text>,
}

/// One `[[aws_ip_range]]`: a block of AWS's ip-ranges.json (fills `pkt-*-aws-service`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsRangeConfig {
    /// The block.
    pub cidr_block: Text,
    /// The service code (`S3`, `EC2`, `AMAZON`, ...).
    pub service: String,
}

/// `--destination-options`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationOptionsConfig {
    /// `plain-text` (default) or `parquet`.
    #[serde(default)]
    pub file_format: Option<Text>,
    /// Hive-compatible S3 prefixes.
    #[serde(default)]
    pub hive_compatible_partitions: bool,
    /// An `hh/` level under the day.
    #[serde(default)]
    pub per_hour_partition: bool,
}

/// The HTTP endpoint a Firehose stream delivers to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// The stream's ARN (`X-Amz-Firehose-Source-Arn`).
    #[serde(default)]
    pub delivery_stream_arn: Option<String>,
    /// The endpoint's access key (`X-Amz-Firehose-Access-Key`).
    #[serde(default)]
    pub access_key: Option<String>,
    /// `X-Amz-Firehose-Common-Attributes`.
    #[serde(default)]
    pub common_attributes: BTreeMap<String, String>,
    /// `gzip` to compress request bodies, `none` (default) otherwise.
    #[serde(default)]
    pub content_encoding: Option<Text>,
    /// Seconds to keep retrying a batch (Firehose's retry duration; default 300).
    #[serde(default)]
    pub retry_duration: Option<u64>,
}

/// One `[[flow_log]]`: the parameters of `aws ec2 create-flow-logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowLogConfig {
    /// `fl-...`.
    pub id: Text,
    /// `VPC`, `Subnet` or `NetworkInterface`.
    pub resource_type: Text,
    /// The VPCs, subnets or interfaces covered.
    pub resource_ids: Vec<Text>,
    /// `ACCEPT`, `REJECT` or `ALL`.
    pub traffic_type: Text,
    /// 60 or 600 (default 600).
    #[serde(default)]
    pub max_aggregation_interval: Option<Spanned<i64>>,
    /// `${field} ...`; the default format when absent.
    #[serde(default)]
    pub log_format: Option<Text>,
    /// `s3`, `cloud-watch-logs` (default), `kinesis-data-firehose` or `lake`.
    #[serde(default)]
    pub log_destination_type: Option<Text>,
    /// S3: a folder or `s3://bucket/prefix` (or `arn:aws:s3:::bucket/prefix`); CloudWatch Logs:
    /// the folder holding log groups; Firehose: the HTTP endpoint URL; lake: its folder.
    #[serde(default)]
    pub log_destination: Option<Text>,
    /// CloudWatch Logs: the log group.
    #[serde(default)]
    pub log_group_name: Option<Text>,
    /// S3 options.
    #[serde(default)]
    pub destination_options: Option<DestinationOptionsConfig>,
    /// Firehose HTTP endpoint options.
    #[serde(default)]
    pub firehose: Option<FirehoseConfig>,
}
