//! Building the model from the sections read: references resolved, values checked.
//!
//! One [`Builder`] takes the steps in a fixed order, so mistakes come out in the same order
//! every time: the network's VPCs ([`network`]), security groups and ACLs ([`security`]),
//! gateways and route tables ([`routing`]), then subnets and interfaces, which refer to all of
//! those, and last the flow logs ([`flow_log`]), which cover interfaces.

mod flow_log;
mod network;
mod routing;
mod security;

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::check::{Checker, Raw, index_of};
use super::model::*;

/// Where each declared id sits in its section.
struct Index {
    vpc: HashMap<String, usize>,
    subnet: HashMap<String, usize>,
    security_group: HashMap<String, usize>,
    network_acl: HashMap<String, usize>,
    network_interface: HashMap<String, usize>,
    route_table: HashMap<String, usize>,
    nat_gateway: HashMap<String, usize>,
    internet_gateway: HashMap<String, usize>,
    transit_gateway: HashMap<String, usize>,
    vpn_gateway: HashMap<String, usize>,
    peering: HashMap<String, usize>,
    endpoint: HashMap<String, usize>,
}

impl Index {
    fn of(raw: &Raw) -> Self {
        Self {
            vpc: index_of(&raw.vpc, |v| &v.id),
            subnet: index_of(&raw.subnet, |v| &v.id),
            security_group: index_of(&raw.security_group, |v| &v.id),
            network_acl: index_of(&raw.network_acl, |v| &v.id),
            network_interface: index_of(&raw.network_interface, |v| &v.id),
            route_table: index_of(&raw.route_table, |v| &v.id),
            nat_gateway: index_of(&raw.nat_gateway, |v| &v.id),
            internet_gateway: index_of(&raw.internet_gateway, |v| &v.id),
            transit_gateway: index_of(&raw.transit_gateway, |v| &v.id),
            vpn_gateway: index_of(&raw.vpn_gateway, |v| &v.id),
            peering: index_of(&raw.vpc_peering_connection, |v| &v.id),
            endpoint: index_of(&raw.vpc_endpoint, |v| &v.id),
        }
    }
}

/// The state the steps share: the checker, the sections, their indexes, the ids seen so far and
/// whether a step dropped something later steps need.
struct Builder<'c, 't> {
    check: &'c mut Checker<'t>,
    raw: &'c Raw,
    index: Index,
    seen: HashSet<String>,
    broken: bool,
}

/// Checks references and values; `None` when something is missing that later steps need.
pub(super) fn build(check: &mut Checker<'_>, raw: Raw, whole: Range<usize>) -> Option<Topology> {
    let mut b = Builder {
        check,
        raw: &raw,
        index: Index::of(&raw),
        seen: HashSet::new(),
        broken: false,
    };
    let (account_id, region) = b.identity(whole);
    let mut vpcs = b.vpcs();
    let security_groups = b.security_groups();
    let network_acls = b.network_acls(&mut vpcs);
    let nat_gateways = b.nat_gateways();
    b.other_gateways();
    let route_tables = b.route_tables(&mut vpcs);
    let subnets = b.subnets(&vpcs, &route_tables);
    let interfaces = b.interfaces(&vpcs, &subnets);
    let aws_ranges = b.aws_ranges();
    let flow_logs = b.flow_logs(&subnets, &interfaces);
    if b.broken {
        return None;
    }
    Some(Topology {
        account_id,
        region,
        vpcs,
        subnets,
        interfaces,
        security_groups,
        network_acls,
        route_tables,
        nat_gateways,
        aws_ranges,
        flow_logs,
    })
}

impl Builder<'_, '_> {
    /// The account and Region the file describes.
    fn identity(&mut self, whole: Range<usize>) -> (String, String) {
        let account_id = match &self.raw.account_id {
            Some(a) => {
                if a.get_ref().len() != 12 || !a.get_ref().bytes().all(|b| b.is_ascii_digit()) {
                    self.check.at(a.span(), "account_id must be 12 digits");
                }
                a.get_ref().clone()
            }
            None => {
                self.check
                    .at(whole.start..whole.start, "missing `account_id`");
                String::new()
            }
        };
        let region = match &self.raw.region {
            Some(r) => r.get_ref().clone(),
            None => {
                self.check.at(whole.start..whole.start, "missing `region`");
                String::new()
            }
        };
        (account_id, region)
    }
}
