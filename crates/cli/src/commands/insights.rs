//! `flowscope insights`: the CloudWatch Logs Insights query language over a lake.

use std::path::PathBuf;
use std::time::Instant;

use flowscope_query::Engine;
use flowscope_query::insights::DEFAULT_LIMIT;

use super::Outcome;
use super::output::{
    OutputArgs, TimeArgs, note, note_if_outside, note_timing, query_error, runtime,
};

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
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    #[command(flatten)]
    time: TimeArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Print the row count and time to standard error.
    #[arg(long)]
    timing: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let range = args.time.range()?;
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
        note_if_outside(&engine, range, rendered.rows).await;
        if plan.default_limit && rendered.rows == DEFAULT_LIMIT as u64 {
            note(&format!(
                "showing the first {DEFAULT_LIMIT} rows (the Logs Insights default); \
                 add `| limit N` for more"
            ));
        }
        if args.timing {
            note_timing(rendered.rows, started);
        }
        Ok(Outcome::Success)
    })
}
