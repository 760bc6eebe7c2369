//! Detection settings: the thresholds of the built-in detections and custom rules, read from a
//! TOML rules file (`flowscope detect --rules FILE`). Every key is optional; unknown keys are
//! refused with their position. Defaults are documented on each field and in `docs/detect.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::finding::Severity;

/// Thresholds of the built-in detections.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Vertical port scan: distinct destination ports one source was refused on, at one
    /// destination (default 50).
    pub vertical_scan_ports: u64,
    /// Horizontal sweep: distinct destinations one source was refused by, on one port
    /// (default 20).
    pub horizontal_sweep_hosts: u64,
    /// Brute force: connection attempts (distinct source ports) to SSH or RDP from one source
    /// within one window (default 10).
    pub brute_force_attempts: u64,
    /// Brute force window, seconds (default 600).
    pub brute_force_window: i64,
    /// Exfiltration: bytes from one internal source to one external address in one window
    /// (default 50,000,000).
    pub exfiltration_bytes: u64,
    /// Exfiltration: how many times the source's median outbound volume per window that is
    /// (default 10).
    pub exfiltration_ratio: f64,
    /// Exfiltration window, seconds (default 600).
    pub exfiltration_window: i64,
    /// Beaconing: fewest connections (default 8).
    pub beacon_connections: u64,
    /// Beaconing: how far an interval may be from the median interval and still keep the
    /// rhythm, as a fraction of the median (default 0.1).
    pub beacon_jitter: f64,
    /// Beaconing: the share of intervals that must keep the rhythm (default 0.8); the rest
    /// are missed beats and reused source ports.
    pub beacon_regular_share: f64,
    /// Beaconing: shortest median interval, seconds (default 10).
    pub beacon_min_interval: f64,
    /// Beaconing: longest median interval, seconds (default 3600).
    pub beacon_max_interval: f64,
    /// Beaconing: largest mean bytes per connection (default 20,000).
    pub beacon_max_bytes: f64,
    /// Rejected-traffic spike: rejected requests in one window (default 100) ...
    pub rejected_spike_records: u64,
    /// ... and how many times the median window that is (default 5).
    pub rejected_spike_ratio: f64,
    /// Rejected-traffic spike window, seconds (default 300).
    pub rejected_spike_window: i64,
    /// Ports that should not be reachable from the internet (default: 22, 23, 445, 1433,
    /// 1521, 2375, 3306, 3389, 5432, 5900, 6379, 9200, 11211, 27017).
    pub sensitive_ports: Vec<u16>,
    /// Exposed sensitive port: distinct internet sources at which it becomes medium severity
    /// (default 5).
    pub exposed_sources: u64,
    /// Records shown as a sample in each finding's evidence (default 3).
    pub samples: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            vertical_scan_ports: 50,
            horizontal_sweep_hosts: 20,
            brute_force_attempts: 10,
            brute_force_window: 600,
            exfiltration_bytes: 50_000_000,
            exfiltration_ratio: 10.0,
            exfiltration_window: 600,
            beacon_connections: 8,
            beacon_jitter: 0.1,
            beacon_regular_share: 0.8,
            beacon_min_interval: 10.0,
            beacon_max_interval: 3_600.0,
            beacon_max_bytes: 20_000.0,
            rejected_spike_records: 100,
            rejected_spike_ratio: 5.0,
            rejected_spike_window: 300,
            sensitive_ports: crate::words::SENSITIVE_PORTS.map(|(p, _)| p).to_vec(),
            exposed_sources: 5,
            samples: 3,
        }
    }
}

/// The query language of a custom rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// SQL over the `flows` table.
    #[default]
    Sql,
    /// A CloudWatch Logs Insights query (the `--start/--end` range applies).
    Insights,
}

/// A custom detection: a query whose result rows become findings.
///
/// Result columns named `srcaddr`/`src`, `dstaddr`/`dst`, `dstport`/`dst_port`, `first_seen`,
/// `last_seen` (Unix seconds), `records` and `bytes` fill the finding's fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// The detection id findings carry (letters, digits, `_`, `-`, `.`).
    pub id: String,
    /// Severity of its findings.
    pub severity: Severity,
    /// ATT&CK technique id, e.g. `T1021`.
    #[serde(default)]
    pub technique: Option<String>,
    /// Query language.
    #[serde(default)]
    pub language: Language,
    /// The query.
    pub query: String,
    /// A row becomes a finding only if each named column is at least this value.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// The summary, with `{column}` replaced by the row's values.
    pub summary: String,
}

/// A rules file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Built-in detections to skip, by id.
    pub disable: Vec<String>,
    /// Thresholds of the built-in detections.
    pub thresholds: Thresholds,
    /// Custom detections.
    pub rules: Vec<CustomRule>,
}

impl DetectConfig {
    /// Reads a rules file.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Config`] with the line and column of the first mistake.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses rules-file text; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::Config`] for TOML or schema mistakes, unknown detection ids, bad rule ids.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| toml_error(&e, text, file))?;
        for (i, id) in config.disable.iter().enumerate() {
            if crate::BuiltIn::from_id(id).is_none() {
                return Err(config_at(
                    text,
                    file,
                    &[At::Key("disable"), At::Index(i)],
                    format!(
                        "`{id}` is not a built-in detection; the ids are {}",
                        crate::BuiltIn::ALL.map(crate::BuiltIn::id).join(", ")
                    ),
                ));
            }
        }
        config.thresholds.check(text, file)?;
        let mut ids = std::collections::HashSet::new();
        for (i, rule) in config.rules.iter().enumerate() {
            if !ids.insert(rule.id.as_str()) {
                return Err(config_at(
                    text,
                    file,
                    &[At::Key("rules"), At::Index(i), At::Key("id")],
                    format!("rule id `{}` is used twice", rule.id),
                ));
            }
            let ok = !rule.id.is_empty()
                && rule
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !ok {
                return Err(config_at(
                    text,
                    file,
                    &[At::Key("rules"), At::Index(i), At::Value("id")],
                    format!(
                        "rule id `{}` may hold only letters, digits, `_`, `-` and `.`",
                        rule.id
                    ),
                ));
            }
        }
        Ok(config)
    }
}

impl Thresholds {
    /// Refuses settings no detection can work with: windows that are not positive (or longer
    /// than a year), ratios and fractions that are not finite numbers in their range.
    fn check(&self, text: &str, file: &str) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(config_at(
                text,
                file,
                &[At::Key("thresholds"), At::Key(key)],
                format!("{key}: {message}"),
            ))
        };
        const YEAR: i64 = 366 * 86_400;
        for (key, value) in [
            ("brute_force_window", self.brute_force_window),
            ("exfiltration_window", self.exfiltration_window),
            ("rejected_spike_window", self.rejected_spike_window),
        ] {
            if !(1..=YEAR).contains(&value) {
                return bad(key, format!("must be 1 to {YEAR} seconds, not {value}"));
            }
        }
        for (key, value, lo, hi) in [
            ("exfiltration_ratio", self.exfiltration_ratio, 0.0, f64::MAX),
            (
                "rejected_spike_ratio",
                self.rejected_spike_ratio,
                0.0,
                f64::MAX,
            ),
            ("beacon_jitter", self.beacon_jitter, 0.0, f64::MAX),
            ("beacon_regular_share", self.beacon_regular_share, 0.0, 1.0),
            (
                "beacon_min_interval",
                self.beacon_min_interval,
                0.0,
                f64::MAX,
            ),
            (
                "beacon_max_interval",
                self.beacon_max_interval,
                0.0,
                f64::MAX,
            ),
            ("beacon_max_bytes", self.beacon_max_bytes, 0.0, f64::MAX),
        ] {
            if !value.is_finite() || value < lo || value > hi {
                let range = if hi == 1.0 { "0 to 1" } else { "0 or more" };
                return bad(key, format!("must be a number, {range}, not {value}"));
            }
        }
        if self.beacon_min_interval > self.beacon_max_interval {
            return bad(
                "beacon_min_interval",
                format!(
                    "is above beacon_max_interval ({} > {})",
                    self.beacon_min_interval, self.beacon_max_interval
                ),
            );
        }
        Ok(())
    }
}

/// One step of a path to a setting in a TOML document.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// The key of this name (the error points at the key).
    Key(&'a str),
    /// The value of the key of this name (the error points at the value).
    Value(&'a str),
    /// The element of an array, or the table of an array of tables.
    Index(usize),
}

/// [`Error::Config`] at `path` in `text`: where the parsed document's spans put the deepest
/// part of the path that is written (a key left at its default: its table).
pub fn config_at(text: &str, file: &str, path: &[At<'_>], message: String) -> Error {
    let (line, column) = flowscope_record::position::line_col(text, offset_of(text, path));
    Error::Config {
        file: file.into(),
        line,
        column,
        message,
    }
}

/// The byte offset of `path` in `text` (see [`config_at`]); 0 when nothing of it is written.
fn offset_of(text: &str, path: &[At<'_>]) -> usize {
    use toml::de::{DeTable, DeValue};
    let Ok(root) = DeTable::parse(text) else {
        return 0;
    };
    let mut offset = 0;
    let mut table = Some(root.get_ref());
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    for step in path {
        let value = match *step {
            At::Key(name) | At::Value(name) => {
                let Some((key, value)) =
                    table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == name))
                else {
                    break;
                };
                offset = if matches!(step, At::Key(_)) {
                    key.span().start
                } else {
                    value.span().start
                };
                value
            }
            At::Index(i) => {
                let Some(value) = array.and_then(|a| a.get(i)) else {
                    break;
                };
                offset = value.span().start;
                value
            }
        };
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(a)),
            _ => (None, None),
        };
    }
    offset
}

/// A TOML error as [`Error::Config`] with its position.
pub fn toml_error(e: &toml::de::Error, text: &str, file: &str) -> Error {
    let (line, column) = e
        .span()
        .map(|s| flowscope_record::position::line_col(text, s.start))
        .unwrap_or((1, 1));
    Error::Config {
        file: file.into(),
        line,
        column,
        message: e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_located_by_the_documents_spans_not_by_searching_the_text() {
        // The bad id's text stands earlier too: in a comment and in another rule's summary.
        let text = "# \"bad id\" is refused\n[[rules]]\nid = \"ok\"\nseverity = \"low\"\n\
                    query = \"select 1\"\nsummary = \"bad id\"\n\n[[rules]]\nid = \"bad id\"\n\
                    severity = \"low\"\nquery = \"select 1\"\nsummary = \"x\"\n";
        let e = DetectConfig::parse(text, "r.toml").unwrap_err().to_string();
        assert!(e.starts_with("r.toml:9:6: rule id `bad id`"), "{e}");
        // A threshold left at its default but wrong with another: at its table's name.
        let e = DetectConfig::parse(
            "disable = []\n\n[thresholds]\nbeacon_max_interval = 5\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("r.toml:3:2: beacon_min_interval: is above"),
            "{e}"
        );
    }

    #[test]
    fn defaults_overrides_and_mistakes() {
        let c = DetectConfig::parse("", "r.toml").unwrap();
        assert_eq!(c.thresholds, Thresholds::default());
        let c = DetectConfig::parse(
            "disable = [\"beaconing\"]\n[thresholds]\nvertical_scan_ports = 20\n\n[[rules]]\nid = \"telnet\"\nseverity = \"medium\"\nquery = \"select 1\"\nsummary = \"x\"\nthresholds = { records = 5 }\n",
            "r.toml",
        )
        .unwrap();
        assert_eq!(c.thresholds.vertical_scan_ports, 20);
        assert_eq!(c.thresholds.horizontal_sweep_hosts, 20);
        assert_eq!(c.rules[0].thresholds["records"], 5.0);
        let e = DetectConfig::parse("[thresholds]\nvertical_scan_port = 20\n", "r.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("r.toml:2:1: unknown field `vertical_scan_port`"),
            "{e}"
        );
        let e = DetectConfig::parse("disable = [\"nope\"]\n", "r.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("r.toml:1:12: `nope` is not a built-in"),
            "{e}"
        );
        let e = DetectConfig::parse(
            "[[rules]]\nid = \"a b\"\nseverity = \"low\"\nquery = \"q\"\nsummary = \"s\"\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("r.toml:2:6: rule id"), "{e}");
    }

    #[test]
    fn impossible_thresholds_and_twice_used_ids_are_refused_where_written() {
        for (text, want) in [
            (
                "[thresholds]\nsamples = 3\nbrute_force_window = 0\n",
                "r.toml:3:1: brute_force_window: must be 1",
            ),
            (
                "[thresholds]\nrejected_spike_window = -60\n",
                "r.toml:2:1: rejected_spike_window",
            ),
            (
                "[thresholds]\nexfiltration_ratio = nan\n",
                "r.toml:2:1: exfiltration_ratio: must be a number",
            ),
            (
                "[thresholds]\nbeacon_regular_share = 1.5\n",
                "r.toml:2:1: beacon_regular_share",
            ),
            (
                "[thresholds]\nbeacon_min_interval = 100.0\nbeacon_max_interval = 50.0\n",
                "r.toml:2:1: beacon_min_interval: is above",
            ),
            (
                "[[rules]]\nid = \"a\"\nseverity = \"low\"\nquery = \"q\"\nsummary = \"s\"\n\n[[rules]]\nid = \"a\"\nseverity = \"low\"\nquery = \"q\"\nsummary = \"s\"\n",
                "r.toml:8:1: rule id `a` is used twice",
            ),
        ] {
            let e = DetectConfig::parse(text, "r.toml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }
}
