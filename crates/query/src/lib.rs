//! flowscope-query: SQL, the CloudWatch Logs Insights language and top-N contributor reports over
//! a flowscope lake.
//!
//! The main type is [`Engine`], a DataFusion session with one table, `flows`, whose columns are
//! the lake's (AWS's Parquet names) plus the `date` and `hour` partition columns. SQL goes to
//! DataFusion as it is; Logs Insights queries are parsed here ([`insights`]) and translated into
//! DataFusion logical plans, never into SQL text, so both languages share one optimiser, one set
//! of functions (registered on every session) and one executor. Contributor reports ([`top`]) are plans too, built
//! from a key set or from a Contributor Insights rule.
//!
//! Why DataFusion and not a hand-written scanner: the lake is ordinary Parquet, and the questions
//! users ask are open-ended; an optimiser with partition and row-group pruning, vectorised
//! aggregation and spilling gives every question the same treatment.

mod capped;
mod coop;
mod engine;
mod error;
pub mod insights;
mod presto;
pub mod render;
mod snapshot;
mod sum;
mod table;
pub mod time;
pub mod top;
mod udf;
pub mod units;

pub use engine::{ATHENA_TABLE, Engine, TABLE};
pub use error::{Error, Position, Result};
pub use render::{OutputFormat, Rendered};
pub use table::Pending;
pub use time::TimeRange;
