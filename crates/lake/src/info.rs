//! What a lake holds, from Parquet footers and commit records (no data is scanned).

use std::collections::BTreeSet;

use parquet::file::statistics::Statistics;
use serde::Serialize;

use crate::error::Result;
use crate::layout;
use crate::partition::read_footer;
use crate::store::Lake;

/// A summary of a lake, as `flowscope lake info` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LakeInfo {
    /// Hour partitions holding data.
    pub partitions: usize,
    /// Parquet files.
    pub files: usize,
    /// Records.
    pub rows: u64,
    /// Bytes of Parquet on disk.
    pub bytes: u64,
    /// Earliest `start` (Unix seconds).
    pub first_start: Option<i64>,
    /// Latest `end` (Unix seconds).
    pub last_end: Option<i64>,
    /// Flow log IDs among the ingested sources.
    pub flow_logs: Vec<String>,
    /// Sources ingested.
    pub sources: usize,
    /// Lines rejected while ingesting them.
    pub rejected: u64,
    /// Commits made.
    pub commits: usize,
}

/// Reads the summary of `lake`.
///
/// # Errors
/// When a file or commit record cannot be read.
pub fn info(lake: &Lake) -> Result<LakeInfo> {
    let mut info = LakeInfo::default();
    let files = lake.data_files()?;
    let mut partitions = BTreeSet::new();
    for rel in &files {
        let (size, metadata) = read_footer(&lake.root().join(rel))?;
        info.bytes += size;
        info.rows += metadata.file_metadata().num_rows() as u64;
        let schema = metadata.file_metadata().schema_descr();
        let column = |n: &str| (0..schema.num_columns()).find(|&i| schema.column(i).name() == n);
        for group in metadata.row_groups() {
            let stats = |name: &str| column(name).and_then(|i| group.column(i).statistics());
            if let Some(Statistics::Int64(s)) = stats("start")
                && let Some(&min) = s.min_opt()
            {
                info.first_start = Some(info.first_start.map_or(min, |v| v.min(min)));
            }
            if let Some(Statistics::Int64(s)) = stats("end")
                && let Some(&max) = s.max_opt()
            {
                info.last_end = Some(info.last_end.map_or(max, |v| v.max(max)));
            }
        }
        if let Some((partition, _)) = rel.rsplit_once('/') {
            partitions.insert(partition.to_string());
        }
    }
    info.files = files.len();
    info.partitions = partitions.len();
    let commits = lake.commits()?;
    info.commits = commits.len();
    let mut flow_logs = BTreeSet::new();
    for source in commits.iter().flat_map(|c| &c.sources) {
        info.sources += 1;
        info.rejected += source.rejected;
        if let Some(object) = layout::parse(&source.key) {
            flow_logs.insert(object.flow_log_id);
        }
    }
    info.flow_logs = flow_logs.into_iter().collect();
    Ok(info)
}
