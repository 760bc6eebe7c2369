//! Findings the server keeps: the detections run after the lake changes (not when a page is
//! loaded), and what they found is stored in the lake's metadata
//! (`_flowscope/findings.json`), each finding once, with when the server first found it, when a
//! run last confirmed it, and its state:
//!
//! - `new`: found by the latest run, for the first time, and active;
//! - `ongoing`: found by earlier runs and by the latest, and active;
//! - `resolved`: no longer found (the records behind it were pruned, or no longer cross a
//!   threshold), or found but quiet: its last record ended more than [`QUIET`] before the
//!   lake's newest record.
//!
//! A finding is known across runs by its detection and what it names (source, destination,
//! port, interfaces), so a port scan that goes on is one finding whose figures grow, not a new
//! one per run. Each run's detections see the whole lake, as `flowscope detect` does, so the
//! stored findings are exactly what a batch run over the same lake finds; the run reads only
//! the hour partitions that changed since the last one (and those holding records not yet
//! committed), the rest of the pass kept from earlier runs ([`flowscope_detect::Incremental`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flowscope_detect::{Finding, Severity};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long after the lake's newest record a finding whose records stopped is resolved,
/// milliseconds.
pub const QUIET: i64 = 3_600_000;

/// Most resolved findings kept (the oldest resolved go first).
const MAX_RESOLVED: usize = 5_000;

/// Where a stored finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Found by the latest run for the first time.
    New,
    /// Found by earlier runs and still active.
    Ongoing,
    /// No longer found, or quiet.
    Resolved,
}

impl State {
    /// `new`, `ongoing` or `resolved`.
    pub fn name(self) -> &'static str {
        match self {
            State::New => "new",
            State::Ongoing => "ongoing",
            State::Resolved => "resolved",
        }
    }
}

/// One finding as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// What the finding is known by across runs.
    pub key: String,
    /// Where it stands.
    pub state: State,
    /// When the server first found it (Unix milliseconds).
    pub found_at: i64,
    /// When a run last found it (Unix milliseconds).
    pub confirmed_at: i64,
    /// When it was resolved (Unix milliseconds), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    /// The finding as the latest run that found it reported it.
    #[serde(flatten)]
    pub finding: Finding,
}

/// The findings of the latest runs, by key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// Runs made.
    runs: u64,
    /// When the latest run ended (Unix milliseconds).
    detected_at: Option<i64>,
    /// What the latest run warned of.
    #[serde(default)]
    warnings: Vec<String>,
    findings: BTreeMap<String, Stored>,
}

/// What a merge changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Findings new with this run.
    pub new: usize,
    /// Findings resolved by this run.
    pub resolved: usize,
}

/// The stored findings.
pub struct Store {
    path: PathBuf,
    saved: Saved,
}

/// The key of each finding of one run: its detection and what it names; the rare findings of a
/// run that would share one get `#2`, `#3`, … in the run's order.
fn keys(findings: &[Finding]) -> Vec<String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    findings
        .iter()
        .map(|f| {
            let base = format!(
                "{}|{}|{}|{}|{}",
                f.detection,
                f.src.as_deref().unwrap_or("*"),
                f.dst.as_deref().unwrap_or("*"),
                f.dst_port
                    .map_or_else(|| "*".to_string(), |p| p.to_string()),
                f.evidence.interfaces.join(",")
            );
            let n = count.entry(base.clone()).or_default();
            *n += 1;
            if *n == 1 { base } else { format!("{base}#{n}") }
        })
        .collect()
}

impl Store {
    /// The findings stored under the lake at `root` (none before the first run).
    ///
    /// # Errors
    /// When the file cannot be read or is not the store's.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("_flowscope").join("findings.json");
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok(Self { path, saved })
    }

    /// Merges the findings of a run that ended at `now` over a lake whose newest record ends
    /// at `newest_end` (Unix seconds), and saves the store.
    ///
    /// # Errors
    /// When the store cannot be saved (the merge is kept in memory).
    pub fn merge(
        &mut self,
        found: Vec<Finding>,
        warnings: Vec<String>,
        now: i64,
        newest_end: i64,
    ) -> Result<Changes> {
        let mut changes = Changes::default();
        let quiet_before = newest_end.saturating_mul(1000).saturating_sub(QUIET);
        let keys = keys(&found);
        let mut present = std::collections::HashSet::new();
        for (key, finding) in keys.into_iter().zip(found) {
            present.insert(key.clone());
            let active = finding.evidence.end.saturating_mul(1000) >= quiet_before;
            match self.saved.findings.get_mut(&key) {
                Some(stored) => {
                    let was = stored.state;
                    stored.state = if active {
                        State::Ongoing
                    } else {
                        State::Resolved
                    };
                    if stored.state == State::Resolved && was != State::Resolved {
                        stored.resolved_at = Some(now);
                        changes.resolved += 1;
                    } else if stored.state != State::Resolved {
                        stored.resolved_at = None;
                    }
                    stored.confirmed_at = now;
                    stored.finding = finding;
                }
                None => {
                    let state = if active { State::New } else { State::Resolved };
                    if state == State::New {
                        changes.new += 1;
                    }
                    self.saved.findings.insert(
                        key.clone(),
                        Stored {
                            key,
                            state,
                            found_at: now,
                            confirmed_at: now,
                            resolved_at: (state == State::Resolved).then_some(now),
                            finding,
                        },
                    );
                }
            }
        }
        for (key, stored) in &mut self.saved.findings {
            if !present.contains(key) && stored.state != State::Resolved {
                stored.state = State::Resolved;
                stored.resolved_at = Some(now);
                changes.resolved += 1;
            }
        }
        let mut resolved: Vec<(i64, String)> = self
            .saved
            .findings
            .values()
            .filter(|s| s.state == State::Resolved && !present.contains(&s.key))
            .map(|s| (s.resolved_at.unwrap_or(0), s.key.clone()))
            .collect();
        if resolved.len() > MAX_RESOLVED {
            resolved.sort();
            for (_, key) in &resolved[..resolved.len() - MAX_RESOLVED] {
                self.saved.findings.remove(key);
            }
        }
        self.saved.runs += 1;
        self.saved.detected_at = Some(now);
        self.saved.warnings = warnings;
        self.save()?;
        Ok(changes)
    }

    fn save(&self) -> Result<()> {
        let write = || {
            let mut file = flowscope_lake::AtomicFile::create(&self.path)?;
            serde_json::to_writer(&mut file, &self.saved).map_err(std::io::Error::other)?;
            file.commit()
        };
        write().map_err(|e| Error::io(&self.path, e))
    }

    /// The stored findings of at least severity `min` whose records overlap `[start, end)`
    /// (Unix seconds, either open), most severe first as a run orders them.
    pub fn list(&self, min: Severity, start: Option<i64>, end: Option<i64>) -> Vec<Stored> {
        let mut out: Vec<Stored> = self
            .saved
            .findings
            .values()
            .filter(|s| s.finding.severity >= min)
            .filter(|s| end.is_none_or(|e| s.finding.evidence.start < e))
            .filter(|s| start.is_none_or(|b| s.finding.evidence.end >= b))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            a.state
                .eq(&State::Resolved)
                .cmp(&b.state.eq(&State::Resolved))
                .then(b.finding.severity.cmp(&a.finding.severity))
                .then(a.finding.evidence.start.cmp(&b.finding.evidence.start))
                .then_with(|| a.key.cmp(&b.key))
        });
        out
    }

    /// Stored findings per (severity, state).
    pub fn counts(&self) -> BTreeMap<(Severity, State), u64> {
        let mut counts = BTreeMap::new();
        for s in self.saved.findings.values() {
            *counts.entry((s.finding.severity, s.state)).or_default() += 1;
        }
        counts
    }

    /// Runs made, when the latest ended (Unix milliseconds), and what it warned of.
    pub fn last_run(&self) -> (u64, Option<i64>, &[String]) {
        (
            self.saved.runs,
            self.saved.detected_at,
            &self.saved.warnings,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_detect::Evidence;

    fn finding(src: &str, end: i64) -> Finding {
        Finding {
            detection: "vertical_port_scan".into(),
            severity: Severity::High,
            technique: None,
            src: Some(src.into()),
            dst: None,
            dst_port: None,
            first_seen: String::new(),
            last_seen: String::new(),
            records: 1,
            bytes: 1,
            summary: String::new(),
            evidence: Evidence {
                start: end - 60,
                end,
                ..Evidence::default()
            },
        }
    }

    #[test]
    fn findings_are_new_then_ongoing_then_resolved() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_flowscope")).unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let hour = 3_600;
        let changes = store
            .merge(vec![finding("1.2.3.4", 10 * hour)], vec![], 1, 10 * hour)
            .unwrap();
        assert_eq!(
            changes,
            Changes {
                new: 1,
                resolved: 0
            }
        );
        // The same scan, further on: one finding, ongoing; a second source appears.
        let changes = store
            .merge(
                vec![finding("1.2.3.4", 11 * hour), finding("5.6.7.8", 11 * hour)],
                vec![],
                2,
                11 * hour,
            )
            .unwrap();
        assert_eq!(
            changes,
            Changes {
                new: 1,
                resolved: 0
            }
        );
        let states: Vec<(String, State)> = store
            .list(Severity::Low, None, None)
            .into_iter()
            .map(|s| (s.finding.src.unwrap(), s.state))
            .collect();
        assert_eq!(
            states,
            [
                ("1.2.3.4".to_string(), State::Ongoing),
                ("5.6.7.8".to_string(), State::New)
            ]
        );
        // Two hours later the first is quiet; the second is no longer found.
        let changes = store
            .merge(vec![finding("1.2.3.4", 11 * hour)], vec![], 3, 13 * hour)
            .unwrap();
        assert_eq!(
            changes,
            Changes {
                new: 0,
                resolved: 2
            }
        );
        assert!(
            store
                .list(Severity::Low, None, None)
                .iter()
                .all(|s| s.state == State::Resolved)
        );
        // Kept across a restart; a range leaves out what it does not overlap.
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.list(Severity::Low, None, None).len(), 2);
        assert_eq!(again.list(Severity::Low, Some(12 * hour), None).len(), 0);
        assert_eq!(again.list(Severity::Critical, None, None).len(), 0);
        assert_eq!(again.last_run().0, 3);
    }
}
