//! Arrow -> text lines, exactly as AWS writes them.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::error::{Error, Result};
use crate::format::LogFormat;

/// One column prepared for writing: typed access without a per-value downcast.
enum Column<'a> {
    Missing,
    Int(&'a dyn Array, IntKind),
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
}

#[derive(Clone, Copy)]
enum IntKind {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl<'a> Column<'a> {
    fn new(name: &str, array: Option<&'a ArrayRef>) -> Result<Self> {
        let Some(array) = array else {
            return Ok(Column::Missing);
        };
        let int = |kind| Ok(Column::Int(array.as_ref(), kind));
        match array.data_type() {
            DataType::Int8 => int(IntKind::I8),
            DataType::Int16 => int(IntKind::I16),
            DataType::Int32 => int(IntKind::I32),
            DataType::Int64 => int(IntKind::I64),
            DataType::UInt8 => int(IntKind::U8),
            DataType::UInt16 => int(IntKind::U16),
            DataType::UInt32 => int(IntKind::U32),
            DataType::UInt64 => int(IntKind::U64),
            DataType::Utf8 => Ok(Column::Utf8(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Column::LargeUtf8(array.as_string::<i64>())),
            DataType::Utf8View => Ok(Column::Utf8View(array.as_string_view())),
            other => Err(Error::Column {
                column: name.to_string(),
                reason: format!("type {other} is neither an integer nor a string"),
            }),
        }
    }

    fn write(&self, row: usize, out: &mut Vec<u8>, digits: &mut itoa::Buffer) {
        let null = match self {
            Column::Missing => true,
            Column::Int(a, _) => a.is_null(row),
            Column::Utf8(a) => a.is_null(row),
            Column::LargeUtf8(a) => a.is_null(row),
            Column::Utf8View(a) => a.is_null(row),
        };
        if null {
            out.push(b'-');
            return;
        }
        match self {
            Column::Missing => unreachable!("handled as null"),
            Column::Int(a, kind) => {
                let text = match kind {
                    IntKind::I8 => digits.format(a.as_primitive::<Int8Type>().value(row)),
                    IntKind::I16 => digits.format(a.as_primitive::<Int16Type>().value(row)),
                    IntKind::I32 => digits.format(a.as_primitive::<Int32Type>().value(row)),
                    IntKind::I64 => digits.format(a.as_primitive::<Int64Type>().value(row)),
                    IntKind::U8 => digits.format(a.as_primitive::<UInt8Type>().value(row)),
                    IntKind::U16 => digits.format(a.as_primitive::<UInt16Type>().value(row)),
                    IntKind::U32 => digits.format(a.as_primitive::<UInt32Type>().value(row)),
                    IntKind::U64 => digits.format(a.as_primitive::<UInt64Type>().value(row)),
                };
                out.extend_from_slice(text.as_bytes());
            }
            Column::Utf8(a) => write_text(a.value(row), out),
            Column::LargeUtf8(a) => write_text(a.value(row), out),
            Column::Utf8View(a) => write_text(a.value(row), out),
        }
    }
}

/// Writes a string value; an empty string has no text form, so it is written as `-`.
fn write_text(value: &str, out: &mut Vec<u8>) {
    if value.is_empty() {
        out.push(b'-');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// Writes every row of `batch` as a flow log line in `format`, each ending in `\n`.
///
/// Columns are found by their AWS column name (or field name); a field the batch lacks and every
/// null value is written as `-`. A batch from [`TextDecoder`](crate::TextDecoder) written with
/// the format it was decoded with reproduces the input lines byte for byte.
///
/// # Errors
/// [`Error::Column`] when a column the format needs is neither an integer nor a string.
pub fn write_lines(batch: &RecordBatch, format: &LogFormat, out: &mut Vec<u8>) -> Result<()> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(format.len());
    for spec in format.fields() {
        let index = schema
            .index_of(spec.column)
            .or_else(|_| schema.index_of(spec.name))
            .ok();
        columns.push(Column::new(spec.column, index.map(|i| batch.column(i)))?);
    }
    let mut digits = itoa::Buffer::new();
    for row in 0..batch.num_rows() {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            column.write(row, out, &mut digits);
        }
        out.push(b'\n');
    }
    Ok(())
}
