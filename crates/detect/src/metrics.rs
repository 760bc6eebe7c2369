//! Metric filters run over a lake: each record is rebuilt as its default-format flow log line
//! (what CloudWatch Logs would hold as the event) and matched against every filter, in one
//! streaming pass.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use arrow_array::RecordBatch;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use flowscope_query::{Engine, TimeRange};
use flowscope_record::LogFormat;
use futures::StreamExt;

use crate::alarm::{MetricFilter, Series, StatSet};
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

/// Metric filters compiled once, fed batch by batch: the streaming core of [`compute`], and
/// what a server feeds as deliveries arrive.
pub struct Accumulator {
    compiled: Vec<(Pattern, MetricFilter)>,
    /// The default format: the lines filter patterns read.
    format: LogFormat,
    /// (filter, minute) whose datapoint is the filter's default value, not a match.
    defaulted: HashSet<(usize, i64)>,
    /// What has been computed so far.
    pub metrics: Metrics,
}

impl Accumulator {
    /// Compiles `filters`.
    ///
    /// # Errors
    /// [`crate::Error::Pattern`] when a pattern does not parse.
    pub fn new(filters: &[MetricFilter]) -> Result<Self> {
        Ok(Self {
            compiled: filters
                .iter()
                .map(|f| Pattern::parse(&f.filter_pattern).map(|p| (p, f.clone())))
                .collect::<Result<_>>()?,
            format: LogFormat::default_format(),
            defaulted: HashSet::new(),
            metrics: Metrics::default(),
        })
    }

    /// An accumulator of the same filters with nothing counted yet: records counted there
    /// can be [`absorb`](Self::absorb)ed once they are known to be kept.
    pub fn fresh(&self) -> Self {
        Self {
            compiled: self.compiled.clone(),
            format: self.format.clone(),
            defaulted: HashSet::new(),
            metrics: Metrics::default(),
        }
    }

    /// Adds what `other` (of the same filters, see [`fresh`](Self::fresh)) counted, as if its
    /// records had been added here: a filter's default value stands for a minute only while
    /// neither side matched in it.
    pub fn absorb(&mut self, other: Accumulator) {
        let Accumulator {
            compiled,
            defaulted: other_defaulted,
            metrics: other_metrics,
            ..
        } = other;
        let mut merged = HashSet::new();
        for (n, (_, filter)) in compiled.iter().enumerate() {
            let key = (filter.metric_namespace.clone(), filter.metric_name.clone());
            // Filters publishing one metric share its series: merged once.
            if !merged.insert(key.clone()) {
                continue;
            }
            let Some(theirs) = other_metrics.series.get(&key) else {
                continue;
            };
            let ours = self.metrics.series.entry(key).or_default();
            for (&minute, stats) in theirs {
                let their_default = other_defaulted.contains(&(n, minute));
                match ours.get_mut(&minute) {
                    None => {
                        ours.insert(minute, *stats);
                        if their_default {
                            self.defaulted.insert((n, minute));
                        }
                    }
                    Some(_) if their_default => {}
                    Some(mine) if self.defaulted.remove(&(n, minute)) => *mine = *stats,
                    Some(mine) => mine.merge(stats),
                }
            }
        }
        let m = &mut self.metrics;
        m.records += other_metrics.records;
        m.active_minutes.extend(other_metrics.active_minutes);
        m.span = match (m.span, other_metrics.span) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, y) => x.or(y),
        };
    }

    /// Adds the records of `batch`, which holds the default format's columns by their lake
    /// names (others are ignored).
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] when a column is missing or cannot be shown as text.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let format = &self.format;
        if let Some(missing) = format
            .fields()
            .iter()
            .find(|f| batch.column_by_name(f.column).is_none())
        {
            return Err(crate::Error::Invalid(format!(
                "no column {}",
                missing.column
            )));
        }
        // Each record as the line CloudWatch Logs would hold, from the record crate's encoder.
        let mut text = Vec::new();
        flowscope_record::write_lines(batch, format, &mut text)?;
        let text = String::from_utf8_lossy(&text);
        let mut lines: Vec<Cow<'_, str>> = text.split_terminator('\n').map(Cow::Borrowed).collect();
        if lines.len() != batch.num_rows() {
            // A value holding a line break: one record at a time.
            lines = (0..batch.num_rows())
                .map(|row| {
                    let mut one = Vec::new();
                    flowscope_record::write_lines(&batch.slice(row, 1), format, &mut one)?;
                    one.pop();
                    Ok(Cow::Owned(String::from_utf8_lossy(&one).into_owned()))
                })
                .collect::<Result<_>>()?;
        }
        let starts = cast(
            batch.column_by_name("start").expect("checked above"),
            &DataType::Int64,
        )?;
        let starts = starts.as_primitive::<Int64Type>();
        let metrics = &mut self.metrics;
        for (row, line) in lines.iter().enumerate() {
            if starts.is_null(row) {
                continue;
            }
            let start = starts.value(row);
            let minute = start - start.rem_euclid(60);
            metrics.records += 1;
            metrics.active_minutes.insert(minute);
            metrics.span = Some(match metrics.span {
                Some((lo, hi)) => (lo.min(start), hi.max(start)),
                None => (start, start),
            });
            for (n, (pattern, filter)) in self.compiled.iter().enumerate() {
                let key = (filter.metric_namespace.clone(), filter.metric_name.clone());
                let value = pattern.matches(line).and_then(|bound| {
                    match filter.metric_value.strip_prefix('$') {
                        Some(name) => bound.get(name).and_then(|v| v.parse::<f64>().ok()),
                        None => filter.metric_value.parse().ok(),
                    }
                });
                let series = metrics.series.entry(key).or_default();
                match value {
                    // A default value stands only for minutes with no match.
                    Some(value) => match series.get_mut(&minute) {
                        Some(s) if !self.defaulted.remove(&(n, minute)) => {
                            s.merge(&StatSet::one(value))
                        }
                        _ => {
                            series.insert(minute, StatSet::one(value));
                        }
                    },
                    None => {
                        if let Some(d) = filter.default_value
                            && !series.contains_key(&minute)
                        {
                            series.insert(minute, StatSet::one(d));
                            self.defaulted.insert((n, minute));
                        }
                    }
                }
            }
        }
        Ok(())
    }
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
    let mut acc = Accumulator::new(filters)?;
    let sql = format!(
        "SELECT {} FROM flows WHERE true{}",
        crate::finding::default_columns(),
        range.sql("", 0)
    );
    let mut stream = engine.sql(&sql).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        acc.add(&batch?)?;
    }
    Ok(acc.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: &[&str]) -> RecordBatch {
        let mut decoder = flowscope_record::TextDecoder::new(LogFormat::default_format(), 1024);
        for line in lines {
            decoder.decode_line(line.as_bytes()).unwrap();
        }
        decoder.flush().unwrap()
    }

    fn filters() -> Vec<MetricFilter> {
        let filter = |name: &str, pattern: &str, value: &str, default: Option<f64>| MetricFilter {
            filter_name: name.into(),
            filter_pattern: pattern.into(),
            metric_name: name.into(),
            metric_namespace: "flowscope".into(),
            metric_value: value.into(),
            default_value: default,
        };
        vec![
            filter(
                "rejects",
                "[version, account, eni, source, destination, srcport, destport, protocol, packets, bytes, start, end, action = REJECT, status]",
                "1",
                Some(0.0),
            ),
            filter(
                "bytes",
                "[version, account, eni, source, destination, srcport, destport, protocol, packets, bytes, start, end, action, status]",
                "$bytes",
                None,
            ),
        ]
    }

    /// Records counted apart and absorbed give what counting them together gives, a default
    /// value included (a minute with no match on one side and a match on the other).
    #[test]
    fn absorbing_equals_adding() {
        let line = |minute: i64, action: &str, bytes: u32| {
            let start = 1_700_000_000 - 1_700_000_000 % 60 + minute * 60;
            format!(
                "2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 {bytes} {start} {} {action} OK",
                start + 5
            )
        };
        let first = [
            line(0, "ACCEPT", 10),
            line(1, "REJECT", 20),
            line(2, "ACCEPT", 5),
        ];
        let second = [
            line(0, "REJECT", 7),
            line(1, "ACCEPT", 1),
            line(3, "ACCEPT", 2),
        ];
        fn as_refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let mut together = Accumulator::new(&filters()).unwrap();
        together.add(&batch(&as_refs(&first))).unwrap();
        together.add(&batch(&as_refs(&second))).unwrap();
        let mut apart = Accumulator::new(&filters()).unwrap();
        apart.add(&batch(&as_refs(&first))).unwrap();
        let mut later = apart.fresh();
        later.add(&batch(&as_refs(&second))).unwrap();
        apart.absorb(later);
        let get = |a: &Accumulator, metric: &str| {
            a.metrics.series[&("flowscope".to_string(), metric.to_string())]
                .iter()
                .map(|(m, s)| {
                    let count = s.get(crate::alarm::Statistic::SampleCount);
                    (*m, s.get(crate::alarm::Statistic::Sum), count)
                })
                .collect::<Vec<_>>()
        };
        for metric in ["rejects", "bytes"] {
            assert_eq!(get(&apart, metric), get(&together, metric), "{metric}");
        }
        assert_eq!(apart.metrics.records, 6);
        assert_eq!(
            apart.metrics.active_minutes,
            together.metrics.active_minutes
        );
        assert_eq!(apart.metrics.span, together.metrics.span);
        // The minute-0 rejection of the second half replaced the first half's default 0, and
        // the second half's default at minute 1 gave way to the first half's rejection.
        assert_eq!(
            get(&apart, "rejects")[..2],
            [
                (together.metrics.span.unwrap().0, 1.0, 1.0),
                (together.metrics.span.unwrap().0 + 60, 1.0, 1.0)
            ]
        );
    }
}
