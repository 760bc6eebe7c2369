//! Beaconing: connections from one source to one internet address and port at a steady rhythm,
//! small each — a command-and-control beacon (ATT&CK T1071).

use serde::Serialize;

use super::{BuiltIn, Context, Detection, Found, figures, fill_interfaces, finding};
use crate::config::Thresholds;
use crate::finding::{Severity, Technique};
use crate::intel::ThreatIntel;
use crate::rows::quote;
use crate::scan::group::{crowded, group, runs};
use crate::scan::{Gathered, Totals, Wants};

/// The detection.
pub(crate) struct Beaconing;

/// The rhythm of one (source, internet destination, port).
struct Rhythm {
    src: String,
    dst: String,
    port: u16,
    connections: u64,
    /// The median interval between connections, seconds.
    median: i64,
    /// Mean and standard deviation of the regular intervals (none without any / two).
    mean: Option<f64>,
    sd: Option<f64>,
    regular: u64,
    gaps: u64,
    mean_bytes: f64,
    totals: Totals,
}

/// The figures of a finding.
#[derive(Serialize)]
struct Figures {
    connections: u64,
    mean_interval_seconds: f64,
    interval_stddev_seconds: f64,
    median_interval_seconds: f64,
    regular_intervals: u64,
    intervals: u64,
}

/// Per (source, internet destination, port) with at least the threshold's connections (source
/// ports), the rhythm of their starts, for those whose median interval lies in the threshold's
/// `[min, max]`; an interval differing from the median by at most the threshold's jitter (a
/// share of the median) is regular.
fn rhythms(pass: &Gathered, t: &Thresholds) -> Vec<Rhythm> {
    let (connections, min, max, jitter) = (
        t.beacon_connections,
        t.beacon_min_interval,
        t.beacon_max_interval,
        t.beacon_jitter,
    );
    // Only the groups that may reach the threshold are kept and sorted.
    let mut beacons = crowded(
        &pass.requests_to_internet,
        connections,
        |r| group(r.src, r.dst, u64::from(r.dstport)),
        |_| 1,
    );
    beacons.sort_unstable_by_key(|r| (r.src, r.dst, r.dstport, r.srcport));
    let mut out = Vec::new();
    for group in runs(&beacons, |r| (r.src, r.dst, r.dstport)) {
        let rs = &beacons[group];
        // One connection per source port.
        let mut conns: Vec<Totals> = runs(rs, |r| r.srcport)
            .into_iter()
            .map(|c| {
                let mut t = Totals::default();
                for r in &rs[c] {
                    t.add(r.bytes, r.start, r.end);
                }
                t
            })
            .collect();
        if (conns.len() as u64) < connections {
            continue;
        }
        conns.sort_by_key(|c| c.first);
        let gaps: Vec<i64> = conns.windows(2).map(|p| p[1].first - p[0].first).collect();
        if gaps.is_empty() {
            continue;
        }
        let mut sorted = gaps.clone();
        sorted.sort_unstable();
        let mid = sorted.len() / 2;
        // The median as the query engine gives it for integers: the lower middle plus half the
        // distance to the upper one, rounded down.
        let median = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            sorted[mid - 1] + (sorted[mid] - sorted[mid - 1]) / 2
        };
        let med = median as f64;
        if med < min || med > max {
            continue;
        }
        let regular: Vec<f64> = gaps
            .iter()
            .map(|g| *g as f64)
            .filter(|g| (g - med).abs() <= jitter * med)
            .collect();
        let n = regular.len() as f64;
        let mean = (n > 0.0).then(|| regular.iter().sum::<f64>() / n);
        let sd = (n > 1.0).then(|| {
            let m = mean.unwrap_or(0.0);
            (regular.iter().map(|g| (g - m) * (g - m)).sum::<f64>() / (n - 1.0)).sqrt()
        });
        let totals = super::sum(&conns);
        out.push(Rhythm {
            src: pass.names.text(rs[0].src),
            dst: pass.names.text(rs[0].dst),
            port: rs[0].dstport,
            connections: conns.len() as u64,
            median,
            mean,
            sd,
            regular: regular.len() as u64,
            gaps: gaps.len() as u64,
            mean_bytes: totals.bytes as f64 / conns.len() as f64,
            totals,
        });
    }
    out
}

impl Detection for Beaconing {
    fn wants(&self, _: &Thresholds, _: &ThreatIntel) -> Wants {
        Wants {
            requests_to_internet: true,
            ..Wants::default()
        }
    }

    fn behind_nat(&self) -> bool {
        true
    }

    fn find<'a>(&'a self, pass: &'a Gathered, cx: &'a Context<'a>) -> Found<'a> {
        Box::pin(async move {
            let t = cx.thresholds;
            // A connection is one source port; over a long range a beacon's source ports repeat
            // and beats are missed, so the rhythm is judged by the median interval and the
            // share of intervals close to it, not by a standard deviation that one merged
            // connection would ruin.
            let mut out = Vec::new();
            for r in rhythms(pass, t) {
                let median = r.median as f64;
                let (mean, sd) = (r.mean.unwrap_or(0.0), r.sd.unwrap_or(0.0));
                let bytes = r.mean_bytes;
                let (regular, gaps) = (r.regular, r.gaps);
                if !(median >= t.beacon_min_interval
                    && median <= t.beacon_max_interval
                    && gaps > 0
                    && regular as f64 >= t.beacon_regular_share * gaps as f64
                    && bytes <= t.beacon_max_bytes)
                {
                    continue;
                }
                let (src, dst, port, n) = (r.src, r.dst, r.port, r.connections);
                let mut f = finding(
                    BuiltIn::Beaconing,
                    Severity::Medium,
                    Technique::new("T1071", "Application Layer Protocol"),
                    &r.totals,
                    format!(
                        "{src} connected to {dst} port {port} {n} times, every {mean:.0} s ± \
                         {sd:.1} s ({regular} of {gaps} intervals), {bytes:.0} bytes each on \
                         average — the rhythm of a command-and-control beacon"
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
                f.evidence.figures = figures(&Figures {
                    connections: n,
                    mean_interval_seconds: mean,
                    interval_stddev_seconds: sd,
                    median_interval_seconds: median,
                    regular_intervals: regular,
                    intervals: gaps,
                });
                f.evidence.destinations = vec![dst];
                f.evidence.ports = vec![port];
                out.push(f);
            }
            fill_interfaces(cx, &mut out).await?;
            Ok(out)
        })
    }
}
