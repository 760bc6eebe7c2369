//! One module per subcommand.

pub mod convert;
pub mod fields;
pub mod ingest;
pub mod lake;
