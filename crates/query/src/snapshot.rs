//! The object store the `flows` table reads the lake through: listings come from the lake's
//! committed manifest ([`Snapshots`]), reads from wherever a listed file is now.
//!
//! DataFusion's listing table lists files with the object store and reads them later. Listing
//! the folders directly would show a commit half published, a compaction's new file beside the
//! old ones (rows counted twice), and — once cached — never a later commit. This store answers
//! every listing from the last commit record, and a file removed after it was listed (by a
//! compaction during a query) is read from where the lake keeps it for such readers. Paths
//! outside the lake go to the local file system unchanged.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use flowscope_lake::snapshot::Snapshots;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Tries at reading a file that moves while it is read (published, then retired).
const TRIES: usize = 3;

/// Local files, with the lake at `root` seen as its committed manifest names it.
#[derive(Debug)]
pub struct SnapshotStore {
    snapshots: Arc<Snapshots>,
    /// The lake root as an object path (`abs/path/to/lake`).
    root: Path,
    local: Arc<LocalFileSystem>,
}

impl SnapshotStore {
    /// A store for the lake whose (canonical, absolute) root `snapshots` reads.
    ///
    /// # Errors
    /// When the root is not an absolute path.
    pub fn new(snapshots: Arc<Snapshots>) -> Result<Self> {
        let root = Path::from_absolute_path(snapshots.root())?;
        Ok(Self {
            snapshots,
            root,
            local: Arc::new(LocalFileSystem::new()),
        })
    }

    /// The lake-relative path of `location`, if it is inside the lake.
    fn relative(&self, location: &Path) -> Option<String> {
        let parts: Vec<_> = location.prefix_match(&self.root)?.collect();
        Some(
            parts
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// Where the lake file at `location` is now, as a local object path.
    fn located(&self, location: &Path, rel: &str) -> Result<Path> {
        let found: Option<PathBuf> = self.snapshots.locate(rel);
        match found {
            Some(path) => Ok(Path::from_absolute_path(path)?),
            None => Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("{rel} is in the lake's manifest but on disk nowhere").into(),
            }),
        }
    }

    /// The committed files below the lake-relative `prefix` (segment-wise), as object paths.
    fn listed(&self, prefix: &str) -> Result<Vec<(String, Path)>> {
        let files = self
            .snapshots
            .current()
            .map_err(|e| object_store::Error::Generic {
                store: "flowscope lake",
                source: Box::new(e),
            })?;
        let under = |rel: &str| {
            prefix.is_empty()
                || rel
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        Ok(files
            .iter()
            .filter(|rel| under(rel))
            .map(|rel| (rel.clone(), self.root.clone().join_all(rel)))
            .collect())
    }

    /// The metadata of the lake file `rel`, under its lake path `location`.
    async fn meta(&self, rel: &str, location: Path) -> Result<ObjectMeta> {
        let mut last = None;
        for _ in 0..TRIES {
            let at = self.located(&location, rel)?;
            match self.local.head(&at).await {
                Ok(mut meta) => {
                    meta.location = location;
                    return Ok(meta);
                }
                Err(e @ object_store::Error::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried"))
    }
}

/// `join` for a `/`-separated relative path.
trait JoinAll {
    fn join_all(self, rel: &str) -> Path;
}

impl JoinAll for Path {
    fn join_all(self, rel: &str) -> Path {
        rel.split('/').fold(self, |p, part| p.join(part))
    }
}

impl fmt::Display for SnapshotStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flowscope lake at /{}", self.root)
    }
}

#[async_trait]
impl ObjectStore for SnapshotStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if self.relative(location).is_some() {
            return Err(read_only("put"));
        }
        self.local.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if self.relative(location).is_some() {
            return Err(read_only("put_multipart"));
        }
        self.local.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(rel) = self.relative(location) else {
            return self.local.get_opts(location, options).await;
        };
        let mut last = None;
        for _ in 0..TRIES {
            let at = self.located(location, &rel)?;
            match self.local.get_opts(&at, options.clone()).await {
                Ok(mut result) => {
                    result.meta.location = location.clone();
                    return Ok(result);
                }
                Err(e @ object_store::Error::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried"))
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let Some(rel) = self.relative(location) else {
            return self.local.get_ranges(location, ranges).await;
        };
        let mut last = None;
        for _ in 0..TRIES {
            let at = self.located(location, &rel)?;
            match self.local.get_ranges(&at, ranges).await {
                Ok(bytes) => return Ok(bytes),
                Err(e @ object_store::Error::NotFound { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let root = self.root.clone();
        let local = Arc::clone(&self.local);
        locations
            .map(move |location| {
                let location = location?;
                if location.prefix_matches(&root) {
                    return Err(read_only("delete"));
                }
                Ok(location)
            })
            .and_then(move |location| {
                let local = Arc::clone(&local);
                async move {
                    local.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let rel = match prefix {
            None => None,
            Some(p) => self.relative(p),
        };
        let Some(rel) = rel else {
            return self.local.list(prefix);
        };
        let listed = match self.listed(&rel) {
            Ok(listed) => listed,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let store = Self {
            snapshots: Arc::clone(&self.snapshots),
            root: self.root.clone(),
            local: Arc::clone(&self.local),
        };
        let store = Arc::new(store);
        stream::iter(listed)
            .map(move |(rel, location)| {
                let store = Arc::clone(&store);
                async move { store.meta(&rel, location).await }
            })
            .buffered(16)
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let rel = match prefix {
            None => None,
            Some(p) => self.relative(p),
        };
        let Some(rel) = rel else {
            return self.local.list_with_delimiter(prefix).await;
        };
        let mut common_prefixes = std::collections::BTreeSet::new();
        let mut objects = Vec::new();
        for (file, location) in self.listed(&rel)? {
            let rest = if rel.is_empty() {
                file.as_str()
            } else {
                &file[rel.len() + 1..]
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    let dir = if rel.is_empty() {
                        dir.to_string()
                    } else {
                        format!("{rel}/{dir}")
                    };
                    common_prefixes.insert(dir);
                }
                None => objects.push(self.meta(&file, location).await?),
            }
        }
        Ok(ListResult {
            common_prefixes: common_prefixes
                .into_iter()
                .map(|d| self.root.clone().join_all(&d))
                .collect(),
            objects,
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if self.relative(to).is_some() {
            return Err(read_only("copy"));
        }
        self.local.copy_opts(from, to, options).await
    }
}

fn read_only(operation: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!(
            "{operation}: the lake changes only through flowscope's commits (`flowscope ingest`)"
        )
        .into(),
    }
}
