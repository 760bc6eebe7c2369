//! Routing: NAT gateways, the other gateways, peering, endpoints and route tables.

use std::collections::HashMap;

use flowscope_record::net::is_private;

use super::super::check::{Checker, Raw};
use super::super::config::Text;
use super::super::model::*;
use super::Builder;

impl Builder<'_, '_> {
    /// The NAT gateways, each with its interface and Elastic IP.
    pub(super) fn nat_gateways(&mut self) -> Vec<NatGateway> {
        let mut nats = Vec::new();
        for n in &self.raw.nat_gateway {
            let n = n.get_ref();
            self.check.id(&n.id, "nat-", &mut self.seen);
            let eni = self.check.reference(
                &n.network_interface,
                "network_interface",
                &self.index.network_interface,
            );
            if let Some(i) = eni {
                let t = self.raw.network_interface[i]
                    .get_ref()
                    .interface_type
                    .as_ref();
                if t.map(|t| t.get_ref().as_str()) != Some("nat_gateway") {
                    self.check.at(
                        n.network_interface.span(),
                        format!(
                            "`{}` should have interface_type = \"nat_gateway\"",
                            n.network_interface.get_ref()
                        ),
                    );
                }
            }
            let ip = self.check.address(&n.public_ip);
            if let Some(ip) = ip.filter(|ip| is_private(*ip)) {
                self.check.at(
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
        nats
    }

    /// Internet, transit and VPN gateways, peering connections and endpoints: checked only,
    /// as route targets name them.
    pub(super) fn other_gateways(&mut self) {
        for (kind, list, prefix) in [
            ("internet_gateway", &self.raw.internet_gateway, "igw-"),
            ("transit_gateway", &self.raw.transit_gateway, "tgw-"),
            ("vpn_gateway", &self.raw.vpn_gateway, "vgw-"),
        ] {
            for g in list {
                let g = g.get_ref();
                self.check.id(&g.id, prefix, &mut self.seen);
                match &g.vpc {
                    Some(v) => {
                        self.check.reference(v, "vpc", &self.index.vpc);
                    }
                    None if kind != "transit_gateway" => {
                        self.check.at(
                            g.id.span(),
                            format!("{kind} `{}` needs a vpc", g.id.get_ref()),
                        );
                    }
                    None => {}
                }
            }
        }
        for p in &self.raw.vpc_peering_connection {
            let p = p.get_ref();
            self.check.id(&p.id, "pcx-", &mut self.seen);
            self.check.reference(&p.vpc, "vpc", &self.index.vpc);
            for c in &p.peer_cidr_blocks {
                self.check.cidr(c);
            }
        }
        for e in &self.raw.vpc_endpoint {
            let e = e.get_ref();
            self.check.id(&e.id, "vpce-", &mut self.seen);
            self.check.reference(&e.vpc, "vpc", &self.index.vpc);
            if !matches!(
                e.vpc_endpoint_type.get_ref().as_str(),
                "Gateway" | "Interface"
            ) {
                self.check.at(
                    e.vpc_endpoint_type.span(),
                    "vpc_endpoint_type must be Gateway or Interface",
                );
            }
            for c in &e.prefix_list_cidrs {
                self.check.cidr(c);
            }
        }
    }

    /// The route tables, each starting with its VPC's local routes; the main one is recorded
    /// on its VPC.
    pub(super) fn route_tables(&mut self, vpcs: &mut [Vpc]) -> Vec<RouteTable> {
        let mut tables = Vec::new();
        for t in &self.raw.route_table {
            let t = t.get_ref();
            self.check.id(&t.id, "rtb-", &mut self.seen);
            let vpc = self.check.reference(&t.vpc, "vpc", &self.index.vpc);
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
                        self.check.at(
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
                let destination = self.check.cidr(&r.destination);
                let target = route_target(
                    self.check,
                    &r.target,
                    self.raw,
                    &self.index.nat_gateway,
                    [
                        &self.index.internet_gateway,
                        &self.index.transit_gateway,
                        &self.index.vpn_gateway,
                        &self.index.peering,
                        &self.index.endpoint,
                    ],
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
        tables
    }
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
