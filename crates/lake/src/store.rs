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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::atomic::{AtomicFile, sync_dir};
use crate::error::{Error, Result};

const META: &str = "_flowscope";
/// The folder under [`META`] where the old versions of changed partitions wait for readers.
const RETIRED: &str = "retired";

/// How long files a compaction or prune removed stay readable (under
/// `_flowscope/retired/`) for queries that listed them before the change.
pub const RETIRED_GRACE: Duration = Duration::from_secs(15 * 60);

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

impl Commit {
    /// Reads the commit record at `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read or is not a commit record.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        serde_json::from_slice(&text).map_err(|e| {
            Error::io(
                path.display().to_string(),
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })
    }
}

/// An open lake, locked for changes for as long as it lives.
pub struct Lake {
    root: PathBuf,
    _lock: File,
    /// The sequence number the next commit gets; the lock makes this process its only writer.
    next_id: AtomicU64,
    /// The commit records read so far, by file name: a record is written once and never
    /// changed, so each is read and parsed once however often the commits are asked for.
    read: std::sync::Mutex<BTreeMap<String, Commit>>,
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
                let holder = read_holder(&lock_path).map_or_else(
                    || "another flowscope command".to_string(),
                    |h| h.to_string(),
                );
                tracing::warn!(lake = %root.display(), "{holder} is changing this lake; waiting for it");
                lock.lock().map_err(io(&lock_path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Self::recovered(root, lock)
    }

    /// Opens the lake at `root` for changes if no other command holds its lock, and never waits:
    /// `Ok(Err(holder))` names the command that holds it.
    ///
    /// # Errors
    /// [`Error::Io`] when the folders or the lock file cannot be made, or recovery fails.
    pub fn try_open(root: impl AsRef<Path>) -> Result<std::result::Result<Self, Holder>> {
        let root = root.as_ref().to_path_buf();
        for dir in [
            root.join(META).join("commits"),
            root.join(META).join("staging"),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        }
        let lock_path = root.join(META).join("lock");
        let lock = open_lock(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => Self::recovered(root, lock).map(Ok),
            Err(std::fs::TryLockError::WouldBlock) => {
                Ok(Err(read_holder(&lock_path).unwrap_or(Holder {
                    pid: 0,
                    command: String::new(),
                })))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(lock_path.display().to_string(), e))
            }
        }
    }

    /// The lake at `root` under `lock`, with any interrupted commit rolled forward or back.
    fn recovered(root: PathBuf, lock: File) -> Result<Self> {
        // Whoever holds the lock says who it is, for the messages of those who find it taken.
        let me = format!("{}\n{}\n", std::process::id(), command_line());
        let lock_path = root.join(META).join("lock");
        lock.set_len(0)
            .and_then(|()| (&lock).write_all(me.as_bytes()))
            .map_err(|e| Error::io(lock_path.display().to_string(), e))?;
        let lake = Self {
            root,
            _lock: lock,
            next_id: AtomicU64::new(1),
            read: std::sync::Mutex::new(BTreeMap::new()),
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
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(dir.display().to_string(), e))? {
            let entry = entry.map_err(|e| Error::io(dir.display().to_string(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !name.starts_with('.') {
                names.insert(name);
            }
        }
        let mut read = self.read.lock().expect("commit cache lock");
        read.retain(|name, _| names.contains(name));
        for name in names {
            if let std::collections::btree_map::Entry::Vacant(e) = read.entry(name) {
                let commit = Commit::read(&dir.join(e.key()))?;
                e.insert(commit);
            }
        }
        Ok(read.values().cloned().collect())
    }

    /// Every source ingested so far, in commit order.
    ///
    /// # Errors
    /// As [`commits`](Self::commits).
    pub fn sources(&self) -> Result<Vec<SourceEntry>> {
        Ok(self
            .commits()?
            .into_iter()
            .flat_map(|c| c.sources)
            .collect())
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

    /// Moves a committed commit's files into place and retires what it removes. Idempotent.
    ///
    /// Each partition changes in one step for engines that list folders: a partition that
    /// gains a single file gets it by one rename; any other change (several files, removals)
    /// builds the partition's next version beside it — hard links of the files it keeps and
    /// of the new ones — and swaps the two folders in one `rename` (`RENAME_EXCHANGE`). The old
    /// version is moved under `_flowscope/retired/`, where readers that listed it before the
    /// swap still find its files for [`RETIRED_GRACE`].
    fn publish(&self, commit: &Commit) -> Result<()> {
        let staging = self.staging_dir(&commit.id);
        let mut partitions: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
        for rel in &commit.add {
            partitions.entry(partition_of(rel)).or_default().0.push(rel);
        }
        for rel in &commit.remove {
            partitions.entry(partition_of(rel)).or_default().1.push(rel);
        }
        for (partition, (adds, removes)) in partitions {
            if removes.is_empty() && adds.len() == 1 {
                self.publish_file(&staging, adds[0], &commit.id)?;
            } else {
                self.swap_partition(&staging, partition, &adds, &removes, &commit.id)?;
            }
        }
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .map_err(|e| Error::io(staging.display().to_string(), e))?;
        }
        self.collect_retired();
        Ok(())
    }

    /// Publishes one new file of a partition by renaming it into place.
    fn publish_file(&self, staging: &Path, rel: &str, id: &str) -> Result<()> {
        let from = staging.join(rel);
        let to = self.root.join(rel);
        let io = |e| Error::io(to.display().to_string(), e);
        if from.exists() {
            let dir = to.parent().expect("data files are inside partitions");
            create_dirs(&self.root, dir).map_err(io)?;
            fs::rename(&from, &to).map_err(io)?;
            sync_dir(dir).map_err(io)?;
            crash_point("during-publish");
        } else if !to.exists() {
            return Err(io(not_staged(id)));
        }
        Ok(())
    }

    /// Replaces the folder `partition` by its next version (see [`publish`](Self::publish)).
    fn swap_partition(
        &self,
        staging: &Path,
        partition: &str,
        adds: &[&str],
        removes: &[&str],
        id: &str,
    ) -> Result<()> {
        let part = self.root.join(partition);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| Error::io(p, e)
        };
        let (parent_rel, name) = partition.rsplit_once('/').unwrap_or(("", partition));
        let parent = self.root.join(parent_rel);
        let next = parent.join(format!(".{name}.{id}.next"));
        if next.exists() {
            // Left by an interrupted swap: a half-built next version (hard links only) or, after
            // the exchange, the old version, whose removed files readers may still want.
            self.retire(&next, id, partition)?;
        }
        let current = file_names(&part).map_err(io(&part))?;
        let removed: HashSet<&str> = removes.iter().map(|r| file_name(r)).collect();
        let mut staged = Vec::new();
        for rel in adds {
            let from = staging.join(rel);
            if from.exists() {
                staged.push((file_name(rel), from));
            } else if !current.contains(file_name(rel)) {
                return Err(io(&self.root.join(rel))(not_staged(id)));
            }
        }
        let kept: Vec<&String> = current
            .iter()
            .filter(|f| !removed.contains(f.as_str()))
            .collect();
        let unchanged =
            kept.len() == current.len() && staged.iter().all(|(name, _)| current.contains(*name));
        if unchanged {
            return Ok(());
        }
        if kept.is_empty() && staged.is_empty() {
            self.retire(&part, id, partition)?;
            remove_empty_dirs(&self.root, &parent);
            return Ok(());
        }
        create_dirs(&self.root, &parent).map_err(io(&parent))?;
        fs::create_dir(&next).map_err(io(&next))?;
        for file in &kept {
            fs::hard_link(part.join(file), next.join(file)).map_err(io(&next))?;
        }
        for (name, from) in &staged {
            let to = next.join(name);
            if !to.exists() {
                fs::hard_link(from, &to).map_err(io(&to))?;
            }
        }
        sync_dir(&next).map_err(io(&next))?;
        crash_point("partition-built");
        if current.is_empty() && !part.exists() {
            fs::rename(&next, &part).map_err(io(&part))?;
            sync_dir(&parent).map_err(io(&parent))?;
            return Ok(());
        }
        exchange(&next, &part, || self.retire(&part, id, partition)).map_err(io(&part))?;
        sync_dir(&parent).map_err(io(&parent))?;
        crash_point("partition-swapped");
        if next.exists() {
            self.retire(&next, id, partition)?;
        }
        Ok(())
    }

    /// Moves `dir` (an old version of `partition`) under `_flowscope/retired/<id>/`.
    fn retire(&self, dir: &Path, id: &str, partition: &str) -> Result<()> {
        let base = self.root.join(META).join(RETIRED).join(id);
        let mut target = base.join(partition);
        let mut n = 1;
        while target.exists() {
            target = base.join(format!("{partition}.{n}"));
            n += 1;
        }
        let io = |e| Error::io(target.display().to_string(), e);
        fs::create_dir_all(target.parent().expect("below the retired folder")).map_err(io)?;
        fs::rename(dir, &target).map_err(io)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent).map_err(io)?;
        }
        Ok(())
    }

    /// Deletes retired partition versions older than [`RETIRED_GRACE`]; best effort (what is
    /// left is tried again after the next commit).
    fn collect_retired(&self) {
        let retired = self.root.join(META).join(RETIRED);
        let Ok(entries) = fs::read_dir(&retired) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= RETIRED_GRACE);
            if old && let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not delete retired files");
            }
        }
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

/// The process that holds a lake's lock, as it wrote itself into the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id (0 when it has not written itself yet).
    pub pid: u32,
    /// Its command line, shortened.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, self.command.is_empty()) {
            (0, _) => f.write_str("another flowscope command"),
            (pid, true) => write!(f, "process {pid}"),
            (pid, false) => write!(f, "process {pid} (`{}`)", self.command),
        }
    }
}

/// This process's command line, at most 200 characters.
fn command_line() -> String {
    let line = std::env::args().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// What the holder of a lock wrote into it; `None` when it is empty or unreadable.
fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(File::open(path).ok()?, 1024), &mut text).ok()?;
    let (pid, command) = text.split_once('\n')?;
    Some(Holder {
        pid: pid.trim().parse().ok()?,
        command: command.trim().to_string(),
    })
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

/// The partition folder (`date=…/hour=…`) of a data file's relative path.
fn partition_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The file name of a relative path.
fn file_name(rel: &str) -> &str {
    rel.rsplit_once('/').map_or(rel, |(_, name)| name)
}

fn not_staged(id: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("commit {id} lists a file that is neither staged nor published"),
    )
}

/// The names of the data files in `dir` (none when it does not exist).
fn file_names(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// Creates `dir` and the folders above it up to `root`, persisting each new entry.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| *p != root && p.starts_with(root)) {
        create_dirs(root, parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir.parent().unwrap_or(root))
}

/// Swaps the folders `a` and `b` in one step. Where the file system cannot (no
/// `RENAME_EXCHANGE`), `b` is moved away by `retire_b` and `a` renamed to `b`: for a moment the
/// partition is absent to engines that list folders, never doubled.
fn exchange(a: &Path, b: &Path, retire_b: impl FnOnce() -> Result<()>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                tracing::debug!("no RENAME_EXCHANGE on this file system; replacing in two steps");
            }
            Err(e) => return Err(e.into()),
        }
    }
    retire_b().map_err(io::Error::other)?;
    fs::rename(a, b)
}

/// Removes `hour=` and `date=` folders emptied by a removal, from `dir` up to the root.
fn remove_empty_dirs(root: &Path, dir: &Path) {
    let mut dir = Some(dir);
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
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
