//! `flowscope top`: Contributor Insights for flow logs.

use std::path::PathBuf;

use anyhow::Context;
use flowscope_query::Engine;
use flowscope_query::top::{Metric, Rule, TopSpec, plan, resolve_keys};
use flowscope_record::time::parse_duration;

use super::Outcome;
use super::output::{OutputArgs, TimeArgs, note, note_if_outside, query_error, runtime};

/// Top-N contributors: the key combinations with the most bytes, packets or records, over a
/// time range and optionally per time bucket (like CloudWatch Contributor Insights). Shows each
/// contributor's rank, value and percent of the total.
#[derive(clap::Args)]
pub struct Args {
    /// The lake folder.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    /// Keys, comma separated: any field (srcaddr, dstaddr, dstport, interface-id, action, ...)
    /// or a shorthand: pair (srcaddr,dstaddr), interface, instance, subnet, vpc, flow (5-tuple).
    #[arg(
        long,
        value_name = "KEYS",
        value_delimiter = ',',
        default_value = "srcaddr"
    )]
    by: Vec<String>,
    /// Rank by bytes, packets or records.
    #[arg(long, value_name = "METRIC", default_value = "bytes")]
    rank_by: String,
    /// Contributors to show (per bucket).
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
    top: usize,
    /// Rank separately in buckets of this width (5m, 1h, 1d).
    #[arg(long, value_name = "PERIOD")]
    bucket: Option<String>,
    /// Only records matching this Logs Insights condition, e.g. 'action = "REJECT"'.
    #[arg(long, value_name = "CONDITION")]
    filter: Option<String>,
    /// A Contributor Insights rule (AWS's JSON); replaces --by and --rank-by.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["by", "rank_by"])]
    rule: Option<PathBuf>,
    #[command(flatten)]
    time: TimeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.top > 0, "--top must be at least 1");
    let range = args.time.range()?;
    let bucket = match &args.bucket {
        Some(b) => Some(
            parse_duration(b)
                .filter(|s| *s > 0)
                .with_context(|| format!("--bucket `{b}` is not a period such as 5m or 1h"))?,
        ),
        None => None,
    };
    let mut spec = match &args.rule {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Rule::from_json(&text)
                .and_then(|r| r.to_spec(args.top, range, bucket))
                .with_context(|| path.display().to_string())?
        }
        None => TopSpec {
            keys: resolve_keys(&args.by)?,
            metric: match args.rank_by.as_str() {
                "bytes" => Metric::Sum("bytes".into()),
                "packets" => Metric::Sum("packets".into()),
                "records" | "count" => Metric::Records,
                other => anyhow::bail!("--rank-by `{other}`: use bytes, packets or records"),
            },
            limit: args.top,
            bucket,
            conditions: Vec::new(),
            filter: None,
            range,
            warnings: Vec::new(),
        },
    };
    spec.filter = args.filter.clone();
    for w in &spec.warnings {
        note(w);
    }
    runtime()?.block_on(async move {
        let engine = Engine::open(&args.lake).await?;
        let text = spec.filter.clone().unwrap_or_default();
        let frame = plan(&engine, &spec)
            .await
            .map_err(|e| query_error(e, &text))?;
        let stream = frame.execute_stream().await?;
        let rendered = args.output.write(stream).await?;
        note_if_outside(&engine, spec.range, rendered.rows).await;
        Ok(Outcome::Success)
    })
}
