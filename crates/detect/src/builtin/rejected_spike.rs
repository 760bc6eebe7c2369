//! Rejected-traffic spike: many more rejected requests in a window than usual (ATT&CK T1595).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{
    BuiltIn, Context, Detection, Found, episodes, figures, finding, median_with_empty_windows,
    ready, sum, window_count,
};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::scan::{Addr, Gathered, Map, Totals, Wants};
use crate::words::human_duration;

/// The detection.
pub(crate) struct RejectedSpike;

/// The rejected requests of one window.
struct Window {
    bucket: i64,
    totals: Totals,
    interfaces: Vec<String>,
}

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    median_per_window: f64,
    peak_per_window: u64,
}

/// Rejected requests per window of `window` seconds, in window order.
fn windows(pass: &Gathered, window: i64) -> Vec<Window> {
    let w = window.max(1);
    // Per window: its totals and interfaces. Windows are few.
    let mut slots: Map<i64, u32> = Map::default();
    let mut windows: Vec<(i64, Totals, BTreeSet<u64>)> = Vec::new();
    let mut interfaces: Map<(u32, u64), ()> = Map::default();
    for r in &pass.rejected_requests {
        let bucket = r.start / w;
        let slot = *slots.entry(bucket).or_insert_with(|| {
            windows.push((bucket, Totals::default(), BTreeSet::new()));
            (windows.len() - 1) as u32
        });
        windows[slot as usize].1.add(r.bytes, r.start, r.end);
        interfaces.insert((slot, r.interface), ());
    }
    for (slot, interface) in interfaces.into_keys() {
        windows[slot as usize].2.insert(interface);
    }
    windows.sort_unstable_by_key(|w| w.0);
    windows
        .into_iter()
        .map(|(bucket, totals, interfaces)| Window {
            bucket,
            totals,
            interfaces: pass.interfaces(&interfaces),
        })
        .collect()
}

/// The `n` sources with the most rejected requests starting in `[first, last]`, most first.
fn top_sources(pass: &Gathered, first: i64, last: i64, n: usize) -> Vec<(String, u64)> {
    let mut counts: Map<Addr, u64> = Map::default();
    for r in pass
        .rejected_requests
        .iter()
        .filter(|r| r.start >= first && r.start <= last)
    {
        *counts.entry(r.src).or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = counts
        .into_iter()
        .map(|(src, count)| (pass.names.text(src), count))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    top
}

impl Detection for RejectedSpike {
    fn wants(&self, _: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            rejected_requests: true,
            ..Wants::default()
        }
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        let t = cx.thresholds;
        let w = t.rejected_spike_window.max(1);
        let rows = windows(pass, w);
        let counts: Vec<i64> = rows.iter().map(|r| r.totals.records as i64).collect();
        let median = median_with_empty_windows(counts, window_count(cx.span, w)) as f64;
        let hot: Vec<&Window> = rows
            .iter()
            .filter(|r| {
                let n = r.totals.records;
                n >= t.rejected_spike_records && n as f64 >= t.rejected_spike_ratio * median
            })
            .collect();
        let mut out = Vec::new();
        for episode in episodes(hot, |_| (), |r| r.bucket) {
            let totals = sum(episode.iter().map(|r| &r.totals));
            let top = top_sources(pass, totals.first, totals.last, 3);
            let peak = episode.iter().map(|r| r.totals.records).max().unwrap_or(0);
            let mut f = finding(
                BuiltIn::RejectedSpike,
                Severity::Medium,
                Technique::new("T1595", "Active Scanning"),
                &totals,
                format!(
                    "{} rejected requests in {} (peak {peak} per {} min, usually {median:.0}); \
                     most from {}",
                    totals.records,
                    human_duration(totals.last - totals.first),
                    w / 60,
                    top.first().map_or("-", |l| l.0.as_str())
                ),
                "action = 'REJECT'",
            );
            if let Some((src, n)) = top.first()
                && n * 2 > totals.records
            {
                f.src = Some(src.clone());
            }
            f.evidence.sources = top.iter().map(|(s, _)| s.clone()).collect();
            let interfaces: BTreeSet<&String> =
                episode.iter().flat_map(|r| &r.interfaces).collect();
            f.evidence.interfaces = interfaces.into_iter().cloned().collect();
            f.evidence.figures = figures(&Figures {
                median_per_window: median,
                peak_per_window: peak,
            });
            out.push(f);
        }
        ready(out)
    }
}
