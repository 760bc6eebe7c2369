//! Text lines -> Arrow: the parser every flow log passes through.

use std::net::Ipv6Addr;
use std::str::FromStr;

use arrow_array::RecordBatch;
use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef};
use arrow_schema::SchemaRef;
use std::sync::Arc;

use crate::error::{LineError, Reason};
use crate::field::{FieldKind, FieldSpec};
use crate::format::LogFormat;

/// Rows per batch unless the caller asks otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// Marks a null integer in the scratch row; real values are never negative.
const NULL: i64 = -1;

enum ColumnBuilder {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Utf8(StringBuilder),
}

impl ColumnBuilder {
    fn new(spec: &FieldSpec, capacity: usize) -> Self {
        match spec.kind {
            FieldKind::Int32 { .. } => Self::Int32(Int32Builder::with_capacity(capacity)),
            FieldKind::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            _ => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// The column so far; `shrink` gives back the builder's unused capacity (a batch much
    /// smaller than the capacity would otherwise hold all of it for as long as it lives).
    fn finish(&mut self, shrink: bool) -> ArrayRef {
        fn done(mut array: impl Array + 'static, shrink: bool) -> ArrayRef {
            if shrink {
                array.shrink_to_fit();
            }
            Arc::new(array)
        }
        match self {
            Self::Int32(b) => done(b.finish(), shrink),
            Self::Int64(b) => done(b.finish(), shrink),
            Self::Utf8(b) => done(b.finish(), shrink),
        }
    }
}

/// Decodes flow log text lines of one [`LogFormat`] into Arrow record batches.
///
/// Each line is checked whole before anything is appended, so a bad line leaves no trace in the
/// batch: it is reported as a [`LineError`] and the caller skips it. The decoder keeps its scratch
/// space between lines; the hot loop allocates nothing per record.
pub struct TextDecoder {
    format: LogFormat,
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    /// Byte ranges of the current line's tokens.
    tokens: Vec<(usize, usize)>,
    /// Parsed integers of the current line, `NULL` for `-` (and unused for text fields).
    ints: Vec<i64>,
    rows: usize,
    batch_size: usize,
}

impl TextDecoder {
    /// A decoder for `format` producing batches of at most `batch_size` rows.
    pub fn new(format: LogFormat, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        let columns = format
            .fields()
            .iter()
            .map(|f| ColumnBuilder::new(f, batch_size))
            .collect();
        Self {
            schema: format.schema(),
            ints: vec![NULL; format.len()],
            tokens: Vec::with_capacity(format.len() + 1),
            format,
            columns,
            rows: 0,
            batch_size,
        }
    }

    /// The format lines are decoded with.
    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// The schema of the batches this decoder produces.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows decoded since the last [`flush`](Self::flush).
    pub fn buffered_rows(&self) -> usize {
        self.rows
    }

    /// Whether a full batch is waiting to be flushed.
    pub fn is_full(&self) -> bool {
        self.rows >= self.batch_size
    }

    /// Decodes one line (with or without its trailing newline) into the current batch.
    ///
    /// Fields are separated by spaces; a run of several spaces counts as one separator (AWS's own
    /// documentation has such a line). `-` is null.
    ///
    /// # Errors
    /// A [`LineError`] naming the field, the value and the reason; nothing is appended then.
    pub fn decode_line(&mut self, line: &[u8]) -> Result<(), LineError> {
        let line = trim_line_end(line);
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(LineError::line(Reason::NotUtf8));
        };
        self.tokenize(line)?;
        self.check(line)?;
        self.append(text);
        Ok(())
    }

    /// Splits `line` at spaces into `self.tokens`.
    fn tokenize(&mut self, line: &[u8]) -> Result<(), LineError> {
        self.tokens.clear();
        let expected = self.format.len();
        let mut start = 0;
        for end in memchr::memchr_iter(b' ', line).chain(std::iter::once(line.len())) {
            if end > start {
                if self.tokens.len() == expected {
                    let found = expected + count_tokens(&line[start..]);
                    return Err(LineError::line(Reason::FieldCount { expected, found }));
                }
                self.tokens.push((start, end));
            }
            start = end + 1;
        }
        if self.tokens.len() != expected {
            let found = self.tokens.len();
            return Err(LineError::line(Reason::FieldCount { expected, found }));
        }
        Ok(())
    }

    /// Validates every token and parses the integers into `self.ints`.
    fn check(&mut self, line: &[u8]) -> Result<(), LineError> {
        for (i, (spec, &(start, end))) in self.format.fields().iter().zip(&self.tokens).enumerate()
        {
            let token = &line[start..end];
            if token == b"-" {
                self.ints[i] = NULL;
                continue;
            }
            let bad = |reason| LineError::field(spec.name, token, reason);
            match spec.kind {
                FieldKind::Int32 { max } => {
                    let value = parse_uint(token).ok_or_else(|| bad(Reason::NotANumber))?;
                    if value > max as u64 {
                        return Err(bad(Reason::OutOfRange {
                            max: i64::from(max),
                        }));
                    }
                    self.ints[i] = value as i64;
                }
                FieldKind::Int64 => {
                    let value = parse_uint(token).ok_or_else(|| bad(Reason::NotANumber))?;
                    if value > i64::MAX as u64 {
                        return Err(bad(Reason::OutOfRange { max: i64::MAX }));
                    }
                    self.ints[i] = value as i64;
                }
                FieldKind::Address => {
                    if !is_ip_address(token) {
                        return Err(bad(Reason::InvalidAddress));
                    }
                }
                FieldKind::Action => {
                    if token != b"ACCEPT" && token != b"REJECT" {
                        return Err(bad(Reason::UnknownAction));
                    }
                }
                FieldKind::LogStatus => {
                    if !matches!(token, b"OK" | b"NODATA" | b"SKIPDATA") {
                        return Err(bad(Reason::UnknownLogStatus));
                    }
                }
                FieldKind::Text => {}
            }
        }
        Ok(())
    }

    /// Appends the checked line to the builders.
    fn append(&mut self, text: &str) {
        for (i, column) in self.columns.iter_mut().enumerate() {
            let (start, end) = self.tokens[i];
            let token = &text[start..end];
            let is_null = token == "-";
            match column {
                ColumnBuilder::Int32(b) if is_null => b.append_null(),
                ColumnBuilder::Int32(b) => b.append_value(self.ints[i] as i32),
                ColumnBuilder::Int64(b) if is_null => b.append_null(),
                ColumnBuilder::Int64(b) => b.append_value(self.ints[i]),
                ColumnBuilder::Utf8(b) if is_null => b.append_null(),
                ColumnBuilder::Utf8(b) => b.append_value(token),
            }
        }
        self.rows += 1;
    }

    /// Returns the rows decoded so far as a batch, or `None` if there are none.
    pub fn flush(&mut self) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        // A small batch (a small file, the end of a big one) is made to fit: thousands of small
        // files buffered for one commit would otherwise each hold a whole batch's capacity.
        let shrink = self.rows * 2 < self.batch_size;
        self.rows = 0;
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|column| column.finish(shrink))
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .expect("builders follow the schema");
        Some(batch)
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

fn count_tokens(rest: &[u8]) -> usize {
    rest.split(|&b| b == b' ').filter(|t| !t.is_empty()).count()
}

/// Parses an unsigned decimal of at most 19 digits (which cannot overflow `u64`).
fn parse_uint(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in token {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u64::from(digit);
    }
    Some(value)
}

/// Whether `token` is an IPv4 or IPv6 address in any form `std` accepts.
pub(crate) fn is_ip_address(token: &[u8]) -> bool {
    if !token.contains(&b':') {
        return is_ipv4(token);
    }
    std::str::from_utf8(token).is_ok_and(|text| Ipv6Addr::from_str(text).is_ok())
}

/// Dotted-quad IPv4 exactly as `Ipv4Addr::from_str` accepts it (four octets of one to three
/// digits, at most 255, no leading zeros), without its general parser: addresses are a quarter of
/// the fields of a default record.
fn is_ipv4(token: &[u8]) -> bool {
    let mut octets = 0;
    for part in token.split(|&b| b == b'.') {
        octets += 1;
        let valid = match *part {
            [a] => a.is_ascii_digit(),
            [a, b] => (b'1'..=b'9').contains(&a) && b.is_ascii_digit(),
            [a, b, c] => {
                (b'1'..=b'2').contains(&a)
                    && b.is_ascii_digit()
                    && c.is_ascii_digit()
                    && (a == b'1' || (b, c) <= (b'5', b'5'))
            }
            _ => false,
        };
        if !valid || octets > 4 {
            return false;
        }
    }
    octets == 4
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use arrow_array::{Array, Int32Array, Int64Array, StringArray};

    use super::*;

    fn decoder() -> TextDecoder {
        TextDecoder::new(LogFormat::default_format(), 16)
    }

    const GOOD: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 \
                        20 4249 1418530010 1418530070 ACCEPT OK";

    fn reject(line: &str) -> LineError {
        let mut d = decoder();
        let err = d.decode_line(line.as_bytes()).unwrap_err();
        assert_eq!(d.buffered_rows(), 0, "a bad line must leave no row");
        err
    }

    #[test]
    fn decodes_a_default_record() {
        let mut d = decoder();
        d.decode_line(GOOD.as_bytes()).unwrap();
        let batch = d.flush().unwrap();
        assert_eq!(batch.num_rows(), 1);
        let dstport = batch
            .column(6)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(dstport.value(0), 22);
        let bytes = batch
            .column(9)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(bytes.value(0), 4249);
        let src = batch
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(src.value(0), "172.31.16.139");
        assert!(d.flush().is_none());
    }

    #[test]
    fn dashes_are_nulls() {
        let mut d = decoder();
        let line =
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA";
        d.decode_line(line.as_bytes()).unwrap();
        let batch = d.flush().unwrap();
        for i in 3..10 {
            assert!(batch.column(i).is_null(0), "column {i}");
        }
        assert!(batch.column(12).is_null(0));
        assert!(!batch.column(10).is_null(0));
    }

    #[test]
    fn each_error_class_names_field_value_and_reason() {
        let e = reject(&GOOD.replace(" 22 ", " 70000 "));
        assert_eq!((e.field, e.value.as_str()), (Some("dstport"), "70000"));
        assert_eq!(e.reason, Reason::OutOfRange { max: 65535 });

        let e = reject(&GOOD.replace(" 20641 ", " http "));
        assert_eq!(
            (e.field, e.reason.clone()),
            (Some("srcport"), Reason::NotANumber)
        );

        let e = reject(&GOOD.replace(" 6 20 ", " -6 20 "));
        assert_eq!(
            (e.field, e.reason.clone()),
            (Some("protocol"), Reason::NotANumber)
        );

        let e = reject(&GOOD.replace("172.31.16.139", "172.31.16.300"));
        assert_eq!(
            (e.field, e.reason.clone()),
            (Some("srcaddr"), Reason::InvalidAddress)
        );

        let e = reject(&GOOD.replace("ACCEPT", "ALLOW"));
        assert_eq!(
            (e.field, e.reason.clone()),
            (Some("action"), Reason::UnknownAction)
        );

        let e = reject(&GOOD.replace(" OK", " FINE"));
        assert_eq!(
            (e.field, e.reason.clone()),
            (Some("log-status"), Reason::UnknownLogStatus)
        );

        let e = reject(&GOOD.replace(" OK", ""));
        assert_eq!(
            e.reason,
            Reason::FieldCount {
                expected: 14,
                found: 13
            }
        );
        let e = reject(&format!("{GOOD} extra more"));
        assert_eq!(
            e.reason,
            Reason::FieldCount {
                expected: 14,
                found: 16
            }
        );

        let mut bad = GOOD.as_bytes().to_vec();
        bad[20] = 0xff;
        let e = decoder().decode_line(&bad).unwrap_err();
        assert_eq!(e.reason, Reason::NotUtf8);

        let e = reject(&GOOD.replace("4249", "99999999999999999999"));
        assert_eq!(
            (e.field, e.reason.clone()),
            (Some("bytes"), Reason::NotANumber)
        );
        assert_eq!(
            e.to_string(),
            "bytes: not a number (`99999999999999999999`)"
        );
    }

    #[test]
    fn tolerates_repeated_spaces_and_crlf() {
        let mut d = decoder();
        d.decode_line(GOOD.replace(" 22 ", "  22   ").as_bytes())
            .unwrap();
        d.decode_line(format!("{GOOD}\r\n").as_bytes()).unwrap();
        assert_eq!(d.buffered_rows(), 2);
    }

    #[test]
    fn ipv4_check_agrees_with_std() {
        let octets: Vec<String> = (0..=300)
            .map(|n: u32| n.to_string())
            .chain(["00", "01", "001", "010", "", "-1", "+1", "1a", "0x1", " 1"].map(String::from))
            .collect();
        for a in &octets {
            for b in ["0", "255", "01", "256", "9"] {
                for text in [
                    format!("{a}.{b}.1.2"),
                    format!("1.2.{b}.{a}"),
                    format!("{a}.1.2"),
                    format!("{a}.1.2.3.4"),
                ] {
                    let std = Ipv4Addr::from_str(&text).is_ok();
                    assert_eq!(is_ipv4(text.as_bytes()), std, "{text}");
                }
            }
        }
        assert!(!is_ipv4(b"1.2.3.4."));
        assert!(!is_ipv4(b".1.2.3.4"));
        assert!(!is_ipv4(b""));
    }

    #[test]
    fn ipv6_addresses_are_accepted() {
        assert!(is_ip_address(b"2001:db8:1234:a100:8d6e:3477:df66:f105"));
        assert!(is_ip_address(b"::1"));
        assert!(!is_ip_address(b"2001:db8::g"));
        assert!(!is_ip_address(b"10.0.0"));
    }

    #[test]
    fn batches_fill_to_the_batch_size() {
        let mut d = TextDecoder::new(LogFormat::default_format(), 2);
        d.decode_line(GOOD.as_bytes()).unwrap();
        assert!(!d.is_full());
        d.decode_line(GOOD.as_bytes()).unwrap();
        assert!(d.is_full());
        assert_eq!(d.flush().unwrap().num_rows(), 2);
        assert_eq!(d.buffered_rows(), 0);
    }
}
