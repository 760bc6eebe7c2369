//! A detection run over one lake: the built-in detections ([`crate::builtin`]) over one shared
//! pass ([`crate::scan`]), then the custom rules, then evidence samples.
//!
//! Traffic leaving through a NAT gateway shows twice: from the instance, and from the gateway's
//! own address at the gateway's interface. A finding whose source turns out to be a NAT gateway
//! (other addresses send it the same destination port at the same time) is folded into the
//! instance's finding, or names the instance when there is none.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use flowscope_query::{Engine, TimeRange};
use flowscope_record::LogFormat;
use futures::StreamExt;
use serde_json::json;

use crate::builtin::{BuiltIn, Context};
use crate::config::{CustomRule, DetectConfig, Language, Thresholds};
use crate::error::{Error, Result};
#[cfg(test)]
use crate::finding::default_columns;
use crate::finding::{Evidence, Finding, Technique};
use crate::intel::ThreatIntel;
use crate::rows::{self, Row, float, quote, text};
use crate::scan::{self, Incremental, Reread, Wants};
use flowscope_record::time::rfc3339;

/// Findings that get sample records (the most severe first).
pub const MAX_SAMPLED: usize = 25;

/// What a run found, and how long each step took.
#[derive(Debug, Default)]
pub struct Report {
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Time per step (detection id or step name).
    pub timings: Vec<(String, Duration)>,
    /// Things the user should know (an empty lake, a rule whose columns do not fit).
    pub warnings: Vec<String>,
    /// What an incremental run ([`Detector::run_incremental`]) read and kept.
    pub reread: Option<Reread>,
}

/// Runs detections over one lake.
pub struct Detector<'a> {
    engine: &'a Engine,
    config: DetectConfig,
    intel: ThreatIntel,
    range: TimeRange,
}

impl<'a> Detector<'a> {
    /// A detector over `engine`'s lake for records starting in `range`.
    pub fn new(
        engine: &'a Engine,
        config: DetectConfig,
        intel: ThreatIntel,
        range: TimeRange,
    ) -> Self {
        Self {
            engine,
            config,
            intel,
            range,
        }
    }

    fn enabled(&self, id: &str) -> bool {
        !self.config.disable.iter().any(|d| d == id)
    }

    fn t(&self) -> &Thresholds {
        &self.config.thresholds
    }

    /// Runs every enabled detection and custom rule.
    ///
    /// # Errors
    /// [`Error::Query`] when a query fails (a custom rule's error names the rule).
    pub async fn run(&self) -> Result<Report> {
        self.run_with(None, &BTreeSet::new()).await
    }

    /// Runs like [`run`](Self::run) over the whole lake, reading only the hours that changed
    /// since the last run with `kept` ([`Incremental`]) and the hours in `unsettled` (start of
    /// each hour, Unix seconds: those with records the lake's files do not hold yet, such as a
    /// server's buffer). The findings are those of [`run`](Self::run). A detector over a time
    /// range reads its range, as `run` does, and leaves `kept` alone.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_incremental(
        &self,
        kept: &mut Incremental,
        unsettled: &BTreeSet<i64>,
    ) -> Result<Report> {
        self.run_with(Some(kept), unsettled).await
    }

    async fn run_with(
        &self,
        kept: Option<&mut Incremental>,
        unsettled: &BTreeSet<i64>,
    ) -> Result<Report> {
        let mut report = Report::default();
        let clock = Instant::now();
        // The enabled detections, and what each reads from the pass (threat intel without a
        // list, or exposed ports without sensitive ports, read nothing and find nothing).
        let (detections, wants): (Vec<BuiltIn>, Vec<Wants>) = BuiltIn::ALL
            .into_iter()
            .filter(|b| self.enabled(b.id()))
            .map(|b| (b, b.detection().wants(self.t(), &self.intel)))
            .unzip();
        let all = Wants::union(&wants);
        let whole = self.range.start.is_none() && self.range.end.is_none();
        let mut pass = match kept {
            Some(kept) if whole => {
                let (pass, reread) =
                    scan::gather_incremental(self.engine, &self.intel, &all, kept, unsettled)
                        .await?;
                report.reread = Some(reread);
                pass
            }
            _ => scan::gather(self.engine, self.range, &self.intel, &all).await?,
        };
        let n = pass.records;
        let (lo, hi) = pass.span.unwrap_or_default();
        report.timings.push(("scan".into(), clock.elapsed()));
        if n == 0 {
            report
                .warnings
                .push("no flow log records with log-status OK in the time range".into());
        }
        let cx = Context {
            engine: self.engine,
            range: self.range,
            thresholds: self.t(),
            span: (
                self.range.start.unwrap_or(lo),
                self.range.end.unwrap_or(hi.saturating_add(1)),
            ),
        };
        let mut found = Vec::new();
        if n > 0 {
            for (i, id) in detections.iter().enumerate() {
                let clock = Instant::now();
                let detection = id.detection();
                let mut f = detection.find(&pass, &cx).await?;
                if detection.behind_nat() {
                    f = self.fold_nat(f).await?;
                }
                report.timings.push((id.id().into(), clock.elapsed()));
                found.extend(f);
                // What no detection left reads is freed.
                pass.keep_only(&Wants::union(&wants[i + 1..]));
            }
        }
        drop(pass);
        for rule in &self.config.rules {
            let clock = Instant::now();
            let f = self
                .custom(rule, &mut report.warnings)
                .await
                .map_err(|e| match e {
                    Error::Query(q) => Error::Invalid(format!("rule `{}`: {q}", rule.id)),
                    other => other,
                })?;
            report.timings.push((rule.id.clone(), clock.elapsed()));
            found.extend(f);
        }
        Finding::sort(&mut found);
        let clock = Instant::now();
        self.add_samples(&mut found).await?;
        report.timings.push(("samples".into(), clock.elapsed()));
        report.findings = found;
        Ok(report)
    }

    /// Folds findings whose source is a NAT gateway into the instances behind it.
    async fn fold_nat(&self, findings: Vec<Finding>) -> Result<Vec<Finding>> {
        // Per finding, the other sources that sent the same destination port at its
        // interfaces at the same time: two queries at a time, answers in finding order.
        let queries: Vec<Option<String>> = findings
            .iter()
            .map(|f| {
                let (Some(src), Some(port)) = (&f.src, f.dst_port) else {
                    return None;
                };
                if f.evidence.interfaces.is_empty() {
                    return None;
                }
                let enis = f
                    .evidence
                    .interfaces
                    .iter()
                    .map(|i| quote(i))
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(format!(
                    "SELECT srcaddr, count(*) AS n FROM flows WHERE interface_id IN ({enis}) \
                     AND dstaddr = {} AND dstport = {port} AND srcaddr <> {} AND start >= {} \
                     AND start <= {} GROUP BY srcaddr ORDER BY n DESC",
                    quote(src),
                    quote(src),
                    f.evidence.start - 120,
                    f.evidence.end + 120
                ))
            })
            .collect();
        let behind: Vec<Vec<String>> = futures::stream::iter(queries)
            .map(|sql| async move {
                let Some(sql) = sql else {
                    return Ok(Vec::new());
                };
                let rows = rows::query(self.engine, &sql).await?;
                Ok::<_, Error>(rows.iter().filter_map(|r| text(r, "srcaddr")).collect())
            })
            .buffered(2)
            .collect::<Vec<Result<Vec<String>>>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut out: Vec<Finding> = Vec::new();
        let mut folded: Vec<(usize, String, String)> = Vec::new();
        for (i, f) in findings.iter().enumerate() {
            if behind[i].is_empty() {
                continue;
            }
            let nat = f.src.clone().unwrap_or_default();
            let twin = findings.iter().position(|g| {
                g.dst == f.dst
                    && g.dst_port == f.dst_port
                    && g.src.as_ref().is_some_and(|s| behind[i].contains(s))
            });
            match twin {
                Some(j) => folded.push((j, nat, f.evidence.interfaces.join(", "))),
                None => {
                    let mut f = f.clone();
                    f.summary = format!(
                        "{} (through NAT gateway {nat} for {})",
                        f.summary,
                        behind[i].join(", ")
                    );
                    f.evidence
                        .figures
                        .insert("nat_gateway".into(), json!(nat.clone()));
                    f.evidence.sources = behind[i].clone();
                    f.src = (behind[i].len() == 1).then(|| behind[i][0].clone());
                    out.push(f);
                }
            }
        }
        for (i, f) in findings.into_iter().enumerate() {
            if !behind[i].is_empty() {
                continue;
            }
            let mut f = f;
            for (j, nat, enis) in &folded {
                if *j == i {
                    f.summary = format!("{}; leaves through NAT gateway {nat}", f.summary);
                    f.evidence
                        .figures
                        .insert("nat_gateway".into(), json!(nat.clone()));
                    for e in enis.split(", ") {
                        if !f.evidence.interfaces.iter().any(|x| x == e) {
                            f.evidence.interfaces.push(e.to_string());
                        }
                    }
                }
            }
            out.push(f);
        }
        Ok(out)
    }

    async fn custom(&self, rule: &CustomRule, warnings: &mut Vec<String>) -> Result<Vec<Finding>> {
        let batches = match rule.language {
            Language::Sql => self.engine.sql(&rule.query).await?.collect().await?,
            Language::Insights => {
                let plan = self.engine.insights(&rule.query, self.range).await?;
                plan.frame.collect().await?
            }
        };
        let rows = rows::to_rows(&batches)?;
        let mut out = Vec::new();
        for r in rows {
            let passes = rule.thresholds.iter().all(|(col, min)| {
                if !r.contains_key(col) {
                    return false;
                }
                float(&r, col) >= *min
            });
            if let Some(missing) = rule.thresholds.keys().find(|c| !r.contains_key(*c)) {
                let w = format!(
                    "rule `{}`: its query has no column `{missing}` named in thresholds",
                    rule.id
                );
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            if !passes {
                continue;
            }
            let pick = |names: &[&str]| names.iter().find_map(|n| text(&r, n));
            let first = pick(&["first_seen", "start"])
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let last = pick(&["last_seen", "end"])
                .and_then(|s| s.parse().ok())
                .unwrap_or(first);
            let summary = fill(&rule.summary, &r);
            out.push(Finding {
                detection: rule.id.clone(),
                severity: rule.severity,
                technique: rule.technique.as_ref().map(|t| Technique {
                    id: t.clone(),
                    name: String::new(),
                }),
                src: pick(&["srcaddr", "src"]),
                dst: pick(&["dstaddr", "dst"]),
                dst_port: pick(&["dstport", "dst_port"]).and_then(|p| p.parse().ok()),
                first_seen: rfc3339(first),
                last_seen: rfc3339(last),
                records: pick(&["records"]).and_then(|v| v.parse().ok()).unwrap_or(0),
                bytes: pick(&["bytes"]).and_then(|v| v.parse().ok()).unwrap_or(0),
                summary,
                evidence: Evidence {
                    start: first,
                    end: last,
                    figures: r.clone(),
                    sql: rule.query.clone(),
                    ..Evidence::default()
                },
            });
        }
        Ok(out)
    }

    async fn add_samples(&self, findings: &mut [Finding]) -> Result<()> {
        let n = self.t().samples;
        if n == 0 {
            return Ok(());
        }
        // The most severe findings get samples, a few at a time. A finding can span a day of
        // records while a sample is its first few: each query first reads only the first hour
        // of the finding (the lake is partitioned by hour) and the rest only when that hour
        // holds too few.
        let jobs: Vec<(usize, String, i64, i64)> = findings
            .iter()
            .enumerate()
            .take(MAX_SAMPLED)
            .filter(|(_, f)| BuiltIn::from_id(&f.detection).is_some())
            .map(|(i, f)| (i, f.evidence.sql.clone(), f.evidence.start, f.evidence.end))
            .collect();
        let mut answers = futures::stream::iter(jobs)
            .map(|(i, sql, first, last)| async move {
                let split = first.saturating_add(3600);
                let part = |filter: String, limit: usize| {
                    format!(
                        "SELECT * FROM ({sql}) AS records WHERE {filter} \
                         ORDER BY start, interface_id LIMIT {limit}"
                    )
                };
                let mut rows =
                    rows::query(self.engine, &part(format!("start < {split}"), n)).await?;
                if rows.len() < n && last >= split {
                    let more = part(format!("start >= {split}"), n - rows.len());
                    rows.extend(rows::query(self.engine, &more).await?);
                }
                Ok::<_, Error>((i, rows))
            })
            .buffer_unordered(2);
        while let Some(answer) = answers.next().await {
            let (i, rows) = answer?;
            findings[i].evidence.sample = rows.iter().map(default_line).collect();
        }
        Ok(())
    }
}

/// A row of the default columns as a flow log line (`-` for null).
fn default_line(row: &Row) -> String {
    LogFormat::default_format()
        .fields()
        .iter()
        .map(|f| text(row, f.column).unwrap_or_else(|| "-".into()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces `{column}` in a template with the row's values.
fn fill(template: &str, row: &Row) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match text(row, name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn templates_fill_known_columns_only() {
        let r = json!({"srcaddr": "10.0.0.1", "records": 12});
        let r = r.as_object().unwrap();
        assert_eq!(
            fill("{srcaddr} x{records} {nope} {", r),
            "10.0.0.1 x12 {nope} {"
        );
    }

    #[test]
    fn samples_show_the_default_format() {
        assert_eq!(
            default_columns(),
            "version, account_id, interface_id, srcaddr, dstaddr, srcport, dstport, protocol, \
             packets, bytes, start, \"end\", action, log_status"
        );
        let r = json!({"version": 2, "srcaddr": "10.0.0.1", "end": 9});
        let line = default_line(r.as_object().unwrap());
        assert_eq!(line, "2 - - 10.0.0.1 - - - - - - - 9 - -");
    }
}
