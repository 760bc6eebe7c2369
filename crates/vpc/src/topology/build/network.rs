//! The network: VPCs, subnets and interfaces, with their addresses checked.

use std::collections::HashMap;
use std::net::IpAddr;

use flowscope_record::net::{Cidr, is_private};

use super::super::config::Text;
use super::super::model::*;
use super::Builder;
use crate::tracking::Timeouts;

impl Builder<'_, '_> {
    /// The VPCs, each with its blocks and block-public-access mode; ACLs and route tables are
    /// attached later.
    pub(super) fn vpcs(&mut self) -> Vec<Vpc> {
        let mut vpcs = Vec::new();
        for v in &self.raw.vpc {
            let v = v.get_ref();
            self.check.id(&v.id, "vpc-", &mut self.seen);
            if v.cidr_blocks.is_empty() {
                self.check.at(
                    v.id.span(),
                    format!("`{}` has no cidr_blocks", v.id.get_ref()),
                );
            }
            let mut blocks = Vec::new();
            for c in &v.cidr_blocks {
                if let Some(cidr) = self.check.cidr(c) {
                    if !cidr.is_ipv4() {
                        self.check.at(
                            c.span(),
                            "cidr_blocks are IPv4; put IPv6 blocks in ipv6_cidr_blocks",
                        );
                    }
                    blocks.push(cidr);
                }
            }
            let mut v6 = Vec::new();
            for c in &v.ipv6_cidr_blocks {
                if let Some(cidr) = self.check.cidr(c) {
                    if cidr.is_ipv4() {
                        self.check
                            .at(c.span(), "ipv6_cidr_blocks must be IPv6 blocks");
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
                    self.check.at(
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
        vpcs
    }

    /// The subnets, checked against their VPC's blocks and each other; a subnet whose VPC,
    /// block or ACL is missing keeps its place (so indexes stay aligned) and marks the build
    /// broken.
    pub(super) fn subnets(&mut self, vpcs: &[Vpc], tables: &[RouteTable]) -> Vec<Subnet> {
        let mut subnets: Vec<Subnet> = Vec::new();
        for s in &self.raw.subnet {
            let s = s.get_ref();
            self.check.id(&s.id, "subnet-", &mut self.seen);
            let vpc = self.check.reference(&s.vpc, "vpc", &self.index.vpc);
            let cidr = self.check.cidr(&s.cidr_block);
            let v6 = s.ipv6_cidr_block.as_ref().and_then(|c| self.check.cidr(c));
            if let (Some(v), Some(c)) = (vpc, cidr) {
                if !inside(&vpcs[v].cidr_blocks, c) {
                    self.check.at(
                        s.cidr_block.span(),
                        format!("{c} is not inside {}'s blocks", vpcs[v].id),
                    );
                }
                for other in subnets.iter().filter(|o| o.vpc == v) {
                    if other.cidr_block.contains(c.network())
                        || c.contains(other.cidr_block.network())
                    {
                        self.check.at(
                            s.cidr_block.span(),
                            format!("{c} overlaps {} ({})", other.id, other.cidr_block),
                        );
                    }
                }
            }
            if let (Some(v), Some(c), Some(text)) = (vpc, v6, &s.ipv6_cidr_block)
                && !inside(&vpcs[v].ipv6_cidr_blocks, c)
            {
                self.check.at(
                    text.span(),
                    format!("{c} is not inside {}'s IPv6 blocks", vpcs[v].id),
                );
            }
            let acl = match &s.network_acl {
                Some(a) => self
                    .check
                    .reference(a, "network_acl", &self.index.network_acl),
                None => vpc.map(|v| vpcs[v].default_acl),
            };
            let route_table = s.route_table.as_ref().and_then(|r| {
                self.check
                    .reference(r, "route_table", &self.index.route_table)
            });
            if let (Some(r), Some(v), Some(text)) = (route_table, vpc, &s.route_table)
                && tables[r].vpc != v
            {
                self.check.at(
                    text.span(),
                    format!("{} belongs to another VPC", tables[r].id),
                );
            }
            let sublocation = match (&s.sublocation_type, &s.sublocation_id) {
                (None, None) => None,
                (Some(t), Some(i)) => {
                    if !matches!(t.get_ref().as_str(), "wavelength" | "outpost" | "localzone") {
                        self.check.at(
                            t.span(),
                            "sublocation_type must be wavelength, outpost or localzone",
                        );
                    }
                    Some((t.get_ref().clone(), i.get_ref().clone()))
                }
                (Some(t), None) | (None, Some(t)) => {
                    self.check
                        .at(t.span(), "sublocation_type and sublocation_id go together");
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
                self.broken = true;
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
        subnets
    }

    /// The interfaces, each address checked against its subnet, AWS's reserved addresses and
    /// every other interface's.
    pub(super) fn interfaces(&mut self, vpcs: &[Vpc], subnets: &[Subnet]) -> Vec<Interface> {
        let mut interfaces = Vec::new();
        let mut addresses: HashMap<IpAddr, String> = HashMap::new();
        for e in &self.raw.network_interface {
            let e = e.get_ref();
            self.check.id(&e.id, "eni-", &mut self.seen);
            let subnet = self
                .check
                .reference(&e.subnet, "subnet", &self.index.subnet);
            let owner = e.id.get_ref();
            let home = subnet
                .and_then(|s| subnets.get(s))
                .filter(|s| s.vpc != usize::MAX);
            let private_ips = self.addresses(
                &e.private_ip_addresses,
                home,
                owner,
                &mut addresses,
                |ip, s| {
                    let c = s.cidr_block;
                    if !c.contains(ip) {
                        Some(format!("{ip} is not in {} ({c})", s.id))
                    } else {
                        reserved(c, ip)
                            .map(|reason| format!("{ip} is reserved by AWS in {c} ({reason})"))
                    }
                },
            );
            let ipv6_ips = self.addresses(
                &e.ipv6_addresses,
                home,
                owner,
                &mut addresses,
                |ip, s| match s.ipv6_cidr_block {
                    Some(c) if c.contains(ip) => None,
                    _ => Some(format!("{ip} is not in {}'s IPv6 block", s.id)),
                },
            );
            if e.private_ip_addresses.is_empty() && e.ipv6_addresses.is_empty() {
                self.check
                    .at(e.id.span(), format!("{} has no address", e.id.get_ref()));
            }
            let public_ip = e.public_ip.as_ref().and_then(|p| {
                let ip = self.check.address(p)?;
                if is_private(ip) {
                    self.check.at(
                        p.span(),
                        format!("{ip} is a private address, not a public one"),
                    );
                }
                self.claim(&mut addresses, ip, owner, p.span());
                Some(ip)
            });
            let interface_type = e
                .interface_type
                .as_ref()
                .map_or_else(|| "interface".to_string(), |t| t.get_ref().clone());
            let mut security_groups = Vec::new();
            for g in &e.security_groups {
                if let Some(i) =
                    self.check
                        .reference(g, "security_group", &self.index.security_group)
                {
                    let group_vpc = self.raw.security_group[i].get_ref().vpc.get_ref();
                    if let Some(vpc) = subnet
                        .and_then(|s| subnets.get(s))
                        .and_then(|s| vpcs.get(s.vpc))
                        && vpc.id != *group_vpc
                    {
                        self.check.at(
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
                            self.check
                                .at(c.span(), "flow_capacity must be a positive number of flows");
                            None
                        }
                    });
            let account_id = e.account_id.as_ref().map(|a| {
                let id = a.get_ref();
                let digits = id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit());
                if !digits && id != "unknown" {
                    self.check.at(
                        a.span(),
                        "account_id must be 12 digits, or `unknown` for an interface an AWS \
                         service created",
                    );
                }
                id.clone()
            });
            let connection_tracking = e
                .connection_tracking_specification
                .as_ref()
                .map(|c| self.timeouts(c))
                .unwrap_or_default();
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
                    account_id,
                    flow_capacity,
                    connection_tracking,
                    ecs: e.ecs.clone().unwrap_or_default(),
                });
            } else {
                self.broken = true;
            }
        }
        interfaces
    }

    /// `texts` as addresses of interface `owner`, each checked by `fits` against the interface's
    /// subnet (when it has a usable one) and claimed for `owner`.
    fn addresses(
        &mut self,
        texts: &[Text],
        subnet: Option<&Subnet>,
        owner: &str,
        claimed: &mut HashMap<IpAddr, String>,
        fits: impl Fn(IpAddr, &Subnet) -> Option<String>,
    ) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for a in texts {
            let Some(ip) = self.check.address(a) else {
                continue;
            };
            if let Some(problem) = subnet.and_then(|s| fits(ip, s)) {
                self.check.at(a.span(), problem);
            }
            self.claim(claimed, ip, owner, a.span());
            out.push(ip);
        }
        out
    }

    /// An interface's connection tracking timeouts, each checked against the range the EC2 API
    /// allows (`ConnectionTrackingSpecificationRequest`); AWS's default for a timeout not given.
    fn timeouts(&mut self, c: &super::super::config::ConnectionTrackingConfig) -> Timeouts {
        let defaults = Timeouts::default();
        let mut one = |value: &Option<toml::Spanned<i64>>,
                       name: &str,
                       range: std::ops::RangeInclusive<u32>,
                       default: u32| {
            let Some(v) = value else {
                return default;
            };
            match u32::try_from(*v.get_ref()) {
                Ok(n) if range.contains(&n) => n,
                _ => {
                    self.check.at(
                        v.span(),
                        format!("{name} must be {}-{} seconds", range.start(), range.end()),
                    );
                    default
                }
            }
        };
        Timeouts {
            tcp_established: one(
                &c.tcp_established_timeout,
                "tcp_established_timeout",
                Timeouts::TCP_ESTABLISHED,
                defaults.tcp_established,
            ),
            udp_stream: one(
                &c.udp_stream_timeout,
                "udp_stream_timeout",
                Timeouts::UDP_STREAM,
                defaults.udp_stream,
            ),
            udp: one(&c.udp_timeout, "udp_timeout", Timeouts::UDP, defaults.udp),
        }
    }

    /// Records `ip` as `owner`'s; a mistake at `span` when another interface has it already.
    fn claim(
        &mut self,
        claimed: &mut HashMap<IpAddr, String>,
        ip: IpAddr,
        owner: &str,
        span: std::ops::Range<usize>,
    ) {
        if let Some(other) = claimed.insert(ip, owner.to_string()) {
            self.check
                .at(span, format!("{ip} is already an address of {other}"));
        }
    }

    /// The AWS service ranges (`aws_ip_range`) that name where outside traffic goes.
    pub(super) fn aws_ranges(&mut self) -> Vec<(Cidr, String)> {
        let mut aws_ranges = Vec::new();
        for r in &self.raw.aws_ip_range {
            let r = r.get_ref();
            if let Some(c) = self.check.cidr(&r.cidr_block) {
                aws_ranges.push((c, r.service.clone()));
            }
        }
        aws_ranges
    }
}

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

/// Whether block `c` lies inside one of `blocks`.
fn inside(blocks: &[Cidr], c: Cidr) -> bool {
    blocks
        .iter()
        .any(|b| b.prefix() <= c.prefix() && b.contains(c.network()))
}
