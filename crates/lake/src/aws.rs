//! The AWS JSON APIs flowscope reads from beside S3: SQS (S3 event notifications) and
//! CloudWatch Logs. Requests are signed with AWS Signature Version 4 (`object_store`'s signer)
//! as the identity the S3 requests use (see [`crate::object`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::CredentialProvider;
use object_store::aws::{AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::{HttpRequest, HttpRequestBody};
use serde_json::Value;

use crate::object::S3Options;

/// Largest answer body read, bytes (SQS answers at most 10 messages of 256 KiB; CloudWatch
/// Logs pages are at most 1 MiB of events).
const MAX_ANSWER: usize = 16 << 20;

/// An AWS service spoken to in its JSON protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon SQS (AWS JSON 1.0, `AmazonSQS.*`).
    Sqs,
    /// Amazon CloudWatch Logs (AWS JSON 1.1, `Logs_20140328.*`).
    Logs,
}

impl Service {
    /// The signing name, also the first label of the endpoint's host.
    fn name(self) -> &'static str {
        match self {
            Service::Sqs => "sqs",
            Service::Logs => "logs",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Service::Sqs => "application/x-amz-json-1.0",
            Service::Logs => "application/x-amz-json-1.1",
        }
    }

    fn target(self, operation: &str) -> String {
        match self {
            Service::Sqs => format!("AmazonSQS.{operation}"),
            Service::Logs => format!("Logs_20140328.{operation}"),
        }
    }
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The operation (`ReceiveMessage`, `FilterLogEvents`, …).
    pub operation: String,
    /// The HTTP status, 0 when no answer came.
    pub status: u16,
    /// AWS's error code (`AccessDenied`, `QueueDoesNotExist`, `ThrottlingException`, …), or
    /// `Transport` when no answer came.
    pub code: String,
    /// AWS's message, or the transport's.
    pub message: String,
}

impl CallError {
    /// Whether trying again later may work: throttling, a server error, no answer.
    pub fn is_transient(&self) -> bool {
        self.status == 0
            || self.status == 429
            || self.status >= 500
            || self.code.contains("Throttl")
            || self.code == "RequestLimitExceeded"
    }

    /// Whether the identity lacks a permission or the credentials are refused.
    pub fn is_denied(&self) -> bool {
        self.status == 403
            || matches!(
                self.code.as_str(),
                "AccessDenied"
                    | "AccessDeniedException"
                    | "InvalidClientTokenId"
                    | "UnrecognizedClientException"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
            )
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 0 {
            write!(f, "{}: {}", self.operation, self.message)
        } else {
            write!(
                f,
                "{}: {} (HTTP {}): {}",
                self.operation, self.code, self.status, self.message
            )
        }
    }
}

impl std::error::Error for CallError {}

/// A signed client of one service in one region.
pub struct Client {
    service: Service,
    credentials: AwsCredentialProvider,
    region: String,
    endpoint: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `service` with the credentials and region `options` lead to (as for S3),
    /// at `options.endpoint_url` when given (else `AWS_ENDPOINT_URL_SQS` or `_LOGS`, else
    /// `AWS_ENDPOINT_URL`), else AWS's regional endpoint.
    ///
    /// # Errors
    /// A message when the credentials cannot be set up.
    pub fn new(service: Service, options: &S3Options) -> Result<Self, String> {
        let (builder, region) = crate::object::builder(options)?;
        // The bucket name only satisfies the builder; the credentials are what is kept.
        let store = builder
            .with_bucket_name("flowscope-credentials")
            .build()
            .map_err(|e| e.to_string())?;
        let endpoint = endpoint(service.name(), options.endpoint_url.as_deref(), &region);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            service,
            credentials: Arc::clone(store.credentials()),
            region,
            endpoint,
            http,
        })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where the requests get their credentials.
    pub fn credentials(&self) -> AwsCredentialProvider {
        Arc::clone(&self.credentials)
    }

    /// Calls `operation` with `input`, waiting at most `timeout` for the answer, and returns
    /// the answer's JSON.
    ///
    /// # Errors
    /// [`CallError`]: AWS's error code and message, or the transport's failure.
    pub async fn call(
        &self,
        operation: &str,
        input: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let fail = |status: u16, code: &str, message: String| CallError {
            operation: operation.to_string(),
            status,
            code: code.to_string(),
            message,
        };
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| fail(0, "Credentials", e.to_string()))?;
        let body = Bytes::from(serde_json::to_vec(input).expect("JSON serialises"));
        let Answer {
            status,
            query_error,
            body: bytes,
        } = post_signed(
            &self.http,
            &credential,
            (self.service.name(), &self.region),
            &self.endpoint,
            &[
                (
                    http::header::CONTENT_TYPE.as_str(),
                    self.service.content_type().to_string(),
                ),
                ("x-amz-target", self.service.target(operation)),
            ],
            body,
            timeout,
        )
        .await
        .map_err(|(status, e)| fail(status, "Transport", e))?;
        let value: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if status >= 300 => {
                    return Err(fail(
                        status,
                        query_error.as_deref().unwrap_or("Unknown"),
                        String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
                    ));
                }
                Err(e) => return Err(fail(status, "Transport", format!("answer not JSON: {e}"))),
            }
        };
        if status >= 300 {
            let code = query_error
                .or_else(|| {
                    value
                        .get("__type")
                        .and_then(Value::as_str)
                        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                })
                .unwrap_or_else(|| "Unknown".to_string());
            let message = value
                .get("message")
                .or_else(|| value.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(fail(status, &code, message));
        }
        Ok(value)
    }
}

/// The longest session asked of STS, and when an assumed role's credentials are renewed: well
/// before they expire, so no request is signed with credentials about to lapse.
const ROLE_SESSION: Duration = Duration::from_secs(3600);
const ROLE_RENEWAL: Duration = Duration::from_secs(45 * 60);

/// Credentials of a role, assumed with STS `AssumeRole` as another identity (the `role_arn`
/// of a source, or of a profile with its `source_profile`), as the AWS CLI does; asked again
/// after [`ROLE_RENEWAL`].
pub(crate) struct AssumedRole {
    base: AwsCredentialProvider,
    role_arn: String,
    external_id: Option<String>,
    region: String,
    endpoint: String,
    http: reqwest::Client,
    held: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Instant)>>,
}

impl fmt::Debug for AssumedRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumedRole")
            .field("role_arn", &self.role_arn)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AssumedRole {
    /// `role_arn`, assumed as `base` through STS in `region` (at `endpoint_url` when given,
    /// else `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else AWS's regional endpoint).
    pub(crate) fn new(
        base: AwsCredentialProvider,
        role_arn: String,
        external_id: Option<String>,
        region: String,
        endpoint_url: Option<&str>,
    ) -> Result<Self, String> {
        let endpoint = endpoint("sts", endpoint_url, &region);
        // Renewed once in 45 minutes: no connection is worth keeping (and none outlives
        // the runtime it was made on).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base,
            role_arn,
            external_id,
            region,
            endpoint,
            http,
            held: tokio::sync::Mutex::new(None),
        })
    }

    /// One `AssumeRole` call (STS's query protocol: a form in, XML out).
    async fn assume(&self) -> Result<AwsCredential, String> {
        let base = self.base.get_credential().await.map_err(|e| {
            format!(
                "no credentials to assume {} with: {}",
                self.role_arn,
                error_chain(&e)
            )
        })?;
        let seconds = ROLE_SESSION.as_secs().to_string();
        let mut form = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", "flowscope"),
            ("DurationSeconds", seconds.as_str()),
        ];
        if let Some(id) = &self.external_id {
            form.push(("ExternalId", id));
        }
        let body: String = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, FORM_VALUE)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let answer = post_signed(
            &self.http,
            &base,
            ("sts", &self.region),
            &self.endpoint,
            &[(
                http::header::CONTENT_TYPE.as_str(),
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            )],
            Bytes::from(body),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(_, e)| format!("AssumeRole {}: {e}", self.role_arn))?;
        if answer.status >= 300 {
            let (code, message) =
                quick_xml::de::from_reader::<_, StsErrorResponse>(&answer.body[..])
                    .map(|e| (e.error.code, e.error.message))
                    .unwrap_or_else(|_| {
                        (
                            "Unknown".to_string(),
                            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
                                .into_owned(),
                        )
                    });
            return Err(format!(
                "AssumeRole {}: {code} (HTTP {}): {message}",
                self.role_arn, answer.status
            ));
        }
        let taken: AssumeRoleResponse = quick_xml::de::from_reader(&answer.body[..])
            .map_err(|e| format!("AssumeRole {}: answer not understood: {e}", self.role_arn))?;
        let c = taken.assume_role_result.credentials;
        Ok(AwsCredential {
            key_id: c.access_key_id,
            secret_key: c.secret_access_key,
            token: Some(c.session_token),
        })
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AssumedRole {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut held = self.held.lock().await;
        if let Some((credential, asked)) = held.as_ref()
            && asked.elapsed() < ROLE_RENEWAL
        {
            return Ok(Arc::clone(credential));
        }
        let asked = Instant::now();
        let credential =
            Arc::new(
                self.assume()
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "S3",
                        source: e.into(),
                    })?,
            );
        *held = Some((Arc::clone(&credential), asked));
        Ok(credential)
    }
}

/// What is escaped in a form value: all but the unreserved characters (RFC 3986).
const FORM_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: SessionCredentials,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsErrorResponse {
    error: StsError,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsError {
    code: String,
    #[serde(default)]
    message: String,
}

/// An answer: its status, the code in `x-amzn-query-error` when there is one, its body.
struct Answer {
    status: u16,
    query_error: Option<String>,
    body: Vec<u8>,
}

/// POSTs `body` to `url`, signed (SigV4) as `credential` for `(service, region)`; the answer's
/// body is read up to [`MAX_ANSWER`] bytes.
///
/// # Errors
/// The status (0 when no answer came) and the transport's failure.
async fn post_signed(
    http: &reqwest::Client,
    credential: &AwsCredential,
    (service, region): (&str, &str),
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, (u16, String)> {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("{url}/"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut request: HttpRequest = request
        .body(HttpRequestBody::from(body.clone()))
        .map_err(|e| (0, e.to_string()))?;
    AwsAuthorizer::new(credential, service, region).authorize(&mut request, None);
    let (parts, _) = request.into_parts();
    let answer = http
        .post(parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| (0, error_chain(&e)))?;
    let status = answer.status().as_u16();
    let query_error = answer
        .headers()
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let body = read_bounded(answer).await.map_err(|e| (status, e))?;
    Ok(Answer {
        status,
        query_error,
        body,
    })
}

/// Where `service`'s requests go, as the AWS CLI decides: `endpoint_url` when given, else
/// `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL`, else AWS's regional endpoint.
pub(crate) fn endpoint(service: &str, endpoint_url: Option<&str>, region: &str) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match endpoint_url
        .map(str::to_string)
        .or_else(|| env(&format!("AWS_ENDPOINT_URL_{}", service.to_uppercase())))
        .or_else(|| env("AWS_ENDPOINT_URL"))
    {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("https://{service}.{region}.amazonaws.com"),
    }
}

/// An error with its causes (reqwest's own message alone says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body of an answer, at most [`MAX_ANSWER`] bytes.
async fn read_bounded(mut answer: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| error_chain(&e))? {
        if bytes.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("answer longer than {MAX_ANSWER} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do_about_them() {
        let e = |status, code: &str| CallError {
            operation: "ReceiveMessage".into(),
            status,
            code: code.into(),
            message: "m".into(),
        };
        assert!(e(400, "ThrottlingException").is_transient());
        assert!(e(503, "ServiceUnavailable").is_transient());
        assert!(e(0, "Transport").is_transient());
        assert!(!e(400, "QueueDoesNotExist").is_transient());
        assert!(e(403, "AccessDenied").is_denied());
        assert!(e(400, "UnrecognizedClientException").is_denied());
        assert_eq!(
            e(400, "QueueDoesNotExist").to_string(),
            "ReceiveMessage: QueueDoesNotExist (HTTP 400): m"
        );
    }
}
