//! flowscope-vpc: the part of a VPC that decides what flow logs say — security groups and network
//! ACLs — modelled as AWS documents them.
//!
//! The main types are [`NetworkAcl`] (stateless: numbered rules, lowest first, first match wins,
//! the final `*` rule denies) and [`SecurityGroup`] (allow rules only; all groups of an interface
//! together). [`Firewall`] puts them together for one interface: the subnet's ACL is consulted
//! when a packet crosses the subnet boundary, the groups at the interface, and a connection table
//! makes the groups stateful — the reply to an allowed packet passes whatever the rules say, while
//! the ACL, being stateless, judges the reply like any other packet. That asymmetry is what makes a
//! missing ephemeral-port rule show up in flow logs as an inbound ACCEPT with an outbound REJECT.
//!

mod emulator;
mod record;
mod rules;
pub mod topology;
pub mod tracking;

pub use emulator::{ClosedWindow, Emulator, EmulatorStats, Exclusion, WirePacket};
pub use record::{FlowRecord, LogStatus, to_batch};
pub use rules::{
    Direction, Firewall, NaclRule, NaclVerdict, NetworkAcl, Packet, Peer, PortRange, Protocol,
    RuleAction, RuleError, SecurityGroup, SgRule, Verdict,
};
pub use topology::{Mistake, Topology};
pub use tracking::{Seen, Timeouts};
