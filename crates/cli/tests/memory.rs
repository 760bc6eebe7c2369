//! Ingest memory does not grow with the number of input files (peak RSS measured by GNU time).

use std::fmt::Write as _;
use std::fs;
use std::process::Command;

/// Ingests `src` into `lake` under GNU time; returns the peak RSS in bytes.
fn ingest(lake: &std::path::Path, src: &std::path::Path) -> u64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss-kb=%M", env!("CARGO_BIN_EXE_flowscope")])
        .args(["ingest", "--quiet", "--lake"])
        .arg(lake)
        .arg(src)
        .output()
        .expect("GNU time (Debian package `time`; .ci/run installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ingested 20000 records"), "{err}");
    let kb: u64 = err
        .lines()
        .find_map(|line| line.strip_prefix("maxrss-kb="))
        .unwrap_or_else(|| panic!("no peak RSS in {err}"))
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn twenty_thousand_one_record_files_take_no_more_memory_than_one_file_of_them() {
    let work = tempfile::tempdir().unwrap();
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol \
                  packets bytes start end action log-status\n";
    let (one, many) = (work.path().join("one"), work.path().join("many"));
    fs::create_dir(&one).unwrap();
    let mut all = String::from(header);
    for i in 0..20_000u32 {
        let line = format!(
            "2 123456789012 eni-0a1b2c3d4e5f60718 10.0.{}.{} 10.1.0.1 {} 443 6 3 {} {} {} ACCEPT OK\n",
            i / 250,
            i % 250,
            1024 + i,
            100 + i,
            1_620_043_500 + i % 3_600,
            1_620_043_560 + i % 3_600,
        );
        let folder = many.join((i / 1_000).to_string());
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join(format!("f{i}.log")), format!("{header}{line}")).unwrap();
        write!(all, "{line}").unwrap();
    }
    fs::write(one.join("all.log"), all).unwrap();

    let single = ingest(&work.path().join("lake-one"), &one);
    let peak = ingest(&work.path().join("lake-many"), &many);
    eprintln!(
        "peak RSS: one file {} MiB, 20,000 files {} MiB",
        single >> 20,
        peak >> 20
    );
    assert!(
        peak <= single + (64 << 20),
        "20,000 files peaked at {} MiB, one file of the same records at {} MiB",
        peak >> 20,
        single >> 20
    );
}
