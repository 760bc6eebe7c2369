//! Functions whose output size comes from their arguments, capped: `repeat`, `lpad`, `rpad`,
//! `replace` and `array_repeat` in place of DataFusion's own. A memory pool bounds only the
//! operators that reserve memory (aggregates, sorts, joins); `repeat('x', 2000000000)` would
//! allocate gigabytes at once without asking it. Each capped function works out how much it
//! would build from its arguments first, and errors past [`MAX_VALUE`] bytes for one value or
//! [`MAX_CALL`] bytes for one batch of rows; below that it is the built-in, unchanged.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The largest value one call may build, in bytes (a value repeated over a batch of rows is
/// materialised once per row, so this is kept modest).
pub const MAX_VALUE: usize = 64 << 10;

/// The most one call may build for a batch of rows, in bytes.
pub const MAX_CALL: usize = 16 << 20;

/// The capped functions, to register in place of the built-ins.
pub fn all() -> Vec<ScalarUDF> {
    use datafusion::functions::{string, unicode};
    use datafusion::functions_nested::repeat::array_repeat_udf;
    [
        (Kind::Repeat, string::repeat()),
        (Kind::Pad, unicode::lpad()),
        (Kind::Pad, unicode::rpad()),
        (Kind::Replace, string::replace()),
        (Kind::ArrayRepeat, array_repeat_udf()),
    ]
    .into_iter()
    .map(|(kind, inner)| {
        ScalarUDF::new_from_impl(Capped {
            kind,
            inner: Arc::clone(inner.inner()),
        })
    })
    .collect()
}

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad(s, n[, fill])`, `rpad(...)`: `n` characters.
    Pad,
    /// `replace(s, from, to)`: at most `len(s) / len(from)` replacements of `len(to)` bytes.
    Replace,
    /// `array_repeat(x, n)`: `n` elements (counted at 8 bytes, or the element's length).
    ArrayRepeat,
}

#[derive(Debug)]
struct Capped {
    kind: Kind,
    inner: Arc<dyn ScalarUDFImpl>,
}

impl PartialEq for Capped {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.inner.name() == other.inner.name()
    }
}

impl Eq for Capped {}

impl Hash for Capped {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.inner.name().hash(state);
    }
}

/// One argument, read row by row without materialising a scalar over the batch.
enum Arg<'a> {
    Scalar(&'a ScalarValue),
    Array(&'a ArrayRef),
}

impl<'a> Arg<'a> {
    fn of(value: &'a ColumnarValue) -> Self {
        match value {
            ColumnarValue::Scalar(s) => Self::Scalar(s),
            ColumnarValue::Array(a) => Self::Array(a),
        }
    }

    /// The byte length of a string (or, for other types, 8), 0 for null.
    fn len_at(&self, row: usize) -> usize {
        match self {
            Self::Scalar(s) => match s {
                ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                    v.as_ref().map_or(0, String::len)
                }
                s if s.is_null() => 0,
                _ => 8,
            },
            Self::Array(a) => {
                if a.is_null(row) {
                    return 0;
                }
                match a.data_type() {
                    DataType::Utf8 => a.as_string::<i32>().value(row).len(),
                    DataType::LargeUtf8 => a.as_string::<i64>().value(row).len(),
                    DataType::Utf8View => a.as_string_view().value(row).len(),
                    _ => 8,
                }
            }
        }
    }

    /// An integer argument (a count), 0 for null or negative.
    fn count_at(&self, row: usize) -> usize {
        let value = match self {
            Self::Scalar(ScalarValue::Int64(Some(n))) => *n,
            Self::Scalar(s) => match s.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) => n,
                _ => 0,
            },
            Self::Array(a) => match a.data_type() {
                DataType::Int64 if !a.is_null(row) => a.as_primitive::<Int64Type>().value(row),
                _ => 0,
            },
        };
        usize::try_from(value).unwrap_or(0)
    }
}

impl Capped {
    /// The bytes one row's output would take.
    fn row_size(&self, args: &[Arg<'_>], row: usize) -> usize {
        let get = |i: usize| args.get(i);
        match self.kind {
            Kind::Repeat => match (get(0), get(1)) {
                (Some(s), Some(n)) => s.len_at(row).saturating_mul(n.count_at(row)),
                _ => 0,
            },
            Kind::Pad => get(1).map_or(0, |n| n.count_at(row)),
            Kind::Replace => match (get(0), get(1), get(2)) {
                (Some(s), Some(from), Some(to)) => {
                    let (s, from, to) = (s.len_at(row), from.len_at(row), to.len_at(row));
                    match from {
                        0 => s,
                        from => s.saturating_add((s / from).saturating_mul(to)),
                    }
                }
                _ => 0,
            },
            Kind::ArrayRepeat => match (get(0), get(1)) {
                (Some(x), Some(n)) => x.len_at(row).max(8).saturating_mul(n.count_at(row)),
                _ => 0,
            },
        }
    }

    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let values: Vec<Arg<'_>> = args.args.iter().map(Arg::of).collect();
        let arrays = values.iter().any(|v| matches!(v, Arg::Array(_)));
        let rows = if arrays { args.number_rows } else { 1 };
        let mut total: usize = 0;
        for row in 0..rows {
            let size = self.row_size(&values, row);
            if size > MAX_VALUE {
                return exec_err!(
                    "{}: the result would be {size} bytes; one value may be at most {MAX_VALUE} \
                     bytes",
                    self.inner.name()
                );
            }
            total = total.saturating_add(size);
        }
        if total > MAX_CALL {
            return exec_err!(
                "{}: the results would be {total} bytes for {rows} rows; at most {MAX_CALL} \
                 bytes are built at a time",
                self.inner.name()
            );
        }
        Ok(())
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    async fn run(sql: &str) -> Result<String, String> {
        let ctx = SessionContext::new();
        for udf in super::all() {
            ctx.register_udf(udf);
        }
        let frame = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        let batches = frame.collect().await.map_err(|e| e.to_string())?;
        Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(|e| e.to_string())?
                .to_string(),
        )
    }

    #[test]
    fn sizes_past_the_caps_are_errors_and_the_rest_is_the_built_in() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(check_caps());
    }

    async fn check_caps() {
        for sql in [
            "SELECT length(repeat('x', 2000000000))",
            "SELECT lpad('x', 2000000000)",
            "SELECT rpad('x', 2000000000, 'ab')",
            "SELECT length(replace(repeat('a', 60000), 'a', repeat('b', 60000)))",
            "SELECT cardinality(array_repeat(1, 2000000000))",
        ] {
            let err = run(sql).await.unwrap_err();
            assert!(err.contains("bytes"), "{sql}: {err}");
        }
        // Per batch: 300 rows of 64 KiB are 19 MiB.
        let err = run("SELECT length(repeat('x', 65536 - (v % 2))) \
                       FROM (SELECT unnest(range(300)) AS v)")
        .await
        .unwrap_err();
        assert!(err.contains("for 300 rows"), "{err}");
        let ok = run(
            "SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, rpad('x', 2) AS p, \
                      replace('a.b.c', '.', '::') AS s, array_repeat(2, 3) AS a",
        )
        .await
        .unwrap();
        for part in ["ababab", "007", "| x ", "a::b::c", "[2, 2, 2]"] {
            assert!(ok.contains(part), "{part}: {ok}");
        }
    }
}
