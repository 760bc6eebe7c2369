//! `flowscope insights`: the CloudWatch Logs Insights query language over a lake.

use std::path::PathBuf;
use std::time::Instant;

use flowscope_query::insights::DEFAULT_LIMIT;
use flowscope_query::{Engine, TimeRange};

use super::output::{OutputArgs, note, query_error, runtime};
use crate::Outcome;

/// Run a CloudWatch Logs Insights query over a lake, e.g.
/// `filter action="REJECT" | stats count(*) as n by srcAddr | sort n desc | limit 20`.
///
/// Fields: srcAddr, dstAddr, srcPort, dstPort, protocol, packets, bytes, action, logStatus,
/// interfaceId, accountId, startTime, endTime, version, the camelCase form of every other field
/// (vpcId, tcpFlags, pktSrcaddr, flowDirection, ...), @timestamp, @message and @logStream.
#[derive(clap::Args)]
pub struct Args {
    /// The query: commands separated by `|`.
    #[arg(value_name = "QUERY")]
    query: String,
    /// The lake folder.
    #[arg(long, value_name = "DIR")]
    lake: PathBuf,
    /// Only records starting at or after this time: -1h, -7d, 2019-08-26, 2019-08-26T19:25:00Z,
    /// Unix seconds, or now.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    start: Option<String>,
    /// Only records starting before this time (same forms as --start).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    end: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    /// Print the row count and time to standard error.
    #[arg(long)]
    timing: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let range = TimeRange::parse(args.start.as_deref(), args.end.as_deref(), now())?;
    let text = args.query.clone();
    runtime()?.block_on(async move {
        let started = Instant::now();
        let engine = Engine::open(&args.lake).await?;
        let plan = engine
            .insights(&text, range)
            .await
            .map_err(|e| query_error(e, &text))?;
        let stream = plan
            .frame
            .execute_stream()
            .await
            .map_err(|e| query_error(e.into(), &text))?;
        let rendered = args.output.write(stream).await?;
        if plan.default_limit && rendered.rows == DEFAULT_LIMIT as u64 {
            note(&format!(
                "showing the first {DEFAULT_LIMIT} rows (the Logs Insights default); \
                 add `| limit N` for more"
            ));
        }
        if args.timing {
            note(&format!(
                "{} rows in {:.3} s",
                rendered.rows,
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(Outcome::Success)
    })
}

/// The current Unix second (the only place the query commands read the clock).
#[allow(clippy::disallowed_methods)]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
