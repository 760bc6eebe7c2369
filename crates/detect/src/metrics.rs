//! Metric filters run over a lake: each record is rebuilt as its default-format flow log line
//! (what CloudWatch Logs would hold as the event) and matched against every filter, in one
//! streaming pass.

use std::collections::{BTreeSet, HashMap};

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use flowscope_query::{Engine, TimeRange};
use futures::StreamExt;

use crate::alarm::{MetricFilter, Series, StatSet};
use crate::detect::DEFAULT_COLUMNS;
use crate::error::Result;
use crate::filter::Pattern;

/// The metrics published by a set of filters, keyed by (namespace, metric name).
#[derive(Debug, Default)]
pub struct Metrics {
    /// One-minute datapoints per metric.
    pub series: HashMap<(String, String), Series>,
    /// Minutes that had log events at all.
    pub active_minutes: BTreeSet<i64>,
    /// Records read.
    pub records: u64,
    /// First and last record start seen.
    pub span: Option<(i64, i64)>,
}

/// Streams the lake's records in `range` through `filters`.
///
/// # Errors
/// [`crate::Error::Query`] when reading fails; patterns were checked when the file was read,
/// a pattern that fails here is an [`crate::Error::Pattern`].
pub async fn compute(
    engine: &Engine,
    filters: &[MetricFilter],
    range: TimeRange,
) -> Result<Metrics> {
    let compiled: Vec<(Pattern, &MetricFilter)> = filters
        .iter()
        .map(|f| Pattern::parse(&f.filter_pattern).map(|p| (p, f)))
        .collect::<Result<_>>()?;
    let mut sql = format!("SELECT {DEFAULT_COLUMNS} FROM flows WHERE true");
    if let Some(s) = range.start {
        sql.push_str(&format!(" AND start >= {s}"));
    }
    if let Some(e) = range.end {
        sql.push_str(&format!(" AND start < {e}"));
    }
    let mut stream = engine.sql(&sql).await?.execute_stream().await?;
    let options = FormatOptions::default().with_null("-");
    let mut metrics = Metrics::default();
    let mut line = String::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<_, _>>()?;
        let start_col = 10;
        for row in 0..batch.num_rows() {
            line.clear();
            for (i, f) in formatters.iter().enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                use std::fmt::Write;
                let _ = write!(line, "{}", f.value(row));
            }
            let start: i64 = formatters[start_col]
                .value(row)
                .to_string()
                .parse()
                .unwrap_or(0);
            let minute = start - start.rem_euclid(60);
            metrics.records += 1;
            metrics.active_minutes.insert(minute);
            metrics.span = Some(match metrics.span {
                Some((lo, hi)) => (lo.min(start), hi.max(start)),
                None => (start, start),
            });
            for (pattern, filter) in &compiled {
                let Some(bound) = pattern.matches(&line) else {
                    continue;
                };
                let value = match filter.metric_value.strip_prefix('$') {
                    Some(name) => bound.get(name).and_then(|v| v.parse::<f64>().ok()),
                    None => filter.metric_value.parse().ok(),
                };
                let Some(value) = value else { continue };
                let series = metrics
                    .series
                    .entry((filter.metric_namespace.clone(), filter.metric_name.clone()))
                    .or_default();
                match series.get_mut(&minute) {
                    Some(s) => s.merge(&StatSet::one(value)),
                    None => {
                        series.insert(minute, StatSet::one(value));
                    }
                }
            }
        }
    }
    // Default values: minutes with events but no match.
    for f in filters {
        if let Some(d) = f.default_value {
            let series = metrics
                .series
                .entry((f.metric_namespace.clone(), f.metric_name.clone()))
                .or_default();
            for m in &metrics.active_minutes {
                series.entry(*m).or_insert_with(|| StatSet::one(d));
            }
        }
    }
    Ok(metrics)
}
