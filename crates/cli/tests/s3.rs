//! `flowscope ingest s3://…` against a real S3-compatible server (moto, started here).

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command as StdCommand;

use assert_cmd::Command;
use flate2::Compression;
use flate2::write::GzEncoder;
use predicates::prelude::*;

/// Uploads every file below `dir` to `bucket` under `prefix`, with boto3.
fn upload(endpoint: &str, bucket: &str, prefix: &str, dir: &Path) {
    let script = r#"
import os, sys, boto3
endpoint, bucket, prefix, root = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        s3.upload_file(path, bucket, prefix + os.path.relpath(path, root))
"#;
    let status = StdCommand::new("python3")
        .args([
            "-c",
            script,
            endpoint,
            bucket,
            prefix,
            dir.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

fn gz(text: &str) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn ingest_from_s3_with_aws_layout_and_reingest_is_a_no_op() {
    let Some(moto) = common::moto() else {
        return;
    };
    let tree = tempfile::tempdir().unwrap();
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";
    let mut expected = 0;
    for (day, hour) in [(20, 16), (20, 17), (21, 9)] {
        let dir = tree.path().join(format!(
            "AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/{day}"
        ));
        fs::create_dir_all(&dir).unwrap();
        let start = 1_529_452_800 + (day - 20) * 86_400 + hour * 3_600;
        let mut text = header.to_string();
        for i in 0..250 {
            text.push_str(&format!(
                "2 123456789012 eni-1235b8ca123456789 10.0.{}.{} 172.31.16.21 {} 443 6 10 840 {} {} ACCEPT OK\n",
                i / 200,
                i % 200 + 1,
                40_000 + i,
                start + i,
                start + i + 30
            ));
            expected += 1;
        }
        let name = format!(
            "123456789012_vpcflowlogs_us-east-1_fl-1234abcd_201806{day}T{hour}20Z_fe1234{day}.log.gz"
        );
        fs::write(dir.join(name), gz(&text)).unwrap();
    }
    fs::write(tree.path().join("AWSLogs/notes.md"), "not a flow log").unwrap();
    upload(&moto.endpoint, "flowlogs", "prefix/", tree.path());

    let home = tempfile::tempdir().unwrap();
    let lake = tempfile::tempdir().unwrap();
    let ingest = || {
        let mut cmd = Command::cargo_bin("flowscope").unwrap();
        cmd.args([
            "ingest",
            "s3://flowlogs/prefix/AWSLogs/",
            "--endpoint-url",
            &moto.endpoint,
            "--lake",
        ])
        .arg(lake.path())
        .env("HOME", home.path())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("AWS_REGION", "us-east-1");
        cmd
    };
    ingest()
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "ingested {expected} records from 3 files (0 already in the lake, 0 not flow logs, 0 failed)"
        )))
        .stderr(predicate::str::contains("not a flow log object; skipped"));
    ingest().assert().success().stderr(predicate::str::contains(
        "ingested 0 records from 3 files (3 already in the lake, 0 not flow logs, 0 failed)",
    ));

    let info = Command::cargo_bin("flowscope")
        .unwrap()
        .args(["lake", "info", "--json", "--lake"])
        .arg(lake.path())
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["rows"], expected);
    assert_eq!(info["partitions"], 3);
    assert_eq!(info["sources"], 3);
    assert_eq!(info["flow_logs"], serde_json::json!(["fl-1234abcd"]));
    let commits = fs::read_to_string(lake.path().join("_flowscope/commits/00000001.json")).unwrap();
    assert!(
        commits.contains("\"key\": \"AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/"),
        "{commits}"
    );
    assert!(commits.contains("\"checksum\": \"xxh3:"), "{commits}");

    // The same files from a local copy are the same sources: nothing is taken twice.
    Command::cargo_bin("flowscope")
        .unwrap()
        .arg("ingest")
        .arg(tree.path().join("AWSLogs"))
        .arg("--lake")
        .arg(lake.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "ingested 0 records from 3 files (3 already in the lake, 0 not flow logs, 0 failed)",
        ));

    // A lake whose commits remember the objects by ETag (as earlier versions wrote them)
    // still knows them.
    let etags = common::boto3(
        &moto.endpoint,
        "for o in s3.list_objects_v2(Bucket='flowlogs', Prefix='prefix/AWSLogs/')['Contents']:\n    print(o['Key'].split('/', 1)[1], o['ETag'].strip('\"'))",
        &[],
    );
    let path = lake.path().join("_flowscope/commits/00000001.json");
    let mut commit: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let mut rewritten = 0;
    for source in commit["sources"].as_array_mut().unwrap() {
        let key = source["key"].as_str().unwrap().to_string();
        if let Some(etag) = etags
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
        {
            source["checksum"] = serde_json::json!(format!("etag:{etag}"));
            rewritten += 1;
        }
    }
    assert_eq!(rewritten, 3, "{etags}\n{commit}");
    fs::write(&path, serde_json::to_string_pretty(&commit).unwrap()).unwrap();
    ingest().assert().success().stderr(predicate::str::contains(
        "ingested 0 records from 3 files (3 already in the lake, 0 not flow logs, 0 failed)",
    ));

    // As with the AWS CLI, AWS_ENDPOINT_URL names the endpoint (it was "builder error").
    let other = tempfile::tempdir().unwrap();
    let with_env = |url: &str, extra: &[&str]| {
        let mut cmd = Command::cargo_bin("flowscope").unwrap();
        cmd.args(["ingest", url, "--lake"])
            .arg(other.path())
            .args(extra)
            .env("HOME", home.path())
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_REGION", "us-east-1");
        cmd.output().unwrap()
    };
    let out = with_env("s3://flowlogs/prefix/AWSLogs/", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("ingested {expected} records from 3 files")),
        "{err}"
    );

    // A missing bucket is one sentence, said once, without S3's XML.
    let out = with_env("s3://no-such-bucket/AWSLogs/", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the bucket `no-such-bucket` does not exist"),
        "{err}"
    );
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(!err.contains("<?xml") && !err.contains("<Error>"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // An empty prefix warns; with --strict it is a failure.
    let out = with_env("s3://flowlogs/nothing-here/", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("no flow log files found in s3://flowlogs/nothing-here/"),
        "{err}"
    );
    let out = with_env("s3://flowlogs/nothing-here/", &["--strict"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // So does an empty folder.
    let empty = tempfile::tempdir().unwrap();
    let out = with_env(empty.path().to_str().unwrap(), &["--strict"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no flow log files found"), "{err}");
}
