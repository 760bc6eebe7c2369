//! `flowscope simulate` and `flowscope flow-logs validate`, run as a user runs them.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use flowscope_lake::deliver::FirehoseBody;
use predicates::prelude::*;

use common::{flowscope, succeeds};

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn sql(lake: &Path, query: &str) -> String {
    let out = succeeds(
        flowscope()
            .args(["sql", query, "--lake"])
            .arg(lake)
            .args(["--format", "csv"]),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn scenario_writes_an_s3_layout_that_ingest_reads_whole_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bucket");
    flowscope()
        .args([
            "simulate",
            "--scenario",
            "three-tier",
            "--duration",
            "15m",
            "--seed",
            "42",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stderr(
            predicate::str::contains("simulated three-tier")
                .and(predicate::str::contains("8 incidents")),
        );
    let gz = files(&out, ".log.gz");
    assert_eq!(gz.len(), 3, "three 5-minute files: {gz:?}");
    for f in &gz {
        let rel = f.strip_prefix(&out).unwrap().to_string_lossy().to_string();
        assert!(rel.starts_with("AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/02/123456789012_vpcflowlogs_us-east-1_fl-0d1e2f3a4b5c6d7e8_20261102T08"), "{rel}");
        assert!(gunzip(f).starts_with("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n"));
    }
    let truth: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("truth.json")).unwrap()).unwrap();
    assert_eq!(truth["scenario"], "three-tier");
    assert_eq!(truth["seed"], 42);
    let kinds: Vec<&str> = truth["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "vertical_port_scan",
            "horizontal_sweep",
            "ssh_brute_force",
            "rdp_attempts",
            "data_exfiltration",
            "beaconing",
            "nacl_blocks_replies",
            "sg_blocks_tier"
        ]
    );

    // The ingest reads every line: nothing rejected.
    let lake = dir.path().join("lake");
    flowscope()
        .arg("ingest")
        .arg(&out)
        .arg("--lake")
        .arg(&lake)
        .arg("-q")
        .assert()
        .success()
        .stderr(
            predicate::str::contains("from 3 files")
                .and(predicate::str::contains("0 lines rejected")),
        );
    let lines: usize = gz.iter().map(|f| gunzip(f).lines().count() - 1).sum();
    assert_eq!(
        sql(&lake, "select count(*) n from flows"),
        format!("n\n{lines}\n")
    );
    // The port scan shows up as rejected probes of many ports of the bastion from one address.
    let scan = sql(
        &lake,
        "select count(distinct dstport) p from flows where srcaddr = '198.51.100.23' and action = 'REJECT'",
    );
    let ports: u32 = scan.lines().nth(1).unwrap().parse().unwrap();
    assert!(ports >= 80, "{scan}");

    // Same seed: the same bytes.
    let again = dir.path().join("again");
    flowscope()
        .args([
            "simulate",
            "--scenario",
            "three-tier",
            "--duration",
            "15m",
            "--seed",
            "42",
            "-q",
            "--out",
        ])
        .arg(&again)
        .assert()
        .success();
    let gz2 = files(&again, ".log.gz");
    assert_eq!(gz2.len(), gz.len());
    for (a, b) in gz.iter().zip(&gz2) {
        assert_eq!(a.file_name(), b.file_name());
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap());
    }
}

#[test]
fn scenario_straight_into_a_lake_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let to = format!("lake:{}", lake.display());
    for _ in 0..2 {
        flowscope()
            .args([
                "simulate",
                "--scenario",
                "three-tier",
                "--duration",
                "10m",
                "--no-incidents",
                "--to",
                &to,
            ])
            .assert()
            .success();
    }
    let n = sql(
        &lake,
        "select count(*) n, count(distinct srcaddr) s from flows where srcaddr = '198.51.100.23'",
    );
    assert_eq!(n, "n,s\n0,0\n", "no incidents");
    let total: u64 = sql(&lake, "select count(*) n from flows")
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(total > 1000);
    // Running the same simulation again added nothing.
    let once = dir.path().join("once");
    flowscope()
        .args([
            "simulate",
            "--scenario",
            "three-tier",
            "--duration",
            "10m",
            "--no-incidents",
            "--to",
        ])
        .arg(format!("lake:{}", once.display()))
        .assert()
        .success();
    assert_eq!(
        sql(&once, "select count(*) n from flows"),
        format!("n\n{total}\n")
    );
}

const TOPOLOGY: &str = include_str!("../../../testdata/topology/web-eni.toml");

#[test]
fn pcap_replay_delivers_cloudwatch_streams_and_hive_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("vpc.toml");
    fs::write(&topology, TOPOLOGY).unwrap();
    let pcap = dir.path().join("web.pcap");
    common::capture(&pcap);
    let out = dir.path().join("out");
    flowscope()
        .args(["simulate", "--topology"])
        .arg(&topology)
        .arg("--pcap")
        .arg(&pcap)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains("3 frames read, 3 IP packets"));

    // CloudWatch Logs: one stream per interface, events with the record's start as timestamp.
    let stream = out.join("vpc/flow-logs/eni-web-all.jsonl");
    let events: Vec<serde_json::Value> = fs::read_to_string(&stream)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "2 123456789010 eni-web 198.51.100.5 10.0.1.10 40000 443 6 1 140 1700000000 1700000000 ACCEPT OK",
            "2 123456789010 eni-web 10.0.1.10 198.51.100.5 443 40000 6 1 140 1700000001 1700000001 ACCEPT OK",
            "2 123456789010 eni-web 203.0.113.9 10.0.1.10 50000 22 6 1 140 1700000070 1700000070 REJECT OK",
        ]
    );
    assert_eq!(events[0]["timestamp"], 1_700_000_000_000i64);
    assert!(events[2]["ingestionTime"].as_i64().unwrap() > 1_700_000_070_000);

    // S3 Parquet with Hive prefixes, REJECT only.
    let parquet = files(&out.join("parquet-bucket"), ".log.parquet");
    assert_eq!(parquet.len(), 1);
    let rel = parquet[0]
        .strip_prefix(out.join("parquet-bucket"))
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(rel.starts_with("AWSLogs/aws-account-id=123456789010/aws-service=vpcflowlogs/aws-region=eu-west-1/year=2023/month=11/day=14/hour=22/123456789010_vpcflowlogs_eu-west-1_fl-parquet_20231114T2210Z_"), "{rel}");
    let lake = dir.path().join("lake");
    flowscope()
        .arg("ingest")
        .arg(&parquet[0])
        .arg("--lake")
        .arg(&lake)
        .arg("-q")
        .assert()
        .success();
    assert_eq!(
        sql(
            &lake,
            "select srcaddr, dstport, action, flow_log_id from flows"
        ),
        "srcaddr,dstport,action,flow_log_id\n203.0.113.9,22,REJECT,fl-parquet\n"
    );
}

/// Replays the example capture through `topology`, delivering to moto at `endpoint`.
fn simulate_to_moto(dir: &Path, topology: &Path, endpoint: &str) {
    let pcap = dir.join("web.pcap");
    common::capture(&pcap);
    flowscope()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .args(["simulate", "--topology"])
        .arg(topology)
        .arg("--pcap")
        .arg(&pcap)
        .arg("--out")
        .arg(dir.join("out"))
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .assert()
        .success();
}

#[test]
fn simulate_to_an_s3_bucket() {
    let Some(moto) = common::moto() else {
        return;
    };
    common::boto3(
        &moto.endpoint,
        "s3.create_bucket(Bucket=args[0])",
        &["flowlogs"],
    );
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("vpc.toml");
    fs::write(
        &topology,
        TOPOLOGY.replace(
            r#"log_destination = "parquet-bucket""#,
            r#"log_destination = "arn:aws:s3:::flowlogs/prod""#,
        ),
    )
    .unwrap();
    simulate_to_moto(dir.path(), &topology, &moto.endpoint);
    let keys = common::boto3(
        &moto.endpoint,
        "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket=args[0])['Contents']))",
        &["flowlogs"],
    );
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].starts_with("prod/AWSLogs/aws-account-id=123456789010/aws-service=vpcflowlogs/"),
        "{keys:?}"
    );
}

#[test]
fn validate_reports_every_mistake_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    fs::write(&good, TOPOLOGY).unwrap();
    flowscope()
        .args(["flow-logs", "validate"])
        .arg(&good)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("valid — 1 VPC(s), 1 subnet(s), 1 network interface(s)").and(
                predicate::str::contains("fl-parquet: VPC vpc-1 -> 1 interface(s), REJECT, 600 s"),
            ),
        );
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        TOPOLOGY
            .replace("traffic_type = \"REJECT\"", "traffic_type = \"DROP\"")
            .replace("\"10.0.1.10\"", "\"10.0.2.10\""),
    )
    .unwrap();
    let name = bad.display().to_string();
    let text = fs::read_to_string(&bad).unwrap();
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let (address, traffic) = (line("10.0.2.10"), line("DROP"));
    flowscope()
        .args(["flow-logs", "validate"])
        .arg(&bad)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(format!(
                "{name}:{address}:25: 10.0.2.10 is not in subnet-1 (10.0.1.0/24)"
            ))
            .and(predicate::str::contains(format!(
                "{name}:{traffic}:16: traffic_type `DROP`: use ACCEPT, REJECT or ALL"
            ))),
        )
        .stderr(predicate::str::contains("2 mistake(s)"));
}

/// A Firehose destination: the records arrive at a real HTTP server as Firehose requests.
#[test]
fn pcap_replay_to_a_firehose_http_endpoint() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};

    let received: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let state = Arc::clone(&received);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/ingest",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                    let key = headers["x-amz-firehose-access-key"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    state.lock().unwrap().push((key, body));
                    serde_json::json!({ "requestId": v["requestId"], "timestamp": 0 }).to_string()
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("vpc.toml");
    let firehose = format!(
        "\n[[flow_log]]\nid = \"fl-fh\"\nresource_type = \"VPC\"\nresource_ids = [\"vpc-1\"]\ntraffic_type = \"ALL\"\nlog_destination_type = \"kinesis-data-firehose\"\nlog_destination = \"{url}\"\nfirehose = {{ access_key = \"k-123\" }}\n"
    );
    fs::write(&topology, format!("{TOPOLOGY}{firehose}")).unwrap();
    let pcap = dir.path().join("web.pcap");
    common::capture(&pcap);
    flowscope()
        .args(["simulate", "--topology"])
        .arg(&topology)
        .arg("--pcap")
        .arg(&pcap)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "fl-fh: 3 records in 1 Firehose requests",
        ));
    let got = received.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "k-123");
    let body: FirehoseBody = serde_json::from_slice(&got[0].1).unwrap();
    let lines: Vec<String> = body
        .records
        .iter()
        .map(|r| String::from_utf8(r.decode().unwrap()).unwrap())
        .collect();
    assert_eq!(
        lines[2],
        "2 123456789010 eni-web 203.0.113.9 10.0.1.10 50000 22 6 1 140 1700000070 1700000070 REJECT OK\n"
    );
}

/// Every field `flowlogs-reader`'s records know (AWS's v2–v5 fields), in a custom format.
const EVERY_FIELD: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} \
    ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} \
    ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} ${pkt-srcaddr} \
    ${pkt-dstaddr} ${region} ${az-id} ${sublocation-type} ${sublocation-id} \
    ${pkt-src-aws-service} ${pkt-dst-aws-service} ${flow-direction} ${traffic-path}";

/// Reads every object under `prefix` of bucket `flowlogs` with flowlogs-reader's
/// `S3FlowLogsReader` (November 2023, when the capture is), and the Parquet ones again with the
/// `parquet` package's `DictReader`, and the text ones as their lines: JSON of all of it.
const READ_BACK: &str = r#"
import gzip, io, json
from datetime import datetime
import parquet
from flowlogs_reader import S3FlowLogsReader
out = {}
for prefix in args:
    reader = S3FlowLogsReader('flowlogs/' + prefix, boto_client=s3,
                              start_time=datetime(2023, 11, 1), end_time=datetime(2023, 12, 1))
    records = [r.to_dict() for r in reader]
    rows = []
    for o in s3.list_objects_v2(Bucket='flowlogs', Prefix=prefix + '/')['Contents']:
        body = s3.get_object(Bucket='flowlogs', Key=o['Key'])['Body'].read()
        if o['Key'].endswith('.parquet'):
            rows.extend(dict(r) for r in parquet.DictReader(io.BytesIO(body)))
        else:
            lines = gzip.decompress(body).decode().splitlines()
            names = [n.replace('-', '_') for n in lines[0].split(' ')]
            rows.extend(dict(zip(names, l.split(' '))) for l in lines[1:])
    out[prefix] = {'skipped': reader.skipped_records, 'records': records, 'rows': rows}
print(json.dumps(out, default=str, sort_keys=True))
"#;

#[test]
fn flowlogs_reader_reads_text_and_parquet_deliveries_with_no_rejects() {
    // AWS: Parquet flow logs are "Parquet format with Gzip compression"; flowlogs-reader (the
    // obsrvbl-oss client) reads them with the `parquet` package, which takes only PLAIN and
    // PLAIN_DICTIONARY version-1 pages, uncompressed, Snappy or GZIP.
    let Some(moto) = common::moto() else {
        return;
    };
    common::boto3(
        &moto.endpoint,
        "s3.create_bucket(Bucket=args[0])",
        &["flowlogs"],
    );
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("vpc.toml");
    let mut text = TOPOLOGY.to_string();
    for (id, to, options) in [
        ("fl-text", "text", ""),
        (
            "fl-pq",
            "parquet",
            "destination_options = { file_format = \"parquet\" }\n",
        ),
    ] {
        text.push_str(&format!(
            "\n[[flow_log]]\nid = \"{id}\"\nresource_type = \"VPC\"\nresource_ids = [\"vpc-1\"]\n\
             traffic_type = \"ALL\"\nmax_aggregation_interval = 60\nlog_destination_type = \"s3\"\n\
             log_destination = \"arn:aws:s3:::flowlogs/{to}\"\nlog_format = \"{EVERY_FIELD}\"\n{options}"
        ));
    }
    fs::write(&topology, text).unwrap();
    simulate_to_moto(dir.path(), &topology, &moto.endpoint);
    let read = common::boto3(&moto.endpoint, READ_BACK, &["text", "parquet"]);
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    let (text, parquet) = (&read["text"], &read["parquet"]);
    for side in [text, parquet] {
        assert_eq!(side["skipped"], 0, "{side}");
        assert_eq!(side["records"].as_array().unwrap().len(), 3, "{side}");
    }
    // The same records through either path, the reader's fields typed alike.
    assert_eq!(text["records"], parquet["records"]);
    let first = &parquet["records"][0];
    assert_eq!(first["srcaddr"], "198.51.100.5");
    // The internet gateway translates the public address before the interface sees it.
    assert_eq!(first["pkt_dstaddr"], "10.0.1.10");
    assert_eq!(first["tcp_flags"], 2);
    assert_eq!(first["flow_direction"], "ingress");
    // Every field of every row, Parquet against text ("-" in text is a null in Parquet).
    let (lines, rows) = (
        text["rows"].as_array().unwrap(),
        parquet["rows"].as_array().unwrap(),
    );
    assert_eq!(lines.len(), rows.len());
    // In the order of their start and source, both sides.
    let mut lines = lines.clone();
    let mut rows = rows.clone();
    lines.sort_by_key(|r| {
        (
            r["start"].as_str().unwrap().to_string(),
            r["srcaddr"].to_string(),
        )
    });
    rows.sort_by_key(|r| {
        (
            r["start"].as_i64().unwrap().to_string(),
            r["srcaddr"].to_string(),
        )
    });
    for (line, row) in lines.iter().zip(&rows) {
        let line = line.as_object().unwrap();
        assert_eq!(line.len(), 29, "{line:?}");
        for (name, text_value) in line {
            let value = &row[name];
            let as_text = match value {
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(&as_text, text_value.as_str().unwrap(), "{name} in {row}");
        }
    }
}
