//! Hour partitions: splitting batches by the hour of `start`, writing sorted Parquet files.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use flowscope_record::shared_null;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::error::{Error, Result};
use flowscope_record::time::civil_from_days;

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

/// Why a record without a time is refused by the lake.
pub const NO_TIME: &str = "no start time, or one before 1970 or after 9999 (the lake keeps \
    records in the hour partition of their `start`; give the log format a ${start} field)";

/// The last `start` the lake takes: 9999-12-31T23:59:59Z (later years have no `date=` folder
/// any engine can read).
pub const LAST_START: i64 = 253_402_300_799;

/// The rows of a lake-schema batch that have a `start` from 1970 to 9999, and how many had
/// not: the lake has no partition for a record without such a time, so those records are
/// rejected (and counted) rather than written where no engine could read them.
///
/// # Errors
/// When the rows cannot be taken.
///
/// With `keep_null`, rows without a `start` are kept (a file whose name gives the hour).
pub fn with_time(batch: &RecordBatch, keep_null: bool) -> Result<(RecordBatch, usize)> {
    let start = batch
        .column_by_name("start")
        .expect("lake batches have start")
        .as_primitive::<Int64Type>();
    let placed = |i: usize| {
        if start.is_valid(i) {
            (0..=LAST_START).contains(&start.value(i))
        } else {
            keep_null
        }
    };
    let missing = (0..start.len()).filter(|&i| !placed(i)).count();
    if missing == 0 {
        return Ok((batch.clone(), 0));
    }
    let keep: arrow_array::BooleanArray = (0..start.len()).map(|i| Some(placed(i))).collect();
    let kept = arrow_select::filter::filter_record_batch(batch, &keep).map_err(arrow)?;
    Ok((kept, missing))
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

/// Batches below this many rows are gathered and joined before they are buffered.
const SMALL_BATCH: usize = 4096;

/// Small batches (and their rows) gathered for a partition before they are joined into one.
const SMALL_GATHER: (usize, usize) = (64, 8192);

/// Rows waiting to be written, by partition.
///
/// Small batches (from small files: one record each, at worst) are joined into one batch once a
/// few have gathered, so that what the buffer holds is its rows, not a batch's fixed overhead
/// (some tens of kilobytes) for every small file of a commit.
#[derive(Default)]
pub struct PartitionBuffer {
    parts: BTreeMap<Partition, Buffered>,
    rows: usize,
}

#[derive(Default)]
struct Buffered {
    batches: Vec<RecordBatch>,
    small: Vec<RecordBatch>,
    small_rows: usize,
}

impl Buffered {
    fn join_small(&mut self) -> Result<()> {
        match self.small.len() {
            0 => {}
            1 => self.batches.append(&mut self.small),
            _ => {
                let schema = self.small[0].schema();
                let joined =
                    arrow_select::concat::concat_batches(&schema, &self.small).map_err(arrow)?;
                self.small.clear();
                self.batches.push(joined);
            }
        }
        self.small_rows = 0;
        Ok(())
    }
}

impl PartitionBuffer {
    /// Adds a lake-schema batch.
    ///
    /// # Errors
    /// When the batch cannot be split.
    pub fn push(&mut self, batch: &RecordBatch, fallback: Partition) -> Result<()> {
        for (partition, part) in split_by_hour(batch, fallback)? {
            self.rows += part.num_rows();
            let buffered = self.parts.entry(partition).or_default();
            if part.num_rows() >= SMALL_BATCH {
                buffered.batches.push(part);
                continue;
            }
            buffered.small_rows += part.num_rows();
            buffered.small.push(part);
            if buffered.small.len() >= SMALL_GATHER.0 || buffered.small_rows >= SMALL_GATHER.1 {
                buffered.join_small()?;
            }
        }
        Ok(())
    }

    /// Rows buffered.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Takes the buffered partitions out, leaving the buffer empty.
    ///
    /// # Errors
    /// When small batches cannot be joined.
    pub fn take(&mut self) -> Result<Vec<(Partition, Vec<RecordBatch>)>> {
        self.rows = 0;
        std::mem::take(&mut self.parts)
            .into_iter()
            .map(|(partition, mut buffered)| {
                buffered.join_small()?;
                Ok((partition, buffered.batches))
            })
            .collect()
    }
}

/// One file to write: its number, its partition, its rows.
pub type FileJob = (usize, Partition, Vec<RecordBatch>);

/// Cuts buffered partitions into file jobs for `workers` encoders: a partition larger than its
/// share is cut (at batch boundaries, never below one row group) so the encoders are equally busy;
/// jobs are numbered from `first` and dealt into `workers` lists of about equal rows.
pub fn plan_files(
    parts: Vec<(Partition, Vec<RecordBatch>)>,
    workers: usize,
    first: usize,
) -> Vec<Vec<FileJob>> {
    let workers = workers.max(1);
    let total: usize = parts
        .iter()
        .flat_map(|(_, b)| b)
        .map(RecordBatch::num_rows)
        .sum();
    let piece = (total / workers).max(ROW_GROUP);
    let mut jobs: Vec<FileJob> = Vec::new();
    for (partition, batches) in parts {
        let mut current = Vec::new();
        let mut rows = 0;
        for batch in batches {
            rows += batch.num_rows();
            current.push(batch);
            if rows >= piece {
                jobs.push((first + jobs.len(), partition, std::mem::take(&mut current)));
                rows = 0;
            }
        }
        if !current.is_empty() {
            jobs.push((first + jobs.len(), partition, current));
        }
    }
    let rows_of = |job: &FileJob| job.2.iter().map(RecordBatch::num_rows).sum::<usize>();
    jobs.sort_by_key(|job| std::cmp::Reverse(rows_of(job)));
    let mut bins: Vec<(usize, Vec<FileJob>)> = (0..workers).map(|_| (0, Vec::new())).collect();
    for job in jobs {
        let bin = bins
            .iter_mut()
            .min_by_key(|(rows, _)| *rows)
            .expect("at least one worker");
        bin.0 += rows_of(&job);
        bin.1.push(job);
    }
    bins.into_iter()
        .map(|(_, jobs)| jobs)
        .filter(|jobs| !jobs.is_empty())
        .collect()
}

/// Writes each job as one file, rows sorted by `start`, under `dir` (a staging folder), named
/// `part-{tag}-{n}.parquet`; returns the paths relative to `dir`.
///
/// # Errors
/// When sorting or writing fails.
pub fn write_files(jobs: Vec<FileJob>, dir: &Path, tag: &str) -> Result<Vec<String>> {
    let mut written = Vec::with_capacity(jobs.len());
    for (n, partition, batches) in jobs {
        let rel = format!("{}/part-{tag}-{n:04}.parquet", partition_dir(partition));
        let batch = sorted_by_start(&batches)?;
        drop(batches);
        write_parquet(&dir.join(&rel), &batch)?;
        written.push(rel);
    }
    Ok(written)
}

/// The rows of `batches` (lake schema) as one batch sorted by `start`, built with a single copy;
/// columns null in every batch share one null array instead of being copied.
///
/// # Errors
/// When the columns cannot be gathered.
pub fn sorted_by_start(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let schema = lake_schema();
    let start_index = schema.index_of("start").expect("lake schema has start");
    let total = batches.iter().map(RecordBatch::num_rows).sum();
    let mut order: Vec<(i64, u32, u32)> = Vec::with_capacity(total);
    for (b, batch) in batches.iter().enumerate() {
        let start = batch.column(start_index).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let key = if start.is_null(row) {
                i64::MIN
            } else {
                start.value(row)
            };
            order.push((key, b as u32, row as u32));
        }
    }
    order.sort_unstable_by_key(|&(key, ..)| key);
    let indices: Vec<(usize, usize)> = order
        .iter()
        .map(|&(_, b, r)| (b as usize, r as usize))
        .collect();
    drop(order);
    let mut nulls: Vec<ArrayRef> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (j, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(j).as_ref()).collect();
        if arrays.iter().all(|a| a.null_count() == a.len()) {
            columns.push(shared_null(&mut nulls, field.data_type(), indices.len()));
            continue;
        }
        columns.push(arrow_select::interleave::interleave(&arrays, &indices).map_err(arrow)?);
    }
    RecordBatch::try_new(schema, columns).map_err(arrow)
}

/// The writer settings of every lake file.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_created_by(format!("flowscope {}", env!("CARGO_PKG_VERSION")))
        // Near-unique columns: a dictionary costs time and makes files larger (measured: 6%).
        .set_column_dictionary_enabled("packets".into(), false)
        .set_column_dictionary_enabled("bytes".into(), false)
        .set_column_dictionary_enabled("srcport".into(), false)
        .build()
}

/// The writer settings of Parquet flow log files made for others to read — the emulator's S3
/// deliveries and `flowscope convert --to parquet` — as AWS writes its own: AWS documents
/// Parquet flow logs as "Parquet format with Gzip compression", and readers made for AWS's files
/// take no more than that. So GZIP, version-1 data pages, and no dictionary (arrow-rs writes
/// dictionary pages as RLE_DICTIONARY, which such readers refuse: the `parquet` package that
/// `flowlogs-reader` reads with takes only PLAIN and PLAIN_DICTIONARY). The lake keeps its own
/// settings ([`writer_properties`]).
pub fn delivery_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::GZIP(GzipLevel::default()))
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_created_by(format!("flowscope {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The size and the footer (schema, row groups, statistics) of a Parquet file, without its data.
///
/// # Errors
/// When the file cannot be opened or its footer parsed.
pub fn read_footer(path: &Path) -> Result<(u64, ParquetMetaData)> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(&name, e))?;
    let size = file.metadata().map_err(|e| Error::io(&name, e))?.len();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|source| Error::Parquet { path: name, source })?;
    Ok((size, metadata))
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
    use arrow_array::new_null_array;

    use super::*;

    #[test]
    fn plans_balance_rows_and_number_files_uniquely() {
        let batch = |rows: usize| {
            let columns = lake_schema()
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), rows))
                .collect();
            RecordBatch::try_new(lake_schema(), columns).unwrap()
        };
        let big: Vec<RecordBatch> = (0..40).map(|_| batch(16_384)).collect(); // 655,360 rows
        let parts = vec![
            (Some(1), big),
            (Some(2), vec![batch(10)]),
            (None, vec![batch(5)]),
        ];
        let plan = plan_files(parts, 2, 7);
        assert_eq!(plan.len(), 2);
        let rows: Vec<usize> = plan
            .iter()
            .map(|jobs| {
                jobs.iter()
                    .flat_map(|j| &j.2)
                    .map(RecordBatch::num_rows)
                    .sum()
            })
            .collect();
        assert_eq!(rows.iter().sum::<usize>(), 655_375);
        // Cut at batch boundaries, the two lists differ by at most two batches.
        assert!(rows[0].abs_diff(rows[1]) <= 2 * 16_384 + 15, "{rows:?}");
        let mut numbers: Vec<usize> = plan.iter().flatten().map(|j| j.0).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (7..7 + numbers.len()).collect::<Vec<_>>());
    }

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
