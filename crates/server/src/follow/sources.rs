//! The sources file (`serve --sources sources.toml`): every bucket and log group to follow,
//! each with its own endpoint, region, profile and pace.
//!
//! ```toml
//! [[s3]]
//! url = "s3://flow-logs-prod/vpc"
//! sqs_queue_url = "https://sqs.eu-west-1.amazonaws.com/111122223333/flow-logs"
//! profile = "prod"
//! region = "eu-west-1"
//!
//! [[s3]]
//! url = "s3://flow-logs-dev"
//! interval = "5m"
//!
//! [[s3]]
//! url = "s3://flow-logs-audit/AWSLogs/444455556666/"
//! role_arn = "arn:aws:iam::444455556666:role/flow-logs-reader"
//!
//! [[log_group]]
//! name = "/aws/vpc/flowlogs"
//! log_stream_name_prefix = "eni-"
//! ```
//!
//! Keys are those of the AWS CLI's flags and config file (`endpoint_url`, `region`,
//! `profile`, `role_arn`, `external_id`, `sqs_queue_url`, `log_stream_name_prefix`); a
//! `role_arn` is assumed (STS `AssumeRole`) as the identity the profile or the environment
//! gives. What a source leaves out comes from
//! the command's flags (`--endpoint-url`, `--region`, `--profile`, `--follow-interval`, …).
//! Every mistake is reported with its line and column.

use std::time::Duration;

use flowscope_detect::{At, Error, config_at, toml_error};
use flowscope_lake::object::S3Options;
use flowscope_record::LogFormat;
use serde::Deserialize;

use super::{Follow, LogGroup};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    s3: Vec<S3Source>,
    #[serde(default)]
    log_group: Vec<LogGroupSource>,
}

/// One `[[s3]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Source {
    url: String,
    sqs_queue_url: Option<String>,
    endpoint_url: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    interval: Option<String>,
    lateness: Option<String>,
    rescan: Option<String>,
    visibility_timeout: Option<String>,
}

/// One `[[log_group]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogGroupSource {
    name: String,
    log_stream_name_prefix: Option<String>,
    log_format: Option<String>,
    endpoint_url: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    interval: Option<String>,
    lateness: Option<String>,
}

/// What the command's flags give every source that does not say otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Endpoint, region and profile.
    pub reach: S3Options,
    /// How often each source is read.
    pub interval: Duration,
    /// How late an object or event may arrive.
    pub lateness: Duration,
    /// How often a bucket is listed whole.
    pub rescan: Duration,
    /// How long a queue message stays hidden.
    pub visibility: Duration,
    /// The flow log format of events without a header.
    pub log_format: Option<LogFormat>,
}

/// The sources a file names.
#[derive(Debug, Default)]
pub struct Sources {
    /// Buckets (or prefixes) to follow.
    pub s3: Vec<Follow>,
    /// Log groups to pull.
    pub log_groups: Vec<LogGroup>,
}

impl Sources {
    /// Reads and checks a sources file.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::Config`] naming the line, the column
    /// and what is wrong.
    pub fn load(path: &std::path::Path, defaults: &Defaults) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), defaults)
    }

    /// Parses a sources file's text; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::Config`] for TOML or schema mistakes, URLs that are not `s3://` (or `http(s)://`
    /// for queues and endpoints), durations and formats that do not parse, a source named twice,
    /// a file without sources.
    pub fn parse(text: &str, file: &str, defaults: &Defaults) -> Result<Self, Error> {
        let parsed: File = toml::from_str(text).map_err(|e| toml_error(&e, text, file))?;
        let at = |path: &[At<'_>], message: String| config_at(text, file, path, message);
        if parsed.s3.is_empty() && parsed.log_group.is_empty() {
            return Err(at(
                &[],
                "no sources: add an [[s3]] table (url = \"s3://bucket/prefix\") or a \
                 [[log_group]] table (name = \"/aws/vpc/flowlogs\")"
                    .into(),
            ));
        }
        let mut out = Sources::default();
        let mut names = std::collections::HashSet::new();
        for (i, s) in parsed.s3.iter().enumerate() {
            let key = |k| [At::Key("s3"), At::Index(i), At::Value(k)];
            let mut follow = Follow::new(&s.url).map_err(|e| at(&key("url"), e))?;
            if !names.insert(follow.url.clone()) {
                return Err(at(&key("url"), format!("{} is named twice", s.url)));
            }
            follow.s3 = reached(
                [
                    &s.endpoint_url,
                    &s.region,
                    &s.profile,
                    &s.role_arn,
                    &s.external_id,
                ],
                &defaults.reach,
                |k, m| at(&key(k), m),
            )?;
            if let Some(queue) = &s.sqs_queue_url {
                if !is_http(queue) {
                    return Err(at(
                        &key("sqs_queue_url"),
                        format!(
                            "{queue:?} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
                        ),
                    ));
                }
                follow.queue_url = Some(queue.clone());
            }
            let time = |k: &'static str, v: &Option<String>, d: Duration| {
                duration(v, d).map_err(|m| at(&key(k), m))
            };
            follow.poll = time("interval", &s.interval, defaults.interval)?;
            follow.lateness = time("lateness", &s.lateness, defaults.lateness)?;
            follow.rescan = time("rescan", &s.rescan, defaults.rescan)?;
            follow.visibility = time(
                "visibility_timeout",
                &s.visibility_timeout,
                defaults.visibility,
            )?;
            out.s3.push(follow);
        }
        for (i, g) in parsed.log_group.iter().enumerate() {
            let key = |k| [At::Key("log_group"), At::Index(i), At::Value(k)];
            if g.name.is_empty() || g.name.len() > 512 {
                return Err(at(
                    &key("name"),
                    "a log group's name has 1 to 512 characters".into(),
                ));
            }
            let mut group = LogGroup::new(&g.name);
            group.stream_prefix = g.log_stream_name_prefix.clone().filter(|p| !p.is_empty());
            if !names.insert(group.source()) {
                return Err(at(&key("name"), format!("{} is named twice", g.name)));
            }
            group.options = reached(
                [
                    &g.endpoint_url,
                    &g.region,
                    &g.profile,
                    &g.role_arn,
                    &g.external_id,
                ],
                &defaults.reach,
                |k, m| at(&key(k), m),
            )?;
            group.format = match &g.log_format {
                Some(f) => {
                    Some(LogFormat::parse(f).map_err(|e| at(&key("log_format"), e.to_string()))?)
                }
                None => defaults.log_format.clone(),
            };
            let time = |k: &'static str, v: &Option<String>, d: Duration| {
                duration(v, d).map_err(|m| at(&key(k), m))
            };
            group.poll = time("interval", &g.interval, defaults.interval)?;
            group.lateness = time("lateness", &g.lateness, defaults.lateness)?;
            out.log_groups.push(group);
        }
        Ok(out)
    }
}

/// Whether `arn` is an IAM role's ARN (`arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`).
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts[..], ["arn", partition, "iam", "", account, resource]
        if !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

/// Whether `url` is an `http://` or `https://` URL with a host.
fn is_http(url: &str) -> bool {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// A source's `[endpoint_url, region, profile, role_arn, external_id]`, the first three each
/// else the flags'.
fn reached(
    [endpoint_url, region, profile, role_arn, external_id]: [&Option<String>; 5],
    defaults: &S3Options,
    at: impl Fn(&'static str, String) -> Error,
) -> Result<S3Options, Error> {
    if let Some(url) = endpoint_url
        && !is_http(url)
    {
        return Err(at(
            "endpoint_url",
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    if let Some(region) = region
        && (region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(at(
            "region",
            format!("{region:?} is not a region name like eu-west-1"),
        ));
    }
    if let Some(arn) = role_arn
        && !is_role_arn(arn)
    {
        return Err(at(
            "role_arn",
            format!(
                "{arn:?} is not a role ARN like arn:aws:iam::111122223333:role/flow-logs-reader"
            ),
        ));
    }
    if external_id.is_some() && role_arn.is_none() {
        return Err(at(
            "external_id",
            "an external_id is given to a role: add the role_arn it is for".to_string(),
        ));
    }
    Ok(S3Options {
        role_arn: role_arn.clone(),
        external_id: external_id.clone(),
        endpoint_url: endpoint_url
            .clone()
            .or_else(|| defaults.endpoint_url.clone()),
        region: region.clone().or_else(|| defaults.region.clone()),
        profile: profile.clone().or_else(|| defaults.profile.clone()),
    })
}

/// A duration written like `30s`, `5m`, `1h` or `7d`, else `default`.
fn duration(text: &Option<String>, default: Duration) -> Result<Duration, String> {
    text.as_deref().map_or(Ok(default), parse_duration)
}

/// A positive duration written like `30s`, `5m`, `1h` or `7d` (as the command's flags take
/// them).
///
/// # Errors
/// A message naming the text when it is not one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    flowscope_record::time::parse_duration(text)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a duration like 30s, 5m, 1h or 7d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            reach: S3Options {
                endpoint_url: Some("http://127.0.0.1:9".into()),
                region: Some("us-east-1".into()),
                ..S3Options::default()
            },
            interval: Duration::from_secs(60),
            lateness: Duration::from_secs(3600),
            rescan: Duration::from_secs(900),
            visibility: Duration::from_secs(300),
            log_format: None,
        }
    }

    fn error(text: &str) -> String {
        Sources::parse(text, "sources.toml", &defaults())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn sources_take_the_flags_for_what_they_leave_out() {
        let text = r#"
[[s3]]
url = "s3://prod/vpc"
sqs_queue_url = "https://sqs.eu-west-1.amazonaws.com/111122223333/flow-logs"
region = "eu-west-1"
profile = "prod"
interval = "5m"

[[s3]]
url = "s3://dev"
role_arn = "arn:aws:iam::444455556666:role/flow-logs-reader"
external_id = "flowscope"

[[log_group]]
name = "/aws/vpc/flowlogs"
log_stream_name_prefix = "eni-"
log_format = "${version} ${srcaddr} ${dstaddr}"
lateness = "10m"
"#;
        let s = Sources::parse(text, "sources.toml", &defaults()).unwrap();
        assert_eq!(s.s3.len(), 2);
        assert_eq!(s.s3[0].s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.s3[0].s3.profile.as_deref(), Some("prod"));
        assert_eq!(
            s.s3[0].s3.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(s.s3[0].poll, Duration::from_secs(300));
        assert!(s.s3[0].queue_url.is_some());
        assert_eq!(s.s3[1].s3.region.as_deref(), Some("us-east-1"));
        assert_eq!(s.s3[1].poll, Duration::from_secs(60));
        assert_eq!(s.s3[1].queue_url, None);
        assert_eq!(s.s3[0].s3.role_arn, None);
        assert_eq!(
            s.s3[1].s3.role_arn.as_deref(),
            Some("arn:aws:iam::444455556666:role/flow-logs-reader")
        );
        assert_eq!(s.s3[1].s3.external_id.as_deref(), Some("flowscope"));
        let g = &s.log_groups[0];
        assert_eq!(g.source(), "log-group:/aws/vpc/flowlogs:eni-*");
        assert_eq!(g.lateness, Duration::from_secs(600));
        assert_eq!(g.format.as_ref().unwrap().fields().len(), 3);
    }

    #[test]
    fn every_mistake_is_located() {
        assert_eq!(
            error("[[s3]]\nurl = \"s3://a\"\nregoin = \"x\"\n"),
            "sources.toml:3:1: unknown field `regoin`, expected one of `url`, `sqs_queue_url`, \
             `endpoint_url`, `region`, `profile`, `role_arn`, `external_id`, `interval`, \
             `lateness`, `rescan`, `visibility_timeout`"
        );
        assert_eq!(
            error("[[s3]]\nurl = \"https://a/b\"\n"),
            "sources.toml:2:7: \"https://a/b\" is not an s3://bucket/prefix URL"
        );
        assert_eq!(
            error("[[s3]]\nurl = \"s3://a\"\n\n[[s3]]\nurl = \"s3://a\"\n"),
            "sources.toml:5:7: s3://a is named twice"
        );
        assert_eq!(
            error("[[s3]]\nurl = \"s3://a\"\ninterval = \"soon\"\n"),
            "sources.toml:3:12: \"soon\" is not a duration like 30s, 5m, 1h or 7d"
        );
        assert_eq!(
            error("[[s3]]\nurl = \"s3://a\"\nsqs_queue_url = \"flow-logs\"\n"),
            "sources.toml:3:17: \"flow-logs\" is not a queue URL \
             (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
        );
        assert_eq!(
            error("[[log_group]]\nname = \"g\"\nregion = \"EU West\"\n"),
            "sources.toml:3:10: \"EU West\" is not a region name like eu-west-1"
        );
        assert!(
            error("[[log_group]]\nname = \"g\"\nlog_format = \"${nope}\"\n")
                .starts_with("sources.toml:3:14: ")
        );
        assert_eq!(
            error("[[s3]]\nurl = \"s3://a\"\nrole_arn = \"arn:aws:iam::1:user/x\"\n"),
            "sources.toml:3:12: \"arn:aws:iam::1:user/x\" is not a role ARN like \
             arn:aws:iam::111122223333:role/flow-logs-reader"
        );
        assert_eq!(
            error("[[log_group]]\nname = \"g\"\nexternal_id = \"x\"\n"),
            "sources.toml:3:15: an external_id is given to a role: add the role_arn it is for"
        );
        assert!(error("").starts_with("sources.toml:1:1: no sources"));
        assert!(error("[[s3]\n").starts_with("sources.toml:1:"));
    }
}
