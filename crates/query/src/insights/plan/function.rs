//! Function calls of the Logs Insights language: the functions that are DataFusion's under
//! another name come from one table; the others, and the aggregations of `stats`, are planned
//! here one by one.

use arrow_schema::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_aggregate::expr_fn::{first_value, percentile_cont};
use datafusion::logical_expr::{Expr as DfExpr, case, cast, ident, lit};

use super::super::parser::{Expr, ExprKind, Span};
use super::{Mode, Planner};
use crate::error::{Error, Result};

/// Functions that are DataFusion's under another name (or the same): the Logs Insights name,
/// the fewest and most arguments, DataFusion's name.
const RENAMED: &[(&str, usize, usize, &str)] = &[
    ("abs", 1, 1, "abs"),
    ("ceil", 1, 1, "ceil"),
    ("floor", 1, 1, "floor"),
    ("sqrt", 1, 1, "sqrt"),
    ("log", 1, 1, "ln"),
    ("greatest", 1, usize::MAX, "greatest"),
    ("least", 1, usize::MAX, "least"),
    ("coalesce", 1, usize::MAX, "coalesce"),
    ("concat", 1, usize::MAX, "concat"),
    ("ltrim", 1, 2, "ltrim"),
    ("rtrim", 1, 2, "rtrim"),
    ("trim", 1, 2, "btrim"),
    ("strlen", 1, 1, "character_length"),
    ("toupper", 1, 1, "upper"),
    ("tolower", 1, 1, "lower"),
    ("replace", 3, 3, "replace"),
    ("frommillis", 1, 1, "to_timestamp_millis"),
    ("isvalidip", 1, 1, "is_valid_ip"),
    ("isvalidipv4", 1, 1, "is_valid_ipv4"),
    ("isvalidipv6", 1, 1, "is_valid_ipv6"),
];

/// An error unless `args` are between `min` and `max` in number.
fn arity(name: &str, args: &[Expr], min: usize, max: usize, span: Span) -> Result<()> {
    if args.len() < min || args.len() > max {
        let wanted = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(Error::query(
            format!("{name}() takes {wanted} argument(s), got {}", args.len()),
            Some(span.position()),
        ));
    }
    Ok(())
}

impl Planner<'_> {
    /// A function by its DataFusion name.
    pub(super) fn call_df(&self, name: &str, args: Vec<DfExpr>) -> Result<DfExpr> {
        Ok(self.ctx.udf(name)?.call(args))
    }

    /// A function call in a row expression, or an aggregation at the top of `stats`.
    pub(super) fn call(
        &self,
        df: &DataFrame,
        name: &str,
        args: &[Expr],
        span: Span,
        mode: Mode,
    ) -> Result<DfExpr> {
        let lower = name.to_ascii_lowercase();
        let here = Some(span.position());
        if AGGREGATES.contains(&lower.as_str()) {
            if mode != Mode::Aggregate {
                return Err(Error::query(
                    format!("{name}() is an aggregation: use it in `stats`"),
                    here,
                ));
            }
            return self.aggregate(df, name, &lower, args, span);
        }
        let arity = |(min, max): (usize, usize)| arity(name, args, min, max, span);
        if let Some((_, min, max, to)) = RENAMED.iter().find(|f| f.0 == lower) {
            arity((*min, *max))?;
            let values = self.row_args(df, args)?;
            return self.call_df(to, values);
        }
        Ok(match lower.as_str() {
            "bin" => {
                arity((1, 1))?;
                let period = period_arg(&args[0])?;
                let ts = self.system("@timestamp")?;
                self.call_df("date_bin", vec![interval(period), ts])?
            }
            "datefloor" | "dateceil" => {
                arity((2, 2))?;
                let ts = self.expr_on(df, &args[0], Mode::Row)?;
                let period = period_arg(&args[1])?;
                let floor = self.call_df("date_bin", vec![interval(period), ts.clone()])?;
                if lower == "datefloor" {
                    floor
                } else {
                    case(floor.clone().eq(ts))
                        .when(lit(true), floor.clone())
                        .otherwise(floor + interval(period))?
                }
            }
            "tomillis" => {
                arity((1, 1))?;
                let mut values = self.row_args(df, args)?;
                let ms = cast(
                    values.remove(0),
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                );
                cast(ms, DataType::Int64)
            }
            "ispresent" => {
                arity((1, 1))?;
                self.row_args(df, args)?.remove(0).is_not_null()
            }
            "isempty" | "isblank" => {
                arity((1, 1))?;
                let v = self.as_text(df, self.row_args(df, args)?.remove(0));
                let text = if lower == "isblank" {
                    self.call_df("btrim", vec![v.clone()])?
                } else {
                    v.clone()
                };
                v.is_null().or(text.eq(lit("")))
            }
            "substr" => {
                arity((2, 3))?;
                let mut values = self.row_args(df, args)?;
                // Logs Insights counts from 0, SQL from 1.
                values[1] = values[1].clone() + lit(1_i64);
                self.call_df("substr", values)?
            }
            "strcontains" => {
                arity((2, 2))?;
                let found = self.call_df("strpos", self.row_args(df, args)?)?.gt(lit(0));
                case(found)
                    .when(lit(true), lit(1_i64))
                    .otherwise(lit(0_i64))?
            }
            "isipinsubnet" | "isipv4insubnet" | "isipv6insubnet" => {
                arity((2, 2))?;
                if let ExprKind::Str(cidr) = &args[1].kind {
                    crate::udf::Cidr::parse(cidr)
                        .map_err(|e| Error::query(e, Some(args[1].span.position())))?;
                    let v4 = cidr.contains('.');
                    if (lower == "isipv4insubnet" && !v4) || (lower == "isipv6insubnet" && v4) {
                        return Err(Error::query(
                            format!("{name}() takes an IPv{} CIDR block", if v4 { 6 } else { 4 }),
                            Some(args[1].span.position()),
                        ));
                    }
                }
                self.call_df("is_ip_in_subnet", self.row_args(df, args)?)?
            }
            _ => {
                return Err(Error::query(format!("unknown function `{name}`"), here));
            }
        })
    }

    /// The arguments as row expressions.
    pub(super) fn row_args(&self, df: &DataFrame, args: &[Expr]) -> Result<Vec<DfExpr>> {
        args.iter()
            .map(|a| self.expr_on(df, a, Mode::Row))
            .collect()
    }

    pub(super) fn aggregate(
        &self,
        df: &DataFrame,
        name: &str,
        lower: &str,
        args: &[Expr],
        span: Span,
    ) -> Result<DfExpr> {
        let here = Some(span.position());
        let one = |args: &[Expr]| -> Result<DfExpr> {
            match args {
                [a] => self.expr_on(df, a, Mode::Row),
                _ => Err(Error::query(format!("{name}() takes one field"), here)),
            }
        };
        let udaf =
            |f: &str, args: Vec<DfExpr>| -> Result<DfExpr> { Ok(self.ctx.udaf(f)?.call(args)) };
        Ok(match lower {
            "count" => match args {
                [] => count_all().unalias(),
                [a] if a.kind == ExprKind::Star => count_all().unalias(),
                _ => udaf("count", vec![one(args)?])?,
            },
            "count_distinct" => {
                let v = one(args)?;
                datafusion::functions_aggregate::expr_fn::count_distinct(v)
            }
            "sum" | "avg" | "min" | "max" | "stddev" => udaf(lower, vec![one(args)?])?,
            "sortsfirst" => udaf("min", vec![one(args)?])?,
            "sortslast" => udaf("max", vec![one(args)?])?,
            "earliest" => first_value(one(args)?, vec![ident("start").sort(true, false)]),
            "latest" => first_value(one(args)?, vec![ident("start").sort(false, false)]),
            "pct" => {
                let [field, p] = args else {
                    return Err(Error::query(
                        format!("{name}() takes a field and a percentile, e.g. pct(bytes, 95)"),
                        here,
                    ));
                };
                let pct = match p.kind {
                    ExprKind::Int(n) => n as f64,
                    ExprKind::Float(f) => f,
                    _ => -1.0,
                };
                if !(0.0..=100.0).contains(&pct) {
                    return Err(Error::query(
                        "the percentile must be a number from 0 to 100",
                        Some(p.span.position()),
                    ));
                }
                let v = cast(self.expr_on(df, field, Mode::Row)?, DataType::Float64);
                percentile_cont(v.sort(true, false), lit(pct / 100.0))
            }
            _ => unreachable!("AGGREGATES lists every name handled here"),
        })
    }
}

/// Aggregation functions of `stats`.
const AGGREGATES: &[&str] = &[
    "count",
    "count_distinct",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "pct",
    "earliest",
    "latest",
    "sortsfirst",
    "sortslast",
];

pub(super) fn is_aggregate_call(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { name, .. } if AGGREGATES.contains(&name.to_ascii_lowercase().as_str()))
}

pub(super) fn period_arg(e: &Expr) -> Result<i64> {
    match e.kind {
        ExprKind::Period(p) if p > 0 => Ok(p),
        _ => Err(Error::query(
            "expected a time period such as 5m, 1h or 1d",
            Some(e.span.position()),
        )),
    }
}

pub(super) fn interval(seconds: i64) -> DfExpr {
    lit(ScalarValue::new_interval_mdn(
        0,
        0,
        seconds.saturating_mul(1_000_000_000),
    ))
}

pub(super) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) fn check_regex(re: &str, span: Span) -> Result<()> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| Error::query(format!("invalid regex: {e}"), Some(span.position())))
}
