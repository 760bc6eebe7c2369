//! Vertical port scan: one source refused on many ports of one destination (ATT&CK T1046).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::{BuiltIn, Context, Detection, Found, figures, finding};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::{self, quote, text, texts};
use crate::scan::group::{crowded, group, runs};
use crate::scan::{Gathered, Totals, Wants};

/// The detection.
pub(crate) struct VerticalScan;

/// One (source, destination) refused on enough distinct ports.
struct Scanned {
    src: String,
    dst: String,
    ports: u64,
    totals: Totals,
    interfaces: Vec<String>,
    lo: u16,
    hi: u16,
}

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    refused_ports: u64,
    accepted_ports: Vec<u16>,
}

/// Per (source, destination) refused on at least `min` distinct ports, most ports first.
fn scans(pass: &Gathered, min: u64) -> Vec<Scanned> {
    let mut pairs = crowded(
        std::slice::from_ref(&pass.rejected_requests),
        min,
        |r| group(r.src, r.dst, 0),
        |_| 1,
    );
    pairs.sort_unstable_by_key(|r| (r.src, r.dst, r.dstport));
    let mut found = Vec::new();
    for pair in runs(&pairs, |r| (r.src, r.dst)) {
        let rs = &pairs[pair];
        let ports = runs(rs, |r| r.dstport).len();
        if (ports as u64) < min {
            continue;
        }
        let mut totals = Totals::default();
        let mut interfaces = BTreeSet::new();
        for r in rs {
            totals.add(r.bytes, r.start, r.end);
            interfaces.insert(r.interface);
        }
        found.push(Scanned {
            src: pass.names.text(rs[0].src),
            dst: pass.names.text(rs[0].dst),
            ports: ports as u64,
            totals,
            interfaces: pass.interfaces(&interfaces),
            lo: rs[0].dstport,
            hi: rs[rs.len() - 1].dstport,
        });
    }
    found.sort_by(|a, b| {
        b.ports
            .cmp(&a.ports)
            .then_with(|| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)))
    });
    found
}

impl Detection for VerticalScan {
    fn wants(&self, _: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            rejected_requests: true,
            ..Wants::default()
        }
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        Box::pin(async move {
            let scans = scans(pass, cx.thresholds.vertical_scan_ports);
            // The ports that did answer, for every scan at once.
            let mut answered: HashMap<(String, String), Vec<u16>> = HashMap::new();
            if !scans.is_empty() {
                let srcs = scans
                    .iter()
                    .map(|s| s.src.as_str())
                    .collect::<BTreeSet<_>>()
                    .iter()
                    .map(|a| quote(a))
                    .collect::<Vec<_>>()
                    .join(", ");
                let open = rows::query(
                    cx.engine,
                    &format!(
                        "SELECT srcaddr, dstaddr, array_agg(DISTINCT dstport) AS ports FROM flows \
                         WHERE action = 'ACCEPT' AND srcport >= dstport AND srcaddr IN ({srcs}){} \
                         GROUP BY srcaddr, dstaddr",
                        cx.range.sql("", 0)
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
            for s in scans {
                let open = answered
                    .get(&(s.src.clone(), s.dst.clone()))
                    .cloned()
                    .unwrap_or_default();
                let answered = if open.is_empty() {
                    "none answered".to_string()
                } else {
                    format!(
                        "accepted on {}",
                        open.iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let (src, dst) = (&s.src, &s.dst);
                let mut f = finding(
                    BuiltIn::VerticalPortScan,
                    Severity::Medium,
                    Technique::new("T1046", "Network Service Discovery"),
                    &s.totals,
                    format!(
                        "{src} probed {} ports ({}-{}) of {dst} and was refused; {answered}",
                        s.ports, s.lo, s.hi
                    ),
                    &format!("srcaddr = {} AND dstaddr = {}", quote(src), quote(dst)),
                );
                f.evidence.interfaces = s.interfaces;
                f.evidence.figures = figures(&Figures {
                    refused_ports: s.ports,
                    accepted_ports: open,
                });
                f.evidence.destinations = vec![s.dst.clone()];
                f.src = Some(s.src);
                f.dst = Some(s.dst);
                out.push(f);
            }
            Ok(out)
        })
    }
}
