//! `flowscope diagnose`: why connections are rejected — security group or network ACL.

use std::io::Write;
use std::path::PathBuf;

use comfy_table::{ContentArrangement, Table, presets};
use flowscope_detect::{DiagnoseFilter, diagnose};
use flowscope_query::Engine;

use super::Outcome;
use super::output::{TimeArgs, runtime, terminal_width};

/// Explains rejected traffic: for each interface, initiator, responder and port with
/// rejections, whether the requests were refused on the way in or out (security group or
/// network ACL) or the replies were dropped by a stateless network ACL, with the rule change
/// that would let the traffic through.
#[derive(clap::Args)]
pub struct Args {
    /// The lake folder.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    /// Only connections started by this address.
    #[arg(long, value_name = "IP")]
    src: Option<String>,
    /// Only connections to this address.
    #[arg(long, value_name = "IP")]
    dst: Option<String>,
    /// Only this service port.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    #[command(flatten)]
    time: TimeArgs,
    /// table, or json (one diagnosis per line).
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Most diagnoses a table shows, most records first (JSON shows all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    for ip in [&args.src, &args.dst].into_iter().flatten() {
        anyhow::ensure!(
            ip.parse::<std::net::IpAddr>().is_ok(),
            "`{ip}` is not an IP address"
        );
    }
    let filter = DiagnoseFilter {
        src: args.src.clone(),
        dst: args.dst.clone(),
        port: args.port,
        range: args.time.range()?,
    };
    let found = runtime()?.block_on(async {
        let engine = Engine::open(&args.lake).await?;
        anyhow::Ok(diagnose(&engine, &filter).await?)
    })?;
    let mut out = std::io::stdout().lock();
    if args.format == "json" {
        for d in &found {
            serde_json::to_writer(&mut out, d)?;
            out.write_all(b"\n")?;
        }
        return Ok(Outcome::Success);
    }
    if found.is_empty() {
        writeln!(out, "no rejected traffic matches")?;
        return Ok(Outcome::Success);
    }
    let width = terminal_width();
    for d in found.iter().take(args.limit) {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Dynamic);
        if let Some(w) = width {
            table.set_width(w);
        }
        table.add_row(vec![
            "cause".to_string(),
            format!(
                "{}  ({} rejected, {} to {})",
                d.cause.name(),
                flowscope_query::units::thousands(i128::from(d.records)),
                d.first_seen,
                d.last_seen
            ),
        ]);
        table.add_row(vec![
            "where".to_string(),
            format!(
                "{}: {} -> {} port {}",
                d.interface_id, d.src, d.dst, d.dst_port
            ),
        ]);
        table.add_row(vec!["why".to_string(), d.explanation.clone()]);
        table.add_row(vec!["fix".to_string(), d.fix.clone()]);
        writeln!(
            out,
            "{}\n",
            flowscope_query::render::trimmed(&table.to_string())
        )?;
    }
    if found.len() > args.limit {
        writeln!(
            out,
            "{} more (narrow with --src/--dst/--port, raise --limit, or use --format json)",
            found.len() - args.limit
        )?;
    }
    Ok(Outcome::Success)
}
