//! Flow log definitions and their destinations.

use std::collections::HashMap;

use flowscope_record::LogFormat;

use super::super::config::{DestinationOptionsConfig, FlowLogConfig};

use super::super::check::Checker;
use super::super::model::*;
use super::Builder;

impl Builder<'_, '_> {
    /// The flow logs, each with the interfaces it covers and where it delivers.
    pub(super) fn flow_logs(
        &mut self,
        subnets: &[Subnet],
        interfaces: &[Interface],
    ) -> Vec<FlowLogDefinition> {
        let mut flow_logs = Vec::new();
        for f in &self.raw.flow_log {
            let f = f.get_ref();
            self.check.id(&f.id, "fl-", &mut self.seen);
            if let Some(def) = flow_log(
                self.check,
                f,
                subnets,
                interfaces,
                [
                    &self.index.vpc,
                    &self.index.subnet,
                    &self.index.network_interface,
                ],
            ) {
                flow_logs.push(def);
            }
        }
        flow_logs
    }
}

pub(super) fn flow_log(
    check: &mut Checker<'_>,
    f: &FlowLogConfig,
    subnets: &[Subnet],
    interfaces: &[Interface],
    [vpcs, subnet_index, enis]: [&HashMap<String, usize>; 3],
) -> Option<FlowLogDefinition> {
    let resource_type = match f.resource_type.get_ref().as_str() {
        "VPC" => ResourceType::Vpc,
        "Subnet" => ResourceType::Subnet,
        "NetworkInterface" => ResourceType::NetworkInterface,
        other => {
            check.at(
                f.resource_type.span(),
                format!("resource_type `{other}`: use VPC, Subnet or NetworkInterface"),
            );
            return None;
        }
    };
    if f.resource_ids.is_empty() {
        check.at(f.resource_type.span(), "resource_ids is empty");
    }
    let mut covered = Vec::new();
    for r in &f.resource_ids {
        let (kind, index) = match resource_type {
            ResourceType::Vpc => ("vpc", vpcs),
            ResourceType::Subnet => ("subnet", subnet_index),
            ResourceType::NetworkInterface => ("network_interface", enis),
        };
        let Some(i) = check.reference(r, kind, index) else {
            continue;
        };
        for (e, interface) in interfaces.iter().enumerate() {
            let hit = match resource_type {
                ResourceType::Vpc => subnets.get(interface.subnet).is_some_and(|s| s.vpc == i),
                ResourceType::Subnet => interface.subnet == i,
                ResourceType::NetworkInterface => e == i,
            };
            if hit && !covered.contains(&e) {
                covered.push(e);
            }
        }
    }
    covered.sort_unstable();
    let traffic_type = match f.traffic_type.get_ref().as_str() {
        "ACCEPT" => TrafficType::Accept,
        "REJECT" => TrafficType::Reject,
        "ALL" => TrafficType::All,
        other => {
            check.at(
                f.traffic_type.span(),
                format!("traffic_type `{other}`: use ACCEPT, REJECT or ALL"),
            );
            TrafficType::All
        }
    };
    let interval = match &f.max_aggregation_interval {
        None => 600,
        Some(i) if matches!(*i.get_ref(), 60 | 600) => *i.get_ref() as u32,
        Some(i) => {
            check.at(i.span(), "max_aggregation_interval must be 60 or 600");
            600
        }
    };
    let log_format = match &f.log_format {
        None => LogFormat::default_format(),
        Some(text) => match LogFormat::parse(text.get_ref()) {
            Ok(format) => format,
            Err(e) => {
                check.at(text.span(), e.to_string());
                LogFormat::default_format()
            }
        },
    };
    let destination_type = f
        .log_destination_type
        .as_ref()
        .map_or("cloud-watch-logs", |t| t.get_ref().as_str());
    let location = f.log_destination.as_ref().map(|d| d.get_ref().clone());
    if f.destination_options.is_some() && destination_type != "s3" {
        check.at(
            f.id.span(),
            "destination_options apply to s3 destinations only",
        );
    }
    if f.firehose.is_some() && destination_type != "kinesis-data-firehose" {
        check.at(
            f.id.span(),
            "firehose options apply to kinesis-data-firehose destinations only",
        );
    }
    let destination = match destination_type {
        "s3" => {
            let options = f.destination_options.clone().unwrap_or_default();
            s3_destination(check, location, &options)
        }
        "cloud-watch-logs" => match &f.log_group_name {
            Some(group) => LogDestination::CloudWatchLogs {
                location,
                log_group_name: group.get_ref().clone(),
            },
            None => {
                check.at(
                    f.id.span(),
                    "a cloud-watch-logs flow log needs log_group_name",
                );
                return None;
            }
        },
        "kinesis-data-firehose" => {
            let Some(url) =
                location.filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            else {
                let span = f
                    .log_destination
                    .as_ref()
                    .or(f.log_destination_type.as_ref())
                    .map_or(f.id.span(), |d| d.span());
                check.at(span, "a kinesis-data-firehose flow log needs log_destination = the endpoint's http(s):// URL");
                return None;
            };
            let config = f.firehose.clone().unwrap_or_default();
            let gzip = match config
                .content_encoding
                .as_ref()
                .map(|c| (c, c.get_ref().as_str()))
            {
                None | Some((_, "none")) => false,
                Some((_, "gzip")) => true,
                Some((c, other)) => {
                    check.at(
                        c.span(),
                        format!("content_encoding `{other}`: use gzip or none"),
                    );
                    false
                }
            };
            LogDestination::Firehose {
                url,
                options: FirehoseOptions {
                    delivery_stream_arn: config.delivery_stream_arn,
                    access_key: config.access_key,
                    common_attributes: config.common_attributes.into_iter().collect(),
                    gzip,
                    retry_duration: config.retry_duration.unwrap_or(300),
                },
            }
        }
        "lake" => LogDestination::Lake { location },
        other => {
            let span = f
                .log_destination_type
                .as_ref()
                .map_or(f.id.span(), |t| t.span());
            check.at(span, format!("log_destination_type `{other}`: use s3, cloud-watch-logs, kinesis-data-firehose or lake"));
            return None;
        }
    };
    Some(FlowLogDefinition {
        id: f.id.get_ref().clone(),
        resource_type,
        resource_ids: f.resource_ids.iter().map(|r| r.get_ref().clone()).collect(),
        interfaces: covered,
        traffic_type,
        max_aggregation_interval: interval,
        log_format,
        destination,
    })
}

pub(super) fn s3_destination(
    check: &mut Checker<'_>,
    location: Option<String>,
    options: &DestinationOptionsConfig,
) -> LogDestination {
    let file_format = match options
        .file_format
        .as_ref()
        .map(|f| (f, f.get_ref().as_str()))
    {
        None | Some((_, "plain-text")) => FileFormat::PlainText,
        Some((_, "parquet")) => FileFormat::Parquet,
        Some((f, other)) => {
            check.at(
                f.span(),
                format!("file_format `{other}`: use plain-text or parquet"),
            );
            FileFormat::PlainText
        }
    };
    let location = location.map(|l| match l.strip_prefix("arn:aws:s3:::") {
        Some(rest) => format!("s3://{rest}"),
        None => l,
    });
    LogDestination::S3 {
        location,
        file_format,
        hive_compatible_partitions: options.hive_compatible_partitions,
        per_hour_partition: options.per_hour_partition,
    }
}
