//! What a detection reports: a [`Finding`] with its severity, ATT&CK technique, a plain-language
//! summary and the evidence behind it.

use std::sync::LazyLock;

use flowscope_record::LogFormat;
use serde::{Deserialize, Serialize};

/// How much a finding matters, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; not an attack by itself (an exposed port used by one address).
    Low,
    /// Suspicious: reconnaissance, rejected attempts, odd regularity.
    Medium,
    /// Likely an attack in progress or a compromise (accepted brute force, exfiltration).
    High,
    /// A compromise with a known-bad party (accepted traffic with a threat-intel address).
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            other => {
                return Err(format!(
                    "unknown severity `{other}`: use low, medium, high or critical"
                ));
            }
        })
    }
}

/// A MITRE ATT&CK technique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technique {
    /// The technique id, e.g. `T1046`.
    pub id: String,
    /// Its name, e.g. `Network Service Discovery`.
    pub name: String,
}

impl Technique {
    /// A technique from its id and name.
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// Why a finding was raised: the numbers, the records and the query that shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// First record start, Unix seconds.
    pub start: i64,
    /// Last record end, Unix seconds.
    pub end: i64,
    /// Detection-specific figures (distinct ports, attempts, ratio to baseline, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub figures: serde_json::Map<String, serde_json::Value>,
    /// The source addresses (all of them when there are several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The destination addresses (at most 20 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Destination ports (at most 20 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// The interfaces whose flow logs show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// A few of the records, in the default flow log format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<String>,
    /// SQL that shows the records behind the finding (`flowscope sql --lake DIR "..."`).
    pub sql: String,
}

/// One finding of one detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The detection's stable id, e.g. `vertical_port_scan`.
    pub detection: String,
    /// How much it matters.
    pub severity: Severity,
    /// The ATT&CK technique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technique: Option<Technique>,
    /// The source address, or null when several sources are involved.
    pub src: Option<String>,
    /// The destination address, or null when several.
    pub dst: Option<String>,
    /// The destination port, or null when several.
    pub dst_port: Option<u16>,
    /// The first record's start (UTC, RFC 3339).
    pub first_seen: String,
    /// The last record's end (UTC, RFC 3339).
    pub last_seen: String,
    /// Flow log records involved.
    pub records: u64,
    /// Bytes in those records.
    pub bytes: u64,
    /// What happened, in a sentence.
    pub summary: String,
    /// The evidence.
    pub evidence: Evidence,
}

impl Finding {
    /// Orders findings: most severe first, then earliest, then by detection and addresses.
    pub fn sort(findings: &mut [Finding]) {
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.evidence.start.cmp(&b.evidence.start))
                .then_with(|| a.detection.cmp(&b.detection))
                .then_with(|| a.src.cmp(&b.src))
                .then_with(|| a.dst.cmp(&b.dst))
        });
    }
}

/// The default flow log format's columns as a SQL select list, in order: what evidence samples
/// and metric filters read.
pub fn default_columns() -> &'static str {
    static COLUMNS: LazyLock<String> = LazyLock::new(|| LogFormat::default_format().select_list());
    &COLUMNS
}

/// The records behind a finding, in time order.
pub fn records_sql(condition: &str, first: i64, last: i64) -> String {
    format!(
        "SELECT {} FROM flows WHERE {condition} AND start >= {first} \
         AND start <= {last} ORDER BY start, interface_id",
        default_columns()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities() {
        assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
        assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
        assert!("severe".parse::<Severity>().is_err());
    }
}
