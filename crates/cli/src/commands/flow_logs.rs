//! `flowscope flow-logs`: work with topology files.

use std::path::PathBuf;

use anyhow::Context;
use flowscope_vpc::Topology;
use flowscope_vpc::topology::{LogDestination, ResourceType, TrafficType};

use super::Outcome;

/// Topology files: the VPCs, security groups, network ACLs and flow logs the emulator models.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check a topology file and report every mistake in it, with its line and column.
    ///
    /// Exit status 1 when there is any mistake.
    Validate {
        /// The topology file (TOML).
        file: PathBuf,
    },
}

/// Runs `flowscope flow-logs`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Validate { file } => validate(&file),
    }
}

fn validate(file: &PathBuf) -> anyhow::Result<Outcome> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match Topology::from_toml(&text) {
        Ok(t) => {
            println!(
                "{}: valid — {} VPC(s), {} subnet(s), {} network interface(s), {} security group(s), {} network ACL(s), {} flow log(s)",
                file.display(),
                t.vpcs.len(),
                t.subnets.len(),
                t.interfaces.len(),
                t.security_groups.len(),
                t.network_acls.len() - t.vpcs.len(),
                t.flow_logs.len()
            );
            for f in &t.flow_logs {
                let resource = match f.resource_type {
                    ResourceType::Vpc => "VPC",
                    ResourceType::Subnet => "Subnet",
                    ResourceType::NetworkInterface => "NetworkInterface",
                };
                let traffic = match f.traffic_type {
                    TrafficType::Accept => "ACCEPT",
                    TrafficType::Reject => "REJECT",
                    TrafficType::All => "ALL",
                };
                let destination = match &f.destination {
                    LogDestination::S3 { location, .. } => format!(
                        "s3 {}",
                        location.as_deref().unwrap_or("(the output folder)")
                    ),
                    LogDestination::CloudWatchLogs { log_group_name, .. } => {
                        format!("cloud-watch-logs {log_group_name}")
                    }
                    LogDestination::Firehose { url, .. } => format!("kinesis-data-firehose {url}"),
                    LogDestination::Lake { location } => format!(
                        "lake {}",
                        location.as_deref().unwrap_or("(the output folder)")
                    ),
                };
                println!(
                    "  {}: {resource} {} -> {} interface(s), {traffic}, {} s, version {} format, {destination}",
                    f.id,
                    f.resource_ids.join(","),
                    f.interfaces.len(),
                    f.max_aggregation_interval,
                    f.log_format.version()
                );
            }
            Ok(Outcome::Success)
        }
        Err(mistakes) => {
            for m in &mistakes {
                println!("{}:{}:{}: {}", file.display(), m.line, m.column, m.message);
            }
            eprintln!(
                "flowscope: {} mistake(s) in {}",
                mistakes.len(),
                file.display()
            );
            Ok(Outcome::Partial)
        }
    }
}
