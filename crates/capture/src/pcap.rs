//! pcap and pcapng files as a stream of [`WirePacket`]s, read with `pcap-parser`.
//!
//! The format is told by the file's first block. pcap timestamps honour the nanosecond magic;
//! pcapng timestamps honour each interface's `if_tsresol` and `if_tsoffset`, and each
//! interface's link type decodes its frames. Captures cut short by a snap length are fine: sizes
//! come from the IP header.

use std::fs::File;
use std::path::{Path, PathBuf};

use flowscope_vpc::WirePacket;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, PcapBlockOwned, PcapError, create_reader};

use crate::decode::{Decoder, LinkType, Skip};
use crate::error::{Error, Result};

/// Bytes buffered from the file (grown when a block is larger).
const BUFFER: usize = 1 << 20;

/// What reading a capture found, besides the packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames read.
    pub frames: u64,
    /// IP packets decoded.
    pub packets: u64,
    /// Frames that were not IP (ARP, LLDP, ...).
    pub not_ip: u64,
    /// Frames cut before the IP header ended, or with an invalid one.
    pub malformed: u64,
    /// Frames of a link type that is not decoded.
    pub unknown_link: u64,
    /// Later fragments whose first fragment was not in the capture.
    pub orphan_fragments: u64,
}

impl CaptureStats {
    /// Frames skipped, for any reason.
    pub fn skipped(&self) -> u64 {
        self.not_ip + self.malformed + self.unknown_link + self.orphan_fragments
    }

    /// Adds `other`'s counts (several files read in turn).
    pub fn add(&mut self, other: &CaptureStats) {
        self.frames += other.frames;
        self.packets += other.packets;
        self.not_ip += other.not_ip;
        self.malformed += other.malformed;
        self.unknown_link += other.unknown_link;
        self.orphan_fragments += other.orphan_fragments;
    }

    fn count(&mut self, skip: Skip) {
        match skip {
            Skip::NotIp => self.not_ip += 1,
            Skip::Malformed => self.malformed += 1,
            Skip::UnknownLink => self.unknown_link += 1,
            Skip::OrphanFragment => self.orphan_fragments += 1,
            Skip::Waiting => {}
        }
    }
}

/// One pcapng interface: its link type, timestamp units per second and offset (seconds).
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    units_per_second: u64,
    offset: i64,
}

/// A pcap or pcapng file read packet by packet.
pub struct PcapSource {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    /// pcap: link type and nanosecond timestamps.
    legacy: Option<(LinkType, bool)>,
    interfaces: Vec<Interface>,
    decoder: Decoder,
    stats: CaptureStats,
    done: bool,
}

impl PcapSource {
    /// Opens `path`, telling pcap from pcapng by its first block.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Format`] when it is neither.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let reader = create_reader(BUFFER, file).map_err(|e| Error::Format {
            path: path.display().to_string(),
            reason: match e {
                PcapError::Eof | PcapError::Incomplete(_) => {
                    "shorter than a capture file header".into()
                }
                other => format!("not a pcap or pcapng file ({other})"),
            },
        })?;
        Ok(Self {
            path,
            reader,
            legacy: None,
            interfaces: Vec::new(),
            decoder: Decoder::new(),
            stats: CaptureStats::default(),
            done: false,
        })
    }

    /// What was read so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    fn corrupt(&mut self, reason: String) -> Option<Result<WirePacket>> {
        self.done = true;
        self.decoder.finish();
        self.stats.orphan_fragments += self.decoder.take_orphans();
        Some(Err(Error::Format {
            path: self.path.display().to_string(),
            reason: format!("frame {}: {reason}", self.stats.frames + 1),
        }))
    }

    /// The next IP packet; frames that are not are counted in [`stats`](Self::stats).
    ///
    /// # Errors
    /// [`Error::Format`] naming the file and frame when the file is corrupt or truncated; the
    /// packets before it were already returned, and the stream ends there.
    pub fn next_packet(&mut self) -> Option<Result<WirePacket>> {
        loop {
            self.stats.orphan_fragments += self.decoder.take_orphans();
            if let Some(fragment) = self.decoder.ready() {
                self.stats.packets += 1;
                return Some(Ok(fragment));
            }
            if self.done {
                return None;
            }
            let decoded = match self.reader.next() {
                Ok((offset, block)) => {
                    let decoded = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            let link = LinkType::from_code(header.network.0 as u32);
                            self.legacy = Some((link, header.is_nanosecond_precision()));
                            None
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let (link, nanos) = self.legacy.unwrap_or((LinkType::Ethernet, false));
                            let fraction = if nanos { b.ts_usec / 1000 } else { b.ts_usec };
                            let time_us = i64::from(b.ts_sec) * 1_000_000 + i64::from(fraction);
                            let caplen = (b.caplen as usize).min(b.data.len());
                            Some(self.decoder.decode(link, &b.data[..caplen], time_us))
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                link: LinkType::from_code(idb.linktype.0 as u32),
                                units_per_second: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                                offset: idb.if_tsoffset,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            match self.interfaces.get(epb.if_id as usize).copied() {
                                None => {
                                    let id = epb.if_id;
                                    self.reader.consume(offset);
                                    return self
                                        .corrupt(format!("interface {id} was never described"));
                                }
                                Some(i) => {
                                    let units =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    let micros = u128::from(units) * 1_000_000
                                        / u128::from(i.units_per_second);
                                    let time_us = i64::try_from(micros).unwrap_or(i64::MAX)
                                        + i.offset * 1_000_000;
                                    let caplen = (epb.caplen as usize).min(epb.data.len());
                                    Some(self.decoder.decode(i.link, &epb.data[..caplen], time_us))
                                }
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let link = self
                                .interfaces
                                .first()
                                .map_or(LinkType::Ethernet, |i| i.link);
                            Some(self.decoder.decode(link, spb.data, 0))
                        }
                        PcapBlockOwned::NG(_) => None,
                    };
                    self.reader.consume(offset);
                    decoded
                }
                Err(PcapError::Eof) => {
                    self.end();
                    return None;
                }
                Err(PcapError::Incomplete(_)) => {
                    let before = self.reader.data().len();
                    if let Err(e) = self.reader.refill() {
                        let reason = e.to_string();
                        return self.corrupt(reason);
                    }
                    if self.reader.data().len() == before {
                        if self.reader.reader_exhausted() {
                            if self.reader.data().is_empty() {
                                self.end();
                                return None;
                            }
                            return self.corrupt(
                                "the file ends inside a packet (truncated capture)".into(),
                            );
                        }
                        let size = self.reader.data().len().max(BUFFER) * 2;
                        self.reader.grow(size);
                    }
                    continue;
                }
                Err(e) => {
                    let reason = e.to_string();
                    return self.corrupt(reason);
                }
            };
            let Some(decoded) = decoded else { continue };
            self.stats.frames += 1;
            match decoded {
                Ok(packet) => {
                    self.stats.packets += 1;
                    return Some(Ok(packet));
                }
                // A packet when it comes out of the decoder, or an orphan.
                Err(Skip::Waiting) => {}
                Err(skip) => self.stats.count(skip),
            }
        }
    }

    /// The capture is read: fragments still waiting for their first are orphans.
    fn end(&mut self) {
        self.done = true;
        self.decoder.finish();
        self.stats.orphan_fragments += self.decoder.take_orphans();
    }
}
