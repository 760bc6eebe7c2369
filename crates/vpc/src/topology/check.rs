//! Reading a topology file's sections, and collecting mistakes with their positions.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use flowscope_record::net::Cidr;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::rules::{PortRange, Protocol};

use super::config::{
    AwsRangeConfig, EndpointConfig, FlowLogConfig, GatewayConfig, InterfaceConfig,
    NatGatewayConfig, NetworkAclConfig, PeeringConfig, PortsConfig, ProtocolConfig,
    RouteTableConfig, SecurityGroupConfig, SubnetConfig, Text, VpcConfig,
};
use super::model::Mistake;

const SECTIONS: &[&str] = &[
    "account_id",
    "region",
    "vpc",
    "subnet",
    "security_group",
    "network_acl",
    "network_interface",
    "route_table",
    "internet_gateway",
    "nat_gateway",
    "transit_gateway",
    "vpn_gateway",
    "vpc_peering_connection",
    "vpc_endpoint",
    "aws_ip_range",
    "flow_log",
];

/// The raw sections, each element with its span.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) account_id: Option<Text>,
    pub(super) region: Option<Text>,
    pub(super) vpc: Vec<Spanned<VpcConfig>>,
    pub(super) subnet: Vec<Spanned<SubnetConfig>>,
    pub(super) security_group: Vec<Spanned<SecurityGroupConfig>>,
    pub(super) network_acl: Vec<Spanned<NetworkAclConfig>>,
    pub(super) network_interface: Vec<Spanned<InterfaceConfig>>,
    pub(super) route_table: Vec<Spanned<RouteTableConfig>>,
    pub(super) internet_gateway: Vec<Spanned<GatewayConfig>>,
    pub(super) nat_gateway: Vec<Spanned<NatGatewayConfig>>,
    pub(super) transit_gateway: Vec<Spanned<GatewayConfig>>,
    pub(super) vpn_gateway: Vec<Spanned<GatewayConfig>>,
    pub(super) vpc_peering_connection: Vec<Spanned<PeeringConfig>>,
    pub(super) vpc_endpoint: Vec<Spanned<EndpointConfig>>,
    pub(super) aws_ip_range: Vec<Spanned<AwsRangeConfig>>,
    pub(super) flow_log: Vec<Spanned<FlowLogConfig>>,
}

/// Collects mistakes with positions computed from byte offsets.
pub(super) struct Checker<'a> {
    text: &'a str,
    mistakes: Vec<(usize, String)>,
}

impl<'a> Checker<'a> {
    /// A checker of `text`.
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            mistakes: Vec::new(),
        }
    }

    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.mistakes.push((span.start, message.into()));
    }

    pub(super) fn finish(mut self) -> Vec<Mistake> {
        self.mistakes.sort_by_key(|(offset, _)| *offset);
        self.mistakes.dedup();
        let text = self.text;
        self.mistakes
            .into_iter()
            .map(|(offset, message)| {
                let (line, column) = flowscope_record::position::line_col(text, offset);
                Mistake {
                    line,
                    column,
                    message,
                }
            })
            .collect()
    }

    pub(super) fn element<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| value.span());
                self.at(span, e.message().trim().to_string());
                None
            }
        }
    }

    pub(super) fn section<T: DeserializeOwned>(
        &mut self,
        name: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Vec<Spanned<T>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.at(
                value.span(),
                format!("`{name}` is a list of tables: write each one as [[{name}]]"),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let span = item.span();
                self.element::<T>(item).map(|v| Spanned::new(span, v))
            })
            .collect()
    }

    pub(super) fn cidr(&mut self, text: &Text) -> Option<Cidr> {
        match Cidr::parse(text.get_ref()) {
            Ok(c) => Some(c),
            Err(e) => {
                self.at(text.span(), format!("invalid CIDR block {e}"));
                None
            }
        }
    }

    pub(super) fn address(&mut self, text: &Text) -> Option<IpAddr> {
        match text.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    text.span(),
                    format!("`{}` is not an IP address", text.get_ref()),
                );
                None
            }
        }
    }

    pub(super) fn id(&mut self, text: &Text, prefix: &str, seen: &mut HashSet<String>) {
        let id = text.get_ref();
        if !id.starts_with(prefix) || id.len() == prefix.len() {
            self.at(text.span(), format!("`{id}` should start with `{prefix}`"));
        }
        if !seen.insert(id.clone()) {
            self.at(text.span(), format!("`{id}` is declared twice"));
        }
    }

    pub(super) fn reference(
        &mut self,
        text: &Text,
        kind: &str,
        index: &HashMap<String, usize>,
    ) -> Option<usize> {
        let found = index.get(text.get_ref().as_str()).copied();
        if found.is_none() {
            let mut message = format!("no {kind} `{}` is declared", text.get_ref());
            if let Some(near) = nearest(text.get_ref(), index.keys()) {
                message.push_str(&format!(" (did you mean `{near}`?)"));
            }
            self.at(text.span(), message);
        }
        found
    }

    pub(super) fn protocol(&mut self, value: &Spanned<ProtocolConfig>) -> Option<Protocol> {
        let number = match value.get_ref() {
            ProtocolConfig::Number(n) => Some(*n),
            ProtocolConfig::Text(t) => flowscope_record::protocol::rule_number(t),
        };
        match number {
            Some(-1) => Some(Protocol::All),
            Some(n) if (0..=255).contains(&n) => Some(Protocol::Number(n as u8)),
            _ => {
                self.at(
                    value.span(),
                    "protocol must be tcp, udp, icmp, icmpv6, all (-1) or a number 0-255",
                );
                None
            }
        }
    }

    pub(super) fn ports(
        &mut self,
        value: &Option<Spanned<PortsConfig>>,
    ) -> Option<Option<PortRange>> {
        let Some(value) = value else {
            return Some(None);
        };
        let parsed = match value.get_ref() {
            PortsConfig::Number(n) => u16::try_from(*n).ok().map(PortRange::single),
            PortsConfig::Text(t) => match t.split_once('-') {
                None => t.trim().parse().ok().map(PortRange::single),
                Some((a, b)) => match (a.trim().parse(), b.trim().parse()) {
                    (Ok(a), Ok(b)) => match PortRange::new(a, b) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.at(value.span(), e.to_string());
                            return None;
                        }
                    },
                    _ => None,
                },
            },
        };
        if parsed.is_none() {
            self.at(
                value.span(),
                "port_range must be a port (443) or a range (\"1024-65535\") within 0-65535",
            );
            return None;
        }
        Some(parsed)
    }
}

/// The declared name closest to `name`, when close enough to be a typo.
pub(super) fn nearest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a String>,
) -> Option<&'a str> {
    flowscope_record::nearest(name, candidates.map(String::as_str))
}

pub(super) fn index_of<T>(
    items: &[Spanned<T>],
    id: impl Fn(&T) -> &Text,
) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        map.entry(id(item.get_ref()).get_ref().clone()).or_insert(i);
    }
    map
}

pub(super) fn read_sections(check: &mut Checker<'_>, root: &DeTable<'_>) -> Raw {
    let mut raw = Raw::default();
    for (key, value) in root.iter() {
        let name: &str = key.get_ref();
        match name {
            "account_id" => {
                raw.account_id = check.element(value).map(|v| Spanned::new(value.span(), v))
            }
            "region" => raw.region = check.element(value).map(|v| Spanned::new(value.span(), v)),
            "vpc" => raw.vpc = check.section(name, value),
            "subnet" => raw.subnet = check.section(name, value),
            "security_group" => raw.security_group = check.section(name, value),
            "network_acl" => raw.network_acl = check.section(name, value),
            "network_interface" => raw.network_interface = check.section(name, value),
            "route_table" => raw.route_table = check.section(name, value),
            "internet_gateway" => raw.internet_gateway = check.section(name, value),
            "nat_gateway" => raw.nat_gateway = check.section(name, value),
            "transit_gateway" => raw.transit_gateway = check.section(name, value),
            "vpn_gateway" => raw.vpn_gateway = check.section(name, value),
            "vpc_peering_connection" => raw.vpc_peering_connection = check.section(name, value),
            "vpc_endpoint" => raw.vpc_endpoint = check.section(name, value),
            "aws_ip_range" => raw.aws_ip_range = check.section(name, value),
            "flow_log" => raw.flow_log = check.section(name, value),
            other => {
                let mut message = format!("unknown key `{other}`");
                let known: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
                if let Some(near) = nearest(other, known.iter()) {
                    message.push_str(&format!(" (did you mean `{near}`?)"));
                } else {
                    message.push_str(&format!(", expected one of {}", SECTIONS.join(", ")));
                }
                check.at(key.span(), message);
            }
        }
    }
    raw
}
