//! SQL, Logs Insights and contributor reports on a lake built by `flowscope ingest` from a small
//! hand-made flow log whose answers are worked out by hand below. Every VPC flow log query of
//! the AWS documentation (SPEC.md §7) is one of these tests.

use std::path::Path;

use arrow_array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use flowscope_lake::Lake;
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_lake::input;
use flowscope_query::top::{Metric, Rule, TopSpec, plan as top_plan, resolve_keys};
use flowscope_query::{Engine, TimeRange};
use pretty_assertions::assert_eq;

/// 2019-08-26T19:00:00Z
const T0: i64 = 1_566_846_000;

/// The records (default format). Chosen so that no two groups tie in any sorted answer.
fn records() -> Vec<String> {
    let r = |eni: &str,
             src: &str,
             dst: &str,
             sp: u32,
             dp: u32,
             proto: u8,
             pk: u64,
             by: u64,
             at: i64,
             action: &str| {
        format!(
            "2 123456789010 {eni} {src} {dst} {sp} {dp} {proto} {pk} {by} {} {} {action} OK",
            T0 + at,
            T0 + at + 50
        )
    };
    vec![
        r(
            "eni-a",
            "10.0.1.5",
            "198.51.100.7",
            49152,
            443,
            6,
            10,
            1000,
            60,
            "ACCEPT",
        ), // r1
        r(
            "eni-a",
            "10.0.1.5",
            "198.51.100.7",
            49153,
            443,
            6,
            20,
            3000,
            120,
            "ACCEPT",
        ), // r2
        r(
            "eni-a",
            "192.0.2.10",
            "10.0.1.5",
            5000,
            22,
            6,
            1,
            40,
            180,
            "REJECT",
        ), // r3
        r(
            "eni-a",
            "192.0.2.10",
            "10.0.1.5",
            5001,
            23,
            6,
            1,
            40,
            240,
            "REJECT",
        ), // r4
        r(
            "eni-b",
            "192.0.2.11",
            "10.0.1.6",
            5002,
            22,
            6,
            7,
            60,
            300,
            "REJECT",
        ), // r5
        r(
            "eni-b", "10.0.1.6", "10.0.0.2", 40000, 53, 17, 1, 70, 360, "ACCEPT",
        ), // r6
        r(
            "eni-b", "10.0.1.6", "10.0.0.2", 40001, 53, 17, 2, 210, 3_660, "ACCEPT",
        ), // r7
        r(
            "eni-a",
            "192.0.2.11",
            "10.0.1.5",
            6000,
            3389,
            6,
            6,
            180,
            3_720,
            "REJECT",
        ), // r8
        format!(
            "2 123456789010 eni-a - - - - - - - {} {} - SKIPDATA",
            T0 + 3_780,
            T0 + 3_840
        ), // r9
        format!(
            "2 123456789010 eni-c - - - - - - - {} {} - NODATA",
            T0 + 200,
            T0 + 260
        ), // r10
        r(
            "eni-a", "10.0.2.9", "10.0.1.5", 1234, 80, 6, 5, 5000, 400, "ACCEPT",
        ), // r11
        r(
            "eni-a", "10.0.1.5", "10.0.2.9", 80, 1234, 6, 4, 4500, 420, "ACCEPT",
        ), // r12
        r(
            "eni-b",
            "192.0.2.10",
            "10.0.1.6",
            5003,
            22,
            6,
            1,
            40,
            3_900,
            "REJECT",
        ), // r13
        r(
            "eni-b",
            "10.0.2.9",
            "198.51.100.20",
            1024,
            443,
            6,
            8,
            8000,
            500,
            "ACCEPT",
        ), // r14
        r(
            "eni-b",
            "198.51.100.20",
            "10.0.2.9",
            443,
            1024,
            6,
            9,
            9000,
            510,
            "ACCEPT",
        ), // r15
    ]
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// A lake holding [`records`], made by the real ingest.
fn lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut text = String::from(
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n",
    );
    for line in records() {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(src.join("flows.log"), text).unwrap();
    let lake = Lake::open(dir.path().join("lake")).unwrap();
    let inputs = input::expand_with(&[src.to_str().unwrap()], true).unwrap();
    let summary = ingest(&lake, &inputs, &IngestOptions::default(), &Quiet).unwrap();
    assert_eq!(summary.records, 15);
    dir
}

fn lake_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("lake")
}

type Table = (Vec<String>, Vec<Vec<String>>);

fn table(batches: &[RecordBatch]) -> Table {
    let options = FormatOptions::default().with_null("null");
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for batch in batches {
        columns = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    (columns, rows)
}

fn insights(root: &Path, query: &str) -> Table {
    insights_in(root, query, TimeRange::default())
}

fn insights_in(root: &Path, query: &str, range: TimeRange) -> Table {
    block(async {
        let engine = Engine::open(root).await.unwrap();
        let plan = engine
            .insights(query, range)
            .await
            .unwrap_or_else(|e| panic!("{}", e.render(query)));
        let columns = plan
            .frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let (_, rows) = table(&plan.frame.collect().await.unwrap());
        (columns, rows)
    })
}

fn sql(root: &Path, text: &str) -> Table {
    block(async {
        let engine = Engine::open(root).await.unwrap();
        let frame = engine
            .sql(text)
            .await
            .unwrap_or_else(|e| panic!("{}", e.render(text)));
        table(&frame.collect().await.unwrap())
    })
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn aws_sample_average_min_max_bytes_by_pair() {
    let dir = lake();
    let (cols, rows) = insights(
        &lake_path(&dir),
        "stats avg(bytes), min(bytes), max(bytes) by srcAddr, dstAddr",
    );
    assert_eq!(
        cols,
        names(&[
            "srcAddr",
            "dstAddr",
            "avg(bytes)",
            "min(bytes)",
            "max(bytes)"
        ])
    );
    assert_eq!(
        rows,
        strings(&[
            &["10.0.1.5", "10.0.2.9", "4500.0", "4500", "4500"],
            &["10.0.1.5", "198.51.100.7", "2000.0", "1000", "3000"],
            &["10.0.1.6", "10.0.0.2", "140.0", "70", "210"],
            &["10.0.2.9", "10.0.1.5", "5000.0", "5000", "5000"],
            &["10.0.2.9", "198.51.100.20", "8000.0", "8000", "8000"],
            &["192.0.2.10", "10.0.1.5", "40.0", "40", "40"],
            &["192.0.2.10", "10.0.1.6", "40.0", "40", "40"],
            &["192.0.2.11", "10.0.1.5", "180.0", "180", "180"],
            &["192.0.2.11", "10.0.1.6", "60.0", "60", "60"],
            &["198.51.100.20", "10.0.2.9", "9000.0", "9000", "9000"],
            &["null", "null", "null", "null", "null"],
        ])
    );
}

#[test]
fn aws_sample_udp_sources() {
    let dir = lake();
    let (cols, rows) = insights(
        &lake_path(&dir),
        "filter protocol=17 | stats count(*) by srcAddr",
    );
    assert_eq!(cols, names(&["srcAddr", "count(*)"]));
    assert_eq!(rows, strings(&[&["10.0.1.6", "2"]]));
}

#[test]
fn aws_sample_top_byte_transfers() {
    let dir = lake();
    let (cols, rows) = insights(
        &lake_path(&dir),
        "stats sum(bytes) as bytesTransferred by srcAddr, dstAddr | sort bytesTransferred desc | limit 10",
    );
    assert_eq!(cols, names(&["srcAddr", "dstAddr", "bytesTransferred"]));
    assert_eq!(
        rows,
        strings(&[
            &["198.51.100.20", "10.0.2.9", "9000"],
            &["10.0.2.9", "198.51.100.20", "8000"],
            &["10.0.2.9", "10.0.1.5", "5000"],
            &["10.0.1.5", "10.0.2.9", "4500"],
            &["10.0.1.5", "198.51.100.7", "4000"],
            &["10.0.1.6", "10.0.0.2", "280"],
            &["192.0.2.11", "10.0.1.5", "180"],
            &["192.0.2.10", "10.0.1.5", "80"],
            &["192.0.2.11", "10.0.1.6", "60"],
            &["192.0.2.10", "10.0.1.6", "40"],
        ])
    );
}

#[test]
fn aws_sample_top_rejected_sources() {
    let dir = lake();
    let (cols, rows) = insights(
        &lake_path(&dir),
        "filter action=\"REJECT\" | stats count(*) as numRejections by srcAddr | sort numRejections desc | limit 20",
    );
    assert_eq!(cols, names(&["srcAddr", "numRejections"]));
    assert_eq!(rows, strings(&[&["192.0.2.10", "3"], &["192.0.2.11", "2"]]));
}

#[test]
fn aws_sample_top_packet_transfers() {
    let dir = lake();
    let (_, rows) = insights(
        &lake_path(&dir),
        "stats sum(packets) as packetsTransferred by srcAddr, dstAddr | sort packetsTransferred  desc | limit 15",
    );
    assert_eq!(
        rows,
        strings(&[
            &["10.0.1.5", "198.51.100.7", "30"],
            &["198.51.100.20", "10.0.2.9", "9"],
            &["10.0.2.9", "198.51.100.20", "8"],
            &["192.0.2.11", "10.0.1.6", "7"],
            &["192.0.2.11", "10.0.1.5", "6"],
            &["10.0.2.9", "10.0.1.5", "5"],
            &["10.0.1.5", "10.0.2.9", "4"],
            &["10.0.1.6", "10.0.0.2", "3"],
            &["192.0.2.10", "10.0.1.5", "2"],
            &["192.0.2.10", "10.0.1.6", "1"],
            &["null", "null", "null"],
        ])
    );
}

#[test]
fn aws_sample_subnet_byte_transfers() {
    let dir = lake();
    let (cols, rows) = insights(
        &lake_path(&dir),
        "filter isIpv4InSubnet(srcAddr, \"192.0.2.0/24\") | stats sum(bytes) as bytesTransferred by dstAddr | sort bytesTransferred desc | limit 15",
    );
    assert_eq!(cols, names(&["dstAddr", "bytesTransferred"]));
    assert_eq!(rows, strings(&[&["10.0.1.5", "260"], &["10.0.1.6", "100"]]));
}

#[test]
fn aws_sample_skipped_records_per_hour() {
    let dir = lake();
    // As the documentation writes it, one command per line.
    let (cols, rows) = insights(
        &lake_path(&dir),
        "filter logStatus=\"SKIPDATA\"\n| stats count(*) by bin(1h) as t\n| sort t",
    );
    assert_eq!(cols, names(&["t", "count(*)"]));
    assert_eq!(rows, strings(&[&["2019-08-26T20:00:00", "1"]]));
}

#[test]
fn aws_sample_nat_gateway_top_talkers() {
    let dir = lake();
    let root = lake_path(&dir);
    // NAT gateway private address 10.0.2.9; the VPC's first two octets are 10.0.
    let tail = "| stats sum(bytes) as bytesTransferred by srcAddr, dstAddr | sort bytesTransferred desc | limit 10";
    let (_, through) = insights(
        &root,
        &format!("filter (dstAddr like '10.0.2.9' and srcAddr like '10.0.') {tail}"),
    );
    assert_eq!(through, strings(&[&["10.0.1.5", "10.0.2.9", "4500"]]));
    let (_, uploads) = insights(
        &root,
        &format!("filter (srcAddr like '10.0.2.9' and dstAddr not like '10.0.') {tail}"),
    );
    assert_eq!(uploads, strings(&[&["10.0.2.9", "198.51.100.20", "8000"]]));
    let (_, downloads) = insights(
        &root,
        &format!("filter (dstAddr like '10.0.2.9' and srcAddr not like '10.0.') {tail}"),
    );
    assert_eq!(
        downloads,
        strings(&[&["198.51.100.20", "10.0.2.9", "9000"]])
    );
}

#[test]
fn fields_default_order_and_message() {
    let dir = lake();
    let (cols, rows) = insights(&lake_path(&dir), "limit 2");
    assert_eq!(cols, names(&["@timestamp", "@message"]));
    // Newest first: r13 (T0+3900) then r9 (T0+3780).
    assert_eq!(
        rows,
        strings(&[
            &[
                "2019-08-26T20:05:00",
                "2 123456789010 eni-b 192.0.2.10 10.0.1.6 5003 22 6 1 40 1566849900 1566849950 REJECT OK"
            ],
            &[
                "2019-08-26T20:03:00",
                "2 123456789010 eni-a - - - - - - - 1566849780 1566849840 - SKIPDATA"
            ],
        ])
    );
}

#[test]
fn filter_operators_and_functions() {
    let dir = lake();
    let root = lake_path(&dir);
    let q = |query: &str| insights(&root, query).1;
    assert_eq!(
        q(
            "filter dstPort in [22, 3389] and not (srcAddr = '192.0.2.11') | fields srcAddr, dstPort | sort dstPort, srcAddr"
        ),
        strings(&[&["192.0.2.10", "22"], &["192.0.2.10", "22"]])
    );
    assert_eq!(
        q("filter srcAddr =~ /^198\\./ | fields srcAddr"),
        strings(&[&["198.51.100.20"]])
    );
    assert_eq!(
        q("filter srcAddr like /^10\\.0\\.1\\.[56]$/ and bytes >= 1000 | stats count(*) as n"),
        strings(&[&["3"]])
    );
    assert_eq!(
        q(
            "filter interfaceId = 'eni-b' and strcontains(dstAddr, '198.51') = 1 | fields toupper(action) as a, strlen(srcAddr) as n, substr(srcAddr, 0, 3) as head"
        ),
        strings(&[&["ACCEPT", "8", "10."]])
    );
    assert_eq!(
        q(
            "filter ispresent(srcAddr) and isValidIpV4(srcAddr) and isIpInSubnet(dstAddr, '10.0.0.0/16') | stats count_distinct(srcAddr) as sources, pct(bytes, 50) as median, earliest(srcPort) as first, latest(srcPort) as last"
        ),
        // r3 r4 r5 r6 r7 r8 r11 r12 r13 r15 have a 10.0/16 destination; their bytes sorted:
        // 40 40 40 60 70 180 210 4500 5000 9000 -> median (70 + 180) / 2 = 125.
        strings(&[&["6", "125.0", "5000", "5003"]])
    );
}

#[test]
fn parse_dedup_display() {
    let dir = lake();
    let root = lake_path(&dir);
    let q = |query: &str| insights(&root, query);
    let (cols, rows) = q(
        "filter action = 'REJECT' | parse @message '* * * * * * * *' as v, acct, eni, src, dst, sport, dport, rest | display src, dport | dedup src",
    );
    assert_eq!(cols, names(&["src", "dport"]));
    // dedup keeps the newest record of each source (default order @timestamp desc): r13, r8.
    assert_eq!(
        rows,
        strings(&[&["192.0.2.10", "22"], &["192.0.2.11", "3389"]])
    );
    let (cols, rows) = q(
        "filter srcPort = 1024 | parse @message /(?<account>\\d{12}) (?<eni>eni-\\w+)/ | fields account, eni",
    );
    assert_eq!(cols, names(&["account", "eni"]));
    assert_eq!(rows, strings(&[&["123456789010", "eni-b"]]));
}

#[test]
fn time_range_limits_records() {
    let dir = lake();
    let range = TimeRange {
        start: Some(T0 + 3_600),
        end: Some(T0 + 3_800),
    };
    let (_, rows) = insights_in(&lake_path(&dir), "stats count(*) as n", range);
    // r7 (3660), r8 (3720), r9 (3780); not r13 (3900).
    assert_eq!(rows, strings(&[&["3"]]));
}

#[test]
fn insights_errors_point_at_the_problem() {
    let dir = lake();
    let root = lake_path(&dir);
    let cases = [
        ("filter srcadr = 'x'", 7, "did you mean"),
        ("stats sum(bytes) / 10 as x", 6, "must be an aggregation"),
        ("fields sum(bytes)", 7, "aggregation"),
        (
            "stats count(*) as n by srcAddr | sort bytes",
            38,
            "not a result of the `stats`",
        ),
        ("filter bin(5q) = 1", 11, "unknown time unit"),
        ("dedup srcAddr | fields dstAddr", 16, "only `limit`"),
        ("filter nosuch(srcAddr)", 7, "unknown function"),
        ("filter srcAddr =~ /(/", 18, "invalid regex"),
        (
            "filter isIpv4InSubnet(srcAddr, '2001:db8::/32')",
            31,
            "IPv4",
        ),
    ];
    for (query, offset, words) in cases {
        let error = block(async {
            let engine = Engine::open(&root).await.unwrap();
            match engine.insights(query, TimeRange::default()).await {
                Ok(_) => panic!("{query}: planned"),
                Err(e) => e,
            }
        });
        let shown = error.render(query);
        assert!(shown.contains(words), "{query}: {shown}");
        assert_eq!(
            error.position().map(|p| p.offset),
            Some(offset),
            "{query}: {shown}"
        );
    }
}

#[test]
fn sql_functions_and_partitions() {
    let dir = lake();
    let root = lake_path(&dir);
    let (cols, rows) = sql(
        &root,
        "SELECT protocol_name(protocol) AS p, count(*) AS n, sum(bytes) AS b FROM flows \
         WHERE is_ip_in_subnet(srcaddr, '192.0.2.0/24') OR NOT is_private_ip(srcaddr) \
         GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(cols, names(&["p", "n", "b"]));
    // Sources 192.0.2.10/11 (r3 r4 r5 r8 r13) and 198.51.100.20 (r15): all TCP.
    assert_eq!(rows, strings(&[&["TCP", "6", "9360"]]));
    let (_, rows) = sql(
        &root,
        "SELECT date, hour, count(*) FROM flows GROUP BY date, hour ORDER BY date, hour",
    );
    assert_eq!(
        rows,
        strings(&[&["2019-08-26", "19", "11"], &["2019-08-26", "20", "4"]])
    );
    let (_, rows) = sql(
        &root,
        "SELECT tcp_flags_names(19), is_ip_in_subnet('2001:db8::1', '2001:db8::/32'), \
         from_unixtime(1566846000)",
    );
    assert_eq!(
        rows,
        strings(&[&["FIN,SYN-ACK", "true", "2019-08-26T19:00:00"]])
    );
}

#[test]
fn sql_sorts_nulls_last_like_athena() {
    let dir = lake();
    let root = lake_path(&dir);
    for direction in ["DESC", "ASC"] {
        let (_, rows) = sql(
            &root,
            &format!(
                "SELECT srcaddr, sum(bytes) AS b FROM flows GROUP BY srcaddr ORDER BY b {direction}"
            ),
        );
        assert_eq!(rows.len(), 7); // six sources and the NODATA/SKIPDATA group
        assert_eq!(
            rows.last().unwrap(),
            &["null".to_string(), "null".to_string()],
            "{direction}"
        );
        assert_ne!(rows[0][1], "null");
    }
}

#[test]
fn start_filters_prune_hour_partitions() {
    let dir = lake();
    let root = lake_path(&dir);
    let plan = |text: &str| {
        block(async {
            let engine = Engine::open(&root).await.unwrap();
            let frame = engine.sql(text).await.unwrap();
            let physical = frame.create_physical_plan().await.unwrap();
            flowscope_query::render::physical_plan_text(&physical)
        })
    };
    let all = plan("SELECT count(*) FROM flows WHERE bytes > 0");
    assert!(all.contains("hour=19") && all.contains("hour=20"), "{all}");
    let late = plan(&format!(
        "SELECT count(*) FROM flows WHERE start >= {}",
        T0 + 3_600
    ));
    assert!(
        late.contains("hour=20") && !late.contains("hour=19"),
        "{late}"
    );
    let early = plan(&format!(
        "SELECT count(*) FROM flows WHERE \"end\" < {}",
        T0 + 3_000
    ));
    assert!(
        early.contains("hour=19") && !early.contains("hour=20"),
        "{early}"
    );
    // Pruning never changes answers.
    let (_, rows) = sql(
        &root,
        &format!("SELECT count(*) FROM flows WHERE start >= {}", T0 + 3_600),
    );
    assert_eq!(rows, strings(&[&["4"]]));
}

#[test]
fn sql_errors_carry_positions() {
    let dir = lake();
    let root = lake_path(&dir);
    for (text, offset) in [
        ("SELECT srcadr FROM flows", 7),
        // The parser stumbles on `flows`; the misspelt keyword before it is what is pointed at.
        ("SELECT srcaddr FORM flows", 15),
        ("INSERT INTO flows SELECT * FROM flows", usize::MAX),
    ] {
        let error = block(async {
            let engine = Engine::open(&root).await.unwrap();
            match engine.sql(text).await {
                Ok(_) => panic!("{text}: planned"),
                Err(e) => e,
            }
        });
        if offset == usize::MAX {
            assert!(error.to_string().to_lowercase().contains("dml"), "{error}");
        } else {
            assert_eq!(
                error.position().map(|p| p.offset),
                Some(offset),
                "{}",
                error.render(text)
            );
        }
    }
}

#[test]
fn top_contributors() {
    let dir = lake();
    let root = lake_path(&dir);
    let run = |spec: TopSpec| {
        block(async {
            let engine = Engine::open(&root).await.unwrap();
            table(
                &top_plan(&engine, &spec)
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap(),
            )
        })
    };
    let spec = TopSpec {
        keys: resolve_keys(&["srcaddr".into()]).unwrap(),
        metric: Metric::Sum("bytes".into()),
        limit: 3,
        bucket: None,
        conditions: Vec::new(),
        filter: None,
        range: TimeRange::default(),
        warnings: Vec::new(),
    };
    let (cols, rows) = run(spec.clone());
    assert_eq!(cols, names(&["rank", "srcaddr", "bytes", "percent"]));
    // Total bytes 31,140: 10.0.2.9 13000, 198.51.100.20 9000, 10.0.1.5 8500.
    assert_eq!(
        rows,
        strings(&[
            &["1", "10.0.2.9", "13000", "41.75"],
            &["2", "198.51.100.20", "9000", "28.9"],
            &["3", "10.0.1.5", "8500", "27.3"],
        ])
    );
    let rejected = TopSpec {
        keys: resolve_keys(&["dstport".into()]).unwrap(),
        metric: Metric::Records,
        bucket: Some(3_600),
        filter: Some("action = 'REJECT'".into()),
        limit: 1,
        ..spec
    };
    let (cols, rows) = run(rejected);
    assert_eq!(
        cols,
        names(&["bucket", "rank", "dstport", "records", "percent"])
    );
    assert_eq!(
        rows,
        strings(&[
            &["2019-08-26T19:00:00", "1", "22", "2", "66.67"],
            &["2019-08-26T20:00:00", "1", "22", "1", "50.0"],
        ])
    );
    // AWS's "Rejected TCP connections" rule (Sum without ValueOf counts records).
    let rule = Rule::from_json(r#"{"Schema":{"Name":"CloudWatchLogRule","Version":1},"LogGroupNames":["/aws/containerinsights/sample-cluster-name/flowlogs"],"LogFormat":"CLF","Fields":{"3":"interfaceID","4":"sourceAddress","8":"protocol","13":"action"},"Contribution":{"Keys":["interfaceID","sourceAddress"],"Filters":[{"Match":"protocol","EqualTo":6},{"Match":"action","In":["REJECT"]}]},"AggregateOn":"Sum"}"#).unwrap();
    let (cols, rows) = run(rule.to_spec(10, TimeRange::default(), None).unwrap());
    assert_eq!(
        cols,
        names(&["rank", "interfaceID", "sourceAddress", "records", "percent"])
    );
    assert_eq!(
        rows,
        strings(&[
            &["1", "eni-a", "192.0.2.10", "2", "40.0"],
            &["2", "eni-a", "192.0.2.11", "1", "20.0"],
            &["3", "eni-b", "192.0.2.10", "1", "20.0"],
            &["4", "eni-b", "192.0.2.11", "1", "20.0"],
        ])
    );
}
