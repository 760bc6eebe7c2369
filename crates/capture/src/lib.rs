//! flowscope-capture: where the emulator's packets come from.
//!
//! [`PcapSource`] reads pcap and pcapng files (Ethernet, VLAN, Linux cooked and raw IP link
//! types; IPv4 and IPv6; TCP, UDP, ICMP and fragments) into [`WirePacket`]s, counting every
//! frame it cannot use instead of failing on it. The [`scenario`] module generates realistic
//! traffic for a built-in topology — seeded, so a run can be reproduced packet for packet — with
//! incidents injected and described in a [`scenario::Truth`] for testing detections.
//!
//! [`WirePacket`]: flowscope_vpc::WirePacket

mod decode;
mod error;
mod pcap;
pub mod scenario;

pub use error::{Error, Result};
pub use pcap::{CaptureStats, PcapSource};
