//! Threat intel: traffic with an address on a threat-intel list (ATT&CK T1071 outbound, T1595
//! inbound).

use serde::Serialize;

use super::{BuiltIn, Context, Detection, Found, figures, finding, ready};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::quote;
use crate::scan::{Gathered, Wants};

/// The detection.
pub(crate) struct Listed;

/// The figures of a finding.
#[derive(Serialize)]
struct Figures<'a> {
    list: &'a str,
    listed_network: &'a str,
    accepted: u64,
}

impl Detection for Listed {
    fn wants(&self, _: &Thresholds, intel: &ThreatIntel) -> Wants {
        Wants {
            listed: !intel.is_empty(),
            ..Wants::default()
        }
    }

    fn behind_nat(&self) -> bool {
        true
    }

    fn find<'a>(&'a self, pass: &'a Gathered, _: &'a Context<'a>) -> Found<'a> {
        // Every address was looked up once as the pass met it.
        let bad = &pass.listed_addresses;
        let mut out = Vec::new();
        if bad.is_empty() {
            return ready(out);
        }
        for ((src, dst), l) in &pass.listed {
            let (src, dst) = (pass.names.text(*src), pass.names.text(*dst));
            let mut ports: Vec<u16> = l.ports.iter().copied().collect();
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
            let accepted = l.accepted;
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
                format!("{accepted} of {} records accepted", l.totals.records)
            } else {
                "every record rejected".into()
            };
            let mut f = finding(
                BuiltIn::ThreatIntel,
                severity,
                if outbound {
                    Technique::new("T1071", "Application Layer Protocol")
                } else {
                    Technique::new("T1595", "Active Scanning")
                },
                &l.totals,
                format!("{what}; {badaddr} is listed as known-bad ({label}, {net}); {result}"),
                &format!(
                    "srcaddr = {} AND dstaddr = {} AND srcport >= dstport",
                    quote(&src),
                    quote(&dst)
                ),
            );
            f.evidence.interfaces = pass.interfaces(&l.interfaces);
            f.evidence.figures = figures(&Figures {
                list: label,
                listed_network: net,
                accepted,
            });
            f.src = Some(src);
            f.dst = Some(dst);
            f.dst_port = (ports.len() == 1).then(|| ports[0]);
            ports.truncate(20);
            f.evidence.ports = ports;
            out.push(f);
        }
        ready(out)
    }
}
