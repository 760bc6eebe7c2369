//! One module per subcommand.

pub mod convert;
pub mod fields;
pub mod generate;
pub mod ingest;
pub mod lake;
