//! Following a bucket by listing it.
//!
//! AWS names each object by the 5-minute window it holds and uploads it some minutes after
//! that; inside a day (or hour) folder the keys sort by flow log id before time. So "list after
//! the last key seen" would miss an object whose name sorts before one uploaded earlier.
//! Instead, per flow log (account, region, id and layout, learnt from the keys seen), each
//! poll lists the folders from the lateness window before its newest object up to now (for a
//! flow log quiet for over twice the lateness, the folders around its newest object and before
//! now, not every one between), starting after the name of the window's start, and takes what
//! the lake lacks. A full
//! listing at start-up and every `rescan` finds new flow logs and anything else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowscope_lake::layout::{self, AwsObject};
use flowscope_lake::object::{Bucket, ObjectInput};
use flowscope_record::time::civil_from_days;

use super::{Follow, Taker, failed};

/// Most folders listed per flow log per poll (a day's hour folders, and some).
const MAX_FOLDERS: i64 = 48;

/// One flow log's objects under the prefix: where they are and how their folders are laid out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    /// The key up to `AWSLogs/`.
    base: String,
    account_id: String,
    region: String,
    flow_log_id: String,
    hive: bool,
    per_hour: bool,
}

impl Group {
    /// The group of an object in AWS's layout.
    fn of(key: &str) -> Option<(Group, i64)> {
        let object = layout::parse(key)?;
        let at = key.find("AWSLogs/")?;
        let (base, rest) = key.split_at(at);
        let folder = |k: &str| k[..k.rfind('/').map_or(0, |i| i + 1)].to_string();
        let wanted = folder(rest);
        for (hive, per_hour) in [(false, false), (true, false), (false, true), (true, true)] {
            if folder(&object.key(0, hive, per_hour)) == wanted {
                let group = Group {
                    base: base.to_string(),
                    account_id: object.account_id.clone(),
                    region: object.region.clone(),
                    flow_log_id: object.flow_log_id.clone(),
                    hive,
                    per_hour,
                };
                return Some((group, object.window_start));
            }
        }
        None
    }

    /// The folder holding the objects of the window starting at `at`.
    fn folder(&self, at: i64) -> String {
        let key = AwsObject {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            flow_log_id: self.flow_log_id.clone(),
            window_start: at,
            parquet: false,
        }
        .key(0, self.hive, self.per_hour);
        let cut = key.rfind('/').map_or(0, |i| i + 1);
        format!("{}{}", self.base, &key[..cut])
    }

    /// How every object name of the flow log begins.
    fn name_prefix(&self) -> String {
        format!(
            "{}_vpcflowlogs_{}_{}_",
            self.account_id, self.region, self.flow_log_id
        )
    }

    /// Seconds one folder spans.
    fn span(&self) -> i64 {
        if self.per_hour { 3_600 } else { 86_400 }
    }
}

/// `yyyymmddThhmmZ` of Unix seconds.
fn stamp(at: i64) -> String {
    let (year, month, day) = civil_from_days(at.div_euclid(86_400));
    let seconds = at.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60
    )
}

/// Follows by listing until stopped.
pub(super) async fn run(taker: &mut Taker, follow: &Follow, bucket: &Arc<Bucket>) {
    let (_, prefix) = follow.bucket_and_prefix();
    let mut groups: BTreeMap<Group, i64> = BTreeMap::new();
    let mut last_full: Option<Instant> = None;
    loop {
        // With no flow log known yet (an empty prefix), every poll lists it whole: it is small.
        let full = groups.is_empty() || last_full.is_none_or(|t| t.elapsed() >= follow.rescan);
        let listed = if full {
            bucket.list_after(&prefix, None, "").await
        } else {
            recent(bucket, &groups, follow.lateness).await
        };
        match listed {
            Err(e) => {
                failed(&taker.app, &taker.name, format!("listing failed: {e}")).await;
            }
            Ok(objects) => {
                if full {
                    last_full = Some(Instant::now());
                }
                for object in &objects {
                    if let Some((group, at)) = Group::of(object.key()) {
                        let newest = groups.entry(group).or_insert(at);
                        *newest = (*newest).max(at);
                    }
                }
                let new: Vec<ObjectInput> =
                    objects.into_iter().filter(|o| taker.wants(o)).collect();
                let catching_up = full && new.len() > 1;
                if catching_up {
                    tracing::info!(source = %taker.name, objects = new.len(), "catching up");
                }
                if !new.is_empty() {
                    let name = taker.name.clone();
                    taker
                        .take(new, |done, total| {
                            if catching_up {
                                tracing::info!(source = %name, "caught up {done} of {total} objects");
                            }
                        })
                        .await;
                }
            }
        }
        tokio::time::sleep(follow.poll).await;
    }
}

/// The folders to list for one flow log whose newest object is named `newest`, at `now`, with
/// `lateness`: each folder with the key to start after (the window's start in it) and the prefix
/// its keys share. Objects not taken yet are named from the lateness window before the newest
/// object (or before now, when that is earlier) up to now. For a flow log that has published
/// nothing for over twice the lateness (deleted, its interface gone — or old objects being
/// copied in, as a backfill does), that is two short spans instead of every folder between:
/// around its newest object (where a backfill goes on) and the lateness window before now
/// (where it shows up when it publishes again). At most [`MAX_FOLDERS`] folders a span.
fn folders(group: &Group, newest: i64, now: i64, lateness: i64) -> Vec<(String, String, String)> {
    let span = group.span();
    let spans = if now.saturating_sub(newest) > lateness.saturating_mul(2) {
        vec![
            (
                newest.saturating_sub(lateness),
                newest.saturating_add(lateness),
            ),
            (now.saturating_sub(lateness), now),
        ]
    } else {
        vec![(now.min(newest).saturating_sub(lateness), now.max(newest))]
    };
    let names = group.name_prefix();
    let mut out: Vec<(String, String, String)> = Vec::new();
    for (start, end) in spans {
        let start = start.max(end.saturating_sub(MAX_FOLDERS * span));
        let mut folder_start = start.div_euclid(span) * span;
        while folder_start <= end {
            let folder = group.folder(folder_start);
            // A folder both spans reach is listed once, from the earlier start.
            if !out.iter().any(|f| f.0 == folder) {
                let within = format!("{folder}{names}");
                let after = if folder_start <= start {
                    format!("{within}{}", stamp(start))
                } else {
                    within.clone()
                };
                out.push((folder, after, within));
            }
            folder_start += span;
        }
    }
    out
}

/// The objects of each flow log that may not have been taken yet ([`folders`]).
async fn recent(
    bucket: &Arc<Bucket>,
    groups: &BTreeMap<Group, i64>,
    lateness: Duration,
) -> Result<Vec<ObjectInput>, object_store::Error> {
    let now = crate::now_ms() / 1000;
    let lateness = i64::try_from(lateness.as_secs()).unwrap_or(i64::MAX / 4);
    let mut objects = Vec::new();
    for (group, &newest) in groups {
        for (folder, after, within) in folders(group, newest, now, lateness) {
            objects.extend(bucket.list_after(&folder, Some(&after), &within).await?);
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_know_their_folders() {
        let key = "logs/AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/01/\
                   123456789012_vpcflowlogs_us-east-1_fl-0abc_20261201T2355Z_fe123456.log.gz";
        let (group, at) = Group::of(key).unwrap();
        assert_eq!(stamp(at), "20261201T2355Z");
        assert_eq!((group.hive, group.per_hour), (false, false));
        assert_eq!(
            group.folder(at + 600),
            "logs/AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/02/"
        );
        assert_eq!(
            group.name_prefix(),
            "123456789012_vpcflowlogs_us-east-1_fl-0abc_"
        );
        let hive = "AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=eu-west-1/\
                    year=2023/month=01/day=21/hour=21/\
                    123456789012_vpcflowlogs_eu-west-1_fl-05_20230121T2100Z_1ce1bf4b.log.parquet";
        let (group, at) = Group::of(hive).unwrap();
        assert_eq!(
            (group.hive, group.per_hour, group.span()),
            (true, true, 3600)
        );
        assert_eq!(group.folder(at), hive[..hive.rfind('/').unwrap() + 1]);
        assert_eq!(Group::of("AWSLogs/x/flows.log.gz"), None);
    }

    #[test]
    fn each_poll_lists_the_lateness_window_and_no_more() {
        let key = "AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/01/\
                   123456789012_vpcflowlogs_us-east-1_fl-0abc_20261201T2355Z_fe123456.log.gz";
        let (group, newest) = Group::of(key).unwrap();
        let hour = 3_600;
        let day = |d: u32| format!("AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/12/{d:02}/");
        // Publishing: from an hour before the newest object (23:55 on the 1st) to now (the
        // 2nd, 00:10) — two day folders, the first listed after 22:55's name.
        let listed = folders(&group, newest, newest + 900, hour);
        let names: Vec<&str> = listed.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, [day(1), day(2)]);
        assert!(
            listed[0].1.ends_with("_fl-0abc_20261201T2255Z"),
            "{listed:?}"
        );
        assert_eq!(
            listed[1].1, listed[1].2,
            "the next day's folder from its start"
        );
        // Quiet for an hour (within twice the lateness): still from the newest's window.
        let listed = folders(&group, newest, newest + 2 * hour, hour);
        assert!(listed[0].1.ends_with("_20261201T2255Z"), "{listed:?}");
        // Quiet for a month (stopped, or old objects being copied in): around its newest
        // object and the window before now — three folders, not the 48 days between.
        let later = newest + 29 * 86_400 + 12 * hour;
        let listed = folders(&group, newest, later, hour);
        let names: Vec<&str> = listed.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, [day(1), day(2), day(31)], "{listed:?}");
        assert!(listed[0].1.ends_with("_20261201T2255Z"), "{listed:?}");
        assert!(listed[2].1.ends_with("_20261231T1055Z"), "{listed:?}");
        // Quiet for five hours on the same day: the day's folder once, from the earlier start.
        let listed = folders(&group, newest - 12 * hour, newest - 7 * hour, hour);
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(listed[0].1.ends_with("_20261201T1055Z"), "{listed:?}");
        // A newest object named ahead of the server's clock: listed up to it.
        let listed = folders(&group, newest, newest - 2 * 86_400, hour);
        assert_eq!(listed.last().unwrap().0, day(1), "{listed:?}");
        // However long the lateness, at most MAX_FOLDERS folders a poll.
        let listed = folders(&group, newest, newest, 400 * 86_400);
        assert_eq!(listed.len() as i64, MAX_FOLDERS + 1);
    }
}
