//! `flowscope lake`: look after a lake.

use std::path::PathBuf;

use flowscope_lake::Lake;
use flowscope_lake::info::info;
use flowscope_lake::maintenance::{compact, prune, prune_plan};
use flowscope_query::units::{bytes, thousands};
use flowscope_record::time::{parse_duration, rfc3339};

use super::Outcome;
use super::served::{self, Writer};
use flowscope_server::handoff::{Reply, Request};

/// Inspect and maintain a Parquet lake.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LakeCommand,
}

#[derive(clap::Subcommand)]
enum LakeCommand {
    /// Partitions, files, rows, bytes, time range and flow logs of a lake.
    Info {
        /// The lake folder.
        #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
        lake: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Merge the files of each hour partition into one (as one crash-safe commit).
    Compact {
        /// The lake folder.
        #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
        lake: PathBuf,
    },
    /// Delete hour partitions older than a duration (`90d`, `12h`, `2w`).
    Prune {
        /// The lake folder.
        #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
        lake: PathBuf,
        /// Age beyond which partitions go: a number and s, m, h, d or w.
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Say what would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The lake at `root`, which must exist: this process's, or its server's.
fn open_existing(root: &std::path::Path) -> anyhow::Result<Writer> {
    anyhow::ensure!(
        root.is_dir() && Lake::exists(root),
        "{}: not a flowscope lake (no _flowscope/ folder); make one with `flowscope ingest SRC \
         --lake DIR`",
        root.display()
    );
    served::open(root)
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        LakeCommand::Compact { lake: root } => {
            let done = match open_existing(&root)? {
                Writer::Local(lake) => compact(&lake)?,
                Writer::Served => match served::send(&root, &Request::Compact)? {
                    Reply::Compacted(done) => done,
                    other => anyhow::bail!("the server answered a compaction with {other:?}"),
                },
            };
            println!(
                "compacted {} partitions: {} files into {} ({} rows)",
                done.partitions,
                done.files_before,
                done.files_after,
                thousands(i128::from(done.rows))
            );
            Ok(Outcome::Success)
        }
        LakeCommand::Prune {
            lake: root,
            older_than,
            dry_run,
        } => {
            let age = parse_duration(&older_than).ok_or_else(|| {
                anyhow::anyhow!("--older-than {older_than}: expected a number and s, m, h, d or w")
            })?;
            // The wall clock is read here, at the edge, and nowhere deeper.
            #[allow(clippy::disallowed_methods)]
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let cutoff = now as i64 - age;
            let done = match open_existing(&root)? {
                Writer::Local(lake) if dry_run => prune_plan(&lake, cutoff)?,
                Writer::Local(lake) => prune(&lake, cutoff)?,
                Writer::Served => match served::send(&root, &Request::Prune { cutoff, dry_run })? {
                    Reply::Pruned(done) => done,
                    other => anyhow::bail!("the server answered a prune with {other:?}"),
                },
            };
            println!(
                "{} {} partitions older than {older_than}: {} files, {} rows{}",
                if dry_run { "would prune" } else { "pruned" },
                done.partitions,
                done.files,
                thousands(i128::from(done.rows)),
                if dry_run {
                    " (--dry-run: nothing was deleted)"
                } else {
                    ""
                }
            );
            if !dry_run && done.files > 0 {
                println!(
                    "the lake still remembers the files those records came from:                      `flowscope ingest --reingest` takes them again"
                );
            }
            Ok(Outcome::Success)
        }
        LakeCommand::Info { lake: root, json } => {
            let info = match open_existing(&root)? {
                Writer::Local(lake) => info(&lake)?,
                Writer::Served => match served::send(&root, &Request::Info)? {
                    Reply::Info(info) => info,
                    other => anyhow::bail!("the server answered `lake info` with {other:?}"),
                },
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(Outcome::Success);
            }
            let time =
                |t: Option<i64>| t.map_or("-".to_string(), |t| format!("{t} ({})", rfc3339(t)));
            println!("lake        {}", root.display());
            let n = |v: u64| thousands(i128::from(v));
            println!("partitions  {}", n(info.partitions as u64));
            println!("files       {}", n(info.files as u64));
            println!("rows        {}", n(info.rows));
            println!(
                "bytes       {} ({} bytes of Parquet)",
                bytes(info.bytes as f64),
                n(info.bytes)
            );
            println!("first start {}", time(info.first_start));
            println!("last end    {}", time(info.last_end));
            println!(
                "sources     {} ({} lines rejected)",
                n(info.sources as u64),
                n(info.rejected)
            );
            println!("commits     {}", n(info.commits as u64));
            println!(
                "flow logs   {}",
                if info.flow_logs.is_empty() {
                    "-".to_string()
                } else {
                    info.flow_logs.join(", ")
                }
            );
            Ok(Outcome::Success)
        }
    }
}
