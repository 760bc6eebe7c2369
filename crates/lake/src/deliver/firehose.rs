//! Records posted to an HTTP endpoint as Amazon Data Firehose posts them.
//!
//! Each request carries up to [`FirehoseSettings::max_records`] records (one flow log line,
//! newline-terminated, per record, base64 in `data`), with the protocol headers and a request ID
//! that stays the same across retries of the batch. Only `200` with a body echoing the request
//! ID is success; `413` fails the batch at once; anything else (or no answer) is retried with
//! exponential backoff (1 s doubling, ±15 % jitter, at most 120 s apart) until the retry duration
//! is spent.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{Delivery, DeliveryReport, Kind, Window, lines_of};
use crate::error::{Error, Result};

/// How to reach the endpoint.
#[derive(Debug, Clone)]
pub struct FirehoseSettings {
    /// The endpoint URL.
    pub url: String,
    /// `X-Amz-Firehose-Access-Key`.
    pub access_key: Option<String>,
    /// `X-Amz-Firehose-Source-Arn`.
    pub source_arn: String,
    /// `X-Amz-Firehose-Common-Attributes`.
    pub common_attributes: Vec<(String, String)>,
    /// gzip request bodies.
    pub gzip: bool,
    /// How long to keep retrying a batch.
    pub retry_duration: Duration,
    /// The first backoff (Firehose: 1 s).
    pub initial_backoff: Duration,
    /// Records per request (Firehose: up to 10,000).
    pub max_records: usize,
    /// Seed for request IDs (the flow log ID), so runs are reproducible.
    pub id_seed: String,
}

/// The body of a Firehose HTTP endpoint delivery request: what Firehose (and this sender) posts
/// and what an endpoint (the server) reads. Fields in the order they are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseBody {
    /// The records.
    pub records: Vec<FirehoseRecord>,
    /// The request's ID, the same on every retry of the batch.
    pub request_id: String,
    /// When the request was made, ms since the epoch (a number from Firehose; an endpoint takes
    /// any value, or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Value>,
}

/// One record of a [`FirehoseBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirehoseRecord {
    /// The record's bytes, base64 (here one flow log line with its newline).
    pub data: String,
}

impl FirehoseRecord {
    /// The record's bytes (surrounding white space in the base64 text is ignored).
    ///
    /// # Errors
    /// When `data` is not base64.
    pub fn decode(&self) -> std::result::Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(self.data.trim())
    }
}

/// An endpoint's answer: the request's ID and a time, with a message on failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirehoseReply {
    /// Why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The ID of the request answered.
    pub request_id: String,
    /// When it was answered, ms since the epoch (a number; a sender takes any value, or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<serde_json::Value>,
}

/// Posts records to one endpoint.
pub struct FirehoseDelivery {
    settings: FirehoseSettings,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    pending: Vec<String>,
    batch: u64,
    jitter: u64,
    report: DeliveryReport,
}

impl FirehoseDelivery {
    /// A client for `settings`.
    ///
    /// # Errors
    /// When the HTTP client cannot be set up.
    pub fn new(settings: FirehoseSettings) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::io(&settings.url, std::io::Error::other(e.to_string()))
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(&e))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(&e))?;
        let jitter = xxh3_64(settings.id_seed.as_bytes());
        Ok(Self {
            settings,
            client,
            runtime,
            pending: Vec::new(),
            batch: 0,
            jitter,
            report: DeliveryReport::default(),
        })
    }

    /// Queues flow log lines (no trailing newline), posting full batches; `now_ms` is the
    /// request timestamp.
    ///
    /// # Errors
    /// When a batch fails for good.
    pub fn send<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a str>,
        now_ms: i64,
    ) -> Result<()> {
        for line in lines {
            self.pending.push(line.to_string());
            if self.pending.len() >= self.settings.max_records {
                self.post(now_ms)?;
            }
        }
        Ok(())
    }

    /// Posts what is queued.
    ///
    /// # Errors
    /// When the batch fails for good.
    pub fn flush(&mut self, now_ms: i64) -> Result<()> {
        if !self.pending.is_empty() {
            self.post(now_ms)?;
        }
        Ok(())
    }

    /// Posts what is queued and reports.
    ///
    /// # Errors
    /// When the last batch fails for good.
    pub fn finish(mut self, now_ms: i64) -> Result<DeliveryReport> {
        self.flush(now_ms)?;
        Ok(self.report)
    }

    fn request_id(&self) -> String {
        let a = xxh3_64(format!("{}/{}", self.settings.id_seed, self.batch).as_bytes());
        let b = xxh3_64(format!("{}#{}", self.settings.id_seed, self.batch).as_bytes());
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    fn post(&mut self, now_ms: i64) -> Result<()> {
        let records = self
            .pending
            .iter()
            .map(|line| FirehoseRecord {
                data: STANDARD.encode(format!("{line}\n")),
            })
            .collect();
        let request_id = self.request_id();
        let body = FirehoseBody {
            records,
            request_id: request_id.clone(),
            timestamp: Some(now_ms.into()),
        };
        let mut bytes = serde_json::to_vec(&body).expect("JSON of strings");
        let url = self.settings.url.clone();
        let fail = |reason: String| Error::io(&url, std::io::Error::other(reason));
        if self.settings.gzip {
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(&bytes).map_err(|e| fail(e.to_string()))?;
            bytes = gz.finish().map_err(|e| fail(e.to_string()))?;
        }
        let attributes = serde_json::json!({
            "commonAttributes": self.settings.common_attributes.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<String, serde_json::Value>>()
        });
        let started = Instant::now();
        let mut backoff = self.settings.initial_backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut request = self
                .client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-Amz-Firehose-Protocol-Version", "1.0")
                .header("X-Amz-Firehose-Request-Id", &request_id)
                .header("X-Amz-Firehose-Source-Arn", &self.settings.source_arn)
                .header("X-Amz-Firehose-Common-Attributes", attributes.to_string())
                .body(bytes.clone());
            if let Some(key) = &self.settings.access_key {
                request = request.header("X-Amz-Firehose-Access-Key", key);
            }
            if self.settings.gzip {
                request = request.header("Content-Encoding", "gzip");
            }
            let outcome = self.runtime.block_on(async {
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let text = response.text().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, text))
            });
            let problem = match outcome {
                Ok((200, text)) => match serde_json::from_str::<FirehoseReply>(&text) {
                    Ok(answer) if answer.request_id == request_id => break,
                    Ok(answer) => format!(
                        "answer names request {} instead of {request_id}",
                        answer.request_id
                    ),
                    Err(e) => format!("200 with a body that is not Firehose's answer: {e}"),
                },
                Ok((413, _)) => {
                    return Err(fail(format!(
                        "request {request_id} refused with 413 (payload too large); {} records not delivered",
                        self.pending.len()
                    )));
                }
                Ok((status, text)) => format!(
                    "status {status}: {}",
                    text.chars().take(200).collect::<String>()
                ),
                Err(e) => e,
            };
            if started.elapsed() + backoff > self.settings.retry_duration {
                return Err(fail(format!(
                    "request {request_id} failed {attempts} times over {:.0?}; last: {problem}",
                    started.elapsed()
                )));
            }
            tracing::warn!(url = %url, request_id = %request_id, attempt = attempts, "{problem}; retrying");
            // ±15 % jitter, derived from the seed so runs repeat.
            self.jitter = self
                .jitter
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let factor = 0.85 + 0.30 * ((self.jitter >> 33) as f64 / (1u64 << 31) as f64);
            std::thread::sleep(backoff.mul_f64(factor));
            backoff = (backoff * 2).min(Duration::from_secs(120));
        }
        self.report.outputs.push(request_id);
        self.report.records += self.pending.len() as u64;
        self.pending.clear();
        self.batch += 1;
        Ok(())
    }
}

impl Delivery for FirehoseDelivery {
    /// The window's records are posted as its end's time.
    fn deliver(&mut self, window: &Window<'_>) -> Result<()> {
        let rows: Vec<usize> = (0..window.records.len()).collect();
        let text = lines_of(window.records, &rows)?;
        self.send(text.lines(), window.end * 1000)
    }

    fn finish(self: Box<Self>, now_ms: i64) -> Result<DeliveryReport> {
        FirehoseDelivery::finish(*self, now_ms)
    }

    fn kind(&self) -> Kind {
        Kind::Firehose
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_format_is_firehoses() {
        // As Firehose writes it (keys in this order), and read back by the same types.
        let body = FirehoseBody {
            records: vec![FirehoseRecord {
                data: STANDARD.encode("2 123 eni-1 - - - - - - - 1 2 - NODATA\n"),
            }],
            request_id: "ed4acda5-034f-9f42-bba1-f29aea6d7d8f".into(),
            timestamp: Some(1_578_090_901_599_i64.into()),
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"records\":[{{\"data\":\"{}\"}}],\"requestId\":\"ed4acda5-034f-9f42-bba1-f29aea6d7d8f\",\"timestamp\":1578090901599}}",
                body.records[0].data
            )
        );
        let read: FirehoseBody = serde_json::from_str(&text).unwrap();
        assert_eq!(read, body);
        assert_eq!(
            read.records[0].decode().unwrap(),
            b"2 123 eni-1 - - - - - - - 1 2 - NODATA\n"
        );
        let spaced = FirehoseRecord {
            data: format!(" {} \n", read.records[0].data),
        };
        assert_eq!(spaced.decode().unwrap(), read.records[0].decode().unwrap());
        assert!(FirehoseRecord { data: "***".into() }.decode().is_err());
        // An endpoint may send any timestamp, or none; a refusal carries its message.
        let reply: FirehoseReply =
            serde_json::from_str(r#"{"requestId":"r","timestamp":"soon"}"#).unwrap();
        assert_eq!(reply.request_id, "r");
        let refused = FirehoseReply {
            error_message: Some("no".into()),
            request_id: "r".into(),
            timestamp: Some(7.into()),
        };
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"errorMessage":"no","requestId":"r","timestamp":7}"#
        );
    }
}
