//! Following a bucket through an SQS queue of its S3 event notifications: receive, take the
//! objects, and delete each message only after its objects are committed. A message whose
//! objects could not be read stays, and comes back after its visibility timeout (a queue with
//! a redrive policy moves it aside after its maximum receives).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flowscope_lake::aws::{CallError, Client, Service};
use flowscope_lake::object::{Bucket, ObjectInput};
use serde_json::{Value, json};

use super::events::{Said, parse};
use super::{Follow, Taker, failed};

/// Messages asked for per receive (SQS's maximum).
const BATCH: u32 = 10;

/// One received message and the objects it names.
struct Message {
    id: String,
    receipt: String,
    /// Keys (in the bucket) of objects to take.
    keys: Vec<String>,
}

/// Follows through the queue until stopped.
pub(super) async fn run(taker: &mut Taker, follow: &Follow, bucket: &Arc<Bucket>, queue_url: &str) {
    let sqs = loop {
        match Client::new(Service::Sqs, &follow.s3) {
            Ok(c) => break Arc::new(c),
            Err(e) => {
                failed(&taker.app, &taker.name, format!("cannot set up SQS: {e}")).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    };
    let (bucket_name, _) = follow.bucket_and_prefix();
    let wait = follow.poll.as_secs().clamp(1, 20);
    let visibility = follow.visibility.as_secs().clamp(2, 43_200);
    let mut backoff = Duration::from_secs(1);
    loop {
        let received = sqs
            .call(
                "ReceiveMessage",
                &json!({
                    "QueueUrl": queue_url,
                    "MaxNumberOfMessages": BATCH,
                    "WaitTimeSeconds": wait,
                    "VisibilityTimeout": visibility,
                }),
                Duration::from_secs(wait + 15),
            )
            .await;
        let answer = match received {
            Ok(a) => {
                backoff = Duration::from_secs(1);
                a
            }
            Err(e) => {
                failed(&taker.app, &taker.name, format!("{queue_url}: {e}")).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        let mut messages = Vec::new();
        for m in answer["Messages"].as_array().into_iter().flatten() {
            let (Some(id), Some(receipt)) = (m["MessageId"].as_str(), m["ReceiptHandle"].as_str())
            else {
                continue;
            };
            let body = m["Body"].as_str().unwrap_or("");
            messages.push(Message {
                id: id.to_string(),
                receipt: receipt.to_string(),
                keys: keys_of(taker, follow, &bucket_name, id, body),
            });
        }
        if messages.is_empty() {
            continue;
        }
        let done = take(taker, &sqs, queue_url, bucket, &messages, visibility).await;
        let finished: Vec<&Message> = messages
            .iter()
            .filter(|m| m.keys.iter().all(|k| done.contains(k)))
            .collect();
        delete(taker, &sqs, queue_url, &finished).await;
    }
}

/// The keys a message names that are this source's (in its bucket, under its prefix); other
/// messages are logged and name none, so they are deleted.
fn keys_of(taker: &Taker, follow: &Follow, bucket: &str, id: &str, body: &str) -> Vec<String> {
    match parse(body) {
        Said::Created(created) => created
            .into_iter()
            .filter(|c| {
                let ours = c.bucket == bucket && follow.covers(&c.key);
                if !ours {
                    tracing::info!(source = %taker.name, sqs_message = id, object = %format!("s3://{}/{}", c.bucket, c.key), "an event for an object this source does not cover; skipped");
                }
                ours
            })
            .map(|c| c.key)
            .collect(),
        Said::Test => {
            tracing::info!(source = %taker.name, sqs_message = id, "s3:TestEvent received: the notification reaches the queue");
            Vec::new()
        }
        Said::Other(kind) => {
            tracing::info!(source = %taker.name, sqs_message = id, kind, "an event other than an object's creation; skipped");
            Vec::new()
        }
        Said::NotAnEvent(why) => {
            tracing::warn!(source = %taker.name, sqs_message = id, "not an S3 event ({why}); deleted");
            Vec::new()
        }
    }
}

/// Takes the objects the messages name, extending the messages' visibility while it runs;
/// returns the keys that are done (committed, taken before, gone, or not flow logs).
async fn take(
    taker: &mut Taker,
    sqs: &Arc<Client>,
    queue_url: &str,
    bucket: &Arc<Bucket>,
    messages: &[Message],
    visibility: u64,
) -> HashSet<String> {
    let mut done = HashSet::new();
    let mut objects: Vec<ObjectInput> = Vec::new();
    let mut looked = HashSet::new();
    for key in messages.iter().flat_map(|m| &m.keys) {
        if !looked.insert(key.clone()) {
            continue;
        }
        match bucket.head(key).await {
            Ok(Some(object)) if taker.wants(&object) => objects.push(object),
            Ok(Some(_)) => {
                done.insert(key.clone());
            }
            Ok(None) => {
                failed(
                    &taker.app,
                    &taker.name,
                    format!(
                        "s3://{}/{key}: an event names it but the object is not there; its message is deleted",
                        bucket.name()
                    ),
                )
                .await;
                done.insert(key.clone());
            }
            Err(e) => {
                failed(
                    &taker.app,
                    &taker.name,
                    format!("s3://{}/{key}: {e}", bucket.name()),
                )
                .await;
            }
        }
    }
    if objects.is_empty() {
        return done;
    }
    // While the objects are taken, their messages stay hidden: extended at a third of the
    // timeout, so a slow commit does not hand them to another receiver.
    let receipts: Vec<(String, String)> = messages
        .iter()
        .map(|m| (m.id.clone(), m.receipt.clone()))
        .collect();
    // A task of its own: the taking blocks its task's thread (`block_in_place`), so a timer
    // polled beside it would not fire until it is done.
    let extender = {
        let (sqs, queue_url) = (Arc::clone(sqs), queue_url.to_string());
        tokio::spawn(async move {
            let every = Duration::from_secs((visibility / 3).max(1));
            loop {
                tokio::time::sleep(every).await;
                let entries: Vec<Value> = receipts
                    .iter()
                    .enumerate()
                    .map(|(i, (_, receipt))| {
                        json!({"Id": i.to_string(), "ReceiptHandle": receipt, "VisibilityTimeout": visibility})
                    })
                    .collect();
                if let Err(e) = sqs
                    .call(
                        "ChangeMessageVisibilityBatch",
                        &json!({"QueueUrl": queue_url, "Entries": entries}),
                        Duration::from_secs(30),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not extend the visibility of messages being taken");
                }
            }
        })
    };
    let outcome = taker.take(objects, |_, _| {}).await;
    extender.abort();
    done.extend(outcome.done);
    done
}

/// Deletes messages whose work is done.
async fn delete(taker: &Taker, sqs: &Client, queue_url: &str, messages: &[&Message]) {
    for part in messages.chunks(BATCH as usize) {
        let entries: Vec<Value> = part
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m.receipt}))
            .collect();
        match sqs
            .call(
                "DeleteMessageBatch",
                &json!({"QueueUrl": queue_url, "Entries": entries}),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(answer) => {
                for f in answer["Failed"].as_array().into_iter().flatten() {
                    tracing::warn!(source = %taker.name, failure = %f, "a message could not be deleted; it comes back and is skipped then");
                }
            }
            Err(e) => delete_failed(taker, &e).await,
        }
    }
}

async fn delete_failed(taker: &Taker, e: &CallError) {
    failed(
        &taker.app,
        &taker.name,
        format!("{e} (the messages come back and their objects are skipped then)"),
    )
    .await;
}
