//! `flowscope detect`, `diagnose` and `alarms` on the emulator's `three-tier` scenario: every
//! injected incident in `truth.json` is found with the right addresses, clean traffic raises
//! nothing above low severity, and alarms notify a real HTTP endpoint.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use common::{flowscope, succeeds};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Simulates one hour of the scenario into `dir/out` and ingests it into `dir/lake`.
fn scenario(dir: &Path, incidents: bool) -> (PathBuf, Value) {
    let out = dir.join("out");
    let lake = dir.join("lake");
    let mut cmd = flowscope();
    cmd.args([
        "simulate",
        "--scenario",
        "three-tier",
        "--duration",
        "1h",
        "-q",
        "--out",
    ])
    .arg(&out);
    if !incidents {
        cmd.arg("--no-incidents");
    }
    cmd.assert().success();
    flowscope()
        .arg("ingest")
        .arg(out.join("AWSLogs"))
        .arg("--lake")
        .arg(&lake)
        .assert()
        .success();
    let truth = serde_json::from_slice(&std::fs::read(out.join("truth.json")).unwrap()).unwrap();
    (lake, truth)
}

/// Public address -> the private address flow logs show for it.
fn private_of() -> HashMap<String, String> {
    let topology =
        flowscope_vpc::Topology::from_toml(flowscope_capture::scenario::THREE_TIER_TOPOLOGY)
            .unwrap();
    topology
        .interfaces
        .iter()
        .filter_map(|i| {
            i.public_ip
                .map(|p| (p.to_string(), i.primary().to_string()))
        })
        .collect()
}

fn lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn detect(lake: &Path) -> Vec<Value> {
    let out = succeeds(
        flowscope()
            .args(["detect", "--format", "json", "--lake"])
            .arg(lake)
            .arg("--threat-intel")
            .arg(repo().join("testdata/threat-intel/example.txt")),
    );
    lines(&out.stdout)
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[test]
fn incidents_found_and_explained_clean_traffic_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, truth) = scenario(&dir.path().join("incidents"), true);
    let findings = detect(&lake);
    let private = private_of();
    let local = |a: &str| private.get(a).cloned().unwrap_or_else(|| a.to_string());
    for f in &findings {
        for key in [
            "detection",
            "severity",
            "src",
            "dst",
            "dst_port",
            "first_seen",
            "last_seen",
            "records",
            "bytes",
            "summary",
            "evidence",
        ] {
            assert!(f.get(key).is_some(), "{key} missing from {f}");
        }
        assert!(
            f["evidence"]["sql"]
                .as_str()
                .unwrap()
                .contains("FROM flows")
        );
    }
    let has = |detection: &str, src: &str, dst: Option<&str>, port: Option<u64>| {
        findings.iter().any(|f| {
            f["detection"] == detection
                && s(&f["src"]).as_deref() == Some(src)
                && dst.is_none_or(|d| s(&f["dst"]).as_deref() == Some(d))
                && port.is_none_or(|p| f["dst_port"].as_u64() == Some(p))
        })
    };
    let mut diagnosed = 0;
    for incident in truth["incidents"].as_array().unwrap() {
        let kind = incident["kind"].as_str().unwrap();
        let srcs: Vec<String> = incident["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let dst = local(incident["destinations"][0].as_str().unwrap());
        let port = incident["ports"][0].as_u64().unwrap();
        match kind {
            "vertical_port_scan" => {
                assert!(
                    has("vertical_port_scan", &srcs[0], Some(&dst), None),
                    "{kind}"
                )
            }
            "horizontal_sweep" => {
                assert!(
                    has("horizontal_sweep", &srcs[0], None, Some(port)),
                    "{kind}"
                )
            }
            "ssh_brute_force" => {
                let f = findings
                    .iter()
                    .find(|f| f["detection"] == "ssh_brute_force")
                    .expect("ssh brute force");
                assert_eq!(
                    (s(&f["src"]), s(&f["dst"])),
                    (Some(srcs[0].clone()), Some(dst))
                );
                assert_eq!(f["severity"], "high", "accepted attempts are high severity");
            }
            "rdp_attempts" => {
                for src in &srcs {
                    assert!(
                        has("rdp_brute_force", src, None, Some(3389)),
                        "{kind} {src}"
                    );
                }
            }
            "data_exfiltration" => {
                assert!(
                    has("data_exfiltration", &srcs[0], Some(&dst), Some(port)),
                    "{kind}"
                )
            }
            "beaconing" => {
                assert!(has("beaconing", &srcs[0], Some(&dst), Some(port)), "{kind}");
                // The destination is on the threat-intel list: accepted outbound is critical.
                assert!(findings.iter().any(|f| f["detection"] == "threat_intel"
                    && s(&f["src"]).as_deref() == Some(srcs[0].as_str())
                    && f["severity"] == "critical"));
            }
            "nacl_blocks_replies" | "sg_blocks_tier" => {
                let out = flowscope()
                    .args(["diagnose", "--format", "json", "--lake"])
                    .arg(&lake)
                    .args([
                        "--src",
                        &srcs[0],
                        "--dst",
                        &dst,
                        "--port",
                        &port.to_string(),
                    ])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let d = lines(&out.stdout);
                let want = if kind == "nacl_blocks_replies" {
                    "nacl_inbound_return"
                } else {
                    "inbound_sg_or_nacl"
                };
                let expected_eni = if kind == "nacl_blocks_replies" {
                    &incident["interfaces"][0]
                } else {
                    &incident["interfaces"][1]
                };
                assert!(
                    d.iter().any(|x| x["cause"] == want
                        && x["interface_id"] == *expected_eni
                        && x["src"] == srcs[0].as_str()
                        && x["records"].as_u64().unwrap() > 0
                        && x["explanation"].as_str().unwrap().len() > 50),
                    "{kind}: {d:?}"
                );
                diagnosed += 1;
            }
            other => panic!("an incident kind this test does not know: {other}"),
        }
    }
    assert_eq!(diagnosed, 2);
    // The batch host's rejected replies are not a port scan by the storage service.
    assert!(
        !findings
            .iter()
            .any(|f| f["detection"] == "vertical_port_scan"
                && s(&f["src"]).as_deref() == Some("52.94.2.10"))
    );
    // Traffic through the NAT gateway is attributed to the instance, not the gateway.
    assert!(
        !findings
            .iter()
            .any(|f| f["detection"] == "data_exfiltration"
                && s(&f["src"]).as_deref() == Some("10.0.0.10"))
    );

    // The same scenario without incidents: nothing above low severity.
    let (clean, _) = scenario(&dir.path().join("clean"), false);
    let quiet = detect(&clean);
    let loud: Vec<&Value> = quiet.iter().filter(|f| f["severity"] != "low").collect();
    assert!(loud.is_empty(), "false alarms on clean traffic: {loud:#?}");
    // Its only rejections are background probes of closed ports: all inbound.
    let out = flowscope()
        .args(["diagnose", "--format", "json", "--lake"])
        .arg(&clean)
        .output()
        .unwrap();
    let causes: BTreeSet<String> = lines(&out.stdout)
        .iter()
        .map(|d| d["cause"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(causes, BTreeSet::from(["inbound_sg_or_nacl".to_string()]));

    alarms_notify_a_webhook(&lake, dir.path());
    custom_rules(&lake, dir.path());
}

/// The example alarms file over the incident lake: the RDP alarm goes OK -> ALARM -> OK and
/// each change reaches a real HTTP server, after one failed delivery is retried.
fn alarms_notify_a_webhook(lake: &Path, dir: &Path) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let calls = Arc::new(Mutex::new(0u32));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (r2, c2) = (Arc::clone(&received), Arc::clone(&calls));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (r, c) = (Arc::clone(&r2), Arc::clone(&c2));
            async move {
                let mut n = c.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                r.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = std::fs::read_to_string(repo().join("examples/alarms.toml"))
        .unwrap()
        .replace(
            "alarm_actions = [\"stdout\"]\nok_actions = [\"stdout\"]",
            "alarm_actions = [\"hook\"]\nok_actions = [\"hook\"]",
        )
        + &format!("\n[[notifications]]\nname = \"hook\"\nwebhook = \"http://{addr}/hook\"\n");
    let path = dir.join("alarms.toml");
    std::fs::write(&path, config).unwrap();
    let out = succeeds(
        flowscope()
            .args(["alarms", "--format", "json", "--config"])
            .arg(&path)
            .arg("--lake")
            .arg(lake),
    );
    let changes: Vec<Value> = lines(&out.stdout)
        .into_iter()
        .filter(|v| v.get("alarm_name").is_some())
        .collect();
    let rdp: Vec<(String, String)> = changes
        .iter()
        .filter(|c| c["alarm_name"] == "rdp-attempts")
        .map(|c| (s(&c["old_state"]).unwrap(), s(&c["new_state"]).unwrap()))
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        rdp,
        pairs(&[
            ("INSUFFICIENT_DATA", "OK"),
            ("OK", "ALARM"),
            ("ALARM", "OK")
        ])
    );
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "each transition delivered once: {got:?}");
    assert_eq!(*calls.lock().unwrap(), 4, "one failed attempt retried");
    let alarm: Value = serde_json::from_str(got[1]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(alarm["NewStateValue"], "ALARM");
    assert_eq!(alarm["OldStateValue"], "OK");
    assert_eq!(alarm["Trigger"]["MetricName"], "RejectedRDP");
    assert_eq!(got[1]["Type"], "Notification");
    // The SSH alarm (AWS's example): stdout notifications are SNS-shaped JSON lines.
    let stdout_msgs: Vec<Value> = lines(&out.stdout)
        .into_iter()
        .filter(|v| v.get("Type").is_some())
        .collect();
    assert!(
        stdout_msgs
            .iter()
            .all(|m| m["Subject"].as_str().unwrap().contains("rejected-ssh"))
    );
}

/// A custom rule (SQL) and a custom rule (Insights) become findings; thresholds filter rows.
fn custom_rules(lake: &Path, dir: &Path) {
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        r#"
disable = ["beaconing", "threat_intel", "rejected_spike", "exposed_sensitive_port",
           "vertical_port_scan", "horizontal_sweep", "ssh_brute_force", "rdp_brute_force",
           "data_exfiltration"]

[[rules]]
id = "postgres-from-reporting"
severity = "high"
technique = "T1021"
query = "SELECT srcaddr, dstaddr, dstport, count(*) AS records, sum(bytes) AS bytes, min(start) AS first_seen, max(\"end\") AS last_seen FROM flows WHERE dstport = 5432 AND action = 'REJECT' GROUP BY srcaddr, dstaddr, dstport"
thresholds = { records = 3 }
summary = "{srcaddr} was refused {records} times by PostgreSQL on {dstaddr}"

[[rules]]
id = "rdp-sources"
severity = "medium"
language = "insights"
query = "filter dstPort = 3389 and action = 'REJECT' | stats count(*) as records by srcAddr"
thresholds = { records = 1000000 }
summary = "{srcAddr}"
"#,
    )
    .unwrap();
    let out = succeeds(
        flowscope()
            .args(["detect", "--format", "json", "--lake"])
            .arg(lake)
            .arg("--rules")
            .arg(&rules),
    );
    let f = lines(&out.stdout);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["detection"], "postgres-from-reporting");
    assert_eq!(f[0]["src"], "10.0.20.40");
    assert_eq!(f[0]["dst_port"], 5432);
    let n = f[0]["records"].as_u64().unwrap();
    assert!(n >= 3);
    assert_eq!(
        f[0]["summary"],
        format!("10.0.20.40 was refused {n} times by PostgreSQL on 10.0.30.11")
    );
    let _: IpAddr = "10.0.20.40".parse().unwrap();
    // A rules file mistake names the line.
    std::fs::write(&rules, "[thresholds]\nvertical_scan_port = 3\n").unwrap();
    let out = flowscope()
        .args(["detect", "--lake"])
        .arg(lake)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.toml:2:1: unknown field `vertical_scan_port`"),
        "{err}"
    );
}

/// Every file under `dir` with its bytes, by path below `dir`.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn generate_takes_every_start_form_and_realistic_traffic_raises_no_false_sweeps() {
    let tmp = tempfile::tempdir().unwrap();
    let gen_into = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let run = flowscope()
            .args(["generate", "--records", "60000", "--files", "24", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        out
    };
    // The default --start as Unix seconds and as a date-time: the same files, byte for byte.
    let seconds = gen_into("seconds", &[]);
    let iso = gen_into("iso", &["--start", "2023-11-14T22:15:00Z"]);
    assert_eq!(tree(&seconds), tree(&iso));
    let bad = flowscope()
        .args(["generate", "--start", "yesterday-ish", "--out"])
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a time"));

    // Realistic traffic (connections answered, a few services per client, heavy hitters,
    // the internet knocking once per address) raises no scan, sweep or brute force, and its
    // files differ in size.
    let lake = |src: &Path, name: &str| {
        let lake = tmp.path().join(name);
        flowscope()
            .arg("ingest")
            .arg(src)
            .arg("--lake")
            .arg(&lake)
            .arg("--quiet")
            .assert()
            .success();
        lake
    };
    let count =
        |findings: &[Value], name: &str| findings.iter().filter(|f| f["detection"] == name).count();
    let realistic_src = gen_into("realistic", &["--traffic", "realistic"]);
    let realistic = detect(&lake(&realistic_src, "realistic-lake"));
    for noisy in [
        "horizontal_sweep",
        "vertical_port_scan",
        "ssh_brute_force",
        "rdp_brute_force",
    ] {
        assert_eq!(count(&realistic, noisy), 0, "{noisy}: {realistic:#?}");
    }
    let sizes: Vec<usize> = tree(&realistic_src).values().map(Vec::len).collect();
    let (small, large) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(large > &(small * 5), "file sizes {small}..{large}");
}
