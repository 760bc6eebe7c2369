//! Security group and network ACL rules, reserved addresses, route targets.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use flowscope_record::net::Cidr;
use toml::Spanned;

use crate::rules::{NaclRule, Peer, RuleAction, SgRule};

use super::super::config::{NaclRuleConfig, SgRuleConfig, Text};

use super::super::check::{Checker, Raw};
use super::super::model::*;

/// Why AWS reserves `ip` in subnet `c` (the first four addresses and the last one of IPv4
/// subnets), or `None`.
pub(super) fn reserved(c: Cidr, ip: IpAddr) -> Option<&'static str> {
    let (IpAddr::V4(net), IpAddr::V4(a)) = (c.network(), ip) else {
        return None;
    };
    let offset = u32::from(a) - u32::from(net);
    let size = 1u64 << (32 - u32::from(c.prefix()));
    match offset {
        0 => Some("network address"),
        1 => Some("VPC router"),
        2 => Some("DNS server"),
        3 => Some("reserved for future use"),
        o if u64::from(o) == size - 1 => Some("broadcast address"),
        _ => None,
    }
}

pub(super) fn sg_rules(
    check: &mut Checker<'_>,
    rules: &[Spanned<SgRuleConfig>],
    groups: &HashMap<String, usize>,
) -> Vec<SgRule> {
    let mut out = Vec::new();
    for r in rules {
        let span = r.span();
        let r = r.get_ref();
        let protocol = check.protocol(&r.protocol);
        let ports = check.ports(&r.port_range);
        let peer = match (&r.cidr_block, &r.group_id) {
            (Some(c), None) => check.cidr(c).map(Peer::Cidr),
            (None, Some(g)) => check
                .reference(g, "security_group", groups)
                .map(|_| Peer::Group(g.get_ref().clone())),
            _ => {
                check.at(
                    span,
                    "a security group rule needs exactly one of cidr_block and group_id",
                );
                None
            }
        };
        if let (Some(protocol), Some(ports), Some(peer)) = (protocol, ports, peer) {
            out.push(SgRule {
                protocol,
                ports,
                peer,
            });
        }
    }
    out
}

pub(super) fn nacl_rules(
    check: &mut Checker<'_>,
    rules: &[Spanned<NaclRuleConfig>],
) -> Vec<NaclRule> {
    let mut out = Vec::new();
    let mut numbers = HashSet::new();
    for r in rules {
        let r = r.get_ref();
        let n = *r.rule_number.get_ref();
        let number = match u16::try_from(n) {
            Ok(n) if (1..=32_766).contains(&n) => Some(n),
            _ => {
                check.at(
                    r.rule_number.span(),
                    format!("rule_number {n} is outside 1 to 32766"),
                );
                None
            }
        };
        if number.is_some() && !numbers.insert(n) {
            check.at(
                r.rule_number.span(),
                format!("rule_number {n} is used twice in this direction"),
            );
        }
        let protocol = check.protocol(&r.protocol);
        let ports = check.ports(&r.port_range);
        let cidr = check.cidr(&r.cidr_block);
        let action = match r.rule_action.get_ref().to_ascii_lowercase().as_str() {
            "allow" => Some(RuleAction::Allow),
            "deny" => Some(RuleAction::Deny),
            other => {
                check.at(
                    r.rule_action.span(),
                    format!("rule_action `{other}`: use allow or deny"),
                );
                None
            }
        };
        if let (Some(number), Some(protocol), Some(ports), Some(cidr), Some(action)) =
            (number, protocol, ports, cidr, action)
        {
            out.push(NaclRule {
                number,
                protocol,
                ports,
                cidr,
                action,
            });
        }
    }
    out.sort_by_key(|r| r.number);
    out.dedup_by_key(|r| r.number);
    out
}

pub(super) fn route_target(
    check: &mut Checker<'_>,
    target: &Text,
    raw: &Raw,
    nats: &HashMap<String, usize>,
    [igw, tgw, vgw, pcx, vpce]: [&HashMap<String, usize>; 5],
) -> Option<RouteTarget> {
    let t = target.get_ref();
    let id = t.clone();
    if t == "local" {
        return Some(RouteTarget::Local);
    }
    let kinds: [(&str, &str, &HashMap<String, usize>); 6] = [
        ("igw-", "internet_gateway", igw),
        ("nat-", "nat_gateway", nats),
        ("tgw-", "transit_gateway", tgw),
        ("vgw-", "vpn_gateway", vgw),
        ("pcx-", "vpc_peering_connection", pcx),
        ("vpce-", "vpc_endpoint", vpce),
    ];
    let Some((prefix, kind, index)) = kinds.iter().find(|(p, _, _)| t.starts_with(p)) else {
        check.at(
            target.span(),
            format!("route target `{t}`: use local, igw-, nat-, tgw-, vgw-, pcx- or vpce- ids"),
        );
        return None;
    };
    let i = check.reference(target, kind, index)?;
    Some(match *prefix {
        "igw-" => RouteTarget::InternetGateway(id),
        "nat-" => RouteTarget::NatGateway(i),
        "tgw-" => RouteTarget::TransitGateway(id),
        "vgw-" => RouteTarget::VpnGateway(id),
        "pcx-" => RouteTarget::Peering {
            id,
            inter_region: raw.vpc_peering_connection[i].get_ref().inter_region,
        },
        _ => {
            let endpoint = raw.vpc_endpoint[i].get_ref();
            if endpoint.vpc_endpoint_type.get_ref() != "Gateway" {
                check.at(
                    target.span(),
                    format!(
                        "{t} is an Interface endpoint; only Gateway endpoints are route targets"
                    ),
                );
            }
            RouteTarget::GatewayEndpoint(id)
        }
    })
}
