//! One module per subcommand.

pub mod alarms;
pub mod convert;
pub mod demo;
pub mod detect;
pub mod diagnose;
pub mod fields;
pub mod flow_logs;
pub mod generate;
pub mod ingest;
pub mod insights;
pub mod lake;
pub mod output;
pub mod serve;
mod served;
pub mod shell;
pub mod simulate;
pub mod sql;
pub mod top;

/// Where a server listens (`serve`, and the dashboard of `demo`).
#[derive(clap::Args)]
pub struct ListenArgs {
    /// Address to listen on; port 0 picks a free port. Only 127.0.0.1 unless told otherwise.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080",
        env = "FLOWSCOPE_LISTEN"
    )]
    pub listen: std::net::SocketAddr,
}

/// How a command ended, when it did not simply succeed or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Success,
    /// Part of the work failed; what could be done was done (exit 1).
    Partial,
    /// `--strict` met bad input (exit 2).
    StrictViolation,
    /// `--fail-on` met a finding (exit 3).
    Findings,
}
