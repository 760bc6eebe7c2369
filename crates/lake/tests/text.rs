//! The text reader against real files: headers, gzip, truncation, hostile lines.

use std::io::Write;

use arrow_array::RecordBatch;
use flate2::Compression;
use flate2::write::GzEncoder;
use flowscope_lake::{Error, Input, MAX_LINE, TextOptions, TextReader};
use flowscope_record::synth::Synth;
use flowscope_record::{LogFormat, Reason};
use pretty_assertions::assert_eq;

const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";
const GOOD: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn read_all(reader: &mut TextReader) -> (Vec<RecordBatch>, Option<Error>) {
    let mut batches = Vec::new();
    loop {
        match reader.next_batch() {
            Ok(Some(batch)) => batches.push(batch),
            Ok(None) => return (batches, None),
            Err(error) => return (batches, Some(error)),
        }
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn reader(name: &str, bytes: Vec<u8>, options: &TextOptions) -> TextReader {
    TextReader::from_reader(name, std::io::Cursor::new(bytes), options).unwrap()
}

#[test]
fn header_decides_format_and_no_header_means_default() {
    let custom = "srcaddr dstaddr action\n10.0.0.1 10.0.0.2 ACCEPT\n";
    let mut r = reader("custom.log", custom.into(), &TextOptions::default());
    assert_eq!(
        r.format(),
        &LogFormat::parse("${srcaddr} ${dstaddr} ${action}").unwrap()
    );
    assert!(r.header().is_some());
    assert_eq!(rows(&read_all(&mut r).0), 1);

    let mut r = reader("cloudwatch.log", GOOD.into(), &TextOptions::default());
    assert_eq!(r.format(), &LogFormat::default_format());
    assert!(r.header().is_none());
    assert_eq!(rows(&read_all(&mut r).0), 1);
}

#[test]
fn gzip_is_recognised_by_content_not_name() {
    let body = format!("{HEADER}{GOOD}{GOOD}");
    let mut r = reader(
        "misnamed.log",
        gzip(body.as_bytes()),
        &TextOptions::default(),
    );
    assert_eq!(rows(&read_all(&mut r).0), 2);
    assert_eq!(r.rejected(), 0);
}

#[test]
fn truncated_gzip_keeps_the_records_before_the_break() {
    let format = LogFormat::default_format();
    let mut text = HEADER.as_bytes().to_vec();
    Synth::new(3).write_lines(&format, 50_000, &mut text);
    let compressed = gzip(&text);
    let cut = compressed[..compressed.len() / 2].to_vec();
    let options = TextOptions {
        batch_size: 1024,
        ..TextOptions::default()
    };
    let mut r = reader("half.log.gz", cut, &options);
    let (batches, error) = read_all(&mut r);
    let error = error.expect("a truncated file is an error");
    let message = error.to_string();
    assert!(
        message.starts_with("half.log.gz: read failed after line "),
        "{message}"
    );
    let kept = rows(&batches);
    assert!(kept > 10_000 && kept < 50_000, "kept {kept}");
    assert_eq!(
        r.rejected(),
        0,
        "the cut line is not counted as a bad record"
    );
    // What was kept is exactly the start of the file.
    let Error::Truncated { line, .. } = error else {
        panic!("{error:?}")
    };
    assert!(kept as u64 <= line);
}

#[test]
fn concatenated_files_with_different_headers_switch_format() {
    let second = "srcaddr dstaddr action\n10.0.0.1 10.0.0.2 ACCEPT\n10.0.0.3 10.0.0.4 REJECT\n";
    let mut bytes = gzip(format!("{HEADER}{GOOD}").as_bytes());
    bytes.extend(gzip(second.as_bytes()));
    bytes.extend(gzip(format!("{HEADER}{GOOD}").as_bytes()));
    let mut r = reader("cat.log.gz", bytes, &TextOptions::default());
    let (batches, error) = read_all(&mut r);
    assert!(error.is_none());
    let widths: Vec<usize> = batches.iter().map(RecordBatch::num_columns).collect();
    assert_eq!(widths, [14, 3, 14]);
    assert_eq!(rows(&batches), 4);
    assert_eq!(r.rejected(), 0);
}

#[test]
fn a_given_format_wins_and_the_header_is_skipped() {
    let body = format!("{HEADER}{GOOD}");
    let options = TextOptions {
        format: Some(LogFormat::default_format()),
        ..TextOptions::default()
    };
    let mut r = reader("x.log", body.into(), &options);
    assert_eq!(rows(&read_all(&mut r).0), 1);
    assert_eq!(r.rejected(), 0);
}

#[test]
fn bad_lines_are_located_counted_and_the_rest_kept() {
    let long = "9".repeat(MAX_LINE + 10);
    let body = format!(
        "{HEADER}{GOOD}\n{long}\n{}{GOOD}garbage\n",
        GOOD.replace(" 22 ", " 99999 ")
    );
    let mut r = reader("bad.log", body.into(), &TextOptions::default());
    let (batches, error) = read_all(&mut r);
    assert!(error.is_none());
    assert_eq!(rows(&batches), 2);
    assert_eq!(r.rejected(), 3);
    let rejections = r.take_rejections();
    let located: Vec<(u64, Reason)> = rejections
        .iter()
        .map(|r| (r.line, r.error.reason.clone()))
        .collect();
    assert_eq!(
        located,
        [
            (4, Reason::TooLong { max: MAX_LINE }),
            (5, Reason::OutOfRange { max: 65535 }),
            (
                7,
                Reason::FieldCount {
                    expected: 14,
                    found: 1
                }
            ),
        ]
    );
    assert_eq!(
        rejections[1].to_string(),
        "bad.log:5: dstport: out of range (0 to 65535) (`99999`)"
    );
}

#[test]
fn empty_and_missing_files() {
    let mut r = reader("empty.log", Vec::new(), &TextOptions::default());
    assert_eq!(rows(&read_all(&mut r).0), 0);
    let err = TextReader::open(
        &Input::File("/nonexistent/x.log".into()),
        &TextOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.starts_with("/nonexistent/x.log: "), "{err}");
}

/// Files are read through `open`, which decodes small single-member gzip files in one piece.
fn open_file(bytes: &[u8]) -> (Vec<RecordBatch>, Option<Error>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.log.gz");
    std::fs::write(&path, bytes).unwrap();
    let mut r = TextReader::open(&Input::File(path), &TextOptions::default()).unwrap();
    let (batches, error) = read_all(&mut r);
    (batches, error, r.rejected())
}

#[test]
fn whole_file_decoding_matches_streaming_and_never_drops_members() {
    let format = LogFormat::default_format();
    let mut text = HEADER.as_bytes().to_vec();
    Synth::new(9).write_lines(&format, 30_000, &mut text);
    let one = gzip(&text);
    let (batches, error, rejected) = open_file(&one);
    assert!(error.is_none());
    assert_eq!((rows(&batches), rejected), (30_000, 0));

    // `cat a.gz a.gz`: two identical members; both must be read.
    let twice = [one.clone(), one.clone()].concat();
    let (batches, error, rejected) = open_file(&twice);
    assert!(error.is_none());
    assert_eq!((rows(&batches), rejected), (60_000, 0));

    // Truncated: the records before the break, then the error.
    let (batches, error, _) = open_file(&one[..one.len() * 3 / 4]);
    assert!(matches!(error, Some(Error::Truncated { .. })), "{error:?}");
    let kept = rows(&batches);
    assert!(kept > 10_000 && kept < 30_000, "kept {kept}");
}
