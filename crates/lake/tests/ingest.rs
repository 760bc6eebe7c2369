//! Ingesting into the lake: exactly once, whatever happens.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use flate2::Compression;
use flate2::write::GzEncoder;
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_lake::sink::{self, Destination, OutputKind, SinkOptions};
use flowscope_lake::{Input, Lake, TextOptions, TextReader, input};
use flowscope_record::synth::Synth;
use flowscope_record::{LogFormat, write_lines};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pretty_assertions::assert_eq;

/// Writes `files` gzip files of `per_file` default-format records in AWS's S3 layout under
/// `root`, and returns every record line written.
fn aws_tree(root: &Path, files: usize, per_file: usize) -> Vec<String> {
    let format = LogFormat::default_format();
    let mut all = Vec::new();
    let mut synth = Synth::new(11);
    for i in 0..files {
        let minute = i * 5;
        let (hour, min) = (10 + minute / 60, minute % 60);
        let dir = root.join("AWSLogs/123456789012/vpcflowlogs/eu-west-1/2023/01/21");
        fs::create_dir_all(&dir).unwrap();
        let name = format!(
            "123456789012_vpcflowlogs_eu-west-1_fl-0a1b2c3d4e5f60718_20230121T{hour:02}{min:02}Z_{i:08x}.log.gz"
        );
        let mut text = format!("{}\n", format.header()).into_bytes();
        let mut lines = Vec::new();
        synth.write_lines(&format, per_file, &mut lines);
        text.extend_from_slice(&lines);
        all.extend(
            String::from_utf8(lines)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&text).unwrap();
        fs::write(dir.join(name), gz.finish().unwrap()).unwrap();
    }
    all.sort();
    all
}

/// Every record in the lake, as sorted default-format lines.
fn lake_lines(root: &Path) -> Vec<String> {
    let lake = Lake::open(root).unwrap();
    let format = LogFormat::default_format();
    let mut out = Vec::new();
    for rel in lake.data_files().unwrap() {
        let file = fs::File::open(root.join(rel)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            write_lines(&batch.unwrap(), &format, &mut out).unwrap();
        }
    }
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn run(lake_dir: &Path, src: &Path, buffer_rows: usize) -> flowscope_lake::ingest::IngestSummary {
    let lake = Lake::open(lake_dir).unwrap();
    let inputs = input::expand_with(&[src.to_str().unwrap()], true).unwrap();
    let options = IngestOptions {
        buffer_rows,
        threads: 2,
        ..IngestOptions::default()
    };
    ingest(&lake, &inputs, &options, &Quiet).unwrap()
}

#[test]
fn ingests_every_record_once_and_again_adds_nothing() {
    let src = tempfile::tempdir().unwrap();
    let expected = aws_tree(src.path(), 24, 1_000);
    let lake = tempfile::tempdir().unwrap();

    let first = run(lake.path(), src.path(), 5_000);
    assert_eq!(
        (first.files, first.records, first.skipped, first.failed),
        (24, 24_000, 0, 0)
    );
    assert!(
        first.commits >= 4,
        "small buffers make several commits: {first:?}"
    );
    assert_eq!(lake_lines(lake.path()), expected);

    let again = run(lake.path(), src.path(), 5_000);
    assert_eq!((again.records, again.skipped, again.commits), (0, 24, 0));
    assert_eq!(lake_lines(lake.path()), expected);

    // The same files copied elsewhere are the same sources.
    let copy = tempfile::tempdir().unwrap();
    copy_tree(src.path(), copy.path());
    assert_eq!(run(lake.path(), copy.path(), 5_000).skipped, 24);
    assert_eq!(lake_lines(lake.path()), expected);
}

#[test]
fn fills_account_region_and_flow_log_id_from_the_s3_name() {
    let src = tempfile::tempdir().unwrap();
    aws_tree(src.path(), 1, 10);
    let lake = tempfile::tempdir().unwrap();
    run(lake.path(), src.path(), 1_000);
    let files = Lake::open(lake.path()).unwrap().data_files().unwrap();
    // Partitioned by the records' `start` (2023-11-14 in the generated data), not the file name.
    assert!(
        files.iter().all(|f| f.starts_with("date=2023-11-14/hour=")),
        "{files:?}"
    );
    let file = fs::File::open(lake.path().join(&files[0])).unwrap();
    let batch: RecordBatch = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(column("region"), "eu-west-1");
    assert_eq!(column("flow_log_id"), "fl-0a1b2c3d4e5f60718");
    // The default format has account-id: the record's own value wins over the file name's.
    assert!(
        column("account_id").starts_with("1234567890"),
        "{}",
        column("account_id")
    );
    assert_ne!(column("account_id"), "123456789012");
    assert_eq!(batch.schema().field(0).name(), "version");
}

#[test]
fn a_truncated_source_keeps_its_good_records() {
    let src = tempfile::tempdir().unwrap();
    aws_tree(src.path(), 2, 20_000);
    let victim = input::expand(&[src.path().to_str().unwrap()])
        .unwrap()
        .remove(0);
    let Input::File(path) = &victim else {
        unreachable!()
    };
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let summary = run(lake.path(), src.path(), 100_000);
    assert_eq!(summary.failed, 1);
    assert!(
        summary.records > 25_000 && summary.records < 40_000,
        "{summary:?}"
    );
    assert_eq!(lake_lines(lake.path()).len() as u64, summary.records);
}

#[test]
fn aws_parquet_files_are_ingested() {
    let src = tempfile::tempdir().unwrap();
    let text = src.path().join("flows.log");
    let mut lines = format!("{}\n", LogFormat::default_format().header()).into_bytes();
    Synth::new(5).write_lines(&LogFormat::default_format(), 500, &mut lines);
    fs::write(&text, &lines).unwrap();
    let parquet_dir = src
        .path()
        .join("AWSLogs/123456789012/vpcflowlogs/us-east-2/2023/01/21");
    fs::create_dir_all(&parquet_dir).unwrap();
    let parquet = parquet_dir
        .join("123456789012_vpcflowlogs_us-east-2_fl-00000000000000001_20230121T1000Z_abcdef01.log.parquet");
    let mut reader = TextReader::open(&Input::File(text.clone()), &TextOptions::default()).unwrap();
    let options = SinkOptions {
        kind: OutputKind::Parquet,
        format: reader.format().clone(),
        header: false,
    };
    let mut out = sink::open(&Destination::File(parquet.clone()), &options).unwrap();
    while let Some(batch) = reader.next_batch().unwrap() {
        out.write(&batch).unwrap();
    }
    out.finish().unwrap();
    fs::remove_file(&text).unwrap();

    let lake = tempfile::tempdir().unwrap();
    let summary = run(lake.path(), src.path(), 100_000);
    assert_eq!(
        (summary.files, summary.records, summary.failed),
        (1, 500, 0)
    );
    let mut expected: Vec<String> = String::from_utf8(lines)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    expected.sort();
    assert_eq!(lake_lines(lake.path()), expected);
}

/// Re-runs an ingest in a child process that aborts at a named point, then once more without,
/// and checks the lake is exact. The child is this test binary itself, running `child_ingest`.
fn crash_then_recover(point: &str) {
    let src = tempfile::tempdir().unwrap();
    let expected = aws_tree(src.path(), 12, 2_000);
    let lake = tempfile::tempdir().unwrap();
    for run in 1..=3 {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_ingest",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FLOWSCOPE_CHILD_SRC", src.path())
            .env("FLOWSCOPE_CHILD_LAKE", lake.path())
            .env("FLOWSCOPE_CRASH_AT", point)
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            !status.success(),
            "run {run} should have aborted at {point}"
        );
    }
    let summary = run(lake.path(), src.path(), 5_000);
    assert_eq!(
        lake_lines(lake.path()),
        expected,
        "after crashes at {point}"
    );
    assert_eq!(summary.failed, 0);
    let staging = lake.path().join("_flowscope/staging");
    assert_eq!(fs::read_dir(staging).unwrap().count(), 0, "no staging left");
}

/// Not a test of its own: the child process `crash_then_recover` starts (hence ignored).
#[test]
#[ignore = "run by crash_then_recover as a child process"]
fn child_ingest() {
    let (Some(src), Some(lake)) = (
        std::env::var_os("FLOWSCOPE_CHILD_SRC"),
        std::env::var_os("FLOWSCOPE_CHILD_LAKE"),
    ) else {
        return;
    };
    run(&PathBuf::from(lake), &PathBuf::from(src), 5_000);
}

#[test]
fn a_crash_after_files_are_staged_leaves_the_lake_as_before() {
    crash_then_recover("after-spill");
}

#[test]
fn a_crash_after_the_commit_record_is_rolled_forward() {
    crash_then_recover("after-commit-record");
}

#[test]
fn a_crash_while_publishing_is_rolled_forward() {
    crash_then_recover("during-publish");
}

#[test]
fn compact_merges_partitions_and_keeps_every_row() {
    let src = tempfile::tempdir().unwrap();
    let expected = aws_tree(src.path(), 24, 1_000);
    let lake_dir = tempfile::tempdir().unwrap();
    run(lake_dir.path(), src.path(), 3_000);
    let lake = Lake::open(lake_dir.path()).unwrap();
    let before = lake.data_files().unwrap();
    let done = flowscope_lake::maintenance::compact(&lake).unwrap();
    let after = lake.data_files().unwrap();
    assert!(
        before.len() > after.len(),
        "{} -> {}",
        before.len(),
        after.len()
    );
    assert_eq!(
        done.files_before - done.files_after,
        before.len() - after.len()
    );
    let mut partitions: Vec<&str> = after
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0)
        .collect();
    let count = partitions.len();
    partitions.dedup();
    assert_eq!(partitions.len(), count, "one file per partition: {after:?}");
    drop(lake);
    assert_eq!(lake_lines(lake_dir.path()), expected);
    // Compacted sources are still known: nothing comes back in.
    assert_eq!(run(lake_dir.path(), src.path(), 3_000).skipped, 24);
}

#[test]
fn prune_drops_old_partitions_only() {
    let src = tempfile::tempdir().unwrap();
    let expected = aws_tree(src.path(), 6, 2_000);
    let lake_dir = tempfile::tempdir().unwrap();
    run(lake_dir.path(), src.path(), 100_000);
    let lake = Lake::open(lake_dir.path()).unwrap();
    let files = lake.data_files().unwrap();
    let hours: Vec<i64> = files
        .iter()
        .filter_map(|f| flowscope_lake::maintenance::partition_start(f))
        .collect();
    assert!(hours.len() >= 2, "{files:?}");
    let newest = *hours.iter().max().unwrap();
    let done = flowscope_lake::maintenance::prune(&lake, newest).unwrap();
    assert_eq!(done.files, files.len() - 1);
    let left = lake.data_files().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        flowscope_lake::maintenance::partition_start(&left[0]),
        Some(newest)
    );
    drop(lake);
    let kept = lake_lines(lake_dir.path());
    assert_eq!(kept.len() as u64 + done.rows, expected.len() as u64);
    assert!(
        !lake_dir
            .path()
            .join("date=2023-11-14")
            .read_dir()
            .unwrap()
            .any(|e| {
                let hour = e.unwrap().file_name().to_string_lossy().into_owned();
                !left[0].contains(&hour)
            }),
        "emptied hour folders are removed"
    );
}

#[test]
fn files_that_are_not_flow_logs_are_skipped_not_remembered() {
    let src = tempfile::tempdir().unwrap();
    let expected = aws_tree(src.path(), 2, 100);
    fs::write(
        src.path().join("access.log"),
        "127.0.0.1 - - [10/Oct/2023:13:55:36 +0000] \"GET / HTTP/1.1\" 200 2326\n".repeat(50),
    )
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let summary = run(lake.path(), src.path(), 10_000);
    assert_eq!(
        (summary.files, summary.not_flow_logs, summary.failed),
        (3, 1, 0)
    );
    assert_eq!((summary.records, summary.rejected), (200, 0));
    assert_eq!(lake_lines(lake.path()), expected);
    let again = run(lake.path(), src.path(), 10_000);
    assert_eq!(
        (again.skipped, again.not_flow_logs, again.records),
        (2, 1, 0)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}
