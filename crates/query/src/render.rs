//! Query results out: a terminal table that fits the screen, CSV with a header, a JSON array,
//! JSON lines, or Parquet. Rows stream from the engine to the writer, except for tables, which
//! need every row they show to size their columns (and show at most [`TABLE_ROWS`]).

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
pub use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use crate::error::{Error, Result};

/// Most rows a table shows; the rest are counted, not printed.
pub const TABLE_ROWS: usize = 10_000;

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned columns for a terminal.
    #[default]
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// A Parquet file (to a file only).
    Parquet,
}

impl OutputFormat {
    /// Every format by the name `--format` takes, in the order help texts list them.
    pub const NAMES: [&str; 5] = ["table", "csv", "json", "jsonl", "parquet"];
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "table" => Self::Table,
            "csv" => Self::Csv,
            "json" => Self::Json,
            "jsonl" => Self::Jsonl,
            "parquet" => Self::Parquet,
            other => {
                let (last, rest) = Self::NAMES.split_last().expect("formats have names");
                return Err(format!(
                    "unknown format `{other}`: use {} or {last}",
                    rest.join(", ")
                ));
            }
        })
    }
}

/// What writing a result produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Rows the query returned.
    pub rows: u64,
    /// Rows written (a table shows at most [`TABLE_ROWS`]).
    pub shown: u64,
}

fn io_error(e: std::io::Error) -> Error {
    Error::Output(e)
}

/// Writes every batch of `stream` to `out` in `format`; `view` lays out a table. CSV and JSON
/// carry raw values, with timestamps in ISO 8601 UTC (`2019-08-26T19:25:00Z`).
///
/// # Errors
/// [`Error::Engine`] when the query fails while running; [`Error::Invalid`] when `out` fails.
pub async fn write_stream<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    view: TableView,
    out: W,
) -> Result<Rendered> {
    let schema = stream.schema();
    let mut rendered = Rendered::default();
    match format {
        OutputFormat::Table => {
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let room = TABLE_ROWS.saturating_sub(rendered.shown as usize);
                let take = batch.num_rows().min(room);
                rendered.rows += batch.num_rows() as u64;
                rendered.shown += take as u64;
                if take > 0 {
                    batches.push(batch.slice(0, take));
                }
            }
            let mut out = out;
            let text = table(&schema, &batches, view)?;
            writeln!(out, "{text}").map_err(io_error)?;
            if rendered.rows > rendered.shown {
                writeln!(
                    out,
                    "({} rows, first {} shown; use --format csv or jsonl for all)",
                    rendered.rows, rendered.shown
                )
                .map_err(io_error)?;
            }
            out.flush().map_err(io_error)?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .with_timestamp_format(TIMESTAMP_UTC.to_string())
                .with_timestamp_tz_format(TIMESTAMP_TZ.to_string())
                .build(out);
            let mut any = false;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rendered.rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(arrow_err)?;
                any = true;
            }
            if !any {
                // No batch at all: still write the header so the file says what it holds.
                writer
                    .write(&RecordBatch::new_empty(schema))
                    .map_err(arrow_err)?;
            }
            writer.into_inner().flush().map_err(io_error)?;
        }
        OutputFormat::Json => {
            let mut writer = json_builder().build::<_, arrow_json::writer::JsonArray>(out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rendered.rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(arrow_err)?;
            }
            // `finish` writes `[]` for an empty result itself.
            writer.finish().map_err(arrow_err)?;
            let mut out = writer.into_inner();
            out.write_all(b"\n").map_err(io_error)?;
            out.flush().map_err(io_error)?;
        }
        OutputFormat::Jsonl => {
            let mut writer = json_builder().build::<_, arrow_json::writer::LineDelimited>(out);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rendered.rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(arrow_err)?;
            }
            writer.finish().map_err(arrow_err)?;
            writer.into_inner().flush().map_err(io_error)?;
        }
        OutputFormat::Parquet => {
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(out, schema, None).map_err(parquet_err)?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rendered.rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(parquet_err)?;
            }
            writer.close().map_err(parquet_err)?;
        }
    }
    if format != OutputFormat::Table {
        rendered.shown = rendered.rows;
    }
    Ok(rendered)
}

/// Timestamps without a zone are UTC throughout flowscope: written with `Z`.
const TIMESTAMP_UTC: &str = "%Y-%m-%dT%H:%M:%S%.fZ";
/// Timestamps with a zone: the offset as `+00:00`.
const TIMESTAMP_TZ: &str = "%Y-%m-%dT%H:%M:%S%.f%:z";

fn json_builder() -> arrow_json::WriterBuilder {
    // A NULL is written as `null`, not left out: every row has every column, as in DuckDB's
    // and Athena's JSON.
    arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(TIMESTAMP_UTC.to_string())
        .with_timestamp_tz_format(TIMESTAMP_TZ.to_string())
}

fn parquet_err(e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => io_error(*io),
                Err(other) => Error::Invalid(format!("cannot write Parquet: {other}")),
            }
        }
        other => Error::Invalid(format!("cannot write Parquet: {other}")),
    }
}

/// A physical plan as indented text, with the files and predicates each scan uses.
pub fn physical_plan_text(
    plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> String {
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string()
}

fn arrow_err(e: arrow_schema::ArrowError) -> Error {
    match e {
        arrow_schema::ArrowError::IoError(_, io) => io_error(io),
        // The CSV writer keeps only the text of its I/O errors: a closed pipe is still one.
        arrow_schema::ArrowError::CsvError(text) if text.contains("Broken pipe") => {
            io_error(std::io::ErrorKind::BrokenPipe.into())
        }
        other => Error::Invalid(format!("cannot write the result: {other}")),
    }
}

/// How a table view is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableView {
    /// Terminal columns the table must fit (`None`: as wide as its content, with long values
    /// still cut at [`CELL_MAX`] characters).
    pub width: Option<u16>,
    /// One block of `column | value` lines per record (psql's `\x`), whatever the width.
    pub vertical: bool,
    /// Show columns that hold only NULL (a table hides them by default and says so).
    pub all_columns: bool,
}

/// Longest value a table cell shows; longer ones end in `…`.
pub const CELL_MAX: usize = 48;

/// Narrowest a column is squeezed to before the table turns into records.
const COLUMN_MIN: usize = 6;

/// What a table shows for NULL.
pub const NULL_MARK: &str = "NULL";

/// How a column's values read in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Byte amounts: decimal units (`16.8 GB`).
    Bytes,
    /// Counts and measures: thousands separators (`16,806,682`), floats to two decimals.
    Count,
    /// Codes, ports, times, ids: the value as it is.
    Raw,
    /// Not a number.
    Text,
}

fn kind(name: &str, data_type: &DataType) -> Kind {
    if !is_numeric(data_type) {
        return Kind::Text;
    }
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.iter().any(|w| w.contains("bytes")) {
        return Kind::Bytes;
    }
    const COUNTS: [&str; 12] = [
        "count",
        "packets",
        "records",
        "sum",
        "total",
        "flows",
        "connections",
        "rows",
        "hits",
        "sources",
        "peers",
        "avg",
    ];
    if words.iter().any(|w| COUNTS.contains(w)) {
        return Kind::Count;
    }
    const RAW: [&str; 20] = [
        "start",
        "end",
        "version",
        "protocol",
        "flags",
        "path",
        "hour",
        "date",
        "year",
        "month",
        "day",
        "time",
        "timestamp",
        "epoch",
        "seconds",
        "second",
        "minute",
        "code",
        "type",
        "bin",
    ];
    let raw = words.iter().any(|w| {
        RAW.contains(w) || w.ends_with("port") || w.ends_with("id") || w.starts_with("ts")
    });
    if raw { Kind::Raw } else { Kind::Count }
}

/// `value` (as arrow formats it) in the way its column reads.
fn shaped(value: String, kind: Kind) -> String {
    match kind {
        Kind::Raw | Kind::Text => value,
        Kind::Bytes => match value.parse::<f64>() {
            Ok(v) => crate::units::bytes(v),
            Err(_) => value,
        },
        Kind::Count => {
            if let Ok(v) = value.parse::<i128>() {
                crate::units::thousands(v)
            } else if let Ok(v) = value.parse::<f64>() {
                crate::units::decimal(v)
            } else {
                value
            }
        }
    }
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Formats batches as a table: a header row, numbers right-aligned in units people read
/// (bytes in kB/MB/GB, counts with thousands separators), NULL as `NULL`, long values cut with
/// `…`; columns holding only NULL are hidden (and named under the table) unless
/// `view.all_columns`; at most `view.width` terminal columns wide, turning into one block per
/// record (as `view.vertical` asks) when the columns cannot fit. No line ends in spaces.
///
/// # Errors
/// [`Error::Invalid`] when a column type cannot be displayed.
pub fn table(schema: &SchemaRef, batches: &[RecordBatch], view: TableView) -> Result<String> {
    let options = FormatOptions::default()
        .with_null(NULL_MARK)
        // Times without a zone are UTC throughout flowscope: the table says so with `Z`, and
        // shows fractions of a second only when there are any.
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.fZ"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    let kinds: Vec<Kind> = schema
        .fields()
        .iter()
        .map(|f| kind(f.name(), f.data_type()))
        .collect();
    // cells[column][row]; `None` is NULL.
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::new(); schema.fields().len()];
    for batch in batches {
        for (i, column) in batch.columns().iter().enumerate() {
            let f = ArrayFormatter::try_new(column.as_ref(), &options).map_err(arrow_err)?;
            for row in 0..batch.num_rows() {
                cells[i].push(if column.is_null(row) {
                    None
                } else {
                    Some(shaped(f.value(row).to_string(), kinds[i]))
                });
            }
        }
    }
    let rows = cells.first().map_or(0, Vec::len);
    let all_null = |c: &Vec<Option<String>>| c.iter().all(Option::is_none);
    let mut shown: Vec<usize> = (0..cells.len())
        .filter(|&i| view.all_columns || rows == 0 || !all_null(&cells[i]))
        .collect();
    if shown.is_empty() {
        shown = (0..cells.len()).collect();
    }
    let hidden: Vec<&str> = (0..cells.len())
        .filter(|i| !shown.contains(i))
        .map(|i| schema.field(i).name().as_str())
        .collect();
    let names: Vec<&str> = shown
        .iter()
        .map(|&i| schema.field(i).name().as_str())
        .collect();
    let text = |i: usize, row: usize| cell(&cells, i, row);

    let numeric: Vec<bool> = shown.iter().map(|&i| kinds[i] != Kind::Text).collect();
    let mut out = match widths(&names, &shown, &numeric, rows, &cells, view.width) {
        Some(widths) if !view.vertical => {
            let mut t = Table::new();
            t.load_preset(presets::UTF8_BORDERS_ONLY);
            t.set_content_arrangement(ContentArrangement::Disabled);
            t.set_header(
                names
                    .iter()
                    .zip(&widths)
                    .map(|(n, &w)| Cell::new(cut(n, w))),
            );
            for row in 0..rows {
                t.add_row(
                    shown
                        .iter()
                        .zip(&widths)
                        .map(|(&i, &w)| Cell::new(cut(text(i, row), w))),
                );
            }
            for (at, _) in numeric.iter().enumerate().filter(|(_, n)| **n) {
                if let Some(c) = t.column_mut(at) {
                    c.set_cell_alignment(CellAlignment::Right);
                }
            }
            trimmed(&t.to_string())
        }
        _ => vertical(&names, &shown, rows, &cells, view.width),
    };
    if !hidden.is_empty() {
        let list = cut(&hidden.join(", "), 200);
        let note = format!(
            "({} column{} with only NULL hidden: {list}; --all-columns shows them)",
            hidden.len(),
            if hidden.len() == 1 { "" } else { "s" },
        );
        out.push('\n');
        // A note is prose: wrapped at the terminal's width, or at 80 columns in a pipe.
        out.push_str(&wrap(&note, Some(view.width.unwrap_or(80))));
    }
    Ok(out)
}

/// The text of column `i`'s `row`, NULL as [`NULL_MARK`].
fn cell(cells: &[Vec<Option<String>>], i: usize, row: usize) -> &str {
    cells[i][row].as_deref().unwrap_or(NULL_MARK)
}

/// Column widths that fit `width`, or `None` when even squeezed columns cannot. Text columns
/// give way first (down to [`COLUMN_MIN`]); numbers are never cut, only their headers.
fn widths(
    names: &[&str],
    shown: &[usize],
    numeric: &[bool],
    rows: usize,
    cells: &[Vec<Option<String>>],
    width: Option<u16>,
) -> Option<Vec<usize>> {
    let longest: Vec<usize> = shown
        .iter()
        .map(|&i| {
            (0..rows)
                .map(|r| cell(cells, i, r).chars().count())
                .max()
                .unwrap_or(0)
                .min(CELL_MAX)
        })
        .collect();
    let mut widths: Vec<usize> = longest
        .iter()
        .zip(names)
        .map(|(&l, name)| l.max(name.chars().count()).max(1))
        .collect();
    let Some(width) = width else {
        return Some(widths);
    };
    let floors: Vec<usize> = (0..widths.len())
        .map(|c| {
            if numeric[c] {
                longest[c].max(COLUMN_MIN.min(widths[c]))
            } else {
                COLUMN_MIN.min(widths[c])
            }
        })
        .collect();
    // UTF8_BORDERS_ONLY: a border each side, a space of padding each side of every column,
    // and one space between columns.
    let room = usize::from(width).saturating_sub(1 + widths.len());
    let total = |w: &[usize]| w.iter().map(|w| w + 2).sum::<usize>();
    while total(&widths) > room {
        let widest = (0..widths.len())
            .filter(|&c| widths[c] > floors[c])
            .max_by_key(|&c| (!numeric[c], widths[c]))?;
        widths[widest] -= 1;
    }
    Some(widths)
}

/// One block per record: `-[ RECORD n ]-` then `column | value` lines, as psql's `\x`.
fn vertical(
    names: &[&str],
    shown: &[usize],
    rows: usize,
    cells: &[Vec<Option<String>>],
    width: Option<u16>,
) -> String {
    let label = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(CELL_MAX);
    let room = width.map(|w| usize::from(w).saturating_sub(label + 3).max(8));
    let mut out = String::new();
    if rows == 0 {
        out.push_str("(no rows)");
    }
    for row in 0..rows {
        if row > 0 {
            out.push('\n');
        }
        let head = format!("-[ RECORD {} ]", row + 1);
        let rule = width.map_or(label + 12, |w| usize::from(w).min(label + 12));
        out.push_str(&head);
        out.push_str(&"-".repeat(rule.saturating_sub(head.chars().count())));
        for (&i, name) in shown.iter().zip(names) {
            out.push('\n');
            let value = cell(cells, i, row);
            let value = room.map_or_else(|| value.to_string(), |r| cut(value, r));
            let line = format!("{:<label$} | {value}", cut(name, label));
            out.push_str(line.trim_end());
        }
    }
    out
}

/// Every line of `text` without trailing spaces (how every table flowscope prints ends).
pub fn trimmed(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` broken at spaces into lines of at most `width` characters (one line when `None`).
pub fn wrap(text: &str, width: Option<u16>) -> String {
    let Some(width) = width.map(usize::from).filter(|&w| w > 8) else {
        return text.to_string();
    };
    let mut out = String::new();
    let mut line = 0usize;
    for word in text.split(' ') {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
    out
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int32Array, Int64Array, StringArray, TimestampSecondArray};
    use arrow_schema::{Field, Schema, TimeUnit};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;

    fn flows(rows: usize) -> (SchemaRef, RecordBatch) {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("srcaddr", DataType::Utf8, true),
            Field::new("dstport", DataType::Int32, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("packets", DataType::Int64, true),
            Field::new("pkt_src_aws_service", DataType::Utf8, true),
            Field::new("avg_rate", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(
                    (0..rows)
                        .map(|i| (i > 0).then(|| format!("10.0.0.{i}")))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(vec![44_332; rows])),
                Arc::new(Int64Array::from(vec![16_806_682_532; rows])),
                Arc::new(Int64Array::from(vec![1_234_567; rows])),
                Arc::new(StringArray::from(vec![None::<&str>; rows])),
                Arc::new(Float64Array::from(vec![13_067.976_461_089_203; rows])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    #[test]
    fn numbers_read_as_their_column_suits() {
        let (schema, batch) = flows(2);
        let text = table(&schema, &[batch], TableView::default()).unwrap();
        assert!(text.contains("16.8 GB"), "bytes in decimal units: {text}");
        assert!(text.contains("1,234,567"), "counts with separators: {text}");
        assert!(text.contains("44332"), "ports as they are: {text}");
        assert!(text.contains("13,067.98"), "floats to two decimals: {text}");
        assert!(text.contains("NULL"), "NULL marked: {text}");
        assert!(!text.contains("16806682532"), "{text}");
    }

    #[test]
    fn all_null_columns_are_hidden_and_named() {
        let (schema, batch) = flows(3);
        let text = table(&schema, std::slice::from_ref(&batch), TableView::default()).unwrap();
        let header = text.lines().nth(1).unwrap();
        assert!(!header.contains("pkt_src_aws_service"), "{text}");
        assert!(
            text.ends_with(
                "(1 column with only NULL hidden: pkt_src_aws_service; --all-columns shows them)"
            ),
            "{text}"
        );
        let all = TableView {
            all_columns: true,
            ..TableView::default()
        };
        let text = table(&schema, &[batch], all).unwrap();
        assert!(
            text.lines().nth(1).unwrap().contains("pkt_src_aws_service"),
            "{text}"
        );
        assert!(!text.contains("hidden"), "{text}");
    }

    #[test]
    fn fits_the_terminal_without_trailing_spaces() {
        let (schema, batch) = flows(3);
        for width in [80u16, 60, 50] {
            let view = TableView {
                width: Some(width),
                ..TableView::default()
            };
            let text = table(&schema, std::slice::from_ref(&batch), view).unwrap();
            for line in text.lines() {
                assert!(
                    line.chars().count() <= usize::from(width),
                    "{width}: {line:?}\n{text}"
                );
                assert_eq!(line, line.trim_end(), "no padding: {line:?}");
            }
        }
        // Too narrow for five columns of six characters: one block per record instead.
        let view = TableView {
            width: Some(30),
            ..TableView::default()
        };
        let text = table(&schema, &[batch], view).unwrap();
        assert!(text.starts_with("-[ RECORD 1 ]"), "{text}");
        assert!(text.contains("\nbytes    | 16.8 GB\n"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 30, "{line:?}");
        }
    }

    #[test]
    fn long_values_are_cut() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("why", DataType::Utf8, true)]));
        let long = "x".repeat(500);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(vec![long.as_str()]))],
        )
        .unwrap();
        let text = table(&schema, &[batch], TableView::default()).unwrap();
        let row = text.lines().nth(3).unwrap();
        assert!(
            row.contains(&format!("{}…", "x".repeat(CELL_MAX - 1))),
            "{text}"
        );
        assert!(row.chars().count() < CELL_MAX + 6, "{row}");
    }

    #[test]
    fn vertical_view_on_request() {
        let (schema, batch) = flows(2);
        let view = TableView {
            vertical: true,
            ..TableView::default()
        };
        let text = table(&schema, &[batch], view).unwrap();
        let blocks: Vec<&str> = text.split("-[ RECORD ").collect();
        assert_eq!(blocks.len(), 3, "{text}");
        assert!(text.contains("srcaddr  | 10.0.0.1"), "{text}");
        assert!(text.contains("dstport  | 44332"), "{text}");
    }

    #[tokio::test]
    async fn csv_and_json_carry_raw_values_and_utc_times() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Second, None), true),
            Field::new("bytes", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampSecondArray::from(vec![Some(1_566_848_700), None])),
                Arc::new(Int64Array::from(vec![Some(16_806_682_532), None])),
            ],
        )
        .unwrap();
        for (format, want) in [
            (
                OutputFormat::Csv,
                "t,bytes\n2019-08-26T19:45:00Z,16806682532\n,\n",
            ),
            // A NULL is `null`, not a missing key.
            (
                OutputFormat::Jsonl,
                "{\"t\":\"2019-08-26T19:45:00Z\",\"bytes\":16806682532}\n{\"t\":null,\"bytes\":null}\n",
            ),
        ] {
            let stream = RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                futures::stream::iter(vec![Ok(batch.clone())]),
            );
            let mut out = Vec::new();
            write_stream(Box::pin(stream), format, TableView::default(), &mut out)
                .await
                .unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
