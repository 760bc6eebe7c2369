//! Keeping a lake in shape: merging small files, dropping old partitions.
//!
//! Both are commits like an ingest: new files are staged, the commit record names what is added
//! and removed, and publishing applies it, so they are as crash-safe as an ingest.

use std::collections::BTreeMap;
use std::fs::File;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::partition::{
    lake_schema, read_footer, sorted_by_start, write_parquet, writer_properties,
};
use crate::store::{Commit, Lake};
use flowscope_record::time::days_from_civil;

/// Partitions up to this many rows are merged into one file sorted by `start`; larger ones are
/// concatenated file by file (each file is sorted already).
const SORT_ROWS: usize = 4 << 20;

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompactSummary {
    /// Partitions merged.
    pub partitions: usize,
    /// Files before.
    pub files_before: usize,
    /// Files after.
    pub files_after: usize,
    /// Rows rewritten.
    pub rows: u64,
}

/// Merges the files of every partition that has more than one into a single file.
///
/// # Errors
/// When a file cannot be read or written, or the commit fails.
pub fn compact(lake: &Lake) -> Result<CompactSummary> {
    let mut by_partition: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rel in lake.data_files()? {
        let (partition, _) = rel.rsplit_once('/').unwrap_or(("", &rel));
        by_partition
            .entry(partition.to_string())
            .or_default()
            .push(rel);
    }
    let id = lake.allocate_commit_id();
    let staging = lake.staging_dir(&id);
    let mut summary = CompactSummary::default();
    let mut commit = Commit {
        id: id.clone(),
        kind: "compact".into(),
        ..Commit::default()
    };
    for (partition, files) in by_partition.into_iter().filter(|(_, f)| f.len() > 1) {
        let rel = format!("{partition}/part-{id}-{:04}.parquet", summary.partitions);
        let target = staging.join(&rel);
        let rows = merge(lake, &files, &target)?;
        summary.partitions += 1;
        summary.files_before += files.len();
        summary.files_after += 1;
        summary.rows += rows;
        commit.add.push(rel);
        commit.remove.extend(files);
    }
    if summary.partitions > 0 {
        lake.commit(&commit)?;
    }
    Ok(summary)
}

fn read_all(lake: &Lake, rel: &str) -> Result<Vec<RecordBatch>> {
    let path = lake.root().join(rel);
    let name = path.display().to_string();
    let parquet = |source| Error::Parquet {
        path: name.clone(),
        source,
    };
    let file = File::open(&path).map_err(|e| Error::io(&name, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet)?
        .build()
        .map_err(parquet)?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|source| Error::Arrow {
            path: name.clone(),
            source,
        })?;
        batches.push(batch);
    }
    Ok(batches)
}

/// Writes the rows of `files` into one file at `target`; returns the row count.
fn merge(lake: &Lake, files: &[String], target: &std::path::Path) -> Result<u64> {
    let rows: u64 = files
        .iter()
        .map(|f| row_count(lake, f))
        .sum::<Result<u64>>()?;
    if rows as usize <= SORT_ROWS {
        let mut batches = Vec::new();
        for file in files {
            batches.extend(read_all(lake, file)?);
        }
        write_parquet(target, &sorted_by_start(&batches)?)?;
        return Ok(rows);
    }
    let name = target.display().to_string();
    let io = |e| Error::io(&name, e);
    std::fs::create_dir_all(target.parent().expect("inside a partition")).map_err(io)?;
    let out = File::create(target).map_err(io)?;
    let parquet = |source| Error::Parquet {
        path: name.clone(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(out, lake_schema(), Some(writer_properties())).map_err(parquet)?;
    for file in files {
        for batch in read_all(lake, file)? {
            writer.write(&batch).map_err(parquet)?;
        }
    }
    writer
        .into_inner()
        .map_err(parquet)?
        .sync_all()
        .map_err(io)?;
    Ok(rows)
}

fn row_count(lake: &Lake, rel: &str) -> Result<u64> {
    let (_, metadata) = read_footer(&lake.root().join(rel))?;
    Ok(metadata.file_metadata().num_rows() as u64)
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PruneSummary {
    /// Hour partitions removed.
    pub partitions: usize,
    /// Files removed.
    pub files: usize,
    /// Rows removed.
    pub rows: u64,
}

/// Removes every hour partition that ended before `cutoff` (Unix seconds), and the files of
/// records without a time (`date=__HIVE_DEFAULT_PARTITION__`, written by earlier versions),
/// which no query reads.
///
/// # Errors
/// When a file cannot be read or the commit fails.
pub fn prune(lake: &Lake, cutoff: i64) -> Result<PruneSummary> {
    prune_or_plan(lake, cutoff, true)
}

/// What [`prune`] would remove, without removing anything (`lake prune --dry-run`).
///
/// # Errors
/// When the lake's files cannot be listed or a footer read.
pub fn prune_plan(lake: &Lake, cutoff: i64) -> Result<PruneSummary> {
    prune_or_plan(lake, cutoff, false)
}

fn prune_or_plan(lake: &Lake, cutoff: i64, apply: bool) -> Result<PruneSummary> {
    let mut summary = PruneSummary::default();
    let mut commit = Commit {
        id: lake.allocate_commit_id(),
        kind: "prune".into(),
        ..Commit::default()
    };
    let mut partitions = std::collections::BTreeSet::new();
    for rel in lake.data_files()? {
        let undated = partition_start(&rel).is_none();
        if undated || partition_start(&rel).is_some_and(|start| start + 3_600 <= cutoff) {
            summary.rows += row_count(lake, &rel)?;
            summary.files += 1;
            partitions.insert(rel.rsplit_once('/').map(|(p, _)| p.to_string()));
            commit.remove.push(rel);
        }
    }
    summary.partitions = partitions.len();
    if apply && !commit.remove.is_empty() {
        lake.commit(&commit)?;
    }
    Ok(summary)
}

/// The Unix second a `date=YYYY-MM-DD/hour=HH/...` path's hour starts at.
pub fn partition_start(rel: &str) -> Option<i64> {
    let mut parts = rel.split('/');
    let date = parts.next()?.strip_prefix("date=")?;
    let hour: i64 = parts.next()?.strip_prefix("hour=")?.parse().ok()?;
    let mut ymd = date.split('-').map(str::parse::<i64>);
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    Some(days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(d).ok()?) * 86_400 + hour * 3_600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths() {
        assert_eq!(
            partition_start("date=2018-06-20/hour=16/part.parquet"),
            Some(1_529_510_400)
        );
        assert_eq!(
            partition_start("date=__HIVE_DEFAULT_PARTITION__/hour=__HIVE_DEFAULT_PARTITION__/x"),
            None
        );
    }
}
