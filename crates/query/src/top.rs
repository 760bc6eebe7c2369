//! Contributor Insights for flow logs: the top-N contributors (unique key combinations) ranked
//! by bytes, packets or record count, over a time range and optionally per time bucket.
//!
//! A report comes from a [`TopSpec`] built from CLI flags or from a Contributor Insights rule
//! ([`Rule`], AWS's JSON: `Keys`, `ValueOf`, `Filters`, `AggregateOn`, and `Fields` naming the
//! 1-based positions of the space-delimited default format). Either way it becomes one plan:
//! filter, group by the keys (and bucket), aggregate, then a `row_number()` window ranks the
//! contributors and a window sum gives each one's share of the total.

use std::collections::HashMap;

use arrow_schema::DataType;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::count::count_all;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{Expr, ExprFunctionExt, SortExpr, cast, ident, lit};
use flowscope_record::LogFormat;
use serde::Deserialize;

use crate::engine::{Engine, TABLE};
use crate::error::{Error, Result};
use crate::time::TimeRange;

/// What contributors are ranked by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// The sum of a numeric column (`bytes`, `packets`).
    Sum(String),
    /// The number of records.
    Records,
}

impl Metric {
    /// The result column's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Sum(c) => c,
            Self::Records => "records",
        }
    }
}

/// One Contributor Insights filter, on a lake column.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The value is one of these.
    In(Vec<ScalarValue>),
    /// The value is none of these.
    NotIn(Vec<ScalarValue>),
    /// The text starts with one of these.
    StartsWith(Vec<String>),
    /// Greater than.
    GreaterThan(f64),
    /// Less than.
    LessThan(f64),
    /// Equal to.
    EqualTo(ScalarValue),
    /// Not equal to.
    NotEqualTo(ScalarValue),
    /// Present (not null) or absent.
    IsPresent(bool),
}

/// A contributor report.
#[derive(Debug, Clone)]
pub struct TopSpec {
    /// Key columns (lake names) and the names they are shown under.
    pub keys: Vec<(String, String)>,
    /// What is summed or counted.
    pub metric: Metric,
    /// Contributors shown (per bucket).
    pub limit: usize,
    /// Bucket width in seconds; `None` ranks over the whole range.
    pub bucket: Option<i64>,
    /// Filters on lake columns, all of which must hold.
    pub conditions: Vec<(String, Condition)>,
    /// A Logs Insights condition, e.g. `action = "REJECT"`.
    pub filter: Option<String>,
    /// Records whose `start` is in this range.
    pub range: TimeRange,
    /// Things the caller should tell the user (a rule AWS would read differently).
    pub warnings: Vec<String>,
}

/// Shorthands for key sets.
pub fn key_alias(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "pair" => &["srcaddr", "dstaddr"],
        "interface" | "eni" => &["interface_id"],
        "instance" => &["instance_id"],
        "subnet" => &["subnet_id"],
        "vpc" => &["vpc_id"],
        "flow" => &["srcaddr", "srcport", "dstaddr", "dstport", "protocol"],
        _ => return None,
    })
}

/// Resolves `--by` entries (field names in any spelling, or the shorthands of [`key_alias`]) to
/// `(column, shown name)` pairs.
///
/// # Errors
/// [`Error::Invalid`] naming an unknown key.
pub fn resolve_keys(names: &[String]) -> Result<Vec<(String, String)>> {
    let mut keys = Vec::new();
    for name in names {
        if let Some(columns) = key_alias(name) {
            keys.extend(columns.iter().map(|c| (c.to_string(), c.to_string())));
            continue;
        }
        match crate::insights::column_for(name) {
            Some(c) => keys.push((c.to_string(), c.to_string())),
            None => {
                return Err(Error::Invalid(format!(
                    "unknown key `{name}`: use a field name (srcaddr, dstport, interface-id, \
                     ...) or pair, interface, instance, subnet, vpc, flow"
                )));
            }
        }
    }
    if keys.is_empty() {
        return Err(Error::Invalid("give at least one key".into()));
    }
    Ok(keys)
}

/// Plans the report: columns `[bucket,] rank, <keys...>, <metric>, percent`.
///
/// # Errors
/// [`Error::Query`] for a bad `filter`; [`Error::Engine`] when planning fails.
pub async fn plan(engine: &Engine, spec: &TopSpec) -> Result<DataFrame> {
    let ctx = engine.context();
    let mut df = ctx.table(TABLE).await?;
    if let Some(start) = spec.range.start {
        df = df.filter(ident("start").gt_eq(lit(start)))?;
    }
    if let Some(end) = spec.range.end {
        df = df.filter(ident("start").lt(lit(end)))?;
    }
    // A record without a key value (NODATA, SKIPDATA) contributes to no contributor.
    for (column, _) in &spec.keys {
        df = df.filter(ident(column.as_str()).is_not_null())?;
    }
    for (column, condition) in &spec.conditions {
        df = df.filter(condition_expr(ident(column.as_str()), condition))?;
    }
    if let Some(text) = &spec.filter {
        df = crate::insights::filter(ctx, df, text)?;
    }
    let mut groups = Vec::new();
    let mut partition = Vec::new();
    if let Some(seconds) = spec.bucket {
        let stride = lit(ScalarValue::new_interval_mdn(0, 0, seconds * 1_000_000_000));
        let ts = ctx.udf("to_timestamp_seconds")?.call(vec![ident("start")]);
        groups.push(ctx.udf("date_bin")?.call(vec![stride, ts]).alias("bucket"));
        partition.push(ident("bucket"));
    }
    for (column, shown) in &spec.keys {
        groups.push(ident(column.as_str()).alias(shown.as_str()));
    }
    let value_name = spec.metric.name().to_string();
    let value = match &spec.metric {
        Metric::Sum(column) => ctx
            .udaf("sum")?
            .call(vec![cast(ident(column.as_str()), DataType::Int64)]),
        Metric::Records => count_all().unalias(),
    };
    df = df.aggregate(groups, vec![value.alias(value_name.as_str())])?;
    let mut order: Vec<SortExpr> = vec![ident(value_name.as_str()).sort(false, false)];
    order.extend(
        spec.keys
            .iter()
            .map(|(_, shown)| ident(shown.as_str()).sort(true, false)),
    );
    let rank = ctx
        .udwf("row_number")?
        .call(vec![])
        .partition_by(partition.clone())
        .order_by(order)
        .build()?
        .alias("rank");
    let total = Expr::from(WindowFunction::new(
        ctx.udaf("sum")?,
        vec![ident(value_name.as_str())],
    ))
    .partition_by(partition)
    .build()?
    .alias("__total");
    df = df
        .window(vec![total])?
        .window(vec![rank])?
        .filter(ident("rank").lt_eq(lit(spec.limit as u64)))?;
    let percent = ctx.udf("round")?.call(vec![
        cast(ident(value_name.as_str()), DataType::Float64) * lit(100.0)
            / cast(ident("__total"), DataType::Float64),
        lit(2_i64),
    ]);
    let mut columns = Vec::new();
    let mut sort = Vec::new();
    if spec.bucket.is_some() {
        columns.push(ident("bucket"));
        sort.push(ident("bucket").sort(true, false));
    }
    columns.push(ident("rank"));
    sort.push(ident("rank").sort(true, false));
    columns.extend(spec.keys.iter().map(|(_, shown)| ident(shown.as_str())));
    columns.push(ident(value_name.as_str()));
    columns.push(percent.alias("percent"));
    Ok(df.sort(sort)?.select(columns)?)
}

fn condition_expr(column: Expr, condition: &Condition) -> Expr {
    let literals = |values: &[ScalarValue]| values.iter().cloned().map(lit).collect::<Vec<_>>();
    match condition {
        Condition::In(values) => column.in_list(literals(values), false),
        Condition::NotIn(values) => column.in_list(literals(values), true),
        Condition::StartsWith(prefixes) => prefixes
            .iter()
            .map(|p| {
                cast(column.clone(), DataType::Utf8).like(lit(format!(
                    "{}%",
                    p.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )))
            })
            .reduce(Expr::or)
            .unwrap_or(lit(false)),
        Condition::GreaterThan(n) => cast(column, DataType::Float64).gt(lit(*n)),
        Condition::LessThan(n) => cast(column, DataType::Float64).lt(lit(*n)),
        Condition::EqualTo(v) => column.eq(lit(v.clone())),
        Condition::NotEqualTo(v) => column.not_eq(lit(v.clone())),
        Condition::IsPresent(true) => column.is_not_null(),
        Condition::IsPresent(false) => column.is_null(),
    }
}

/// A Contributor Insights rule body, as AWS defines it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Rule {
    /// Always `{"Name": "CloudWatchLogRule", "Version": 1}`.
    pub schema: RuleSchema,
    /// Log groups the rule reads (not used here: the lake is the source).
    #[serde(default)]
    pub log_group_names: Vec<String>,
    /// Cross-account log groups (not used here).
    #[serde(default, rename = "LogGroupARNs")]
    pub log_group_arns: Vec<String>,
    /// `CLF` (space-delimited, positions) or `JSON`.
    pub log_format: String,
    /// Names for 1-based positions of the space-delimited record (CLF).
    #[serde(default)]
    pub fields: HashMap<String, String>,
    /// Keys, value and filters.
    pub contribution: Contribution,
    /// `Count` or `Sum`.
    pub aggregate_on: String,
}

/// `Schema` of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RuleSchema {
    /// `CloudWatchLogRule`.
    pub name: String,
    /// `1`.
    pub version: u32,
}

/// `Contribution` of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Contribution {
    /// One to four fields whose combination identifies a contributor.
    pub keys: Vec<String>,
    /// The numeric field summed when `AggregateOn` is `Sum`.
    #[serde(default)]
    pub value_of: Option<String>,
    /// Up to four filters, all of which must match.
    #[serde(default)]
    pub filters: Vec<RuleFilter>,
}

/// One filter of a rule: `Match` and exactly one operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RuleFilter {
    /// The field tested.
    #[serde(rename = "Match")]
    pub field: String,
    /// Value is one of these.
    #[serde(default)]
    pub r#in: Option<Vec<serde_json::Value>>,
    /// Value is none of these.
    #[serde(default)]
    pub not_in: Option<Vec<serde_json::Value>>,
    /// Text starts with one of these.
    #[serde(default)]
    pub starts_with: Option<Vec<String>>,
    /// Greater than a number.
    #[serde(default)]
    pub greater_than: Option<f64>,
    /// Less than a number.
    #[serde(default)]
    pub less_than: Option<f64>,
    /// Equal to a number.
    #[serde(default)]
    pub equal_to: Option<serde_json::Value>,
    /// Not equal to a number.
    #[serde(default)]
    pub not_equal_to: Option<serde_json::Value>,
    /// Present or not.
    #[serde(default)]
    pub is_present: Option<bool>,
}

impl Rule {
    /// Reads a rule from its JSON text.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the JSON problem or the rule field that breaks AWS's limits.
    pub fn from_json(text: &str) -> Result<Self> {
        let rule: Rule = serde_json::from_str(text)
            .map_err(|e| Error::Invalid(format!("not a Contributor Insights rule: {e}")))?;
        if rule.schema.name != "CloudWatchLogRule" || rule.schema.version != 1 {
            return Err(Error::Invalid(
                "Schema must be {\"Name\": \"CloudWatchLogRule\", \"Version\": 1}".into(),
            ));
        }
        if !rule.log_group_names.is_empty() && !rule.log_group_arns.is_empty() {
            return Err(Error::Invalid(
                "give LogGroupNames or LogGroupARNs, not both".into(),
            ));
        }
        if !matches!(rule.log_format.as_str(), "CLF" | "JSON") {
            return Err(Error::Invalid(format!(
                "LogFormat must be CLF or JSON, not `{}`",
                rule.log_format
            )));
        }
        let keys = rule.contribution.keys.len();
        if !(1..=4).contains(&keys) {
            return Err(Error::Invalid(format!(
                "Contribution.Keys must have 1 to 4 fields, not {keys}"
            )));
        }
        if rule.contribution.filters.len() > 4 {
            return Err(Error::Invalid(
                "Contribution.Filters may have at most 4 filters".into(),
            ));
        }
        Ok(rule)
    }

    /// The lake column a rule field stands for: a `Fields` alias, a 1-based position of the
    /// default format, a JSON path `$.name`, or a field name.
    fn column(&self, field: &str) -> Result<String> {
        let position = self
            .fields
            .iter()
            .find(|(_, alias)| alias.as_str() == field)
            .map(|(p, _)| p.as_str())
            .or_else(|| field.bytes().all(|b| b.is_ascii_digit()).then_some(field));
        if let Some(position) = position {
            let index: usize = position.parse().map_err(|_| {
                Error::Invalid(format!("Fields key `{position}` is not a position"))
            })?;
            let format = LogFormat::default_format();
            return format
                .fields()
                .get(index.wrapping_sub(1))
                .map(|f| f.column.to_string())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "position {index} is outside the default format's {} fields",
                        format.fields().len()
                    ))
                });
        }
        let name = field.strip_prefix("$.").unwrap_or(field);
        crate::insights::column_for(name)
            .map(str::to_string)
            .ok_or_else(|| Error::Invalid(format!("rule field `{field}` is not a flow log field")))
    }

    /// The report this rule describes, showing `limit` contributors over `range`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a key, value or filter names no flow log field, or a filter has
    /// no operator or more than one.
    pub fn to_spec(&self, limit: usize, range: TimeRange, bucket: Option<i64>) -> Result<TopSpec> {
        let mut warnings = Vec::new();
        let mut keys = Vec::new();
        for k in &self.contribution.keys {
            keys.push((self.column(k)?, k.clone()));
        }
        let metric = match (self.aggregate_on.as_str(), &self.contribution.value_of) {
            ("Sum", Some(v)) => Metric::Sum(self.column(v)?),
            ("Sum", None) => {
                warnings.push(
                    "AggregateOn is Sum but the rule has no ValueOf: counting records".into(),
                );
                Metric::Records
            }
            ("Count", _) => Metric::Records,
            (other, _) => {
                return Err(Error::Invalid(format!(
                    "AggregateOn must be Count or Sum, not `{other}`"
                )));
            }
        };
        let mut conditions = Vec::new();
        for f in &self.contribution.filters {
            conditions.push((self.column(&f.field)?, f.condition()?));
        }
        Ok(TopSpec {
            keys,
            metric,
            limit,
            bucket,
            conditions,
            filter: None,
            range,
            warnings,
        })
    }
}

impl RuleFilter {
    fn condition(&self) -> Result<Condition> {
        let mut found = Vec::new();
        if let Some(v) = &self.r#in {
            found.push(Condition::In(scalars(v)?));
        }
        if let Some(v) = &self.not_in {
            found.push(Condition::NotIn(scalars(v)?));
        }
        if let Some(v) = &self.starts_with {
            found.push(Condition::StartsWith(v.clone()));
        }
        if let Some(v) = self.greater_than {
            found.push(Condition::GreaterThan(v));
        }
        if let Some(v) = self.less_than {
            found.push(Condition::LessThan(v));
        }
        if let Some(v) = &self.equal_to {
            found.push(Condition::EqualTo(scalar(v)?));
        }
        if let Some(v) = &self.not_equal_to {
            found.push(Condition::NotEqualTo(scalar(v)?));
        }
        if let Some(v) = self.is_present {
            found.push(Condition::IsPresent(v));
        }
        if found.len() != 1 {
            return Err(Error::Invalid(format!(
                "the filter on `{}` must have exactly one operator (In, NotIn, StartsWith, \
                 GreaterThan, LessThan, EqualTo, NotEqualTo, IsPresent)",
                self.field
            )));
        }
        Ok(found.remove(0))
    }
}

fn scalar(v: &serde_json::Value) -> Result<ScalarValue> {
    Ok(match v {
        serde_json::Value::String(s) => ScalarValue::from(s.as_str()),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        other => {
            return Err(Error::Invalid(format!(
                "filter values must be strings or numbers, not {other}"
            )));
        }
    })
}

fn scalars(values: &[serde_json::Value]) -> Result<Vec<ScalarValue>> {
    if values.is_empty() || values.len() > 10 {
        return Err(Error::Invalid("In/NotIn take 1 to 10 values".into()));
    }
    values.iter().map(scalar).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_example_rules_resolve() {
        let rule = Rule::from_json(r#"{"Schema":{"Name":"CloudWatchLogRule","Version":1},"LogGroupNames":["/aws/containerinsights/sample-cluster-name/flowlogs"],"LogFormat":"CLF","Fields":{"5":"destination address","7":"destination port","9":"packet count"},"Contribution":{"Keys":["destination address"],"ValueOf":"packet count","Filters":[{"Match":"destination port","EqualTo":443}]},"AggregateOn":"Sum"}"#).unwrap();
        let spec = rule.to_spec(10, TimeRange::default(), None).unwrap();
        assert_eq!(
            spec.keys,
            vec![("dstaddr".into(), "destination address".into())]
        );
        assert_eq!(spec.metric, Metric::Sum("packets".into()));
        assert_eq!(
            spec.conditions,
            vec![(
                "dstport".into(),
                Condition::EqualTo(ScalarValue::Int64(Some(443)))
            )]
        );
        let slip = Rule::from_json(r#"{"Schema":{"Name":"CloudWatchLogRule","Version":1},"LogGroupNames":["/aws/containerinsights/sample-cluster-name/flowlogs"],"LogFormat":"CLF","Fields":{"3":"interfaceID","4":"sourceAddress","8":"protocol","13":"action"},"Contribution":{"Keys":["interfaceID","sourceAddress"],"Filters":[{"Match":"protocol","EqualTo":6},{"Match":"action","In":["REJECT"]}]},"AggregateOn":"Sum"}"#).unwrap();
        let spec = slip.to_spec(10, TimeRange::default(), None).unwrap();
        assert_eq!(spec.metric, Metric::Records);
        assert_eq!(spec.warnings.len(), 1);
        assert_eq!(spec.keys[0].0, "interface_id");
        assert_eq!(spec.conditions[1].0, "action");
    }

    #[test]
    fn rule_limits() {
        let base = |contribution: &str| {
            format!(
                r#"{{"Schema":{{"Name":"CloudWatchLogRule","Version":1}},"LogFormat":"CLF","Contribution":{contribution},"AggregateOn":"Count"}}"#
            )
        };
        assert!(Rule::from_json(&base(r#"{"Keys":[]}"#)).is_err());
        assert!(Rule::from_json(&base(r#"{"Keys":["1","2","3","4","5"]}"#)).is_err());
        assert!(Rule::from_json(&base(r#"{"Keys":["4"],"Bogus":1}"#)).is_err());
        let two_ops = Rule::from_json(&base(
            r#"{"Keys":["4"],"Filters":[{"Match":"7","EqualTo":22,"In":[22]}]}"#,
        ))
        .unwrap();
        assert!(two_ops.to_spec(5, TimeRange::default(), None).is_err());
        let far = Rule::from_json(&base(r#"{"Keys":["15"]}"#)).unwrap();
        assert!(far.to_spec(5, TimeRange::default(), None).is_err());
    }

    #[test]
    fn keys_and_shorthands() {
        let keys = resolve_keys(&["pair".into(), "dstPort".into()]).unwrap();
        let columns: Vec<&str> = keys.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["srcaddr", "dstaddr", "dstport"]);
        assert!(resolve_keys(&["nope".into()]).is_err());
    }
}
