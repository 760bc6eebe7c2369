//! `flowscope serve --follow`: a bucket followed by listing and through an SQS queue of S3
//! event notifications, against moto's S3 and SQS (started here), objects uploaded with boto3
//! while the server runs, and the server killed (-9) at random moments while it follows.

mod common;

use std::path::Path;
use std::process::{Child, Command as StdCommand};
use std::time::{Duration, Instant};

use common::{Moto, request, sql};

/// The tests run one at a time (each starts moto and servers on 2 cores).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// boto3 against moto: `python3 -c AWS endpoint command args…`, printing the command's answer.
const AWS: &str = r#"
import gzip, json, sys, time, boto3
endpoint, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
s3, sqs, logs = boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("logs", **kw)
HEADER = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n"

def key_of(at, flow_log, tag, hive):
    t = time.gmtime(at)
    day = "%04d/%02d/%02d" % (t.tm_year, t.tm_mon, t.tm_mday)
    if hive == "hive":
        folder = ("AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/"
                  "year=%04d/month=%02d/day=%02d/" % (t.tm_year, t.tm_mon, t.tm_mday))
    else:
        folder = "AWSLogs/123456789012/vpcflowlogs/us-east-1/%s/" % day
    return folder + "123456789012_vpcflowlogs_us-east-1_%s_%s_%08x.log.gz" % (
        flow_log, time.strftime("%Y%m%dT%H%MZ", t), int(tag))

def put(bucket, at, flow_log, tag, records, hive="flat"):
    at = int(at) - int(at) % 300
    key = key_of(at, flow_log, tag, hive)
    # Every record unique: the object's tag in srcport, its line in dstport.
    lines = "".join("2 123456789012 eni-0a1b 10.0.0.%d 10.0.1.5 %d %d 6 3 %d %d %d ACCEPT OK\n"
                    % (i % 250, int(tag), 1000 + i, 100 + i, at, at + 60) for i in range(int(records)))
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress((HEADER + lines).encode()))
    return key

def put_events(group, stream, count, tag, age):
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    at = int(time.time() * 1000) - int(float(age) * 1000)
    events = [{"timestamp": at + i, "message":
               "2 123456789012 %s 10.0.0.%d 10.0.1.5 %d %d 6 3 %d %d %d ACCEPT OK"
               % (stream, i % 250, int(tag), 1000 + i, 100 + i, at // 1000, at // 1000 + 60)}
              for i in range(int(count))]
    answer = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    assert not answer.get("rejectedLogEventsInfo"), answer

if command == "bucket":
    s3.create_bucket(Bucket=args[0])
elif command == "queue":
    bucket, name = args
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "3"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    print(url)
elif command == "put":
    print(put(*args))
elif command == "put-many":
    # bucket, count, seed, pause: objects of 1 to 400 records, a pause between them; prints the
    # records put in all.
    import random
    bucket, count, seed, pause = args
    rng = random.Random(int(seed))
    now, total = int(time.time()), 0
    for i in range(int(count)):
        n = rng.randint(1, 400)
        put(bucket, now - rng.randint(0, 3000), "fl-0%d" % rng.randint(1, 3), 5000 + i, n)
        total += n
        time.sleep(float(pause))
    print(total)
elif command == "put-raw":
    s3.put_object(Bucket=args[0], Key=args[1], Body=args[2].encode())
elif command == "send":
    sqs.send_message(QueueUrl=args[0], MessageBody=args[1])
elif command == "log-group":
    logs.create_log_group(logGroupName=args[0])
elif command == "put-events":
    # group, stream, count, tag, age: `count` default-format events timestamped `age` seconds
    # ago (one millisecond apart), each record unique (the tag in srcport, its line in
    # dstport); prints the records put.
    put_events(*args)
    print(args[2])
elif command == "put-events-many":
    # group, stream, times, count, pause: `times` batches of `count` events a pause apart,
    # tagged 100, 101, ...
    group, stream, times, count, pause = args
    for t in range(int(times)):
        put_events(group, stream, count, 100 + t, 1)
        time.sleep(float(pause))
elif command == "left":
    a = sqs.get_queue_attributes(QueueUrl=args[0], AttributeNames=["All"])["Attributes"]
    print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
"#;

/// Ten accepted records or more in a minute: the first object's minute (the others are later).
const ALARMS: &str = r#"
[[metric_filters]]
filter_name = "accepted"
filter_pattern = '[version, account, eni, source, destination, srcport, destport, protocol, packets, bytes, windowstart, windowend, action="ACCEPT", flowlogstatus]'
metric_name = "Accepted"
metric_value = "1"

[[alarms]]
alarm_name = "busy"
metric_name = "Accepted"
namespace = "flowscope"
statistic = "Sum"
period = 60
threshold = 10
comparison_operator = "GreaterThanOrEqualToThreshold"
evaluation_periods = 1
treat_missing_data = "notBreaching"
"#;

fn aws(moto: &Moto, command: &str, args: &[&str]) -> String {
    let out = StdCommand::new("python3")
        .args(["-c", AWS, &moto.endpoint, command])
        .args(args)
        .output()
        .expect("python3 with boto3");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The wall clock: the server judges lateness by it, so objects are named near it.
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Served {
    child: Child,
    addr: String,
}

impl Served {
    /// Stops the server as Ctrl-C does, and waits for it.
    fn stop(mut self) {
        let _ = StdCommand::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(moto: &Moto, lake: &Path, log: &Path, follow: &[&str]) -> Served {
    let mut command = common::flowscope_process();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--flush-interval", "1"])
        .arg("--lake")
        .arg(lake)
        .args(["--endpoint-url", &moto.endpoint, "--follow-interval", "1s"])
        .args(follow)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let (child, url, seen) =
        common::start_server_logging(command, Duration::from_secs(60), log).expect("server");
    let addr = url.trim_start_matches("http://").to_string();
    assert!(!addr.is_empty(), "{seen}");
    Served { child, addr }
}

/// The first row of a query's answer.
fn row(addr: &str, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = sql(addr, query);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["rows"][0].as_array().unwrap().clone()
}

/// Records, distinct (tag, line) pairs and their packets in the lake.
fn tally(addr: &str) -> (i64, i64, i64) {
    let r = row(
        addr,
        "SELECT count(*), count(DISTINCT (srcport, dstport)), coalesce(sum(packets), 0) FROM flows",
    );
    (
        r[0].as_i64().unwrap(),
        r[1].as_i64().unwrap(),
        r[2].as_i64().unwrap(),
    )
}

/// Waits (up to `limit`) until the lake holds `records` records, and returns how long it took.
fn wait_for(addr: &str, records: i64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (n, _, _) = tally(addr);
        if n == records {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{n} records after {limit:?}, not {records}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A line of `/metrics` for the source, e.g. `records_total`.
fn metric(addr: &str, name: &str, source: &str) -> Option<f64> {
    let (status, text) = request(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let wanted = format!("flowscope_{name}{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .map(|v| v.parse().unwrap())
}

/// Listing: objects uploaded while the server runs are taken once each, an object whose name
/// sorts before one taken already (uploaded later, as AWS does) too, Hive-style keys too, a
/// file that is not a flow log is skipped; a restart takes nothing twice.
#[test]
fn a_bucket_followed_by_listing_is_taken_once_including_late_older_named_objects() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = common::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (lake, log) = (dir.path().join("lake"), dir.path().join("serve.log"));
    aws(&moto, "bucket", &["flows"]);
    let t = now();
    let at = |ago: u64| (t - ago).to_string();
    aws(&moto, "put", &["flows", &at(900), "fl-01", "1", "10"]);
    aws(
        &moto,
        "put",
        &["flows", &at(900), "fl-02", "2", "7", "hive"],
    );
    aws(
        &moto,
        "put-raw",
        &["flows", "AWSLogs/notes.txt", "not a flow log\n"],
    );
    // An alarm on the records taken: it can only leave INSUFFICIENT_DATA if followed objects
    // feed the metric filters.
    let alarms = dir.path().join("alarms.toml");
    std::fs::write(&alarms, ALARMS).unwrap();
    // The full listing runs at start only: what follows must be found by the listings per
    // flow log.
    let follow = [
        "--follow",
        "s3://flows/AWSLogs",
        "--rescan",
        "1h",
        "--alarms",
        alarms.to_str().unwrap(),
        "--no-notify",
        "--log-output",
        "json",
    ];
    let served = serve(&moto, &lake, &log, &follow);
    wait_for(&served.addr, 17, Duration::from_secs(30));
    aws(&moto, "put", &["flows", &at(300), "fl-01", "3", "20"]);
    // Named 15 minutes before the newest, uploaded after it.
    aws(&moto, "put", &["flows", &at(1200), "fl-01", "4", "5"]);
    aws(&moto, "put", &["flows", &at(0), "fl-02", "5", "3", "hive"]);
    let took = wait_for(&served.addr, 45, Duration::from_secs(30));
    eprintln!("three objects uploaded while following: taken within {took:?}");
    assert_eq!(tally(&served.addr), (45, 45, 3 * 45));
    let source = "s3://flows/AWSLogs";
    assert_eq!(metric(&served.addr, "records_total", source), Some(45.0));
    let lag = metric(&served.addr, "lag_seconds", source).expect("a lag");
    assert!(lag < 600.0, "lag {lag}");
    let (_, alarms) = request(&served.addr, "GET", "/api/alarms", b"");
    let alarms: serde_json::Value = serde_json::from_str(&alarms).unwrap();
    // The first minute's 17 records (two objects) and the 20 of the one uploaded later.
    let to_alarm: Vec<&str> = alarms["alarms"][0]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["new_state"] == "ALARM")
        .map(|t| t["reason"].as_str().unwrap())
        .collect();
    assert!(
        to_alarm.iter().any(|r| r.contains("[17]")) && to_alarm.iter().any(|r| r.contains("[20]")),
        "{alarms}"
    );
    served.stop();

    // Started again: the manifest says what was taken.
    let served = serve(&moto, &lake, &log, &follow);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tally(&served.addr).0, 45);
    aws(&moto, "put", &["flows", &at(0), "fl-01", "6", "4"]);
    wait_for(&served.addr, 49, Duration::from_secs(30));
    served.stop();
    // The log is one JSON object a line; it names what was taken and what was skipped.
    let log = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "taken in" && e["source"] == "s3://flows/AWSLogs"),
        "{log}"
    );
    assert!(log.contains("notes.txt"), "{log}");
}

/// A queue of S3 event notifications: objects are taken as their events arrive, each once
/// though several events name it (S3's own, one wrapped in SNS with the key URL-encoded, one as
/// EventBridge sends it); test events, events for other buckets, messages that are not events
/// and events for objects that are gone are deleted, the last counted as errors; the queue ends
/// empty.
#[test]
fn a_bucket_followed_through_its_event_queue_takes_each_object_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = common::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (lake, log) = (dir.path().join("lake"), dir.path().join("serve.log"));
    let queue = aws(&moto, "queue", &["events", "flow-events"]);
    let served = serve(
        &moto,
        &lake,
        &log,
        &[
            "--follow",
            "s3://events/AWSLogs/",
            "--sqs-queue-url",
            &queue,
            "--visibility-timeout",
            "3s",
        ],
    );
    let t = now();
    let first = aws(
        &moto,
        "put",
        &["events", &(t - 300).to_string(), "fl-01", "1", "12"],
    );
    let hive = aws(
        &moto,
        "put",
        &["events", &t.to_string(), "fl-01", "2", "8", "hive"],
    );
    wait_for(&served.addr, 20, Duration::from_secs(30));
    let encoded = hive.replace('=', "%3D");
    let s3_event = |bucket: &str, key: &str| {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}
        }]})
        .to_string()
    };
    let sns = serde_json::json!({"Type": "Notification", "Message": s3_event("events", &encoded)});
    let bridge = serde_json::json!({
        "version": "0", "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": "events"}, "object": {"key": first}}
    });
    for body in [
        sns.to_string(),
        bridge.to_string(),
        s3_event(
            "events",
            "AWSLogs/123456789012/vpcflowlogs/us-east-1/gone.log.gz",
        ),
        s3_event("other-bucket", &first),
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"events"}"#.to_string(),
        "not json at all".to_string(),
    ] {
        aws(&moto, "send", &[&queue, &body]);
    }
    let started = Instant::now();
    while aws(&moto, "left", &[&queue]) != "0" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "messages left in the queue"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(tally(&served.addr), (20, 20, 60));
    let source = "s3://events/AWSLogs/";
    assert_eq!(
        metric(&served.addr, "source_errors_total", source),
        Some(1.0)
    );
    let (_, status) = request(&served.addr, "GET", "/api/status", b"");
    assert!(status.contains("gone.log.gz"), "{status}");
    served.stop();
}

/// kill -9 at random moments while objects arrive, through the queue and by listing: after the
/// last start, the lake holds every record uploaded, once.
#[test]
fn killed_while_following_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = now();
    eprintln!("seed {seed}");
    let mut state = seed;
    let mut random = move |below: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below
    };
    for (mode, kills) in [("queue", 10), ("listing", 5)] {
        let Some(moto) = common::moto() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (lake, log) = (dir.path().join("lake"), dir.path().join("serve.log"));
        let queue = aws(&moto, "queue", &["crash", "crash-events"]);
        let mut follow = vec!["--follow", "s3://crash/"];
        if mode == "queue" {
            follow.extend(["--sqs-queue-url", &queue, "--visibility-timeout", "2s"]);
        }
        // Objects keep arriving through the kills.
        let uploader = StdCommand::new("python3")
            .args(["-c", AWS, &moto.endpoint, "put-many", "crash", "40"])
            .arg(seed.to_string())
            .arg("0.25")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..kills {
            let served = serve(&moto, &lake, &log, &follow);
            std::thread::sleep(Duration::from_millis(200 + random(1500)));
            // Dropped: killed with SIGKILL.
            drop(served);
        }
        let uploaded = uploader.wait_with_output().unwrap();
        assert!(uploaded.status.success());
        let truth: i64 = String::from_utf8_lossy(&uploaded.stdout)
            .trim()
            .parse()
            .unwrap();
        let served = serve(&moto, &lake, &log, &follow);
        wait_for(&served.addr, truth, Duration::from_secs(60));
        let (records, distinct, packets) = tally(&served.addr);
        assert_eq!(
            (records, distinct, packets),
            (truth, truth, 3 * truth),
            "{mode}"
        );
        if mode == "queue" {
            let started = Instant::now();
            while aws(&moto, "left", &[&queue]) != "0" {
                assert!(started.elapsed() < Duration::from_secs(30), "messages left");
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        served.stop();
        eprintln!("{mode}: {kills} kills, {truth} records, each once");
    }
}

/// `--check-sources` tries each permission a source needs and names the one that fails,
/// without serving.
#[test]
fn check_sources_names_the_failing_permission() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = common::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = aws(&moto, "queue", &["checked", "checked-events"]);
    aws(
        &moto,
        "put",
        &["checked", &now().to_string(), "fl-01", "1", "3"],
    );
    let check = |follow: &[&str]| {
        let out = common::flowscope_process()
            .args(["serve", "--check-sources", "--lake"])
            .arg(dir.path().join("lake"))
            .args(["--endpoint-url", &moto.endpoint])
            .args(follow)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text)
    };
    let (code, text) = check(&[
        "--follow",
        "s3://checked/AWSLogs",
        "--sqs-queue-url",
        &queue,
    ]);
    assert_eq!(code, Some(0), "{text}");
    for permission in [
        "s3:ListBucket",
        "s3:GetObject",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ] {
        assert!(text.contains(&format!("ok      {permission}")), "{text}");
    }
    assert!(text.contains("1 flow log objects"), "{text}");
    let (code, text) = check(&["--follow", "s3://no-such-bucket/"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAILED  s3:ListBucket"), "{text}");
    let gone = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let (code, text) = check(&["--follow", "s3://checked/", "--sqs-queue-url", &gone]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("ok      s3:ListBucket"), "{text}");
    assert!(text.contains("FAILED  sqs:GetQueueAttributes"), "{text}");
    // A log group: found, or named as missing.
    aws(&moto, "log-group", &["/flows"]);
    let (code, text) = check(&["--log-group-name", "/flows"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok      logs:FilterLogEvents"), "{text}");
    let (code, text) = check(&["--log-group-name", "/flows", "--log-group-name", "/none"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAILED  logs:FilterLogEvents     read log-group:/none"),
        "{text}"
    );
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    // Nothing was served: no lake was made.
    assert!(!dir.path().join("lake").exists());
    // The message the check received is still there (visibility 0, not deleted).
    assert_ne!(aws(&moto, "left", &[&queue]), "0");
}

/// A log group pulled with FilterLogEvents, named in a sources file beside a bucket: every
/// event of the streams asked for is taken once, one arriving late (timestamped before events
/// taken already) too, other streams are left out, the server killed (-9) over and over while
/// events arrive loses and duplicates nothing, and a mistake in the file is located.
#[test]
fn a_log_group_in_a_sources_file_is_pulled_once_through_kills() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = common::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (lake, log) = (dir.path().join("lake"), dir.path().join("serve.log"));
    aws(&moto, "bucket", &["beside"]);
    aws(
        &moto,
        "put",
        &["beside", &now().to_string(), "fl-01", "7", "5"],
    );
    aws(&moto, "log-group", &["/aws/vpc/flowlogs"]);
    let sources = dir.path().join("sources.toml");
    std::fs::write(
        &sources,
        "[[s3]]\nurl = \"s3://beside/\"\n\n\
         [[log_group]]\nname = \"/aws/vpc/flowlogs\"\nlog_stream_name_prefix = \"eni-\"\n\
         interval = \"1s\"\nlateness = \"10m\"\n",
    )
    .unwrap();
    let source = "log-group:/aws/vpc/flowlogs:eni-*";
    let args = ["--sources", sources.to_str().unwrap()];
    let mut truth = 5;
    truth += aws(
        &moto,
        "put-events",
        &["/aws/vpc/flowlogs", "eni-aaa-all", "30", "1", "60"],
    )
    .parse::<i64>()
    .unwrap();
    truth += aws(
        &moto,
        "put-events",
        &["/aws/vpc/flowlogs", "eni-bbb-all", "20", "2", "50"],
    )
    .parse::<i64>()
    .unwrap();
    // Not under the prefix: never taken.
    aws(
        &moto,
        "put-events",
        &["/aws/vpc/flowlogs", "other-ccc", "9", "3", "40"],
    );
    let served = serve(&moto, &lake, &log, &args);
    wait_for(&served.addr, truth, Duration::from_secs(30));
    // Late: timestamped five minutes before the events taken already.
    truth += aws(
        &moto,
        "put-events",
        &["/aws/vpc/flowlogs", "eni-aaa-all", "4", "4", "300"],
    )
    .parse::<i64>()
    .unwrap();
    wait_for(&served.addr, truth, Duration::from_secs(30));
    assert_eq!(
        metric(&served.addr, "records_total", source),
        Some((truth - 5) as f64)
    );
    served.stop();

    // Events keep arriving through kills.
    let putter = StdCommand::new("python3")
        .args(["-c", AWS, &moto.endpoint, "put-events-many"])
        .args(["/aws/vpc/flowlogs", "eni-aaa-all", "12", "25", "0.3"])
        .spawn()
        .unwrap();
    let seed = now();
    for k in 0..10 {
        let served = serve(&moto, &lake, &log, &args);
        std::thread::sleep(Duration::from_millis(150 + (seed * 7 + k * 389) % 1200));
        drop(served);
    }
    let put = putter.wait_with_output().unwrap();
    assert!(put.status.success());
    truth += 12 * 25;
    let served = serve(&moto, &lake, &log, &args);
    wait_for(&served.addr, truth, Duration::from_secs(30));
    let (records, distinct, packets) = tally(&served.addr);
    assert_eq!((records, distinct, packets), (truth, truth, 3 * truth));
    served.stop();

    // A mistake in the file is located, and nothing is served.
    std::fs::write(
        &sources,
        "[[log_group]]\nname = \"/aws/vpc/flowlogs\"\ninterval = \"often\"\n",
    )
    .unwrap();
    let out = common::flowscope_process()
        .args(["serve", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(":3:12: \"often\" is not a duration like 30s, 5m, 1h or 7d"),
        "{text}"
    );
}

/// Setting up moto with its IAM checks on after the first 7 requests: a user `reader` allowed to
/// list and read bucket `allowed` only, buckets `allowed` and `forbidden` with one flow log
/// object each; prints the reader's key id and secret.
const IAM_SETUP: &str = r#"
import gzip, json, sys, time, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
iam.create_user(UserName="reader")
iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Action": ["s3:ListBucket", "s3:GetObject"],
    "Resource": ["arn:aws:s3:::allowed", "arn:aws:s3:::allowed/*"]}, {"Effect": "Allow",
    "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::123456789012:role/audit-reader"}]}))
key = iam.create_access_key(UserName="reader")["AccessKey"]
iam.create_role(RoleName="audit-reader", AssumeRolePolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:user/reader"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="audit-reader", PolicyName="read", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Action": ["s3:ListBucket", "s3:GetObject"],
    "Resource": ["arn:aws:s3:::archive", "arn:aws:s3:::archive/*",
                 "arn:aws:s3:::audit", "arn:aws:s3:::audit/*"]}]}))
for n, bucket in enumerate(["allowed", "forbidden", "audit", "archive"]):
    # One object a bucket, each with its own name (the lake knows objects by their key).
    at = int(time.time()) // 300 * 300 - 300 * n
    t = time.gmtime(at)
    name = "AWSLogs/123456789012/vpcflowlogs/us-east-1/%04d/%02d/%02d/123456789012_vpcflowlogs_us-east-1_fl-01_%s_00000001.log.gz" % (
        t.tm_year, t.tm_mon, t.tm_mday, time.strftime("%Y%m%dT%H%MZ", t))
    body = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n"
    body += "".join("2 123456789012 eni-0a1b 10.0.0.%d 10.0.1.5 1 %d 6 3 100 %d %d ACCEPT OK\n" % (i, 1000 + i, at, at + 60) for i in range(6))
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=name, Body=gzip.compress(body.encode()))
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// Sources whose credentials are wrong or lack a permission (moto's IAM checks) are named in
/// the log and counted in `/metrics`; the sources that may read go on, among them a bucket read
/// through a role (`role_arn` in the sources file, and a profile's `role_arn` with
/// `source_profile`, as the AWS CLI's config writes it). `--check-sources` says the same first.
/// (The role's buckets are followed whole: moto 5.2 was seen to refuse, `SignatureDoesNotMatch`,
/// a prefixed listing signed with a role's session credentials that it takes without a prefix.)
#[test]
fn sources_with_wrong_credentials_or_permissions_fail_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::moto_installed() {
        return;
    }
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "13")]);
    let dir = tempfile::tempdir().unwrap();
    let (lake, log) = (dir.path().join("lake"), dir.path().join("serve.log"));
    let out = StdCommand::new("python3")
        .args(["-c", IAM_SETUP, &moto.endpoint])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let keys = String::from_utf8(out.stdout).unwrap();
    let (id, secret) = keys.trim().split_once(' ').unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[reader]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n\n\
             [wrong]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = nope\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[profile auditor]\nrole_arn = arn:aws:iam::123456789012:role/audit-reader\n\
         source_profile = reader\n",
    )
    .unwrap();
    let sources = dir.path().join("sources.toml");
    std::fs::write(
        &sources,
        "[[s3]]\nurl = \"s3://allowed/\"\nprofile = \"reader\"\n\n\
         [[s3]]\nurl = \"s3://forbidden/\"\nprofile = \"reader\"\n\n\
         [[s3]]\nurl = \"s3://elsewhere/\"\nprofile = \"wrong\"\n\n\
         [[s3]]\nurl = \"s3://archive/\"\nprofile = \"reader\"\n\
         role_arn = \"arn:aws:iam::123456789012:role/audit-reader\"\n\n\
         [[s3]]\nurl = \"s3://audit/\"\nprofile = \"auditor\"\n",
    )
    .unwrap();
    let environment = |command: &mut StdCommand| {
        command
            .arg("--lake")
            .arg(&lake)
            .args(["--endpoint-url", &moto.endpoint, "--follow-interval", "1s"])
            .arg("--sources")
            .arg(&sources)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE");
    };

    let mut check = common::flowscope_process();
    check.args(["serve", "--check-sources"]);
    environment(&mut check);
    let out = check.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Each source's lines, after its URL.
    let lines_of = |url: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| l.trim() != url)
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(str::to_string)
            .collect()
    };
    for url in ["s3://archive/", "s3://audit/"] {
        let lines = lines_of(url);
        assert!(
            lines[0].starts_with("  ok      sts:AssumeRole")
                && lines[0].contains("role/audit-reader"),
            "{url}:\n{text}"
        );
        assert!(
            lines.iter().all(|l| l.starts_with("  ok ")) && lines.len() == 3,
            "{url}:\n{text}"
        );
    }
    assert!(
        lines_of("s3://forbidden/")[0].contains("FAILED  s3:ListBucket"),
        "{text}"
    );
    assert!(
        lines_of("s3://allowed/")
            .iter()
            .all(|l| l.starts_with("  ok ")),
        "{text}"
    );

    let mut command = common::flowscope_process();
    command.args(["serve", "--listen", "127.0.0.1:0", "--flush-interval", "1"]);
    environment(&mut command);
    let log_file = std::fs::File::create(&log).unwrap();
    let (child, url, seen) =
        common::start_server_logging(command, Duration::from_secs(60), log_file).expect("server");
    let served = Served {
        child,
        addr: url.trim_start_matches("http://").to_string(),
    };
    assert!(!served.addr.is_empty(), "{seen}");
    // allowed, archive (the role) and audit (the profile's role): six each.
    wait_for(&served.addr, 18, Duration::from_secs(30));
    let started = Instant::now();
    loop {
        let forbidden = metric(&served.addr, "source_errors_total", "s3://forbidden/");
        let wrong = metric(&served.addr, "source_errors_total", "s3://elsewhere/");
        if forbidden.is_some_and(|n| n >= 1.0) && wrong.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "errors not counted: {forbidden:?} {wrong:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for source in ["s3://allowed/", "s3://archive/", "s3://audit/"] {
        assert_eq!(
            metric(&served.addr, "source_errors_total", source),
            Some(0.0),
            "{source}"
        );
        assert_eq!(
            metric(&served.addr, "records_total", source),
            Some(6.0),
            "{source}"
        );
    }
    served.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    for (source, code) in [
        ("s3://forbidden/", "AccessDenied"),
        ("s3://elsewhere/", "InvalidAccessKeyId"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(source) && l.contains("listing failed") && l.contains(code)),
            "{source}: {code} not logged:\n{text}"
        );
    }
}

/// A tiny HTTP proxy in front of moto that answers the first three CloudWatch Logs
/// `FilterLogEvents` calls as AWS does when throttling, and passes everything else on; prints
/// its port.
const THROTTLING_PROXY: &str = r#"
import http.server, sys, urllib.request, urllib.error
upstream, throttled = sys.argv[1], [0]
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target", "").endswith("FilterLogEvents") and throttled[0] < 3:
            throttled[0] += 1
            answer = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(upstream + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request) as r:
                status, data, kind = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, data, kind = e.code, e.read(), e.headers.get("Content-Type", "")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A log group behind a throttling API and a bucket that disappears: each failure is logged
/// and counted for its source, the throttled group catches up once the API answers, and the
/// other sources go on.
#[test]
fn throttling_and_a_vanished_bucket_are_counted_and_the_others_go_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = common::moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (lake, log) = (dir.path().join("lake"), dir.path().join("serve.log"));
    let mut proxy = StdCommand::new("python3")
        .args(["-c", THROTTLING_PROXY, &moto.endpoint])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(proxy.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_string()
    };
    aws(&moto, "bucket", &["doomed"]);
    aws(&moto, "bucket", &["steady"]);
    aws(
        &moto,
        "put",
        &["doomed", &now().to_string(), "fl-01", "1", "4"],
    );
    aws(&moto, "log-group", &["/flows"]);
    aws(&moto, "put-events", &["/flows", "eni-1", "10", "2", "30"]);
    let sources = dir.path().join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[[s3]]\nurl = \"s3://doomed/\"\nrescan = \"1s\"\n\n\
             [[s3]]\nurl = \"s3://steady/\"\n\n\
             [[log_group]]\nname = \"/flows\"\nendpoint_url = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let served = serve(
        &moto,
        &lake,
        &log,
        &["--sources", sources.to_str().unwrap()],
    );
    // Throttled three times, then read.
    wait_for(&served.addr, 14, Duration::from_secs(30));
    assert!(metric(&served.addr, "source_errors_total", "log-group:/flows").unwrap() >= 3.0);
    // The bucket goes away; the others go on.
    let out = StdCommand::new("python3")
        .args(["-c", &format!("{}\nfor o in s3.list_objects_v2(Bucket='doomed').get('Contents', []):\n    s3.delete_object(Bucket='doomed', Key=o['Key'])\ns3.delete_bucket(Bucket='doomed')\n", AWS.split("\nif command ==").next().unwrap()), &moto.endpoint, "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let started = Instant::now();
    while metric(&served.addr, "source_errors_total", "s3://doomed/").unwrap_or(0.0) < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the vanished bucket's errors not counted"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    aws(
        &moto,
        "put",
        &["steady", &now().to_string(), "fl-02", "3", "5"],
    );
    aws(&moto, "put-events", &["/flows", "eni-1", "7", "4", "20"]);
    wait_for(&served.addr, 26, Duration::from_secs(30));
    served.stop();
    let _ = proxy.kill();
    let _ = proxy.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("log-group:/flows") && l.contains("ThrottlingException")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("s3://doomed/") && l.contains("NoSuchBucket")),
        "{text}"
    );
}
