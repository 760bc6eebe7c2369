//! Flow logs in S3 (or any S3-compatible store), through `object_store`.
//!
//! Credentials and region come from where the AWS CLI finds them: the `AWS_*` environment
//! variables (including container and web-identity credentials), else the profile named by
//! `AWS_PROFILE` (default `default`) in `~/.aws/credentials` and `~/.aws/config`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::Runtime;

use crate::error::{Error, Result};
use crate::layout::{is_flow_log_name, is_parquet_name};

/// How to reach an S3-compatible store.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// `--endpoint-url`: an S3-compatible endpoint instead of AWS (`http://` is allowed).
    pub endpoint_url: Option<String>,
    /// The region; otherwise from the environment or profile, else `us-east-1`.
    pub region: Option<String>,
}

/// One bucket, and the runtime its requests run on.
pub struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
    runtime: Runtime,
}

/// An object to read: its URL, size and ETag, and the bucket it is in.
#[derive(Clone)]
pub struct ObjectInput {
    bucket: Arc<Bucket>,
    key: String,
    /// Size in bytes.
    pub size: u64,
    /// The ETag S3 reported (changes whenever the content does).
    pub etag: Option<String>,
}

impl ObjectInput {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket.name, self.key)
    }

    /// Downloads the whole object (flow log objects are at most tens of megabytes).
    ///
    /// # Errors
    /// [`Error::Io`] naming the URL when the request fails.
    pub fn fetch(&self) -> Result<Bytes> {
        let path = ObjectPath::from(self.key.as_str());
        let store = Arc::clone(&self.bucket.store);
        self.bucket
            .runtime
            .block_on(async move { store.get(&path).await?.bytes().await })
            .map_err(|e| Error::io(self.url(), std::io::Error::other(e)))
    }
}

impl PartialEq for ObjectInput {
    fn eq(&self, other: &Self) -> bool {
        self.url() == other.url()
    }
}
impl Eq for ObjectInput {}
impl std::hash::Hash for ObjectInput {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.url().hash(state);
    }
}
impl fmt::Debug for ObjectInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url())
    }
}

/// Splits `s3://bucket/prefix` into bucket and prefix.
pub fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// Lists the flow log objects under an `s3://bucket/prefix` URL (text and Parquet), in key
/// order. Other objects are skipped with a warning.
///
/// # Errors
/// [`Error::Io`] naming the URL when the store cannot be set up or listed.
pub fn list(url: &str, options: &S3Options) -> Result<Vec<ObjectInput>> {
    let fail = |e: &dyn fmt::Display| Error::io(url, std::io::Error::other(e.to_string()));
    let (bucket_name, prefix) =
        parse_url(url).ok_or_else(|| fail(&"not an s3://bucket/prefix URL"))?;
    let bucket = Arc::new(Bucket::connect(bucket_name, options).map_err(|e| fail(&e))?);
    let prefix_path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.trim_end_matches('/')));
    let objects = bucket
        .runtime
        .block_on(
            bucket
                .store
                .list(prefix_path.as_ref())
                .try_collect::<Vec<_>>(),
        )
        .map_err(|e| fail(&e))?;
    let mut inputs = Vec::new();
    for meta in objects {
        let key = meta.location.to_string();
        let as_path = std::path::Path::new(&key);
        if !(is_flow_log_name(as_path) || is_parquet_name(as_path)) {
            tracing::warn!(object = %format!("s3://{bucket_name}/{key}"), "not a flow log object; skipped");
            continue;
        }
        inputs.push(ObjectInput {
            bucket: Arc::clone(&bucket),
            key,
            size: meta.size,
            etag: meta.e_tag,
        });
    }
    inputs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(inputs)
}

impl Bucket {
    /// Connects to `bucket_name` with credentials and region found as the AWS CLI finds them.
    ///
    /// # Errors
    /// A message when the store or its runtime cannot be set up.
    pub fn connect(bucket_name: &str, options: &S3Options) -> std::result::Result<Self, String> {
        let fail = |e: &dyn fmt::Display| e.to_string();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket_name);
        let profile = profile_settings();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if env("AWS_ACCESS_KEY_ID").is_none() {
            if let Some(key) = profile.get("aws_access_key_id") {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = profile.get("aws_secret_access_key") {
                builder = builder.with_secret_access_key(secret);
            }
            if let Some(token) = profile.get("aws_session_token") {
                builder = builder.with_token(token);
            }
        }
        let region = options
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| profile.get("region").cloned())
            .unwrap_or_else(|| "us-east-1".to_string());
        builder = builder.with_region(region);
        if let Some(endpoint) = &options.endpoint_url {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| fail(&e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| fail(&e))?;
        Ok(Bucket {
            name: bucket_name.to_string(),
            store: Arc::new(store),
            runtime,
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uploads `body` as `key` (one PUT: the object appears whole or not at all).
    ///
    /// # Errors
    /// [`Error::Io`] naming the URL when the upload fails.
    pub fn put(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let path = ObjectPath::from(key);
        self.runtime
            .block_on(self.store.put(&path, object_store::PutPayload::from(body)))
            .map(|_| ())
            .map_err(|e| {
                Error::io(
                    format!("s3://{}/{key}", self.name),
                    std::io::Error::other(e.to_string()),
                )
            })
    }
}

/// The settings of the AWS profile in use, from `~/.aws/credentials` then `~/.aws/config`.
fn profile_settings() -> HashMap<String, String> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map_or_else(|| home.join(".aws/credentials"), PathBuf::from);
    let config =
        std::env::var_os("AWS_CONFIG_FILE").map_or_else(|| home.join(".aws/config"), PathBuf::from);
    let mut settings = HashMap::new();
    // In `config`, profiles other than default are written `[profile name]`.
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    for (path, section) in [(credentials, profile.clone()), (config, config_section)] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for (key, value) in ini_section(&text, &section) {
            settings.entry(key).or_insert(value);
        }
    }
    settings
}

/// The `key = value` pairs of one `[section]` of an INI file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            pairs.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://bucket/AWSLogs/1/"),
            Some(("bucket", "AWSLogs/1/"))
        );
        assert_eq!(parse_url("s3://bucket"), Some(("bucket", "")));
        assert_eq!(parse_url("s3:///x"), None);
        assert_eq!(parse_url("/local/path"), None);
    }

    #[test]
    fn profiles_are_read_from_ini_sections() {
        let text = "[default]\naws_access_key_id = AKIA1\n\n[profile dev]\nregion=eu-west-1\n# c\nAWS_Secret_Access_Key = s\n";
        assert_eq!(
            ini_section(text, "default"),
            [("aws_access_key_id".into(), "AKIA1".into())]
        );
        assert_eq!(
            ini_section(text, "profile dev"),
            [
                ("region".into(), "eu-west-1".into()),
                ("aws_secret_access_key".into(), "s".into())
            ]
        );
    }
}
