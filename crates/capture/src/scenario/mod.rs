//! Built-in traffic scenarios: seeded, reproducible packet streams for a known topology, with
//! incidents injected and described in a [`Truth`].

mod rng;
mod three_tier;
mod traffic;

use serde::Serialize;

pub use three_tier::{THREE_TIER_TOPOLOGY, ThreeTier};

/// Settings shared by scenarios.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// First second of traffic, Unix seconds.
    pub start: i64,
    /// Length in seconds.
    pub duration: i64,
    /// The seed: the same seed gives the same packets.
    pub seed: u64,
    /// Inject the incidents.
    pub incidents: bool,
}

/// One injected incident, as a detection should find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// `vertical_port_scan`, `horizontal_sweep`, `ssh_brute_force`, `rdp_attempts`,
    /// `data_exfiltration`, `beaconing`, `nacl_blocks_replies`, `sg_blocks_tier`.
    pub kind: &'static str,
    /// What happens, in a sentence.
    pub description: String,
    /// First packet, Unix seconds.
    pub start: i64,
    /// Last packet, Unix seconds.
    pub end: i64,
    /// The source addresses.
    pub sources: Vec<String>,
    /// The destination addresses.
    pub destinations: Vec<String>,
    /// Destination ports involved.
    pub ports: Vec<u16>,
    /// The interfaces whose flow logs show it.
    pub interfaces: Vec<String>,
    /// What the records show: `ACCEPT`, `REJECT`, or both.
    pub expected_action: &'static str,
}

/// What a scenario run contained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truth {
    /// The scenario.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// First second, Unix seconds.
    pub start: i64,
    /// End (exclusive), Unix seconds.
    pub end: i64,
    /// The incidents injected (empty with `--no-incidents`).
    pub incidents: Vec<Incident>,
}
