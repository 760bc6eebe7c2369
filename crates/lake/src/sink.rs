//! Writing batches out as flow log text, JSON lines, CSV or Parquet.

use std::io::{self, BufWriter, Stdout, Write};
use std::path::PathBuf;

use arrow_array::RecordBatch;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use flowscope_record::{LogFormat, conform, write_lines};
use parquet::arrow::ArrowWriter;

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// The shape of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Space-separated flow log lines, as AWS writes them.
    Text,
    /// One JSON object per record, keyed by AWS column names, `null` for `-`.
    JsonLines,
    /// CSV with a header row of AWS column names, empty for `-`.
    Csv,
    /// Parquet (zstd) with AWS's column names and types.
    Parquet,
}

/// Where the output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, written atomically; gzip-compressed when its name ends in `.gz`.
    File(PathBuf),
}

impl Destination {
    fn name(&self) -> String {
        match self {
            Destination::Stdout => "-".into(),
            Destination::File(path) => path.display().to_string(),
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The shape of the output.
    pub kind: OutputKind,
    /// The fields written, in order; every batch is brought to this format.
    pub format: LogFormat,
    /// Text only: start with the S3 header line.
    pub header: bool,
}

/// A destination for batches; [`finish`](RecordSink::finish) makes the output complete (and,
/// for files, visible).
pub trait RecordSink {
    /// Writes one batch.
    ///
    /// # Errors
    /// When the batch cannot be brought to the output format or the write fails.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Completes the output: footers, compression trailers, fsync and rename for files.
    ///
    /// # Errors
    /// When any of those steps fails; a file destination is then left untouched.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Opens a sink writing `options.kind` to `destination`.
///
/// # Errors
/// [`Error::Io`] when the output file cannot be created, or Parquet writer set-up errors.
pub fn open(destination: &Destination, options: &SinkOptions) -> Result<Box<dyn RecordSink>> {
    let name = destination.name();
    let out = Output::open(destination, options.kind != OutputKind::Parquet)
        .map_err(|e| Error::io(&name, e))?;
    let format = options.format.clone();
    Ok(match options.kind {
        OutputKind::Text => {
            let mut sink = TextSink {
                name,
                out,
                format,
                buffer: Vec::with_capacity(1 << 20),
            };
            if options.header {
                sink.buffer
                    .extend_from_slice(sink.format.header().as_bytes());
                sink.buffer.push(b'\n');
            }
            Box::new(sink)
        }
        OutputKind::JsonLines => {
            let writer = arrow_json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow_json::writer::LineDelimited>(out);
            Box::new(JsonSink {
                name,
                writer,
                format,
            })
        }
        OutputKind::Csv => {
            let writer = arrow_csv::WriterBuilder::new().with_header(true).build(out);
            Box::new(CsvSink {
                name,
                writer,
                format,
            })
        }
        OutputKind::Parquet => {
            // As AWS's own Parquet flow logs, for the readers made for them.
            let properties = crate::partition::delivery_writer_properties();
            let writer =
                ArrowWriter::try_new(out, format.schema(), Some(properties)).map_err(|source| {
                    Error::Parquet {
                        path: name.clone(),
                        source,
                    }
                })?;
            Box::new(ParquetSink {
                name,
                writer,
                format,
            })
        }
    })
}

/// The byte stream under a sink.
enum Output {
    Stdout(BufWriter<Stdout>),
    File(AtomicFile),
    GzipFile(Box<GzEncoder<AtomicFile>>),
}

impl Output {
    fn open(destination: &Destination, may_compress: bool) -> io::Result<Self> {
        let level = GzLevel::default();
        Ok(match destination {
            Destination::Stdout => Output::Stdout(BufWriter::with_capacity(1 << 20, io::stdout())),
            Destination::File(path) => {
                let file = AtomicFile::create(path)?;
                let gzip = path.extension().is_some_and(|e| e == "gz");
                if gzip && may_compress {
                    Output::GzipFile(Box::new(GzEncoder::new(file, level)))
                } else {
                    Output::File(file)
                }
            }
        })
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Output::Stdout(mut w) => w.flush(),
            Output::File(f) => f.commit(),
            Output::GzipFile(w) => w.finish()?.commit(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(w) => w.write(buf),
            Output::File(w) => w.write(buf),
            Output::GzipFile(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File(w) => w.flush(),
            Output::GzipFile(w) => w.flush(),
        }
    }
}

struct TextSink {
    name: String,
    out: Output,
    format: LogFormat,
    buffer: Vec<u8>,
}

impl RecordSink for TextSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        write_lines(batch, &self.format, &mut self.buffer).map_err(|source| Error::Record {
            path: self.name.clone(),
            source,
        })?;
        self.out
            .write_all(&self.buffer)
            .map_err(|e| Error::io(&self.name, e))?;
        self.buffer.clear();
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.out
            .write_all(&self.buffer)
            .map_err(|e| Error::io(&self.name, e))?;
        self.out.finish().map_err(|e| Error::io(&self.name, e))
    }
}

fn conformed(name: &str, batch: &RecordBatch, format: &LogFormat) -> Result<RecordBatch> {
    conform(batch, format).map_err(|source| Error::Record {
        path: name.to_string(),
        source,
    })
}

struct JsonSink {
    name: String,
    writer: arrow_json::Writer<Output, arrow_json::writer::LineDelimited>,
    format: LogFormat,
}

impl RecordSink for JsonSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = conformed(&self.name, batch, &self.format)?;
        self.writer.write(&batch).map_err(|source| Error::Arrow {
            path: self.name.clone(),
            source,
        })
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let name = self.name;
        self.writer.finish().map_err(|source| Error::Arrow {
            path: name.clone(),
            source,
        })?;
        self.writer
            .into_inner()
            .finish()
            .map_err(|e| Error::io(&name, e))
    }
}

struct CsvSink {
    name: String,
    writer: arrow_csv::Writer<Output>,
    format: LogFormat,
}

impl RecordSink for CsvSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = conformed(&self.name, batch, &self.format)?;
        self.writer.write(&batch).map_err(|source| Error::Arrow {
            path: self.name.clone(),
            source,
        })
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let name = self.name;
        self.writer
            .into_inner()
            .finish()
            .map_err(|e| Error::io(&name, e))
    }
}

struct ParquetSink {
    name: String,
    writer: ArrowWriter<Output>,
    format: LogFormat,
}

impl RecordSink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = conformed(&self.name, batch, &self.format)?;
        self.writer.write(&batch).map_err(|source| Error::Parquet {
            path: self.name.clone(),
            source,
        })
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let name = self.name;
        let out = self.writer.into_inner().map_err(|source| Error::Parquet {
            path: name.clone(),
            source,
        })?;
        out.finish().map_err(|e| Error::io(&name, e))
    }
}
