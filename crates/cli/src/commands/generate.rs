//! `flowscope generate`: synthetic flow logs in AWS's S3 layout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use flowscope_lake::synthetic::{GenerateOptions, generate_with_progress};
use flowscope_record::LogFormat;
use flowscope_record::synth::Traffic;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Outcome;

/// Write synthetic flow logs as AWS delivers them to S3 (AWSLogs/… keys, AWS file names, header
/// lines, gzip, one file per 5-minute window), for trials and benchmarks. The same seed gives the
/// same files. Prints the totals (records, packets, bytes) as JSON on stdout.
///
/// The default traffic draws every record on its own (its files are fixed per seed: benchmarks
/// rely on them); `--traffic realistic` draws connections instead — skewed clients using a few
/// services each, every request answered, internet addresses refused — in files of mixed sizes.
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

    /// When the first window starts: 2023-11-14T22:15:00Z, 2023-11-14, Unix seconds, or a
    /// time ago (-2h, -7d), as every --start takes it; rounded down to 5 minutes.
    #[arg(
        long,
        value_name = "TIME",
        default_value = "1700000100",
        allow_hyphen_values = true
    )]
    start: String,

    /// How records are drawn: uniform (each on its own; the default, fixed per seed) or
    /// realistic (connections answered, few services per client, skew, mixed file sizes).
    #[arg(long, value_enum, default_value_t = TrafficArg::Uniform)]
    traffic: TrafficArg,

    /// Writer threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TrafficArg {
    /// Every record drawn on its own.
    Uniform,
    /// Connections, as a VPC's traffic looks.
    Realistic,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    // The wall clock is read here, at the edge, for `--start -2h`.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let start = flowscope_query::time::parse_time(&args.start, now)
        .with_context(|| format!("--start {}", args.start))?;
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
        start: start - start.rem_euclid(300),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        flow_log_id: "fl-0123456789abcdef0".into(),
        traffic: match args.traffic {
            TrafficArg::Uniform => Traffic::Uniform,
            TrafficArg::Realistic => Traffic::Realistic,
        },
    };
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let began = Instant::now();
    let draw = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(args.records), draw);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} records  {per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let totals = generate_with_progress(&args.out, &options, threads, &|n| bar.inc(n))?;
    bar.finish_and_clear();
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
