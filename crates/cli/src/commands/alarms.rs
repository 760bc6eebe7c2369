//! `flowscope alarms`: metric filters and CloudWatch-style alarms evaluated over a lake's history.

use std::io::Write;
use std::path::PathBuf;

use flowscope_detect::Notifier;
use flowscope_detect::{Alarm, AlarmsFile, Transition};
use flowscope_query::Engine;

use super::Outcome;
use super::output::{TimeArgs, note, runtime};

/// Runs the metric filters of an alarms file over the lake, evaluates each alarm period by
/// period as CloudWatch would (threshold, M of N, missing data), prints every state change and
/// sends its notifications (JSON line on stdout, webhook, or command). Exit 1 if a
/// notification could not be delivered.
#[derive(clap::Args)]
pub struct Args {
    /// The alarms file (TOML: metric_filters, alarms, notifications; see docs/alarms.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The lake folder.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    #[command(flatten)]
    time: TimeArgs,
    /// table, or json (one state change per line).
    #[arg(long, value_name = "FORMAT", default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Evaluate and print, but send no notifications.
    #[arg(long)]
    no_notify: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let file = AlarmsFile::load(&args.config)?;
    let range = args.time.range()?;
    let notifier = Notifier::new(file.notifications.clone());
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    runtime()?.block_on(async {
        let engine = Engine::open(&args.lake).await?;
        let m = flowscope_detect::compute_metrics(&engine, &file.metric_filters, range).await?;
        let Some((lo, hi)) = m.span else {
            note("no records in the time range: every alarm stays INSUFFICIENT_DATA");
            return anyhow::Ok(());
        };
        let from = range.start.unwrap_or(lo);
        let to = range.end.unwrap_or(hi + 1);
        let empty = Default::default();
        let mut all: Vec<(Transition, usize)> = Vec::new();
        for (i, config) in file.alarms.iter().enumerate() {
            let series = m
                .series
                .get(&(config.namespace.clone(), config.metric_name.clone()))
                .unwrap_or(&empty);
            let mut alarm = Alarm::new(config.clone());
            all.extend(
                alarm
                    .evaluate_history(series, from, to)
                    .into_iter()
                    .map(|t| (t, i)),
            );
        }
        all.sort_by(|a, b| a.0.time.cmp(&b.0.time).then(a.1.cmp(&b.1)));
        if args.format == "table" {
            writeln!(
                out,
                "{} records, {} alarm(s), {} state change(s)",
                m.records,
                file.alarms.len(),
                all.len()
            )?;
        }
        for (t, i) in &all {
            if args.format == "json" {
                serde_json::to_writer(&mut out, t)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{}  {:<24} {:>17} -> {:<17} {}",
                    t.timestamp,
                    t.alarm_name,
                    t.old_state.name(),
                    t.new_state.name(),
                    t.reason
                )?;
            }
            if args.no_notify {
                continue;
            }
            let (lines, failures) = notifier.notify(&file.alarms[*i], t).await;
            for l in lines {
                writeln!(out, "{l}")?;
            }
            for f in failures {
                failed = true;
                note(&f.to_string());
            }
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(if failed {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}
