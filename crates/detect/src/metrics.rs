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
