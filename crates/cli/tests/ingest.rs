//! `flowscope ingest` killed at random moments, then rerun: the lake ends up exact.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::Instant;

use flowscope_record::{LogFormat, write_lines};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use predicates::prelude::*;
use pretty_assertions::assert_eq;

use common::{flowscope, succeeds};

/// Every record of the lake as a sorted default-format line.
fn lake_lines(lake: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![lake.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('_') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                files.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for file in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(fs::File::open(file).unwrap()).unwrap();
        for batch in reader.build().unwrap() {
            write_lines(&batch.unwrap(), &LogFormat::default_format(), &mut out).unwrap();
        }
    }
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn killed_at_random_moments_then_rerun_gives_exactly_the_records() {
    let work = tempfile::tempdir().unwrap();
    let (src, lake) = (work.path().join("src"), work.path().join("lake"));
    flowscope()
        .args(["generate", "--records", "150000", "--files", "60", "--out"])
        .arg(&src)
        .assert()
        .success();
    let text = flowscope()
        .args(["convert", "--no-header"])
        .arg(&src)
        .output()
        .unwrap();
    let mut expected: Vec<String> = String::from_utf8(text.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 150_000);

    // How long an uninterrupted ingest takes here, to spread the kills over it.
    let began = Instant::now();
    flowscope()
        .args(["ingest", "--quiet", "--buffer-rows", "10000", "--lake"])
        .arg(work.path().join("timing"))
        .arg(&src)
        .assert()
        .success();
    let full = began.elapsed();

    // Each kill lands at a random 3-25% of a full run's time, so three kills use at most 75% of
    // the work and every one of them interrupts a run that is still going.
    let mut seed: u64 = 0x5eed_f10e;
    let mut killed = 0;
    for _ in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = full.mul_f64(0.03 + 0.22 * (seed % 1000) as f64 / 1000.0);
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
            .args(["ingest", "--quiet", "--buffer-rows", "10000", "--lake"])
            .arg(&lake)
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            break; // finished on its own: nothing left to interrupt
        }
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        killed += 1;
    }
    assert!(
        killed >= 3,
        "only {killed} runs were still going when killed"
    );

    // Ctrl-C (SIGINT) says what is in the lake and that a rerun completes it (exit 130).
    let interrupted = work.path().join("interrupted");
    let child = StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
        .args([
            "ingest",
            "--buffer-rows",
            "10000",
            "--threads",
            "1",
            "--lake",
        ])
        .arg(&interrupted)
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(full.mul_f64(0.4));
    let _ = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // One thread is slower than the timed run: it is still going at 40 % of that time.
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted. In the lake:") && err.contains("Run the same command again"),
        "{err}"
    );
    flowscope()
        .args(["ingest", "--quiet", "--lake"])
        .arg(&interrupted)
        .arg(&src)
        .assert()
        .success();
    assert_eq!(lake_lines(&interrupted), expected);

    flowscope()
        .args(["ingest", "--buffer-rows", "10000", "--lake"])
        .arg(&lake)
        .arg(&src)
        .assert()
        .success()
        .stderr(predicate::str::contains("0 failed"));
    assert_eq!(lake_lines(&lake), expected);
    let staging = lake.join("_flowscope/staging");
    assert_eq!(fs::read_dir(staging).unwrap().count(), 0);

    // And once more: nothing to add.
    flowscope()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg(&src)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "ingested 0 records from 60 files (60 already in the lake",
        ));
    assert_eq!(lake_lines(&lake).len(), 150_000);
}

/// A temporary folder with `src/good.log` (AWS's default-format example) in it.
fn folder_with_a_good_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/aws/default.log"),
        src.join("good.log"),
    )
    .unwrap();
    (work, src)
}

/// `flowscope ingest SRC --lake LAKE` or `flowscope convert SRC --to jsonl`, expected to exit 1
/// (some input failed); its output.
fn ingest_or_convert(command: &str, src: &Path, lake: &Path) -> std::process::Output {
    let mut cmd = flowscope();
    cmd.arg(command).arg(src);
    if command == "ingest" {
        cmd.arg("--lake").arg(lake);
    } else {
        cmd.args(["--to", "jsonl"]);
    }
    cmd.timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .get_output()
        .clone()
}

#[cfg(unix)]
#[test]
fn odd_entries_in_an_input_folder_are_counted_failures_and_the_rest_goes_on() {
    let (work, src) = folder_with_a_good_file();
    std::os::unix::fs::symlink(src.join("gone.log"), src.join("dangling.log")).unwrap();
    std::os::unix::fs::symlink(&src, src.join("loop")).unwrap();
    assert!(
        StdCommand::new("mkfifo")
            .arg(src.join("pipe.log"))
            .status()
            .unwrap()
            .success()
    );
    for command in ["ingest", "convert"] {
        let out = ingest_or_convert(command, &src, &work.path().join("lake"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("dangling.log"), "{command:?}: {err}");
        assert!(
            err.contains("pipe.log") && err.contains("not a regular file"),
            "{err}"
        );
        assert!(
            err.contains("2 inputs failed") || err.contains("2 failed"),
            "{command:?}: {err}"
        );
        assert!(
            !err.contains("os error 2): No such file"),
            "said once: {err}"
        );
    }
}

#[test]
fn a_header_with_an_unknown_field_is_a_located_failure_not_swapped_columns() {
    let (work, src) = folder_with_a_good_file();
    // A typo (`srcadr`) in a header whose columns differ from the default order.
    let file = |srcaddr: &str| {
        format!(
            "version account-id interface-id dstaddr {srcaddr} srcport dstport protocol packets \
             bytes start end action log-status\n\
             2 123456789010 eni-1235b8ca123456789 10.0.0.2 10.0.0.1 443 49152 6 10 840 \
             1620000000 1620000060 ACCEPT OK\n"
        )
    };
    fs::write(src.join("typo.log"), file("srcadr")).unwrap();
    fs::write(
        src.join("twice.log"),
        "dstaddr srcaddr dstaddr\n10.0.0.2 10.0.0.1 10.0.0.3\n",
    )
    .unwrap();
    let typo = "typo.log: line 1: a header line that is not valid: header word 5: unknown field \
                `srcadr`; did you mean `srcaddr`?";
    let twice = "twice.log: line 1: a header line that is not valid: header line: field \
                 `dstaddr` appears twice";
    for command in ["ingest", "convert"] {
        let out = ingest_or_convert(command, &src, &work.path().join("lake"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(typo), "{command}: {err}");
        assert!(err.contains(twice), "{command}: {err}");
        assert!(
            err.contains("2 inputs failed") || err.contains("2 failed"),
            "{command}: {err}"
        );
        if command == "convert" {
            // Only the good file's records come out; none with swapped columns.
            let out = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.lines().count(), 7, "{out}");
            assert!(!out.contains("10.0.0."), "{out}");
        }
    }
    // Fixed, the file is taken on the next run (a failed file is not remembered as ingested).
    fs::write(src.join("typo.log"), file("srcaddr")).unwrap();
    fs::remove_file(src.join("twice.log")).unwrap();
    flowscope()
        .args(["ingest", "--lake"])
        .arg(work.path().join("lake"))
        .arg(&src)
        .assert()
        .success()
        .stderr(predicate::str::contains("0 failed"));
    let lines = lake_lines(&work.path().join("lake"));
    assert!(
        lines.contains(
            &"2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 443 49152 6 10 840 \
              1620000000 1620000060 ACCEPT OK"
                .to_string()
        ),
        "{lines:#?}"
    );
}

#[test]
fn a_truncated_object_then_its_complete_version_gives_each_record_once() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2021/05/03/\
               123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20210503T1205Z_abcdef01.log.gz";
    let mut text = String::from(
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes \
         start end action log-status\n",
    );
    let mut expected = Vec::new();
    for i in 0..50_000u64 {
        let line = format!(
            "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.{}.{} 10.1.0.1 {} 443 6 3 {} {} {} ACCEPT OK",
            i / 250,
            i % 250,
            1024 + i % 60_000,
            100 + i,
            1_620_043_500 + i % 300,
            1_620_043_560 + i % 300,
        );
        text.push_str(&line);
        text.push('\n');
        expected.push(line);
    }
    expected.sort();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    let complete = encoder.finish().unwrap();
    let lake = work.path().join("lake");
    let place = |copy: &str, bytes: &[u8]| {
        let path = work.path().join(copy).join(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        work.path().join(copy)
    };
    // Two downloads that broke off, then the whole object, each from its own copy of the tree.
    let third = place("third", &complete[..complete.len() / 3]);
    let two_thirds = place("two-thirds", &complete[..complete.len() * 2 / 3]);
    let whole = place("whole", &complete);
    for (copy, code) in [(&third, 1), (&two_thirds, 1), (&whole, 0)] {
        let out = flowscope()
            .args(["ingest", "--lake"])
            .arg(&lake)
            .arg(copy)
            .assert()
            .code(code)
            .get_output()
            .clone();
        let err = String::from_utf8_lossy(&out.stderr);
        if copy != &third {
            assert!(
                err.contains("a longer version of a source taken before"),
                "{err}"
            );
        }
    }
    let lines = lake_lines(&lake);
    assert_eq!(lines.len(), 50_000);
    assert_eq!(lines, expected);
    // The same again: nothing to add.
    flowscope()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg(&whole)
        .assert()
        .success()
        .stderr(predicate::str::contains("1 already in the lake"));

    // Other content under the same key is refused, located, and taken only when asked.
    let other = work.path().join("other");
    let changed = text.replace("ACCEPT", "REJECT");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(changed.as_bytes()).unwrap();
    place("other", &encoder.finish().unwrap());
    flowscope()
        .args(["ingest", "--lake"])
        .arg(&lake)
        .arg(&other)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "does not continue it; not taken, so that no record is taken twice",
        ))
        .stderr(predicate::str::contains("--allow-changed"))
        .stderr(predicate::str::contains("1 failed"));
    assert_eq!(lake_lines(&lake).len(), 50_000);
    flowscope()
        .args(["ingest", "--allow-changed", "--lake"])
        .arg(&lake)
        .arg(&other)
        .assert()
        .success();
    assert_eq!(lake_lines(&lake).len(), 100_000);
}

/// Records in the lake, as `flowscope sql` counts them.
fn lake_count(lake: &Path) -> u64 {
    let out = succeeds(
        flowscope()
            .args(["sql", "--format", "csv", "--lake"])
            .arg(lake)
            .arg("SELECT count(*) AS n FROM flows"),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn after_a_prune_reingest_takes_the_files_again_and_dry_run_deletes_nothing() {
    let (work, src) = folder_with_a_good_file();
    let lake = work.path().join("lake");
    let ingest = |extra: &[&str]| {
        let out = succeeds(
            flowscope()
                .arg("ingest")
                .arg(&src)
                .arg("--lake")
                .arg(&lake)
                .args(extra),
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let prune = |extra: &[&str]| {
        let out = succeeds(
            flowscope()
                .args(["lake", "prune", "--older-than", "1d", "--lake"])
                .arg(&lake)
                .args(extra),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ingest(&[]);
    let records = lake_count(&lake);
    assert!(records > 0);

    // The AWS example's records are from 2014: older than a day. --dry-run only says so.
    let plan = prune(&["--dry-run"]);
    assert!(
        plan.starts_with("would prune ") && plan.contains(&format!("{records} rows")),
        "{plan}"
    );
    assert!(plan.contains("nothing was deleted"), "{plan}");
    assert_eq!(lake_count(&lake), records);
    let done = prune(&[]);
    assert!(
        done.starts_with("pruned ") && done.contains("--reingest"),
        "{done}"
    );
    assert_eq!(lake_count(&lake), 0);

    // The lake remembers the file: taken again only when asked, and the message says how.
    let again = ingest(&[]);
    assert!(
        again.contains("ingested 0 records") && again.contains("--reingest"),
        "{again}"
    );
    assert_eq!(lake_count(&lake), 0);
    let back = ingest(&["--reingest"]);
    assert!(
        back.contains(&format!("ingested {records} records")),
        "{back}"
    );
    assert_eq!(lake_count(&lake), records);
}
