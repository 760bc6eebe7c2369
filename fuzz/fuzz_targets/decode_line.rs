//! Fuzzes the flow log line parser.
//!
//! The first byte picks a format: the default, every field, the AWS tcp-flags example format, or
//! one parsed from the input's first line (exercising `LogFormat` too).
//! Every following line is decoded. Oracle: nothing panics, and whatever is accepted re-encodes
//! to text that decodes again and re-encodes to the very same bytes.
#![no_main]

use flowscope_record::{LogFormat, TextDecoder, write_lines};
use libfuzzer_sys::fuzz_target;

const TCP_FLAGS: &str = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr \
dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let mut lines = rest.split(|&b| b == b'\n');
    let format = match selector % 4 {
        0 => LogFormat::default_format(),
        1 => LogFormat::all_fields(),
        2 => LogFormat::parse(TCP_FLAGS).unwrap(),
        _ => {
            let first = lines.next().unwrap_or_default();
            let Ok(text) = std::str::from_utf8(first) else { return };
            match LogFormat::parse(text) {
                Ok(format) => {
                    assert_eq!(LogFormat::parse(&format.to_string()).unwrap(), format);
                    format
                }
                Err(_) => return,
            }
        }
    };
    let mut decoder = TextDecoder::new(format.clone(), 64);
    for line in lines {
        let _ = decoder.decode_line(line);
    }
    let Some(batch) = decoder.flush() else { return };
    let mut first = Vec::new();
    write_lines(&batch, &format, &mut first).unwrap();
    let mut again = TextDecoder::new(format.clone(), 64);
    for line in first.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        again.decode_line(line).expect("re-encoded records decode");
    }
    let mut second = Vec::new();
    write_lines(&again.flush().unwrap(), &format, &mut second).unwrap();
    assert_eq!(first, second);
});
