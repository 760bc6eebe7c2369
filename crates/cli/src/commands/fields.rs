//! `flowscope fields`: the flow log field registry.

use std::io::Write;

use flowscope_record::{FIELDS, FieldKind};

use super::Outcome;

/// List every flow log field: text name, Parquet column, version, type, meaning.
#[derive(clap::Args)]
pub struct Args {
    /// Only fields introduced at or below this version.
    #[arg(long, value_name = "N")]
    max_version: Option<u8>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<27} {:<27} {:>3}  {:<6}  description",
        "field", "column", "ver", "type"
    )?;
    for field in FIELDS
        .iter()
        .filter(|f| args.max_version.is_none_or(|v| f.version <= v))
    {
        let kind = match field.kind {
            FieldKind::Int32 { .. } => "int32",
            FieldKind::Int64 => "int64",
            _ => "string",
        };
        writeln!(
            out,
            "{:<27} {:<27} {:>3}  {:<6}  {}",
            field.name, field.column, field.version, kind, field.doc
        )?;
    }
    Ok(Outcome::Success)
}
