//! What a long-lived session (the server, the shell) sees while the lake changes under it:
//! every commit at once, never a file a compaction removed, never a row twice — and sums that
//! refuse to wrap.

use std::path::Path;

use datafusion::arrow::util::display::array_value_to_string;
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_lake::{Lake, input, maintenance};
use flowscope_query::Engine;

const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";

/// 2019-08-26T19:00:00Z
const T0: i64 = 1_566_846_000;

/// Writes `n` records (in three hours) as a file named `name` in `dir`.
fn source(dir: &Path, name: &str, n: usize, bytes: i64) {
    let mut text = String::from(HEADER);
    for i in 0..n {
        let start = T0 + (i as i64 % 3) * 3_600 + i as i64;
        text.push_str(&format!(
            "2 123456789010 eni-a 10.0.1.{} 198.51.100.7 {} 443 6 1 {bytes} {start} {} ACCEPT OK\n",
            i % 250,
            1024 + i,
            start + 10
        ));
    }
    std::fs::write(dir.join(name), text).unwrap();
}

/// Ingests the files of `src` into the lake at `root` (one commit).
fn ingest_dir(root: &Path, src: &Path) {
    let lake = Lake::open(root).unwrap();
    let inputs = input::expand_with(&[src.to_str().unwrap()], true).unwrap();
    ingest(&lake, &inputs, &IngestOptions::default(), &Quiet).unwrap();
}

async fn scalar(engine: &Engine, sql: &str) -> Result<String, String> {
    let df = engine.sql(sql).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    Ok(array_value_to_string(batches[0].column(0), 0).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_session_sees_every_commit_and_only_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    for round in 0..3 {
        let src = dir.path().join(format!("src{round}"));
        std::fs::create_dir(&src).unwrap();
        source(&src, &format!("r{round}.log"), 300, 10);
        if round == 0 {
            ingest_dir(&root, &src);
        }
    }
    let engine = Engine::open(&root).await.unwrap();
    let count = "SELECT count(*) FROM flows";
    assert_eq!(scalar(&engine, count).await.unwrap(), "300");
    // Commits by another writer after the session opened: seen by the next query.
    ingest_dir(&root, &dir.path().join("src1"));
    assert_eq!(scalar(&engine, count).await.unwrap(), "600");
    ingest_dir(&root, &dir.path().join("src2"));
    assert_eq!(scalar(&engine, count).await.unwrap(), "900");

    // A query planned (files listed) before a compaction and run after it reads the files as
    // listed — they wait under _flowscope/retired — and counts each row once.
    let planned = engine.sql(count).await.unwrap();
    {
        let lake = Lake::open(&root).unwrap();
        let done = maintenance::compact(&lake).unwrap();
        assert_eq!(done.partitions, 3);
        assert_eq!(done.files_before, 9);
    }
    let batches = planned.collect().await.unwrap();
    assert_eq!(
        array_value_to_string(batches[0].column(0), 0).unwrap(),
        "900"
    );
    // And the next query reads the compacted files only.
    assert_eq!(scalar(&engine, count).await.unwrap(), "900");
    let files = scalar(
        &engine,
        "SELECT count(DISTINCT date || '/' || CAST(hour AS VARCHAR)) FROM flows",
    )
    .await
    .unwrap();
    assert_eq!(files, "3");

    // A file in a partition folder that no commit names (a copy dropped in by hand, a half
    // written file of a crashed writer) is not read.
    let stray_dir = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("date="))
        .unwrap()
        .path();
    let hour = std::fs::read_dir(&stray_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let file = std::fs::read_dir(hour.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    std::fs::copy(file.path(), hour.path().join("stray.parquet")).unwrap();
    assert_eq!(scalar(&engine, count).await.unwrap(), "900");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_that_overflow_fail_instead_of_wrapping() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Each record's bytes is a quarter of i64::MAX and some: four of them overflow.
    source(&src, "big.log", 8, i64::MAX / 4 + 1);
    ingest_dir(&root, &src);
    let engine = Engine::open(&root).await.unwrap();
    for sql in [
        "SELECT sum(bytes) FROM flows",
        "SELECT srcaddr, sum(bytes) FROM flows GROUP BY srcaddr HAVING count(*) > 0 \
         UNION ALL SELECT 'all', sum(bytes) FROM flows",
        "SELECT dstaddr, sum(bytes) AS b FROM flows GROUP BY dstaddr",
    ] {
        let err = scalar(&engine, sql).await.unwrap_err();
        assert!(err.contains("sum overflowed"), "{sql}: {err}");
        assert!(err.contains("DECIMAL(38,0)"), "{err}");
    }
    // Logs Insights' sum is the same function.
    let range = flowscope_query::TimeRange::default();
    let plan = engine
        .insights("stats sum(bytes) as b by dstAddr", range)
        .await
        .unwrap();
    let err = plan.frame.collect().await.unwrap_err().to_string();
    assert!(err.contains("sum overflowed"), "{err}");
    // Within range, and widened by hand: exact.
    let three = format!("{}", 3 * (i64::MAX / 4 + 1));
    assert_eq!(
        scalar(
            &engine,
            "SELECT sum(bytes) FROM flows WHERE srcaddr IN ('10.0.1.0', '10.0.1.1', '10.0.1.2')"
        )
        .await
        .unwrap(),
        three
    );
    let eight = format!("{}", 8 * (i128::from(i64::MAX) / 4 + 1));
    assert_eq!(
        scalar(
            &engine,
            "SELECT sum(CAST(bytes AS DECIMAL(38,0))) FROM flows"
        )
        .await
        .unwrap(),
        eight
    );
    // Nulls and filters as before.
    assert_eq!(
        scalar(
            &engine,
            "SELECT sum(bytes) FILTER (WHERE srcport = 1024) FROM flows"
        )
        .await
        .unwrap(),
        format!("{}", i64::MAX / 4 + 1)
    );
    assert_eq!(
        scalar(&engine, "SELECT sum(CAST(NULL AS BIGINT)) FROM flows")
            .await
            .unwrap(),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_time_never_break_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    source(&src, "dated.log", 10, 5);
    // A NODATA-style line with `-` times, and a file whose format has no start at all.
    std::fs::write(
        src.join("nodata.log"),
        format!("{HEADER}2 123456789010 eni-a - - - - - - - - - NODATA\n"),
    )
    .unwrap();
    // A start after the year 9999: no date folder could be read.
    std::fs::write(
        src.join("far.log"),
        format!("{HEADER}2 123456789010 eni-a 10.0.0.1 10.0.0.2 1 2 6 1 1 9223372036854775000 9223372036854775807 ACCEPT OK\n"),
    )
    .unwrap();
    std::fs::write(
        src.join("nostart.log"),
        "version srcaddr dstaddr bytes\n2 10.0.0.1 10.0.0.2 99\n",
    )
    .unwrap();
    let lake = Lake::open(&root).unwrap();
    let inputs = input::expand_with(&[src.to_str().unwrap()], true).unwrap();
    let summary = ingest(&lake, &inputs, &IngestOptions::default(), &Quiet).unwrap();
    assert_eq!((summary.records, summary.rejected), (10, 3));
    // A lake an earlier version wrote such records into (its undated partition).
    let reader = flowscope_lake::TextReader::from_bytes(
        "old".to_string(),
        b"version srcaddr bytes\n2 10.0.0.1 7\n".to_vec(),
        &Default::default(),
    )
    .unwrap();
    let mut reader = reader;
    let format = reader.format().clone();
    let batch = reader.next_batch().unwrap().unwrap();
    let undated = flowscope_lake::ingest::lake_batch(&batch, &format).unwrap();
    flowscope_lake::ingest::append(&lake, &[undated], Vec::new()).unwrap();
    assert!(root.join("date=__HIVE_DEFAULT_PARTITION__").exists());
    drop(lake);
    let engine = Engine::open(&root).await.unwrap();
    assert_eq!(
        scalar(&engine, "SELECT count(*) FROM flows").await.unwrap(),
        "10"
    );
    assert_eq!(
        scalar(
            &engine,
            "SELECT count(*) FROM flows WHERE date >= DATE '2019-01-01'"
        )
        .await
        .unwrap(),
        "10"
    );
    // Prune removes the undated files (and nothing dated after the cutoff).
    let lake = Lake::open(&root).unwrap();
    let pruned = maintenance::prune(&lake, 0).unwrap();
    assert_eq!(pruned.rows, 1);
    drop(lake);
    assert!(!root.join("date=__HIVE_DEFAULT_PARTITION__").exists());
    assert_eq!(
        scalar(&engine, "SELECT count(*) FROM flows").await.unwrap(),
        "10"
    );
}
