//! `flowscope convert`, run as a user runs it.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use flate2::read::MultiGzDecoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use predicates::prelude::*;
use pretty_assertions::assert_eq;

fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(path)
}

const S3_FILE: &str = "aws/AWSLogs/123456789010/vpcflowlogs/us-east-1/2019/08/26/123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20190826T1925Z_fe123456.log.gz";

use common::flowscope;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn aws_example_files_round_trip_byte_for_byte() {
    for name in [
        "default.log",
        "tcp-flags.log",
        "nat-gateway.log",
        "transit-gateway.log",
        "service-path.log",
        "encryption-status.log",
    ] {
        let path = testdata(&format!("aws/{name}"));
        let output = flowscope()
            .arg("convert")
            .arg(&path)
            .arg("--to")
            .arg("text")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            fs::read_to_string(&path).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn gzipped_custom_format_s3_file_round_trips_to_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.log.gz");
    flowscope()
        .args([
            "convert",
            testdata(S3_FILE).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "converted 8 records from 1 inputs; 0 lines rejected",
        ));
    let original = gunzip(&fs::read(testdata(S3_FILE)).unwrap());
    assert_eq!(gunzip(&fs::read(&out).unwrap()), original);
    assert!(original.starts_with(b"version vpc-id subnet-id"));
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}

#[test]
fn json_lines_use_column_names_numbers_and_nulls() {
    let output = flowscope()
        .args([
            "convert",
            testdata("aws/default.log").to_str().unwrap(),
            "--to",
            "jsonl",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines[0],
        r#"{"version":2,"account_id":"123456789010","interface_id":"eni-1235b8ca123456789","srcaddr":"172.31.16.139","dstaddr":"172.31.16.21","srcport":20641,"dstport":22,"protocol":6,"packets":20,"bytes":4249,"start":1418530010,"end":1418530070,"action":"ACCEPT","log_status":"OK"}"#
    );
    assert_eq!(
        lines[2],
        r#"{"version":2,"account_id":"123456789010","interface_id":"eni-1235b8ca123456789","srcaddr":null,"dstaddr":null,"srcport":null,"dstport":null,"protocol":null,"packets":null,"bytes":null,"start":1431280876,"end":1431280934,"action":null,"log_status":"NODATA"}"#
    );
}

#[test]
fn csv_has_a_header_row_and_integers() {
    let output = flowscope()
        .args([
            "convert",
            testdata("aws/nat-gateway.log").to_str().unwrap(),
            "--to",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("instance_id,interface_id,srcaddr,dstaddr,pkt_srcaddr,pkt_dstaddr")
    );
    assert_eq!(
        lines.next(),
        Some(",eni-1235b8ca123456789,10.0.1.5,10.0.0.220,10.0.1.5,203.0.113.5")
    );

    let output = flowscope()
        .args([
            "convert",
            testdata("aws/default.log").to_str().unwrap(),
            "--to",
            "csv",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        text.lines().nth(1),
        Some(
            "2,123456789010,eni-1235b8ca123456789,172.31.16.139,172.31.16.21,20641,22,6,20,4249,1418530010,1418530070,ACCEPT,OK"
        )
    );
}

#[test]
fn parquet_output_has_aws_names_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flows.parquet");
    flowscope()
        .args([
            "convert",
            testdata("aws/tcp-flags.log").to_str().unwrap(),
            "--to",
            "parquet",
            "-o",
        ])
        .arg(&out)
        .assert()
        .success();
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&out).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let batch = &batches[0];
    let schema = batch.schema();
    assert_eq!(batch.num_rows(), 8);
    assert_eq!(schema.field(1).name(), "vpc_id");
    assert_eq!(schema.field(19).name(), "tcp_flags");
    let flags: Vec<i32> = batch
        .column(19)
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    assert_eq!(flags, [2, 18, 2, 18, 1, 1, 3, 19]);
    let bytes = batch.column(14).as_primitive::<Int64Type>();
    assert_eq!(bytes.value(5), 23_294_588);
    assert_eq!(batch.column(12).as_string::<i32>().value(0), "10.0.0.62");

    // Written as AWS writes Parquet flow logs ("Parquet format with Gzip compression"), with
    // version-1 pages and no dictionaries, for the readers made for AWS's files.
    let meta = std::sync::Arc::clone(
        ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&out).unwrap())
            .unwrap()
            .metadata(),
    );
    for column in meta.row_group(0).columns() {
        assert_eq!(
            column.compression(),
            parquet::basic::Compression::GZIP(Default::default()),
            "{}",
            column.column_path()
        );
        assert!(column.dictionary_page_offset().is_none(), "{column:?}");
        for e in column.encodings() {
            assert!(
                matches!(
                    e,
                    parquet::basic::Encoding::PLAIN | parquet::basic::Encoding::RLE
                ),
                "{e:?} in {}",
                column.column_path()
            );
        }
    }
    // The `parquet` package flowlogs-reader reads with (pip, installed by .ci/run) reads it.
    let read = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, parquet\n\
             rows = list(parquet.DictReader(open(sys.argv[1], 'rb')))\n\
             print(json.dumps([[r['srcaddr'], r['tcp_flags'], r['bytes']] for r in rows]))",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(read.status.success(), "{read:?}");
    let rows: Vec<(String, i64, i64)> = serde_json::from_slice(&read.stdout).unwrap();
    // The same rows as the Arrow reader's.
    let srcaddr = batch
        .column(schema.index_of("srcaddr").unwrap())
        .as_string::<i32>();
    let want: Vec<(String, i64, i64)> = (0..batch.num_rows())
        .map(|i| {
            (
                srcaddr.value(i).to_string(),
                i64::from(flags[i]),
                bytes.value(i),
            )
        })
        .collect();
    assert_eq!(rows, want);
    assert_eq!(rows[5].2, 23_294_588);
}

#[test]
fn rejected_lines_are_reported_and_the_good_ones_kept() {
    let path = testdata("bad/mixed.log");
    let name = path.display().to_string();
    let output = flowscope().arg("convert").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "header and the two good records");
    let stderr = String::from_utf8(output.stderr).unwrap();
    for expected in [
        format!("{name}:3: dstport: out of range (0 to 65535) (`70000`)"),
        format!("{name}:4: packets: not a number (`twenty`)"),
        format!("{name}:5: line: wrong field count: the format has 14 fields, the line 13"),
        format!("{name}:6: srcaddr: not an IPv4 or IPv6 address (`172.31.16.999`)"),
        format!("{name}:7: action: unknown action (expected ACCEPT or REJECT) (`ALLOW`)"),
        format!(
            "{name}:8: log-status: unknown log status (expected OK, NODATA or SKIPDATA) (`DONE`)"
        ),
        "converted 2 records from 1 inputs; 6 lines rejected; 0 inputs failed".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn strict_stops_at_the_first_bad_line_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let path = testdata("bad/mixed.log");
    flowscope()
        .arg("convert")
        .arg(&path)
        .args(["--strict", "--to", "jsonl", "-o"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(":3: dstport: out of range"));
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file left behind"
    );
}

#[test]
fn reads_stdin_and_directories_of_mixed_formats() {
    flowscope()
        .args(["convert", "-", "--to", "jsonl"])
        .write_stdin(fs::read(testdata(S3_FILE)).unwrap())
        .assert()
        .success()
        .stdout(predicate::function(|s: &str| s.lines().count() == 8));

    let output = flowscope()
        .args(["convert", testdata("aws").to_str().unwrap(), "--to", "csv"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    // 7 default + 4 encryption + 6 NAT + 2 service + 8 tcp-flags + 4 TGW + 8 in the S3 tree.
    assert_eq!(text.lines().count(), 1 + 39);
    // The union of the formats, in the order first seen: AWSLogs/ (the tcp-flags format) sorts
    // first, then each file adds the fields it brings.
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    assert_eq!(header[..3], ["version", "vpc_id", "subnet_id"]);
    for column in [
        "account_id",
        "log_status",
        "encryption_status",
        "traffic_path",
        "sublocation_id",
    ] {
        assert_eq!(
            header.iter().filter(|c| **c == column).count(),
            1,
            "{column} once"
        );
    }
    assert_eq!(header.len(), 30);
}

#[test]
fn a_truncated_gzip_keeps_what_came_before_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("srcaddr dstaddr action\n");
    for i in 0..200_000u32 {
        text.push_str(&format!(
            "10.0.{}.{} 10.1.0.1 ACCEPT\n",
            (i >> 8) & 255,
            i & 255
        ));
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    let path = dir.path().join("cut.log.gz");
    fs::write(&path, &compressed[..compressed.len() * 2 / 3]).unwrap();
    let output = flowscope().arg("convert").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}: read failed after line", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("1 inputs failed"), "{stderr}");
    let kept = String::from_utf8(output.stdout).unwrap().lines().count() - 1;
    assert!(kept > 50_000 && kept < 200_000, "kept {kept}");
}

#[test]
fn an_unknown_format_field_gets_a_suggestion() {
    flowscope()
        .args(["convert", "-", "--format", "${version} ${srcadr}"])
        .write_stdin("")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "unknown field `srcadr`; did you mean `srcaddr`?",
        ));
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_flowscope"))
        .args(["convert", "-", "--format", "${srcaddr} ${action}"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..2_000 {
            if stdin
                .write_all("10.0.0.1 ACCEPT\n".repeat(1_000).as_bytes())
                .is_err()
            {
                break;
            }
        }
    });
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    writer.join().unwrap();
    assert_eq!(&first, b"10.0.0.1 ACCEPT\n");
    assert!(status.success(), "{status:?}");
}

#[test]
fn fields_lists_the_registry() {
    flowscope()
        .args(["fields", "--max-version", "2"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("log-status").and(predicate::str::contains("vpc-id").not()),
        );
}

/// Runs `flowscope convert ARGS`, returning (status code, stdout, stderr).
fn convert(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = flowscope().arg("convert").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn reads_what_flowscope_writes_and_what_aws_exports() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(testdata("aws/tcp-flags.log")).unwrap();
    let records: Vec<&str> = text.lines().skip(1).collect();

    // Parquet that flowscope wrote comes back as the same text (it was 8,013 "not valid UTF-8"
    // lines and exit 0).
    let parquet = dir.path().join("flows.parquet");
    let (code, _, err) = convert(&[
        testdata("aws/tcp-flags.log").as_os_str(),
        "--to".as_ref(),
        "parquet".as_ref(),
        "-o".as_ref(),
        parquet.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = convert(&[parquet.as_os_str(), "--header".as_ref()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, text, "{err}");
    assert!(err.contains("converted 8 records"), "{err}");

    // CloudWatch Logs events, one JSON object per line (`aws logs get-log-events`, and the
    // emulator's CloudWatch layout), and a CloudWatch Logs export to S3 (timestamp first).
    let events: String = records
        .iter()
        .map(|r| {
            format!(
                "{}\n",
                serde_json::json!({"timestamp": 1_566_848_875_000_i64, "message": r, "ingestionTime": 1_566_849_175_000_i64})
            )
        })
        .collect();
    let export: String = records
        .iter()
        .map(|r| format!("2019-08-26T19:47:55.000Z {r}\n"))
        .collect();
    let header = text.lines().next().unwrap();
    for (name, body) in [("eni-all.jsonl", events), ("export.txt", export)] {
        let path = dir.path().join(name);
        fs::write(&path, body).unwrap();
        // --format in AWS's `${field}` form: the files carry no header line.
        let fmt: String = header
            .split(' ')
            .map(|f| format!("${{{f}}}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (code, out, err) = convert(&[
            path.as_os_str(),
            "--format".as_ref(),
            fmt.as_ref(),
            "--no-header".as_ref(),
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(out, format!("{}\n", records.join("\n")), "{name}: {err}");
        assert!(err.contains("0 lines rejected"), "{name}: {err}");
    }

    // Something that is not a flow log fails, as ingest says.
    let passwd = dir.path().join("passwd");
    fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let (code, out, err) = convert(&[passwd.as_os_str()]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("not a flow log"), "{err}");
}
