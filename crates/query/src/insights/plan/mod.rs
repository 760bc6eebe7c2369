//! Logs Insights commands -> a DataFusion logical plan: the commands here, function calls and
//! aggregations in [`function`].

mod function;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use arrow_schema::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{
    Expr as DfExpr, ExprFunctionExt, ExprSchemable, SortExpr, cast, ident, lit,
};
use datafusion::prelude::SessionContext;
use flowscope_record::{FIELDS, LogFormat, nearest};

use super::parser::{BinOp, Command, Expr, ExprKind, ParsePattern, Projection, Query, Span};
use crate::error::{Error, Result};
use crate::table::TABLE;
use crate::time::TimeRange;
use function::{check_regex, escape_like, is_aggregate_call};

/// Rows a query returns when it has no `limit` (the current Logs Insights default).
pub const DEFAULT_LIMIT: usize = 10_000;

/// A planned Insights query.
pub struct InsightsPlan {
    /// The plan, ready to run.
    pub frame: DataFrame,
    /// Whether [`DEFAULT_LIMIT`] was applied because the query had no `limit`.
    pub default_limit: bool,
}

/// Every name a field can be called by, to its lake column.
fn names() -> &'static HashMap<String, &'static str> {
    static NAMES: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut map = HashMap::new();
        for f in FIELDS {
            map.insert(f.name.to_string(), f.column);
            map.insert(f.column.to_string(), f.column);
            map.insert(camel(f.name), f.column);
        }
        for (insights, column) in [
            ("srcAddr", "srcaddr"),
            ("dstAddr", "dstaddr"),
            ("srcPort", "srcport"),
            ("dstPort", "dstport"),
            ("startTime", "start"),
            ("endTime", "end"),
            ("flowLogId", "flow_log_id"),
            ("flow_log_id", "flow_log_id"),
            ("date", "date"),
            ("hour", "hour"),
        ] {
            map.insert(insights.to_string(), column);
        }
        map
    })
}

/// `log-status` -> `logStatus`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    for (i, part) in name.split('-').enumerate() {
        let mut chars = part.chars();
        if i > 0
            && let Some(c) = chars.next()
        {
            out.extend(c.to_uppercase());
        }
        out.extend(chars);
    }
    out
}

/// Plans `query` over the `flows` table of `ctx`, limited to
/// records whose `start` is in `range`.
///
/// # Errors
/// [`Error::Query`] at the offending part of the query: unknown fields or functions, wrong
/// arguments, aggregations outside `stats`, commands after `dedup` other than `limit`.
pub async fn plan(ctx: &SessionContext, query: &Query, range: TimeRange) -> Result<InsightsPlan> {
    let mut df = ctx.table(TABLE).await?;
    if let Some(start) = range.start {
        df = df.filter(ident("start").gt_eq(lit(start)))?;
    }
    if let Some(end) = range.end {
        df = df.filter(ident("start").lt(lit(end)))?;
    }
    let mut p = Planner::new(ctx, df);
    for (command, span) in query.commands.iter().zip(&query.spans) {
        if p.dedup_at.is_some() && !matches!(command, Command::Limit(..)) {
            return Err(Error::query(
                "only `limit` may follow `dedup`",
                Some(span.position()),
            ));
        }
        p.command(command)?;
    }
    p.finish()
}

/// Applies a Logs Insights condition (`action = "REJECT" and dstPort in [22, 3389]`) to `df`,
/// a frame over the `flows` columns.
///
/// # Errors
/// [`Error::Query`] pointing into `text`.
pub fn filter(ctx: &SessionContext, df: DataFrame, text: &str) -> Result<DataFrame> {
    let condition = super::parser::parse_expr(text)?;
    let p = Planner::new(ctx, df);
    let predicate = p.expr(&condition, Mode::Row)?;
    Ok(p.df.filter(predicate)?)
}

/// The lake column a field name stands for, in any spelling flowscope accepts.
pub fn column_for(name: &str) -> Option<&'static str> {
    names().get(name).copied()
}

struct Planner<'a> {
    ctx: &'a SessionContext,
    df: DataFrame,
    /// After `stats`: names resolve to its output columns only.
    aggregated: bool,
    group_names: Vec<String>,
    /// Columns `fields` and `parse` added, in order: the default result columns.
    fields: Vec<String>,
    display: Option<Vec<Projection>>,
    sort: Option<Vec<SortExpr>>,
    limited: bool,
    dedup_at: Option<Span>,
}

/// Where an expression is used: aggregations are allowed only at the top of `stats`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Row,
    Aggregate,
}

impl<'a> Planner<'a> {
    fn new(ctx: &'a SessionContext, df: DataFrame) -> Self {
        Self {
            ctx,
            df,
            aggregated: false,
            group_names: Vec::new(),
            fields: Vec::new(),
            display: None,
            sort: None,
            limited: false,
            dedup_at: None,
        }
    }

    fn command(&mut self, command: &Command) -> Result<()> {
        let df = self.df.clone();
        match command {
            Command::Filter(e) => {
                let predicate = self.expr(e, Mode::Row)?;
                self.df = df.filter(predicate)?;
            }
            Command::Fields(projections) => {
                let mut df = df;
                for p in projections {
                    let value = self.expr_on(&df, &p.expr, Mode::Row)?;
                    df = df.with_column(p.name(), value)?;
                    self.add_field(p.name());
                }
                self.df = df;
            }
            Command::Display(projections) => {
                self.display = Some(projections.clone());
            }
            Command::Stats { aggregates, by } => self.stats(aggregates, by)?,
            Command::Sort(keys) => {
                let mut sort = Vec::new();
                for (e, desc, text) in keys {
                    // After `stats`, `count(*)` names the column `stats count(*)` made, as
                    // in AWS (a column whose name is not a plain field is written in
                    // backticks elsewhere).
                    let named = !matches!(e.kind, ExprKind::Field(_))
                        && df.schema().has_column_with_unqualified_name(text);
                    let key = if named {
                        datafusion::prelude::col(datafusion::common::Column::from_name(
                            text.clone(),
                        ))
                    } else {
                        self.expr(e, Mode::Row)?
                    };
                    // Nulls last either way: a missing value is never a top answer.
                    sort.push(key.sort(!desc, false));
                }
                self.df = df.sort(sort.clone())?;
                self.sort = Some(sort);
            }
            Command::Limit(n, _) => {
                self.ensure_order()?;
                self.df = self.df.clone().limit(0, Some(*n))?;
                self.limited = true;
            }
            Command::Parse {
                source,
                pattern,
                names,
                span,
            } => self.parse(source, pattern, names, *span)?,
            Command::Dedup(keys, span) => self.dedup(keys, *span)?,
        }
        Ok(())
    }

    fn add_field(&mut self, name: &str) {
        if !self.fields.iter().any(|f| f == name) {
            self.fields.push(name.to_string());
        }
    }

    fn stats(&mut self, aggregates: &[Projection], by: &[Projection]) -> Result<()> {
        let mut groups = Vec::new();
        let mut names = HashSet::new();
        for p in by {
            groups.push(self.expr(&p.expr, Mode::Row)?.alias(p.name()));
            names.insert(p.name().to_string());
        }
        let mut aggs = Vec::new();
        for p in aggregates {
            if !is_aggregate_call(&p.expr) {
                return Err(Error::query(
                    "each `stats` expression must be an aggregation such as count(*), \
                     sum(bytes) or avg(packets)",
                    Some(p.expr.span.position()),
                ));
            }
            if !names.insert(p.name().to_string()) {
                return Err(Error::query(
                    format!("`{}` is named twice; give one an `as` name", p.name()),
                    Some(p.expr.span.position()),
                ));
            }
            aggs.push(self.expr(&p.expr, Mode::Aggregate)?.alias(p.name()));
        }
        self.df = self.df.clone().aggregate(groups, aggs)?;
        self.aggregated = true;
        self.group_names = by.iter().map(|p| p.name().to_string()).collect();
        self.fields.clear();
        self.sort = None;
        Ok(())
    }

    fn parse(
        &mut self,
        source: &Expr,
        pattern: &ParsePattern,
        names: &[(String, Span)],
        span: Span,
    ) -> Result<()> {
        let (regex, captures): (String, Vec<String>) = match pattern {
            ParsePattern::Glob(glob) => {
                let stars = glob.matches('*').count();
                if stars == 0 {
                    return Err(Error::query(
                        "the parse pattern has no `*` to capture",
                        Some(span.position()),
                    ));
                }
                if names.len() != stars {
                    return Err(Error::query(
                        format!(
                            "the pattern captures {stars} value(s) but {} name(s) follow `as`",
                            names.len()
                        ),
                        Some(span.position()),
                    ));
                }
                let parts: Vec<String> = glob.split('*').map(regex::escape).collect();
                let mut re = String::from("(?s)");
                for (i, part) in parts.iter().enumerate() {
                    re.push_str(part);
                    if i + 1 < parts.len() {
                        re.push_str(if i + 2 == parts.len() && parts[i + 1].is_empty() {
                            "(.*)"
                        } else {
                            "(.*?)"
                        });
                    }
                }
                (re, names.iter().map(|(n, _)| n.clone()).collect())
            }
            ParsePattern::Regex(re) => {
                let compiled = regex::Regex::new(re).map_err(|e| {
                    Error::query(format!("invalid regex: {e}"), Some(span.position()))
                })?;
                let named: Vec<Option<String>> = compiled
                    .capture_names()
                    .skip(1)
                    .map(|n| n.map(str::to_string))
                    .collect();
                if named.iter().all(Option::is_none) {
                    return Err(Error::query(
                        "the parse regex has no named group such as (?<user>\\S+)",
                        Some(span.position()),
                    ));
                }
                // Unnamed groups still count in the capture list; name them so they can be
                // skipped.
                let captures = named
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| n.unwrap_or_else(|| format!("__group{i}")))
                    .collect();
                (re.clone(), captures)
            }
        };
        let source = self.expr(source, Mode::Row)?;
        let source = cast(source, DataType::Utf8);
        let matched = self.call_df("regexp_match", vec![source, lit(regex)])?;
        let mut df = self.df.clone();
        for (i, name) in captures.iter().enumerate() {
            if name.starts_with("__group") {
                continue;
            }
            let value = self.call_df("array_element", vec![matched.clone(), lit(i as i64 + 1)])?;
            df = df.with_column(name, value)?;
            self.add_field(name);
        }
        self.df = df;
        Ok(())
    }

    fn dedup(&mut self, keys: &[Expr], span: Span) -> Result<()> {
        self.ensure_order()?;
        let order = self.sort.clone().unwrap_or_default();
        let mut partition = Vec::new();
        let mut any_null: Option<DfExpr> = None;
        for k in keys {
            let e = self.expr(k, Mode::Row)?;
            let null = e.clone().is_null();
            any_null = Some(match any_null {
                Some(a) => a.or(null),
                None => null,
            });
            partition.push(e);
        }
        let row_number = self
            .ctx
            .udwf("row_number")?
            .call(vec![])
            .partition_by(partition)
            .order_by(order.clone())
            .build()?
            .alias("__dedup_row");
        let keep = ident("__dedup_row").eq(lit(1_u64));
        let keep = match any_null {
            Some(n) => keep.or(n),
            None => keep,
        };
        let df = self.df.clone().window(vec![row_number])?.filter(keep)?;
        self.df = df.drop_columns(&["__dedup_row"])?.sort(order)?;
        self.dedup_at = Some(span);
        Ok(())
    }

    /// Gives results the order Logs Insights shows them in when the query named none: newest
    /// first, or by the `stats` groups.
    fn ensure_order(&mut self) -> Result<()> {
        if self.sort.is_some() {
            return Ok(());
        }
        let order: Vec<SortExpr> = if self.aggregated {
            self.group_names
                .iter()
                .map(|n| ident(n.as_str()).sort(true, false))
                .collect()
        } else {
            vec![ident("start").sort(false, false)]
        };
        if !order.is_empty() {
            self.df = self.df.clone().sort(order.clone())?;
        }
        self.sort = Some(order);
        Ok(())
    }

    fn finish(mut self) -> Result<InsightsPlan> {
        let mut default_limit = false;
        if !self.limited {
            self.ensure_order()?;
            self.df = self.df.clone().limit(0, Some(DEFAULT_LIMIT))?;
            default_limit = true;
        }
        let columns: Vec<DfExpr> = if let Some(display) = self.display.take() {
            let mut out = Vec::new();
            for p in &display {
                out.push(self.expr(&p.expr, Mode::Row)?.alias(p.name()));
            }
            out
        } else if self.aggregated {
            self.df
                .schema()
                .fields()
                .iter()
                .map(|f| ident(f.name().as_str()))
                .collect()
        } else if self.fields.is_empty() {
            vec![
                self.system("@timestamp")?.alias("@timestamp"),
                self.system("@message")?.alias("@message"),
            ]
        } else {
            self.fields.iter().map(|n| ident(n.as_str())).collect()
        };
        let frame = self.df.select(columns)?;
        Ok(InsightsPlan {
            frame,
            default_limit,
        })
    }

    fn expr(&self, e: &Expr, mode: Mode) -> Result<DfExpr> {
        self.expr_on(&self.df, e, mode)
    }

    /// Translates `e` against the columns of `df`.
    fn expr_on(&self, df: &DataFrame, e: &Expr, mode: Mode) -> Result<DfExpr> {
        let here = Some(e.span.position());
        Ok(match &e.kind {
            ExprKind::Field(name) => self.field(df, name, e.span)?,
            ExprKind::Str(s) => lit(s.clone()),
            ExprKind::Int(n) => lit(*n),
            ExprKind::Float(f) => lit(*f),
            ExprKind::Period(_) => {
                return Err(Error::query(
                    "a time period is only valid inside bin(), datefloor() or dateceil()",
                    here,
                ));
            }
            ExprKind::Regex(_) => {
                return Err(Error::query(
                    "a regex is only valid after `like`, `=~` or in `parse`",
                    here,
                ));
            }
            ExprKind::Star => {
                return Err(Error::query("`*` is only valid in count(*)", here));
            }
            ExprKind::Not(inner) => !self.expr_on(df, inner, mode)?,
            ExprKind::Neg(inner) => DfExpr::Negative(Box::new(self.expr_on(df, inner, mode)?)),
            ExprKind::Binary(op, l, r) => {
                let (l, r) = (self.expr_on(df, l, mode)?, self.expr_on(df, r, mode)?);
                match op {
                    BinOp::And => l.and(r),
                    BinOp::Or => l.or(r),
                    BinOp::Eq => l.eq(r),
                    BinOp::Ne => l.not_eq(r),
                    BinOp::Lt => l.lt(r),
                    BinOp::Le => l.lt_eq(r),
                    BinOp::Gt => l.gt(r),
                    BinOp::Ge => l.gt_eq(r),
                    BinOp::Add => l + r,
                    BinOp::Sub => l - r,
                    BinOp::Mul => l * r,
                    BinOp::Div => l / r,
                    BinOp::Mod => l % r,
                    BinOp::Pow => self.call_df("power", vec![l, r])?,
                }
            }
            ExprKind::Like {
                expr,
                pattern,
                negated,
            } => {
                let value = self.as_text(df, self.expr_on(df, expr, mode)?);
                let test = match &pattern.kind {
                    ExprKind::Regex(re) => {
                        check_regex(re, pattern.span)?;
                        self.call_df("regexp_like", vec![value, lit(re.clone())])?
                    }
                    ExprKind::Str(s) => DfExpr::Like(Like::new(
                        false,
                        Box::new(value),
                        Box::new(lit(format!("%{}%", escape_like(s)))),
                        Some('\\'),
                        false,
                    )),
                    _ => unreachable!("the parser accepts only strings and regexes"),
                };
                if *negated { !test } else { test }
            }
            ExprKind::Match { expr, pattern } => {
                let re = match &pattern.kind {
                    ExprKind::Regex(re) | ExprKind::Str(re) => re,
                    _ => {
                        return Err(Error::query(
                            "`=~` takes a /regex/",
                            Some(pattern.span.position()),
                        ));
                    }
                };
                check_regex(re, pattern.span)?;
                let value = self.as_text(df, self.expr_on(df, expr, mode)?);
                self.call_df("regexp_like", vec![value, lit(re.clone())])?
            }
            ExprKind::In {
                expr,
                list,
                negated,
            } => {
                let value = self.expr_on(df, expr, mode)?;
                let mut members = Vec::new();
                for m in list {
                    members.push(self.expr_on(df, m, mode)?);
                }
                value.in_list(members, *negated)
            }
            ExprKind::Call { name, args } => self.call(df, name, args, e.span, mode)?,
        })
    }

    /// Casts a non-string value to text (for `like` and `=~` on numbers).
    fn as_text(&self, df: &DataFrame, e: DfExpr) -> DfExpr {
        match e.get_type(df.schema()) {
            Ok(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => e,
            _ => cast(e, DataType::Utf8),
        }
    }

    fn field(&self, df: &DataFrame, name: &str, span: Span) -> Result<DfExpr> {
        let schema = df.schema();
        if schema.has_column_with_unqualified_name(name) {
            return Ok(ident(name));
        }
        if self.aggregated {
            let available: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| format!("`{}`", f.name()))
                .collect();
            return Err(Error::query(
                format!(
                    "`{name}` is not a result of the `stats` before it (available: {})",
                    available.join(", ")
                ),
                Some(span.position()),
            ));
        }
        if name.starts_with('@') {
            return self
                .system(name)
                .map_err(|_| unknown_field(name, span, schema.fields()));
        }
        match names().get(name) {
            Some(column) if schema.has_column_with_unqualified_name(column) => Ok(ident(*column)),
            _ => Err(unknown_field(name, span, schema.fields())),
        }
    }

    fn system(&self, name: &str) -> Result<DfExpr> {
        Ok(match name {
            "@timestamp" => self.call_df("to_timestamp_seconds", vec![ident("start")])?,
            "@message" => {
                // The default format's fields, in order, `-` for missing values.
                let format = LogFormat::default_format();
                let mut parts = vec![lit(" ")];
                for c in format.fields().iter().map(|f| f.column) {
                    parts.push(
                        self.call_df("coalesce", vec![cast(ident(c), DataType::Utf8), lit("-")])?,
                    );
                }
                self.call_df("concat_ws", parts)?
            }
            "@logStream" => self.call_df("concat", vec![ident("interface_id"), lit("-all")])?,
            _ => return Err(Error::query(format!("unknown field `{name}`"), None)),
        })
    }
}

fn unknown_field(name: &str, span: Span, fields: &arrow_schema::Fields) -> Error {
    let mut candidates: Vec<String> = names().keys().cloned().collect();
    candidates.extend(["@timestamp", "@message", "@logStream"].map(String::from));
    candidates.extend(fields.iter().map(|f| f.name().clone()));
    let hint = nearest(name, candidates.iter().map(String::as_str))
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default();
    Error::query(
        format!("unknown field `{name}`{hint}"),
        Some(span.position()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_insights_and_aws_spellings() {
        let n = names();
        for (name, column) in [
            ("srcAddr", "srcaddr"),
            ("interfaceId", "interface_id"),
            ("logStatus", "log_status"),
            ("log-status", "log_status"),
            ("log_status", "log_status"),
            ("startTime", "start"),
            ("tcpFlags", "tcp_flags"),
            ("pktSrcaddr", "pkt_srcaddr"),
            ("flowDirection", "flow_direction"),
            ("azId", "az_id"),
        ] {
            assert_eq!(n.get(name).copied(), Some(column), "{name}");
        }
    }

    #[test]
    fn like_escapes() {
        assert_eq!(escape_like("10.0_%\\"), "10.0\\_\\%\\\\");
    }
}
