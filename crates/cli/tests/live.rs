//! Live equals batch: while `flowscope serve` runs, a simulated network's flow log files arrive
//! in commits of random sizes (handed over by `flowscope ingest`), newer hours before older
//! ones; the findings the server stores as the lake changes equal, finding for finding, what a
//! batch `flowscope detect` over the same lake finds.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::request;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.to_string_lossy().ends_with(".log.gz") {
            out.push(path);
        }
    }
}

/// A finding as both sides report it, without the evidence sample (its rows tie in order).
fn comparable(mut finding: serde_json::Value) -> String {
    let object = finding.as_object_mut().unwrap();
    for stored_only in ["key", "state", "found_at", "confirmed_at", "resolved_at"] {
        object.remove(stored_only);
    }
    object["evidence"].as_object_mut().unwrap().remove("sample");
    finding.to_string()
}

#[test]
fn stored_findings_equal_a_batch_detect_after_commits_of_random_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, lake) = (dir.path().join("out"), dir.path().join("lake"));
    let simulated = common::flowscope_process()
        .args([
            "simulate",
            "--scenario",
            "three-tier",
            "--duration",
            "2h",
            "-q",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(simulated.status.success(), "{simulated:?}");
    let mut all = Vec::new();
    files(&out, &mut all);
    all.sort();
    assert!(all.len() > 20, "{} files", all.len());
    // The second hour first, then the first: records arrive late into old hours.
    let half = all.len() / 2;
    all.rotate_left(half);

    let mut command = common::flowscope_process();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--no-notify"])
        .args(["--detect-interval", "1s", "--flush-interval", "1"])
        .arg("--lake")
        .arg(&lake);
    let (child, url, seen) =
        common::start_server(command, Duration::from_secs(60)).expect("server");
    let mut child = Stopped(child);
    let addr = url.trim_start_matches("http://").to_string();
    assert!(!addr.is_empty(), "{seen}");

    // Commits of 1 to a sixth of the files, handed over to the server.
    let most = (all.len() / 6).max(2) as u64;
    let mut state = 0x5eed_u64;
    let mut commits = 0;
    let mut rest: &[PathBuf] = &all;
    let mut states_seen = std::collections::BTreeSet::new();
    while !rest.is_empty() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (1 + (state >> 33) % most) as usize;
        let (now, later) = rest.split_at(n.min(rest.len()));
        let ingested = common::flowscope_process()
            .args(["ingest", "--quiet", "--lake"])
            .arg(&lake)
            .args(now)
            .output()
            .unwrap();
        assert!(ingested.status.success(), "{ingested:?}");
        rest = later;
        commits += 1;
        let (_, body) = request(&addr, "GET", "/api/findings", b"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for f in v["findings"].as_array().unwrap() {
            states_seen.insert(f["state"].as_str().unwrap().to_string());
        }
    }
    assert!(commits >= 6, "{commits} commits");

    // Wait until the detections have seen everything.
    let caught_up = || {
        let started = Instant::now();
        loop {
            let (status, body) = request(&addr, "GET", "/api/findings", b"");
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["up_to_date"] == true && v["runs"].as_u64().unwrap() > 0 {
                break v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the detections did not catch up: {body}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    caught_up();
    // One more record, late into the lake's first hour: the next run reads that hour again
    // and takes the others as the earlier runs left them.
    let (status, body) = common::sql(&addr, "SELECT min(start) FROM flows");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = v["rows"][0][0].as_i64().expect("the lake's first start");
    let late = dir.path().join("late.log");
    std::fs::write(
        &late,
        format!(
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets \
             bytes start end action log-status\n\
             2 123456789010 eni-late 10.0.9.9 10.0.9.8 40000 443 6 1 60 {first} {} ACCEPT OK\n",
            first + 30
        ),
    )
    .unwrap();
    let (_, before) = request(&addr, "GET", "/metrics", b"");
    let ingested = common::flowscope_process()
        .args(["ingest", "--quiet", "--lake"])
        .arg(&lake)
        .arg(&late)
        .output()
        .unwrap();
    assert!(ingested.status.success(), "{ingested:?}");
    let stored = caught_up();
    let found = stored["findings"].as_array().unwrap();
    // The findings of the latest run (those not found any more are resolved and older).
    let latest = found
        .iter()
        .filter_map(|f| f["confirmed_at"].as_i64())
        .max()
        .unwrap_or(0);
    let mut live: Vec<String> = found
        .iter()
        .filter(|f| f["confirmed_at"].as_i64() == Some(latest))
        .cloned()
        .map(comparable)
        .collect();

    let batch = common::flowscope_process()
        .args(["detect", "--format", "json", "--lake"])
        .arg(&lake)
        .output()
        .unwrap();
    let mut batch: Vec<String> = String::from_utf8(batch.stdout)
        .unwrap()
        .lines()
        .map(|l| comparable(serde_json::from_str(l).unwrap()))
        .collect();
    live.sort();
    batch.sort();
    assert!(batch.len() >= 3, "the scenario's incidents: {batch:?}");
    assert_eq!(live, batch);

    // /metrics counts them by severity and state.
    let (_, metrics) = request(&addr, "GET", "/metrics", b"");
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("flowscope_findings{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(counted as usize, found.len(), "{metrics}");
    assert!(
        metrics.contains("flowscope_detection_runs_total "),
        "{metrics}"
    );
    // The run after the late record read one hour and kept the others.
    let counter = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let read = "flowscope_detection_hours_read_total";
    let kept = "flowscope_detection_hours_kept_total";
    assert_eq!(
        counter(&metrics, read) - counter(&before, read),
        1,
        "{before}\n{metrics}"
    );
    assert!(
        counter(&metrics, kept) > counter(&before, kept),
        "{before}\n{metrics}"
    );
    eprintln!(
        "{} files in {commits} commits, {} findings live and batch, states seen {states_seen:?}",
        all.len(),
        batch.len()
    );
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
}

/// The server, killed when the test ends however it ends.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
