//! `flowscope convert`: flow log text to text, JSON lines, CSV or Parquet.

use std::path::PathBuf;

use anyhow::{Context, bail};
use flowscope_lake::input::{self, Input};
use flowscope_lake::sink::{self, Destination, OutputKind, SinkOptions};
use flowscope_lake::{TextOptions, TextReader};
use flowscope_record::{LogFormat, Rejection};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use super::Outcome;

/// Rejected lines shown per input before the rest are only counted.
const SHOWN_PER_INPUT: u64 = 100;

/// Convert flow log files to text, JSON lines, CSV or Parquet. Inputs: plain or gzip text as
/// AWS writes it to S3, Parquet flow logs (AWS's, or any flowscope wrote), CloudWatch Logs
/// events one JSON object per line (as `aws logs get-log-events` and the emulator's CloudWatch
/// layout show them), and CloudWatch Logs exports to S3 (a timestamp before each record).
///
/// Without --format each file's header line decides its format, and a file without one is read
/// in the AWS default format. Bad lines are reported on stderr as FILE:LINE: field: reason and
/// skipped; every good line is still converted. Exit status: 0 when every file was read (even
/// with rejected lines), 1 when a file could not be read in full or is not a flow log, 2 with
/// --strict on the first bad line.
#[derive(clap::Args)]
pub struct Args {
    /// Files, directories (read recursively for *.log, *.txt, their .gz forms and *.parquet)
    /// or `-` for standard input.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,

    /// Output shape.
    #[arg(long, value_enum, default_value_t = To::Text)]
    to: To,

    /// The input log format, as given to `aws ec2 create-flow-logs --log-format`, e.g.
    /// '${version} ${srcaddr} ${dstaddr} ${action}'. Overrides header lines.
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,

    /// Write here instead of stdout; the file appears only when complete. A name ending in .gz
    /// is gzip-compressed (text, jsonl, csv).
    #[arg(long, short, value_name = "PATH", value_parser = super::output::OutputPath::CONVERT)]
    output: Option<PathBuf>,

    /// Stop at the first bad line or unreadable file, with exit status 2 (no output file is
    /// left behind).
    #[arg(long)]
    strict: bool,

    /// Text output: always start with the S3 header line (default: when an input had one).
    #[arg(long, conflicts_with = "no_header")]
    header: bool,

    /// Text output: never write a header line.
    #[arg(long)]
    no_header: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum To {
    /// Space-separated flow log lines, as AWS writes them.
    Text,
    /// One JSON object per record; AWS column names as keys, null for `-`.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// Parquet (zstd) with AWS's column names and types.
    Parquet,
}

impl From<To> for OutputKind {
    fn from(to: To) -> Self {
        match to {
            To::Text => OutputKind::Text,
            To::Jsonl => OutputKind::JsonLines,
            To::Csv => OutputKind::Csv,
            To::Parquet => OutputKind::Parquet,
        }
    }
}

#[derive(Default)]
struct Tally {
    files: u64,
    failed_files: u64,
    records: u64,
    rejected: u64,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let inputs = input::expand_with(&args.inputs, true)?;
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        bail!("standard input (`-`) can be read only once");
    }
    let given = args.format.as_deref().map(LogFormat::parse).transpose()?;
    let options = TextOptions {
        format: given,
        ..TextOptions::default()
    };

    // Standard input can be opened once only, so its reader is kept from the look at formats.
    let mut stdin = None;
    let (format, any_header, looks) = output_format(&inputs, &options, &mut stdin);
    let header = args.header || (any_header && !args.no_header);
    let destination = args
        .output
        .clone()
        .map_or(Destination::Stdout, Destination::File);
    let mut sink = sink::open(
        &destination,
        &SinkOptions {
            kind: args.to.into(),
            format,
            header,
        },
    )?;

    let mut tally = Tally::default();
    for (input, look) in inputs.iter().zip(looks) {
        tally.files += 1;
        if let Look::Parquet(path, metadata) = look {
            let converted = metadata.and_then(|(_, metadata)| {
                convert_parquet(path, metadata, sink.as_mut(), &mut tally)
            });
            if let Err(error) = converted {
                eprintln!("flowscope: {error:#}");
                tally.failed_files += 1;
                if args.strict {
                    return Ok(Outcome::StrictViolation);
                }
            }
            continue;
        }
        let opened = match input {
            Input::Stdin => stdin
                .take()
                .map_or_else(|| TextReader::open(input, &options), Ok),
            Input::File(_) | Input::Object(_) => TextReader::open(input, &options),
        };
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(error) => {
                eprintln!("flowscope: {error}");
                tally.failed_files += 1;
                if args.strict {
                    return Ok(Outcome::StrictViolation);
                }
                continue;
            }
        };
        if !reader.is_recognised() {
            eprintln!(
                "flowscope: {}",
                flowscope_lake::Error::NotFlowLog {
                    path: reader.name().to_string()
                }
            );
            tally.failed_files += 1;
            if args.strict {
                return Ok(Outcome::StrictViolation);
            }
            continue;
        }
        let mut shown = 0;
        loop {
            let next = reader.next_batch();
            let rejections = reader.take_rejections();
            if args.strict && !rejections.is_empty() {
                eprintln!("flowscope: {}", rejections[0]);
                return Ok(Outcome::StrictViolation);
            }
            report(&rejections, &mut shown);
            match next {
                Ok(Some(batch)) => sink.write(&batch)?,
                Ok(None) => break,
                Err(error) => {
                    eprintln!("flowscope: {error}");
                    tally.failed_files += 1;
                    if args.strict {
                        return Ok(Outcome::StrictViolation);
                    }
                    break;
                }
            }
        }
        if shown < reader.rejected() {
            let hidden = reader.rejected() - shown;
            eprintln!(
                "flowscope: {}: {hidden} more rejected lines not shown",
                reader.name()
            );
        }
        tally.records += reader.records();
        tally.rejected += reader.rejected();
    }
    sink.finish().context("finishing the output")?;
    eprintln!(
        "flowscope: converted {} records from {} inputs; {} lines rejected; {} inputs failed",
        tally.records, tally.files, tally.rejected, tally.failed_files
    );
    Ok(if tally.failed_files > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

fn report(rejections: &[Rejection], shown: &mut u64) {
    for rejection in rejections {
        if *shown < SHOWN_PER_INPUT {
            eprintln!("{rejection}");
            *shown += 1;
        }
    }
}

/// What the first look at an input learned: a Parquet file and its footer, read once (the file
/// is opened again for its rows, so that thousands of inputs never hold thousands of open files),
/// or text, which is read as a stream.
enum Look<'a> {
    Parquet(
        &'a std::path::Path,
        anyhow::Result<(LogFormat, ArrowReaderMetadata)>,
    ),
    Text,
}

/// The format written: the one given, or the union of the inputs' formats in the order first
/// seen, so that files of different formats convert into one consistent output. Also says
/// whether any input had a header line, and what was learned of each input.
fn output_format<'a>(
    inputs: &'a [Input],
    options: &TextOptions,
    stdin: &mut Option<TextReader>,
) -> (LogFormat, bool, Vec<Look<'a>>) {
    let mut format: Option<LogFormat> = options.format.clone();
    let mut any_header = false;
    let mut looks = Vec::with_capacity(inputs.len());
    for input in inputs {
        if let Some(path) = parquet_path(input) {
            let footer = parquet_footer(path);
            if options.format.is_none()
                && let Ok((found, _)) = &footer
            {
                format = Some(match format {
                    Some(f) => f.union(found),
                    None => found.clone(),
                });
            }
            looks.push(Look::Parquet(path, footer));
            continue;
        }
        looks.push(Look::Text);
        let reader = match TextReader::open_streaming(input, options) {
            Ok(reader) => reader,
            // Reported (and counted) when the input is converted.
            Err(_) => continue,
        };
        any_header |= reader.header().is_some();
        if options.format.is_none() {
            format = Some(match format {
                Some(f) => f.union(reader.format()),
                None => reader.format().clone(),
            });
        }
        if *input == Input::Stdin {
            *stdin = Some(reader);
        }
    }
    (format.unwrap_or_default(), any_header, looks)
}

/// The path of an input that is a Parquet file (by its magic bytes, whatever its name).
fn parquet_path(input: &Input) -> Option<&std::path::Path> {
    let Input::File(path) = input else {
        return None;
    };
    // Only a regular file is opened to look: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).ok()?;
    std::io::Read::read_exact(&mut file, &mut magic).ok()?;
    (&magic == b"PAR1").then_some(path.as_path())
}

/// A Parquet file's flow log fields (its columns that are flow log fields, by AWS's Parquet
/// names; a lake's own columns are left out) and its footer.
fn parquet_footer(path: &std::path::Path) -> anyhow::Result<(LogFormat, ArrowReaderMetadata)> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    let schema = metadata.schema();
    let columns: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| flowscope_record::lookup(c).is_some())
        .collect();
    if columns.is_empty() {
        bail!("{name}: a Parquet file with no flow log column; not a flow log");
    }
    let format = LogFormat::from_columns(columns.iter().copied())
        .with_context(|| format!("{name}: its columns"))?;
    Ok((format, metadata))
}

fn convert_parquet(
    path: &std::path::Path,
    metadata: ArrowReaderMetadata,
    sink: &mut dyn sink::RecordSink,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
        .build()
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: a broken row group", path.display()))?;
        tally.records += batch.num_rows() as u64;
        sink.write(&batch)?;
    }
    Ok(())
}
