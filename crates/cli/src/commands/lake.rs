//! `flowscope lake`: look after a lake.

use std::path::PathBuf;

use flowscope_lake::Lake;
use flowscope_lake::info::info;

use crate::Outcome;

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
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        LakeCommand::Info { lake, json } => {
            anyhow::ensure!(lake.is_dir(), "{}: no such lake", lake.display());
            let lake = Lake::open(&lake)?;
            let info = info(&lake)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(Outcome::Success);
            }
            let time = |t: Option<i64>| t.map_or("-".to_string(), |t| t.to_string());
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
