//! Reading flow log text (plain or gzip) as a stream of Arrow batches.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use arrow_array::RecordBatch;
use flate2::bufread::MultiGzDecoder;
use flowscope_record::{LineError, LogFormat, Reason, Rejection, TextDecoder};

use crate::error::{Error, Result};
use crate::input::Input;

/// Longest line accepted; a record with every field and long ARNs is a few kilobytes.
pub const MAX_LINE: usize = 64 * 1024;

const BUFFER: usize = 256 * 1024;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Gzip files up to this size are read whole, to be decoded in one piece when that is safe.
const WHOLE_GZIP_MAX: u64 = 16 << 20;
/// Largest text decoded in one piece; anything larger is streamed.
const WHOLE_TEXT_MAX: usize = 64 << 20;

/// Decodes a gzip file in one piece with libdeflate (about twice as fast as streaming), when
/// that is provably right: it holds a single member (a second one would start with `1f 8b 08`,
/// and those bytes appear nowhere after the start), the trailer's size is small enough, and
/// exactly that much text comes out. `None` means: stream it instead.
fn inflate_whole(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 18 || !data.starts_with(&GZIP_MAGIC) {
        return None;
    }
    if memchr::memmem::find(&data[1..], &[0x1f, 0x8b, 0x08]).is_some() {
        return None;
    }
    let size = u32::from_le_bytes(data[data.len() - 4..].try_into().ok()?) as usize;
    if size > WHOLE_TEXT_MAX {
        return None;
    }
    let mut text = vec![0u8; size];
    let written = libdeflater::Decompressor::new()
        .gzip_decompress(data, &mut text)
        .ok()?;
    (written == size).then_some(text)
}

/// How to read text inputs.
#[derive(Debug, Clone)]
pub struct TextOptions {
    /// The format to decode with; `None` lets each file's header line decide (default format
    /// when there is none).
    pub format: Option<LogFormat>,
    /// Rows per batch.
    pub batch_size: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            format: None,
            batch_size: flowscope_record::DEFAULT_BATCH_SIZE,
        }
    }
}

/// Streams the records of one text input as batches of its format.
///
/// Gzip is recognised by its magic bytes, not the file name, and concatenated gzip members are
/// read through. A header line (the S3 form) sets the format unless one was given. Bad lines are
/// skipped and kept as [`Rejection`]s for the caller to drain with
/// [`take_rejections`](Self::take_rejections); a read failure part way (a truncated gzip) first
/// yields the records before it, then the error.
pub struct TextReader {
    name: String,
    reader: Box<dyn BufRead + Send>,
    decoder: TextDecoder,
    fixed_format: bool,
    header: Option<LogFormat>,
    wrapping: Wrapping,
    line: Vec<u8>,
    line_no: u64,
    /// The line in `line` was read while looking for a header and is still to be decoded.
    pending: bool,
    /// The first line is a header or a record of the format: the input looks like flow logs.
    recognised: bool,
    rejections: Vec<Rejection>,
    rejected: u64,
    records: u64,
    failed: Option<Error>,
    /// A batch of the previous format, finished when the format changed mid-stream.
    ready: Option<RecordBatch>,
    batch_size: usize,
    done: bool,
    /// Lines up to this number were taken before (from a shorter version of the input) and are
    /// not decoded again.
    skip_through: u64,
}

impl TextReader {
    /// Opens a file or standard input.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or its first line cannot be read.
    pub fn open(input: &Input, options: &TextOptions) -> Result<Self> {
        match input {
            Input::File(path) => {
                let name = input.name();
                let size = crate::input::regular_file(path)?.len();
                if size > WHOLE_GZIP_MAX {
                    return Self::open_streaming(input, options);
                }
                let data = std::fs::read(path).map_err(|e| Error::io(&name, e))?;
                Self::from_bytes(name, data, options)
            }
            Input::Object(object) => Self::from_bytes(input.name(), object.fetch()?, options),
            Input::Stdin => Self::open_streaming(input, options),
        }
    }

    /// Opens an input as a stream, never reading it whole: a look at its format reads and
    /// decompresses only the first buffer.
    ///
    /// # Errors
    /// [`Error::Io`] when the input cannot be opened or its first line cannot be read.
    pub fn open_streaming(input: &Input, options: &TextOptions) -> Result<Self> {
        let name = input.name();
        let raw: Box<dyn Read + Send> = match input {
            Input::File(path) => {
                crate::input::regular_file(path)?;
                Box::new(File::open(path).map_err(|e| Error::io(&name, e))?)
            }
            Input::Stdin => Box::new(io::stdin()),
            Input::Object(object) => Box::new(io::Cursor::new(object.fetch()?)),
        };
        Self::from_reader(name, raw, options)
    }

    /// Reads a whole file or object already in memory (plain or gzip).
    ///
    /// # Errors
    /// As [`from_reader`](Self::from_reader).
    pub fn from_bytes(
        name: impl Into<String>,
        data: impl AsRef<[u8]> + Send + 'static,
        options: &TextOptions,
    ) -> Result<Self> {
        match inflate_whole(data.as_ref()) {
            Some(text) => Self::from_reader(name, io::Cursor::new(text), options),
            None => Self::from_reader(name, io::Cursor::new(data), options),
        }
    }

    /// Reads from any byte stream; `name` is used in messages.
    ///
    /// # Errors
    /// [`Error::Io`] when the first line cannot be read.
    pub fn from_reader(
        name: impl Into<String>,
        raw: impl Read + Send + 'static,
        options: &TextOptions,
    ) -> Result<Self> {
        let name = name.into();
        let mut buffered = BufReader::with_capacity(BUFFER, raw);
        let is_gzip = buffered
            .fill_buf()
            .map_err(|e| Error::io(&name, e))?
            .starts_with(&GZIP_MAGIC);
        let reader: Box<dyn BufRead + Send> = if is_gzip {
            Box::new(BufReader::with_capacity(
                BUFFER,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        let format = options.format.clone().unwrap_or_default();
        let mut this = Self {
            decoder: TextDecoder::new(format, options.batch_size),
            fixed_format: options.format.is_some(),
            name,
            reader,
            header: None,
            wrapping: Wrapping::None,
            line: Vec::with_capacity(1024),
            line_no: 0,
            pending: false,
            recognised: true,
            rejections: Vec::new(),
            rejected: 0,
            records: 0,
            failed: None,
            ready: None,
            batch_size: options.batch_size,
            done: false,
            skip_through: 0,
        };
        this.read_header()?;
        Ok(this)
    }

    /// Reads the first non-blank line: a header sets the format, anything else is data.
    fn read_header(&mut self) -> Result<()> {
        loop {
            match self.read_line() {
                Ok(LineRead::Eof) => {
                    self.done = true;
                    return Ok(());
                }
                Ok(LineRead::TooLong) => {
                    self.reject(LineError::line(Reason::TooLong { max: MAX_LINE }));
                    continue;
                }
                Ok(LineRead::Line) if is_blank(&self.line) => continue,
                Ok(LineRead::Line) => {
                    self.wrapping = Wrapping::of(&self.line);
                    self.wrapping.unwrap(&mut self.line);
                    break;
                }
                Err(e) => {
                    return Err(Error::Truncated {
                        path: self.name.clone(),
                        line: 0,
                        source: e,
                    });
                }
            }
        }
        let header = std::str::from_utf8(&self.line)
            .ok()
            .and_then(LogFormat::judge_header);
        match header {
            Some(Err(error)) if self.fixed_format => {
                // The caller named the format: the line is judged (and rejected) as a record.
                tracing::warn!(file = %self.name, "a header line that is not valid: {error}");
                self.pending = true;
            }
            Some(Err(error)) => {
                return Err(Error::Header {
                    path: self.name.clone(),
                    line: self.line_no,
                    reason: match error {
                        flowscope_record::Error::Format { reason } => reason,
                        other => other.to_string(),
                    },
                });
            }
            Some(Ok(format)) => {
                if !self.fixed_format {
                    self.decoder = TextDecoder::new(format.clone(), self.batch_size);
                } else if &format != self.decoder.format() {
                    tracing::warn!(
                        file = %self.name,
                        header = %format.header(),
                        "the file's header differs from the format given; decoding with the format given"
                    );
                }
                self.header = Some(format);
            }
            None => {
                self.pending = true;
                let mut probe = TextDecoder::new(self.decoder.format().clone(), 1);
                self.recognised = probe.decode_line(&self.line).is_ok();
            }
        }
        Ok(())
    }

    /// Leaves the first `lines` lines undecoded (the header still sets the format): they were
    /// taken before, from a shorter version of this input that broke off after them.
    pub fn skip_through(&mut self, lines: u64) {
        self.skip_through = lines;
        let before = self.rejections.len();
        self.rejections.retain(|r| r.line > lines);
        self.rejected -= (before - self.rejections.len()) as u64;
    }

    /// Whether the input looks like flow logs: it has a header line, or its first line is a
    /// record of the format (an empty input counts). A log of some other program does not.
    pub fn is_recognised(&self) -> bool {
        self.recognised
    }

    /// The format records are decoded with.
    pub fn format(&self) -> &LogFormat {
        self.decoder.format()
    }

    /// How the records are wrapped: bare lines, CloudWatch Logs events, or an export's lines.
    pub fn wrapping(&self) -> Wrapping {
        self.wrapping
    }

    /// The format named by the file's header line, if it had one.
    pub fn header(&self) -> Option<&LogFormat> {
        self.header.as_ref()
    }

    /// The input's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records decoded so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Lines rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Takes the rejections gathered since the last call.
    pub fn take_rejections(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejections)
    }

    /// The next batch, `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`Error::Truncated`] when the input breaks off; the records before the break have been
    /// returned already.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        loop {
            if let Some(batch) = self.ready.take() {
                return Ok(Some(batch));
            }
            if self.decoder.is_full() || self.done {
                return Ok(self.flush());
            }
            if self.pending {
                self.pending = false;
                self.decode_current();
                continue;
            }
            match self.read_line() {
                Ok(LineRead::Line) => self.decode_current(),
                Ok(LineRead::TooLong) if self.line_no > self.skip_through => {
                    self.reject(LineError::line(Reason::TooLong { max: MAX_LINE }));
                }
                Ok(LineRead::TooLong) => {}
                Ok(LineRead::Eof) => self.done = true,
                Err(source) => {
                    self.done = true;
                    let error = Error::Truncated {
                        path: self.name.clone(),
                        line: self.line_no,
                        source,
                    };
                    if self.decoder.buffered_rows() == 0 {
                        return Err(error);
                    }
                    self.failed = Some(error);
                    return Ok(self.flush());
                }
            }
        }
    }

    fn flush(&mut self) -> Option<RecordBatch> {
        let batch = self.decoder.flush()?;
        self.records += batch.num_rows() as u64;
        Some(batch)
    }

    /// Decodes the line in `self.line`. A repeated header (concatenated files) is skipped, and a
    /// different one switches the format when none was fixed by the caller.
    fn decode_current(&mut self) {
        if is_blank(&self.line) || self.line_no <= self.skip_through {
            return;
        }
        let Err(error) = self.decoder.decode_line(&self.line) else {
            return;
        };
        let header = std::str::from_utf8(&self.line)
            .ok()
            .and_then(LogFormat::from_header);
        match header {
            Some(format) if &format == self.decoder.format() => {}
            Some(format) if !self.fixed_format => {
                // The rows of the old format go out first, as their own batch.
                self.ready = self.flush();
                self.decoder = TextDecoder::new(format, self.batch_size);
            }
            _ => self.reject(error),
        }
    }

    fn reject(&mut self, error: LineError) {
        self.rejected += 1;
        self.rejections.push(Rejection {
            file: self.name.clone(),
            line: self.line_no,
            error,
        });
    }

    /// Reads the next line into `self.line` without its newline, refusing to buffer more than
    /// [`MAX_LINE`] bytes of one line.
    fn read_line(&mut self) -> io::Result<LineRead> {
        self.line.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                if !any {
                    return Ok(LineRead::Eof);
                }
                break;
            }
            any = true;
            let (chunk, found) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if !too_long {
                if self.line.len() + chunk.len() > MAX_LINE {
                    too_long = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let consumed = found.unwrap_or(available.len());
            self.reader.consume(consumed);
            if found.is_some() {
                break;
            }
        }
        self.line_no += 1;
        if too_long {
            return Ok(LineRead::TooLong);
        }
        self.wrapping.unwrap(&mut self.line);
        Ok(LineRead::Line)
    }
}

/// The lines ended by a newline in `data` (inflated first when it is gzip), up to where it
/// breaks off: how many lines a reader of exactly these bytes read in full.
pub(crate) fn complete_lines(data: impl Read) -> u64 {
    let mut buffered = BufReader::with_capacity(BUFFER, data);
    let is_gzip = buffered
        .fill_buf()
        .is_ok_and(|start| start.starts_with(&GZIP_MAGIC));
    let mut reader: Box<dyn Read + '_> = if is_gzip {
        Box::new(MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut buffer = vec![0u8; 1 << 16];
    let mut lines = 0;
    while let Ok(n) = reader.read(&mut buffer) {
        if n == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &buffer[..n]).count() as u64;
    }
    lines
}

/// How each record line is wrapped, judged on the first line of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// Bare flow log lines, as in S3 files.
    None,
    /// One CloudWatch Logs event per line, as `aws logs get-log-events` shows them and as the
    /// CloudWatch Logs layout writes them: `{"timestamp": ms, "message": "<record>", ...}`.
    CloudWatchEvent,
    /// A CloudWatch Logs export to S3: each line is the event's ISO 8601 timestamp, a space,
    /// then the record (`2026-11-02T10:00:05.000Z 2 123456789012 eni-… …`).
    ExportTimestamp,
}

impl Wrapping {
    /// The wrapping of an input whose first non-blank line is `line`.
    fn of(line: &[u8]) -> Self {
        let line = line.trim_ascii_start();
        if line.first() == Some(&b'{') && event_message(line).is_some() {
            Self::CloudWatchEvent
        } else if export_prefix(line).is_some() {
            Self::ExportTimestamp
        } else {
            Self::None
        }
    }

    /// Leaves only the record in `line`. A line that is not wrapped as the first was is left
    /// whole, to be rejected as a record with its own text.
    fn unwrap(self, line: &mut Vec<u8>) {
        match self {
            Self::None => {}
            Self::CloudWatchEvent => {
                if let Some(message) = event_message(line.trim_ascii_start()) {
                    *line = message.into_bytes();
                }
            }
            Self::ExportTimestamp => {
                if let Some(n) = export_prefix(line) {
                    line.drain(..n);
                }
            }
        }
    }
}

/// The `message` of a CloudWatch Logs event in JSON.
fn event_message(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Event {
        message: String,
    }
    serde_json::from_slice::<Event>(line)
        .ok()
        .map(|e| e.message)
}

/// The length of a leading `YYYY-MM-DDTHH:MM:SS[.fff]Z ` (the timestamp and its space).
fn export_prefix(line: &[u8]) -> Option<usize> {
    let digits = |r: std::ops::Range<usize>| {
        line.get(r)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| line.get(i) == Some(&c);
    if !(digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19))
    {
        return None;
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        while line.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    (at(i, b'Z') && at(i + 1, b' ')).then_some(i + 2)
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

impl Iterator for TextReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn whole_decoding_only_when_provably_one_member() {
        let text = b"srcaddr dstaddr action\n10.0.0.1 10.0.0.2 ACCEPT\n".repeat(1_000);
        let one = gzip(&text);
        assert_eq!(inflate_whole(&one).as_deref(), Some(text.as_slice()));
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(inflate_whole(&two), None, "a second member means streaming");
        assert_eq!(
            inflate_whole(&one[..one.len() - 5]),
            None,
            "truncated means streaming"
        );
        assert_eq!(inflate_whole(&text), None, "not gzip");
    }

    fn read(text: &str) -> (TextReader, Vec<RecordBatch>) {
        let mut reader =
            TextReader::from_bytes("t", text.as_bytes().to_vec(), &TextOptions::default()).unwrap();
        let mut batches = Vec::new();
        while let Some(b) = reader.next_batch().unwrap() {
            batches.push(b);
        }
        (reader, batches)
    }

    const RECORD: &str = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";

    #[test]
    fn cloudwatch_events_are_read_for_their_message() {
        // As `aws logs get-log-events` prints an event, and the CloudWatch Logs layout writes it.
        let text = format!(
            "{{\"timestamp\":1418530010000,\"message\":\"{RECORD}\",\"ingestionTime\":1418530370000}}\n\
             {{\"timestamp\":1418530010000,\"message\":\"{RECORD}\",\"ingestionTime\":1418530370000}}\n\
             not json\n"
        );
        let (reader, batches) = read(&text);
        assert_eq!(reader.wrapping(), Wrapping::CloudWatchEvent);
        assert!(reader.is_recognised());
        assert_eq!(reader.records(), 2);
        assert_eq!(
            reader.rejected(),
            1,
            "the line that is no event is rejected"
        );
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    }

    #[test]
    fn export_lines_drop_their_timestamp() {
        // CloudWatch Logs' export to S3: the event's timestamp, a space, the message.
        let text = format!("2014-12-14T04:06:50.000Z {RECORD}\n2014-12-14T04:06:50Z {RECORD}\n");
        let (reader, _) = read(&text);
        assert_eq!(reader.wrapping(), Wrapping::ExportTimestamp);
        assert_eq!((reader.records(), reader.rejected()), (2, 0));
        // Bare lines stay bare.
        let (reader, _) = read(&format!("{RECORD}\n"));
        assert_eq!(reader.wrapping(), Wrapping::None);
        assert_eq!(reader.records(), 1);
        assert_eq!(
            export_prefix(b"2014-12-14T04:06:50.000Z"),
            None,
            "no record after it"
        );
    }
}
