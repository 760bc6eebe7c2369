//! The Presto/Trino functions AWS's published Athena queries for flow logs use and DataFusion
//! lacks, so that those queries run over the lake unchanged: `date('2020-05-04')`,
//! `day_of_week(x)`, `to_iso8601(x)`, `date_format(x, format)`, `from_iso8601_timestamp(text)`,
//! and `approx_percentile(x, p)`. (`from_unixtime`, `date_trunc`, `regexp_like`,
//! `approx_distinct`, `split_part` and `interval '7' day` are DataFusion's own.)
//!
//! Times are UTC, as Athena's are by default: `to_iso8601(from_unixtime(start))` is
//! `2020-05-04T10:00:00.000Z`.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use arrow_schema::{DataType, TimeUnit};
use datafusion::arrow::compute::kernels::temporal::{DatePart, date_part};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// The scalar functions.
pub fn all() -> Vec<ScalarUDF> {
    [
        Kind::Date,
        Kind::DayOfWeek,
        Kind::ToIso8601,
        Kind::DateFormat,
        Kind::FromIso8601Timestamp,
    ]
    .into_iter()
    .map(|kind| ScalarUDF::new_from_impl(Presto::new(kind)))
    .collect()
}

/// `approx_percentile(x, p)`: DataFusion's `approx_percentile_cont` (a t-digest) under
/// Presto's name, called as Presto calls it.
pub fn approx_percentile() -> AggregateUDF {
    datafusion::functions_aggregate::approx_percentile_cont::approx_percentile_cont_udaf()
        .as_ref()
        .clone()
        .with_aliases(["approx_percentile"])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Date,
    DayOfWeek,
    ToIso8601,
    DateFormat,
    FromIso8601Timestamp,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Presto {
    kind: Kind,
    signature: Signature,
    aliases: Vec<String>,
}

impl Presto {
    fn new(kind: Kind) -> Self {
        let signature = match kind {
            Kind::DateFormat => Signature::any(2, Volatility::Immutable),
            _ => Signature::any(1, Volatility::Immutable),
        };
        let aliases = match kind {
            Kind::DayOfWeek => vec!["dow".to_string()],
            _ => Vec::new(),
        };
        Self {
            kind,
            signature,
            aliases,
        }
    }
}

/// A timestamp as Presto's `to_iso8601` writes one in UTC.
const ISO_TIMESTAMP: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

impl ScalarUDFImpl for Presto {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Date => "date",
            Kind::DayOfWeek => "day_of_week",
            Kind::ToIso8601 => "to_iso8601",
            Kind::DateFormat => "date_format",
            Kind::FromIso8601Timestamp => "from_iso8601_timestamp",
        }
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let temporal = |t: &DataType| {
            matches!(
                t,
                DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(..)
                    | DataType::Utf8
                    | DataType::Utf8View
                    | DataType::LargeUtf8
                    | DataType::Null
            )
        };
        if !temporal(&args[0]) {
            return plan_err!(
                "{}() takes a date or a timestamp, not {} (from_unixtime(start) makes one of \
                 a flow log's Unix seconds)",
                self.name(),
                args[0]
            );
        }
        Ok(match self.kind {
            Kind::Date => DataType::Date32,
            Kind::DayOfWeek => DataType::Int64,
            Kind::ToIso8601 | Kind::DateFormat => DataType::Utf8,
            Kind::FromIso8601Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let input = args.args[0].to_array(rows)?;
        let out: ArrayRef = match self.kind {
            Kind::Date => datafusion::arrow::compute::cast(&input, &DataType::Date32)?,
            Kind::FromIso8601Timestamp => datafusion::arrow::compute::cast(
                &input,
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?,
            Kind::DayOfWeek => {
                // ISO: Monday is 1, Sunday 7.
                let dates = as_temporal(&input)?;
                let day = date_part(&dates, DatePart::DayOfWeekMonday0)?;
                let day = datafusion::arrow::compute::cast(&day, &DataType::Int64)?;
                let day = day
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("cast to Int64");
                Arc::new(day.unary::<_, arrow_array::types::Int64Type>(|d| d + 1))
            }
            Kind::ToIso8601 => {
                let values = as_temporal(&input)?;
                let format = match values.data_type() {
                    DataType::Date32 | DataType::Date64 => None,
                    _ => Some(ISO_TIMESTAMP),
                };
                format_all(&values, format)?
            }
            Kind::DateFormat => {
                let Some(ColumnarValue::Scalar(pattern)) = args.args.get(1) else {
                    return exec_err!("date_format(x, format): the format must be a constant");
                };
                let Some(Some(pattern)) = pattern.try_as_str() else {
                    return exec_err!("date_format(x, format): the format must be a string");
                };
                let values = as_temporal(&input)?;
                let values = if matches!(values.data_type(), DataType::Timestamp(..)) {
                    values
                } else {
                    datafusion::arrow::compute::cast(
                        &values,
                        &DataType::Timestamp(TimeUnit::Second, None),
                    )?
                };
                format_all(&values, Some(&mysql_to_strftime(pattern)?))?
            }
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// Dates and timestamps as they are; text read as a timestamp (ISO 8601).
fn as_temporal(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null => {
            datafusion::arrow::compute::cast(
                array,
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?
        }
        _ => Arc::clone(array),
    })
}

/// Each value written with `format` (strftime; `None` for a date's `YYYY-MM-DD`), null kept.
fn format_all(array: &ArrayRef, format: Option<&str>) -> Result<ArrayRef> {
    let options = FormatOptions::new()
        .with_timestamp_format(format)
        .with_date_format(
            format.filter(|_| matches!(array.data_type(), DataType::Date32 | DataType::Date64)),
        );
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
    let out: StringArray = (0..array.len())
        .map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string()))
        .collect();
    Ok(Arc::new(out))
}

/// Presto's `date_format` specifiers (MySQL's) as strftime's.
fn mysql_to_strftime(pattern: &str) -> Result<String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            return exec_err!("date_format: the format ends with a lone `%`");
        };
        out.push_str(match spec {
            'Y' => "%Y",
            'y' => "%y",
            'm' => "%m",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'H' => "%H",
            'k' => "%-H",
            'h' | 'I' => "%I",
            'l' => "%-I",
            'i' => "%M",
            's' | 'S' => "%S",
            'f' => "%6f",
            'p' => "%p",
            'T' => "%H:%M:%S",
            'r' => "%I:%M:%S %p",
            'M' => "%B",
            'b' => "%b",
            'W' => "%A",
            'a' => "%a",
            'j' => "%j",
            'w' => "%w",
            '%' => "%%",
            other => {
                return exec_err!(
                    "date_format: `%{other}` is not a specifier flowscope knows (Presto's: %Y %m \
                     %d %H %i %s %f %T %p %M %b %W %a %j ...)"
                );
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_specifiers_become_strftime() {
        assert_eq!(
            mysql_to_strftime("%Y-%m-%d %H:%i:%s").unwrap(),
            "%Y-%m-%d %H:%M:%S"
        );
        assert_eq!(mysql_to_strftime("%T 100%%").unwrap(), "%H:%M:%S 100%%");
        assert!(mysql_to_strftime("%Q").is_err());
    }
}
