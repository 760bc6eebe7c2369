//! Finding the files a command was pointed at.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One place flow log text is read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// A local file, plain or gzip.
    File(PathBuf),
    /// Standard input, plain or gzip.
    Stdin,
    /// An object in S3 or an S3-compatible store.
    Object(crate::object::ObjectInput),
}

impl Input {
    /// The name used in messages: the path, or `-` for standard input.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::File(path) => write!(f, "{}", path.display()),
            Input::Stdin => f.write_str("-"),
            Input::Object(object) => f.write_str(&object.url()),
        }
    }
}

pub use crate::layout::{is_flow_log_name, is_parquet_name};

/// What `flowscope ingest` takes: `s3://bucket/prefix` URLs are listed (with `s3`), everything
/// else is expanded as [`expand_with`] does, Parquet included.
///
/// # Errors
/// As [`crate::object::list`] and [`expand_with`].
pub fn resolve(sources: &[String], s3: &crate::object::S3Options) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for source in sources {
        if source.starts_with("s3://") {
            inputs.extend(
                crate::object::list(source, s3)?
                    .into_iter()
                    .map(Input::Object),
            );
        } else {
            inputs.extend(expand_with(std::slice::from_ref(source), true)?);
        }
    }
    Ok(inputs)
}

/// Expands command-line arguments into inputs: `-` is standard input, a directory is walked
/// recursively (in name order), a pattern with `*`, `?` or `[` that names no file is a glob,
/// anything else is a file. Walks take text flow logs, and Parquet files too when `parquet`.
///
/// # Errors
/// [`Error::Io`] naming the argument when it does not exist, a glob matches nothing, or a
/// directory cannot be listed.
pub fn expand_with(args: &[impl AsRef<str>], parquet: bool) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for arg in args {
        let arg = arg.as_ref();
        if arg == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = PathBuf::from(arg);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if arg.contains(['*', '?', '[']) && e.kind() == std::io::ErrorKind::NotFound => {
                let before = inputs.len();
                glob_into(arg, parquet, &mut inputs)?;
                if inputs.len() == before {
                    return Err(Error::io(
                        arg,
                        std::io::Error::new(e.kind(), "no file matches"),
                    ));
                }
                continue;
            }
            Err(e) => return Err(Error::io(arg, e)),
        };
        if meta.is_dir() {
            walk(&path, parquet, &mut inputs, &mut Vec::new())?;
        } else {
            inputs.push(Input::File(path));
        }
    }
    Ok(inputs)
}

/// The metadata of a file that is to be read: a FIFO, socket or device is refused (opening a
/// FIFO would wait forever for a writer), so it becomes a located, counted failure.
///
/// # Errors
/// [`Error::Io`] naming the path when it cannot be looked at or is not a regular file.
pub fn regular_file(path: &Path) -> Result<fs::Metadata> {
    let name = path.display().to_string();
    let meta = fs::metadata(path).map_err(|e| Error::io(&name, e))?;
    if !meta.is_file() {
        return Err(Error::io(
            name,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, socket or device)",
            ),
        ));
    }
    Ok(meta)
}

/// [`expand_with`] for text flow logs only.
///
/// # Errors
/// As [`expand_with`].
pub fn expand(args: &[impl AsRef<str>]) -> Result<Vec<Input>> {
    expand_with(args, false)
}

fn glob_into(pattern: &str, parquet: bool, inputs: &mut Vec<Input>) -> Result<()> {
    let bad = |e: glob::PatternError| {
        Error::io(
            pattern,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        )
    };
    for entry in glob::glob(pattern).map_err(bad)? {
        let path = entry.map_err(|e| Error::io(pattern, e.into()))?;
        if path.is_dir() {
            walk(&path, parquet, inputs, &mut Vec::new())?;
        } else {
            inputs.push(Input::File(path));
        }
    }
    Ok(())
}

/// Walks `dir`; `above` holds the folders being walked (device, inode), so a symlink back to
/// one of them is not followed round and round.
fn walk(
    dir: &Path,
    parquet: bool,
    inputs: &mut Vec<Input>,
    above: &mut Vec<(u64, u64)>,
) -> Result<()> {
    let listing = |e| Error::io(dir.display().to_string(), e);
    let id = folder_id(&fs::metadata(dir).map_err(listing)?);
    if above.contains(&id) {
        tracing::warn!(path = %dir.display(), "a link back to a folder being walked; not followed");
        return Ok(());
    }
    above.push(id);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        entries.push(entry.map_err(listing)?.path());
    }
    entries.sort();
    for path in entries {
        let wanted = is_flow_log_name(&path) || (parquet && is_parquet_name(&path));
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // A dangling link or a link loop: if it is named like a flow log, reading it reports
            // the error, located and counted; the walk goes on.
            Err(e) => {
                if wanted {
                    inputs.push(Input::File(path));
                } else {
                    tracing::warn!(path = %path.display(), error = %e, "cannot look at it; skipped");
                }
                continue;
            }
        };
        if meta.is_dir() {
            walk(&path, parquet, inputs, above)?;
        } else if wanted {
            inputs.push(Input::File(path));
        } else {
            tracing::warn!(path = %path.display(), "not a flow log file name; skipped");
        }
    }
    above.pop();
    Ok(())
}

#[cfg(unix)]
fn folder_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn folder_id(_meta: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_like_flow_logs() {
        for yes in [
            "a.log",
            "a.log.gz",
            "x/b.txt",
            "123_vpcflowlogs_us-east-1_fl-1_20180620T1620Z_fe123456.log.gz",
        ] {
            assert!(is_flow_log_name(Path::new(yes)), "{yes}");
        }
        for no in ["README", "a.parquet", ".hidden.log", "a.gz", "a.json"] {
            assert!(!is_flow_log_name(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn directories_are_walked_in_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for name in ["b/c/z.log.gz", "a.log", "b/readme.md", "b/y.txt"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let inputs = expand(&[dir.path().to_str().unwrap(), "-"]).unwrap();
        let names: Vec<String> = inputs
            .iter()
            .map(|i| match i {
                Input::File(p) => p.strip_prefix(dir.path()).unwrap().display().to_string(),
                other => other.name(),
            })
            .collect();
        assert_eq!(names, ["a.log", "b/c/z.log.gz", "b/y.txt", "-"]);
    }

    #[test]
    fn globs_expand_and_must_match() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.log.gz", "b.log.gz", "c.txt"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let pattern = format!("{}/*.log.gz", dir.path().display());
        assert_eq!(expand(&[pattern.as_str()]).unwrap().len(), 2);
        let none = format!("{}/*.nothing", dir.path().display());
        assert!(
            expand(&[none.as_str()])
                .unwrap_err()
                .to_string()
                .contains("no file matches")
        );
    }

    #[cfg(unix)]
    #[test]
    fn odd_entries_become_located_failures_and_the_walk_goes_on() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.log"), "").unwrap();
        std::os::unix::fs::symlink(d.join("gone.log"), d.join("dangling.log")).unwrap();
        std::os::unix::fs::symlink(d.join("loop2.log"), d.join("loop1.log")).unwrap();
        std::os::unix::fs::symlink(d.join("loop1.log"), d.join("loop2.log")).unwrap();
        std::os::unix::fs::symlink(d, d.join("back")).unwrap();
        let fifo = d.join("pipe.log");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let odd = d.join(std::ffi::OsStr::from_bytes(b"z\xff.log"));
        fs::write(&odd, "").unwrap();
        let inputs = expand(&[d.to_str().unwrap()]).unwrap();
        assert_eq!(inputs.len(), 6, "{inputs:?}");
        let mut failures = Vec::new();
        for input in &inputs {
            let Input::File(path) = input else { panic!() };
            if let Err(e) = regular_file(path) {
                failures.push(e.to_string());
            }
        }
        assert_eq!(failures.len(), 4, "{failures:?}");
        assert!(
            failures
                .iter()
                .any(|f| f.contains("dangling.log") && f.contains("No such file"))
        );
        assert!(
            failures
                .iter()
                .any(|f| f.contains("pipe.log") && f.contains("not a regular file"))
        );
        assert!(failures.iter().any(|f| f.contains("loop1.log")));
    }

    #[test]
    fn a_missing_input_is_named() {
        let err = expand(&["/no/such/flowlogs.log"]).unwrap_err().to_string();
        assert!(err.starts_with("/no/such/flowlogs.log: "), "{err}");
    }
}
