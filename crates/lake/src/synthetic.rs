//! Synthetic flow logs written in AWS's S3 layout, for trials and benchmarks.

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use flowscope_record::LogFormat;
use flowscope_record::synth::{Synth, Traffic};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::AwsObject;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Records in all.
    pub records: u64,
    /// Files (each a 5-minute window, as AWS publishes them).
    pub files: u64,
    /// The log format.
    pub format: LogFormat,
    /// Seed: the same seed gives the same files.
    pub seed: u64,
    /// Unix seconds of the first window.
    pub start: i64,
    /// Account and region in the keys and names.
    pub account_id: String,
    /// Region in the keys and names.
    pub region: String,
    /// Flow log ID in the names.
    pub flow_log_id: String,
    /// How records are drawn; [`Traffic::Realistic`] also gives files of mixed sizes (most
    /// small, one in twenty about thirty times larger).
    pub traffic: Traffic,
}

/// Totals of what was generated: the ground truth to check readers against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Generated {
    /// Files written.
    pub files: u64,
    /// Records written.
    pub records: u64,
    /// Sum of `packets`.
    pub packets: u64,
    /// Sum of `bytes`.
    pub bytes: u64,
    /// Bytes of gzip written.
    pub gzip_bytes: u64,
}

/// Writes `options.files` gzip text files under `out/AWSLogs/{account}/vpcflowlogs/{region}/
/// yyyy/mm/dd/`, named as AWS names them, each with a header line, spread over 5-minute windows.
/// Files are independent, so `threads` write them in parallel.
///
/// # Errors
/// [`Error::Io`] when a folder or file cannot be written.
pub fn generate(out: &Path, options: &GenerateOptions, threads: usize) -> Result<Generated> {
    generate_with_progress(out, options, threads, &|_| {})
}

/// [`generate`], calling `done(records)` as each file is written.
///
/// # Errors
/// As [`generate`].
pub fn generate_with_progress(
    out: &Path,
    options: &GenerateOptions,
    threads: usize,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Generated> {
    let files = options.files.max(1);
    let shares = shares(options, files);
    let threads = threads.clamp(1, files as usize);
    let next = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<Result<Generated>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut total = Generated::default();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= files {
                            return Ok(total);
                        }
                        let file = write_file(out, options, i, shares[i as usize])?;
                        done(file.records);
                        total.add(&file);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("generator threads do not panic"))
            .collect()
    });
    let mut total = Generated::default();
    for result in results {
        total.add(&result?);
    }
    Ok(total)
}

impl Generated {
    fn add(&mut self, other: &Generated) {
        self.files += other.files;
        self.records += other.records;
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.gzip_bytes += other.gzip_bytes;
    }
}

/// Records of each file: an even split, or for realistic traffic a weighted one (most files
/// small, one in twenty about thirty times larger), summing to `options.records` exactly.
fn shares(options: &GenerateOptions, files: u64) -> Vec<u64> {
    if options.traffic == Traffic::Uniform {
        return (0..files)
            .map(|i| options.records / files + u64::from(i < options.records % files))
            .collect();
    }
    let weights: Vec<u64> = (0..files)
        .map(|i| {
            let h = (options.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_mul(0x2545_f491_4f6c_dd1d)
                >> 32;
            // One file in twenty (the eighth, the twenty-eighth …) is the large one.
            if i % 20 == 7 { 30 } else { 1 + h % 3 }
        })
        .collect();
    let total: u64 = weights.iter().sum();
    let mut shares: Vec<u64> = weights
        .iter()
        .map(|w| (u128::from(options.records) * u128::from(*w) / u128::from(total)) as u64)
        .collect();
    let left = options.records - shares.iter().sum::<u64>();
    for i in 0..left {
        shares[(i % files) as usize] += 1;
    }
    shares
}

fn write_file(out: &Path, options: &GenerateOptions, i: u64, records: u64) -> Result<Generated> {
    let window = options.start + i as i64 * 300;
    let object = AwsObject {
        account_id: options.account_id.clone(),
        region: options.region.clone(),
        flow_log_id: options.flow_log_id.clone(),
        window_start: window,
        parquet: false,
    };
    let hash = (options.seed ^ i).wrapping_mul(0x9e37_79b9) as u32;
    let path = out.join(object.key(hash, false, false));
    let dir = path.parent().expect("keys have folders").to_path_buf();
    let io = |e| Error::io(path.display().to_string(), e);
    fs::create_dir_all(&dir).map_err(io)?;
    let mut synth = Synth::new(options.seed.wrapping_mul(1_000_003) ^ i);
    synth.traffic = options.traffic;
    synth.base_time = window as u64;
    synth.window = 300;
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
    let mut text = format!("{}\n", options.format.header()).into_bytes();
    let mut left = records;
    while left > 0 {
        let n = left.min(10_000);
        synth.write_lines(&options.format, n as usize, &mut text);
        gz.write_all(&text).map_err(io)?;
        text.clear();
        left -= n;
    }
    let bytes = gz.finish().map_err(io)?;
    fs::write(&path, &bytes).map_err(io)?;
    Ok(Generated {
        files: 1,
        records,
        packets: synth.packets,
        bytes: synth.bytes,
        gzip_bytes: bytes.len() as u64,
    })
}
