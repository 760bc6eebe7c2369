//! Alarms evaluated as data arrives.
//!
//! The metric filters see every record once: the lake's records at start-up, then each
//! delivery as it is taken. Time is the records' time: a period is evaluated once a record
//! from a later period has arrived (flow logs arrive minutes after the traffic, so the clock on
//! the wall says nothing about which periods are complete). Each evaluation runs the alarm's
//! model over its evaluation range, exactly as `flowscope alarms` does over history.

use std::sync::{Arc, Mutex};

use flowscope_detect::Accumulator;
use flowscope_detect::Notifier;
use flowscope_detect::{Alarm, AlarmsFile, Transition};
use serde_json::{Value, json};

/// Transitions kept per alarm for the API.
const HISTORY: usize = 50;

struct Live {
    alarm: Alarm,
    /// The first period (start) not evaluated yet.
    next: Option<i64>,
    history: Vec<Transition>,
}

/// The live alarms of one alarms file.
pub struct LiveAlarms {
    alarms: Mutex<Vec<Live>>,
    metrics: Arc<Mutex<Accumulator>>,
    notifier: Arc<Notifier>,
    notify: bool,
}

impl LiveAlarms {
    /// Alarms of `file` over the metrics in `metrics` (which the intake feeds); `notify` sends
    /// notifications on transitions.
    pub fn new(file: &AlarmsFile, metrics: Arc<Mutex<Accumulator>>, notify: bool) -> Self {
        Self {
            alarms: Mutex::new(
                file.alarms
                    .iter()
                    .map(|c| Live {
                        alarm: Alarm::new(c.clone()),
                        next: None,
                        history: Vec::new(),
                    })
                    .collect(),
            ),
            metrics,
            notifier: Arc::new(Notifier::new(file.notifications.clone())),
            notify,
        }
    }

    /// Evaluates every period completed since the last call; sends the notifications (in the
    /// background, when enabled) and returns the transitions.
    pub fn evaluate(&self) -> Vec<Transition> {
        self.evaluate_with(self.notify)
    }

    /// Evaluates the history already in the lake when the server starts: states are set,
    /// nothing is sent (a restart must not repeat old notifications).
    pub fn catch_up(&self) -> Vec<Transition> {
        self.evaluate_with(false)
    }

    fn evaluate_with(&self, notify: bool) -> Vec<Transition> {
        let metrics = self.metrics.lock().expect("metrics lock");
        let Some((lo, hi)) = metrics.metrics.span else {
            return Vec::new();
        };
        let mut alarms = self.alarms.lock().expect("alarms lock");
        let empty = Default::default();
        let mut out = Vec::new();
        for live in alarms.iter_mut() {
            let config = &live.alarm.config;
            let p = config.period.max(60);
            let series = metrics
                .metrics
                .series
                .get(&(config.namespace.clone(), config.metric_name.clone()))
                .unwrap_or(&empty);
            let first = lo.div_euclid(p) * p;
            // Periods before the one the newest record is in are complete.
            let to = hi.div_euclid(p) * p;
            let values = live.alarm.periods(series, first, to);
            let r = live.alarm.range_len();
            let from = live.next.unwrap_or(first);
            for i in 0..values.len() {
                if values[i].0 < from {
                    continue;
                }
                let window: Vec<Option<f64>> = values[(i + 1).saturating_sub(r)..=i]
                    .iter()
                    .map(|v| v.1)
                    .collect();
                let end = values[i].0 + p;
                if let Some(t) = live.alarm.step(end, &window) {
                    live.history.push(t.clone());
                    let excess = live.history.len().saturating_sub(HISTORY);
                    live.history.drain(..excess);
                    if notify {
                        let (notifier, config, t) = (
                            Arc::clone(&self.notifier),
                            live.alarm.config.clone(),
                            t.clone(),
                        );
                        tokio::spawn(async move {
                            let (lines, failures) = notifier.notify(&config, &t).await;
                            for l in lines {
                                println!("{l}");
                            }
                            for f in failures {
                                tracing::warn!(alarm = %config.alarm_name, error = %f, "notification failed");
                            }
                        });
                    }
                    out.push(t);
                }
            }
            live.next = Some(live.next.unwrap_or(first).max(to));
        }
        out
    }

    /// Every alarm's state, settings and recent transitions, for `/api/alarms`.
    pub fn snapshot(&self) -> Value {
        let alarms = self.alarms.lock().expect("alarms lock");
        let metrics = self.metrics.lock().expect("metrics lock");
        let list: Vec<Value> = alarms
            .iter()
            .map(|l| {
                let c = &l.alarm.config;
                let series = metrics
                    .metrics
                    .series
                    .get(&(c.namespace.clone(), c.metric_name.clone()));
                let recent: Vec<Value> = series
                    .map(|s| {
                        s.iter()
                            .rev()
                            .take(120)
                            .rev()
                            .map(|(t, v)| json!([t, v.get(c.statistic)]))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "alarm_name": c.alarm_name,
                    "description": c.alarm_description,
                    "state": l.alarm.state,
                    "metric": format!("{}/{}", c.namespace, c.metric_name),
                    "statistic": c.statistic,
                    "period": c.period,
                    "threshold": c.threshold,
                    "comparison_operator": c.comparison_operator,
                    "evaluation_periods": c.evaluation_periods,
                    "datapoints_to_alarm": c.datapoints_to_alarm.unwrap_or(c.evaluation_periods),
                    "treat_missing_data": c.treat_missing_data,
                    "evaluated_until": l.next,
                    "last_transition": l.history.last(),
                    "transitions": l.history,
                    "datapoints": recent,
                })
            })
            .collect();
        json!({ "alarms": list })
    }
}
