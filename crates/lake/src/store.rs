//! The Parquet lake on disk: partitions, commit records, recovery.
//!
//! ```text
//! LAKE/date=2019-08-26/hour=19/part-00000003-0000.parquet   data, hive-partitioned by hour of `start`
//! LAKE/_flowscope/commits/00000003.json                     one record per commit: the manifest
//! LAKE/_flowscope/staging/00000003/date=…/hour=…/…          files of a commit not yet published
//! LAKE/_flowscope/lock                                      held while a command changes the lake
//! ```
//!
//! A commit's files are written and fsynced under `staging/`, then its record is written
//! atomically: that rename is the commit point. Publishing renames the files into place. On every
//! open, a commit whose staging folder still exists is published again (roll forward) and a
//! staging folder without a record is deleted (roll back), so a crash at any moment leaves the
//! lake as before or as after the commit once the next command has run. Folders starting with
//! `_` are ignored by Spark, Hive and Athena, so engines reading `LAKE/` see published data only.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

const META: &str = "_flowscope";

/// One ingested source as the manifest remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceEntry {
    /// Where it was read from: a path (relative to `AWSLogs/` when inside one) or an URL.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Content fingerprint: `xxh3:<hex>` of the bytes, local file or object alike (lakes
    /// written by earlier versions hold `etag:<etag>` for objects, still recognised).
    pub checksum: String,
    /// Records taken from it.
    pub records: u64,
    /// Lines rejected.
    pub rejected: u64,
}

impl SourceEntry {
    /// The identity used to recognise the same source again: file name, size and checksum, so
    /// that a folder copied or moved elsewhere is still recognised.
    pub fn identity(&self) -> SourceIdentity {
        SourceIdentity::new(&self.key, self.size, &self.checksum)
    }
}

/// What makes two sources the same: file name, size, checksum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceIdentity(String);

impl SourceIdentity {
    /// The identity of a source with this key, size and checksum.
    pub fn new(key: &str, size: u64, checksum: &str) -> Self {
        let name = key.rsplit(['/', '\\']).next().unwrap_or(key);
        Self(format!("{name}\u{0}{size}\u{0}{checksum}"))
    }
}

/// A commit record: what one commit added, removed, and which sources it took in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    /// The commit's ID, its sequence number as eight digits.
    pub id: String,
    /// `ingest`, `compact` or `prune`.
    pub kind: String,
    /// Sources taken in.
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
    /// Data files added, relative to the lake root.
    #[serde(default)]
    pub add: Vec<String>,
    /// Data files removed, relative to the lake root.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// An open lake, locked for changes for as long as it lives.
pub struct Lake {
    root: PathBuf,
    _lock: File,
    /// The sequence number the next commit gets; the lock makes this process its only writer.
    next_id: AtomicU64,
}

impl Lake {
    /// Opens (creating if needed) the lake at `root`, takes its lock, and recovers any commit a
    /// crash interrupted.
    ///
    /// # Errors
    /// [`Error::Io`] when the folders cannot be made, the lock taken, or recovery fails.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| Error::io(p, e)
        };
        for dir in [
            root.join(META).join("commits"),
            root.join(META).join("staging"),
        ] {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let lock_path = root.join(META).join("lock");
        let lock = open_lock(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(lake = %root.display(), "another flowscope command is changing this lake; waiting for it");
                lock.lock().map_err(io(&lock_path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Self::recovered(root, lock)
    }

    /// The lake at `root` under `lock`, with any interrupted commit rolled forward or back.
    fn recovered(root: PathBuf, lock: File) -> Result<Self> {
        let lake = Self {
            root,
            _lock: lock,
            next_id: AtomicU64::new(1),
        };
        let last = lake.recover()?;
        lake.next_id.store(last + 1, Ordering::SeqCst);
        Ok(lake)
    }

    /// Opens the lake at `root` only if no other command holds its lock: readers call this to
    /// roll an interrupted commit forward or back before they list files, and read the lake as
    /// it is (`Ok(None)`) while a writer runs, never waiting for it.
    ///
    /// # Errors
    /// [`Error::Io`] when the lock file cannot be opened or recovery fails.
    pub fn open_if_idle(root: impl AsRef<Path>) -> Result<Option<Self>> {
        let root = root.as_ref().to_path_buf();
        let lock_path = root.join(META).join("lock");
        let lock = open_lock(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => Self::recovered(root, lock).map(Some),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(lock_path.display().to_string(), e))
            }
        }
    }

    /// Whether `root` holds a lake (its `_flowscope` folder exists).
    pub fn exists(root: impl AsRef<Path>) -> bool {
        root.as_ref().join(META).join("commits").is_dir()
    }

    /// The lake's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn commits_dir(&self) -> PathBuf {
        self.root.join(META).join("commits")
    }

    fn staging_root(&self) -> PathBuf {
        self.root.join(META).join("staging")
    }

    /// The staging folder of commit `id`; files are written there under their final relative path.
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        self.staging_root().join(id)
    }

    /// Every commit record, oldest first.
    ///
    /// # Errors
    /// [`Error::Io`] when a record cannot be read or parsed.
    pub fn commits(&self) -> Result<Vec<Commit>> {
        let dir = self.commits_dir();
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(dir.display().to_string(), e))? {
            let entry = entry.map_err(|e| Error::io(dir.display().to_string(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        let mut commits = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            let text = fs::read(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
            let commit: Commit = serde_json::from_slice(&text).map_err(|e| {
                Error::io(
                    path.display().to_string(),
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )
            })?;
            commits.push(commit);
        }
        Ok(commits)
    }

    /// The identities of every source ingested so far.
    ///
    /// # Errors
    /// As [`commits`](Self::commits).
    pub fn ingested(&self) -> Result<HashSet<SourceIdentity>> {
        Ok(self
            .commits()?
            .iter()
            .flat_map(|c| c.sources.iter().map(SourceEntry::identity))
            .collect())
    }

    /// Takes the ID of a new commit: its sequence number as eight digits.
    pub fn allocate_commit_id(&self) -> String {
        format!("{:08}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// Makes `commit` durable (the commit point), then publishes its files.
    ///
    /// Every file in `commit.add` must already be written and fsynced under
    /// [`staging_dir`](Self::staging_dir).
    ///
    /// # Errors
    /// [`Error::Io`] when the record cannot be written or a file cannot be moved.
    pub fn commit(&self, commit: &Commit) -> Result<()> {
        let path = self.commits_dir().join(format!("{}.json", commit.id));
        let io = |e| Error::io(path.display().to_string(), e);
        let mut file = AtomicFile::create(&path).map_err(io)?;
        let json = serde_json::to_vec_pretty(commit).expect("commit records serialise");
        file.write_all(&json).map_err(io)?;
        file.commit().map_err(io)?;
        crash_point("after-commit-record");
        self.publish(commit)
    }

    /// Moves a committed commit's files into place and deletes what it removes. Idempotent.
    fn publish(&self, commit: &Commit) -> Result<()> {
        let staging = self.staging_dir(&commit.id);
        let mut dirs = HashSet::new();
        for rel in &commit.add {
            let from = staging.join(rel);
            let to = self.root.join(rel);
            let io = |e| Error::io(to.display().to_string(), e);
            if from.exists() {
                let dir = to.parent().expect("data files are inside partitions");
                fs::create_dir_all(dir).map_err(io)?;
                fs::rename(&from, &to).map_err(io)?;
                dirs.insert(dir.to_path_buf());
                crash_point("during-publish");
            } else if !to.exists() {
                return Err(io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "commit {} lists a file that is neither staged nor published",
                        commit.id
                    ),
                )));
            }
        }
        for rel in &commit.remove {
            let path = self.root.join(rel);
            match fs::remove_file(&path) {
                Ok(()) => {
                    dirs.insert(path.parent().expect("inside a partition").to_path_buf());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path.display().to_string(), e)),
            }
            remove_empty_partition(&self.root, &path);
        }
        for dir in dirs {
            sync_dir(&dir);
        }
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .map_err(|e| Error::io(staging.display().to_string(), e))?;
        }
        Ok(())
    }

    /// Rolls interrupted commits forward and abandoned staging folders back; returns the highest
    /// committed sequence number (0 for a new lake).
    fn recover(&self) -> Result<u64> {
        let committed: Vec<Commit> = self.commits()?;
        let ids: HashSet<&str> = committed.iter().map(|c| c.id.as_str()).collect();
        for commit in &committed {
            if self.staging_dir(&commit.id).exists() {
                tracing::info!(commit = %commit.id, "finishing an interrupted commit");
                self.publish(commit)?;
            }
        }
        let staging = self.staging_root();
        for entry in
            fs::read_dir(&staging).map_err(|e| Error::io(staging.display().to_string(), e))?
        {
            let entry = entry.map_err(|e| Error::io(staging.display().to_string(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(name.as_str()) {
                tracing::info!(staging = %name, "removing files of a commit that never happened");
                fs::remove_dir_all(entry.path())
                    .map_err(|e| Error::io(entry.path().display().to_string(), e))?;
            }
        }
        let commits = self.commits_dir();
        for entry in
            fs::read_dir(&commits).map_err(|e| Error::io(commits.display().to_string(), e))?
        {
            let entry = entry.map_err(|e| Error::io(commits.display().to_string(), e))?;
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        let last = committed
            .iter()
            .filter_map(|c| c.id.parse::<u64>().ok())
            .max();
        Ok(last.unwrap_or(0))
    }

    /// Every published data file, relative to the root, sorted.
    ///
    /// # Errors
    /// [`Error::Io`] when a partition cannot be listed.
    pub fn data_files(&self) -> Result<Vec<String>> {
        let mut files = Vec::new();
        list_parquet(&self.root, &self.root, &mut files)?;
        files.sort();
        Ok(files)
    }
}

/// Opens (creating) a lake's lock file.
fn open_lock(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path.display().to_string(), e))
}

fn list_parquet(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let io = |e| Error::io(dir.display().to_string(), e);
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            list_parquet(root, &path, out)?;
        } else if name.ends_with(".parquet") {
            let rel = path.strip_prefix(root).expect("below the root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Removes `hour=` and `date=` folders emptied by a removal.
fn remove_empty_partition(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Persists renames in `dir`; best effort where directories cannot be opened.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Test hook for the crash-safety tests: with `FLOWSCOPE_CRASH_AT=<point>[:<n>]` in the
/// environment, the process aborts the n-th time (default first) it reaches that point.
pub(crate) fn crash_point(point: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    static SPEC: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(spec) = SPEC.get_or_init(|| std::env::var("FLOWSCOPE_CRASH_AT").ok()) else {
        return;
    };
    let (name, nth) = spec
        .split_once(':')
        .map_or((spec.as_str(), 1), |(n, k)| (n, k.parse().unwrap_or(1)));
    if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("flowscope: FLOWSCOPE_CRASH_AT={spec}: aborting");
        std::process::abort();
    }
}
