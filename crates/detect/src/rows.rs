//! Query results as rows of JSON values: detections read a few hundred rows of aggregates, and
//! reading them by column name keeps each detection's code next to its SQL.

use arrow_array::RecordBatch;
use flowscope_query::Engine;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One result row, by column name.
pub type Row = Map<String, Value>;

/// Runs one SQL statement and returns its rows.
///
/// # Errors
/// [`Error::Query`] when the SQL does not plan or run.
pub async fn query(engine: &Engine, sql: &str) -> Result<Vec<Row>> {
    let frame = engine.sql(sql).await?;
    let batches = frame.collect().await?;
    to_rows(&batches)
}

/// Converts batches to rows (nulls kept as JSON null).
///
/// # Errors
/// [`Error::Invalid`] for a column type JSON cannot hold.
pub fn to_rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buf);
        for b in batches {
            writer.write(b)?;
        }
        writer.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_slice(&buf).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(match value {
        Value::Array(rows) => rows
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// A column as an integer (numbers, or digits in a string); 0 when null or absent.
pub fn int(row: &Row, name: &str) -> i64 {
    match row.get(name) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// A column as a float; 0 when null or absent.
pub fn float(row: &Row, name: &str) -> f64 {
    match row.get(name) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A column as text; `None` when null or absent.
pub fn text(row: &Row, name: &str) -> Option<String> {
    match row.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

/// A list column (from `array_agg`) as texts.
pub fn texts(row: &Row, name: &str) -> Vec<String> {
    match row.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Quotes a string for SQL.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
