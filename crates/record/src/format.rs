//! Log formats: which fields a record carries, in which order.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::field::{self, FIELDS, FieldSpec};

/// The AWS default format, version 2.
pub const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} \
${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// An ordered list of flow log fields, as given to `create-flow-logs --log-format`.
///
/// A format is parsed from the `${field} ${field}` syntax AWS accepts, or recognised from the
/// header line AWS writes at the top of every S3 text file. Field order is the user's: records are
/// written, and columns appear, in exactly that order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LogFormat {
    fields: Arc<[&'static FieldSpec]>,
}

impl LogFormat {
    /// The AWS default format (14 version-2 fields).
    pub fn default_format() -> Self {
        Self::from_fields(FIELDS[..14].iter()).expect("the default fields are distinct")
    }

    /// Every field in AWS's table order.
    pub fn all_fields() -> Self {
        Self::from_fields(FIELDS.iter()).expect("the registry has distinct fields")
    }

    /// Parses a `${field} ${field} ...` format string.
    ///
    /// As a convenience, a plain space-separated list of field names (the S3 header form) is
    /// accepted too.
    ///
    /// # Errors
    /// [`Error::Format`] for an empty format, a malformed `${...}` token, an unknown field (with
    /// the closest real name suggested) or a field given twice.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Format {
                reason: "a log format needs at least one field".into(),
            });
        }
        let templated = text.contains("${");
        let mut fields = Vec::new();
        for token in text.split_ascii_whitespace() {
            let name = if templated {
                token
                    .strip_prefix("${")
                    .and_then(|t| t.strip_suffix('}'))
                    .ok_or_else(|| Error::Format {
                        reason: format!(
                            "`{token}` is not of the form ${{field}}; fields are written as \
                             ${{field-name}} separated by single spaces"
                        ),
                    })?
            } else {
                token
            };
            let spec = field::lookup(name).ok_or_else(|| unknown_field(name))?;
            fields.push(spec);
        }
        Self::from_fields(fields)
    }

    /// Recognises an S3 header line (`version account-id interface-id ...`).
    ///
    /// Returns `None` when the line is not a valid header (a record, or a header with an unknown
    /// or repeated field: [`LogFormat::judge_header`] tells those apart).
    pub fn from_header(line: &str) -> Option<Self> {
        Self::judge_header(line).and_then(Result::ok)
    }

    /// Judges a line that may be a header: `None` when it is no header (a record, a blank line),
    /// `Some(Ok)` for a valid header and `Some(Err)` for a line that is plainly a header (at least
    /// half its words are field names, and every word is a name, not a value) but names a field
    /// that does not exist or names one twice.
    ///
    /// # Errors
    /// The inner [`Error::Format`] says which field is unknown (with the nearest known name) or
    /// repeated.
    pub fn judge_header(line: &str) -> Option<Result<Self>> {
        let line = line.trim_end_matches(['\r', '\n']);
        let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
        if tokens.is_empty() {
            return None;
        }
        let known: Vec<Option<&'static FieldSpec>> =
            tokens.iter().map(|token| field::lookup(token)).collect();
        let count = known.iter().flatten().count();
        if count < tokens.len() {
            // Values (numbers, addresses, `eni-…`, `ACCEPT`, `-`) are never all field names; a
            // header with a typo still is mostly names, and every word of it looks like one.
            let names = tokens.iter().all(|token| looks_like_name(token));
            if count == 0 || count * 2 < tokens.len() || !names {
                return None;
            }
        }
        let mut fields = Vec::with_capacity(tokens.len());
        for (position, (token, spec)) in tokens.iter().zip(known).enumerate() {
            match spec {
                Some(spec) => fields.push(spec),
                None => {
                    return Some(Err(Error::Format {
                        reason: format!("header word {}: {}", position + 1, unknown_reason(token)),
                    }));
                }
            }
        }
        Some(Self::from_fields(fields).map_err(|error| match error {
            Error::Format { reason } => Error::Format {
                reason: format!("header line: {reason}"),
            },
            other => other,
        }))
    }

    /// Builds a format from field specs.
    ///
    /// # Errors
    /// [`Error::Format`] when the list is empty or names a field twice.
    pub fn from_fields(fields: impl IntoIterator<Item = &'static FieldSpec>) -> Result<Self> {
        let fields: Vec<&'static FieldSpec> = fields.into_iter().collect();
        if fields.is_empty() {
            return Err(Error::Format {
                reason: "a log format needs at least one field".into(),
            });
        }
        for (i, f) in fields.iter().enumerate() {
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(Error::Format {
                    reason: format!("field `{}` appears twice", f.name),
                });
            }
        }
        Ok(Self {
            fields: fields.into(),
        })
    }

    /// Builds a format from Arrow column names (or field names).
    ///
    /// # Errors
    /// [`Error::Format`] when a column is not a flow log field or appears twice.
    pub fn from_columns<'a>(columns: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut fields = Vec::new();
        for column in columns {
            fields.push(field::lookup(column).ok_or_else(|| unknown_field(column))?);
        }
        Self::from_fields(fields)
    }

    /// The fields, in record order.
    pub fn fields(&self) -> &[&'static FieldSpec] {
        &self.fields
    }

    /// The number of fields in a record.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Always false: a format has at least one field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The format's columns as a SQL select list (`version, account_id, ...`), in order; the one
    /// column whose name is a reserved word in SQL, `end`, is quoted.
    pub fn select_list(&self) -> String {
        self.fields
            .iter()
            .map(|f| {
                if f.column == "end" {
                    "\"end\"".to_string()
                } else {
                    f.column.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The position of a field (by text or column name) in this format.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.name == name || f.column == name)
    }

    /// The `version` a record of this format carries: the highest version among its fields.
    pub fn version(&self) -> u8 {
        self.fields.iter().map(|f| f.version).max().unwrap_or(2)
    }

    /// The S3 header line for this format (field names separated by spaces, no newline).
    pub fn header(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        names.join(" ")
    }

    /// The Arrow schema of a batch in this format: AWS column names and types, all nullable.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .fields
            .iter()
            .map(|f| Field::new(f.column, f.data_type(), true))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// A format holding this format's fields followed by any of `other`'s it lacks.
    pub fn union(&self, other: &LogFormat) -> LogFormat {
        let mut fields: Vec<&'static FieldSpec> = self.fields.to_vec();
        for f in other.fields() {
            if !fields.iter().any(|g| g.name == f.name) {
                fields.push(f);
            }
        }
        LogFormat {
            fields: fields.into(),
        }
    }
}

impl Default for LogFormat {
    fn default() -> Self {
        Self::default_format()
    }
}

impl fmt::Display for LogFormat {
    /// Writes the `${field} ${field}` form the AWS CLI takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "${{{}}}", field.name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogFormat({})", self.header())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Whether a word could be a field name someone meant: lower-case letters, digits, `-` and `_`,
/// starting with a letter (values such as `ACCEPT`, `IPv4`, `-` and numbers are not).
fn looks_like_name(token: &str) -> bool {
    let mut chars = token.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn unknown_field(name: &str) -> Error {
    Error::Format {
        reason: unknown_reason(name),
    }
}

fn unknown_reason(name: &str) -> String {
    let hint = match field::suggest(name) {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; `flowscope fields` lists them".to_string(),
    };
    format!("unknown field `{name}`{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format_round_trips_through_display() {
        let format = LogFormat::parse(DEFAULT_FORMAT).unwrap();
        assert_eq!(format, LogFormat::default_format());
        assert_eq!(format.to_string(), DEFAULT_FORMAT);
        assert_eq!(format.version(), 2);
        assert_eq!(
            format.header(),
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets \
             bytes start end action log-status"
        );
        assert_eq!(
            format.select_list(),
            "version, account_id, interface_id, srcaddr, dstaddr, srcport, dstport, protocol, \
             packets, bytes, start, \"end\", action, log_status"
        );
    }

    #[test]
    fn version_is_the_highest_field_version() {
        assert_eq!(
            LogFormat::parse("${version} ${vpc-id} ${region}")
                .unwrap()
                .version(),
            4
        );
        assert_eq!(
            LogFormat::parse("${srcaddr} ${flow-direction}")
                .unwrap()
                .version(),
            5
        );
        assert_eq!(LogFormat::parse("${reject-reason}").unwrap().version(), 8);
    }

    #[test]
    fn unknown_fields_get_a_suggestion() {
        let err = LogFormat::parse("${version} ${srcadr}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown field `srcadr`; did you mean `srcaddr`?"),
            "{err}"
        );
        let err = LogFormat::parse("${nonsense-field-name-here}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("flowscope fields"), "{err}");
    }

    #[test]
    fn malformed_and_duplicate_formats_are_rejected() {
        assert!(LogFormat::parse("").is_err());
        assert!(LogFormat::parse("${version} srcaddr").is_err());
        assert!(LogFormat::parse("${version").is_err());
        let err = LogFormat::parse("${srcaddr} ${srcaddr}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn header_lines_are_recognised_and_records_are_not() {
        let header = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr \
                      dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets \
                      start end action tcp-flags log-status\n";
        let format = LogFormat::from_header(header).unwrap();
        assert_eq!(format.len(), 21);
        assert_eq!(format.position("bytes"), Some(14));
        assert_eq!(format.version(), 3);
        let record =
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA";
        assert!(LogFormat::from_header(record).is_none());
        assert!(LogFormat::from_header("").is_none());
    }

    #[test]
    fn a_header_with_a_typo_or_a_repeat_is_judged_a_bad_header() {
        let err = LogFormat::judge_header("version account-id interface-id dstaddr srcadr")
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("header word 5: unknown field `srcadr`; did you mean `srcaddr`?"),
            "{err}"
        );
        let err = LogFormat::judge_header("dstaddr srcaddr dstaddr")
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`dstaddr` appears twice"), "{err}");
        // Records of any format are not headers, even where values are lower-case words.
        for record in [
            "2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 443 49152 6 10 840 1 2 ACCEPT OK",
            "egress ingress",
            "vpc-0a1b2c3d subnet-0a1b2c3d i-0a1b2c3d eni-0a1b2c3d",
            "wavelength - -",
            "us-east-1 use1-az1 version",
        ] {
            assert!(LogFormat::judge_header(record).is_none(), "{record}");
        }
    }

    #[test]
    fn plain_name_lists_and_column_names_are_accepted() {
        let a = LogFormat::parse("srcaddr dstaddr log_status").unwrap();
        let b = LogFormat::parse("${srcaddr} ${dstaddr} ${log-status}").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn schema_uses_aws_column_names() {
        let schema = LogFormat::default_format().schema();
        assert_eq!(schema.field(1).name(), "account_id");
        assert_eq!(schema.field(13).name(), "log_status");
    }
}
