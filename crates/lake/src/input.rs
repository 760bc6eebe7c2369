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

/// Whether a file found while walking a directory looks like flow log text.
///
/// Files named on the command line are always read; inside directories only `.log`, `.txt` and
/// their `.gz` forms are, so a `README` or a `.parquet` beside the logs is not mistaken for one.
pub fn is_flow_log_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') {
        return false;
    }
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.ends_with(".log") || name.ends_with(".txt")
}

/// Whether a file found while walking a directory is an AWS Parquet flow log (`.parquet`).
pub fn is_parquet_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "parquet")
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
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
            walk(&path, parquet, &mut inputs)?;
        } else {
            inputs.push(Input::File(path));
        }
    }
    Ok(inputs)
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
            walk(&path, parquet, inputs)?;
        } else {
            inputs.push(Input::File(path));
        }
    }
    Ok(())
}

fn walk(dir: &Path, parquet: bool, inputs: &mut Vec<Input>) -> Result<()> {
    let listing = |e| Error::io(dir.display().to_string(), e);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        entries.push(entry.map_err(listing)?.path());
    }
    entries.sort();
    for path in entries {
        let meta = fs::metadata(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        if meta.is_dir() {
            walk(&path, parquet, inputs)?;
        } else if is_flow_log_name(&path) || (parquet && is_parquet_name(&path)) {
            inputs.push(Input::File(path));
        } else {
            tracing::warn!(path = %path.display(), "not a flow log file name; skipped");
        }
    }
    Ok(())
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

    #[test]
    fn a_missing_input_is_named() {
        let err = expand(&["/no/such/flowlogs.log"]).unwrap_err().to_string();
        assert!(err.starts_with("/no/such/flowlogs.log: "), "{err}");
    }
}
