//! `flowscope demo`: a fresh folder to a report naming every injected incident, then the
//! dashboard and API serving the same lake.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::flowscope_process as flowscope;

/// The report's traffic line (records, interfaces, bytes).
fn traffic_line(report: &str) -> String {
    let mut lines = report.lines().skip_while(|l| *l != "TRAFFIC");
    lines.nth(1).expect("a TRAFFIC section").trim().to_string()
}

fn check_report(report: &str, demo: &Path) {
    let truth: Value =
        serde_json::from_slice(&std::fs::read(demo.join("vpc/truth.json")).unwrap()).unwrap();
    let incidents = truth["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 8, "{truth}");
    assert!(
        report.contains("INJECTED INCIDENTS (truth.json): 8 of 8 found"),
        "{report}"
    );
    assert!(!report.contains("MISSED"), "{report}");
    for incident in incidents {
        let kind = incident["kind"].as_str().unwrap();
        let line = report
            .lines()
            .skip_while(|l| !l.starts_with("INJECTED INCIDENTS"))
            .find(|l| l.split_whitespace().nth(1) == Some(kind))
            .unwrap_or_else(|| panic!("no line for {kind}:\n{report}"));
        assert_eq!(line.split_whitespace().next(), Some("ok"), "{line}");
        let source = incident["sources"][0].as_str().unwrap();
        assert!(line.contains(source), "{line}");
    }
    for detection in [
        "vertical_port_scan",
        "horizontal_sweep",
        "ssh_brute_force",
        "rdp_brute_force",
        "data_exfiltration",
        "beaconing",
        "threat_intel",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(&format!(" {detection} "))),
            "{detection} missing from the findings:\n{report}"
        );
    }
    assert!(report.contains("nacl_inbound_return"), "{report}");
    assert!(report.contains("10.0.20.40 -> 10.0.30.11:5432"), "{report}");
    assert!(report.contains("DIG DEEPER"), "{report}");
    assert!(
        traffic_line(report).contains("flow log records from"),
        "{report}"
    );
}

/// Files under `dir`, at any depth.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn demo_reports_every_incident_then_serves_the_dashboard() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");

    // A folder with someone else's files is never touched.
    std::fs::create_dir(&demo).unwrap();
    std::fs::write(demo.join("notes.txt"), "mine").unwrap();
    let out = flowscope()
        .args(["demo", "--no-serve", "--duration", "1h", "--dir"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a flowscope demo folder"), "{err}");
    assert_eq!(
        std::fs::read_to_string(demo.join("notes.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_file(demo.join("notes.txt")).unwrap();

    // --no-serve: the batch part and the report, then exit 0.
    let out = flowscope()
        .args(["demo", "--no-serve", "--duration", "1h", "--dir"])
        .arg(&demo)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}\n{err}");
    check_report(&report, &demo);
    assert!(err.contains("[2/5] ingesting"), "{err}");
    assert!(demo.join("vpc/AWSLogs").is_dir());
    assert!(demo.join("threat-intel.txt").is_file());
    let first_traffic = traffic_line(&report);

    // A mistyped argument is rejected before anything is touched: the demo just made is kept.
    let files_before = count_files(&demo);
    let out = flowscope()
        .args(["demo", "--no-serve", "--duration", "2x", "--dir"])
        .arg(&demo)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--duration `2x`") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(count_files(&demo), files_before, "{err}");
    assert!(demo.join("lake").is_dir() && demo.join("vpc/truth.json").is_file());

    // The commands the report suggests work as printed (all but `serve`, started below).
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flowscope"), bin.join("flowscope")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let suggested: Vec<&str> = report
        .lines()
        .skip_while(|l| *l != "DIG DEEPER")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    assert!(suggested.len() >= 6, "{report}");
    for line in suggested
        .iter()
        .filter(|l| !l.starts_with("flowscope serve"))
    {
        let out = Command::new("bash")
            .args(["-c", line])
            .env("PATH", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.trim().is_empty(),
            "`{line}`: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if line.starts_with("flowscope detect") {
            assert!(
                stdout.contains("\"detection\":\"data_exfiltration\""),
                "{stdout}"
            );
        }
        if line.starts_with("flowscope diagnose") {
            assert!(stdout.contains("10.0.20.40"), "{stdout}");
        }
    }

    // Again in the same folder, serving: the earlier demo is replaced (no doubled records),
    // the same report is printed, and the dashboard and API answer on the printed address.
    let mut command = flowscope();
    command
        .args([
            "demo",
            "--duration",
            "1h",
            "--listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(&demo);
    let (mut child, url, report) = common::start_server(command, Duration::from_secs(600))
        .unwrap_or_else(|seen| panic!("the demo printed no dashboard address:\n{seen}"));
    check_report(&report, &demo);
    assert_eq!(traffic_line(&report), first_traffic);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let http = reqwest::Client::new();
        let page = http.get(&url).send().await?;
        assert_eq!(page.status(), 200);
        let html = page.text().await?;
        assert!(html.contains("flowscope"), "{html}");
        // The server's findings are stored by its detection runs: the first runs at start-up.
        let waited = std::time::Instant::now();
        let findings: Value = loop {
            let v: Value = serde_json::from_str(
                &http
                    .get(format!("{url}/api/findings"))
                    .send()
                    .await?
                    .text()
                    .await?,
            )
            .unwrap();
            if v["runs"].as_u64() > Some(0) && v["up_to_date"] == true {
                break v;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(300),
                "no detection run stored findings: {v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let ids: Vec<&str> = findings["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["detection"].as_str().unwrap())
            .collect();
        for id in [
            "vertical_port_scan",
            "ssh_brute_force",
            "data_exfiltration",
            "beaconing",
        ] {
            assert!(ids.contains(&id), "{id} not served: {ids:?}");
        }
        let alarms: Value = serde_json::from_str(
            &http
                .get(format!("{url}/api/alarms"))
                .send()
                .await?
                .text()
                .await?,
        )
        .unwrap();
        assert!(
            alarms.to_string().contains("rejected-ssh-hourly"),
            "{alarms}"
        );
        Ok::<(), reqwest::Error>(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap();
}
