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
                return Err(format!(
                    "unknown format `{other}`: use table, csv, json, jsonl or parquet"
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

/// Writes every batch of `stream` to `out` in `format`; `width` limits a table to that many
/// terminal columns (`None`: as wide as its content).
///
/// # Errors
/// [`Error::Engine`] when the query fails while running; [`Error::Invalid`] when `out` fails.
pub async fn write_stream<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    width: Option<u16>,
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
            let text = table(&schema, &batches, width)?;
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
            let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(out);
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
            let mut writer = arrow_json::ArrayWriter::new(out);
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
            let mut writer = arrow_json::LineDelimitedWriter::new(out);
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
        other => Error::Invalid(format!("cannot write the result: {other}")),
    }
}

/// Formats batches as a table: a header row, numbers right-aligned, nulls empty; at most `width`
/// terminal columns wide when given (long cells wrap).
///
/// # Errors
/// [`Error::Invalid`] when a column type cannot be displayed.
pub fn table(schema: &SchemaRef, batches: &[RecordBatch], width: Option<u16>) -> Result<String> {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(schema.fields().iter().map(|f| Cell::new(f.name())));
    match width {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    let options = FormatOptions::default()
        .with_null("")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f"));
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(arrow_err)?;
        for row in 0..batch.num_rows() {
            t.add_row(formatters.iter().map(|f| Cell::new(f.value(row))));
        }
    }
    for (i, field) in schema.fields().iter().enumerate() {
        if is_numeric(field.data_type())
            && let Some(c) = t.column_mut(i)
        {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    Ok(t.to_string())
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn table_aligns_and_fits() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("srcaddr", DataType::Utf8, true),
            Field::new("bytes", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("10.0.0.1"), None])),
                Arc::new(Int64Array::from(vec![Some(5), Some(123_456)])),
            ],
        )
        .unwrap();
        let text = table(&schema, &[batch], None).unwrap();
        assert!(text.contains("srcaddr"), "{text}");
        assert!(text.contains("      5"), "numbers right-aligned: {text}");
        for line in table(&schema, &[], Some(12)).unwrap().lines() {
            assert!(line.chars().count() <= 12, "{line}");
        }
    }
}
