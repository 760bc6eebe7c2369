//! SSH and RDP brute force: one source making many connection attempts to one service in a
//! window (ATT&CK T1110). One module, two detections: [`SSH`] and [`RDP`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    BuiltIn, Context, Detection, Found, episodes, figures, finding, ready, sort_addresses, sum,
};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::quote;
use crate::scan::group::{both, crowded, group, runs};
use crate::scan::{Addr, Gathered, Map, Rec, Totals, Wants};

/// Brute force on one service's port.
pub(crate) struct BruteForce {
    id: BuiltIn,
    port: u16,
    service: &'static str,
}

/// SSH brute force (port 22).
pub(crate) const SSH: BruteForce = BruteForce {
    id: BuiltIn::SshBruteForce,
    port: 22,
    service: "SSH",
};

/// RDP brute force (port 3389).
pub(crate) const RDP: BruteForce = BruteForce {
    id: BuiltIn::RdpBruteForce,
    port: 3389,
    service: "RDP",
};

/// One busy window of one source.
struct Busy {
    src: String,
    bucket: i64,
    attempts: u64,
    accepted: u64,
    totals: Totals,
}

/// One window of a source: its number, the destinations and the interfaces seen in it.
type WindowLists = (i64, Vec<String>, Vec<String>);

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    attempts: u64,
    accepted: u64,
}

impl BruteForce {
    /// Busy windows (of the threshold's seconds) per source with at least the threshold's
    /// number of connections, three or more per host, and per busy source the destinations and
    /// interfaces of each window.
    fn busy(
        &self,
        pass: &Gathered,
        t: &Thresholds,
    ) -> (Vec<Busy>, BTreeMap<String, Vec<WindowLists>>) {
        // Only the sources that may reach the threshold are kept and sorted.
        let to_port: Vec<Vec<Rec>> = pass
            .tcp_requests
            .iter()
            .map(|part| {
                part.iter()
                    .filter(|r| r.dstport == self.port)
                    .copied()
                    .collect()
            })
            .collect();
        let kept = crowded(
            &to_port,
            t.brute_force_attempts,
            |r| group(r.src, u64::from(r.dstport), 0),
            |_| 1,
        );
        drop(to_port);
        // Two halves by source, side by side.
        let [(mut rows, mut lists), (more_rows, more_lists)] = both(|half| {
            let attempts: Vec<Rec> = kept
                .iter()
                .filter(|r| (r.src % 2) as usize == half)
                .copied()
                .collect();
            busy_of(pass, t, attempts)
        });
        rows.extend(more_rows);
        lists.extend(more_lists);
        (rows, lists)
    }
}

/// [`BruteForce::busy`] over the attempts of some sources.
fn busy_of(
    pass: &Gathered,
    t: &Thresholds,
    mut attempts_to_port: Vec<Rec>,
) -> (Vec<Busy>, BTreeMap<String, Vec<WindowLists>>) {
    let w = t.brute_force_window.max(1);
    let attempts = t.brute_force_attempts;
    // Connections (source, destination, ephemeral port), sorted by source, window of their
    // first record and destination: a run is a host in a window, a run of those a window.
    attempts_to_port.sort_unstable_by_key(|r| (r.src, r.dst, r.srcport));
    let mut conns: Vec<(Addr, i64, Addr, Totals, bool)> =
        runs(&attempts_to_port, |r| (r.src, r.dst, r.srcport))
            .into_iter()
            .map(|c| {
                let rs = &attempts_to_port[c];
                let mut t = Totals::default();
                for r in rs {
                    t.add(r.bytes, r.start, r.end);
                }
                let refused = rs.iter().any(|r| r.rejected);
                (rs[0].src, t.first / w, rs[0].dst, t, refused)
            })
            .collect();
    conns.sort_unstable_by_key(|c| (c.0, c.1, c.2));
    let mut busy_sources = BTreeSet::new();
    let mut rows = Vec::new();
    for window in runs(&conns, |c| (c.0, c.1)) {
        let cs = &conns[window];
        let (src, bucket) = (cs[0].0, cs[0].1);
        let n = cs.len() as u64;
        let hosts = runs(cs, |c| c.2).len() as u64;
        let accepted = cs.iter().filter(|c| !c.4).count() as u64;
        if n >= attempts && n >= 3 * hosts {
            busy_sources.insert(src);
            rows.push(Busy {
                src: pass.names.text(src),
                bucket,
                attempts: n,
                accepted,
                totals: sum(cs.iter().map(|c| &c.3)),
            });
        }
    }
    let mut lists: Map<(Addr, i64), (BTreeSet<Addr>, BTreeSet<u64>)> = Map::default();
    for r in attempts_to_port
        .iter()
        .filter(|r| busy_sources.contains(&r.src))
    {
        let e = lists.entry((r.src, r.start / w)).or_default();
        e.0.insert(r.dst);
        e.1.insert(r.interface);
    }
    let mut out: BTreeMap<String, Vec<WindowLists>> = BTreeMap::new();
    for ((src, bucket), (dsts, enis)) in lists {
        out.entry(pass.names.text(src)).or_default().push((
            bucket,
            dsts.iter().map(|d| pass.names.text(*d)).collect(),
            pass.interfaces(&enis),
        ));
    }
    (rows, out)
}

impl Detection for BruteForce {
    fn wants(&self, _: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            tcp_requests_to: vec![self.port],
            ..Wants::default()
        }
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        let port = self.port;
        // Busy windows only (repeated attempts on the same hosts; one try per host is a
        // sweep), counted per connection, with the destinations and interfaces of each window.
        let (busy, lists) = self.busy(pass, cx.thresholds);
        let mut out = Vec::new();
        for episode in episodes(busy, |b| b.src.clone(), |b| b.bucket) {
            let src = episode[0].src.clone();
            let totals = sum(episode.iter().map(|b| &b.totals));
            let attempts: u64 = episode.iter().map(|b| b.attempts).sum();
            let accepted: u64 = episode.iter().map(|b| b.accepted).sum();
            let (b0, b1) = (episode[0].bucket, episode[episode.len() - 1].bucket);
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
            let minutes = ((totals.last - totals.first) as f64 / 60.0).max(1.0);
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
                "{src} made {attempts} {} connection attempts to {on} in {minutes:.0} min; {outcome}",
                self.service
            );
            let mut f = finding(
                self.id,
                severity,
                Technique::new("T1110", "Brute Force"),
                &totals,
                summary,
                &format!(
                    "protocol = 6 AND dstport = {port} AND srcport > dstport AND srcaddr = {}",
                    quote(&src)
                ),
            );
            f.src = Some(src);
            f.dst = (dests.len() == 1).then(|| dests[0].clone());
            f.dst_port = Some(port);
            f.evidence.figures = figures(&Figures { attempts, accepted });
            f.evidence.interfaces = enis.into_iter().collect();
            dests.truncate(20);
            f.evidence.destinations = dests;
            f.evidence.ports = vec![port];
            out.push(f);
        }
        ready(out)
    }
}
