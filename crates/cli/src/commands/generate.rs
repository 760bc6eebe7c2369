//! `flowscope generate`: synthetic flow logs in AWS's S3 layout.

use std::path::PathBuf;
use std::time::Instant;

use flowscope_lake::synthetic::{GenerateOptions, generate};
use flowscope_record::LogFormat;

use super::Outcome;

/// Write synthetic flow logs as AWS delivers them to S3 (AWSLogs/… keys, AWS file names, header
/// lines, gzip, one file per 5-minute window), for trials and benchmarks. The same seed gives the
/// same files. Prints the totals (records, packets, bytes) as JSON on stdout.
#[derive(clap::Args)]
pub struct Args {
    /// Output folder (AWSLogs/ is created inside it).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Records in all.
    #[arg(long, default_value_t = 100_000)]
    records: u64,

    /// Files (5-minute windows).
    #[arg(long, default_value_t = 12)]
    files: u64,

    /// Log format (default: the AWS default format).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,

    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Unix seconds of the first window.
    #[arg(long, default_value_t = 1_700_000_100)]
    start: i64,

    /// Writer threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let format = args
        .format
        .as_deref()
        .map(LogFormat::parse)
        .transpose()?
        .unwrap_or_default();
    let options = GenerateOptions {
        records: args.records,
        files: args.files,
        format,
        seed: args.seed,
        start: args.start - args.start.rem_euclid(300),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        flow_log_id: "fl-0123456789abcdef0".into(),
    };
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let began = Instant::now();
    let totals = generate(&args.out, &options, threads)?;
    eprintln!(
        "flowscope: generated {} records in {} files ({:.1} MB gzip) in {:.2} s",
        totals.records,
        totals.files,
        totals.gzip_bytes as f64 / 1e6,
        began.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&totals)?);
    Ok(Outcome::Success)
}
