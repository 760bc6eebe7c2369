//! Flow logs in S3 (or any S3-compatible store), through `object_store`.
//!
//! Credentials and region come from where the AWS CLI finds them: the `AWS_*` environment
//! variables (including container and web-identity credentials), else the profile named by
//! `AWS_PROFILE` (default `default`) in `~/.aws/credentials` and `~/.aws/config`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredentialProvider};
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
    /// The AWS profile whose credentials and region are used (else `AWS_PROFILE`, else
    /// `default`), when the `AWS_*` variables do not give them. A profile with `role_arn`
    /// (and `source_profile` or `credential_source`) assumes that role, as the AWS CLI does.
    pub profile: Option<String>,
    /// A role to assume (STS `AssumeRole`) as the identity the other settings give: for a
    /// bucket in another account.
    pub role_arn: Option<String>,
    /// The external ID the role's trust policy asks for, if any.
    pub external_id: Option<String>,
}

/// The runtime the blocking calls ([`ObjectInput::fetch`], [`list`], [`Bucket::put`]) run
/// their requests on: one for the process, so no bucket owns (and drops) one.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flowscope-s3")
            .enable_all()
            .build()
            .expect("the threads of the S3 runtime can be started")
    })
}

/// One bucket of an S3-compatible store.
pub struct Bucket {
    name: String,
    s3: Arc<AmazonS3>,
    region: String,
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
    /// The content, once [`prefetch`](Self::prefetch) downloaded it.
    fetched: Option<Bytes>,
}

impl ObjectInput {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket.name, self.key)
    }

    /// The object's key in its bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key the lake's manifest remembers the object by (from `AWSLogs/` on, when the key
    /// has that folder).
    pub fn source_key(&self) -> String {
        crate::ingest::aws_relative(self.url())
    }

    /// Downloads the whole object (flow log objects are at most tens of megabytes). Blocks:
    /// call it outside async code (or inside `block_in_place`).
    ///
    /// # Errors
    /// [`Error::Io`] naming the URL when the request fails (kind `NotFound` when the object
    /// is missing).
    pub fn fetch(&self) -> Result<Bytes> {
        if let Some(bytes) = &self.fetched {
            return Ok(bytes.clone());
        }
        let path = ObjectPath::from(self.key.as_str());
        let store = Arc::clone(&self.bucket.s3);
        runtime()
            .block_on(async move { store.get(&path).await?.bytes().await })
            .map_err(|e| Error::io(self.url(), io_error(&self.bucket.name, e)))
    }
}

impl ObjectInput {
    /// Downloads the object now and keeps its content, so that reading it later
    /// ([`fetch`](Self::fetch)) makes no request: a server downloads before it takes the
    /// lake's lock. A failure is left for that later read to report. Blocks, as `fetch` does.
    pub fn prefetch(mut self) -> Self {
        if self.fetched.is_none()
            && let Ok(bytes) = self.fetch()
        {
            self.fetched = Some(bytes);
        }
        self
    }
}

/// An `object_store` error as an I/O error, `NotFound` kept, in one sentence ([`describe`]).
fn io_error(bucket: &str, e: object_store::Error) -> std::io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, describe(bucket, &e))
}

/// A store's error in one sentence: what S3's answer said (its error code, in words for the
/// common ones) rather than the XML it came in, else the error's first line.
pub fn describe(bucket: &str, error: &dyn fmt::Display) -> String {
    let text = error.to_string();
    let tag = |name: &str| {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        let i = text.find(&open)? + open.len();
        let j = text[i..].find(&close)? + i;
        Some(text[i..j].trim().to_string())
    };
    let first = text.lines().next().unwrap_or_default().trim();
    match (tag("Code").as_deref(), tag("Message")) {
        (Some("NoSuchBucket"), _) => format!(
            "the bucket `{bucket}` does not exist (S3 answered NoSuchBucket): check its name, \
             and the Region or --endpoint-url"
        ),
        (Some("AccessDenied"), _) => format!(
            "access denied to the bucket `{bucket}` (S3 answered AccessDenied): the credentials \
             in use need s3:ListBucket and s3:GetObject on it"
        ),
        (Some(code @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch")), _) => format!(
            "S3 refused the credentials ({code}): check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or the profile"
        ),
        (Some(code), Some(message)) => format!("S3 answered {code}: {message}"),
        (Some(code), None) => format!("S3 answered {code}"),
        // No credentials in the environment or a profile: the chain's last resort, the
        // instance metadata service, answered (or was not there) instead of S3.
        _ if text.contains("169.254.169.254") || text.contains("169.254.170.2") => {
            let first: String = first.chars().take(200).collect();
            format!(
                "no AWS credentials in the environment or a profile, and the instance or task \
                 role's credential endpoint did not give any: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in ~/.aws ({first})"
            )
        }
        _ => match first.find("<?xml") {
            Some(i) => first[..i].trim_end_matches([':', ' ']).to_string(),
            None => first.chars().take(300).collect(),
        },
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
    runtime()
        .block_on(bucket.list_after(prefix, None, ""))
        .map_err(|e| fail(&describe(bucket_name, &e)))
}

/// Whether a key names a flow log object (text or Parquet), as a walk of a folder judges it.
pub fn is_flow_log_key(key: &str) -> bool {
    let as_path = std::path::Path::new(key);
    is_flow_log_name(as_path) || is_parquet_name(as_path)
}

impl Bucket {
    /// Connects to `bucket_name` with credentials and region found as the AWS CLI finds them.
    ///
    /// # Errors
    /// A message when the store or its runtime cannot be set up.
    pub fn connect(bucket_name: &str, options: &S3Options) -> std::result::Result<Self, String> {
        let (builder, region) = builder(options)?;
        let store = builder
            .with_bucket_name(bucket_name)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Bucket {
            name: bucket_name.to_string(),
            s3: Arc::new(store),
            region,
        })
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where the bucket's requests get their credentials (for other services' requests made
    /// as the same identity).
    pub fn credentials(&self) -> AwsCredentialProvider {
        Arc::clone(self.s3.credentials())
    }

    /// The flow log objects (text or Parquet; other objects are skipped with a warning) under
    /// `prefix` (a folder, or the whole bucket when empty), in key order: all of them, or
    /// with `start_after` only the keys after it and only while they begin with `within`.
    ///
    /// # Errors
    /// The store's error when the listing fails.
    pub async fn list_after(
        self: &Arc<Self>,
        prefix: &str,
        start_after: Option<&str>,
        within: &str,
    ) -> std::result::Result<Vec<ObjectInput>, object_store::Error> {
        let prefix_path =
            (!prefix.is_empty()).then(|| ObjectPath::from(prefix.trim_end_matches('/')));
        let mut listing = match start_after {
            Some(offset) => self
                .s3
                .list_with_offset(prefix_path.as_ref(), &ObjectPath::from(offset)),
            None => self.s3.list(prefix_path.as_ref()),
        };
        let mut inputs = Vec::new();
        while let Some(meta) = listing.try_next().await? {
            let key = meta.location.to_string();
            if !key.starts_with(within) {
                // Listings come in key order: nothing further begins with `within`.
                break;
            }
            if !is_flow_log_key(&key) {
                tracing::warn!(object = %format!("s3://{}/{key}", self.name), "not a flow log object; skipped");
                continue;
            }
            inputs.push(ObjectInput {
                bucket: Arc::clone(self),
                key,
                size: meta.size,
                etag: meta.e_tag,
                fetched: None,
            });
        }
        inputs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(inputs)
    }

    /// The object at `key`, or `None` when there is none.
    ///
    /// # Errors
    /// The store's error when the request fails otherwise, or when `key` is one the store's
    /// paths cannot name as it is (an empty or `.` segment, a character it would encode): such
    /// a key would be asked for as another, and found missing.
    pub async fn head(
        self: &Arc<Self>,
        key: &str,
    ) -> std::result::Result<Option<ObjectInput>, object_store::Error> {
        let path = ObjectPath::parse(key).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        if path.as_ref() != key {
            return Err(object_store::Error::Generic {
                store: "S3",
                source: format!("the key {key:?} cannot be asked for as it is").into(),
            });
        }
        match self.s3.head(&path).await {
            Ok(meta) => Ok(Some(ObjectInput {
                bucket: Arc::clone(self),
                key: key.to_string(),
                size: meta.size,
                etag: meta.e_tag,
                fetched: None,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads `body` as `key` (one PUT: the object appears whole or not at all).
    ///
    /// # Errors
    /// [`Error::Io`] naming the URL when the upload fails.
    pub fn put(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let path = ObjectPath::from(key);
        runtime()
            .block_on(self.s3.put(&path, object_store::PutPayload::from(body)))
            .map(|_| ())
            .map_err(|e| {
                Error::io(
                    format!("s3://{}/{key}", self.name),
                    std::io::Error::other(e.to_string()),
                )
            })
    }
}

/// A store builder with the credentials and region found as the AWS CLI finds them (the
/// `AWS_*` variables, else the profile; a role assumed when the options or the profile name
/// one), and the region chosen.
///
/// # Errors
/// A message when a role's identity cannot be set up, or profiles name roles in a loop.
pub(crate) fn builder(
    options: &S3Options,
) -> std::result::Result<(AmazonS3Builder, String), String> {
    let settings = profile_settings(options.profile.as_deref());
    identity(options, &settings, options.profile.is_some(), 0)
}

/// The role `options` lead to assuming (theirs, else their profile's `role_arn`), if any.
pub fn role_of(options: &S3Options) -> Option<String> {
    options.role_arn.clone().or_else(|| {
        profile_settings(options.profile.as_deref())
            .get("role_arn")
            .cloned()
    })
}

/// The longest chain of roles followed (a profile's role whose `source_profile` has a role …).
const MAX_ROLE_CHAIN: usize = 4;

/// [`builder`] with the profile's `settings` read; `named` when the profile was chosen for this
/// source (its keys then win over the environment's).
fn identity(
    options: &S3Options,
    profile: &HashMap<String, String>,
    named: bool,
    depth: usize,
) -> std::result::Result<(AmazonS3Builder, String), String> {
    if depth > MAX_ROLE_CHAIN {
        return Err(format!(
            "more than {MAX_ROLE_CHAIN} roles to assume in a row: do the profiles' \
             source_profile settings go round in a loop?"
        ));
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = options
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| profile.get("region").cloned())
        .unwrap_or_else(|| "us-east-1".to_string());
    let mut builder = AmazonS3Builder::from_env().with_region(&region);
    // As the AWS CLI: --endpoint-url, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL.
    let endpoint = options
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    if let Some(endpoint) = &endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    let unroled = |profile| S3Options {
        profile,
        role_arn: None,
        external_id: None,
        region: Some(region.clone()),
        ..options.clone()
    };
    // The role and the identity that assumes it: the source's role as its profile (or the
    // environment), else the profile's role as its `source_profile` (or, with
    // `credential_source`, the environment).
    let role = if let Some(arn) = &options.role_arn {
        let base = identity(&unroled(options.profile.clone()), profile, named, depth + 1)?;
        Some((arn.clone(), options.external_id.clone(), base))
    } else if let Some(arn) = profile.get("role_arn") {
        let base = match profile.get("source_profile") {
            Some(source) => identity(
                &unroled(Some(source.clone())),
                &profile_settings(Some(source)),
                true,
                depth + 1,
            )?,
            None => identity(&unroled(None), &HashMap::new(), false, depth + 1)?,
        };
        Some((arn.clone(), profile.get("external_id").cloned(), base))
    } else {
        None
    };
    match role {
        Some((arn, external_id, (base, _))) => {
            // The bucket name only satisfies the builder; the credentials are what is kept.
            let base = base
                .with_bucket_name("flowscope-credentials")
                .build()
                .map_err(|e| e.to_string())?;
            let assumed = crate::aws::AssumedRole::new(
                Arc::clone(base.credentials()),
                arn,
                external_id,
                region.clone(),
                options
                    .endpoint_url
                    .clone()
                    .or_else(|| env("AWS_ENDPOINT_URL_STS"))
                    .or_else(|| env("AWS_ENDPOINT_URL"))
                    .as_deref(),
            )?;
            builder = builder.with_credentials(Arc::new(assumed));
        }
        // A profile named for this source wins over the environment's keys.
        None if named || env("AWS_ACCESS_KEY_ID").is_none() => {
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
        None => {}
    }
    Ok((builder, region))
}

/// The settings of the AWS profile in use (`profile`, else `AWS_PROFILE`, else `default`),
/// from `~/.aws/credentials` then `~/.aws/config`.
fn profile_settings(profile: Option<&str>) -> HashMap<String, String> {
    let profile = profile
        .map(str::to_string)
        .unwrap_or_else(|| std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string()));
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
    fn errors_read_as_one_sentence() {
        // What object_store says when no credentials are set and the metadata service refuses.
        let none = "Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token \
                    in 2.2ms - Server returned non-2xx status code: 403 Forbidden: resolve_deny";
        let said = describe("my-bucket", &none);
        assert!(
            said.starts_with("no AWS credentials in the environment"),
            "{said}"
        );
        assert!(
            said.contains("AWS_PROFILE") && said.contains("403 Forbidden"),
            "{said}"
        );
        let denied = "Client error with status 403 Forbidden: <?xml version=\"1.0\"?>\
                      <Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert!(describe("b", &denied).starts_with("access denied to the bucket `b`"));
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
