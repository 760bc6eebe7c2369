//! The built-in detections, one module each.
//!
//! Each implements [`Detection`]: which kinds of records it reads from the shared pass
//! ([`Wants`]), and how it turns them into findings with typed figures. [`BuiltIn`] names them;
//! the pass and the [`crate::Detector`] drive them without knowing any by name. Adding a
//! detection is adding a module here and an arm to [`BuiltIn`].
//!
//! Detections look at who **initiated** a flow:
//! - a rejected record is a request unless the reverse tuple (same addresses and ports, swapped)
//!   was accepted somewhere in the lake — then it is a reply that a stateless network ACL
//!   dropped, and the server that sent it is not scanning anybody;
//! - an accepted record is taken as sent by its initiator when its source port is not lower than
//!   its destination port (the client's ephemeral port is above the service port).

mod beaconing;
mod brute_force;
mod exfiltration;
mod exposed_port;
mod horizontal_sweep;
mod rejected_spike;
mod threat_intel;
mod vertical_scan;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use flowscope_query::{Engine, TimeRange};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::config::Thresholds;
use crate::error::Result;
use crate::finding::{Evidence, Finding, Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::{self, int, quote, texts};
use crate::scan::{Gathered, Totals, Wants};
use flowscope_record::time::rfc3339;

/// A built-in detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BuiltIn {
    /// One source refused on many ports of one destination.
    VerticalPortScan,
    /// One source trying one port on many hosts that never answer or refuse.
    HorizontalSweep,
    /// Repeated SSH connection attempts.
    SshBruteForce,
    /// Repeated RDP connection attempts.
    RdpBruteForce,
    /// Outbound volume far above the source's usual.
    DataExfiltration,
    /// Connections to one internet address at a steady rhythm.
    Beaconing,
    /// Traffic with an address on a threat-intel list.
    ThreatIntel,
    /// Many more rejected requests than usual.
    RejectedSpike,
    /// A sensitive port answering the internet.
    ExposedSensitivePort,
}

impl BuiltIn {
    /// Every built-in detection, in the order they run.
    pub const ALL: [BuiltIn; 9] = [
        Self::VerticalPortScan,
        Self::HorizontalSweep,
        Self::SshBruteForce,
        Self::RdpBruteForce,
        Self::DataExfiltration,
        Self::Beaconing,
        Self::ThreatIntel,
        Self::RejectedSpike,
        Self::ExposedSensitivePort,
    ];

    /// The stable id, used in findings and in a rules file's `disable`.
    pub fn id(self) -> &'static str {
        match self {
            Self::VerticalPortScan => "vertical_port_scan",
            Self::HorizontalSweep => "horizontal_sweep",
            Self::SshBruteForce => "ssh_brute_force",
            Self::RdpBruteForce => "rdp_brute_force",
            Self::DataExfiltration => "data_exfiltration",
            Self::Beaconing => "beaconing",
            Self::ThreatIntel => "threat_intel",
            Self::RejectedSpike => "rejected_spike",
            Self::ExposedSensitivePort => "exposed_sensitive_port",
        }
    }

    /// The detection itself.
    pub(crate) fn detection(self) -> &'static dyn Detection {
        match self {
            Self::VerticalPortScan => &vertical_scan::VerticalScan,
            Self::HorizontalSweep => &horizontal_sweep::HorizontalSweep,
            Self::SshBruteForce => &brute_force::SSH,
            Self::RdpBruteForce => &brute_force::RDP,
            Self::DataExfiltration => &exfiltration::Exfiltration,
            Self::Beaconing => &beaconing::Beaconing,
            Self::ThreatIntel => &threat_intel::Listed,
            Self::RejectedSpike => &rejected_spike::RejectedSpike,
            Self::ExposedSensitivePort => &exposed_port::ExposedPort,
        }
    }

    /// The detection with this id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.id() == id)
    }
}

impl fmt::Display for BuiltIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// What a detection reads besides the pass.
pub(crate) struct Context<'a> {
    /// The lake, for the few queries a detection makes.
    pub engine: &'a Engine,
    /// The time range of the run.
    pub range: TimeRange,
    /// The thresholds.
    pub thresholds: &'a Thresholds,
    /// The span that windows are counted over: the range, or the records' own span where it
    /// is open.
    pub span: (i64, i64),
}

/// What [`Detection::find`] returns: its findings, when they are ready.
pub(crate) type Found<'a> = BoxFuture<'a, Result<Vec<Finding>>>;

/// Findings that are ready now, as [`Detection::find`] returns them.
pub(crate) fn ready<'a>(findings: Vec<Finding>) -> Found<'a> {
    Box::pin(std::future::ready(Ok(findings)))
}

/// One built-in detection.
pub(crate) trait Detection: Sync {
    /// The kinds of records it reads from the shared pass (nothing: it has nothing to do).
    fn wants(&self, thresholds: &Thresholds, intel: &ThreatIntel) -> Wants;

    /// Whether a finding whose source is a NAT gateway is folded into the instances behind it.
    fn behind_nat(&self) -> bool {
        false
    }

    /// Its findings from what the pass kept.
    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a>;
}

/// A finding of `id` over records with `totals`, its evidence query selecting `condition`.
pub(crate) fn finding(
    id: BuiltIn,
    severity: Severity,
    technique: Technique,
    totals: &Totals,
    summary: String,
    condition: &str,
) -> Finding {
    Finding {
        detection: id.id().into(),
        severity,
        technique: Some(technique),
        src: None,
        dst: None,
        dst_port: None,
        first_seen: rfc3339(totals.first),
        last_seen: rfc3339(totals.last),
        records: totals.records,
        bytes: totals.bytes,
        summary,
        evidence: Evidence {
            start: totals.first,
            end: totals.last,
            sql: crate::finding::records_sql(condition, totals.first, totals.last),
            ..Evidence::default()
        },
    }
}

/// Sets each finding's interfaces from the records between its source, destination and
/// port in its time span: one pass over the lake for all of them.
pub(crate) async fn fill_interfaces(cx: &Context<'_>, findings: &mut [Finding]) -> Result<()> {
    if findings.is_empty() {
        return Ok(());
    }
    let conds: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "(srcaddr = {} AND dstaddr = {} AND dstport = {} AND start >= {} \
                 AND start <= {})",
                quote(f.src.as_deref().unwrap_or("")),
                quote(f.dst.as_deref().unwrap_or("")),
                f.dst_port.unwrap_or(0),
                f.evidence.start,
                f.evidence.end
            )
        })
        .collect();
    let case = conds
        .iter()
        .enumerate()
        .map(|(i, c)| format!("WHEN {c} THEN {i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let rows = rows::query(
        cx.engine,
        &format!(
            "SELECT k, array_agg(DISTINCT interface_id) AS interfaces FROM (SELECT CASE \
             {case} END AS k, interface_id FROM flows WHERE {}) GROUP BY k",
            conds.join(" OR ")
        ),
    )
    .await?;
    for r in rows {
        if let Some(f) = findings.get_mut(int(&r, "k") as usize) {
            f.evidence.interfaces = texts(&r, "interfaces");
        }
    }
    Ok(())
}

/// A detection's figures as the finding's JSON object.
pub(crate) fn figures(typed: &impl Serialize) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(typed) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// The totals of several groups.
pub(crate) fn sum<'a>(parts: impl IntoIterator<Item = &'a Totals>) -> Totals {
    let mut all = Totals::default();
    for t in parts {
        all.merge(t);
    }
    all
}

/// Groups `items` by `key` into runs of adjacent windows (`bucket`), each run in window order;
/// groups in key order.
pub(crate) fn episodes<T, K: Ord>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    bucket: impl Fn(&T) -> i64,
) -> Vec<Vec<T>> {
    let mut groups: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for item in items {
        groups.entry(key(&item)).or_default().push(item);
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.sort_by_key(&bucket);
        let mut run: Vec<T> = Vec::new();
        for item in g {
            if let Some(last) = run.last()
                && bucket(&item) > bucket(last) + 1
            {
                out.push(std::mem::take(&mut run));
            }
            run.push(item);
        }
        if !run.is_empty() {
            out.push(run);
        }
    }
    out
}

/// The windows of `width` seconds in `span`, at least one — as a count, never materialised: a
/// record dated at the end of time must not size an allocation.
pub(crate) fn window_count(span: (i64, i64), width: i64) -> u64 {
    let seconds = i128::from(span.1) - i128::from(span.0);
    let windows = (seconds / i128::from(width.max(1))).max(1) + 1;
    u64::try_from(windows).unwrap_or(u64::MAX)
}

/// The median of `values` (the non-empty windows, each at least 0) together with the empty
/// windows that make them up to `windows` in all, each counting 0.
pub(crate) fn median_with_empty_windows(mut values: Vec<i64>, windows: u64) -> i64 {
    values.sort_unstable();
    let total = windows.max(values.len() as u64);
    let empty = total - values.len() as u64;
    let middle = total / 2;
    if middle < empty {
        0
    } else {
        values[(middle - empty) as usize]
    }
}

/// Sorts addresses as addresses (texts that are not, after them, as text).
pub(crate) fn sort_addresses(list: &mut [String]) {
    list.sort_by_key(|a| (a.parse::<IpAddr>().ok(), a.clone()));
}

/// `first to last` of sorted addresses.
pub(crate) fn address_span(sorted: &[String]) -> String {
    match sorted {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} to {last}"),
    }
}

/// A protocol number's name in lowercase (`tcp`), or the number.
pub(crate) fn protocol_name(n: u8) -> String {
    flowscope_record::protocol::rule_name(i64::from(n))
        .map_or_else(|| n.to_string(), str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_count_empty_windows_without_making_them() {
        // Same as sorting the values padded with zeros to `windows`.
        for (values, windows) in [
            (vec![5, 1, 9], 3),
            (vec![5, 1, 9], 4),
            (vec![5, 1, 9], 7),
            (vec![7], 1),
            (vec![4, 4, 8, 1], 2),
        ] {
            let mut padded = values.clone();
            padded.resize((windows as usize).max(values.len()), 0);
            padded.sort_unstable();
            assert_eq!(
                median_with_empty_windows(values, windows),
                padded[padded.len() / 2]
            );
        }
        // A span from the epoch to the end of time: counted, not allocated.
        let windows = window_count((0, i64::MAX), 60);
        assert_eq!(windows, (i64::MAX / 60) as u64 + 1);
        assert_eq!(median_with_empty_windows(vec![1 << 40; 3], windows), 0);
        assert_eq!(window_count((i64::MIN, i64::MAX), 1), u64::MAX);
    }

    #[test]
    fn episodes_split_at_gaps_per_key() {
        let items = vec![("a", 1), ("b", 5), ("a", 2), ("a", 4), ("b", 6)];
        let runs = episodes(items, |i| i.0, |i| i.1);
        let shape: Vec<Vec<i64>> = runs
            .iter()
            .map(|r| r.iter().map(|i| i.1).collect())
            .collect();
        assert_eq!(shape, vec![vec![1, 2], vec![4], vec![5, 6]]);
        let mut a = vec!["10.0.20.10".to_string(), "10.0.20.9".into()];
        sort_addresses(&mut a);
        assert_eq!(address_span(&a), "10.0.20.9 to 10.0.20.10");
    }

    #[test]
    fn ids_round_trip_and_every_detection_has_one_module() {
        for b in BuiltIn::ALL {
            assert_eq!(BuiltIn::from_id(b.id()), Some(b));
            assert_eq!(b.to_string(), b.id());
        }
        assert_eq!(BuiltIn::from_id("port_scan"), None);
        let ids: std::collections::BTreeSet<&str> = BuiltIn::ALL.iter().map(|b| b.id()).collect();
        assert_eq!(ids.len(), BuiltIn::ALL.len());
    }
}
