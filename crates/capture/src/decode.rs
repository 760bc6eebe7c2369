//! Frames to [`WirePacket`]s: Ethernet (with VLAN tags), Linux cooked capture or raw IP, then
//! IPv4 or IPv6, then the ports and TCP flags of TCP, UDP and the like.
//!
//! Truncated captures (a small snap length) are fine: sizes come from the IP header, not from
//! the bytes captured. Fragments keep their datagram's ports: the first fragment's ports are
//! remembered by (source, destination, protocol, identification) for the fragments that follow,
//! and later fragments that arrive before their first wait for it ([`Decoder::ready`]) — at
//! most [`MAX_WAITING`] of them, each for [`FRAGMENT_TIMEOUT_US`] of capture time (Linux's
//! `ipfrag_time`, 30 s); those whose first never comes are counted as orphans.

use std::collections::{HashMap, VecDeque};
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
    /// A later fragment held until its first fragment arrives (not skipped: it comes out of
    /// [`Decoder::ready`] then, or is counted as an orphan).
    Waiting,
}

/// Most later fragments held for their first fragment at once.
pub const MAX_WAITING: usize = 10_000;

/// How long (capture time, microseconds) a later fragment waits for its first: 30 s.
pub const FRAGMENT_TIMEOUT_US: i64 = 30_000_000;

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
    /// Later fragments waiting for their first, by datagram.
    waiting: HashMap<FragmentKey, Vec<WirePacket>, foldhash::fast::RandomState>,
    /// How many packets `waiting` holds.
    held: usize,
    /// Fragments released by their first, in order.
    released: VecDeque<WirePacket>,
    /// Fragments given up on (their first never came in time, or too many waited).
    orphans: u64,
}

fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132 | 136)
}

impl Decoder {
    /// A decoder with no fragments remembered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next later fragment whose first fragment has now arrived (its ports set), if any:
    /// take these after each [`decode`](Self::decode).
    pub fn ready(&mut self) -> Option<WirePacket> {
        self.released.pop_front()
    }

    /// Fragments given up on since the last call: their first fragment did not come within
    /// [`FRAGMENT_TIMEOUT_US`], or [`MAX_WAITING`] were held.
    pub fn take_orphans(&mut self) -> u64 {
        std::mem::take(&mut self.orphans)
    }

    /// Gives up on every fragment still waiting (the end of the capture).
    pub fn finish(&mut self) {
        self.orphans += self.held as u64;
        self.waiting.clear();
        self.held = 0;
    }

    /// Gives up on the fragments that have waited too long at `now` (capture time).
    fn expire(&mut self, now: i64) {
        if self.held == 0 {
            return;
        }
        let mut gone = 0;
        self.waiting.retain(|_, held| {
            let first = held.first().map_or(now, |p| p.time_us);
            let keep = now.saturating_sub(first) <= FRAGMENT_TIMEOUT_US;
            if !keep {
                gone += held.len();
            }
            keep
        });
        self.held -= gone;
        self.orphans += gone as u64;
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
        if let Some(packet) = fast_path(link, frame, time_us) {
            return Ok(packet);
        }
        self.decode_general(link, frame, time_us)
    }

    /// Every case, through etherparse's lax slicing.
    fn decode_general(
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
                let Some(&(sp, dp)) = self.fragments.get(&key) else {
                    // Its first fragment may still come: held until then.
                    self.expire(time_us);
                    if self.held >= MAX_WAITING {
                        return Err(Skip::OrphanFragment);
                    }
                    self.waiting.entry(key).or_default().push(packet);
                    self.held += 1;
                    return Err(Skip::Waiting);
                };
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
            let key = FragmentKey {
                src,
                dst,
                protocol,
                id,
            };
            self.fragments
                .insert(key, (packet.src_port, packet.dst_port));
            self.expire(time_us);
            // The later fragments that came first (in time) go out after it, with its ports.
            if let Some(early) = self.waiting.remove(&key) {
                self.held -= early.len();
                for mut f in early {
                    f.src_port = packet.src_port;
                    f.dst_port = packet.dst_port;
                    self.released.push_back(f);
                }
            }
        }
        Ok(packet)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The common case read directly: Ethernet (with VLAN tags), Linux cooked or raw IP, then IPv4
/// that is not a fragment or IPv6 without extension headers. Anything else (`None`) goes through
/// [`Decoder::decode_general`]; a unit test holds the two to the same answers.
fn fast_path(link: LinkType, frame: &[u8], time_us: i64) -> Option<WirePacket> {
    let (mut ether_type, mut offset) = match link {
        LinkType::Ethernet if frame.len() >= 14 => (be16(frame, 12), 14),
        LinkType::LinuxSll if frame.len() >= 16 => (be16(frame, 14), 16),
        LinkType::RawIp => match frame.first()? >> 4 {
            4 => (0x0800, 0),
            6 => (0x86dd, 0),
            _ => return None,
        },
        _ => return None,
    };
    while matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) && link == LinkType::Ethernet {
        if frame.len() < offset + 4 {
            return None;
        }
        ether_type = be16(frame, offset + 2);
        offset += 4;
    }
    let ip = &frame[offset..];
    let (src, dst, protocol, bytes, l4) = match ether_type {
        0x0800 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return None;
            }
            let header = usize::from(ip[0] & 0x0f) * 4;
            let total = be16(ip, 2);
            if header < 20
                || ip.len() < header
                || usize::from(total) < header
                || be16(ip, 6) & 0x3fff != 0
            {
                return None;
            }
            let src = IpAddr::from([ip[12], ip[13], ip[14], ip[15]]);
            let dst = IpAddr::from([ip[16], ip[17], ip[18], ip[19]]);
            let end = ip.len().min(usize::from(total));
            (src, dst, ip[9], u32::from(total), &ip[header..end])
        }
        0x86dd => {
            if ip.len() < 40 || ip[0] >> 4 != 6 || !matches!(ip[6], 1 | 6 | 17 | 58 | 132 | 136) {
                return None;
            }
            let mut s = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&ip[24..40]);
            let payload = be16(ip, 4);
            let end = ip.len().min(40 + usize::from(payload));
            (
                IpAddr::from(s),
                IpAddr::from(d),
                ip[6],
                40 + u32::from(payload),
                &ip[40..end],
            )
        }
        _ => return None,
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
    if has_ports(protocol) && l4.len() >= 4 {
        packet.src_port = be16(l4, 0);
        packet.dst_port = be16(l4, 2);
        if protocol == 6 && l4.len() >= 14 {
            packet.tcp_flags = l4[13];
        }
    }
    Some(packet)
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn frames() -> Vec<(LinkType, Vec<u8>)> {
        let mut out = Vec::new();
        let eth = || PacketBuilder::ethernet2([1; 6], [2; 6]);
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64)
            .tcp(40000, 443, 1, 100)
            .syn()
            .ack(1)
            .write(&mut f, &[0; 30])
            .unwrap();
        out.push((LinkType::Ethernet, f));
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64)
            .udp(53, 5353)
            .write(&mut f, &[0; 3])
            .unwrap();
        out.push((LinkType::Ethernet, f));
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut f, &[0; 56])
            .unwrap();
        out.push((LinkType::Ethernet, f));
        let mut f = Vec::new();
        eth()
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv6([1; 16], [2; 16], 64)
            .tcp(1, 2, 3, 4)
            .fin()
            .write(&mut f, &[0; 10])
            .unwrap();
        out.push((LinkType::Ethernet, f));
        let mut f = Vec::new();
        PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 9)
            .udp(7, 9)
            .write(&mut f, &[5; 100])
            .unwrap();
        out.push((LinkType::RawIp, f));
        // Cut short by a snap length: the sizes still come from the IP header.
        let mut f = Vec::new();
        eth()
            .ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64)
            .tcp(40000, 443, 1, 100)
            .psh()
            .ack(1)
            .write(&mut f, &[0; 1400])
            .unwrap();
        f.truncate(64);
        out.push((LinkType::Ethernet, f));
        out
    }

    #[test]
    fn fast_path_agrees_with_the_general_decoder() {
        for (link, frame) in frames() {
            let fast = fast_path(link, &frame, 5).expect("common case");
            let general = Decoder::new()
                .decode_general(link, &frame, 5)
                .expect("decodes");
            assert_eq!(fast, general, "{link:?} {frame:?}");
        }
    }

    #[test]
    fn uncommon_frames_take_the_general_path() {
        let mut arp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .arp(
                etherparse::ArpPacket::new(
                    etherparse::ArpHardwareId::ETHERNET,
                    etherparse::EtherType::IPV4,
                    etherparse::ArpOperation::REQUEST,
                    &[1; 6],
                    &[10, 0, 0, 1],
                    &[0; 6],
                    &[10, 0, 0, 2],
                )
                .unwrap(),
            )
            .write(&mut arp)
            .unwrap();
        assert!(fast_path(LinkType::Ethernet, &arp, 0).is_none());
        assert_eq!(
            Decoder::new().decode(LinkType::Ethernet, &arp, 0),
            Err(Skip::NotIp)
        );
    }
}
