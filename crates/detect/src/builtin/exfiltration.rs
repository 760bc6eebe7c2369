//! Data exfiltration: an internal source sending far more to one internet address in a window
//! than it usually sends (ATT&CK T1048).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::{
    BuiltIn, Context, Detection, Found, episodes, figures, finding, median_with_empty_windows,
    ready, sum, window_count,
};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::quote;
use crate::scan::group::{crowded, group, runs};
use crate::scan::{Addr, Gathered, Rec, Totals, Wants};
use crate::words::{human_bytes, human_duration};

/// The detection.
pub(crate) struct Exfiltration;

/// One (interface, source, destination, port, window) of accepted outbound traffic.
#[derive(Clone)]
struct Window {
    interface: String,
    src: String,
    dst: String,
    port: u16,
    bucket: i64,
    totals: Totals,
}

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    baseline_bytes_per_window: f64,
    window_seconds: i64,
}

/// Every window of the sources that have a window of at least the threshold's bytes.
fn windows(pass: &Gathered, t: &Thresholds) -> Vec<Window> {
    let (w, min_bytes) = (t.exfiltration_window.max(1), t.exfiltration_bytes);
    // Only the sources that may have a window over the threshold are kept and sorted.
    let heavy = crowded(
        &pass.outbound_to_internet,
        min_bytes,
        |r| {
            group(
                r.src ^ r.interface.rotate_left(17),
                r.dst,
                (u64::from(r.dstport) << 48) ^ (r.start / w) as u64,
            )
        },
        |r| r.bytes,
    );
    let sources: HashSet<Addr> = heavy.iter().map(|r| r.src).collect();
    drop(heavy);
    let mut kept: Vec<Rec> = pass
        .outbound_to_internet
        .iter()
        .flat_map(|part| part.iter().filter(|r| sources.contains(&r.src)).copied())
        .collect();
    kept.sort_unstable_by_key(|r| (r.src, r.interface, r.dst, r.dstport, r.start / w));
    let mut out = Vec::new();
    for source in runs(&kept, |r| r.src) {
        let rs = &kept[source];
        let windows: Vec<(&Rec, Totals)> =
            runs(rs, |r| (r.interface, r.dst, r.dstport, r.start / w))
                .into_iter()
                .map(|g| {
                    let mut t = Totals::default();
                    for r in &rs[g.clone()] {
                        t.add(r.bytes, r.start, r.end);
                    }
                    (&rs[g.start], t)
                })
                .collect();
        if !windows.iter().any(|(_, t)| t.bytes >= min_bytes) {
            continue;
        }
        for (r, totals) in windows {
            out.push(Window {
                interface: pass.names.interface_text(r.interface),
                src: pass.names.text(r.src),
                dst: pass.names.text(r.dst),
                port: r.dstport,
                bucket: r.start / w,
                totals,
            });
        }
    }
    out
}

impl Detection for Exfiltration {
    fn wants(&self, _: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            outbound_to_internet: true,
            ..Wants::default()
        }
    }

    fn behind_nat(&self) -> bool {
        true
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        let t = cx.thresholds;
        let w = t.exfiltration_window.max(1);
        // Every window of the sources with a window over the absolute threshold (seen at one
        // interface at least), for the baseline: never every source's windows.
        let rows = windows(pass, t);
        if rows.is_empty() {
            return ready(Vec::new());
        }
        // One view of each (source, destination, port, window): the interface that saw most.
        let mut best: HashMap<(String, String, u16, i64), Window> = HashMap::new();
        let mut interfaces: HashMap<(String, String, u16), BTreeSet<String>> = HashMap::new();
        for r in rows {
            interfaces
                .entry((r.src.clone(), r.dst.clone(), r.port))
                .or_default()
                .insert(r.interface.clone());
            let key = (r.src.clone(), r.dst.clone(), r.port, r.bucket);
            if best
                .get(&key)
                .is_none_or(|b| b.totals.bytes < r.totals.bytes)
            {
                best.insert(key, r);
            }
        }
        // Each source's outbound volume per window, every window of the range counted.
        let windows = window_count(cx.span, w);
        let mut per_source: HashMap<String, HashMap<i64, i64>> = HashMap::new();
        for ((src, _, _, bucket), r) in &best {
            *per_source
                .entry(src.clone())
                .or_default()
                .entry(*bucket)
                .or_default() += r.totals.bytes as i64;
        }
        let baseline: HashMap<&String, f64> = per_source
            .iter()
            .map(|(src, buckets)| {
                let v: Vec<i64> = buckets.values().copied().collect();
                (src, median_with_empty_windows(v, windows) as f64)
            })
            .collect();
        let mut hot: Vec<&Window> = best
            .iter()
            .filter(|((src, ..), r)| {
                let bytes = r.totals.bytes as f64;
                let base = baseline.get(src).copied().unwrap_or(0.0);
                bytes >= t.exfiltration_bytes as f64 && bytes >= t.exfiltration_ratio * base
            })
            .map(|(_, r)| r)
            .collect();
        hot.sort_by_key(|r| r.bucket);
        let mut out = Vec::new();
        for episode in episodes(
            hot,
            |r| format!("{} {} {}", r.src, r.dst, r.port),
            |r| r.bucket,
        ) {
            let totals = sum(episode.iter().map(|r| &r.totals));
            let (src, dst, port) = (
                episode[0].src.clone(),
                episode[0].dst.clone(),
                episode[0].port,
            );
            let base = baseline.get(&src).copied().unwrap_or(0.0);
            let seconds = (totals.last - totals.first).max(1);
            let summary = format!(
                "{src} sent {} to {dst} port {port} in {} ({}/s); its usual outbound volume is {} per {} min",
                human_bytes(totals.bytes),
                human_duration(seconds),
                human_bytes(totals.bytes / seconds as u64),
                human_bytes(base as u64),
                w / 60
            );
            let mut f = finding(
                BuiltIn::DataExfiltration,
                Severity::High,
                Technique::new("T1048", "Exfiltration Over Alternative Protocol"),
                &totals,
                summary,
                &format!(
                    "action = 'ACCEPT' AND srcaddr = {} AND dstaddr = {} AND dstport = {port}",
                    quote(&src),
                    quote(&dst)
                ),
            );
            f.src = Some(src.clone());
            f.dst = Some(dst.clone());
            f.dst_port = Some(port);
            f.evidence.figures = figures(&Figures {
                baseline_bytes_per_window: base,
                window_seconds: w,
            });
            f.evidence.interfaces = interfaces
                .get(&(src, dst.clone(), port))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            f.evidence.destinations = vec![dst];
            f.evidence.ports = vec![port];
            out.push(f);
        }
        ready(out)
    }
}
