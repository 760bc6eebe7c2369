//! The built-in detections in process: a lake made of flow log lines written here, a
//! `Detector` over it, and the findings each detection builds (its figures typed, its SQL
//! showing its records).

use std::fmt::Write as _;
use std::path::Path;

use flowscope_detect::{
    BuiltIn, DetectConfig, Detector, Finding, Incremental, Severity, ThreatIntel,
};
use flowscope_lake::Lake;
use flowscope_lake::ingest::{IngestOptions, Quiet, ingest};
use flowscope_query::{Engine, TimeRange};

const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol \
                      packets bytes start end action log-status";
const T0: i64 = 1_700_000_000;

/// One default-format record of `eni`: (source, destination), (source port, destination port).
fn line(
    out: &mut String,
    eni: &str,
    (src, dst): (&str, &str),
    (sp, dp): (u16, u16),
    t: i64,
    act: &str,
) {
    writeln!(
        out,
        "2 123456789010 {eni} {src} {dst} {sp} {dp} 6 1 60 {t} {} {act} OK",
        t + 30
    )
    .unwrap();
}

/// A lake with a vertical scan, an SSH brute force, an exposed RDP port and a listed address.
fn lake(dir: &Path) -> Lake {
    let mut text = format!("{HEADER}\n");
    let (web, app) = ("10.0.1.10", "10.0.1.20");
    // 60 ports of one host refused to one scanner.
    for port in 1..=60 {
        let t = T0 + i64::from(port);
        line(
            &mut text,
            "eni-web",
            ("203.0.113.9", web),
            (40_000, port),
            t,
            "REJECT",
        );
    }
    // 15 SSH connections in five minutes from one source, all refused.
    for i in 0..15 {
        let t = T0 + 20 * i64::from(i);
        line(
            &mut text,
            "eni-web",
            ("198.51.100.7", web),
            (50_000 + i, 22),
            t,
            "REJECT",
        );
    }
    // RDP answered for seven internet addresses.
    for i in 0..7 {
        let src = format!("198.51.100.{}", 20 + i);
        line(
            &mut text,
            "eni-app",
            (&src, app),
            (51_000, 3389),
            T0 + 100,
            "ACCEPT",
        );
        line(
            &mut text,
            "eni-app",
            (app, &src),
            (3389, 51_000),
            T0 + 100,
            "ACCEPT",
        );
    }
    // One accepted connection out to a listed address.
    line(
        &mut text,
        "eni-app",
        (app, "192.0.2.66"),
        (52_000, 443),
        T0 + 200,
        "ACCEPT",
    );
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("flows.log"), text).unwrap();
    let lake = Lake::open(dir.join("lake")).unwrap();
    let inputs = flowscope_lake::input::expand(&[src.display().to_string()]).unwrap();
    ingest(&lake, &inputs, &IngestOptions::default(), &Quiet).unwrap();
    lake
}

fn run(dir: &Path, config: DetectConfig) -> Vec<Finding> {
    let mut intel = ThreatIntel::new();
    intel.insert("192.0.2.64/26".parse().unwrap(), "test-list");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let engine = Engine::open(dir.join("lake")).await.unwrap();
            Detector::new(&engine, config, intel, TimeRange::default())
                .run()
                .await
                .unwrap()
                .findings
        })
}

fn of(findings: &[Finding], id: BuiltIn) -> Vec<&Finding> {
    findings.iter().filter(|f| f.detection == id.id()).collect()
}

#[test]
fn each_detection_builds_its_finding_with_typed_figures() {
    let dir = tempfile::tempdir().unwrap();
    lake(dir.path());
    let findings = run(dir.path(), DetectConfig::default());

    let scan = of(&findings, BuiltIn::VerticalPortScan);
    assert_eq!(scan.len(), 1, "{findings:#?}");
    let scan = scan[0];
    assert_eq!(scan.src.as_deref(), Some("203.0.113.9"));
    assert_eq!(scan.records, 60);
    assert_eq!(
        serde_json::to_string(&scan.evidence.figures).unwrap(),
        r#"{"accepted_ports":[],"refused_ports":60}"#
    );
    assert!(
        scan.summary.contains("probed 60 ports (1-60) of 10.0.1.10"),
        "{}",
        scan.summary
    );
    assert_eq!(scan.evidence.interfaces, ["eni-web"]);

    let ssh = of(&findings, BuiltIn::SshBruteForce);
    assert_eq!(ssh.len(), 1, "{findings:#?}");
    assert_eq!(ssh[0].severity, Severity::Medium);
    assert_eq!(ssh[0].dst_port, Some(22));
    assert_eq!(
        serde_json::to_string(&ssh[0].evidence.figures).unwrap(),
        r#"{"accepted":0,"attempts":15}"#
    );
    assert!(of(&findings, BuiltIn::RdpBruteForce).is_empty());

    let exposed = of(&findings, BuiltIn::ExposedSensitivePort);
    assert_eq!(exposed.len(), 1, "{findings:#?}");
    assert_eq!(exposed[0].severity, Severity::Medium);
    assert_eq!(exposed[0].evidence.sources.len(), 7);
    assert!(
        exposed[0]
            .summary
            .contains("port 3389 (RDP) from 7 internet addresses")
    );

    let listed = of(&findings, BuiltIn::ThreatIntel);
    assert_eq!(listed.len(), 1, "{findings:#?}");
    assert_eq!(listed[0].severity, Severity::Critical);
    assert_eq!(listed[0].evidence.figures["list"], "test-list");
    assert_eq!(
        listed[0].evidence.figures["listed_network"],
        "192.0.2.64/26"
    );

    // The most severe first, and each finding's SQL shows exactly its records.
    assert_eq!(findings[0].detection, "threat_intel");
    let sample = &scan.evidence.sample;
    assert_eq!(sample.len(), 3);
    assert!(
        sample[0].contains("203.0.113.9 10.0.1.10 40000 1 6"),
        "{sample:?}"
    );
}

#[test]
fn a_disabled_detection_finds_nothing_and_the_others_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    lake(dir.path());
    let all = run(dir.path(), DetectConfig::default());
    let config = DetectConfig::parse(
        "disable = [\"vertical_port_scan\", \"exposed_sensitive_port\"]\n",
        "rules.toml",
    )
    .unwrap();
    let some = run(dir.path(), config);
    assert!(of(&some, BuiltIn::VerticalPortScan).is_empty());
    assert!(of(&some, BuiltIn::ExposedSensitivePort).is_empty());
    let rest: Vec<&Finding> = all
        .iter()
        .filter(|f| f.detection != "vertical_port_scan" && f.detection != "exposed_sensitive_port")
        .collect();
    assert_eq!(some.iter().collect::<Vec<_>>(), rest);
    // An id that is no detection is refused, naming the ones there are.
    let e = DetectConfig::parse("disable = [\"port_scan\"]\n", "rules.toml").unwrap_err();
    assert!(
        e.to_string()
            .contains("vertical_port_scan, horizontal_sweep"),
        "{e}"
    );
}

/// Adds the lines of `text` (after the header) to the lake at `dir`, as one more ingest.
fn add(dir: &Path, name: &str, text: &str) {
    let src = dir.join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("flows.log"), format!("{HEADER}\n{text}")).unwrap();
    let lake = Lake::open(dir.join("lake")).unwrap();
    let inputs = flowscope_lake::input::expand(&[src.display().to_string()]).unwrap();
    ingest(&lake, &inputs, &IngestOptions::default(), &Quiet).unwrap();
}

#[test]
fn incremental_runs_read_only_the_hours_that_changed_and_find_what_a_whole_run_finds() {
    let dir = tempfile::tempdir().unwrap();
    lake(dir.path());
    let mut intel = ThreatIntel::new();
    intel.insert("192.0.2.64/26".parse().unwrap(), "test-list");
    let hour = |t: i64| t.div_euclid(3_600) * 3_600;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = runtime
        .block_on(Engine::open(dir.path().join("lake")))
        .unwrap();
    let detector = Detector::new(
        &engine,
        DetectConfig::default(),
        intel.clone(),
        TimeRange::default(),
    );
    let mut kept = Incremental::new(engine.root());
    let step = |kept: &mut Incremental, unsettled: &[i64]| {
        runtime.block_on(async {
            let unsettled = unsettled.iter().copied().collect();
            let live = detector.run_incremental(kept, &unsettled).await.unwrap();
            let whole = detector.run().await.unwrap();
            assert_eq!(live.findings, whole.findings);
            assert!(whole.reread.is_none());
            let r = live.reread.expect("an incremental run says what it read");
            (live.findings, r.hours_read, r.hours_kept, r.records_read)
        })
    };

    // The first run reads the one hour; the next reads nothing and finds the same.
    let (first, read, held, records) = step(&mut kept, &[]);
    assert_eq!((read, held, records), (1, 0, 90));
    assert_eq!(of(&first, BuiltIn::VerticalPortScan)[0].records, 60);
    let (again, read, held, records) = step(&mut kept, &[]);
    assert_eq!((read, held, records), (0, 1, 0));
    assert_eq!(again, first);
    assert_eq!(kept.hours_kept(), 1);

    // A new hour (another SSH brute force, two hours on): only it is read.
    let later = T0 + 7_200;
    let mut text = String::new();
    for i in 0..15 {
        line(
            &mut text,
            "eni-app",
            ("198.51.100.99", "10.0.1.20"),
            (50_000 + i, 22),
            later + 20 * i64::from(i),
            "REJECT",
        );
    }
    add(dir.path(), "later", &text);
    let (found, read, held, records) = step(&mut kept, &[]);
    assert_eq!((read, held, records), (1, 1, 15));
    assert_eq!(of(&found, BuiltIn::SshBruteForce).len(), 2, "{found:#?}");

    // Late records into the first hour (the scan goes on to 80 ports): that hour is read
    // again, the later one kept, and the scan's finding grows.
    let mut text = String::new();
    for port in 61..=80 {
        line(
            &mut text,
            "eni-web",
            ("203.0.113.9", "10.0.1.10"),
            (40_000, port),
            T0 + 300 + i64::from(port),
            "REJECT",
        );
    }
    add(dir.path(), "late", &text);
    let (found, read, held, records) = step(&mut kept, &[]);
    assert_eq!((read, held, records), (1, 1, 90 + 20));
    assert_eq!(of(&found, BuiltIn::VerticalPortScan)[0].records, 80);
    assert_eq!(kept.hours_kept(), 2);

    // An hour with records not committed yet is read every time, and not kept.
    let (_, read, held, _) = step(&mut kept, &[hour(later)]);
    assert_eq!((read, held), (1, 1));
    let (_, read, held, _) = step(&mut kept, &[]);
    assert_eq!((read, held), (1, 1), "the unsettled hour was not kept");

    // With no room to keep anything, every run reads every hour.
    let mut none = Incremental::with_budget(engine.root(), 0);
    for _ in 0..2 {
        let (_, read, held, records) = step(&mut none, &[]);
        assert_eq!((read, held, records), (2, 0, 90 + 20 + 15));
    }
    assert_eq!(none.hours_kept(), 0);

    // A compaction rewrites the files: the hours it touched are read again.
    let (_, read, held, _) = step(&mut kept, &[]);
    assert_eq!((read, held), (0, 2));
    let lake = Lake::open(dir.path().join("lake")).unwrap();
    flowscope_lake::maintenance::compact(&lake).unwrap();
    drop(lake);
    let (_, read, held, _) = step(&mut kept, &[]);
    assert_eq!(
        (read, held),
        (1, 1),
        "the compacted hour (two files) is read again"
    );
}
