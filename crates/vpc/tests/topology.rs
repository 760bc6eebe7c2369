//! Topology files: every mistake reported at once, each with its line and column.

use flowscope_vpc::Topology;
use flowscope_vpc::topology::{LogDestination, ResourceType, TrafficType};
use pretty_assertions::assert_eq;

const GOOD: &str = include_str!("../../../testdata/topology/every-section.toml");

#[test]
fn a_good_file_is_checked_into_a_topology() {
    let t = Topology::from_toml(GOOD).unwrap();
    assert_eq!(t.interfaces.len(), 2);
    let fl = &t.flow_logs[0];
    assert_eq!(fl.resource_type, ResourceType::Subnet);
    assert_eq!(
        fl.interfaces,
        [1],
        "a subnet flow log covers the subnet's interfaces only"
    );
    assert_eq!(fl.traffic_type, TrafficType::Reject);
    assert_eq!(fl.max_aggregation_interval, 60);
    assert_eq!(fl.log_format.version(), 2);
    assert!(
        matches!(&fl.destination, LogDestination::CloudWatchLogs { log_group_name, .. } if log_group_name == "vpc-flow-logs")
    );
    // Subnets without an ACL get the VPC's default one (rule 100 allows everything).
    assert!(
        t.network_acls[t.subnets[0].network_acl]
            .id
            .ends_with("default-acl")
    );
}

#[test]
fn every_mistake_is_reported_with_its_place() {
    let bad = GOOD
        .replace(
            r#"cidr_block = "10.0.2.0/24""#,
            r#"cidr_block = "10.1.2.0/24""#,
        )
        .replace(
            r#"private_ip_addresses = ["10.0.1.10"]"#,
            r#"private_ip_addresses = ["10.0.1.1"]"#,
        )
        .replace(
            r#"security_groups = ["sg-web"]
"#,
            r#"security_groups = ["sg-wbe"]
"#,
        )
        .replace(r#"port_range = "80""#, r#"port_range = "90-80""#)
        .replace(r#"traffic_type = "REJECT""#, r#"traffic_type = "DENY""#)
        .replace(
            "max_aggregation_interval = 60",
            "max_aggregation_interval = 300",
        )
        .replace(
            r#"az_id = "euw1-az2""#,
            "az_id = \"euw1-az2\"\nzone = \"b\"",
        );
    let mistakes = Topology::from_toml(&bad).unwrap_err();
    let got: Vec<(usize, String)> = mistakes
        .iter()
        .map(|m| (m.line, m.message.clone()))
        .collect();
    let line = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let want = vec![
        (line("zone ="), "unknown field `zone`, expected one of `id`, `vpc`, `cidr_block`, `ipv6_cidr_block`, `az_id`, `network_acl`, `route_table`, `sublocation_type`, `sublocation_id`".to_string()),
        (line("90-80"), "port range 90-80 ends before it starts".to_string()),
        (line("10.0.1.1\""), "10.0.1.1 is reserved by AWS in 10.0.1.0/24 (VPC router)".to_string()),
        (line("sg-wbe"), "no security_group `sg-wbe` is declared (did you mean `sg-web`?)".to_string()),
        (line("subnet = \"subnet-b\""), "no subnet `subnet-b` is declared (did you mean `subnet-a`?)".to_string()),
        (line("sg-wbe") + 6, "no security_group `sg-wbe` is declared (did you mean `sg-web`?)".to_string()),
        (line("resource_ids = [\"subnet-b\"]"), "no subnet `subnet-b` is declared (did you mean `subnet-a`?)".to_string()),
        (line("DENY"), "traffic_type `DENY`: use ACCEPT, REJECT or ALL".to_string()),
        (line("= 300"), "max_aggregation_interval must be 60 or 600".to_string()),
    ];
    assert_eq!(got, want);
    // Columns point at the value.
    let m = mistakes
        .iter()
        .find(|m| m.message.starts_with("traffic_type"))
        .unwrap();
    assert_eq!(m.column, "traffic_type = ".len() + 1);
    assert_eq!(
        m.to_string(),
        format!(
            "line {}, column 16: traffic_type `DENY`: use ACCEPT, REJECT or ALL",
            m.line
        )
    );
}

#[test]
fn references_addresses_and_syntax() {
    // A subnet outside its VPC (the element with the unknown key was dropped above; here the
    // subnet parses, so its block is checked).
    let outside = GOOD.replace(
        r#"cidr_block = "10.0.2.0/24""#,
        r#"cidr_block = "10.1.2.0/24""#,
    );
    let m = Topology::from_toml(&outside).unwrap_err();
    assert!(
        m.iter()
            .any(|m| m.message == "10.1.2.0/24 is not inside vpc-1's blocks"),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.message.starts_with("10.0.2.10 is not in subnet-b")),
        "{m:?}"
    );

    let dup = GOOD
        .replace(
            r#"private_ip_addresses = ["10.0.2.10"]"#,
            r#"private_ip_addresses = ["10.0.1.10"]"#,
        )
        .replace(r#"subnet = "subnet-b""#, r#"subnet = "subnet-a""#);
    let m = Topology::from_toml(&dup).unwrap_err();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].message, "10.0.1.10 is already an address of eni-a");

    let syntax = "account_id = \"123456789012\"\nregion = \n";
    let m = Topology::from_toml(syntax).unwrap_err();
    assert_eq!(m[0].line, 2);

    let missing = "[[vpc]]\nid = \"vpc-1\"\ncidr_blocks = []\n[[flow_log]]\nid = \"fl-1\"\nresource_type = \"VPC\"\nresource_ids = [\"vpc-2\"]\ntraffic_type = \"ALL\"\nlog_destination_type = \"kinesis-data-firehose\"\n";
    let m: Vec<String> = Topology::from_toml(missing)
        .unwrap_err()
        .into_iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(
        m,
        [
            "line 1, column 1: missing `account_id`",
            "line 1, column 1: missing `region`",
            "line 2, column 6: `vpc-1` has no cidr_blocks",
            "line 7, column 17: no vpc `vpc-2` is declared (did you mean `vpc-1`?)",
            "line 9, column 24: a kinesis-data-firehose flow log needs log_destination = the endpoint's http(s):// URL",
        ]
    );
}

#[test]
fn nacl_rules_are_checked() {
    let acl = r#"
[[network_acl]]
id = "acl-1"
vpc = "vpc-1"
inbound = [
  { rule_number = 100, protocol = "tcp", port_range = "22", cidr_block = "0.0.0.0/0", rule_action = "allow" },
  { rule_number = 100, protocol = "udp", cidr_block = "0.0.0.0/0", rule_action = "allow" },
  { rule_number = 40000, protocol = "gre", cidr_block = "10.0.0.0/33", rule_action = "permit" },
]
"#;
    let m: Vec<String> = Topology::from_toml(&format!("{GOOD}{acl}"))
        .unwrap_err()
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(
        m,
        [
            "rule_number 100 is used twice in this direction",
            "rule_number 40000 is outside 1 to 32766",
            "protocol must be tcp, udp, icmp, icmpv6, all (-1) or a number 0-255",
            "invalid CIDR block `10.0.0.0/33`: prefix length must be 0 to 32",
            "rule_action `permit`: use allow or deny",
        ]
    );
}
