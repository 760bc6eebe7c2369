//! S3 event notifications as they arrive in an SQS queue: straight from S3, wrapped in an SNS
//! notification, or as EventBridge delivers them.

use serde_json::Value;

/// An object an event says was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The bucket.
    pub bucket: String,
    /// The key, decoded (S3 notifications URL-encode it: hive's `=` arrives as `%3D`).
    pub key: String,
}

/// What one queue message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Objects created (an S3 notification may carry several records).
    Created(Vec<Created>),
    /// `s3:TestEvent`, sent when a notification is set up: nothing to do.
    Test,
    /// Events of other kinds (removals, restores …): nothing to do.
    Other(String),
    /// Not an S3 event at all.
    NotAnEvent(String),
}

/// Reads a message body.
pub fn parse(body: &str) -> Said {
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Said::NotAnEvent(format!("not JSON: {e}")),
    };
    from_value(&value, 0)
}

fn from_value(value: &Value, depth: u8) -> Said {
    // SNS: {"Type":"Notification","Message":"<the S3 event as a string>"}.
    if value.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(message) = value.get("Message").and_then(Value::as_str)
    {
        if depth > 0 {
            return Said::NotAnEvent("an SNS notification inside another".into());
        }
        return match serde_json::from_str::<Value>(message) {
            Ok(inner) => from_value(&inner, depth + 1),
            Err(e) => Said::NotAnEvent(format!("SNS message not JSON: {e}")),
        };
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Said::Test;
    }
    // EventBridge: {"source":"aws.s3","detail-type":"Object Created","detail":{…}}; its keys
    // are not URL-encoded.
    if value.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let kind = value
            .get("detail-type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind != "Object Created" {
            return Said::Other(kind.to_string());
        }
        let detail = &value["detail"];
        return match (
            detail["bucket"]["name"].as_str(),
            detail["object"]["key"].as_str(),
        ) {
            (Some(bucket), Some(key)) => Said::Created(vec![Created {
                bucket: bucket.to_string(),
                key: key.to_string(),
            }]),
            _ => Said::NotAnEvent("an EventBridge event without bucket and key".into()),
        };
    }
    let Some(records) = value.get("Records").and_then(Value::as_array) else {
        return Said::NotAnEvent(
            "neither Records, an SNS notification nor an EventBridge event".into(),
        );
    };
    let mut created = Vec::new();
    let mut other = None;
    for record in records {
        let name = record["eventName"].as_str().unwrap_or("");
        if record["eventSource"].as_str() != Some("aws:s3") || !name.starts_with("ObjectCreated:") {
            other.get_or_insert_with(|| name.to_string());
            continue;
        }
        let (Some(bucket), Some(key)) = (
            record["s3"]["bucket"]["name"].as_str(),
            record["s3"]["object"]["key"].as_str(),
        ) else {
            return Said::NotAnEvent("an S3 record without bucket and key".into());
        };
        created.push(Created {
            bucket: bucket.to_string(),
            key: decode_key(key),
        });
    }
    match (created.is_empty(), other) {
        (false, _) => Said::Created(created),
        (true, Some(name)) => Said::Other(name),
        (true, None) => Said::NotAnEvent("no records".into()),
    }
}

/// A key as S3 notifications write it: form-encoded (`+` a space, `%XX` a byte).
pub fn decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's "Event message structure" page (trimmed to what is read).
    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","awsRegion":"us-west-2","eventTime":"1970-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"ID","bucket":{"name":"amzn-s3-demo-bucket","arn":"arn:aws:s3:::amzn-s3-demo-bucket"},"object":{"key":"AWSLogs/aws-account-id%3D123456789012/my+flows/x.log.gz","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0055AED6DCD90281E5"}}}]}"#;

    #[test]
    fn s3_notifications_decode_keys() {
        let Said::Created(created) = parse(S3_EVENT) else {
            panic!("{:?}", parse(S3_EVENT));
        };
        assert_eq!(
            created,
            [Created {
                bucket: "amzn-s3-demo-bucket".into(),
                key: "AWSLogs/aws-account-id=123456789012/my flows/x.log.gz".into()
            }]
        );
    }

    #[test]
    fn envelopes_and_other_messages() {
        let sns =
            serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": S3_EVENT})
                .to_string();
        assert!(matches!(parse(&sns), Said::Created(c) if c[0].key.contains("my flows")));
        let bridge = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"a%3Db/x.log.gz","size":5}}}"#;
        assert_eq!(
            parse(bridge),
            Said::Created(vec![Created {
                bucket: "b".into(),
                key: "a%3Db/x.log.gz".into()
            }])
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2014-10-13T15:57:02.089Z","Bucket":"b","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse(test), Said::Test);
        let removed = S3_EVENT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(parse(&removed), Said::Other("ObjectRemoved:Delete".into()));
        assert!(matches!(parse("hello"), Said::NotAnEvent(_)));
        assert!(matches!(parse("{\"a\":1}"), Said::NotAnEvent(_)));
    }
}
