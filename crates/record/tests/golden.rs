//! Every example record of AWS's documentation (SPEC.md §5), decoded and checked field by field,
//! then written back byte for byte.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use flowscope_record::{LogFormat, TextDecoder, write_lines};
use pretty_assertions::assert_eq;

/// An expected value: an integer, a string, or `-` (null).
#[derive(Debug, PartialEq)]
enum V {
    I(i64),
    S(&'static str),
    N,
}
use V::{I, N, S};

fn value(batch: &RecordBatch, column: usize) -> V {
    let array = batch.column(column);
    if array.is_null(0) {
        return N;
    }
    match array.data_type() {
        DataType::Int32 => I(i64::from(array.as_primitive::<Int32Type>().value(0))),
        DataType::Int64 => I(array.as_primitive::<Int64Type>().value(0)),
        DataType::Utf8 => S(Box::leak(
            array
                .as_string::<i32>()
                .value(0)
                .to_string()
                .into_boxed_str(),
        )),
        other => panic!("unexpected type {other}"),
    }
}

/// Decodes `line` in `format` and checks every field against `expected`, in format order.
fn check(format: &str, line: &str, expected: &[V]) {
    let format = LogFormat::parse(format).unwrap();
    assert_eq!(format.len(), expected.len(), "the test lists every field");
    let mut decoder = TextDecoder::new(format.clone(), 8);
    decoder
        .decode_line(line.as_bytes())
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let batch = decoder.flush().unwrap();
    for (i, (field, want)) in format.fields().iter().zip(expected).enumerate() {
        assert_eq!(&value(&batch, i), want, "field {} of {line}", field.name);
    }
    let mut out = Vec::new();
    write_lines(&batch, &format, &mut out).unwrap();
    let normalised: Vec<&str> = line.split(' ').filter(|t| !t.is_empty()).collect();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\n", normalised.join(" "))
    );
}

const DEFAULT: &str = flowscope_record::DEFAULT_FORMAT;

#[test]
#[rustfmt::skip]
fn default_format_examples() {
    let a = "123456789010";
    let eni = "eni-1235b8ca123456789";
    check(
        DEFAULT,
        "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
        &[I(2), S(a), S(eni), S("172.31.16.139"), S("172.31.16.21"), I(20641), I(22), I(6), I(20), I(4249), I(1418530010), I(1418530070), S("ACCEPT"), S("OK")],
    );
    check(
        DEFAULT,
        "2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 REJECT OK",
        &[I(2), S(a), S(eni), S("172.31.9.69"), S("172.31.9.12"), I(49761), I(3389), I(6), I(20), I(4249), I(1418530010), I(1418530070), S("REJECT"), S("OK")],
    );
    check(
        DEFAULT,
        "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
        &[I(2), S(a), S(eni), N, N, N, N, N, N, N, I(1431280876), I(1431280934), N, S("NODATA")],
    );
    check(
        DEFAULT,
        "2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA",
        &[I(2), S(a), S("eni-11111111aaaaaaaaa"), N, N, N, N, N, N, N, I(1431280876), I(1431280934), N, S("SKIPDATA")],
    );
    check(
        DEFAULT,
        "2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK",
        &[I(2), S(a), S(eni), S("203.0.113.12"), S("172.31.16.139"), I(0), I(0), I(1), I(4), I(336), I(1432917027), I(1432917142), S("ACCEPT"), S("OK")],
    );
    check(
        DEFAULT,
        "2 123456789010 eni-1235b8ca123456789 172.31.16.139 203.0.113.12 0 0 1 4 336 1432917094 1432917142 REJECT OK",
        &[I(2), S(a), S(eni), S("172.31.16.139"), S("203.0.113.12"), I(0), I(0), I(1), I(4), I(336), I(1432917094), I(1432917142), S("REJECT"), S("OK")],
    );
    check(
        DEFAULT,
        "2 123456789010 eni-1235b8ca123456789 2001:db8:1234:a100:8d6e:3477:df66:f105 2001:db8:1234:a102:3304:8879:34cf:4071 34892 22 6 54 8855 1477913708 1477913820 ACCEPT OK",
        &[I(2), S(a), S(eni), S("2001:db8:1234:a100:8d6e:3477:df66:f105"), S("2001:db8:1234:a102:3304:8879:34cf:4071"), I(34892), I(22), I(6), I(54), I(8855), I(1477913708), I(1477913820), S("ACCEPT"), S("OK")],
    );
}

const TCP_FLAGS: &str = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status";

/// The fields that vary in the TCP flag sequence; the rest are the same on every line.
#[rustfmt::skip]
#[allow(clippy::too_many_arguments)]
fn tcp(src: &'static str, dst: &'static str, sport: i64, dport: i64, bytes: i64, packets: i64, start: i64, end: i64, flags: i64) -> Vec<V> {
    vec![
        I(3), S("vpc-abcdefab012345678"), S("subnet-aaaaaaaa012345678"), S("i-01234567890123456"),
        S("eni-1235b8ca123456789"), S("123456789010"), S("IPv4"), S(src), S(dst), I(sport), I(dport),
        S(src), S(dst), I(6), I(bytes), I(packets), I(start), I(end), S("ACCEPT"), I(flags), S("OK"),
    ]
}

#[test]
#[rustfmt::skip]
fn tcp_flag_sequence_examples() {
    let (c, s) = ("52.213.180.42", "10.0.0.62");
    let p = "3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 eni-1235b8ca123456789 123456789010 IPv4";
    let cases = [
        (format!("{p} {c} {s} 43416 5001 {c} {s} 6 568 8 1566848875 1566848933 ACCEPT 2 OK"), tcp(c, s, 43416, 5001, 568, 8, 1566848875, 1566848933, 2)),
        (format!("{p} {s} {c} 5001 43416 {s} {c} 6 376 7 1566848875 1566848933 ACCEPT 18 OK"), tcp(s, c, 5001, 43416, 376, 7, 1566848875, 1566848933, 18)),
        (format!("{p} {c} {s} 43418 5001 {c} {s} 6 100701 70 1566848875 1566848933 ACCEPT 2 OK"), tcp(c, s, 43418, 5001, 100701, 70, 1566848875, 1566848933, 2)),
        (format!("{p} {s} {c} 5001 43418 {s} {c} 6 632 12 1566848875 1566848933 ACCEPT 18 OK"), tcp(s, c, 5001, 43418, 632, 12, 1566848875, 1566848933, 18)),
        (format!("{p} {s} {c} 5001 43418 {s} {c} 6 63388 1219 1566848933 1566849113 ACCEPT 1 OK"), tcp(s, c, 5001, 43418, 63388, 1219, 1566848933, 1566849113, 1)),
        (format!("{p} {c} {s} 43418 5001 {c} {s} 6 23294588 15774 1566848933 1566849113 ACCEPT 1 OK"), tcp(c, s, 43418, 5001, 23294588, 15774, 1566848933, 1566849113, 1)),
        (format!("{p} {c} {s} 43638 5001 {c} {s} 6 1260 17 1566933133 1566933193 ACCEPT 3 OK"), tcp(c, s, 43638, 5001, 1260, 17, 1566933133, 1566933193, 3)),
        // AWS's page has a double space after 43638 on this line; it must still parse.
        (format!("{p} {s} {c} 5001 43638  {s} {c} 6 967 14 1566933133 1566933193 ACCEPT 19 OK"), tcp(s, c, 5001, 43638, 967, 14, 1566933133, 1566933193, 19)),
    ];
    for (line, expected) in &cases {
        check(TCP_FLAGS, line, expected);
    }
}

#[test]
#[rustfmt::skip]
fn nat_gateway_examples() {
    let f = "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr";
    let nat = "eni-1235b8ca123456789";
    check(f, "- eni-1235b8ca123456789 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5", &[N, S(nat), S("10.0.1.5"), S("10.0.0.220"), S("10.0.1.5"), S("203.0.113.5")]);
    check(f, "- eni-1235b8ca123456789 10.0.0.220 203.0.113.5 10.0.0.220 203.0.113.5", &[N, S(nat), S("10.0.0.220"), S("203.0.113.5"), S("10.0.0.220"), S("203.0.113.5")]);
    check(f, "- eni-1235b8ca123456789 203.0.113.5 10.0.0.220 203.0.113.5 10.0.0.220", &[N, S(nat), S("203.0.113.5"), S("10.0.0.220"), S("203.0.113.5"), S("10.0.0.220")]);
    check(f, "- eni-1235b8ca123456789 10.0.0.220 10.0.1.5 203.0.113.5 10.0.1.5", &[N, S(nat), S("10.0.0.220"), S("10.0.1.5"), S("203.0.113.5"), S("10.0.1.5")]);
    let i = "i-01234567890123456";
    let eni = "eni-1111aaaa2222bbbb3";
    check(f, "i-01234567890123456 eni-1111aaaa2222bbbb3 10.0.1.5 203.0.113.5 10.0.1.5 203.0.113.5", &[S(i), S(eni), S("10.0.1.5"), S("203.0.113.5"), S("10.0.1.5"), S("203.0.113.5")]);
    check(f, "i-01234567890123456 eni-1111aaaa2222bbbb3 203.0.113.5 10.0.1.5 203.0.113.5 10.0.1.5", &[S(i), S(eni), S("203.0.113.5"), S("10.0.1.5"), S("203.0.113.5"), S("10.0.1.5")]);
}

#[test]
#[rustfmt::skip]
fn transit_gateway_examples() {
    let f = "version interface-id account-id vpc-id subnet-id instance-id srcaddr dstaddr srcport dstport protocol tcp-flags type pkt-srcaddr pkt-dstaddr action log-status";
    let (a, vpc) = ("123456789010", "vpc-abcdefab012345678");
    check(
        f,
        "3 eni-33333333333333333 123456789010 vpc-abcdefab012345678 subnet-22222222bbbbbbbbb i-01234567890123456 10.20.33.164 10.40.2.236 39812 80 6 3 IPv4 10.20.33.164 10.40.2.236 ACCEPT OK",
        &[I(3), S("eni-33333333333333333"), S(a), S(vpc), S("subnet-22222222bbbbbbbbb"), S("i-01234567890123456"), S("10.20.33.164"), S("10.40.2.236"), I(39812), I(80), I(6), I(3), S("IPv4"), S("10.20.33.164"), S("10.40.2.236"), S("ACCEPT"), S("OK")],
    );
    check(
        f,
        "3 eni-33333333333333333 123456789010 vpc-abcdefab012345678 subnet-22222222bbbbbbbbb i-01234567890123456 10.40.2.236 10.20.33.164 80 39812 6 19 IPv4 10.40.2.236 10.20.33.164 ACCEPT OK",
        &[I(3), S("eni-33333333333333333"), S(a), S(vpc), S("subnet-22222222bbbbbbbbb"), S("i-01234567890123456"), S("10.40.2.236"), S("10.20.33.164"), I(80), I(39812), I(6), I(19), S("IPv4"), S("10.40.2.236"), S("10.20.33.164"), S("ACCEPT"), S("OK")],
    );
    check(
        f,
        "3 eni-11111111111111111 123456789010 vpc-abcdefab012345678 subnet-11111111aaaaaaaaa - 10.40.1.175 10.40.2.236 39812 80 6 3 IPv4 10.20.33.164 10.40.2.236 ACCEPT OK",
        &[I(3), S("eni-11111111111111111"), S(a), S(vpc), S("subnet-11111111aaaaaaaaa"), N, S("10.40.1.175"), S("10.40.2.236"), I(39812), I(80), I(6), I(3), S("IPv4"), S("10.20.33.164"), S("10.40.2.236"), S("ACCEPT"), S("OK")],
    );
    check(
        f,
        "3 eni-22222222222222222 123456789010 vpc-abcdefab012345678 subnet-22222222bbbbbbbbb - 10.40.2.236 10.40.2.31 80 39812 6 19 IPv4 10.40.2.236 10.20.33.164 ACCEPT OK",
        &[I(3), S("eni-22222222222222222"), S(a), S(vpc), S("subnet-22222222bbbbbbbbb"), N, S("10.40.2.236"), S("10.40.2.31"), I(80), I(39812), I(6), I(19), S("IPv4"), S("10.40.2.236"), S("10.20.33.164"), S("ACCEPT"), S("OK")],
    );
}

#[test]
#[rustfmt::skip]
fn service_name_traffic_path_and_direction_examples() {
    let f = "version srcaddr dstaddr srcport dstport protocol start end type packets bytes account-id vpc-id subnet-id instance-id interface-id region az-id sublocation-type sublocation-id action tcp-flags pkt-srcaddr pkt-dstaddr pkt-src-aws-service pkt-dst-aws-service traffic-path flow-direction log-status";
    assert_eq!(LogFormat::parse(f).unwrap().version(), 5);
    let common = |src: &'static str, dst: &'static str, sport, dport, packets, bytes, flags, src_svc: V, dst_svc: V, path: V, dir: &'static str| {
        vec![
            I(5), S(src), S(dst), I(sport), I(dport), I(6), I(1616729292), I(1616729349), S("IPv4"),
            I(packets), I(bytes), S("123456789012"), S("vpc-abcdefab012345678"),
            S("subnet-aaaaaaaa012345678"), S("i-0c50d5961bcb2d47b"), S("eni-1235b8ca123456789"),
            S("ap-southeast-2"), S("apse2-az3"), N, N, S("ACCEPT"), I(flags), S(src), S(dst),
            src_svc, dst_svc, path, S(dir), S("OK"),
        ]
    };
    check(
        f,
        "5 52.95.128.179 10.0.0.71 80 34210 6 1616729292 1616729349 IPv4 14 15044 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-1235b8ca123456789 ap-southeast-2 apse2-az3 - - ACCEPT 19 52.95.128.179 10.0.0.71 S3 - - ingress OK",
        &common("52.95.128.179", "10.0.0.71", 80, 34210, 14, 15044, 19, S("S3"), N, N, "ingress"),
    );
    check(
        f,
        "5 10.0.0.71 52.95.128.179 34210 80 6 1616729292 1616729349 IPv4 7 471 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-1235b8ca123456789 ap-southeast-2 apse2-az3 - - ACCEPT 3 10.0.0.71 52.95.128.179 - S3 8 egress OK",
        &common("10.0.0.71", "52.95.128.179", 34210, 80, 7, 471, 3, N, S("S3"), I(8), "egress"),
    );
}

#[test]
#[rustfmt::skip]
fn encryption_status_examples_with_header() {
    let header = "flow-direction traffic-path srcaddr dstaddr srcport dstport encryption-status";
    let format = LogFormat::from_header(header).expect("an S3 header line");
    assert_eq!(format.version(), 10);
    let f = format.to_string();
    check(&f, "ingress - 10.0.133.8 10.0.128.55 43236 80 1", &[S("ingress"), N, S("10.0.133.8"), S("10.0.128.55"), I(43236), I(80), S("1")]);
    check(&f, "egress 1 10.0.128.55 10.0.133.8 80 43236 1", &[S("egress"), I(1), S("10.0.128.55"), S("10.0.133.8"), I(80), I(43236), S("1")]);
    check(&f, "ingress - 10.0.130.104 10.0.128.55 55016 80 0", &[S("ingress"), N, S("10.0.130.104"), S("10.0.128.55"), I(55016), I(80), S("0")]);
    check(&f, "egress 1 10.0.128.55 10.0.130.104 80 55016 0", &[S("egress"), I(1), S("10.0.128.55"), S("10.0.130.104"), I(80), I(55016), S("0")]);
}
