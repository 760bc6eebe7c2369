//! Horizontal sweep: one source trying one port on many hosts that never answer or refuse
//! (ATT&CK T1046).

use serde::Serialize;

use super::{
    BuiltIn, Context, Detection, Found, address_span, figures, finding, protocol_name, ready,
    sort_addresses,
};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::quote;
use crate::scan::group::{both, runs};
use crate::scan::{Addr, Gathered, Totals, Wants};

/// The detection.
pub(crate) struct HorizontalSweep;

/// Sweeps reported, most unanswered first.
const LIMIT: usize = 100;

/// One (initiator, port, protocol) with enough hosts that never answered or refused.
struct Sweep {
    src: Addr,
    port: u16,
    protocol: u8,
    totals: Totals,
    hosts: u64,
    unanswered: u64,
    refused: u64,
    destinations: Vec<Addr>,
}

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    hosts: u64,
    unanswered_hosts: u64,
    refused_hosts: u64,
}

/// The sweeps with at least `min_hosts` hosts that never answered or refused, most unanswered
/// first, at most `limit`, with their initiators' texts.
fn sweeps(pass: &Gathered, min_hosts: u64, limit: usize) -> Vec<(String, Sweep)> {
    // Each half holds whole groups, each sorted by (initiator, port, protocol, host): a run is
    // a group, a run within it a host. Only groups with enough requests can have enough hosts.
    let [mut found, other] = both(|half| {
        let requests = &pass.requests[half];
        let mut out = Vec::new();
        for group in runs(requests, |r| (r.src, r.dstport, r.protocol)) {
            if (group.len() as u64) < min_hosts {
                continue;
            }
            let rs = &requests[group];
            let mut sweep = Sweep {
                src: rs[0].src,
                port: rs[0].dstport,
                protocol: rs[0].protocol,
                totals: Totals::default(),
                hosts: 0,
                unanswered: 0,
                refused: 0,
                destinations: Vec::new(),
            };
            for host in runs(rs, |r| r.dst) {
                let (mut refused, mut unanswered) = (false, false);
                for r in &rs[host.clone()] {
                    sweep.totals.add(r.bytes, r.start, r.end);
                    refused |= r.rejected;
                    unanswered = unanswered || r.rejected || !r.answered;
                }
                sweep.hosts += 1;
                sweep.refused += u64::from(refused);
                if unanswered {
                    sweep.unanswered += 1;
                    sweep.destinations.push(rs[host.start].dst);
                }
            }
            if sweep.unanswered >= min_hosts {
                out.push(sweep);
            }
        }
        out
    });
    found.extend(other);
    let mut found: Vec<(String, Sweep)> = found
        .into_iter()
        .map(|f| (pass.names.text(f.src), f))
        .collect();
    found.sort_by(|a, b| {
        b.1.unanswered
            .cmp(&a.1.unanswered)
            .then_with(|| a.0.cmp(&b.0))
            .then_with(|| (a.1.port, a.1.protocol).cmp(&(b.1.port, b.1.protocol)))
    });
    found.truncate(limit);
    found
}

impl Detection for HorizontalSweep {
    fn wants(&self, _: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            requests: true,
            ..Wants::default()
        }
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        let mut out = Vec::new();
        for (src, s) in sweeps(pass, cx.thresholds.horizontal_sweep_hosts, LIMIT) {
            let (port, protocol) = (s.port, s.protocol);
            let mut dests: Vec<String> =
                s.destinations.iter().map(|d| pass.names.text(*d)).collect();
            sort_addresses(&mut dests);
            let mut f = finding(
                BuiltIn::HorizontalSweep,
                Severity::Medium,
                Technique::new("T1046", "Network Service Discovery"),
                &s.totals,
                format!(
                    "{src} tried port {port}/{} on {} hosts ({}); {} never answered or refused \
                     ({} refused by a security group or network ACL)",
                    protocol_name(protocol),
                    s.hosts,
                    address_span(&dests),
                    s.unanswered,
                    s.refused
                ),
                &format!(
                    "srcaddr = {} AND dstport = {port} AND protocol = {protocol} \
                     AND srcport > dstport",
                    quote(&src)
                ),
            );
            f.src = Some(src);
            f.dst_port = Some(port);
            f.evidence.figures = figures(&Figures {
                hosts: s.hosts,
                unanswered_hosts: s.unanswered,
                refused_hosts: s.refused,
            });
            dests.truncate(20);
            f.evidence.destinations = dests;
            f.evidence.ports = vec![port];
            out.push(f);
        }
        ready(out)
    }
}
