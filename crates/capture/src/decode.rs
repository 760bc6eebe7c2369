//! Frames to [`WirePacket`]s: Ethernet (with VLAN tags), Linux cooked capture or raw IP, then
//! IPv4 or IPv6, then the ports and TCP flags of TCP, UDP and the like.
//!
//! Truncated captures (a small snap length) are fine: sizes come from the IP header, not from
//! the bytes captured. Fragments keep their datagram's ports: the first fragment's ports are
//! remembered by (source, destination, protocol, identification) for the fragments that follow.

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket};
use flowscope_vpc::WirePacket;

/// How the frames of a capture start (pcap link types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet (1).
    Ethernet,
    /// Raw IP (101, 12, 14, 228, 229).
    RawIp,
    /// Linux cooked capture v1 (113).
    LinuxSll,
    /// Anything else: every frame is skipped.
    Other(u32),
}

impl LinkType {
    /// The link type of a pcap `LINKTYPE_*` number.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => Self::Ethernet,
            12 | 14 | 101 | 228 | 229 => Self::RawIp,
            113 => Self::LinuxSll,
            other => Self::Other(other),
        }
    }
}

/// Why a frame gave no packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not IP (ARP, LLDP, ...).
    NotIp,
    /// Cut before the IP header ended, or an invalid header.
    Malformed,
    /// A link type that is not decoded.
    UnknownLink,
    /// A later fragment whose first fragment was never seen.
    OrphanFragment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
}

/// Decodes frames, remembering fragments' ports.
#[derive(Debug, Default)]
pub struct Decoder {
    fragments: HashMap<FragmentKey, (u16, u16), foldhash::fast::RandomState>,
}

fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

impl Decoder {
    /// A decoder with no fragments remembered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one frame captured at `time_us`.
    ///
    /// # Errors
    /// The [`Skip`] reason when the frame holds no usable IP packet.
    pub fn decode(
        &mut self,
        link: LinkType,
        frame: &[u8],
        time_us: i64,
    ) -> Result<WirePacket, Skip> {
        let sliced = match link {
            LinkType::Ethernet => {
                LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Malformed)?
            }
            LinkType::RawIp => LaxSlicedPacket::from_ip(frame).map_err(|_| Skip::Malformed)?,
            LinkType::LinuxSll => {
                // 16-byte header whose last two bytes are the EtherType.
                let (header, rest) = frame.split_at_checked(16).ok_or(Skip::Malformed)?;
                let ether_type =
                    etherparse::EtherType(u16::from_be_bytes([header[14], header[15]]));
                LaxSlicedPacket::from_ether_type(ether_type, rest)
            }
            LinkType::Other(_) => return Err(Skip::UnknownLink),
        };
        let (src, dst, protocol, bytes, payload, fragment) = match &sliced.net {
            Some(LaxNetSlice::Ipv4(ip)) => {
                let h = ip.header();
                let p = ip.payload();
                let offset = h.fragments_offset().value();
                let fragment = (h.more_fragments() || offset != 0)
                    .then_some((u32::from(h.identification()), offset));
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    p.ip_number.0,
                    u32::from(h.total_len()),
                    p.payload,
                    fragment,
                )
            }
            Some(LaxNetSlice::Ipv6(ip)) => {
                let h = ip.header();
                let p = ip.payload();
                let mut fragment = None;
                for ext in ip.extensions().clone().into_iter() {
                    if let etherparse::Ipv6ExtensionSlice::Fragment(f) = ext
                        && (f.more_fragments() || f.fragment_offset().value() != 0)
                    {
                        fragment = Some((f.identification(), f.fragment_offset().value()));
                    }
                }
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    p.ip_number.0,
                    40 + u32::from(h.payload_length()),
                    p.payload,
                    fragment,
                )
            }
            Some(LaxNetSlice::Arp(_)) => return Err(Skip::NotIp),
            None if sliced.ether_payload().is_some() => return Err(Skip::NotIp),
            None => return Err(Skip::Malformed),
        };
        let mut packet = WirePacket {
            time_us,
            src,
            dst,
            protocol,
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            bytes,
        };
        if !has_ports(protocol) {
            return Ok(packet);
        }
        match fragment {
            Some((id, offset)) if offset != 0 => {
                let key = FragmentKey {
                    src,
                    dst,
                    protocol,
                    id,
                };
                let &(sp, dp) = self.fragments.get(&key).ok_or(Skip::OrphanFragment)?;
                packet.src_port = sp;
                packet.dst_port = dp;
                return Ok(packet);
            }
            _ => {}
        }
        if payload.len() >= 4 {
            packet.src_port = u16::from_be_bytes([payload[0], payload[1]]);
            packet.dst_port = u16::from_be_bytes([payload[2], payload[3]]);
        }
        if protocol == 6 && payload.len() >= 14 {
            packet.tcp_flags = payload[13];
        }
        if let Some((id, _)) = fragment {
            if self.fragments.len() > 100_000 {
                self.fragments.clear();
            }
            self.fragments.insert(
                FragmentKey {
                    src,
                    dst,
                    protocol,
                    id,
                },
                (packet.src_port, packet.dst_port),
            );
        }
        Ok(packet)
    }
}
