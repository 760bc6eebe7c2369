//! flowscope-detect: what flow logs are turned on for — detections of scanning, brute force,
//! exfiltration, beaconing and known-bad addresses; the SG-versus-NACL reasoning behind
//! rejected connections; CloudWatch-style metric filters and alarms with notifications.
//!
//! Everything reads the lake through [`flowscope_query::Engine`]: the built-in detections share
//! one pass over its columns ([`scan`]), and each finding carries the SQL that shows its records.

pub mod alarm;
pub mod config;
pub mod detect;
pub mod diagnose;
pub mod error;
pub mod filter;
pub mod finding;
pub mod intel;
pub mod metrics;
pub mod notify;
pub mod rows;
pub mod scan;

pub use config::{CustomRule, DetectConfig, Thresholds};
pub use detect::{Detector, Report};
pub use diagnose::{Cause, DiagnoseFilter, Diagnosis, diagnose};
pub use error::{Error, Result};
pub use finding::{Evidence, Finding, Severity};
pub use intel::ThreatIntel;
