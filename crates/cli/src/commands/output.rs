//! What the query commands share: the tokio runtime, where results go and in what format,
//! and how query errors are shown.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use flowscope_lake::AtomicFile;
use flowscope_query::render::{Rendered, SendableRecordBatchStream, TableView, write_stream};
use flowscope_query::{Error, OutputFormat};

/// `--format` and `--output`, shared by `sql`, `insights` and `top`.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Result format: table, csv, json, jsonl or parquet. Default: from the --output file's
    /// extension, else table.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<OutputFormat>,
    /// Write the result to this file (atomically) instead of standard output.
    #[arg(long, short = 'o', value_name = "PATH", value_parser = OutputPath::QUERY)]
    pub output: Option<PathBuf>,
    /// Show a table one record at a time, a `column | value` line per field (psql's `\x`).
    /// A table too wide for the terminal turns into records by itself.
    #[arg(long)]
    pub vertical: bool,
    /// Show the columns that hold only NULL (a table hides them and names them underneath).
    #[arg(long)]
    pub all_columns: bool,
}

/// `--output`'s value: a path, never a bare format word. The AWS CLI's `--output json` picks
/// a format; here it would quietly write a file named `json`, so the word is refused with the
/// flag that does what was meant (`./json` still names such a file). Any path the system
/// allows is taken, UTF-8 or not.
#[derive(Clone, Copy)]
pub struct OutputPath {
    /// The flag that picks the format of this command's output.
    flag: &'static str,
    /// The formats that flag takes.
    formats: &'static [&'static str],
}

impl OutputPath {
    /// For `sql`, `insights` and `top`: `--format`.
    pub const QUERY: Self = Self {
        flag: "--format",
        formats: &OutputFormat::NAMES,
    };
    /// For `convert`: `--to`.
    pub const CONVERT: Self = Self {
        flag: "--to",
        formats: &["text", "jsonl", "csv", "parquet"],
    };

    /// Why `value` is refused as a path, if it is.
    fn refusal(&self, value: &str) -> Option<String> {
        // The AWS CLI's --output values and this project's format names.
        const WORDS: [&str; 9] = [
            "table",
            "text",
            "csv",
            "json",
            "jsonl",
            "yaml",
            "yaml-stream",
            "parquet",
            "tsv",
        ];
        let word = value.to_ascii_lowercase();
        if !WORDS.contains(&word.as_str()) {
            return None;
        }
        let what = if self.formats.contains(&word.as_str()) {
            format!("for that format use `{} {word}`", self.flag)
        } else {
            format!("the formats are `{} {}`", self.flag, self.formats.join("|"))
        };
        Some(format!(
            "`--output` is the file to write, and `{value}` looks like a format (the AWS CLI's \
             --output): {what}; to write a file named `{value}`, give `./{value}`"
        ))
    }
}

impl clap::builder::TypedValueParser for OutputPath {
    type Value = PathBuf;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PathBuf, clap::Error> {
        if let Some(refusal) = value.to_str().and_then(|v| self.refusal(v)) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{refusal}\n"),
            )
            .with_cmd(cmd));
        }
        Ok(PathBuf::from(value))
    }
}

impl OutputArgs {
    /// The format to write.
    pub fn format(&self) -> OutputFormat {
        if let Some(f) = self.format {
            return f;
        }
        let ext = self
            .output
            .as_deref()
            .and_then(Path::extension)
            .and_then(|e| e.to_str());
        ext.and_then(|e| e.parse().ok())
            .unwrap_or(OutputFormat::Table)
    }

    /// How a table is laid out in `width` terminal columns.
    pub fn view(&self, width: Option<u16>) -> TableView {
        TableView {
            width,
            vertical: self.vertical,
            all_columns: self.all_columns,
        }
    }

    /// Writes one result stream where the user asked.
    pub async fn write(&self, stream: SendableRecordBatchStream) -> anyhow::Result<Rendered> {
        let format = self.format();
        match &self.output {
            Some(path) => {
                let mut file = AtomicFile::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let rendered = write_stream(stream, format, self.view(None), &mut file).await?;
                file.commit()
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(rendered)
            }
            None => {
                let stdout = std::io::stdout();
                anyhow::ensure!(
                    format != OutputFormat::Parquet || !stdout.is_terminal(),
                    "Parquet is binary: give --output FILE or redirect standard output"
                );
                let view = self.view(terminal_width());
                let out = BufWriter::new(stdout);
                Ok(write_stream(stream, format, view, out).await?)
            }
        }
    }
}

/// The terminal's width when standard output is one (tables fit it), else `COLUMNS` when set,
/// else `None` (a pipe gets whole lines).
pub fn terminal_width() -> Option<u16> {
    // `COLUMNS=80 flowscope sql … | less` lays the table out for 80 columns, as `ls` does.
    let asked = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c >= 20);
    if !std::io::stdout().is_terminal() {
        return asked;
    }
    terminal_size::terminal_size().map(|(w, _)| w.0).or(asked)
}

/// `--start` and `--end`, shared by `sql`, `insights` and `top`.
#[derive(clap::Args, Debug, Clone)]
pub struct TimeArgs {
    /// Only records starting at or after this time: -1h, -7d, 2019-08-26,
    /// 2019-08-26T19:25:00Z, Unix seconds, or now.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// Only records starting before this time (same forms as --start).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub end: Option<String>,
}

impl TimeArgs {
    /// The range, read relative to the clock.
    pub fn range(&self) -> anyhow::Result<flowscope_query::TimeRange> {
        Ok(flowscope_query::TimeRange::parse(
            self.start.as_deref(),
            self.end.as_deref(),
            now(),
        )?)
    }
}

/// When a query over `range` found nothing, says on standard error what the lake holds, so
/// that a range outside the data reads as that and not as "no such traffic".
pub async fn note_if_outside(
    engine: &flowscope_query::Engine,
    range: flowscope_query::TimeRange,
    rows: u64,
) {
    if rows > 0 || (range.start.is_none() && range.end.is_none()) {
        return;
    }
    let time = |t: i64| flowscope_record::time::rfc3339(t);
    let asked = format!(
        "{} to {}",
        range.start.map_or("the first record".to_string(), time),
        range.end.map_or("now".to_string(), time)
    );
    match engine.span().await {
        Ok(Some((first, last))) => {
            let outside =
                range.start.is_some_and(|s| s > last) || range.end.is_some_and(|e| e <= first);
            if outside {
                note(&format!(
                    "no records from {asked}: the lake holds records from {} to {}",
                    time(first),
                    time(last)
                ));
            }
        }
        Ok(None) => note("the lake holds no records yet"),
        Err(_) => {}
    }
}

/// The current Unix second (the only place the query commands read the clock).
#[allow(clippy::disallowed_methods)]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A multi-threaded runtime for DataFusion.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the query runtime")
}

/// Turns a query error into a message that shows where in `text` it is.
pub fn query_error(error: Error, text: &str) -> anyhow::Error {
    if error.is_broken_pipe() {
        return anyhow::Error::new(error);
    }
    anyhow::anyhow!("{}", error.render(text))
}

/// Writes `rows in seconds` since `started` to standard error (`--timing`).
pub fn note_timing(rows: u64, started: std::time::Instant) {
    note(&format!(
        "{rows} rows in {:.3} s",
        started.elapsed().as_secs_f64()
    ));
}

/// Writes a note to standard error.
pub fn note(message: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "flowscope: {message}");
}

#[cfg(test)]
mod tests {
    use super::OutputPath;

    #[test]
    fn a_format_word_is_refused_with_the_flag_of_the_command() {
        let said = |p: OutputPath, v: &str| p.refusal(v).unwrap_or_default();
        assert!(said(OutputPath::QUERY, "json").contains("use `--format json`"));
        assert!(said(OutputPath::QUERY, "JSON").contains("use `--format json`"));
        assert!(
            said(OutputPath::QUERY, "yaml").contains("`--format table|csv|json|jsonl|parquet`")
        );
        assert!(said(OutputPath::CONVERT, "jsonl").contains("use `--to jsonl`"));
        assert!(said(OutputPath::CONVERT, "json").contains("`--to text|jsonl|csv|parquet`"));
        assert_eq!(OutputPath::QUERY.refusal("out.json"), None);
        assert_eq!(OutputPath::QUERY.refusal("./json"), None);
    }
}
