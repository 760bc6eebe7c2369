//! Security: security groups and network ACLs, with their rules.

use std::collections::{HashMap, HashSet};

use toml::Spanned;

use crate::rules::{NaclRule, NetworkAcl, Peer, RuleAction, SecurityGroup, SgRule};

use super::super::check::Checker;
use super::super::config::{NaclRuleConfig, SgRuleConfig};
use super::super::model::*;
use super::Builder;

impl Builder<'_, '_> {
    /// The security groups and their rules.
    pub(super) fn security_groups(&mut self) -> Vec<SecurityGroup> {
        let mut groups = Vec::new();
        for g in &self.raw.security_group {
            let g = g.get_ref();
            self.check.id(&g.id, "sg-", &mut self.seen);
            self.check.reference(&g.vpc, "vpc", &self.index.vpc);
            let mut group = SecurityGroup::new(g.id.get_ref().clone());
            group.inbound = sg_rules(self.check, &g.inbound, &self.index.security_group);
            if let Some(outbound) = &g.outbound {
                group.outbound = sg_rules(self.check, outbound, &self.index.security_group);
            }
            groups.push(group);
        }
        groups
    }

    /// The network ACLs declared, then one default ACL per VPC (whose index the VPC keeps).
    pub(super) fn network_acls(&mut self, vpcs: &mut [Vpc]) -> Vec<NetworkAcl> {
        let mut acls = Vec::new();
        for a in &self.raw.network_acl {
            let a = a.get_ref();
            self.check.id(&a.id, "acl-", &mut self.seen);
            self.check.reference(&a.vpc, "vpc", &self.index.vpc);
            let inbound = nacl_rules(self.check, &a.inbound);
            let outbound = nacl_rules(self.check, &a.outbound);
            match NetworkAcl::new(a.id.get_ref().clone(), inbound, outbound) {
                Ok(acl) => acls.push(acl),
                Err(e) => {
                    self.check.at(a.id.span(), e.to_string());
                    acls.push(NetworkAcl::default_acl(a.id.get_ref().clone(), true));
                }
            }
        }
        for vpc in vpcs.iter_mut() {
            vpc.default_acl = acls.len();
            let ipv6 = !vpc.ipv6_cidr_blocks.is_empty();
            acls.push(NetworkAcl::default_acl(
                format!("{}-default-acl", vpc.id),
                ipv6,
            ));
        }
        acls
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
