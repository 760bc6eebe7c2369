//! Hour partitions: splitting batches by the hour of `start`, writing sorted Parquet files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::layout::civil_from_days;

/// The column added to AWS's fields: the flow log a record came from (from the S3 file name).
pub const FLOW_LOG_ID: &str = "flow_log_id";

/// Rows per Parquet row group: small enough for statistics to prune, large enough to scan fast.
const ROW_GROUP: usize = 128 * 1024;

static LAKE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = flowscope_record::canonical_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(FLOW_LOG_ID, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// The schema of every lake file: the canonical flow schema plus `flow_log_id`. The partition
/// columns `date` and `hour` live in the folder names only, as Hive expects.
pub fn lake_schema() -> SchemaRef {
    Arc::clone(&LAKE_SCHEMA)
}

/// An hour partition: hours since the epoch, or `None` for records with no time at all.
pub type Partition = Option<i64>;

/// The folder of a partition, relative to the lake root.
pub fn partition_dir(partition: Partition) -> String {
    match partition {
        Some(hour) => {
            let (y, m, d) = civil_from_days(hour.div_euclid(24));
            format!("date={y:04}-{m:02}-{d:02}/hour={:02}", hour.rem_euclid(24))
        }
        None => "date=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__".to_string(),
    }
}

/// Splits a lake-schema batch by the hour of `start`; rows without `start` go to `fallback`
/// (the hour of the file's name, when it has one).
pub fn split_by_hour(
    batch: &RecordBatch,
    fallback: Partition,
) -> Result<Vec<(Partition, RecordBatch)>> {
    let start = batch
        .column_by_name("start")
        .expect("lake batches have start");
    let start = start.as_primitive::<Int64Type>();
    let hour_of = |row: usize| {
        if start.is_null(row) {
            fallback
        } else {
            Some(start.value(row).div_euclid(3_600))
        }
    };
    let first = if batch.num_rows() > 0 {
        hour_of(0)
    } else {
        fallback
    };
    if (0..batch.num_rows()).all(|row| hour_of(row) == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    let mut groups: BTreeMap<Partition, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        groups.entry(hour_of(row)).or_default().push(row as u32);
    }
    let mut parts = Vec::with_capacity(groups.len());
    for (partition, rows) in groups {
        let indices = UInt32Array::from(rows);
        let taken = arrow_select::take::take_record_batch(batch, &indices).map_err(arrow)?;
        parts.push((partition, taken));
    }
    Ok(parts)
}

fn arrow(source: arrow_schema::ArrowError) -> Error {
    Error::Arrow {
        path: String::new(),
        source,
    }
}

/// Rows waiting to be written, by partition.
#[derive(Default)]
pub struct PartitionBuffer {
    parts: BTreeMap<Partition, Vec<RecordBatch>>,
    rows: usize,
}

impl PartitionBuffer {
    /// Adds a lake-schema batch.
    ///
    /// # Errors
    /// When the batch cannot be split.
    pub fn push(&mut self, batch: &RecordBatch, fallback: Partition) -> Result<()> {
        for (partition, part) in split_by_hour(batch, fallback)? {
            self.rows += part.num_rows();
            self.parts.entry(partition).or_default().push(part);
        }
        Ok(())
    }

    /// Rows buffered.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes one file per partition, rows sorted by `start`, under `dir` (a staging folder),
    /// named `part-{tag}-{n}.parquet`; returns the paths relative to `dir`.
    ///
    /// # Errors
    /// When sorting or writing fails.
    pub fn write_to(&mut self, dir: &Path, tag: &str, counter: &mut usize) -> Result<Vec<String>> {
        let mut written = Vec::new();
        for (partition, batches) in std::mem::take(&mut self.parts) {
            let rel = format!(
                "{}/part-{tag}-{:04}.parquet",
                partition_dir(partition),
                *counter
            );
            *counter += 1;
            let batch =
                arrow_select::concat::concat_batches(&lake_schema(), &batches).map_err(arrow)?;
            drop(batches);
            let batch = sort_by_start(&batch)?;
            write_parquet(&dir.join(&rel), &batch)?;
            written.push(rel);
        }
        self.rows = 0;
        Ok(written)
    }
}

fn sort_by_start(batch: &RecordBatch) -> Result<RecordBatch> {
    let start = batch
        .column_by_name("start")
        .expect("lake batches have start");
    let indices = arrow_ord::sort::sort_to_indices(start, None, None).map_err(arrow)?;
    arrow_select::take::take_record_batch(batch, &indices).map_err(arrow)
}

/// The writer settings of every lake file.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_created_by(format!("flowscope {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes `batch` to a new Parquet file at `path` and fsyncs it.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let name = path.display().to_string();
    let io = |e| Error::io(&name, e);
    fs::create_dir_all(path.parent().expect("files are inside partitions")).map_err(io)?;
    let file = File::create(path).map_err(io)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties()))
        .map_err(|source| Error::Parquet {
            path: name.clone(),
            source,
        })?;
    writer.write(batch).map_err(|source| Error::Parquet {
        path: name.clone(),
        source,
    })?;
    let file = writer.into_inner().map_err(|source| Error::Parquet {
        path: name.clone(),
        source,
    })?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_folders_are_hive_style() {
        assert_eq!(
            partition_dir(Some(1_529_511_600 / 3_600)),
            "date=2018-06-20/hour=16"
        );
        assert_eq!(partition_dir(Some(0)), "date=1970-01-01/hour=00");
        assert!(partition_dir(None).contains("__HIVE_DEFAULT_PARTITION__"));
    }
}
