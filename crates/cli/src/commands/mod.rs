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
pub mod shell;
pub mod simulate;
pub mod sql;
pub mod top;
