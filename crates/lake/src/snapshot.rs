//! What readers read: the data files the committed manifest names, never a folder listing.
//!
//! A listing of `date=*/hour=*/` can catch a commit half published, or a compaction with its
//! new file in place and its old files not yet removed. [`Snapshots`] replays the commit
//! records instead (each commit's `add` and `remove`), so a reader sees exactly the files of
//! the last commit it read, whatever the writer is doing. Records are read once: each call
//! reads only the commits that appeared since the last.
//!
//! [`Snapshots::locate`] finds where a listed file is now: in place; still in its commit's
//! staging folder (committed, not yet published); or, once a later compaction or prune has
//! removed it, under `_flowscope/retired/`, where it stays for
//! [`RETIRED_GRACE`](crate::store::RETIRED_GRACE) — so a query that listed the files before a
//! compaction reads them to its end.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::maintenance::partition_start;
use crate::store::Commit;

/// The lake's metadata folder.
const META: &str = "_flowscope";

/// The committed data files of one lake, kept current by replaying new commit records.
#[derive(Debug)]
pub struct Snapshots {
    root: PathBuf,
    state: Mutex<Replay>,
}

#[derive(Debug, Default)]
struct Replay {
    /// Commit record file names applied so far.
    applied: HashSet<String>,
    /// Data files, relative to the root.
    files: BTreeSet<String>,
    /// The list handed out last, shared until a commit changes it.
    current: Option<Arc<Vec<String>>>,
}

impl Snapshots {
    /// Snapshots of the lake at `root` (nothing is read until [`current`](Self::current)).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            state: Mutex::new(Replay::default()),
        }
    }

    /// The lake's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data files of the latest commit, relative to the root, sorted.
    ///
    /// # Errors
    /// [`Error::Io`] when the commit records cannot be listed, read or parsed.
    pub fn current(&self) -> Result<Arc<Vec<String>>> {
        let dir = self.root.join(META).join("commits");
        let io = |e| Error::io(dir.display().to_string(), e);
        let mut state = self.state.lock().expect("snapshot lock");
        let mut new = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let name = entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".json") && !name.starts_with('.') && !state.applied.contains(&name) {
                new.push(name);
            }
        }
        new.sort();
        for name in new {
            let commit = Commit::read(&dir.join(&name))?;
            for rel in commit.remove {
                state.files.remove(&rel);
            }
            state.files.extend(commit.add);
            state.applied.insert(name);
            state.current = None;
        }
        if state.current.is_none() {
            // Files of records without a time (`date=__HIVE_DEFAULT_PARTITION__`, written by
            // earlier versions) have no partition values a reader could type: not read;
            // `lake prune` removes them.
            let dated = state
                .files
                .iter()
                .filter(|rel| partition_start(rel).is_some())
                .cloned()
                .collect();
            state.current = Some(Arc::new(dated));
        }
        Ok(Arc::clone(state.current.as_ref().expect("just set")))
    }

    /// Where the committed file `rel` is now (see the module doc), or `None` if it is nowhere.
    pub fn locate(&self, rel: &str) -> Option<PathBuf> {
        let in_place = self.root.join(rel);
        if in_place.is_file() {
            return Some(in_place);
        }
        let meta = self.root.join(META);
        let (partition, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        for folder in ["staging", "retired"] {
            let Ok(entries) = fs::read_dir(meta.join(folder)) else {
                continue;
            };
            let mut commits: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            // The newest first: a file is most likely in the latest commit's folder.
            commits.sort_unstable_by(|a, b| b.cmp(a));
            for commit in commits {
                let candidates = [
                    commit.join(rel),
                    commit.join(format!("{partition}.1")).join(name),
                ];
                if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
                    return Some(found);
                }
            }
        }
        None
    }
}
