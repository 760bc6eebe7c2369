//! Notifications of alarm state changes, shaped like the Amazon SNS messages CloudWatch sends:
//! a JSON line on standard output, an HTTP POST (retried with backoff), or a command that reads
//! the message on standard input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::alarm::{AlarmConfig, NotificationTarget, State, Transition};
use crate::error::{Error, Result};

/// The SNS-style notification of `t` for `alarm` sent to `target`.
pub fn message(alarm: &AlarmConfig, t: &Transition, target: &str) -> Value {
    let inner = json!({
        "AlarmName": alarm.alarm_name,
        "AlarmDescription": alarm.alarm_description,
        "NewStateValue": t.new_state.name(),
        "NewStateReason": t.reason,
        "StateChangeTime": t.timestamp,
        "OldStateValue": t.old_state.name(),
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "Statistic": format!("{:?}", alarm.statistic).to_uppercase(),
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm.unwrap_or(alarm.evaluation_periods),
            "ComparisonOperator": format!("{:?}", alarm.comparison_operator),
            "Threshold": alarm.threshold,
            "TreatMissingData": format!("{:?}", alarm.treat_missing_data),
        }
    });
    json!({
        "Type": "Notification",
        "MessageId": format!("{:016x}-{}", xhash(&format!("{}{}{}", alarm.alarm_name, t.time, t.new_state.name())), t.time),
        "TopicArn": format!("arn:flowscope:notifications:{target}"),
        "Subject": format!("{}: \"{}\"", t.new_state.name(), alarm.alarm_name),
        "Message": inner.to_string(),
        "Timestamp": t.timestamp,
    })
}

fn xhash(s: &str) -> u64 {
    // FNV-1a: a stable id for the same transition, not a security measure.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The targets an alarm notifies on entering `state`.
pub fn actions(alarm: &AlarmConfig, state: State) -> &[String] {
    match state {
        State::Alarm => &alarm.alarm_actions,
        State::Ok => &alarm.ok_actions,
        State::InsufficientData => &alarm.insufficient_data_actions,
    }
}

/// How long a notification command may run by default.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends notifications; webhooks are retried with exponential backoff.
pub struct Notifier {
    targets: Vec<NotificationTarget>,
    client: reqwest::Client,
    /// Attempts per webhook message (default 4).
    pub attempts: u32,
    /// First backoff (default 500 ms, doubling).
    pub backoff: Duration,
    /// How long a notification command may run before it is killed and reported as failed
    /// (default 10 s, the webhooks' timeout).
    pub command_timeout: Duration,
}

impl Notifier {
    /// A notifier for these targets.
    pub fn new(targets: Vec<NotificationTarget>) -> Self {
        Self {
            targets,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            attempts: 4,
            backoff: Duration::from_millis(500),
            command_timeout: COMMAND_TIMEOUT,
        }
    }

    /// Sends `t` to each of the alarm's actions for its new state; returns the messages sent
    /// to `stdout` targets (the caller prints them) and the failures.
    pub async fn notify(&self, alarm: &AlarmConfig, t: &Transition) -> (Vec<String>, Vec<Error>) {
        let mut lines = Vec::new();
        let mut failures = Vec::new();
        for name in actions(alarm, t.new_state) {
            let msg = message(alarm, t, name);
            if name == "stdout" {
                lines.push(msg.to_string());
                continue;
            }
            let Some(target) = self.targets.iter().find(|x| &x.name == name) else {
                continue;
            };
            let result = if let Some(url) = &target.webhook {
                self.post(url, &msg).await
            } else if let Some(cmd) = &target.command {
                run_command(cmd, &msg, alarm, t, self.command_timeout).await
            } else {
                lines.push(msg.to_string());
                Ok(())
            };
            if let Err(e) = result {
                failures.push(e);
            }
        }
        (lines, failures)
    }

    async fn post(&self, url: &str, msg: &Value) -> Result<()> {
        let body = msg.to_string();
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts.max(1) {
            let sent = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("x-amz-sns-message-type", "Notification")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            if attempt < self.attempts {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Err(Error::Notify {
            target: url.into(),
            message: format!("gave up after {} attempts: {last}", self.attempts),
        })
    }
}

async fn run_command(
    cmd: &[String],
    msg: &Value,
    alarm: &AlarmConfig,
    t: &Transition,
    timeout: Duration,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let fail = |m: String| Error::Notify {
        target: cmd.join(" "),
        message: m,
    };
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("FLOWSCOPE_ALARM_NAME", &alarm.alarm_name)
        .env("FLOWSCOPE_ALARM_STATE", t.new_state.name())
        .env("FLOWSCOPE_ALARM_OLD_STATE", t.old_state.name())
        .stdin(std::process::Stdio::piped())
        // Never outlives the server: dropped (a timeout, a shutdown), the child is killed.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let stdin = child.stdin.take();
    let finished = tokio::time::timeout(timeout, async {
        if let Some(mut stdin) = stdin {
            let mut body = msg.to_string();
            body.push('\n');
            // A command that does not read the message may exit before it is written: that is
            // its choice, and its exit status (below) says whether it worked.
            match stdin.write_all(body.as_bytes()).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(fail(e.to_string()));
                }
                _ => {}
            }
        }
        child.wait().await.map_err(|e| fail(e.to_string()))
    })
    .await;
    let status = match finished {
        Ok(status) => status?,
        Err(_) => {
            // Killed and reaped, so no child is left behind.
            let _ = child.kill().await;
            return Err(fail(format!(
                "did not finish within {} s; killed",
                timeout.as_secs_f64()
            )));
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("exited with {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::{AlarmsFile, State, Transition};

    #[test]
    fn command_target_gets_the_message_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got.json");
        let text = format!(
            r#"
[[metric_filters]]
filter_name = "f"
filter_pattern = "REJECT"
metric_name = "M"

[[alarms]]
alarm_name = "a"
metric_name = "M"
statistic = "Sum"
period = 60
threshold = 1
comparison_operator = "GreaterThanOrEqualToThreshold"
evaluation_periods = 1
alarm_actions = ["save", "broken", "deaf", "stdout"]

[[notifications]]
name = "save"
command = ["sh", "-c", "cat > {} && test \"$FLOWSCOPE_ALARM_STATE\" = ALARM"]

[[notifications]]
name = "broken"
command = ["sh", "-c", "exit 3"]

[[notifications]]
name = "deaf"
command = ["true"]
"#,
            out.display()
        );
        let file = AlarmsFile::parse(&text, "a.toml").unwrap();
        let t = Transition {
            alarm_name: "a".into(),
            old_state: State::Ok,
            new_state: State::Alarm,
            time: 120,
            timestamp: "1970-01-01T00:02:00Z".into(),
            reason: "r".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let notifier = Notifier::new(file.notifications.clone());
        // Commands that exit before reading the message (`exit 3`, `true`) are judged by their
        // exit status alone, however soon they exit: run it a few times.
        for _ in 0..20 {
            let (lines, failures) = rt.block_on(notifier.notify(&file.alarms[0], &t));
            assert_eq!(lines.len(), 1, "stdout target");
            assert_eq!(
                failures.len(),
                1,
                "the failing command is reported: {failures:?}"
            );
            assert!(
                failures[0].to_string().contains("exited with"),
                "{}",
                failures[0]
            );
        }
        let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["Subject"], "ALARM: \"a\"");
        let inner: Value = serde_json::from_str(got["Message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["OldStateValue"], "OK");
        assert_eq!(inner["Trigger"]["Statistic"], "SUM");
        // OK transitions go to ok_actions only (none here).
        let ok = Transition {
            new_state: State::Ok,
            old_state: State::Alarm,
            ..t
        };
        let (lines, failures) = rt.block_on(notifier.notify(&file.alarms[0], &ok));
        assert!(lines.is_empty() && failures.is_empty());
    }

    #[test]
    fn a_hanging_command_is_killed_reaped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let text = format!(
            r#"
[[metric_filters]]
filter_name = "f"
filter_pattern = "REJECT"
metric_name = "M"

[[alarms]]
alarm_name = "a"
metric_name = "M"
statistic = "Sum"
period = 60
threshold = 1
comparison_operator = "GreaterThanOrEqualToThreshold"
evaluation_periods = 1
alarm_actions = ["hang"]

[[notifications]]
name = "hang"
command = ["sh", "-c", "echo $$ > {}; exec sleep 3600"]
"#,
            pid_file.display()
        );
        let file = AlarmsFile::parse(&text, "t.toml").unwrap();
        let t = Transition {
            alarm_name: "a".into(),
            old_state: State::Ok,
            new_state: State::Alarm,
            time: 120,
            timestamp: "1970-01-01T00:02:00Z".into(),
            reason: "r".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut notifier = Notifier::new(file.notifications.clone());
        notifier.command_timeout = Duration::from_millis(500);
        let started = std::time::Instant::now();
        let (_, failures) = rt.block_on(notifier.notify(&file.alarms[0], &t));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].to_string().contains("killed"),
            "{}",
            failures[0]
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let alive = std::path::Path::new("/proc").join(pid.trim()).exists();
        assert!(
            !alive,
            "the command's process {pid} is gone (killed and reaped)"
        );
    }
}
