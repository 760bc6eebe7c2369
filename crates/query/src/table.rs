//! The `flows` table: DataFusion's listing table over the lake's `date=/hour=` folders, plus
//! partition pruning derived from filters on `start` and `end`.
//!
//! A record lives in the hour partition of its `start`, so `start >= T` rules out every hour
//! before T's and `start < T` (or `end < T`, since `start <= end`) every hour after. DataFusion
//! only prunes partitions from filters on the partition columns themselves; this table adds the
//! equivalent `date`/`hour` filters, so a time filter skips whole folders before any file is
//! opened. Inside the files, rows are sorted by `start`, so row-group statistics prune further.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Date32Array, Int32Array, RecordBatch};
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{ScanArgs, ScanResult, Session, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, col, lit,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use tokio::sync::RwLock;

/// Name of the date partition column (`date=YYYY-MM-DD`), a `Date32`.
pub const DATE: &str = "date";

/// Name of the hour partition column (`hour=HH`), an `Int32`.
pub const HOUR: &str = "hour";

/// The table name queries use.
pub const TABLE: &str = "flows";

/// The lake as a DataFusion table.
#[derive(Debug)]
pub struct FlowsTable {
    inner: ListingTable,
    pending: Option<Pending>,
}

impl FlowsTable {
    /// Wraps a listing table whose partition columns are [`DATE`] and [`HOUR`].
    pub fn new(inner: ListingTable) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    /// Reads `pending` rows along with the lake's files.
    pub fn with_pending(mut self, pending: Pending) -> Self {
        self.pending = Some(pending);
        self
    }
}

/// Records accepted but not yet committed to the lake — a server's buffer of small deliveries.
/// Queries read them with the lake's files; the writer clears them in the same write-locked
/// step that commits them, so a query never sees a record twice or not at all.
#[derive(Debug, Clone)]
pub struct Pending {
    batches: Arc<RwLock<Vec<RecordBatch>>>,
    schema: SchemaRef,
}

impl Pending {
    /// An empty buffer for a table of `schema` (the lake's columns, then `date` and `hour`).
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            batches: Arc::new(RwLock::new(Vec::new())),
            schema,
        }
    }

    /// The table schema rows are kept in.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Brings a lake-schema batch (the columns of lake files) to the table's schema: strings as
    /// the table reads them, `date` and `hour` from `start`.
    ///
    /// # Errors
    /// When a column is missing or cannot be cast.
    pub fn to_table(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let rows = batch.num_rows();
        let start = batch
            .column_by_name("start")
            .map(|c| c.as_primitive::<Int64Type>().clone());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column: ArrayRef = match field.name().as_str() {
                DATE => Arc::new(
                    (0..rows)
                        .map(|i| {
                            start
                                .as_ref()
                                .filter(|s| s.is_valid(i))
                                .map(|s| s.value(i).div_euclid(86_400) as i32)
                        })
                        .collect::<Date32Array>(),
                ),
                HOUR => Arc::new(
                    (0..rows)
                        .map(|i| {
                            start
                                .as_ref()
                                .filter(|s| s.is_valid(i))
                                .map(|s| s.value(i).div_euclid(3_600).rem_euclid(24) as i32)
                        })
                        .collect::<Int32Array>(),
                ),
                name => {
                    let c = batch.column_by_name(name).ok_or_else(|| {
                        datafusion::error::DataFusionError::Plan(format!("no column {name}"))
                    })?;
                    datafusion::arrow::compute::cast(c, field.data_type())?
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Adds table-schema batches (see [`to_table`](Self::to_table)).
    pub async fn extend(&self, batches: Vec<RecordBatch>) {
        self.batches.write().await.extend(batches);
    }

    /// The hours (start of each, Unix seconds) of the rows held, by their `start`.
    pub async fn hours(&self) -> std::collections::BTreeSet<i64> {
        let mut hours = std::collections::BTreeSet::new();
        for batch in self.batches.read().await.iter() {
            if let Some(starts) = batch
                .column_by_name("start")
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
            {
                hours.extend(starts.iter().flatten().map(|s| s.div_euclid(3_600) * 3_600));
            }
        }
        hours
    }

    /// Rows held.
    pub async fn rows(&self) -> usize {
        self.batches.read().await.iter().map(|b| b.num_rows()).sum()
    }

    /// Runs `commit` (which puts the rows into the lake) with readers held off, and empties
    /// the buffer if it succeeds. `commit` gets the rows held.
    ///
    /// # Errors
    /// `commit`'s error; the rows stay.
    pub async fn drain<E>(
        &self,
        commit: impl FnOnce(Vec<RecordBatch>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut guard = self.batches.write().await;
        commit(guard.clone())?;
        guard.clear();
        Ok(())
    }
}
#[async_trait]
impl TableProvider for FlowsTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let args = ScanArgs::default()
            .with_projection(projection.map(Vec::as_slice))
            .with_filters(Some(filters))
            .with_limit(limit);
        Ok(self.scan_with_args(state, args).await?.into_inner())
    }

    async fn scan_with_args<'a>(
        &self,
        state: &dyn Session,
        args: ScanArgs<'a>,
    ) -> DfResult<ScanResult> {
        let filters = args.filters().unwrap_or(&[]);
        let mut all = filters.to_vec();
        all.extend(partition_filters(filters));
        let inner_args = ScanArgs::default()
            .with_projection(args.projection())
            .with_filters(Some(&all))
            .with_limit(args.limit());
        let Some(pending) = &self.pending else {
            return self.inner.scan_with_args(state, inner_args).await;
        };
        // Files listed and buffer read under one read lock: a commit (write lock) moves rows
        // from the one to the other all at once.
        let held = pending.batches.read().await;
        let lake = self.inner.scan_with_args(state, inner_args).await?;
        if held.is_empty() {
            return Ok(lake);
        }
        let memory = MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&*held),
            Arc::clone(&pending.schema),
            args.projection().map(<[usize]>::to_vec),
        )?;
        drop(held);
        Ok(UnionExec::try_new(vec![lake.into_inner(), memory])?.into())
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let mut answer = self.inner.supports_filters_pushdown(filters)?;
        if self.pending.is_some() {
            // The buffered rows are not filtered by the scan: every filter is applied above it.
            for a in &mut answer {
                if *a == TableProviderFilterPushDown::Exact {
                    *a = TableProviderFilterPushDown::Inexact;
                }
            }
        }
        Ok(answer)
    }
}

/// The bounds on `start` that `filters` (a conjunction) imply: `(lowest, highest)`, inclusive.
pub fn start_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let mut low: Option<i64> = None;
    let mut high: Option<i64> = None;
    let mut raise = |v: i64| low = Some(low.map_or(v, |l| l.max(v)));
    let mut lower = |v: i64| high = Some(high.map_or(v, |h| h.min(v)));
    for filter in filters {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (name, op, value) = match (column_name(left), int_literal(right)) {
                    (Some(n), Some(v)) => (n, *op, v),
                    _ => match (int_literal(left), column_name(right)) {
                        (Some(v), Some(n)) => match op.swap() {
                            Some(op) => (n, op, v),
                            None => continue,
                        },
                        _ => continue,
                    },
                };
                match (name, op) {
                    ("start", Operator::Gt) => raise(value.saturating_add(1)),
                    ("start", Operator::GtEq) => raise(value),
                    ("start" | "end", Operator::Lt) => lower(value.saturating_sub(1)),
                    ("start" | "end", Operator::LtEq) => lower(value),
                    ("start", Operator::Eq) => {
                        raise(value);
                        lower(value);
                    }
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low: l,
                high: h,
            }) => {
                let name = column_name(expr);
                if let (Some("start"), Some(l)) = (name, int_literal(l)) {
                    raise(l);
                }
                if let (Some("start" | "end"), Some(h)) = (name, int_literal(h)) {
                    lower(h);
                }
            }
            _ => {}
        }
    }
    (low, high)
}

/// Filters on `date`/`hour` equivalent to the bounds on `start` in `filters`.
fn partition_filters(filters: &[Expr]) -> Vec<Expr> {
    let (low, high) = start_bounds(filters);
    let mut out = Vec::new();
    let at = |secs: i64| {
        let hour_index = secs.div_euclid(3_600);
        let day = i32::try_from(hour_index.div_euclid(24)).ok()?;
        let hour = i32::try_from(hour_index.rem_euclid(24)).ok()?;
        Some((lit(ScalarValue::Date32(Some(day))), lit(hour)))
    };
    if let Some((day, hour)) = low.and_then(at) {
        out.push(
            col(DATE)
                .gt(day.clone())
                .or(col(DATE).eq(day).and(col(HOUR).gt_eq(hour))),
        );
    }
    if let Some((day, hour)) = high.and_then(at) {
        out.push(
            col(DATE)
                .lt(day.clone())
                .or(col(DATE).eq(day).and(col(HOUR).lt_eq(hour))),
        );
    }
    out
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn int_literal(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int64(Some(v)) => Some(*v),
            ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
            ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
            ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
            ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
            ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
            _ => None,
        },
        Expr::Cast(c) => int_literal(&c.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_from_comparisons() {
        let f = vec![
            col("start").gt_eq(lit(100_i64)),
            lit(500_i64).gt(col("start")),
            col("end").lt_eq(lit(450_i64)),
            col("packets").gt(lit(3_i64)),
        ];
        assert_eq!(start_bounds(&f), (Some(100), Some(450)));
        let between = vec![col("start").between(lit(10_i64), lit(20_i64))];
        assert_eq!(start_bounds(&between), (Some(10), Some(20)));
        let none = vec![col("start").not_eq(lit(5_i64)), col("end").gt(lit(9_i64))];
        assert_eq!(start_bounds(&none), (None, None));
    }

    #[test]
    fn partition_filter_shape() {
        let f = partition_filters(&[col("start").gt_eq(lit(1_566_847_500_i64))]);
        assert_eq!(f.len(), 1);
        let shown = f[0].to_string();
        // 2019-08-26 is day 18134 of the epoch; 19:25 is in hour 19.
        assert!(
            shown.contains("18134") || shown.contains("2019-08-26"),
            "{shown}"
        );
        assert!(shown.contains("hour >= Int32(19)"), "{shown}");
    }
}
