//! Flow records as the emulator produces them, and their Arrow form in any log format.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use flowscope_record::LogFormat;

use crate::topology::Topology;

/// `log-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStatus {
    /// Data logged normally.
    Ok,
    /// No traffic on the interface during the interval.
    NoData,
    /// Records were skipped: the interface's capacity was exceeded.
    SkipData,
}

impl LogStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NoData => "NODATA",
            Self::SkipData => "SKIPDATA",
        }
    }
}

/// One flow log record of one interface and one aggregation interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// Index of the interface in the topology.
    pub interface: usize,
    /// `log-status`; for NODATA and SKIPDATA only `start`, `end` and the interface's metadata
    /// are meaningful.
    pub log_status: LogStatus,
    /// `flow-direction` egress (else ingress).
    pub egress: bool,
    /// `srcaddr`.
    pub srcaddr: IpAddr,
    /// `dstaddr`.
    pub dstaddr: IpAddr,
    /// `pkt-srcaddr`.
    pub pkt_srcaddr: IpAddr,
    /// `pkt-dstaddr`.
    pub pkt_dstaddr: IpAddr,
    /// `srcport`.
    pub src_port: u16,
    /// `dstport`.
    pub dst_port: u16,
    /// `protocol`.
    pub protocol: u8,
    /// `packets`.
    pub packets: u64,
    /// `bytes` (`None`: not reported, as for Block Public Access rejections).
    pub bytes: Option<u64>,
    /// `start`, Unix seconds.
    pub start: i64,
    /// `end`, Unix seconds.
    pub end: i64,
    /// `action` ACCEPT (else REJECT).
    pub accepted: bool,
    /// `tcp-flags` (supported flags OR-ed).
    pub tcp_flags: u8,
    /// `traffic-path` (egress only).
    pub traffic_path: Option<u8>,
    /// `reject-reason`.
    pub reject_reason: Option<&'static str>,
    /// The next hop's interface (`next-hop-*` fields).
    pub next_hop: Option<usize>,
}

impl FlowRecord {
    /// A NODATA or SKIPDATA record spanning `start..=end`.
    pub fn status(interface: usize, log_status: LogStatus, start: i64, end: i64) -> Self {
        let none = IpAddr::from([0, 0, 0, 0]);
        Self {
            interface,
            log_status,
            egress: false,
            srcaddr: none,
            dstaddr: none,
            pkt_srcaddr: none,
            pkt_dstaddr: none,
            src_port: 0,
            dst_port: 0,
            protocol: 0,
            packets: 0,
            bytes: None,
            start,
            end,
            accepted: false,
            tcp_flags: 0,
            traffic_path: None,
            reject_reason: None,
            next_hop: None,
        }
    }
}

enum Value<'a> {
    Null,
    Int(i64),
    Str(&'a str),
    Addr(IpAddr),
}

fn value<'a>(name: &str, r: &'a FlowRecord, t: &'a Topology, version: u8) -> Value<'a> {
    let eni = &t.interfaces[r.interface];
    let subnet = &t.subnets[eni.subnet];
    let ok = r.log_status == LogStatus::Ok;
    let opt = |s: &'a Option<String>| s.as_deref().map_or(Value::Null, Value::Str);
    let next = r.next_hop.map(|i| &t.interfaces[i]);
    match name {
        "version" => Value::Int(i64::from(version)),
        "account-id" => Value::Str(eni.account_id.as_deref().unwrap_or(&t.account_id)),
        "interface-id" => Value::Str(&eni.id),
        "log-status" => Value::Str(r.log_status.as_str()),
        "start" => Value::Int(r.start),
        "end" => Value::Int(r.end),
        "vpc-id" => Value::Str(&t.vpcs[subnet.vpc].id),
        "subnet-id" => Value::Str(&subnet.id),
        "instance-id" => opt(&eni.instance_id),
        "region" => Value::Str(&t.region),
        "az-id" if subnet.sublocation.is_none() => Value::Str(&subnet.az_id),
        "sublocation-type" => subnet
            .sublocation
            .as_ref()
            .map_or(Value::Null, |s| Value::Str(&s.0)),
        "sublocation-id" => subnet
            .sublocation
            .as_ref()
            .map_or(Value::Null, |s| Value::Str(&s.1)),
        "ecs-cluster-arn" => opt(&eni.ecs.cluster_arn),
        "ecs-cluster-name" => opt(&eni.ecs.cluster_name),
        "ecs-container-instance-arn" => opt(&eni.ecs.container_instance_arn),
        "ecs-container-instance-id" => opt(&eni.ecs.container_instance_id),
        "ecs-container-id" => opt(&eni.ecs.container_id),
        "ecs-second-container-id" => opt(&eni.ecs.second_container_id),
        "ecs-service-name" => opt(&eni.ecs.service_name),
        "ecs-task-definition-arn" => opt(&eni.ecs.task_definition_arn),
        "ecs-task-arn" => opt(&eni.ecs.task_arn),
        "ecs-task-id" => opt(&eni.ecs.task_id),
        "interface-type" => Value::Str(&eni.interface_type),
        _ if !ok => Value::Null,
        "srcaddr" => Value::Addr(r.srcaddr),
        "dstaddr" => Value::Addr(r.dstaddr),
        "srcport" => Value::Int(i64::from(r.src_port)),
        "dstport" => Value::Int(i64::from(r.dst_port)),
        "protocol" => Value::Int(i64::from(r.protocol)),
        "packets" => Value::Int(r.packets as i64),
        "bytes" => r.bytes.map_or(Value::Null, |b| Value::Int(b as i64)),
        "action" => Value::Str(if r.accepted { "ACCEPT" } else { "REJECT" }),
        "tcp-flags" => Value::Int(i64::from(r.tcp_flags)),
        "type" if eni.interface_type == "efa" => Value::Str("EFA"),
        "type" => Value::Str(if r.pkt_srcaddr.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        }),
        "pkt-srcaddr" => Value::Addr(r.pkt_srcaddr),
        "pkt-dstaddr" => Value::Addr(r.pkt_dstaddr),
        "pkt-src-aws-service" => t.aws_service(r.pkt_srcaddr).map_or(Value::Null, Value::Str),
        "pkt-dst-aws-service" => t.aws_service(r.pkt_dstaddr).map_or(Value::Null, Value::Str),
        "flow-direction" => Value::Str(if r.egress { "egress" } else { "ingress" }),
        "traffic-path" => r
            .traffic_path
            .map_or(Value::Null, |p| Value::Int(i64::from(p))),
        "reject-reason" => r.reject_reason.map_or(Value::Null, Value::Str),
        "next-hop-interface-id" => next.map_or(Value::Null, |n| Value::Str(&n.id)),
        "next-hop-subnet-id" => next.map_or(Value::Null, |n| Value::Str(&t.subnets[n.subnet].id)),
        "next-hop-az-id" => next.map_or(Value::Null, |n| Value::Str(&t.subnets[n.subnet].az_id)),
        "next-hop-vpc-id" => next.map_or(Value::Null, |n| {
            Value::Str(&t.vpcs[t.subnets[n.subnet].vpc].id)
        }),
        "next-hop-interface-type" => next.map_or(Value::Null, |n| Value::Str(&n.interface_type)),
        // resource-id (regional NAT), encryption-status (controls off), tags: not modelled.
        _ => Value::Null,
    }
}

/// Builds the Arrow batch of `records` in `format` (AWS column names and types).
pub fn to_batch(records: &[FlowRecord], topology: &Topology, format: &LogFormat) -> RecordBatch {
    let version = format.version();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(format.len());
    for spec in format.fields() {
        let values = records
            .iter()
            .map(|r| value(spec.name, r, topology, version));
        let array: ArrayRef = match spec.data_type() {
            arrow_schema::DataType::Int32 => {
                let mut b = Int32Builder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Int(i) => b.append_value(i as i32),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            arrow_schema::DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(records.len());
                for v in values {
                    match v {
                        Value::Int(i) => b.append_value(i),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::with_capacity(records.len(), records.len() * 16);
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Str(s) => b.append_value(s),
                        Value::Int(i) => b.append_value(i.to_string()),
                        Value::Addr(a) => {
                            write!(b, "{a}").expect("writing to memory");
                            b.append_value("");
                        }
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    RecordBatch::try_new(format.schema(), columns).expect("columns built from the format's schema")
}
