//! Exposed sensitive port: a host answering the internet on a port that should not be reachable
//! from it (ATT&CK T1133).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{BuiltIn, Context, Detection, Found, figures, finding, ready, sort_addresses};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::quote;
use crate::scan::{Addr, Gathered, Totals, Wants};
use crate::words::service_name;

/// The detection.
pub(crate) struct ExposedPort;

/// An exposed port's internet sources, totals and interfaces.
type Exposure = (BTreeSet<Addr>, Totals, BTreeSet<u64>);

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    sources: u64,
}

impl Detection for ExposedPort {
    fn wants(&self, t: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            requests_from_internet_to: t.sensitive_ports.clone(),
            ..Wants::default()
        }
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        // Accepted requests from the internet that the host answered (a NAT gateway's
        // interface accepts unsolicited packets it then drops: those get no answer), per
        // (destination, port): sources, totals, interfaces.
        let mut groups: BTreeMap<(Addr, u16), Exposure> = BTreeMap::new();
        for r in pass.requests_from_internet.iter().filter(|r| r.answered) {
            let g = groups.entry((r.dst, r.dstport)).or_default();
            g.0.insert(r.src);
            g.1.add(r.bytes, r.start, r.end);
            g.2.insert(r.interface);
        }
        let mut out = Vec::new();
        for ((dst, port), (srcs, totals, enis)) in groups {
            let dst = pass.names.text(dst);
            let n = srcs.len() as u64;
            let mut srcs: Vec<String> = srcs.iter().map(|s| pass.names.text(*s)).collect();
            sort_addresses(&mut srcs);
            let severity = if n >= cx.thresholds.exposed_sources {
                Severity::Medium
            } else {
                Severity::Low
            };
            let mut f = finding(
                BuiltIn::ExposedSensitivePort,
                severity,
                Technique::new("T1133", "External Remote Services"),
                &totals,
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
            f.evidence.interfaces = pass.interfaces(&enis);
            f.src = (srcs.len() == 1).then(|| srcs[0].clone());
            f.dst = Some(dst);
            f.dst_port = Some(port);
            f.evidence.figures = figures(&Figures { sources: n });
            srcs.truncate(20);
            f.evidence.sources = srcs;
            f.evidence.ports = vec![port];
            out.push(f);
        }
        ready(out)
    }
}
