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

/// Expands command-line arguments into inputs: `-` is standard input, a directory is walked
/// recursively (in name order), anything else is a file.
///
/// # Errors
/// [`Error::Io`] naming the argument when it does not exist or a directory cannot be listed.
pub fn expand(args: &[impl AsRef<str>]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for arg in args {
        let arg = arg.as_ref();
        if arg == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let path = PathBuf::from(arg);
        let meta = fs::metadata(&path).map_err(|e| Error::io(arg, e))?;
        if meta.is_dir() {
            walk(&path, &mut inputs)?;
        } else {
            inputs.push(Input::File(path));
        }
    }
    Ok(inputs)
}

fn walk(dir: &Path, inputs: &mut Vec<Input>) -> Result<()> {
    let listing = |e| Error::io(dir.display().to_string(), e);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        entries.push(entry.map_err(listing)?.path());
    }
    entries.sort();
    for path in entries {
        let meta = fs::metadata(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        if meta.is_dir() {
            walk(&path, inputs)?;
        } else if is_flow_log_name(&path) {
            inputs.push(Input::File(path));
        } else {
            tracing::debug!(path = %path.display(), "not a flow log file name; skipped");
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
                Input::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(names, ["a.log", "b/c/z.log.gz", "b/y.txt", "-"]);
    }

    #[test]
    fn a_missing_input_is_named() {
        let err = expand(&["/no/such/flowlogs.log"]).unwrap_err().to_string();
        assert!(err.starts_with("/no/such/flowlogs.log: "), "{err}");
    }
}
