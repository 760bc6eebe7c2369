//! The canonical Arrow schema, and fitting any flow log batch to a format.

use std::sync::{Arc, LazyLock};

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow_schema::{DataType, SchemaRef};

use crate::error::{Error, Result};
use crate::format::LogFormat;

static CANONICAL: LazyLock<SchemaRef> = LazyLock::new(|| LogFormat::all_fields().schema());

/// The canonical flow schema: every field in AWS's table order, AWS's Parquet column names and
/// types, all nullable. Every stage that needs a uniform shape (the lake, queries) uses it.
pub fn canonical_schema() -> SchemaRef {
    Arc::clone(&CANONICAL)
}

/// Returns `batch` with exactly the columns of `format`, in its order and with its types.
///
/// Columns are matched by AWS column name or field name; a missing column becomes all nulls,
/// an integer or string column of another width is cast, columns that are not in the format are
/// dropped. Use it to bring files of different formats to one shape.
///
/// # Errors
/// [`Error::Column`] when a column cannot be cast to the field's type.
pub fn conform(batch: &RecordBatch, format: &LogFormat) -> Result<RecordBatch> {
    let target = format.schema();
    let source = batch.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(format.len());
    let mut nulls = Vec::new();
    for (spec, field) in format.fields().iter().zip(target.fields()) {
        let found = source
            .index_of(spec.column)
            .or_else(|_| source.index_of(spec.name))
            .ok();
        let column = match found.map(|i| batch.column(i)) {
            None => shared_null(&mut nulls, field.data_type(), batch.num_rows()),
            Some(array) if array.data_type() == field.data_type() => Arc::clone(array),
            Some(array) => {
                arrow_cast::cast(array, field.data_type()).map_err(|e| Error::Column {
                    column: spec.column.to_string(),
                    reason: format!(
                        "cannot cast {} to {}: {e}",
                        array.data_type(),
                        field.data_type()
                    ),
                })?
            }
        };
        columns.push(column);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(target, columns, &options).map_err(|e| Error::Column {
        column: String::new(),
        reason: e.to_string(),
    })
}

/// An all-null array of `data_type` and `len`, shared with the earlier ones of the same type in
/// `cache`, so that many missing columns cost one allocation. Every call with one cache must pass
/// the same `len`.
pub fn shared_null(cache: &mut Vec<ArrayRef>, data_type: &DataType, len: usize) -> ArrayRef {
    if let Some(shared) = cache.iter().find(|a| a.data_type() == data_type) {
        debug_assert_eq!(shared.len(), len);
        return Arc::clone(shared);
    }
    let array = new_null_array(data_type, len);
    cache.push(Arc::clone(&array));
    array
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn canonical_schema_holds_every_field() {
        let schema = canonical_schema();
        assert_eq!(schema.fields().len(), crate::FIELDS.len());
        assert_eq!(schema.field(0).name(), "version");
        assert_eq!(
            schema.field_with_name("pkt_srcaddr").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            schema.field_with_name("traffic_path").unwrap().data_type(),
            &DataType::Int32
        );
    }

    #[test]
    fn conform_reorders_casts_and_fills() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("protocol", DataType::Int64, true),
            Field::new("srcaddr", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![6, 17])),
                Arc::new(StringArray::from(vec!["10.0.0.1", "10.0.0.2"])),
            ],
        )
        .unwrap();
        let format = LogFormat::parse("${srcaddr} ${protocol} ${action}").unwrap();
        let out = conform(&batch, &format).unwrap();
        assert_eq!(out.schema(), format.schema());
        assert_eq!(out.column(1).data_type(), &DataType::Int32);
        assert_eq!(out.column(2).null_count(), 2);
    }
}
