//! `flowscope lake`: look after a lake.

use std::path::PathBuf;

use flowscope_lake::Lake;
use flowscope_lake::info::info;
use flowscope_lake::maintenance::{compact, prune};
use flowscope_record::time::{parse_duration, rfc3339};

use super::Outcome;

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
        #[arg(long, value_name = "DIR")]
        lake: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Merge the files of each hour partition into one (as one crash-safe commit).
    Compact {
        /// The lake folder.
        #[arg(long, value_name = "DIR")]
        lake: PathBuf,
    },
    /// Delete hour partitions older than a duration (`90d`, `12h`, `2w`).
    Prune {
        /// The lake folder.
        #[arg(long, value_name = "DIR")]
        lake: PathBuf,
        /// Age beyond which partitions go: a number and s, m, h, d or w.
        #[arg(long, value_name = "AGE")]
        older_than: String,
    },
}

fn open_existing(lake: &std::path::Path) -> anyhow::Result<Lake> {
    anyhow::ensure!(lake.is_dir(), "{}: no such lake", lake.display());
    Ok(Lake::open(lake)?)
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        LakeCommand::Compact { lake } => {
            let lake = open_existing(&lake)?;
            let done = compact(&lake)?;
            println!(
                "compacted {} partitions: {} files into {} ({} rows)",
                done.partitions, done.files_before, done.files_after, done.rows
            );
            Ok(Outcome::Success)
        }
        LakeCommand::Prune { lake, older_than } => {
            let age = parse_duration(&older_than).ok_or_else(|| {
                anyhow::anyhow!("--older-than {older_than}: expected a number and s, m, h, d or w")
            })?;
            let lake = open_existing(&lake)?;
            // The wall clock is read here, at the edge, and nowhere deeper.
            #[allow(clippy::disallowed_methods)]
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let done = prune(&lake, now as i64 - age)?;
            println!(
                "pruned {} partitions older than {older_than}: {} files, {} rows",
                done.partitions, done.files, done.rows
            );
            Ok(Outcome::Success)
        }
        LakeCommand::Info { lake, json } => {
            let lake = open_existing(&lake)?;
            let info = info(&lake)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(Outcome::Success);
            }
            let time =
                |t: Option<i64>| t.map_or("-".to_string(), |t| format!("{t} ({})", rfc3339(t)));
            println!("lake        {}", lake.root().display());
            println!("partitions  {}", info.partitions);
            println!("files       {}", info.files);
            println!("rows        {}", info.rows);
            println!("bytes       {}", info.bytes);
            println!("first start {}", time(info.first_start));
            println!("last end    {}", time(info.last_end));
            println!(
                "sources     {} ({} lines rejected)",
                info.sources, info.rejected
            );
            println!("commits     {}", info.commits);
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
