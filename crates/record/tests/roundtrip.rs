//! Property: any valid record, in any format, survives text -> Arrow -> text byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use flowscope_record::{FIELDS, FieldKind, FieldSpec, LogFormat, TextDecoder, write_lines};
use proptest::prelude::*;
use proptest::sample::subsequence;

/// A valid text value for `field`, or `-`.
fn value(field: &'static FieldSpec) -> BoxedStrategy<String> {
    let present: BoxedStrategy<String> = match field.kind {
        FieldKind::Int32 { max } => (0..=max).prop_map(|v| v.to_string()).boxed(),
        FieldKind::Int64 => (0..=i64::MAX).prop_map(|v| v.to_string()).boxed(),
        FieldKind::Address => prop_oneof![
            any::<u32>().prop_map(|v| Ipv4Addr::from(v).to_string()),
            any::<u128>().prop_map(|v| Ipv6Addr::from(v).to_string()),
        ]
        .boxed(),
        FieldKind::Action => {
            prop_oneof![Just("ACCEPT".to_string()), Just("REJECT".to_string())].boxed()
        }
        FieldKind::LogStatus => prop_oneof![
            Just("OK".to_string()),
            Just("NODATA".to_string()),
            Just("SKIPDATA".to_string())
        ]
        .boxed(),
        FieldKind::Text => "[A-Za-z0-9:/._%=+-]{1,40}".boxed(),
    };
    prop_oneof![4 => present, 1 => Just("-".to_string())].boxed()
}

/// A format (any fields, any order) and up to 20 lines of it.
fn format_and_lines() -> impl Strategy<Value = (LogFormat, Vec<String>)> {
    let all: Vec<&'static FieldSpec> = FIELDS.iter().collect();
    subsequence(all, 1..=FIELDS.len())
        .prop_shuffle()
        .prop_flat_map(|fields| {
            let format = LogFormat::from_fields(fields.clone()).unwrap();
            let line = fields
                .into_iter()
                .map(value)
                .collect::<Vec<_>>()
                .prop_map(|v| v.join(" "));
            (Just(format), prop::collection::vec(line, 1..20))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_arrow_text_is_identity((format, lines) in format_and_lines()) {
        let mut decoder = TextDecoder::new(format.clone(), 7);
        let mut out = Vec::new();
        for line in &lines {
            decoder.decode_line(line.as_bytes()).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
            if decoder.is_full() {
                write_lines(&decoder.flush().unwrap(), &format, &mut out).unwrap();
            }
        }
        if let Some(batch) = decoder.flush() {
            write_lines(&batch, &format, &mut out).unwrap();
        }
        let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
        prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn format_strings_round_trip((format, _) in format_and_lines()) {
        prop_assert_eq!(LogFormat::parse(&format.to_string()).unwrap(), format.clone());
        prop_assert_eq!(LogFormat::from_header(&format.header()).unwrap(), format);
    }

    #[test]
    fn arbitrary_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut decoder = TextDecoder::new(LogFormat::default_format(), 4);
        let _ = decoder.decode_line(&line);
    }
}
