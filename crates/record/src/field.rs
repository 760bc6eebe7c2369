//! The registry of every flow log field AWS defines.
//!
//! One [`FieldSpec`] per field, in AWS's table order (which is also the order of the "all fields"
//! format and of the canonical Arrow schema). Each spec carries the text name used in log formats
//! and file headers (`account-id`), the Parquet/Arrow column name (`account_id`), the version that
//! introduced the field, how its values are checked, and a one-line description.

use arrow_schema::DataType;

/// How a field's text value is checked and which Arrow type holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A non-negative 32-bit integer with an inclusive upper bound (version, tcp-flags, ...).
    Int32 {
        /// Largest accepted value.
        max: i32,
    },
    /// A non-negative 64-bit integer (packets, bytes, start, end).
    Int64,
    /// An IPv4 or IPv6 address.
    Address,
    /// `ACCEPT` or `REJECT`.
    Action,
    /// `OK`, `NODATA` or `SKIPDATA`.
    LogStatus,
    /// Free text: identifiers, names, enumerations AWS may extend.
    Text,
}

impl FieldKind {
    /// The Arrow type that holds values of this kind.
    pub fn data_type(self) -> DataType {
        match self {
            FieldKind::Int32 { .. } => DataType::Int32,
            FieldKind::Int64 => DataType::Int64,
            FieldKind::Address | FieldKind::Action | FieldKind::LogStatus | FieldKind::Text => {
                DataType::Utf8
            }
        }
    }

    /// Whether values of this kind are integers.
    pub fn is_integer(self) -> bool {
        matches!(self, FieldKind::Int32 { .. } | FieldKind::Int64)
    }
}

/// The description of one flow log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// The name used in `${...}` log formats and in S3 file headers, e.g. `account-id`.
    pub name: &'static str,
    /// The Parquet/Arrow column name AWS uses, e.g. `account_id`.
    pub column: &'static str,
    /// The flow log version that introduced the field.
    pub version: u8,
    /// How values are checked and stored.
    pub kind: FieldKind,
    /// A one-line description.
    pub doc: &'static str,
}

impl FieldSpec {
    /// The Arrow type of the field's column.
    pub fn data_type(&self) -> DataType {
        self.kind.data_type()
    }

    /// The field's position in [`FIELDS`], which is AWS's table order.
    pub fn index(&self) -> usize {
        FIELDS
            .iter()
            .position(|f| f.name == self.name)
            .expect("every FieldSpec comes from FIELDS")
    }
}

const PORT: FieldKind = FieldKind::Int32 { max: 65_535 };
const BYTE: FieldKind = FieldKind::Int32 { max: 255 };
const INT: FieldKind = FieldKind::Int32 { max: i32::MAX };

macro_rules! fields {
    ($( $name:literal, $column:literal, $version:literal, $kind:expr, $doc:literal; )*) => {
        /// Every flow log field, in AWS's table order.
        pub const FIELDS: &[FieldSpec] = &[
            $( FieldSpec { name: $name, column: $column, version: $version, kind: $kind, doc: $doc }, )*
        ];
    };
}

fields! {
    "version", "version", 2, INT, "Flow log version: the highest version among the fields in the format";
    "account-id", "account_id", 2, FieldKind::Text, "AWS account that owns the source network interface";
    "interface-id", "interface_id", 2, FieldKind::Text, "Network interface the traffic was recorded on";
    "srcaddr", "srcaddr", 2, FieldKind::Address, "Source address (ingress) or the interface's address (egress)";
    "dstaddr", "dstaddr", 2, FieldKind::Address, "Destination address (egress) or the interface's address (ingress)";
    "srcport", "srcport", 2, PORT, "Source port (0 for ICMP)";
    "dstport", "dstport", 2, PORT, "Destination port (0 for ICMP)";
    "protocol", "protocol", 2, BYTE, "IANA protocol number (1 ICMP, 6 TCP, 17 UDP, 58 ICMPv6)";
    "packets", "packets", 2, FieldKind::Int64, "Packets in the flow during the aggregation interval";
    "bytes", "bytes", 2, FieldKind::Int64, "Bytes in the flow during the aggregation interval";
    "start", "start", 2, FieldKind::Int64, "Unix seconds of the first packet of the flow in the interval";
    "end", "end", 2, FieldKind::Int64, "Unix seconds of the last packet of the flow in the interval";
    "action", "action", 2, FieldKind::Action, "ACCEPT or REJECT";
    "log-status", "log_status", 2, FieldKind::LogStatus, "OK, NODATA (no traffic) or SKIPDATA (records skipped)";
    "vpc-id", "vpc_id", 3, FieldKind::Text, "VPC that contains the network interface";
    "subnet-id", "subnet_id", 3, FieldKind::Text, "Subnet that contains the network interface";
    "instance-id", "instance_id", 3, FieldKind::Text, "Instance attached to the interface, if owned by the account";
    "tcp-flags", "tcp_flags", 3, BYTE, "TCP flags OR-ed over the interval: FIN 1, SYN 2, RST 4, SYN-ACK 18";
    "type", "type", 3, FieldKind::Text, "Traffic type: IPv4, IPv6 or EFA";
    "pkt-srcaddr", "pkt_srcaddr", 3, FieldKind::Address, "Packet-level (original) source address";
    "pkt-dstaddr", "pkt_dstaddr", 3, FieldKind::Address, "Packet-level (final) destination address";
    "region", "region", 4, FieldKind::Text, "Region of the network interface";
    "az-id", "az_id", 4, FieldKind::Text, "Availability Zone ID of the network interface";
    "sublocation-type", "sublocation_type", 4, FieldKind::Text, "wavelength, outpost or localzone";
    "sublocation-id", "sublocation_id", 4, FieldKind::Text, "ID of the sublocation";
    "pkt-src-aws-service", "pkt_src_aws_service", 5, FieldKind::Text, "AWS ip-ranges subset containing pkt-srcaddr";
    "pkt-dst-aws-service", "pkt_dst_aws_service", 5, FieldKind::Text, "AWS ip-ranges subset containing pkt-dstaddr";
    "flow-direction", "flow_direction", 5, FieldKind::Text, "ingress or egress, relative to the interface";
    "traffic-path", "traffic_path", 5, BYTE, "Path egress traffic takes (1 same VPC ... 8 internet gateway)";
    "ecs-cluster-arn", "ecs_cluster_arn", 7, FieldKind::Text, "ARN of the ECS cluster of the task";
    "ecs-cluster-name", "ecs_cluster_name", 7, FieldKind::Text, "Name of the ECS cluster of the task";
    "ecs-container-instance-arn", "ecs_container_instance_arn", 7, FieldKind::Text, "ARN of the ECS container instance (EC2 launch type)";
    "ecs-container-instance-id", "ecs_container_instance_id", 7, FieldKind::Text, "ID of the ECS container instance (EC2 launch type)";
    "ecs-container-id", "ecs_container_id", 7, FieldKind::Text, "Docker runtime ID of the first container of the task";
    "ecs-second-container-id", "ecs_second_container_id", 7, FieldKind::Text, "Docker runtime ID of the second container of the task";
    "ecs-service-name", "ecs_service_name", 7, FieldKind::Text, "ECS service that started the task";
    "ecs-task-definition-arn", "ecs_task_definition_arn", 7, FieldKind::Text, "ARN of the task definition";
    "ecs-task-arn", "ecs_task_arn", 7, FieldKind::Text, "ARN of the ECS task";
    "ecs-task-id", "ecs_task_id", 7, FieldKind::Text, "ID of the ECS task";
    "reject-reason", "reject_reason", 8, FieldKind::Text, "Why traffic was rejected: BPA (VPC Block Public Access)";
    "resource-id", "resource_id", 9, FieldKind::Text, "Regional NAT gateway the flow is associated with";
    "encryption-status", "encryption_status", 10, FieldKind::Text, "VPC Encryption Controls status: 0 clear, 1 Nitro, 2 application, 3 both";
    "interface-type", "interface_type", 11, FieldKind::Text, "Type of the recording interface (amazon-elb, nat_gateway, efa, ...)";
    "next-hop-interface-id", "next_hop_interface_id", 11, FieldKind::Text, "Interface of the next hop";
    "next-hop-subnet-id", "next_hop_subnet_id", 11, FieldKind::Text, "Subnet of the next hop";
    "next-hop-az-id", "next_hop_az_id", 11, FieldKind::Text, "Availability Zone ID of the next hop";
    "next-hop-vpc-id", "next_hop_vpc_id", 11, FieldKind::Text, "VPC of the next hop";
    "next-hop-interface-type", "next_hop_interface_type", 11, FieldKind::Text, "Interface type of the next hop (nat_gateway, vpc-endpoint, ...)";
    "instance-tag", "instance_tag", 11, FieldKind::Text, "Value of the first chosen instance tag, percent-encoded";
    "instance-tag-2", "instance_tag_2", 11, FieldKind::Text, "Value of the second chosen instance tag, percent-encoded";
    "interface-tag", "interface_tag", 11, FieldKind::Text, "Value of the first chosen interface tag, percent-encoded";
    "interface-tag-2", "interface_tag_2", 11, FieldKind::Text, "Value of the second chosen interface tag, percent-encoded";
    "asg-tag", "asg_tag", 11, FieldKind::Text, "Value of the first chosen Auto Scaling group tag, percent-encoded";
    "asg-tag-2", "asg_tag_2", 11, FieldKind::Text, "Value of the second chosen Auto Scaling group tag, percent-encoded";
}

/// Looks a field up by its text name (`account-id`) or its column name (`account_id`).
pub fn lookup(name: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.name == name || f.column == name)
}

/// The known field name closest to `name`, if one is close enough to be a plausible typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase().replace('_', "-");
    nearest(&name, FIELDS.iter().map(|f| f.name))
}

/// The candidate closest to `name` by edit distance, when close enough to be a typo: at most a
/// third of the longer of the two words apart, and at least one edit is always allowed. Ties go
/// to the candidate that sorts first, so the answer does not depend on the candidates' order.
/// This is the one rule behind every "did you mean" the project prints.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // No name people type is this long: a huge word (a hostile query) costs nothing.
    if name.len() > 128 {
        return None;
    }
    let limit = |c: &str| (name.len().max(c.len()) / 3).max(1);
    candidates
        .into_iter()
        // Lengths further apart than the limit cannot be within it.
        .filter(|c| name.len().abs_diff(c.len()) <= limit(c))
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, c)| d <= limit(c))
        .min()
        .map(|(_, c)| c)
}

/// Edit distance over bytes (names are ASCII), for "did you mean" suggestions: insertions,
/// deletions, substitutions and swaps of two neighbouring letters (`GRUOP`, `FORM`) each count
/// one (the optimal string alignment distance).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    // Three rows of the table: two back (for swaps), one back, and the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && ca == b[j - 1] && a[i - 1] == cb {
                best = best.min(before[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_columns_are_unique_and_consistent() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.column, f.name.replace('-', "_"), "column of {}", f.name);
            assert_eq!(f.index(), i);
            assert!(
                FIELDS[i + 1..].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
        }
    }

    #[test]
    fn versions_follow_aws_table() {
        assert_eq!(lookup("log-status").unwrap().version, 2);
        assert_eq!(lookup("tcp_flags").unwrap().version, 3);
        assert_eq!(lookup("az-id").unwrap().version, 4);
        assert_eq!(lookup("traffic-path").unwrap().version, 5);
        assert_eq!(lookup("ecs-task-id").unwrap().version, 7);
        assert_eq!(lookup("reject-reason").unwrap().version, 8);
        assert!(
            FIELDS.iter().all(|f| f.version != 6),
            "version 6 is Transit Gateway only"
        );
    }

    #[test]
    fn integer_fields_are_the_documented_ones() {
        let integers: Vec<_> = FIELDS
            .iter()
            .filter(|f| f.kind.is_integer())
            .map(|f| f.name)
            .collect();
        assert_eq!(
            integers,
            [
                "version",
                "srcport",
                "dstport",
                "protocol",
                "packets",
                "bytes",
                "start",
                "end",
                "tcp-flags",
                "traffic-path"
            ]
        );
        assert_eq!(lookup("packets").unwrap().data_type(), DataType::Int64);
        assert_eq!(lookup("dstport").unwrap().data_type(), DataType::Int32);
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("srcadr"), Some("srcaddr"));
        assert_eq!(suggest("log_status"), Some("log-status"));
        assert_eq!(suggest("accountid"), Some("account-id"));
        assert_eq!(suggest("tcpflags"), Some("tcp-flags"));
        assert_eq!(suggest("completely-unrelated-thing"), None);
        // A swap of neighbours is one edit: `tpye` is 2 edits from `type` by plain Levenshtein,
        // over the limit of 1 for a 4-letter name.
        assert_eq!(suggest("tpye"), Some("type"));
    }

    #[test]
    fn a_swap_of_neighbours_is_one_edit() {
        assert_eq!(edit_distance("GRUOP", "GROUP"), 1);
        assert_eq!(edit_distance("FORM", "FROM"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(nearest("GRUOP", ["GROUP", "ORDER"]), Some("GROUP"));
        assert_eq!(nearest("xyz", ["GROUP", "ORDER"]), None);
    }
}
