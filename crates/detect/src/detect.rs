//! The built-in detections and custom rules, run over one lake.
//!
//! The built-in detections share one pass over the lake ([`crate::scan`]) that gathers what each
//! needs; every finding still carries a SQL query over the `flows` table that shows the records
//! behind it. Detections look at who **initiated** a flow:
//! - a rejected record is a request unless the reverse tuple (same addresses and ports, swapped)
//!   was accepted somewhere in the lake — then it is a reply that a stateless network ACL
//!   dropped, and the server that sent it is not scanning anybody. The vertical scan and the
//!   rejected-traffic spike read the rejected requests the pass keeps;
//! - an accepted record is taken as sent by its initiator when its source port is not lower than
//!   its destination port (the client's ephemeral port is above the service port).
//!
//! Traffic leaving through a NAT gateway shows twice: from the instance, and from the gateway's
//! own address at the gateway's interface. A finding whose source turns out to be a NAT gateway
//! (other addresses send it the same destination port at the same time) is folded into the
//! instance's finding, or names the instance when there is none.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use flowscope_query::{Engine, TimeRange};
use futures::StreamExt;
use serde_json::json;

use crate::config::{CustomRule, DetectConfig, Language, Thresholds};
use crate::error::{Error, Result};
use crate::finding::{Evidence, Finding, Severity, Technique, rfc3339};
use crate::intel::ThreatIntel;
use crate::rows::{self, Row, float, int, quote, text, texts};
use crate::scan::{self, Needs, Scan};

/// The ids of the built-in detections.
pub const BUILT_IN: [&str; 9] = [
    "vertical_port_scan",
    "horizontal_sweep",
    "ssh_brute_force",
    "rdp_brute_force",
    "data_exfiltration",
    "beaconing",
    "threat_intel",
    "rejected_spike",
    "exposed_sensitive_port",
];

/// The default flow log format's columns, in order: what evidence samples show.
pub const DEFAULT_COLUMNS: &str = "version, account_id, interface_id, srcaddr, dstaddr, srcport, \
     dstport, protocol, packets, bytes, start, \"end\", action, log_status";

/// Findings that get sample records (the most severe first).
pub const MAX_SAMPLED: usize = 25;

/// What a run found, and how long each step took.
#[derive(Debug, Default)]
pub struct Report {
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Time per step (detection id or step name).
    pub timings: Vec<(String, Duration)>,
    /// Things the user should know (an empty lake, a rule whose columns do not fit).
    pub warnings: Vec<String>,
}

/// Runs detections over one lake.
pub struct Detector<'a> {
    engine: &'a Engine,
    config: DetectConfig,
    intel: ThreatIntel,
    range: TimeRange,
}

impl<'a> Detector<'a> {
    /// A detector over `engine`'s lake for records starting in `range`.
    pub fn new(
        engine: &'a Engine,
        config: DetectConfig,
        intel: ThreatIntel,
        range: TimeRange,
    ) -> Self {
        Self {
            engine,
            config,
            intel,
            range,
        }
    }

    fn enabled(&self, id: &str) -> bool {
        !self.config.disable.iter().any(|d| d == id)
    }

    fn t(&self) -> &Thresholds {
        &self.config.thresholds
    }

    /// Runs every enabled detection and custom rule.
    ///
    /// # Errors
    /// [`Error::Query`] when a query fails (a custom rule's error names the rule).
    pub async fn run(&self) -> Result<Report> {
        let mut report = Report::default();
        let clock = Instant::now();
        let needs = Needs {
            rejected: ["vertical_port_scan", "rejected_spike"]
                .iter()
                .any(|d| self.enabled(d)),
            sweep: self.enabled("horizontal_sweep"),
            brute_ports: [("ssh_brute_force", 22), ("rdp_brute_force", 3389)]
                .iter()
                .filter(|(d, _)| self.enabled(d))
                .map(|(_, p)| *p)
                .collect(),
            exfiltration: self.enabled("data_exfiltration"),
            beaconing: self.enabled("beaconing"),
            intel: self.enabled("threat_intel") && !self.intel.is_empty(),
            exposed: self.enabled("exposed_sensitive_port") && !self.t().sensitive_ports.is_empty(),
        };
        let scan = scan::scan(self.engine, self.range, self.t(), &self.intel, &needs).await?;
        let n = scan.records;
        let (lo, hi) = scan.span.unwrap_or_default();
        report.timings.push(("scan".into(), clock.elapsed()));
        if n == 0 {
            report
                .warnings
                .push("no flow log records with log-status OK in the time range".into());
        }
        let span = (
            self.range.start.unwrap_or(lo),
            self.range.end.unwrap_or(hi.saturating_add(1)),
        );
        let mut found = Vec::new();
        if n > 0 {
            for id in BUILT_IN {
                if !self.enabled(id) {
                    continue;
                }
                let clock = Instant::now();
                let mut f = match id {
                    "vertical_port_scan" => self.vertical_scan(&scan).await?,
                    "horizontal_sweep" => self.horizontal_sweep(&scan),
                    "ssh_brute_force" => self.brute_force(22, &scan),
                    "rdp_brute_force" => self.brute_force(3389, &scan),
                    "data_exfiltration" => self.exfiltration(span, &scan),
                    "beaconing" => self.beaconing(&scan).await?,
                    "threat_intel" => self.threat_intel(&scan),
                    "rejected_spike" => self.rejected_spike(span, &scan),
                    "exposed_sensitive_port" => self.exposed_ports(&scan),
                    _ => Vec::new(),
                };
                if matches!(id, "data_exfiltration" | "beaconing" | "threat_intel") {
                    f = self.fold_nat(f).await?;
                }
                report.timings.push((id.into(), clock.elapsed()));
                found.extend(f);
            }
        }
        for rule in &self.config.rules {
            let clock = Instant::now();
            let f = self
                .custom(rule, &mut report.warnings)
                .await
                .map_err(|e| match e {
                    Error::Query(q) => Error::Invalid(format!("rule `{}`: {q}", rule.id)),
                    other => other,
                })?;
            report.timings.push((rule.id.clone(), clock.elapsed()));
            found.extend(f);
        }
        Finding::sort(&mut found);
        let clock = Instant::now();
        self.add_samples(&mut found).await?;
        report.timings.push(("samples".into(), clock.elapsed()));
        report.findings = found;
        Ok(report)
    }

    async fn vertical_scan(&self, scan: &Scan) -> Result<Vec<Finding>> {
        let scans = scan.vertical_scans();
        // The ports that did answer, for every scan at once.
        let mut answered: HashMap<(String, String), Vec<u16>> = HashMap::new();
        if !scans.is_empty() {
            let srcs = scans
                .iter()
                .filter_map(|r| text(r, "srcaddr"))
                .collect::<BTreeSet<_>>()
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(", ");
            let open = rows::query(
                self.engine,
                &format!(
                    "SELECT srcaddr, dstaddr, array_agg(DISTINCT dstport) AS ports FROM flows \
                     WHERE action = 'ACCEPT' AND srcport >= dstport AND srcaddr IN ({srcs}){} \
                     GROUP BY srcaddr, dstaddr",
                    scan::range_sql(&self.range, "", 0)
                ),
            )
            .await?;
            for o in open {
                let mut ports: Vec<u16> = texts(&o, "ports")
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                ports.sort_unstable();
                ports.truncate(20);
                answered.insert(
                    (
                        text(&o, "srcaddr").unwrap_or_default(),
                        text(&o, "dstaddr").unwrap_or_default(),
                    ),
                    ports,
                );
            }
        }
        let mut out = Vec::new();
        for r in scans {
            let (src, dst) = (text(&r, "srcaddr"), text(&r, "dstaddr"));
            let (Some(src), Some(dst)) = (src, dst) else {
                continue;
            };
            let open = answered
                .get(&(src.clone(), dst.clone()))
                .cloned()
                .unwrap_or_default();
            let ports = int(&r, "ports");
            let answered = if open.is_empty() {
                "none answered".to_string()
            } else {
                format!("accepted on {}", join_ports(&open))
            };
            let mut f = self.finding(
                "vertical_port_scan",
                Severity::Medium,
                Technique::new("T1046", "Network Service Discovery"),
                &r,
                format!(
                    "{src} probed {ports} ports ({}-{}) of {dst} and was refused; {answered}",
                    int(&r, "lo"),
                    int(&r, "hi")
                ),
                &format!("srcaddr = {} AND dstaddr = {}", quote(&src), quote(&dst)),
            );
            f.src = Some(src);
            f.dst = Some(dst.clone());
            f.evidence.destinations = vec![dst];
            f.evidence
                .figures
                .insert("refused_ports".into(), json!(ports));
            f.evidence
                .figures
                .insert("accepted_ports".into(), json!(open));
            out.push(f);
        }
        Ok(out)
    }

    fn horizontal_sweep(&self, scan: &Scan) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in scan.sweep(100) {
            let Some(src) = text(&r, "srcaddr") else {
                continue;
            };
            let (port, protocol) = (int(&r, "dstport"), int(&r, "protocol"));
            let unanswered = int(&r, "unanswered");
            let (hosts, refused) = (int(&r, "hosts"), int(&r, "refused"));
            let mut dests = texts(&r, "destinations");
            sort_addresses(&mut dests);
            let port = port as u16;
            let mut f = self.finding(
                "horizontal_sweep",
                Severity::Medium,
                Technique::new("T1046", "Network Service Discovery"),
                &r,
                format!(
                    "{src} tried port {port}/{} on {hosts} hosts ({}); {unanswered} never answered \
                     or refused ({refused} refused by a security group or network ACL)",
                    proto(protocol),
                    address_span(&dests)
                ),
                &format!(
                    "srcaddr = {} AND dstport = {port} AND protocol = {protocol} \
                     AND srcport > dstport",
                    quote(&src)
                ),
            );
            f.src = Some(src);
            f.dst_port = Some(port);
            f.evidence.figures.insert("hosts".into(), json!(hosts));
            f.evidence
                .figures
                .insert("unanswered_hosts".into(), json!(unanswered));
            f.evidence
                .figures
                .insert("refused_hosts".into(), json!(refused));
            dests.truncate(20);
            f.evidence.destinations = dests;
            f.evidence.ports = vec![port];
            out.push(f);
        }
        out
    }

    fn brute_force(&self, port: u16, scan: &Scan) -> Vec<Finding> {
        let (id, service) = if port == 22 {
            ("ssh_brute_force", "SSH")
        } else {
            ("rdp_brute_force", "RDP")
        };
        // Busy windows only (repeated attempts on the same hosts; one try per host is a
        // sweep), counted per connection, with the destinations and interfaces of each window.
        let (busy, lists) = scan.brute_force(port);
        let mut out = Vec::new();
        for episode in episodes(busy.iter().collect(), "srcaddr") {
            let src = text(episode[0], "srcaddr").unwrap_or_default();
            let agg = Aggregate::of(&episode);
            let attempts: i64 = episode.iter().map(|r| int(r, "attempts")).sum();
            let accepted: i64 = episode.iter().map(|r| int(r, "accepted")).sum();
            let (b0, b1) = (
                int(episode[0], "bucket"),
                int(episode[episode.len() - 1], "bucket"),
            );
            let mut dests = BTreeSet::new();
            let mut enis = BTreeSet::new();
            for (b, d, i) in lists.get(&src).into_iter().flatten() {
                if (b0..=b1).contains(b) {
                    dests.extend(d.iter().cloned());
                    enis.extend(i.iter().cloned());
                }
            }
            let mut dests: Vec<String> = dests.into_iter().collect();
            sort_addresses(&mut dests);
            let severity = if accepted > 0 {
                Severity::High
            } else {
                Severity::Medium
            };
            let minutes = ((agg.last - agg.first) as f64 / 60.0).max(1.0);
            let outcome = if accepted > 0 {
                format!(
                    "{accepted} of them were accepted by the destination — connections got through to the service"
                )
            } else {
                "all were refused".to_string()
            };
            let on = if dests.len() == 1 {
                dests[0].clone()
            } else {
                format!("{} hosts", dests.len())
            };
            let summary = format!(
                "{src} made {attempts} {service} connection attempts to {on} in {minutes:.0} min; {outcome}"
            );
            let mut f = self.finding_from(
                id,
                severity,
                Technique::new("T1110", "Brute Force"),
                &agg,
                summary,
                &format!(
                    "protocol = 6 AND dstport = {port} AND srcport > dstport AND srcaddr = {}",
                    quote(&src)
                ),
            );
            f.src = Some(src);
            f.dst = (dests.len() == 1).then(|| dests[0].clone());
            f.dst_port = Some(port);
            f.evidence
                .figures
                .insert("attempts".into(), json!(attempts));
            f.evidence
                .figures
                .insert("accepted".into(), json!(accepted));
            f.evidence.interfaces = enis.into_iter().collect();
            dests.truncate(20);
            f.evidence.destinations = dests;
            f.evidence.ports = vec![port];
            out.push(f);
        }
        out
    }

    fn exfiltration(&self, span: (i64, i64), scan: &Scan) -> Vec<Finding> {
        let t = self.t();
        let w = t.exfiltration_window.max(1);
        // Every window of the sources with a window over the absolute threshold (seen at one
        // interface at least), for the baseline: never every source's windows.
        let rows = scan.exfiltration();
        if rows.is_empty() {
            return Vec::new();
        }
        // One view of each (source, destination, port, window): the interface that saw most.
        let mut best: HashMap<(String, String, i64, i64), Row> = HashMap::new();
        let mut interfaces: HashMap<(String, String, i64), BTreeSet<String>> = HashMap::new();
        for r in rows {
            let src = text(&r, "srcaddr").unwrap_or_default();
            let dst = text(&r, "dstaddr").unwrap_or_default();
            let (port, bucket) = (int(&r, "dstport"), int(&r, "bucket"));
            interfaces
                .entry((src.clone(), dst.clone(), port))
                .or_default()
                .insert(text(&r, "interface_id").unwrap_or_default());
            let key = (src, dst, port, bucket);
            if best
                .get(&key)
                .is_none_or(|b| int(b, "bytes") < int(&r, "bytes"))
            {
                best.insert(key, r);
            }
        }
        // Each source's outbound volume per window, every window of the range counted.
        let windows = window_count(span, w);
        let mut per_source: HashMap<String, HashMap<i64, i64>> = HashMap::new();
        for ((src, _, _, bucket), r) in &best {
            *per_source
                .entry(src.clone())
                .or_default()
                .entry(*bucket)
                .or_default() += int(r, "bytes");
        }
        let baseline: HashMap<&String, f64> = per_source
            .iter()
            .map(|(src, buckets)| {
                let v: Vec<i64> = buckets.values().copied().collect();
                (src, median_with_empty_windows(v, windows) as f64)
            })
            .collect();
        let mut hot: Vec<&Row> = best
            .iter()
            .filter(|((src, ..), r)| {
                let bytes = int(r, "bytes") as f64;
                let base = baseline.get(src).copied().unwrap_or(0.0);
                bytes >= t.exfiltration_bytes as f64 && bytes >= t.exfiltration_ratio * base
            })
            .map(|(_, r)| r)
            .collect();
        hot.sort_by_key(|r| int(r, "bucket"));
        let mut out = Vec::new();
        for episode in episodes_by(hot, |r| {
            format!(
                "{} {} {}",
                text(r, "srcaddr").unwrap_or_default(),
                text(r, "dstaddr").unwrap_or_default(),
                int(r, "dstport")
            )
        }) {
            let agg = Aggregate::of(&episode);
            let src = text(episode[0], "srcaddr").unwrap_or_default();
            let dst = text(episode[0], "dstaddr").unwrap_or_default();
            let port = int(episode[0], "dstport");
            let base = baseline.get(&src).copied().unwrap_or(0.0);
            let seconds = (agg.last - agg.first).max(1);
            let summary = format!(
                "{src} sent {} to {dst} port {port} in {} ({}/s); its usual outbound volume is {} per {} min",
                human_bytes(agg.bytes),
                human_duration(seconds),
                human_bytes(agg.bytes / seconds as u64),
                human_bytes(base as u64),
                w / 60
            );
            let mut f = self.finding_from(
                "data_exfiltration",
                Severity::High,
                Technique::new("T1048", "Exfiltration Over Alternative Protocol"),
                &agg,
                summary,
                &format!(
                    "action = 'ACCEPT' AND srcaddr = {} AND dstaddr = {} AND dstport = {port}",
                    quote(&src),
                    quote(&dst)
                ),
            );
            f.src = Some(src.clone());
            f.dst = Some(dst.clone());
            f.dst_port = Some(port as u16);
            f.evidence
                .figures
                .insert("baseline_bytes_per_window".into(), json!(base));
            f.evidence.figures.insert("window_seconds".into(), json!(w));
            f.evidence.interfaces = interfaces
                .get(&(src, dst.clone(), port))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            f.evidence.destinations = vec![dst];
            f.evidence.ports = vec![port as u16];
            out.push(f);
        }
        out
    }

    async fn beaconing(&self, scan: &Scan) -> Result<Vec<Finding>> {
        let t = self.t();
        // A connection is one source port; over a long range a beacon's source ports repeat
        // and beats are missed, so the rhythm is judged by the median interval and the share
        // of intervals close to it, not by a standard deviation that one merged connection
        // would ruin.
        let rows = scan.beaconing();
        let mut out = Vec::new();
        for r in rows {
            let median = float(&r, "median_gap");
            let (mean, sd) = (float(&r, "mean_gap"), float(&r, "sd_gap"));
            let bytes = float(&r, "mean_bytes");
            let (regular, gaps) = (int(&r, "regular_gaps"), int(&r, "gaps"));
            if !(median >= t.beacon_min_interval
                && median <= t.beacon_max_interval
                && gaps > 0
                && regular as f64 >= t.beacon_regular_share * gaps as f64
                && bytes <= t.beacon_max_bytes)
            {
                continue;
            }
            let src = text(&r, "srcaddr").unwrap_or_default();
            let dst = text(&r, "dstaddr").unwrap_or_default();
            let port = int(&r, "dstport") as u16;
            let n = int(&r, "connections");
            let mut f = self.finding(
                "beaconing",
                Severity::Medium,
                Technique::new("T1071", "Application Layer Protocol"),
                &r,
                format!(
                    "{src} connected to {dst} port {port} {n} times, every {mean:.0} s ± {sd:.1} s \
                     ({regular} of {gaps} intervals), {bytes:.0} bytes each on average — the \
                     rhythm of a command-and-control beacon"
                ),
                &format!(
                    "action = 'ACCEPT' AND srcaddr = {} AND dstaddr = {} AND dstport = {port}",
                    quote(&src),
                    quote(&dst)
                ),
            );
            f.src = Some(src);
            f.dst = Some(dst.clone());
            f.dst_port = Some(port);
            f.evidence.figures.insert("connections".into(), json!(n));
            f.evidence
                .figures
                .insert("mean_interval_seconds".into(), json!(mean));
            f.evidence
                .figures
                .insert("interval_stddev_seconds".into(), json!(sd));
            f.evidence
                .figures
                .insert("median_interval_seconds".into(), json!(median));
            f.evidence
                .figures
                .insert("regular_intervals".into(), json!(regular));
            f.evidence.figures.insert("intervals".into(), json!(gaps));
            f.evidence.destinations = vec![dst];
            f.evidence.ports = vec![port];
            out.push(f);
        }
        self.fill_interfaces(&mut out).await?;
        Ok(out)
    }

    /// Sets each finding's interfaces from the records between its source, destination and
    /// port in its time span: one pass over the lake for all of them.
    async fn fill_interfaces(&self, findings: &mut [Finding]) -> Result<()> {
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
            self.engine,
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

    fn threat_intel(&self, scan: &Scan) -> Vec<Finding> {
        // Every address was looked up once as the scan met it.
        let bad = scan.listed_addresses();
        if bad.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for r in scan.threat_intel() {
            let src = text(&r, "srcaddr").unwrap_or_default();
            let dst = text(&r, "dstaddr").unwrap_or_default();
            let mut ports: Vec<u16> = texts(&r, "ports")
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect();
            ports.sort_unstable();
            let port_text = match ports.as_slice() {
                [one] => format!("port {one}"),
                [first, .., last] => format!("{} ports ({first}-{last})", ports.len()),
                [] => "no port".into(),
            };
            let outbound = bad.contains_key(&dst);
            let (badaddr, (label, net)) = if outbound {
                (&dst, &bad[&dst])
            } else {
                (&src, &bad[&src])
            };
            let accepted = int(&r, "accepted");
            let severity = match (outbound, accepted > 0) {
                (true, true) => Severity::Critical,
                (false, true) => Severity::High,
                _ => Severity::Low,
            };
            let what = if outbound {
                format!("{src} connected to {dst} {port_text}")
            } else {
                format!("{src} reached {dst} {port_text}")
            };
            let result = if accepted > 0 {
                format!("{accepted} of {} records accepted", int(&r, "records"))
            } else {
                "every record rejected".into()
            };
            let mut f = self.finding(
                "threat_intel",
                severity,
                if outbound {
                    Technique::new("T1071", "Application Layer Protocol")
                } else {
                    Technique::new("T1595", "Active Scanning")
                },
                &r,
                format!("{what}; {badaddr} is listed as known-bad ({label}, {net}); {result}"),
                &format!(
                    "srcaddr = {} AND dstaddr = {} AND srcport >= dstport",
                    quote(&src),
                    quote(&dst)
                ),
            );
            f.src = Some(src);
            f.dst = Some(dst);
            f.dst_port = (ports.len() == 1).then(|| ports[0]);
            f.evidence.figures.insert("list".into(), json!(label));
            f.evidence
                .figures
                .insert("listed_network".into(), json!(net));
            f.evidence
                .figures
                .insert("accepted".into(), json!(accepted));
            ports.truncate(20);
            f.evidence.ports = ports;
            out.push(f);
        }
        out
    }

    fn rejected_spike(&self, span: (i64, i64), scan: &Scan) -> Vec<Finding> {
        let t = self.t();
        let w = t.rejected_spike_window.max(1);
        let rows = scan.rejected_windows(w);
        let windows = window_count(span, w);
        let counts: Vec<i64> = rows.iter().map(|r| int(r, "records")).collect();
        let median = median_with_empty_windows(counts, windows) as f64;
        let hot: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                let n = int(r, "records");
                n as u64 >= t.rejected_spike_records && n as f64 >= t.rejected_spike_ratio * median
            })
            .collect();
        let mut out = Vec::new();
        for episode in episodes(hot, "") {
            let agg = Aggregate::of(&episode);
            let top = scan.top_sources(agg.first, agg.last, 3);
            let leader = top.first().map(|r| (text(r, "srcaddr"), int(r, "n")));
            let peak = episode.iter().map(|r| int(r, "records")).max().unwrap_or(0);
            let mut f = self.finding_from(
                "rejected_spike",
                Severity::Medium,
                Technique::new("T1595", "Active Scanning"),
                &agg,
                format!(
                    "{} rejected requests in {} (peak {peak} per {} min, usually {median:.0}); \
                     most from {}",
                    agg.records,
                    human_duration(agg.last - agg.first),
                    w / 60,
                    leader
                        .as_ref()
                        .and_then(|l| l.0.clone())
                        .unwrap_or_else(|| "-".into())
                ),
                "action = 'REJECT'",
            );
            if let Some((Some(src), n)) = leader
                && n as u64 * 2 > agg.records
            {
                f.src = Some(src);
            }
            f.evidence.sources = top.iter().filter_map(|r| text(r, "srcaddr")).collect();
            f.evidence.interfaces = union(&episode, "interfaces");
            f.evidence
                .figures
                .insert("median_per_window".into(), json!(median));
            f.evidence
                .figures
                .insert("peak_per_window".into(), json!(peak));
            out.push(f);
        }
        out
    }

    fn exposed_ports(&self, scan: &Scan) -> Vec<Finding> {
        let t = self.t();
        // Accepted requests from the internet that the host answered (a NAT gateway's
        // interface accepts unsolicited packets it then drops: those get no answer).
        let mut out = Vec::new();
        for r in scan.exposed() {
            let dst = text(&r, "dstaddr").unwrap_or_default();
            let port = int(&r, "dstport") as u16;
            let n = int(&r, "sources");
            let mut srcs = texts(&r, "srcs");
            sort_addresses(&mut srcs);
            let severity = if n as u64 >= t.exposed_sources {
                Severity::Medium
            } else {
                Severity::Low
            };
            let mut f = self.finding(
                "exposed_sensitive_port",
                severity,
                Technique::new("T1133", "External Remote Services"),
                &r,
                format!(
                    "{dst} answered connections to port {port} ({}) from {n} internet address{}: {}",
                    service_name(port),
                    if n == 1 { "" } else { "es" },
                    srcs.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ),
                &format!(
                    "action = 'ACCEPT' AND dstaddr = {} AND dstport = {port} AND srcport > dstport \
                     AND NOT is_private_ip(srcaddr)",
                    quote(&dst)
                ),
            );
            f.src = (srcs.len() == 1).then(|| srcs[0].clone());
            f.dst = Some(dst);
            f.dst_port = Some(port);
            f.evidence.figures.insert("sources".into(), json!(n));
            srcs.truncate(20);
            f.evidence.sources = srcs;
            f.evidence.ports = vec![port];
            out.push(f);
        }
        out
    }

    /// Folds findings whose source is a NAT gateway into the instances behind it.
    async fn fold_nat(&self, findings: Vec<Finding>) -> Result<Vec<Finding>> {
        // Per finding, the other sources that sent the same destination port at its
        // interfaces at the same time: two queries at a time, answers in finding order.
        let queries: Vec<Option<String>> = findings
            .iter()
            .map(|f| {
                let (Some(src), Some(port)) = (&f.src, f.dst_port) else {
                    return None;
                };
                if f.evidence.interfaces.is_empty() {
                    return None;
                }
                let enis = f
                    .evidence
                    .interfaces
                    .iter()
                    .map(|i| quote(i))
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(format!(
                    "SELECT srcaddr, count(*) AS n FROM flows WHERE interface_id IN ({enis}) \
                     AND dstaddr = {} AND dstport = {port} AND srcaddr <> {} AND start >= {} \
                     AND start <= {} GROUP BY srcaddr ORDER BY n DESC",
                    quote(src),
                    quote(src),
                    f.evidence.start - 120,
                    f.evidence.end + 120
                ))
            })
            .collect();
        let behind: Vec<Vec<String>> = futures::stream::iter(queries)
            .map(|sql| async move {
                let Some(sql) = sql else {
                    return Ok(Vec::new());
                };
                let rows = rows::query(self.engine, &sql).await?;
                Ok::<_, Error>(rows.iter().filter_map(|r| text(r, "srcaddr")).collect())
            })
            .buffered(2)
            .collect::<Vec<Result<Vec<String>>>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut out: Vec<Finding> = Vec::new();
        let mut folded: Vec<(usize, String, String)> = Vec::new();
        for (i, f) in findings.iter().enumerate() {
            if behind[i].is_empty() {
                continue;
            }
            let nat = f.src.clone().unwrap_or_default();
            let twin = findings.iter().position(|g| {
                g.dst == f.dst
                    && g.dst_port == f.dst_port
                    && g.src.as_ref().is_some_and(|s| behind[i].contains(s))
            });
            match twin {
                Some(j) => folded.push((j, nat, f.evidence.interfaces.join(", "))),
                None => {
                    let mut f = f.clone();
                    f.summary = format!(
                        "{} (through NAT gateway {nat} for {})",
                        f.summary,
                        behind[i].join(", ")
                    );
                    f.evidence
                        .figures
                        .insert("nat_gateway".into(), json!(nat.clone()));
                    f.evidence.sources = behind[i].clone();
                    f.src = (behind[i].len() == 1).then(|| behind[i][0].clone());
                    out.push(f);
                }
            }
        }
        for (i, f) in findings.into_iter().enumerate() {
            if !behind[i].is_empty() {
                continue;
            }
            let mut f = f;
            for (j, nat, enis) in &folded {
                if *j == i {
                    f.summary = format!("{}; leaves through NAT gateway {nat}", f.summary);
                    f.evidence
                        .figures
                        .insert("nat_gateway".into(), json!(nat.clone()));
                    for e in enis.split(", ") {
                        if !f.evidence.interfaces.iter().any(|x| x == e) {
                            f.evidence.interfaces.push(e.to_string());
                        }
                    }
                }
            }
            out.push(f);
        }
        Ok(out)
    }

    async fn custom(&self, rule: &CustomRule, warnings: &mut Vec<String>) -> Result<Vec<Finding>> {
        let batches = match rule.language {
            Language::Sql => self.engine.sql(&rule.query).await?.collect().await?,
            Language::Insights => {
                let plan = self.engine.insights(&rule.query, self.range).await?;
                plan.frame.collect().await?
            }
        };
        let rows = rows::to_rows(&batches)?;
        let mut out = Vec::new();
        for r in rows {
            let passes = rule.thresholds.iter().all(|(col, min)| {
                if !r.contains_key(col) {
                    return false;
                }
                float(&r, col) >= *min
            });
            if let Some(missing) = rule.thresholds.keys().find(|c| !r.contains_key(*c)) {
                let w = format!(
                    "rule `{}`: its query has no column `{missing}` named in thresholds",
                    rule.id
                );
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            if !passes {
                continue;
            }
            let pick = |names: &[&str]| names.iter().find_map(|n| text(&r, n));
            let first = pick(&["first_seen", "start"])
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let last = pick(&["last_seen", "end"])
                .and_then(|s| s.parse().ok())
                .unwrap_or(first);
            let summary = fill(&rule.summary, &r);
            out.push(Finding {
                detection: rule.id.clone(),
                severity: rule.severity,
                technique: rule.technique.as_ref().map(|t| Technique {
                    id: t.clone(),
                    name: String::new(),
                }),
                src: pick(&["srcaddr", "src"]),
                dst: pick(&["dstaddr", "dst"]),
                dst_port: pick(&["dstport", "dst_port"]).and_then(|p| p.parse().ok()),
                first_seen: rfc3339(first),
                last_seen: rfc3339(last),
                records: pick(&["records"]).and_then(|v| v.parse().ok()).unwrap_or(0),
                bytes: pick(&["bytes"]).and_then(|v| v.parse().ok()).unwrap_or(0),
                summary,
                evidence: Evidence {
                    start: first,
                    end: last,
                    figures: r.clone(),
                    sql: rule.query.clone(),
                    ..Evidence::default()
                },
            });
        }
        Ok(out)
    }

    async fn add_samples(&self, findings: &mut [Finding]) -> Result<()> {
        let n = self.t().samples;
        if n == 0 {
            return Ok(());
        }
        // The most severe findings get samples, a few at a time. A finding can span a day of
        // records while a sample is its first few: each query first reads only the first hour
        // of the finding (the lake is partitioned by hour) and the rest only when that hour
        // holds too few.
        let jobs: Vec<(usize, String, i64, i64)> = findings
            .iter()
            .enumerate()
            .take(MAX_SAMPLED)
            .filter(|(_, f)| BUILT_IN.contains(&f.detection.as_str()))
            .map(|(i, f)| (i, f.evidence.sql.clone(), f.evidence.start, f.evidence.end))
            .collect();
        let mut answers = futures::stream::iter(jobs)
            .map(|(i, sql, first, last)| async move {
                let split = first.saturating_add(3600);
                let part = |filter: String, limit: usize| {
                    format!(
                        "SELECT * FROM ({sql}) AS records WHERE {filter} \
                         ORDER BY start, interface_id LIMIT {limit}"
                    )
                };
                let mut rows =
                    rows::query(self.engine, &part(format!("start < {split}"), n)).await?;
                if rows.len() < n && last >= split {
                    let more = part(format!("start >= {split}"), n - rows.len());
                    rows.extend(rows::query(self.engine, &more).await?);
                }
                Ok::<_, Error>((i, rows))
            })
            .buffer_unordered(2);
        while let Some(answer) = answers.next().await {
            let (i, rows) = answer?;
            findings[i].evidence.sample = rows.iter().map(default_line).collect();
        }
        Ok(())
    }

    fn finding(
        &self,
        id: &str,
        severity: Severity,
        technique: Technique,
        row: &Row,
        summary: String,
        condition: &str,
    ) -> Finding {
        let mut f = self.finding_from(
            id,
            severity,
            technique,
            &Aggregate::of(&[row]),
            summary,
            condition,
        );
        f.evidence.interfaces = texts(row, "interfaces");
        f
    }

    fn finding_from(
        &self,
        id: &str,
        severity: Severity,
        technique: Technique,
        agg: &Aggregate,
        summary: String,
        condition: &str,
    ) -> Finding {
        Finding {
            detection: id.into(),
            severity,
            technique: Some(technique),
            src: None,
            dst: None,
            dst_port: None,
            first_seen: rfc3339(agg.first),
            last_seen: rfc3339(agg.last),
            records: agg.records,
            bytes: agg.bytes,
            summary,
            evidence: Evidence {
                start: agg.first,
                end: agg.last,
                sql: records_sql(condition, agg.first, agg.last),
                ..Evidence::default()
            },
        }
    }
}

/// The records behind a finding, in time order.
pub fn records_sql(condition: &str, first: i64, last: i64) -> String {
    format!(
        "SELECT {DEFAULT_COLUMNS} FROM flows WHERE {condition} AND start >= {first} \
         AND start <= {last} ORDER BY start, interface_id"
    )
}

/// Totals over rows carrying `records`, `bytes`, `first_seen`, `last_seen`.
struct Aggregate {
    records: u64,
    bytes: u64,
    first: i64,
    last: i64,
}

impl Aggregate {
    fn of(rows: &[&Row]) -> Self {
        Self {
            records: rows.iter().map(|r| int(r, "records") as u64).sum(),
            bytes: rows.iter().map(|r| int(r, "bytes") as u64).sum(),
            first: rows.iter().map(|r| int(r, "first_seen")).min().unwrap_or(0),
            last: rows.iter().map(|r| int(r, "last_seen")).max().unwrap_or(0),
        }
    }
}

/// Groups rows by `key` (a column; `""` for one group) into runs of adjacent `bucket`s.
/// The windows of `width` seconds in `span`, at least one — as a count, never materialised: a
/// record dated at the end of time must not size an allocation.
fn window_count(span: (i64, i64), width: i64) -> u64 {
    let seconds = i128::from(span.1) - i128::from(span.0);
    let windows = (seconds / i128::from(width.max(1))).max(1) + 1;
    u64::try_from(windows).unwrap_or(u64::MAX)
}

/// The median of `values` (the non-empty windows, each at least 0) together with the empty
/// windows that make them up to `windows` in all, each counting 0.
fn median_with_empty_windows(mut values: Vec<i64>, windows: u64) -> i64 {
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

fn episodes<'r>(rows: Vec<&'r Row>, key: &str) -> Vec<Vec<&'r Row>> {
    episodes_by(rows, |r| {
        if key.is_empty() {
            String::new()
        } else {
            text(r, key).unwrap_or_default()
        }
    })
}

fn episodes_by(rows: Vec<&Row>, key: impl Fn(&Row) -> String) -> Vec<Vec<&Row>> {
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry(key(r)).or_default().push(r);
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.sort_by_key(|r| int(r, "bucket"));
        let mut run: Vec<&Row> = Vec::new();
        for r in g {
            if let Some(last) = run.last()
                && int(r, "bucket") > int(last, "bucket") + 1
            {
                out.push(std::mem::take(&mut run));
            }
            run.push(r);
        }
        if !run.is_empty() {
            out.push(run);
        }
    }
    out
}

fn union(rows: &[&Row], column: &str) -> Vec<String> {
    let set: BTreeSet<String> = rows.iter().flat_map(|r| texts(r, column)).collect();
    set.into_iter().collect()
}

fn sort_addresses(list: &mut [String]) {
    list.sort_by_key(|a| (a.parse::<IpAddr>().ok(), a.clone()));
}

fn address_span(sorted: &[String]) -> String {
    match sorted {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} to {last}"),
    }
}

fn join_ports(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn proto(n: i64) -> String {
    flowscope_record::protocol::rule_name(n).map_or_else(|| n.to_string(), str::to_ascii_lowercase)
}

/// The usual service on a port, for summaries.
pub fn service_name(port: u16) -> &'static str {
    match port {
        22 => "SSH",
        23 => "Telnet",
        445 => "SMB",
        1433 => "SQL Server",
        1521 => "Oracle",
        2375 => "Docker API",
        3306 => "MySQL",
        3389 => "RDP",
        5432 => "PostgreSQL",
        5900 => "VNC",
        6379 => "Redis",
        9200 => "Elasticsearch",
        11211 => "Memcached",
        27017 => "MongoDB",
        _ => "service",
    }
}

/// Bytes for people: `432.0 MB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds for people: `12 min`, `45 s`, `2.5 h`.
pub fn human_duration(s: i64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7_200 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{:.1} h", s as f64 / 3_600.0)
    }
}

/// A row of the default columns as a flow log line (`-` for null).
fn default_line(row: &Row) -> String {
    [
        "version",
        "account_id",
        "interface_id",
        "srcaddr",
        "dstaddr",
        "srcport",
        "dstport",
        "protocol",
        "packets",
        "bytes",
        "start",
        "end",
        "action",
        "log_status",
    ]
    .iter()
    .map(|c| text(row, c).unwrap_or_else(|| "-".into()))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Replaces `{column}` in a template with the row's values.
fn fill(template: &str, row: &Row) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match text(row, name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: serde_json::Value) -> Row {
        v.as_object().unwrap().clone()
    }

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
    fn templates_episodes_and_units() {
        let r = row(json!({"srcaddr": "10.0.0.1", "records": 12}));
        assert_eq!(
            fill("{srcaddr} x{records} {nope}", &r),
            "10.0.0.1 x12 {nope}"
        );
        let rows = [
            row(json!({"k": "a", "bucket": 1})),
            row(json!({"k": "a", "bucket": 2})),
            row(json!({"k": "a", "bucket": 5})),
            row(json!({"k": "b", "bucket": 2})),
        ];
        let e = episodes(rows.iter().collect(), "k");
        let sizes: Vec<usize> = e.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1]);
        assert_eq!(human_bytes(432_000_000), "432.0 MB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_duration(720), "12 min");
        let mut a = vec!["10.0.20.10".to_string(), "10.0.20.9".into()];
        sort_addresses(&mut a);
        assert_eq!(address_span(&a), "10.0.20.9 to 10.0.20.10");
    }
}
