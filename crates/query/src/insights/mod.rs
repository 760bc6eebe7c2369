//! The CloudWatch Logs Insights query language over the lake.
//!
//! [`parser::parse`] turns a query into commands; [`plan`] turns the commands into a DataFusion
//! [`DataFrame`](datafusion::dataframe::DataFrame) (a logical plan), one command after another:
//! `filter` adds a filter, `fields` adds computed columns, `stats` an aggregation, `sort`, `limit`,
//! `dedup` (a `row_number()` window), `parse` (regex captures) and `display` the final projection.
//!
//! Field names are those Logs Insights discovers for VPC flow logs (`srcAddr`, `dstPort`,
//! `interfaceId`, `logStatus`, `startTime`, ...), the camelCase form of every other field
//! (`vpcId`, `tcpFlags`, `pktSrcaddr`, `flowDirection`), the text names (`srcaddr`,
//! `` `log-status` ``) and the lake's column names (`log_status`). System fields: `@timestamp`
//! (the record's `start`), `@message` (the record as a default-format line), `@logStream`
//! (`<interface-id>-all`, as AWS names CloudWatch streams).

pub mod lexer;
pub mod parser;
mod plan;

pub use parser::{Query, parse};
pub use plan::{DEFAULT_LIMIT, InsightsPlan, column_for, filter, plan};
