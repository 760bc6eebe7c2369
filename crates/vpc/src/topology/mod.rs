//! The topology file: a VPC described in TOML, checked into a [`Topology`].
//!
//! [`Topology::from_toml`] reads the file section by section so that one mistake does not hide
//! the next: a syntax error, an unknown key, a wrong type, a reference to a resource that does
//! not exist, an address outside its subnet — each is reported as a [`Mistake`] with its line
//! and column, and all of them are reported at once. The section types are in [`config`]; the
//! format is documented in `docs/topology.md`.

pub mod config;

mod build;
mod check;
mod model;

use toml::de::DeTable;

use check::{Checker, read_sections};

pub use config::EcsConfig;
pub use model::{
    BlockPublicAccess, FileFormat, FirehoseOptions, FlowLogDefinition, Interface, LogDestination,
    Mistake, NatGateway, ResourceType, Route, RouteTable, RouteTarget, Subnet, Topology,
    TrafficType, Vpc,
};

impl Topology {
    /// Reads and checks a topology file's text.
    ///
    /// # Errors
    /// Every mistake found, in file order.
    pub fn from_toml(text: &str) -> Result<Topology, Vec<Mistake>> {
        let mut check = Checker::new(text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            for e in syntax {
                check.at(e.span().unwrap_or(0..0), e.message().trim().to_string());
            }
            return Err(check.finish());
        }
        let raw = read_sections(&mut check, root.get_ref());
        let topology = build::build(&mut check, raw, root.span());
        let mistakes = check.finish();
        match topology {
            Some(t) if mistakes.is_empty() => Ok(t),
            _ => Err(mistakes),
        }
    }
}
