//! Why connections are rejected: SPEC's security-group-versus-network-ACL reasoning, automated.
//!
//! Flow logs never say which control rejected a packet, but the shape of the records does:
//!
//! | records at the interface | cause |
//! |---|---|
//! | requests rejected coming in, no reply | `inbound_sg_or_nacl` |
//! | requests accepted coming in, replies rejected going out | `nacl_outbound` |
//! | requests rejected going out | `outbound_sg_or_nacl` |
//! | requests accepted going out, replies rejected coming in | `nacl_inbound_return` |
//!
//! A security group is stateful — it always lets the replies of an allowed request through — so
//! a rejected reply can only be a network ACL's doing, missing the ephemeral port range.
//!
//! A rejected record is a reply when an accepted record with the reverse tuple exists. Which
//! way a record was going at its interface comes from `flow-direction` when the lake has it;
//! otherwise from where else the same packets were seen (accepted at the sender's interface),
//! from which side is on the internet, and last from the interface's own address (the address
//! there with the most peers).

use std::collections::HashMap;

use flowscope_query::{Engine, TimeRange};
use serde::Serialize;

use crate::error::Result;
use crate::rows::{self, Row, int, quote, text};
use crate::scan::SLACK;
use flowscope_record::time::rfc3339;

/// Why a group of records was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Requests rejected on the way in: the interface's security group or its subnet's ACL.
    InboundSgOrNacl,
    /// Requests accepted in, replies rejected out: the subnet's ACL has no outbound rule for
    /// the initiator's ephemeral ports.
    NaclOutbound,
    /// Requests rejected on the way out: the interface's security group or its subnet's ACL.
    OutboundSgOrNacl,
    /// Requests accepted out, replies rejected in: the subnet's ACL has no inbound rule for
    /// the ephemeral ports.
    NaclInboundReturn,
}

impl Cause {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::InboundSgOrNacl => "inbound_sg_or_nacl",
            Self::NaclOutbound => "nacl_outbound",
            Self::OutboundSgOrNacl => "outbound_sg_or_nacl",
            Self::NaclInboundReturn => "nacl_inbound_return",
        }
    }
}

/// One diagnosis: rejections of one (interface, initiator, responder, port).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The interface whose flow log shows the rejections.
    pub interface_id: String,
    /// Who started the connections.
    pub src: String,
    /// Who they were for.
    pub dst: String,
    /// The service port.
    pub dst_port: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// The cause.
    pub cause: Cause,
    /// Rejected records.
    pub records: u64,
    /// Accepted records of the same connections (requests, for the two ACL causes).
    pub accepted: u64,
    /// First rejected record's start (UTC).
    pub first_seen: String,
    /// Last rejected record's end (UTC).
    pub last_seen: String,
    /// The lowest and highest ephemeral port of the rejected replies (ACL causes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_ports: Option<(u16, u16)>,
    /// What the records show, in words.
    pub explanation: String,
    /// The rule change that would let the traffic through, if it is wanted.
    pub fix: String,
}

impl Diagnosis {
    /// Whether these are requests from the internet refused on the way in: the security
    /// groups and network ACLs doing their job, not a misconfiguration to fix. Reports count
    /// them ("refused at the edge") rather than suggest a rule for each.
    pub fn at_edge(&self) -> bool {
        self.cause == Cause::InboundSgOrNacl && !(is_private(&self.src) && is_private(&self.dst))
    }
}

/// Which rejections to explain.
#[derive(Debug, Clone, Default)]
pub struct DiagnoseFilter {
    /// Only connections started by this address.
    pub src: Option<String>,
    /// Only connections to this address.
    pub dst: Option<String>,
    /// Only this service port.
    pub port: Option<u16>,
    /// Records starting in this range.
    pub range: TimeRange,
}

fn reverse_accepted(range: &TimeRange) -> String {
    format!(
        "SELECT 1 FROM flows f WHERE f.action = 'ACCEPT' AND f.srcaddr = r.dstaddr \
         AND f.dstaddr = r.srcaddr AND f.srcport = r.dstport AND f.dstport = r.srcport \
         AND f.protocol = r.protocol{}",
        range.sql("f.", SLACK)
    )
}

/// Explains every group of rejected records that passes `filter`, most records first.
///
/// # Errors
/// [`crate::Error::Query`] when a query fails.
pub async fn diagnose(engine: &Engine, filter: &DiagnoseFilter) -> Result<Vec<Diagnosis>> {
    let range = &filter.range;
    let mut pushdown = String::new();
    // Requests: initiator = srcaddr. Replies: initiator = dstaddr.
    let (req_filter, rep_filter) = {
        let mut req = String::new();
        let mut rep = String::new();
        if let Some(s) = &filter.src {
            req.push_str(&format!(" AND r.srcaddr = {}", quote(s)));
            rep.push_str(&format!(" AND r.dstaddr = {}", quote(s)));
        }
        if let Some(d) = &filter.dst {
            req.push_str(&format!(" AND r.dstaddr = {}", quote(d)));
            rep.push_str(&format!(" AND r.srcaddr = {}", quote(d)));
        }
        if let Some(p) = filter.port {
            req.push_str(&format!(" AND r.dstport = {p}"));
            rep.push_str(&format!(" AND r.srcport = {p}"));
        }
        (req, rep)
    };
    pushdown.push_str(&range.sql("r.", 0));
    let requests = rows::query(
        engine,
        &format!(
            "WITH rr AS (SELECT r.* FROM flows r WHERE r.action = 'REJECT' \
             AND r.log_status = 'OK'{pushdown}{req_filter} AND NOT EXISTS ({})), \
             acc AS (SELECT DISTINCT f.interface_id AS ai, f.srcaddr AS s, f.dstaddr AS d, \
             f.srcport AS sp, f.dstport AS dp FROM flows f WHERE f.action = 'ACCEPT' \
             AND f.srcaddr IN (SELECT DISTINCT srcaddr FROM rr){}) \
             SELECT rr.interface_id, rr.srcaddr, rr.dstaddr, rr.dstport, rr.protocol, \
             count(*) AS records, min(rr.start) AS first_seen, max(rr.\"end\") AS last_seen, \
             max(rr.flow_direction) AS direction, count(acc.ai) AS elsewhere FROM rr \
             LEFT JOIN acc ON acc.s = rr.srcaddr AND acc.d = rr.dstaddr \
             AND acc.sp = rr.srcport AND acc.dp = rr.dstport AND acc.ai <> rr.interface_id \
             GROUP BY rr.interface_id, rr.srcaddr, rr.dstaddr, rr.dstport, rr.protocol",
            reverse_accepted(range),
            range.sql("f.", SLACK)
        ),
    )
    .await?;
    let replies = rows::query(
        engine,
        &format!(
            "SELECT r.interface_id, r.srcaddr, r.dstaddr, r.srcport, r.protocol, \
             count(*) AS records, min(r.start) AS first_seen, max(r.\"end\") AS last_seen, \
             min(r.dstport) AS eph_lo, max(r.dstport) AS eph_hi, \
             max(r.flow_direction) AS direction FROM flows r WHERE r.action = 'REJECT' \
             AND r.log_status = 'OK'{pushdown}{rep_filter} AND EXISTS ({}) \
             GROUP BY r.interface_id, r.srcaddr, r.dstaddr, r.srcport, r.protocol",
            reverse_accepted(range)
        ),
    )
    .await?;
    // Interfaces whose direction cannot be told otherwise: their own addresses.
    let mut unclear: Vec<String> = Vec::new();
    for r in requests.iter().chain(&replies) {
        let (s, d) = (
            text(r, "srcaddr").unwrap_or_default(),
            text(r, "dstaddr").unwrap_or_default(),
        );
        if text(r, "direction").is_none()
            && int(r, "elsewhere") == 0
            && is_private(&s)
            && is_private(&d)
            && let Some(i) = text(r, "interface_id")
            && !unclear.contains(&i)
        {
            unclear.push(i);
        }
    }
    let own = own_addresses(engine, &unclear, range).await?;
    let mut out = Vec::new();
    for r in &requests {
        let eni = text(r, "interface_id").unwrap_or_default();
        let src = text(r, "srcaddr").unwrap_or_default();
        let dst = text(r, "dstaddr").unwrap_or_default();
        let inbound = match text(r, "direction").as_deref() {
            Some("ingress") => true,
            Some("egress") => false,
            _ if int(r, "elsewhere") > 0 => true,
            _ if !is_private(&src) => true,
            _ if !is_private(&dst) => false,
            _ => own.get(&eni).is_none_or(|a| *a != src),
        };
        let cause = if inbound {
            Cause::InboundSgOrNacl
        } else {
            Cause::OutboundSgOrNacl
        };
        out.push(explain(
            r,
            eni,
            src,
            dst,
            int(r, "dstport") as u16,
            cause,
            0,
            None,
        ));
    }
    for r in &replies {
        let eni = text(r, "interface_id").unwrap_or_default();
        let responder = text(r, "srcaddr").unwrap_or_default();
        let initiator = text(r, "dstaddr").unwrap_or_default();
        let port = int(r, "srcport") as u16;
        let leaving = match text(r, "direction").as_deref() {
            Some("egress") => true,
            Some("ingress") => false,
            _ if !is_private(&responder) => false,
            _ if !is_private(&initiator) => true,
            _ => own.get(&eni).is_none_or(|a| *a == responder),
        };
        let cause = if leaving {
            Cause::NaclOutbound
        } else {
            Cause::NaclInboundReturn
        };
        let accepted = rows::query(
            engine,
            &format!(
                "SELECT count(*) AS n FROM flows WHERE interface_id = {} AND srcaddr = {} \
                 AND dstaddr = {} AND dstport = {port} AND action = 'ACCEPT'{}",
                quote(&eni),
                quote(&initiator),
                quote(&responder),
                range.sql("", SLACK)
            ),
        )
        .await?
        .first()
        .map_or(0, |a| int(a, "n") as u64);
        let eph = Some((int(r, "eph_lo") as u16, int(r, "eph_hi") as u16));
        out.push(explain(
            r, eni, initiator, responder, port, cause, accepted, eph,
        ));
    }
    out.sort_by(|a, b| {
        b.records
            .cmp(&a.records)
            .then_with(|| a.interface_id.cmp(&b.interface_id))
            .then_with(|| a.src.cmp(&b.src))
            .then_with(|| a.dst.cmp(&b.dst))
            .then(a.dst_port.cmp(&b.dst_port))
    });
    Ok(out)
}

/// Each interface's own address: the one with the most peers there (private first on ties).
async fn own_addresses(
    engine: &Engine,
    interfaces: &[String],
    range: &TimeRange,
) -> Result<HashMap<String, String>> {
    let mut own = HashMap::new();
    if interfaces.is_empty() {
        return Ok(own);
    }
    let list = interfaces
        .iter()
        .map(|i| quote(i))
        .collect::<Vec<_>>()
        .join(", ");
    let r = range.sql("", 0);
    let rows = rows::query(
        engine,
        &format!(
            "SELECT interface_id, a, count(DISTINCT p) AS peers FROM (\
             SELECT interface_id, srcaddr AS a, dstaddr AS p FROM flows \
             WHERE interface_id IN ({list}){r} UNION ALL \
             SELECT interface_id, dstaddr AS a, srcaddr AS p FROM flows \
             WHERE interface_id IN ({list}){r}) GROUP BY interface_id, a"
        ),
    )
    .await?;
    let mut best: HashMap<String, (i64, bool, String)> = HashMap::new();
    for row in rows {
        let (Some(i), Some(a)) = (text(&row, "interface_id"), text(&row, "a")) else {
            continue;
        };
        let key = (int(&row, "peers"), is_private(&a), a.clone());
        let slot = best.entry(i).or_insert((-1, false, String::new()));
        if (key.0, key.1) > (slot.0, slot.1) {
            *slot = key;
        }
    }
    for (i, (_, _, a)) in best {
        own.insert(i, a);
    }
    Ok(own)
}

fn is_private(addr: &str) -> bool {
    addr.parse()
        .map(flowscope_record::net::is_private)
        .unwrap_or(false)
}

fn proto_name(p: u8) -> String {
    flowscope_record::protocol::rule_name(i64::from(p))
        .map_or_else(|| format!("protocol {p}"), String::from)
}

#[allow(clippy::too_many_arguments)]
fn explain(
    r: &Row,
    eni: String,
    src: String,
    dst: String,
    port: u16,
    cause: Cause,
    accepted: u64,
    eph: Option<(u16, u16)>,
) -> Diagnosis {
    let protocol = int(r, "protocol") as u8;
    let p = proto_name(protocol);
    let records = int(r, "records") as u64;
    let (lo, hi) = eph.unwrap_or((1024, 65535));
    let (explanation, fix) = match cause {
        Cause::InboundSgOrNacl => (
            format!(
                "{records} request(s) from {src} to {dst} port {port}/{p} were rejected as they \
                 arrived at {eni}, and no reply was ever sent. Either the interface's security \
                 groups have no inbound rule allowing {p} {port} from {src}, or the network ACL \
                 of its subnet denies it inbound (a lower-numbered DENY, or no ALLOW before the \
                 final `*` rule). Flow logs cannot tell which; if {src} is in the same subnet, \
                 it is the security group (ACLs only judge traffic crossing the subnet boundary)."
            ),
            format!(
                "If this traffic is wanted: add an inbound security group rule {p} {port} from \
                 {src}/32 (or from the sender's security group) to the groups of {eni}; and if \
                 the sender is outside the subnet, an inbound network ACL ALLOW {p} {port} from \
                 {src}/32 numbered below any DENY that matches it, with an outbound ALLOW {p} \
                 1024-65535 to {src}/32 for the replies. If it is not wanted, the rejection is \
                 doing its job."
            ),
        ),
        Cause::OutboundSgOrNacl => (
            format!(
                "{records} request(s) from {src} to {dst} port {port}/{p} were rejected as they \
                 left {eni}; {dst} never saw them. Either the interface's security groups have \
                 no outbound rule allowing {p} {port} to {dst}, or the subnet's network ACL \
                 denies it outbound."
            ),
            format!(
                "Add an outbound security group rule {p} {port} to {dst}/32 on {eni}; if {dst} \
                 is outside the subnet, also an outbound network ACL ALLOW {p} {port} to \
                 {dst}/32 and an inbound ALLOW {p} 1024-65535 from {dst}/32 for the replies, \
                 each numbered below any DENY that matches."
            ),
        ),
        Cause::NaclOutbound => (
            format!(
                "{accepted} request record(s) from {src} to {dst} port {port}/{p} were accepted \
                 coming in at {eni}, but {records} reply record(s) from port {port} back to \
                 {src}'s ephemeral ports ({lo}-{hi}) were rejected going out. Security groups \
                 are stateful and always let replies out, so this is the network ACL of the \
                 subnet of {eni}: no outbound rule allows {p} to ports {lo}-{hi} at {src}."
            ),
            format!(
                "Add an outbound network ACL rule ALLOW {p} 1024-65535 to {src}/32 (or \
                 0.0.0.0/0) to the subnet's ACL, numbered below any DENY that matches."
            ),
        ),
        Cause::NaclInboundReturn => (
            format!(
                "{accepted} request record(s) from {src} to {dst} port {port}/{p} were accepted \
                 leaving {eni}, but {records} reply record(s) from {dst} port {port} to the \
                 ephemeral ports {lo}-{hi} were rejected coming back in. Security groups let \
                 replies in regardless of their rules, so this is the network ACL of the subnet \
                 of {eni}: no inbound rule allows {p} 1024-65535 from {dst}."
            ),
            format!(
                "Add an inbound network ACL rule ALLOW {p} 1024-65535 from {dst}/32 (or \
                 0.0.0.0/0) to the subnet's ACL, numbered below any DENY that matches."
            ),
        ),
    };
    Diagnosis {
        interface_id: eni,
        src,
        dst,
        dst_port: port,
        protocol,
        cause,
        records,
        accepted,
        first_seen: rfc3339(int(r, "first_seen")),
        last_seen: rfc3339(int(r, "last_seen")),
        ephemeral_ports: eph,
        explanation,
        fix,
    }
}
