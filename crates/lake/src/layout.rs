//! AWS's S3 layout for flow logs: key prefixes and file names.
//!
//! `…/AWSLogs/{account}/vpcflowlogs/{region}/{yyyy}/{mm}/{dd}[/{hh}]/` (or its Hive-compatible
//! form `aws-account-id=…/aws-service=vpcflowlogs/aws-region=…/year=…`) holding files named
//! `{account}_vpcflowlogs_{region}_{flow-log-id}_{yyyymmddThhmmZ}_{hash}.log.gz` (or
//! `.log.parquet`). The name carries what a record may lack: the flow log, the account and the
//! region.

use flowscope_record::time::{civil_from_days, days_from_civil};

/// What an AWS flow log object's name and key say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsObject {
    /// The account that owns the flow log (`123456789012`).
    pub account_id: String,
    /// The region (`us-east-1`).
    pub region: String,
    /// The flow log's ID (`fl-1234abcd`).
    pub flow_log_id: String,
    /// Unix seconds of the name's `yyyymmddThhmmZ`: the 5-minute window whose records' `end`
    /// the file holds.
    pub window_start: i64,
    /// The object is Parquet rather than gzip text.
    pub parquet: bool,
}

impl AwsObject {
    /// The object's key under the bucket-and-prefix, as AWS writes it: the prefix
    /// `AWSLogs/{account}/vpcflowlogs/{region}/{yyyy}/{mm}/{dd}/` (Hive-compatible with `hive`, an
    /// hour level with `per_hour`) and the name with `hash` as its 8 hex digits. The inverse of
    /// [`parse`].
    pub fn key(&self, hash: u32, hive: bool, per_hour: bool) -> String {
        let window = self.window_start;
        let (year, month, day) = civil_from_days(window.div_euclid(86_400));
        let seconds = window.rem_euclid(86_400);
        let (hour, minute) = (seconds / 3600, seconds % 3600 / 60);
        let (account, region) = (&self.account_id, &self.region);
        let mut key = if hive {
            format!(
                "AWSLogs/aws-account-id={account}/aws-service=vpcflowlogs/aws-region={region}/year={year:04}/month={month:02}/day={day:02}/"
            )
        } else {
            format!("AWSLogs/{account}/vpcflowlogs/{region}/{year:04}/{month:02}/{day:02}/")
        };
        match (per_hour, hive) {
            (false, _) => {}
            (true, true) => key.push_str(&format!("hour={hour:02}/")),
            (true, false) => key.push_str(&format!("{hour:02}/")),
        }
        let extension = if self.parquet {
            "log.parquet"
        } else {
            "log.gz"
        };
        key.push_str(&format!(
            "{account}_vpcflowlogs_{region}_{}_{year:04}{month:02}{day:02}T{hour:02}{minute:02}Z_{hash:08x}.{extension}",
            self.flow_log_id
        ));
        key
    }
}

/// Recognises an AWS flow log object from its key or path (only the file name is needed).
pub fn parse(key: &str) -> Option<AwsObject> {
    let name = key.rsplit(['/', '\\']).next()?;
    let (stem, parquet) = if let Some(stem) = name.strip_suffix(".log.parquet") {
        (stem, true)
    } else if let Some(stem) = name.strip_suffix(".parquet") {
        (stem, true)
    } else if let Some(stem) = name
        .strip_suffix(".log.gz")
        .or_else(|| name.strip_suffix(".log"))
    {
        (stem, false)
    } else {
        return None;
    };
    let parts: Vec<&str> = stem.split('_').collect();
    let [account, service, region, flow_log_id, stamp, _hash] = parts[..] else {
        return None;
    };
    if service != "vpcflowlogs"
        || account.is_empty()
        || !account.bytes().all(|b| b.is_ascii_digit())
        || !flow_log_id.starts_with("fl-")
        || region.is_empty()
    {
        return None;
    }
    Some(AwsObject {
        account_id: account.to_string(),
        region: region.to_string(),
        flow_log_id: flow_log_id.to_string(),
        window_start: parse_stamp(stamp)?,
        parquet,
    })
}

/// Parses `yyyymmddThhmmZ` into Unix seconds.
fn parse_stamp(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    if b.len() != 14 || b[8] != b'T' || b[13] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let text = stamp.get(range)?;
        text.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| text.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute) = (num(9..11)?, num(11..13)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month as u32, day as u32) * 86_400 + hour * 3_600 + minute * 60)
}

/// Whether a file found while walking a directory looks like flow log text.
///
/// Files named on the command line are always read; inside directories only `.log`, `.txt` and
/// their `.gz` forms are, so a `README` or a `.parquet` beside the logs is not mistaken for one.
pub fn is_flow_log_name(path: &std::path::Path) -> bool {
    // A name that is not UTF-8 is judged by its readable part, not skipped unseen.
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    let name: &str = &name;
    if name.starts_with('.') {
        return false;
    }
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.ends_with(".log") || name.ends_with(".txt")
}

/// Whether a file found while walking a directory is an AWS Parquet flow log (`.parquet`).
pub fn is_parquet_name(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "parquet")
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_documented_names() {
        let key = "bucket/prefix/AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/\
                   123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz";
        let object = parse(key).unwrap();
        assert_eq!(object.account_id, "123456789012");
        assert_eq!(object.region, "us-east-1");
        assert_eq!(object.flow_log_id, "fl-1234abcd");
        assert_eq!(object.window_start, 1_529_511_600); // 2018-06-20T16:20:00Z
        assert!(!object.parquet);

        let hive = "AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=eu-west-1/\
                    year=2023/month=01/day=21/hour=21/\
                    123456789012_vpcflowlogs_eu-west-1_fl-055401975c87952e8_20230121T2100Z_1ce1bf4b.log.parquet";
        let object = parse(hive).unwrap();
        assert_eq!(
            (object.region.as_str(), object.parquet),
            ("eu-west-1", true)
        );
        assert_eq!(object.flow_log_id, "fl-055401975c87952e8");
        assert_eq!(object.window_start, 1_674_334_800); // 2023-01-21T21:00:00Z
    }

    #[test]
    fn other_names_are_not_aws_objects() {
        for name in [
            "flows.log.gz",
            "123_vpcflowlogs_us-east-1_fl-1_20180620T1620Z.log.gz",
            "123_cloudtrail_us-east-1_fl-1_20180620T1620Z_ab.log.gz",
            "123_vpcflowlogs_us-east-1_fl-1_20181320T1620Z_ab.log.gz",
            "123_vpcflowlogs_us-east-1_fl-1_20180620T1620Z_ab.json",
        ] {
            assert_eq!(parse(name), None, "{name}");
        }
    }
}
