//! `flowscope shell`: SQL and Logs Insights at a prompt, over one lake session.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use flowscope_query::insights::DEFAULT_LIMIT;
use flowscope_query::render::{TableView, write_stream};
use flowscope_query::{Engine, OutputFormat, TimeRange};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Editor, Helper};

use super::Outcome;
use super::output::{now, query_error, runtime, terminal_width};

/// An interactive shell over a lake: type SQL (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE ...) or a
/// Logs Insights query; end it with `;` or an empty line. `\h` lists the shell's commands.
#[derive(clap::Args)]
pub struct Args {
    /// The lake folder.
    #[arg(long, value_name = "DIR", env = "FLOWSCOPE_LAKE")]
    lake: PathBuf,
    /// Do not read or write the history file (~/.flowscope_history).
    #[arg(long)]
    no_history: bool,
}

const HELP: &str = "\
Type SQL over the table `flows`, or a Logs Insights query;
end it with `;` or an empty line.
  \\d                  the columns of `flows`
  \\format FORMAT      table (default), csv, json or jsonl
  \\range START [END]  time range for Insights queries (-1h, 2019-08-26, ...);
                      \\range off clears it
  \\timing             show each query's time (toggle)
  \\x                  one record at a time, a `column | value` line per field
  \\h                  this help
  \\q                  quit (also Ctrl-D)";

/// SQL keywords that start a statement; anything else is a Logs Insights query.
const SQL_STARTS: &[&str] = &[
    "select", "with", "explain", "show", "describe", "desc", "values", "create", "drop", "set", "(",
];

/// Whether `text` is SQL (else Logs Insights).
pub fn is_sql(text: &str) -> bool {
    let first: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '(')
        .collect::<String>()
        .to_ascii_lowercase();
    SQL_STARTS
        .iter()
        .any(|k| first == *k || (first.starts_with('(') && *k == "("))
        || misspelt_sql(&first)
}

/// Logs Insights' commands: a first word that is none of them but nearly a SQL keyword
/// (`selec`) is a SQL statement with a typo, and SQL's parser says which keyword it meant.
const INSIGHTS_COMMANDS: &[&str] = &[
    "fields", "filter", "stats", "sort", "limit", "parse", "display", "dedup", "unmask", "pattern",
    "diff", "anomaly", "unnest", "lookup",
];

fn misspelt_sql(first: &str) -> bool {
    first.len() >= 3
        && !INSIGHTS_COMMANDS.contains(&first)
        && flowscope_record::nearest(first, SQL_STARTS.iter().copied().filter(|k| k.len() >= 4))
            .is_some()
}

/// Whether a buffer is a whole statement: it ends with `;`, is a `\` command, or its last line
/// is empty.
fn complete(buffer: &str) -> bool {
    let trimmed = buffer.trim();
    trimmed.is_empty()
        || trimmed.starts_with('\\')
        || trimmed.ends_with(';')
        || buffer.ends_with("\n\n")
}

struct ShellHelper;

impl Completer for ShellHelper {
    type Candidate = String;
}
impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
// Every line is taken as entered: the loop gathers a statement's lines, showing `...>` for
// each line after the first, as psql does.
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

struct State {
    format: OutputFormat,
    timing: bool,
    range: TimeRange,
    /// `\x`: tables one record at a time.
    vertical: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let rt = runtime()?;
    let engine = rt.block_on(Engine::open_stoppable(&args.lake))?;
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(ShellHelper));
    let history = (!args.no_history)
        .then(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".flowscope_history")))
        .flatten();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        println!(
            "flowscope shell on {}\nSQL or Logs Insights; end with `;` or an empty line; \\h for help",
            engine.root().display()
        );
    }
    let mut state = State {
        format: OutputFormat::Table,
        timing: false,
        range: TimeRange::default(),
        vertical: false,
    };
    // At a terminal, Ctrl-C during a query cancels it. The signal is heard on a thread of its
    // own: the query's threads may be too busy to hear it.
    let interrupts = interactive.then(listen_for_interrupts).flatten();
    let mut buffer = String::new();
    // A script's statements that failed: it ends with exit status 1, as psql's and DuckDB's
    // do, so that a failed step is not taken for success.
    let mut failures = 0u64;
    loop {
        let prompt = if buffer.is_empty() {
            "flowscope> "
        } else {
            "       ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        buffer.push_str(&line);
        buffer.push('\n');
        let blank = line.trim().is_empty();
        if !(complete(&buffer) || blank) {
            continue;
        }
        let text = std::mem::take(&mut buffer);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        // Saved as it goes: a shell that is killed keeps what was typed.
        if editor.add_history_entry(text).unwrap_or(false)
            && let Some(h) = &history
        {
            let _ = editor.save_history(h);
        }
        if let Some(command) = text.strip_prefix('\\') {
            match meta(command.trim_end_matches(';'), &mut state, &engine, &rt) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    eprintln!("error: {e:#}");
                    failures += 1;
                }
            }
            continue;
        }
        let query = text.trim_end_matches(';').trim();
        if matches!(query, "quit" | "exit") {
            break;
        }
        // Ctrl-C cancels the query and comes back to the prompt (at the prompt it clears the
        // line). Input from a pipe has no prompt to come back to: Ctrl-C ends the shell there.
        let outcome = if let Some(interrupts) = &interrupts {
            let (cancel, cancelled) = tokio::sync::oneshot::channel();
            *interrupts.lock().expect("not poisoned") = Some(cancel);
            let done = rt.block_on(async {
                tokio::select! {
                    done = run_one(&engine, query, &state) => Some(done),
                    _ = cancelled => None,
                }
            });
            interrupts.lock().expect("not poisoned").take();
            done
        } else {
            Some(rt.block_on(run_one(&engine, query, &state)))
        };
        match outcome {
            // A reader that went away (`… | head`) wants no more: the script ends there, as
            // every other command's output does, without a failure.
            Some(Err(e)) if crate::is_broken_pipe(&e) => break,
            Some(Err(e)) => {
                eprintln!("error: {e:#}");
                failures += 1;
            }
            Some(Ok(())) => {}
            None => {
                let _ = std::io::stdout().flush();
                eprintln!("\ncancelled");
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    // A cancelled query's threads stop at their next pause, which a heavy operator may not
    // reach soon: leaving does not wait for them.
    drop(engine);
    rt.shutdown_background();
    if !interactive && failures > 0 {
        eprintln!(
            "flowscope: {failures} statement{} of the script failed",
            if failures == 1 { "" } else { "s" }
        );
        return Ok(Outcome::Partial);
    }
    Ok(Outcome::Success)
}

/// Where the running query's cancel goes.
type Interrupts = std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>;

/// A thread that, on each SIGINT, cancels the query running then (if any).
fn listen_for_interrupts() -> Option<Interrupts> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    let slot: Interrupts = Default::default();
    let shared = std::sync::Arc::clone(&slot);
    std::thread::spawn(move || {
        runtime.block_on(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                if let Some(cancel) = shared.lock().expect("not poisoned").take() {
                    let _ = cancel.send(());
                }
            }
        });
    });
    Some(slot)
}

/// Runs a `\` command; `Ok(true)` means quit.
fn meta(
    command: &str,
    state: &mut State,
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<bool> {
    let mut words = command.split_whitespace();
    match words.next().unwrap_or("") {
        "q" | "quit" => return Ok(true),
        "h" | "help" | "?" => println!("{HELP}"),
        "x" => {
            state.vertical = !state.vertical;
            println!(
                "expanded display is {}",
                if state.vertical { "on" } else { "off" }
            );
        }
        "timing" => {
            state.timing = !state.timing;
            println!("timing {}", if state.timing { "on" } else { "off" });
        }
        "format" => {
            let f = words.next().unwrap_or("table");
            state.format = f.parse().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                state.format != OutputFormat::Parquet,
                "Parquet needs a file: use `flowscope sql --output FILE`"
            );
        }
        "range" => match (words.next(), words.next()) {
            (None | Some("off"), _) => {
                state.range = TimeRange::default();
                println!("no time range");
            }
            (Some(start), end) => {
                state.range = TimeRange::parse(Some(start), end, now())?;
                let end = state.range.end.map_or("now".to_string(), |e| e.to_string());
                println!(
                    "Insights queries see records starting from {} to {end} (Unix seconds)",
                    state.range.start.unwrap_or_default()
                );
            }
        },
        "d" => rt.block_on(run_one(engine, "DESCRIBE flows", state))?,
        other => anyhow::bail!("unknown command \\{other}; \\h lists them"),
    }
    Ok(false)
}

async fn run_one(engine: &Engine, query: &str, state: &State) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut default_limit = false;
    let frame = if is_sql(query) {
        engine.sql(query).await.map_err(|e| query_error(e, query))?
    } else {
        let plan = engine
            .insights(query, state.range)
            .await
            .map_err(|e| query_error(e, query))?;
        default_limit = plan.default_limit;
        plan.frame
    };
    let stream = frame.execute_stream().await?;
    let out = std::io::BufWriter::new(std::io::stdout());
    let view = TableView {
        width: terminal_width(),
        vertical: state.vertical,
        all_columns: false,
    };
    let rendered = write_stream(stream, state.format, view, out).await?;
    if default_limit && rendered.rows == DEFAULT_LIMIT as u64 {
        eprintln!("(the first {DEFAULT_LIMIT} rows; add `| limit N` for more)");
    }
    if state.timing {
        eprintln!(
            "{} rows in {:.3} s",
            rendered.rows,
            started.elapsed().as_secs_f64()
        );
    }
    std::io::stdout().flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_or_insights() {
        assert!(is_sql("SELECT 1"));
        assert!(is_sql("  with x as (select 1) select * from x"));
        assert!(is_sql("describe flows"));
        assert!(!is_sql("stats count(*) by srcAddr"));
        assert!(!is_sql("filter action = 'REJECT'"));
        assert!(!is_sql("fields @timestamp"));
    }

    #[test]
    fn a_misspelt_sql_keyword_is_sql() {
        assert!(is_sql("selec 1"));
        assert!(is_sql("SELCT 1"));
        assert!(!is_sql("filter action = 'REJECT'"));
        assert!(!is_sql("sort bytes desc"));
        assert!(!is_sql("stats count(*)"));
    }

    #[test]
    fn statement_ends() {
        assert!(complete("select 1;"));
        assert!(complete("\\d"));
        assert!(!complete("select *\nfrom flows"));
        assert!(complete("stats count(*)\n\n"));
    }
}
