//! `flowscope sql`: SQL over a lake, with DataFusion.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use flowscope_query::Engine;

use super::Outcome;
use super::output::{OutputArgs, TimeArgs, note_if_outside, note_timing, query_error, runtime};

/// Run SQL over a lake: the table is `flows` (AWS's Parquet column names plus the `date` and
/// `hour` partition columns). Filters on `start` skip whole hour partitions.
///
/// Functions beyond DataFusion's own: is_ip_in_subnet(ip, cidr), is_private_ip(ip),
/// is_valid_ip(s), protocol_name(n), tcp_flags_names(n); from_unixtime(start) gives a timestamp.
#[derive(clap::Args)]
pub struct Args {
    /// The SQL; several statements separated by `;` run in order. `-` reads standard input.
    #[arg(value_name = "SQL")]
    sql: String,
    /// The lake folder.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    /// Only records starting in the range: `flows` (and `vpc_flow_logs`) hold just those, so
    /// every statement sees the same range and hours outside it are not read.
    #[command(flatten)]
    time: TimeArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Print the optimised logical plan and the physical plan instead of running the query.
    #[arg(long)]
    explain: bool,
    /// Print each statement's row count and time to standard error.
    #[arg(long)]
    timing: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let text = if args.sql == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the SQL from standard input")?;
        s
    } else {
        args.sql.clone()
    };
    let range = args.time.range()?;
    runtime()?.block_on(async move {
        let engine = Engine::open(&args.lake).await?;
        engine.restrict(range)?;
        let statements = engine.parse_sql(&text).map_err(|e| query_error(e, &text))?;
        for statement in statements {
            let started = Instant::now();
            let frame = engine
                .plan_statement(statement, &text)
                .await
                .map_err(|e| query_error(e, &text))?;
            if args.explain {
                let logical = frame.clone().into_optimized_plan()?;
                let physical = frame.create_physical_plan().await?;
                println!("logical plan:\n{}", logical.display_indent());
                println!(
                    "physical plan:\n{}",
                    flowscope_query::render::physical_plan_text(&physical)
                );
                continue;
            }
            let stream = frame
                .execute_stream()
                .await
                .map_err(|e| query_error(e.into(), &text))?;
            let rendered = args.output.write(stream).await?;
            note_if_outside(&engine, range, rendered.rows).await;
            if args.timing {
                note_timing(rendered.rows, started);
            }
        }
        Ok(Outcome::Success)
    })
}
