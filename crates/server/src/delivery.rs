//! The HTTP shapes records arrive in: Firehose's HTTP endpoint delivery request, and CloudWatch
//! Logs subscription payloads (gzip JSON, possibly base64-wrapped).

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flowscope_lake::deliver::FirehoseBody;
use serde::Deserialize;

/// The largest body Firehose sends (64 MiB before compression); larger bodies are refused.
pub const MAX_BODY: usize = 64 << 20;
/// Records per Firehose request at most.
pub const MAX_RECORDS: usize = 10_000;
/// Bytes in one Firehose record at most (before base64).
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// A body that could not be taken, with the message for `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadBody {
    /// Malformed: answered 400.
    Invalid(String),
    /// Larger than a limit, compressed or once inflated: answered 413.
    TooLarge(String),
}

impl BadBody {
    /// The message for `errorMessage`.
    pub fn message(&self) -> &str {
        match self {
            Self::Invalid(m) | Self::TooLarge(m) => m,
        }
    }

    /// The HTTP status it is answered with: 400 for a malformed body, 413 for one too large.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            Self::Invalid(_) => axum::http::StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The same kind with `prefix` before its message.
    pub(crate) fn within(self, prefix: &str) -> Self {
        match self {
            Self::Invalid(m) => Self::Invalid(format!("{prefix}: {m}")),
            Self::TooLarge(m) => Self::TooLarge(format!("{prefix}: {m}")),
        }
    }
}

/// A Firehose delivery request, decoded.
#[derive(Debug)]
pub struct FirehoseRequest {
    /// The request's id (the same on every retry).
    pub request_id: String,
    /// The flow log lines of every record, newline-separated.
    pub text: String,
}

/// A CloudWatch Logs subscription payload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    message_type: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Debug, Deserialize)]
struct LogEvent {
    message: String,
}

/// Inflates gzip data, refusing more than `cap` bytes out (a small body can inflate to gigabytes).
///
/// # Errors
/// [`BadBody`] when the data is not gzip, is truncated, or inflates past `cap`.
pub fn gunzip(data: &[u8], cap: usize) -> Result<Vec<u8>, BadBody> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BadBody::Invalid(format!("body is not valid gzip: {e}")))?;
    if out.len() > cap {
        return Err(BadBody::TooLarge(format!(
            "inflates to more than {cap} bytes; refused"
        )));
    }
    Ok(out)
}

fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Decodes a Firehose delivery body (already inflated if it came gzip-encoded). A record may
/// hold flow log lines, or a gzip CloudWatch Logs subscription payload (a CloudWatch Logs
/// subscription delivered through Firehose), whose events' messages are taken.
///
/// # Errors
/// [`BadBody`] naming the problem (and the record's index) for broken JSON, a missing
/// `requestId`, too many records, bad base64, oversized records or text that is not UTF-8;
/// [`BadBody::TooLarge`] when the records' text (gzip records inflated) passes
/// `max_decoded` bytes in all.
pub fn firehose(body: &[u8], max_decoded: usize) -> Result<FirehoseRequest, BadBody> {
    let raw: FirehoseBody = serde_json::from_slice(body).map_err(|e| {
        BadBody::Invalid(format!(
            "request body is not a Firehose delivery request: {e}"
        ))
    })?;
    if raw.request_id.is_empty() || raw.request_id.len() > 1024 {
        return Err(BadBody::Invalid(
            "requestId must be 1 to 1024 characters".into(),
        ));
    }
    if raw.records.len() > MAX_RECORDS {
        return Err(BadBody::Invalid(format!(
            "{} records in one request; at most {MAX_RECORDS}",
            raw.records.len()
        )));
    }
    let mut text = String::new();
    for (i, r) in raw.records.iter().enumerate() {
        let data = r
            .decode()
            .map_err(|e| BadBody::Invalid(format!("records[{i}].data is not base64: {e}")))?;
        if data.len() > MAX_RECORD_BYTES {
            return Err(BadBody::Invalid(format!(
                "records[{i}].data holds {} bytes; at most {MAX_RECORD_BYTES}",
                data.len()
            )));
        }
        // What is left of the request's budget for decoded text.
        let left = max_decoded.saturating_sub(text.len());
        if is_gzip(&data) {
            let inflated = gunzip(&data, left).map_err(|e| e.within(&format!("records[{i}]")))?;
            let lines =
                subscription_lines(&inflated).map_err(|e| e.within(&format!("records[{i}]")))?;
            text.push_str(&lines);
        } else {
            let s = std::str::from_utf8(&data)
                .map_err(|_| BadBody::Invalid(format!("records[{i}].data is not UTF-8 text")))?;
            text.push_str(s);
            if !s.is_empty() && !s.ends_with('\n') {
                text.push('\n');
            }
        }
        if text.len() > max_decoded {
            return Err(BadBody::TooLarge(format!(
                "the records decode to more than {max_decoded} bytes of text in all; refused"
            )));
        }
    }
    Ok(FirehoseRequest {
        request_id: raw.request_id,
        text,
    })
}

/// The flow log lines of a CloudWatch Logs subscription payload (JSON), one per event;
/// a `CONTROL_MESSAGE` has none.
///
/// # Errors
/// [`BadBody`] when it is not such a payload.
pub fn subscription_lines(json: &[u8]) -> Result<String, BadBody> {
    let s: Subscription = serde_json::from_slice(json).map_err(|e| {
        BadBody::Invalid(format!("not a CloudWatch Logs subscription payload: {e}"))
    })?;
    let mut text = String::new();
    if s.message_type == "DATA_MESSAGE" {
        for e in s.log_events {
            text.push_str(e.message.trim_end_matches('\n'));
            text.push('\n');
        }
    }
    Ok(text)
}

/// Decodes a body posted to `/cloudwatch`: gzip JSON as CloudWatch Logs sends it to
/// subscribers, the same base64-encoded (as Kinesis and Lambda hand it on), or plain JSON.
/// Returns the inflated payload (whose checksum identifies the delivery) and its lines.
///
/// # Errors
/// [`BadBody`] when the body is none of these; [`BadBody::TooLarge`] when it inflates past
/// `max_decoded` bytes.
pub fn cloudwatch(body: &[u8], max_decoded: usize) -> Result<(Vec<u8>, String), BadBody> {
    let payload = if is_gzip(body) {
        gunzip(body, max_decoded)?
    } else if body.first().is_some_and(|b| *b == b'{') {
        body.to_vec()
    } else {
        let trimmed: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let decoded = STANDARD.decode(&trimmed).map_err(|_| {
            BadBody::Invalid("body is neither gzip, JSON, nor base64 of gzip".into())
        })?;
        if is_gzip(&decoded) {
            gunzip(&decoded, max_decoded)?
        } else {
            decoded
        }
    };
    let lines = subscription_lines(&payload)?;
    Ok((payload, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const LINE: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";

    #[test]
    fn firehose_records_become_lines() {
        let a = STANDARD.encode(LINE);
        let b = STANDARD.encode(format!("{LINE}\n{LINE}\n"));
        let body = format!(
            r#"{{"requestId":"r1","timestamp":1,"records":[{{"data":"{a}"}},{{"data":"{b}"}},{{"data":""}}]}}"#
        );
        let r = firehose(body.as_bytes(), MAX_BODY).unwrap();
        assert_eq!(r.request_id, "r1");
        assert_eq!(r.text.lines().count(), 3);
        assert!(r.text.lines().all(|l| l == LINE));
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        assert!(
            firehose(b"{", MAX_BODY)
                .unwrap_err()
                .message()
                .contains("not a Firehose delivery request")
        );
        assert!(
            firehose(br#"{"records":[]}"#, MAX_BODY)
                .unwrap_err()
                .message()
                .contains("requestId")
        );
        let e = firehose(
            br#"{"requestId":"x","records":[{"data":"aGk="},{"data":"!!!"}]}"#,
            MAX_BODY,
        )
        .unwrap_err();
        assert!(
            e.message().contains("records[1].data is not base64"),
            "{}",
            e.message()
        );
        let bin = STANDARD.encode([0xff, 0xfe, 0x00]);
        let e = firehose(
            format!(r#"{{"requestId":"x","records":[{{"data":"{bin}"}}]}}"#).as_bytes(),
            MAX_BODY,
        )
        .unwrap_err();
        assert!(e.message().contains("not UTF-8"), "{}", e.message());
    }

    #[test]
    fn nested_gzip_is_bounded_by_the_whole_request() {
        // Records of gzip'd subscription payloads, each small, together past the budget.
        let event = format!(r#"{{"id":"1","timestamp":1,"message":"{LINE}"}}"#);
        let events = vec![event; 2_000].join(",");
        let json = format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{events}]}}"#
        );
        let record = STANDARD.encode(gz(json.as_bytes()));
        let records = vec![format!(r#"{{"data":"{record}"}}"#); 20].join(",");
        let body = format!(r#"{{"requestId":"r","records":[{records}]}}"#);
        // The budget counts what is inflated (each record's JSON), and the text kept.
        let text = 20 * 2_000 * (LINE.len() + 1);
        let taken = firehose(body.as_bytes(), text + json.len()).unwrap();
        assert_eq!(taken.text.len(), text);
        let e = firehose(body.as_bytes(), text).unwrap_err();
        assert!(matches!(e, BadBody::TooLarge(_)), "{e:?}");
        assert_eq!(e.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message().contains("more than"), "{}", e.message());
        assert_eq!(
            BadBody::Invalid("x".into()).within("body").status(),
            axum::http::StatusCode::BAD_REQUEST
        );
        // The same for a body posted to /cloudwatch.
        let e = cloudwatch(&gz(json.as_bytes()), 1_000).unwrap_err();
        assert!(matches!(e, BadBody::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn gzip_bombs_are_refused() {
        let big = vec![b'a'; 4 << 20];
        let e = gunzip(&gz(&big), 1 << 20).unwrap_err();
        assert!(e.message().contains("more than"), "{}", e.message());
        assert!(gunzip(&gz(&big)[..100], 8 << 20).is_err(), "truncated gzip");
    }

    #[test]
    fn cloudwatch_payloads_in_every_wrapping() {
        let json = format!(
            r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"eni-1-all","subscriptionFilters":["f"],"logEvents":[{{"id":"1","timestamp":1,"message":"{LINE}"}}]}}"#
        );
        let plain = cloudwatch(json.as_bytes(), MAX_BODY).unwrap();
        let zipped = cloudwatch(&gz(json.as_bytes()), MAX_BODY).unwrap();
        let b64 = cloudwatch(STANDARD.encode(gz(json.as_bytes())).as_bytes(), MAX_BODY).unwrap();
        assert_eq!(plain.1, format!("{LINE}\n"));
        assert_eq!(plain, zipped);
        assert_eq!(plain, b64);
        let control = br#"{"messageType":"CONTROL_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination"}]}"#;
        assert_eq!(cloudwatch(control, MAX_BODY).unwrap().1, "");
        assert!(cloudwatch(b"hello", MAX_BODY).is_err());
    }
}
