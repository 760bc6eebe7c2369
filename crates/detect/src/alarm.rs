//! Metric filters and alarms with CloudWatch's model.
//!
//! A **metric filter** turns matching flow log lines into a metric: each match adds its value
//! (a constant or a `$field` of the pattern) to the one-minute datapoint it falls in, by the
//! record's `start`. With a `default_value`, a minute that had log events but no match reports
//! that value; a minute without events reports nothing (missing data).
//!
//! An **alarm** watches one metric: a statistic (`Sum`, `SampleCount`, `Average`, `Minimum`,
//! `Maximum`) over `period` seconds, compared with `threshold`. At the end of every period the
//! alarm looks at its evaluation range — the last `evaluation_periods` + 2 periods — and:
//! - if the newest `evaluation_periods` datapoints are all present, counts the breaching ones;
//! - otherwise, if the range holds at least `evaluation_periods` datapoints, uses the newest
//!   `evaluation_periods` real datapoints (missing data is then not considered);
//! - otherwise fills the missing datapoints as `treat_missing_data` says: `breaching`,
//!   `notBreaching`, `ignore` (keep the current state unless the real datapoints decide it) or
//!   `missing` (INSUFFICIENT_DATA unless the real datapoints decide it).
//!
//! With `datapoints_to_alarm` = M of N = `evaluation_periods`: ALARM when at least M are
//! breaching; OK otherwise — for `missing`/`ignore`, only when too few datapoints could still
//! breach for ALARM. A change of state is a [`Transition`], which notifications announce.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{At, config_at};
use crate::error::{Error, Result};
use crate::filter::Pattern;
use flowscope_record::time::rfc3339;

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Within the threshold.
    #[serde(rename = "OK")]
    Ok,
    /// Breaching.
    #[serde(rename = "ALARM")]
    Alarm,
    /// Not enough data to tell.
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl State {
    /// AWS's name: `OK`, `ALARM`, `INSUFFICIENT_DATA`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// The statistic an alarm compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statistic {
    /// Sum of values.
    Sum,
    /// Number of values.
    SampleCount,
    /// Mean value.
    Average,
    /// Smallest value.
    Minimum,
    /// Largest value.
    Maximum,
}

/// How the statistic is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `>=`
    GreaterThanOrEqualToThreshold,
    /// `>`
    GreaterThanThreshold,
    /// `<`
    LessThanThreshold,
    /// `<=`
    LessThanOrEqualToThreshold,
}

/// How missing datapoints count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissing {
    /// Not considered; all missing gives INSUFFICIENT_DATA (AWS's default).
    #[default]
    Missing,
    /// The current state is kept.
    Ignore,
    /// Missing counts as breaching.
    Breaching,
    /// Missing counts as within the threshold.
    NotBreaching,
}

/// A metric filter (`aws logs put-metric-filter`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilter {
    /// The filter's name.
    pub filter_name: String,
    /// The filter pattern.
    pub filter_pattern: String,
    /// The metric it publishes.
    pub metric_name: String,
    /// The metric's namespace (default `flowscope`).
    #[serde(default = "default_namespace")]
    pub metric_namespace: String,
    /// `1`, another number, or `$field`.
    #[serde(default = "one")]
    pub metric_value: String,
    /// Reported for minutes with events but no match.
    #[serde(default)]
    pub default_value: Option<f64>,
}

fn default_namespace() -> String {
    "flowscope".into()
}

fn one() -> String {
    "1".into()
}

/// An alarm (`aws cloudwatch put-metric-alarm`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    /// The alarm's name.
    pub alarm_name: String,
    /// A description, sent with notifications.
    #[serde(default)]
    pub alarm_description: String,
    /// The metric watched.
    pub metric_name: String,
    /// Its namespace (default `flowscope`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The statistic.
    pub statistic: Statistic,
    /// Period in seconds (a multiple of 60).
    pub period: i64,
    /// The threshold.
    pub threshold: f64,
    /// The comparison.
    pub comparison_operator: Comparison,
    /// N: periods evaluated.
    pub evaluation_periods: usize,
    /// M: breaching datapoints that make ALARM (default N).
    #[serde(default)]
    pub datapoints_to_alarm: Option<usize>,
    /// Missing data treatment.
    #[serde(default)]
    pub treat_missing_data: TreatMissing,
    /// Notification targets on entering ALARM.
    #[serde(default)]
    pub alarm_actions: Vec<String>,
    /// Notification targets on entering OK.
    #[serde(default)]
    pub ok_actions: Vec<String>,
    /// Notification targets on entering INSUFFICIENT_DATA.
    #[serde(default)]
    pub insufficient_data_actions: Vec<String>,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationTarget {
    /// The name alarms refer to in their actions.
    pub name: String,
    /// POST the SNS-style message to this URL.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Run this program (first element) with these arguments, the message on standard input.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Write the message as one JSON line to standard output.
    #[serde(default)]
    pub stdout: bool,
}

/// An alarms file: metric filters, alarms and notification targets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmsFile {
    /// Metric filters.
    pub metric_filters: Vec<MetricFilter>,
    /// Alarms.
    pub alarms: Vec<AlarmConfig>,
    /// Notification targets; `stdout` is always available.
    pub notifications: Vec<NotificationTarget>,
}

impl AlarmsFile {
    /// Reads and checks an alarms file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the line and what is wrong.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses alarms-file text; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::Config`] for TOML or schema mistakes, bad patterns, unknown metrics or targets,
    /// impossible settings.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let f: Self =
            toml::from_str(text).map_err(|e| crate::config::toml_error(&e, text, file))?;
        let at = |path: &[At<'_>], message: String| config_at(text, file, path, message);
        for (i, m) in f.metric_filters.iter().enumerate() {
            let filter = |key| [At::Key("metric_filters"), At::Index(i), At::Value(key)];
            let pattern = Pattern::parse(&m.filter_pattern).map_err(|e| {
                at(
                    &filter("filter_pattern"),
                    format!("filter `{}`: {e}", m.filter_name),
                )
            })?;
            if let Some(field) = m.metric_value.strip_prefix('$') {
                if !pattern.names().contains(&field) {
                    return Err(at(
                        &filter("metric_value"),
                        format!(
                            "filter `{}`: metric_value `{}` names no field of the pattern",
                            m.filter_name, m.metric_value
                        ),
                    ));
                }
            } else if m.metric_value.parse::<f64>().is_err() {
                return Err(at(
                    &filter("metric_value"),
                    format!(
                        "filter `{}`: metric_value must be a number or $field",
                        m.filter_name
                    ),
                ));
            }
        }
        let twice = |table: &str, key: &str, names: Vec<&str>, what: &str| -> Result<()> {
            let mut seen = std::collections::HashSet::new();
            for (i, name) in names.into_iter().enumerate() {
                if !seen.insert(name) {
                    return Err(at(
                        &[At::Key(table), At::Index(i), At::Key(key)],
                        format!("{what} `{name}` is defined twice"),
                    ));
                }
            }
            Ok(())
        };
        twice(
            "metric_filters",
            "filter_name",
            f.metric_filters
                .iter()
                .map(|m| m.filter_name.as_str())
                .collect(),
            "metric filter",
        )?;
        twice(
            "alarms",
            "alarm_name",
            f.alarms.iter().map(|a| a.alarm_name.as_str()).collect(),
            "alarm",
        )?;
        twice(
            "notifications",
            "name",
            f.notifications.iter().map(|t| t.name.as_str()).collect(),
            "notification",
        )?;
        for (i, a) in f.alarms.iter().enumerate() {
            let here = |m: String| {
                at(
                    &[At::Key("alarms"), At::Index(i), At::Value("alarm_name")],
                    m,
                )
            };
            let at_key =
                |key: &str, m: String| at(&[At::Key("alarms"), At::Index(i), At::Key(key)], m);
            if !f
                .metric_filters
                .iter()
                .any(|m| m.metric_name == a.metric_name && m.metric_namespace == a.namespace)
            {
                return Err(here(format!(
                    "alarm `{}`: no metric filter publishes {}/{}",
                    a.alarm_name, a.namespace, a.metric_name
                )));
            }
            if a.period < 60 || a.period % 60 != 0 || a.period > 366 * 86_400 {
                return Err(at_key(
                    "period",
                    format!(
                        "alarm `{}`: period must be a multiple of 60 seconds, at most a year",
                        a.alarm_name
                    ),
                ));
            }
            if !a.threshold.is_finite() {
                return Err(at_key(
                    "threshold",
                    format!("alarm `{}`: threshold must be a number", a.alarm_name),
                ));
            }
            let n = a.evaluation_periods;
            let m = a.datapoints_to_alarm.unwrap_or(n);
            if n == 0 || m == 0 || m > n || n > 10_000 {
                let key = if a.datapoints_to_alarm.is_some() {
                    "datapoints_to_alarm"
                } else {
                    "evaluation_periods"
                };
                return Err(at_key(
                    key,
                    format!(
                        "alarm `{}`: need 1 <= datapoints_to_alarm ({m}) <= evaluation_periods ({n})",
                        a.alarm_name
                    ),
                ));
            }
            for action in a
                .alarm_actions
                .iter()
                .chain(&a.ok_actions)
                .chain(&a.insufficient_data_actions)
            {
                if action != "stdout" && !f.notifications.iter().any(|t| &t.name == action) {
                    return Err(here(format!(
                        "alarm `{}`: action `{action}` is not a notification target",
                        a.alarm_name
                    )));
                }
            }
        }
        for (i, t) in f.notifications.iter().enumerate() {
            let kinds = usize::from(t.webhook.is_some())
                + usize::from(t.command.is_some())
                + usize::from(t.stdout);
            if kinds != 1 {
                return Err(at(
                    &[At::Key("notifications"), At::Index(i), At::Value("name")],
                    format!(
                        "notification `{}` needs exactly one of webhook, command, stdout",
                        t.name
                    ),
                ));
            }
        }
        Ok(f)
    }
}

/// A period's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatSet {
    /// Sum.
    pub sum: f64,
    /// Number of values.
    pub count: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl StatSet {
    /// One value.
    pub fn one(v: f64) -> Self {
        Self {
            sum: v,
            count: 1.0,
            min: v,
            max: v,
        }
    }

    /// Adds another set.
    pub fn merge(&mut self, o: &StatSet) {
        self.sum += o.sum;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The statistic's value.
    pub fn get(&self, s: Statistic) -> f64 {
        match s {
            Statistic::Sum => self.sum,
            Statistic::SampleCount => self.count,
            Statistic::Average => self.sum / self.count.max(1.0),
            Statistic::Minimum => self.min,
            Statistic::Maximum => self.max,
        }
    }
}

/// A metric: one-minute datapoints by minute start (Unix seconds).
pub type Series = BTreeMap<i64, StatSet>;

/// A state change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The alarm.
    pub alarm_name: String,
    /// State before.
    pub old_state: State,
    /// State after.
    pub new_state: State,
    /// When (the end of the period evaluated), Unix seconds.
    pub time: i64,
    /// When, RFC 3339.
    pub timestamp: String,
    /// Why, in CloudWatch's words.
    pub reason: String,
}

fn statistic_name(s: Statistic) -> &'static str {
    match s {
        Statistic::Sum => "Sum",
        Statistic::SampleCount => "SampleCount",
        Statistic::Average => "Average",
        Statistic::Minimum => "Minimum",
        Statistic::Maximum => "Maximum",
    }
}

/// One alarm's evaluation state.
#[derive(Debug, Clone)]
pub struct Alarm {
    /// Its settings.
    pub config: AlarmConfig,
    /// Its current state.
    pub state: State,
}

impl Alarm {
    /// A new alarm, in INSUFFICIENT_DATA as CloudWatch creates them.
    pub fn new(config: AlarmConfig) -> Self {
        Self {
            config,
            state: State::InsufficientData,
        }
    }

    fn breaching(&self, v: f64) -> bool {
        let t = self.config.threshold;
        match self.config.comparison_operator {
            Comparison::GreaterThanOrEqualToThreshold => v >= t,
            Comparison::GreaterThanThreshold => v > t,
            Comparison::LessThanThreshold => v < t,
            Comparison::LessThanOrEqualToThreshold => v <= t,
        }
    }

    /// The state the evaluation range gives: `range` holds the period values oldest first
    /// (`None` = missing), its last element the newest period.
    pub fn decide(&self, range: &[Option<f64>]) -> State {
        let n = self.config.evaluation_periods;
        let m = self.config.datapoints_to_alarm.unwrap_or(n);
        let newest = &range[range.len().saturating_sub(n)..];
        let real: Vec<f64> = range.iter().filter_map(|v| *v).collect();
        let judge = |points: &[f64]| {
            let b = points.iter().filter(|v| self.breaching(**v)).count();
            if b >= m { State::Alarm } else { State::Ok }
        };
        if newest.len() == n && newest.iter().all(Option::is_some) {
            return judge(&newest.iter().filter_map(|v| *v).collect::<Vec<_>>());
        }
        if real.len() >= n {
            return judge(&real[real.len() - n..]);
        }
        let missing = n - real.len();
        let breaching = real.iter().filter(|v| self.breaching(**v)).count();
        let fine = real.len() - breaching;
        match self.config.treat_missing_data {
            TreatMissing::Breaching => {
                if breaching + missing >= m {
                    State::Alarm
                } else {
                    State::Ok
                }
            }
            TreatMissing::NotBreaching => {
                if breaching >= m {
                    State::Alarm
                } else {
                    State::Ok
                }
            }
            TreatMissing::Missing | TreatMissing::Ignore => {
                if breaching >= m {
                    State::Alarm
                } else if fine > n - m {
                    // Even if every missing datapoint were breaching, M could not be reached.
                    State::Ok
                } else if self.config.treat_missing_data == TreatMissing::Ignore {
                    self.state
                } else {
                    State::InsufficientData
                }
            }
        }
    }

    /// Evaluates at the end of the period ending at `time` with the evaluation range `range`;
    /// returns the transition if the state changed.
    pub fn step(&mut self, time: i64, range: &[Option<f64>]) -> Option<Transition> {
        let new = self.decide(range);
        if new == self.state {
            return None;
        }
        let n = self.config.evaluation_periods;
        let shown: Vec<String> = range[range.len().saturating_sub(n)..]
            .iter()
            .map(|v| v.map_or("missing".into(), |v| format!("{v}")))
            .collect();
        let reason = format!(
            "Threshold Crossed: {} datapoint(s) [{}] were evaluated against {} {} {} \
             ({} of {} to alarm, missing data treated as {:?}).",
            shown.len(),
            shown.join(", "),
            match self.config.comparison_operator {
                Comparison::GreaterThanOrEqualToThreshold => ">=",
                Comparison::GreaterThanThreshold => ">",
                Comparison::LessThanThreshold => "<",
                Comparison::LessThanOrEqualToThreshold => "<=",
            },
            self.config.threshold,
            statistic_name(self.config.statistic),
            self.config.datapoints_to_alarm.unwrap_or(n),
            n,
            self.config.treat_missing_data
        );
        let t = Transition {
            alarm_name: self.config.alarm_name.clone(),
            old_state: self.state,
            new_state: new,
            time,
            timestamp: rfc3339(time),
            reason,
        };
        self.state = new;
        Some(t)
    }

    /// Periods in an evaluation range.
    pub fn range_len(&self) -> usize {
        self.config.evaluation_periods + 2
    }

    /// The statistic of each period of `series` between `from` and `to` (period starts),
    /// `None` when the period has no datapoint.
    ///
    /// A run of empty periods longer than an evaluation range is shortened to one range after
    /// the datapoint before it and one before the datapoint after it: every window in between
    /// is all missing, like the last one kept, so it could change no state. The list is thus
    /// bounded by the datapoints, not by the time span (a record dated at the end of time
    /// would otherwise make quintillions of periods).
    pub fn periods(&self, series: &Series, from: i64, to: i64) -> Vec<(i64, Option<f64>)> {
        let p = self.config.period.max(1);
        let r = self.range_len() as i64;
        let mut out = Vec::new();
        let mut t = from.div_euclid(p) * p;
        let mut empty_run = 0;
        while t < to {
            let next = t.saturating_add(p);
            let mut set: Option<StatSet> = None;
            for (_, s) in series.range(t..next) {
                match &mut set {
                    Some(acc) => acc.merge(s),
                    None => set = Some(*s),
                }
            }
            out.push((t, set.map(|s| s.get(self.config.statistic))));
            if next == t {
                break;
            }
            empty_run = if set.is_some() { 0 } else { empty_run + 1 };
            t = next;
            if empty_run >= r {
                let datapoint = series.range(t..).next().map(|(&at, _)| at);
                let resume_before = datapoint
                    .filter(|&at| at < to)
                    .map_or(to, |at| at.div_euclid(p) * p);
                let resume = resume_before.saturating_sub((r - 1).saturating_mul(p));
                if resume > t {
                    t = resume.div_euclid(p) * p;
                }
                empty_run = 0;
            }
        }
        out
    }

    /// Evaluates every period of `series` from `from` to `to` in order, returning the
    /// transitions.
    pub fn evaluate_history(&mut self, series: &Series, from: i64, to: i64) -> Vec<Transition> {
        let values = self.periods(series, from, to);
        let r = self.range_len();
        let mut out = Vec::new();
        for i in 0..values.len() {
            let lo = (i + 1).saturating_sub(r);
            let window: Vec<Option<f64>> = values[lo..=i].iter().map(|v| v.1).collect();
            let end = values[i].0 + self.config.period;
            out.extend(self.step(end, &window));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(n: usize, m: usize, treat: TreatMissing) -> Alarm {
        Alarm::new(AlarmConfig {
            alarm_name: "a".into(),
            alarm_description: String::new(),
            metric_name: "m".into(),
            namespace: "flowscope".into(),
            statistic: Statistic::Sum,
            period: 60,
            threshold: 10.0,
            comparison_operator: Comparison::GreaterThanOrEqualToThreshold,
            evaluation_periods: n,
            datapoints_to_alarm: Some(m),
            treat_missing_data: treat,
            alarm_actions: vec![],
            ok_actions: vec![],
            insufficient_data_actions: vec![],
        })
    }

    /// `0` within, `X` breaching, `-` missing, oldest first.
    fn pts(s: &str) -> Vec<Option<f64>> {
        s.split_whitespace()
            .map(|c| match c {
                "0" => Some(0.0),
                "X" => Some(99.0),
                _ => None,
            })
            .collect()
    }

    use State::{Alarm as A, InsufficientData as I, Ok as O};
    use TreatMissing::{Breaching, Ignore, Missing, NotBreaching};

    #[test]
    fn missing_data_table_three_of_three() {
        // Evaluation range of 5 periods for an alarm with 3 evaluation periods.
        let cases: [(&str, [State; 4]); 7] = [
            // Enough real datapoints: treatment not considered.
            ("0 X X X 0", [O, O, O, O]),
            ("X X X X X", [A, A, A, A]),
            ("0 - X - X", [O, O, O, O]),
            ("X - X - X", [A, A, A, A]),
            // Too few: filled as the treatment says.
            ("- - - - 0", [O, O, O, O]),
            ("- - - - X", [I, A /* kept from the alarm state */, A, O]),
            ("- - - - -", [I, A, A, O]),
        ];
        for (points, expected) in cases {
            for (treat, want) in [Missing, Ignore, Breaching, NotBreaching]
                .iter()
                .zip(expected)
            {
                let mut a = alarm(3, 3, *treat);
                a.state = State::Alarm;
                assert_eq!(
                    a.decide(&pts(points)),
                    want,
                    "{points} treated as {treat:?}"
                );
            }
        }
    }

    /// Every period from `from` to `to`, none skipped: what `periods` shortens.
    fn every_period(a: &Alarm, series: &Series, from: i64, to: i64) -> Vec<Transition> {
        let mut a = a.clone();
        let p = a.config.period;
        let mut values = Vec::new();
        let mut t = from;
        while t < to {
            let v: Vec<f64> = series.range(t..t + p).map(|(_, s)| s.sum).collect();
            values.push((!v.is_empty()).then(|| v.iter().sum::<f64>()));
            t += p;
        }
        let r = a.range_len();
        let mut out = Vec::new();
        for i in 0..values.len() {
            let window = &values[(i + 1).saturating_sub(r)..=i];
            out.extend(a.step(from + (i as i64 + 1) * p, window));
        }
        out
    }

    #[test]
    fn long_gaps_are_shortened_without_changing_transitions() {
        for treat in [Missing, Ignore, Breaching, NotBreaching] {
            let a = alarm(2, 2, treat);
            let mut series = Series::new();
            for minute in [0, 1, 2, 40, 41, 90, 300] {
                series.insert(
                    minute * 60,
                    StatSet::one(if minute % 2 == 0 { 50.0 } else { 1.0 }),
                );
            }
            let want = every_period(&a, &series, 0, 400 * 60);
            let got = a.clone().evaluate_history(&series, 0, 400 * 60);
            let pairs = |t: &[Transition]| -> Vec<(i64, State)> {
                t.iter().map(|t| (t.time, t.new_state)).collect()
            };
            assert_eq!(pairs(&got), pairs(&want), "{treat:?}");
            assert!(a.periods(&series, 0, 400 * 60).len() < 60);
        }
        // A datapoint at the end of time: bounded, and no overflow.
        let a = alarm(1, 1, Missing);
        let mut series = Series::new();
        series.insert(0, StatSet::one(1.0));
        series.insert(i64::MAX - 5, StatSet::one(1.0));
        let values = a.periods(&series, 0, i64::MAX);
        assert!(values.len() < 20, "{} periods", values.len());
    }

    #[test]
    fn m_of_n_and_transitions() {
        let a = alarm(5, 2, Missing);
        assert_eq!(a.decide(&pts("0 0 X 0 0 X 0")), A);
        assert_eq!(a.decide(&pts("0 0 X 0 0 0 0")), O);
        // 2 of 5 with one real breaching point and four missing: could still reach 2 -> no OK.
        assert_eq!(a.decide(&pts("- - - - X")), I);
        assert_eq!(a.decide(&pts("- 0 0 0 0")), O);
        let mut a = alarm(1, 1, Missing);
        let mut series = Series::new();
        for (minute, v) in [(0, 3.0), (1, 12.0), (2, 12.0), (3, 1.0)] {
            series.insert(minute * 60, StatSet::one(v));
        }
        let t = a.evaluate_history(&series, 0, 8 * 60);
        let states: Vec<(i64, State)> = t.iter().map(|t| (t.time, t.new_state)).collect();
        // Minutes 4 and 5 are missing but the range (3 periods) still holds minute 3's real
        // datapoint; at minute 6 the whole range is missing.
        assert_eq!(states, vec![(60, O), (120, A), (240, O), (420, I)]);
        assert_eq!(t[1].old_state, O);
        assert!(t[1].reason.contains("[12]"), "{}", t[1].reason);
    }

    #[test]
    fn alarms_file_checks() {
        let good = r#"
[[metric_filters]]
filter_name = "rejected-ssh"
filter_pattern = '[version, account, eni, source, destination, srcport, destport="22", protocol="6", packets, bytes, windowstart, windowend, action="REJECT", flowlogstatus]'
metric_name = "RejectedSSH"
metric_value = "1"
default_value = 0

[[alarms]]
alarm_name = "ssh-rejects"
metric_name = "RejectedSSH"
statistic = "Sum"
period = 3600
threshold = 10
comparison_operator = "GreaterThanOrEqualToThreshold"
evaluation_periods = 1
alarm_actions = ["stdout", "ops"]

[[notifications]]
name = "ops"
webhook = "http://127.0.0.1:9/hook"
"#;
        let f = AlarmsFile::parse(good, "a.toml").unwrap();
        assert_eq!(f.alarms[0].treat_missing_data, TreatMissing::Missing);
        let bad = good.replace("\"ops\"]", "\"pager\"]");
        let e = AlarmsFile::parse(&bad, "a.toml").unwrap_err().to_string();
        assert!(
            e.contains("action `pager` is not a notification target"),
            "{e}"
        );
        let bad = good.replace("period = 3600", "period = 90");
        let e = AlarmsFile::parse(&bad, "a.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml:13:1: "),
            "located at the period line: {e}"
        );
        assert!(e.contains("multiple of 60"), "{e}");
        // Twice the same alarm name: refused at the second.
        let alarm =
            &good[good.find("[[alarms]]").unwrap()..good.find("[[notifications]]").unwrap()];
        let twice = good.replace("[[notifications]]", &format!("{alarm}[[notifications]]"));
        let e = AlarmsFile::parse(&twice, "a.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml:20:1: alarm `ssh-rejects` is defined twice"),
            "{e}"
        );
        let bad = good.replace("threshold = 10", "threshold = nan");
        let e = AlarmsFile::parse(&bad, "a.toml").unwrap_err().to_string();
        assert!(e.starts_with("a.toml:14:1: "), "{e}");
        let bad = good.replace("metric_value = \"1\"", "metric_value = \"$bites\"");
        assert!(
            AlarmsFile::parse(&bad, "a.toml")
                .unwrap_err()
                .to_string()
                .contains("names no field")
        );
        let bad = good.replace(
            "evaluation_periods = 1",
            "evaluation_periods = 1\ndatapoints_to_alarm = 2",
        );
        assert!(AlarmsFile::parse(&bad, "a.toml").is_err());
        let bad = good.replace("statistic = \"Sum\"", "statistic = \"Total\"");
        let e = AlarmsFile::parse(&bad, "a.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml:12:13: unknown variant `Total`"),
            "{e}"
        );
    }
}
