//! Building the model from the sections read: references resolved, values checked.

mod flow_log;
mod rules;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use flowscope_record::net::{Cidr, is_private};

use crate::rules::{NetworkAcl, SecurityGroup};

use super::check::{Checker, Raw, index_of};
use super::model::*;
use flow_log::flow_log;
use rules::{nacl_rules, reserved, route_target, sg_rules};

/// Checks references and values; `None` when something is missing that later steps need.
pub(super) fn build(check: &mut Checker<'_>, raw: Raw, whole: Range<usize>) -> Option<Topology> {
    let account_id = match &raw.account_id {
        Some(a) => {
            if a.get_ref().len() != 12 || !a.get_ref().bytes().all(|b| b.is_ascii_digit()) {
                check.at(a.span(), "account_id must be 12 digits");
            }
            a.get_ref().clone()
        }
        None => {
            check.at(whole.start..whole.start, "missing `account_id`");
            String::new()
        }
    };
    let region = match &raw.region {
        Some(r) => r.get_ref().clone(),
        None => {
            check.at(whole.start..whole.start, "missing `region`");
            String::new()
        }
    };

    let mut seen = HashSet::new();
    let mut broken = false;
    let vpc_index = index_of(&raw.vpc, |v| &v.id);
    let subnet_index = index_of(&raw.subnet, |v| &v.id);
    let sg_index = index_of(&raw.security_group, |v| &v.id);
    let acl_index = index_of(&raw.network_acl, |v| &v.id);
    let eni_index = index_of(&raw.network_interface, |v| &v.id);
    let rtb_index = index_of(&raw.route_table, |v| &v.id);
    let nat_index = index_of(&raw.nat_gateway, |v| &v.id);
    let igw: HashMap<String, usize> = index_of(&raw.internet_gateway, |v| &v.id);
    let tgw: HashMap<String, usize> = index_of(&raw.transit_gateway, |v| &v.id);
    let vgw: HashMap<String, usize> = index_of(&raw.vpn_gateway, |v| &v.id);
    let pcx = index_of(&raw.vpc_peering_connection, |v| &v.id);
    let vpce = index_of(&raw.vpc_endpoint, |v| &v.id);

    // VPCs.
    let mut vpcs = Vec::new();
    for v in &raw.vpc {
        let v = v.get_ref();
        check.id(&v.id, "vpc-", &mut seen);
        if v.cidr_blocks.is_empty() {
            check.at(
                v.id.span(),
                format!("`{}` has no cidr_blocks", v.id.get_ref()),
            );
        }
        let mut blocks = Vec::new();
        for c in &v.cidr_blocks {
            if let Some(cidr) = check.cidr(c) {
                if !cidr.is_ipv4() {
                    check.at(
                        c.span(),
                        "cidr_blocks are IPv4; put IPv6 blocks in ipv6_cidr_blocks",
                    );
                }
                blocks.push(cidr);
            }
        }
        let mut v6 = Vec::new();
        for c in &v.ipv6_cidr_blocks {
            if let Some(cidr) = check.cidr(c) {
                if cidr.is_ipv4() {
                    check.at(c.span(), "ipv6_cidr_blocks must be IPv6 blocks");
                }
                v6.push(cidr);
            }
        }
        let bpa = match v
            .block_public_access
            .as_ref()
            .map(|b| (b, b.get_ref().as_str()))
        {
            None | Some((_, "off")) => BlockPublicAccess::Off,
            Some((_, "block-bidirectional")) => BlockPublicAccess::Bidirectional,
            Some((_, "block-ingress")) => BlockPublicAccess::Ingress,
            Some((b, other)) => {
                check.at(
                    b.span(),
                    format!("block_public_access `{other}`: use off, block-bidirectional or block-ingress"),
                );
                BlockPublicAccess::Off
            }
        };
        vpcs.push(Vpc {
            id: v.id.get_ref().clone(),
            cidr_blocks: blocks,
            ipv6_cidr_blocks: v6,
            block_public_access: bpa,
            default_acl: 0,
            main_route_table: None,
        });
    }

    // Security groups.
    let mut groups = Vec::new();
    for g in &raw.security_group {
        let g = g.get_ref();
        check.id(&g.id, "sg-", &mut seen);
        check.reference(&g.vpc, "vpc", &vpc_index);
        let mut group = SecurityGroup::new(g.id.get_ref().clone());
        group.inbound = sg_rules(check, &g.inbound, &sg_index);
        if let Some(outbound) = &g.outbound {
            group.outbound = sg_rules(check, outbound, &sg_index);
        }
        groups.push(group);
    }

    // Network ACLs, then one default ACL per VPC.
    let mut acls = Vec::new();
    for a in &raw.network_acl {
        let a = a.get_ref();
        check.id(&a.id, "acl-", &mut seen);
        check.reference(&a.vpc, "vpc", &vpc_index);
        let inbound = nacl_rules(check, &a.inbound);
        let outbound = nacl_rules(check, &a.outbound);
        match NetworkAcl::new(a.id.get_ref().clone(), inbound, outbound) {
            Ok(acl) => acls.push(acl),
            Err(e) => {
                check.at(a.id.span(), e.to_string());
                acls.push(NetworkAcl::default_acl(a.id.get_ref().clone(), true));
            }
        }
    }
    for vpc in &mut vpcs {
        vpc.default_acl = acls.len();
        let ipv6 = !vpc.ipv6_cidr_blocks.is_empty();
        acls.push(NetworkAcl::default_acl(
            format!("{}-default-acl", vpc.id),
            ipv6,
        ));
    }

    // NAT gateways, peering, endpoints: what route targets resolve to.
    let mut nats = Vec::new();
    for n in &raw.nat_gateway {
        let n = n.get_ref();
        check.id(&n.id, "nat-", &mut seen);
        let eni = check.reference(&n.network_interface, "network_interface", &eni_index);
        if let Some(i) = eni {
            let t = raw.network_interface[i].get_ref().interface_type.as_ref();
            if t.map(|t| t.get_ref().as_str()) != Some("nat_gateway") {
                check.at(
                    n.network_interface.span(),
                    format!(
                        "`{}` should have interface_type = \"nat_gateway\"",
                        n.network_interface.get_ref()
                    ),
                );
            }
        }
        let ip = check.address(&n.public_ip);
        if let Some(ip) = ip.filter(|ip| is_private(*ip)) {
            check.at(
                n.public_ip.span(),
                format!("{ip} is a private address, not an Elastic IP"),
            );
        }
        if let (Some(interface), Some(public_ip)) = (eni, ip) {
            nats.push(NatGateway {
                id: n.id.get_ref().clone(),
                interface,
                public_ip,
            });
        }
    }
    for (kind, list, prefix) in [
        ("internet_gateway", &raw.internet_gateway, "igw-"),
        ("transit_gateway", &raw.transit_gateway, "tgw-"),
        ("vpn_gateway", &raw.vpn_gateway, "vgw-"),
    ] {
        for g in list {
            let g = g.get_ref();
            check.id(&g.id, prefix, &mut seen);
            match &g.vpc {
                Some(v) => {
                    check.reference(v, "vpc", &vpc_index);
                }
                None if kind != "transit_gateway" => {
                    check.at(
                        g.id.span(),
                        format!("{kind} `{}` needs a vpc", g.id.get_ref()),
                    );
                }
                None => {}
            }
        }
    }
    for p in &raw.vpc_peering_connection {
        let p = p.get_ref();
        check.id(&p.id, "pcx-", &mut seen);
        check.reference(&p.vpc, "vpc", &vpc_index);
        for c in &p.peer_cidr_blocks {
            check.cidr(c);
        }
    }
    for e in &raw.vpc_endpoint {
        let e = e.get_ref();
        check.id(&e.id, "vpce-", &mut seen);
        check.reference(&e.vpc, "vpc", &vpc_index);
        if !matches!(
            e.vpc_endpoint_type.get_ref().as_str(),
            "Gateway" | "Interface"
        ) {
            check.at(
                e.vpc_endpoint_type.span(),
                "vpc_endpoint_type must be Gateway or Interface",
            );
        }
        for c in &e.prefix_list_cidrs {
            check.cidr(c);
        }
    }

    // Route tables.
    let mut tables = Vec::new();
    for t in &raw.route_table {
        let t = t.get_ref();
        check.id(&t.id, "rtb-", &mut seen);
        let vpc = check.reference(&t.vpc, "vpc", &vpc_index);
        let mut routes = Vec::new();
        if let Some(v) = vpc.and_then(|v| vpcs.get(v)) {
            for c in v.cidr_blocks.iter().chain(&v.ipv6_cidr_blocks) {
                routes.push(Route {
                    destination: *c,
                    target: RouteTarget::Local,
                });
            }
            if t.main {
                if vpcs[vpc.unwrap_or(0)].main_route_table.is_some() {
                    check.at(
                        t.id.span(),
                        format!("{} has a second main route table", v.id),
                    );
                }
                let i = tables.len();
                if let Some(v) = vpc {
                    vpcs[v].main_route_table = Some(i);
                }
            }
        }
        for r in &t.routes {
            let r = r.get_ref();
            let destination = check.cidr(&r.destination);
            let target = route_target(
                check,
                &r.target,
                &raw,
                &nat_index,
                [&igw, &tgw, &vgw, &pcx, &vpce],
            );
            if let (Some(destination), Some(target)) = (destination, target) {
                routes.push(Route {
                    destination,
                    target,
                });
            }
        }
        tables.push(RouteTable {
            id: t.id.get_ref().clone(),
            vpc: vpc.unwrap_or(0),
            routes,
        });
    }

    // Subnets.
    let mut subnets: Vec<Subnet> = Vec::new();
    for s in &raw.subnet {
        let s = s.get_ref();
        check.id(&s.id, "subnet-", &mut seen);
        let vpc = check.reference(&s.vpc, "vpc", &vpc_index);
        let cidr = check.cidr(&s.cidr_block);
        let v6 = s.ipv6_cidr_block.as_ref().and_then(|c| check.cidr(c));
        if let (Some(v), Some(c)) = (vpc, cidr) {
            let inside = vpcs[v]
                .cidr_blocks
                .iter()
                .any(|b| b.prefix() <= c.prefix() && b.contains(c.network()));
            if !inside {
                check.at(
                    s.cidr_block.span(),
                    format!("{c} is not inside {}'s blocks", vpcs[v].id),
                );
            }
            for other in subnets.iter().filter(|o| o.vpc == v) {
                if other.cidr_block.contains(c.network()) || c.contains(other.cidr_block.network())
                {
                    check.at(
                        s.cidr_block.span(),
                        format!("{c} overlaps {} ({})", other.id, other.cidr_block),
                    );
                }
            }
        }
        if let (Some(v), Some(c), Some(text)) = (vpc, v6, &s.ipv6_cidr_block) {
            let inside = vpcs[v]
                .ipv6_cidr_blocks
                .iter()
                .any(|b| b.prefix() <= c.prefix() && b.contains(c.network()));
            if !inside {
                check.at(
                    text.span(),
                    format!("{c} is not inside {}'s IPv6 blocks", vpcs[v].id),
                );
            }
        }
        let acl = match &s.network_acl {
            Some(a) => check.reference(a, "network_acl", &acl_index),
            None => vpc.map(|v| vpcs[v].default_acl),
        };
        let route_table = s
            .route_table
            .as_ref()
            .and_then(|r| check.reference(r, "route_table", &rtb_index));
        if let (Some(r), Some(v), Some(text)) = (route_table, vpc, &s.route_table)
            && tables[r].vpc != v
        {
            check.at(
                text.span(),
                format!("{} belongs to another VPC", tables[r].id),
            );
        }
        let sublocation = match (&s.sublocation_type, &s.sublocation_id) {
            (None, None) => None,
            (Some(t), Some(i)) => {
                if !matches!(t.get_ref().as_str(), "wavelength" | "outpost" | "localzone") {
                    check.at(
                        t.span(),
                        "sublocation_type must be wavelength, outpost or localzone",
                    );
                }
                Some((t.get_ref().clone(), i.get_ref().clone()))
            }
            (Some(t), None) | (None, Some(t)) => {
                check.at(t.span(), "sublocation_type and sublocation_id go together");
                None
            }
        };
        if let (Some(vpc), Some(cidr_block), Some(network_acl)) = (vpc, cidr, acl) {
            subnets.push(Subnet {
                id: s.id.get_ref().clone(),
                vpc,
                cidr_block,
                ipv6_cidr_block: v6,
                az_id: s.az_id.get_ref().clone(),
                network_acl,
                route_table,
                sublocation,
            });
        } else {
            // Keep indexes aligned with the file so later sections still get checked.
            broken = true;
            subnets.push(Subnet {
                id: s.id.get_ref().clone(),
                vpc: vpc.unwrap_or(usize::MAX),
                cidr_block: Cidr::parse("0.0.0.0/32").expect("valid"),
                ipv6_cidr_block: None,
                az_id: String::new(),
                network_acl: 0,
                route_table: None,
                sublocation: None,
            });
        }
    }

    // Interfaces.
    let mut interfaces = Vec::new();
    let mut addresses: HashMap<IpAddr, String> = HashMap::new();
    for e in &raw.network_interface {
        let e = e.get_ref();
        check.id(&e.id, "eni-", &mut seen);
        let subnet = check.reference(&e.subnet, "subnet", &subnet_index);
        let mut private_ips = Vec::new();
        for a in &e.private_ip_addresses {
            let Some(ip) = check.address(a) else { continue };
            if let Some(s) = subnet
                .and_then(|s| subnets.get(s))
                .filter(|s| s.vpc != usize::MAX)
            {
                let c = s.cidr_block;
                if !c.contains(ip) {
                    check.at(a.span(), format!("{ip} is not in {} ({c})", s.id));
                } else if let Some(reason) = reserved(c, ip) {
                    check.at(
                        a.span(),
                        format!("{ip} is reserved by AWS in {c} ({reason})"),
                    );
                }
            }
            if let Some(owner) = addresses.insert(ip, e.id.get_ref().clone()) {
                check.at(a.span(), format!("{ip} is already an address of {owner}"));
            }
            private_ips.push(ip);
        }
        let mut ipv6_ips = Vec::new();
        for a in &e.ipv6_addresses {
            let Some(ip) = check.address(a) else { continue };
            if let Some(s) = subnet
                .and_then(|s| subnets.get(s))
                .filter(|s| s.vpc != usize::MAX)
            {
                match s.ipv6_cidr_block {
                    Some(c) if c.contains(ip) => {}
                    _ => check.at(a.span(), format!("{ip} is not in {}'s IPv6 block", s.id)),
                }
            }
            if let Some(owner) = addresses.insert(ip, e.id.get_ref().clone()) {
                check.at(a.span(), format!("{ip} is already an address of {owner}"));
            }
            ipv6_ips.push(ip);
        }
        if e.private_ip_addresses.is_empty() && e.ipv6_addresses.is_empty() {
            check.at(e.id.span(), format!("{} has no address", e.id.get_ref()));
        }
        let public_ip = e.public_ip.as_ref().and_then(|p| {
            let ip = check.address(p)?;
            if is_private(ip) {
                check.at(
                    p.span(),
                    format!("{ip} is a private address, not a public one"),
                );
            }
            if let Some(owner) = addresses.insert(ip, e.id.get_ref().clone()) {
                check.at(p.span(), format!("{ip} is already an address of {owner}"));
            }
            Some(ip)
        });
        let interface_type = e
            .interface_type
            .as_ref()
            .map_or_else(|| "interface".to_string(), |t| t.get_ref().clone());
        let mut security_groups = Vec::new();
        for g in &e.security_groups {
            if let Some(i) = check.reference(g, "security_group", &sg_index) {
                let group_vpc = raw.security_group[i].get_ref().vpc.get_ref();
                if let Some(vpc) = subnet
                    .and_then(|s| subnets.get(s))
                    .and_then(|s| vpcs.get(s.vpc))
                    && vpc.id != *group_vpc
                {
                    check.at(
                        g.span(),
                        format!("{} belongs to {group_vpc}, not {}", g.get_ref(), vpc.id),
                    );
                }
                security_groups.push(i);
            }
        }
        let flow_capacity =
            e.flow_capacity
                .as_ref()
                .and_then(|c| match usize::try_from(*c.get_ref()) {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        check.at(c.span(), "flow_capacity must be a positive number of flows");
                        None
                    }
                });
        if let Some(subnet) = subnet {
            interfaces.push(Interface {
                id: e.id.get_ref().clone(),
                subnet,
                private_ips,
                ipv6_ips,
                public_ip,
                instance_id: e.instance_id.as_ref().map(|i| i.get_ref().clone()),
                interface_type,
                security_groups,
                nitro: e.nitro.unwrap_or(true),
                flow_capacity,
                ecs: e.ecs.clone().unwrap_or_default(),
            });
        } else {
            broken = true;
        }
    }

    // AWS ranges.
    let mut aws_ranges = Vec::new();
    for r in &raw.aws_ip_range {
        let r = r.get_ref();
        if let Some(c) = check.cidr(&r.cidr_block) {
            aws_ranges.push((c, r.service.clone()));
        }
    }

    // Flow logs.
    let mut flow_logs = Vec::new();
    for f in &raw.flow_log {
        let f = f.get_ref();
        check.id(&f.id, "fl-", &mut seen);
        if let Some(def) = flow_log(
            check,
            f,
            &subnets,
            &interfaces,
            [&vpc_index, &subnet_index, &eni_index],
        ) {
            flow_logs.push(def);
        }
    }

    if broken {
        return None;
    }
    Some(Topology {
        account_id,
        region,
        vpcs,
        subnets,
        interfaces,
        security_groups: groups,
        network_acls: acls,
        route_tables: tables,
        nat_gateways: nats,
        aws_ranges,
        flow_logs,
    })
}
