//! flowscope-detect: what flow logs are turned on for — detections of scanning, brute force,
//! exfiltration, beaconing and known-bad addresses; the SG-versus-NACL reasoning behind
//! rejected connections; CloudWatch-style metric filters and alarms with notifications.
//!
//! Everything reads the lake through [`flowscope_query::Engine`]. Where things live:
//! - a **detection** is one module of `builtin/` (named by [`BuiltIn`]); it says which kinds of
//!   records it reads and builds its findings with typed figures;
//! - the **shared pass** (`scan/`) reads the lake's columns once and keeps those kinds of
//!   records, knowing no detection by name;
//! - the [`Detector`] runs the enabled detections over one pass, then the custom rules, folds
//!   NAT gateways into the instances behind them and adds evidence samples;
//! - [`diagnose`] explains rejected connections; [`Accumulator`] and [`Alarm`] are the metric
//!   filters and alarms.

mod alarm;
mod builtin;
mod config;
mod detect;
mod diagnose;
mod error;
mod filter;
mod finding;
mod intel;
mod metrics;
mod notify;
mod rows;
mod scan;
mod words;

pub use alarm::{
    Alarm, AlarmConfig, AlarmsFile, Comparison, MetricFilter, NotificationTarget, Series, StatSet,
    State, Statistic, Transition, TreatMissing,
};
pub use builtin::BuiltIn;
pub use config::{At, CustomRule, DetectConfig, Language, Thresholds, config_at, toml_error};
pub use detect::{Detector, MAX_SAMPLED, Report};
pub use diagnose::{Cause, DiagnoseFilter, Diagnosis, diagnose};
pub use error::{Error, Result};
pub use filter::{Condition, FieldPattern, Op, Pattern};
pub use finding::{Evidence, Finding, Severity, Technique, default_columns, records_sql};
pub use intel::{Entry, Loaded, ThreatIntel};
pub use metrics::{Accumulator, Metrics, compute as compute_metrics};
pub use notify::Notifier;
pub use scan::{INCREMENTAL_BUDGET, Incremental, Reread, SLACK};
pub use words::{SENSITIVE_PORTS, human_bytes, human_duration, service_name};
