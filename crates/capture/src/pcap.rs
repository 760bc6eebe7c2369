//! pcap and pcapng files as a stream of [`WirePacket`]s.
//!
//! The format is told by the file's magic number. pcapng timestamps honour each interface's
//! `if_tsresol` (microseconds when absent), and each interface's link type decodes its frames.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flowscope_vpc::WirePacket;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::decode::{Decoder, LinkType, Skip};
use crate::error::{Error, Result};

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

    fn count(&mut self, skip: Skip) {
        match skip {
            Skip::NotIp => self.not_ip += 1,
            Skip::Malformed => self.malformed += 1,
            Skip::UnknownLink => self.unknown_link += 1,
            Skip::OrphanFragment => self.orphan_fragments += 1,
        }
    }
}

enum Inner {
    Pcap {
        reader: PcapReader<BufReader<File>>,
        link: LinkType,
    },
    PcapNg {
        reader: PcapNgReader<BufReader<File>>,
        /// Per interface: link type and (numerator, denominator) turning raw units into µs.
        interfaces: Vec<(LinkType, u128, u128)>,
    },
}

/// A pcap or pcapng file read packet by packet.
pub struct PcapSource {
    path: PathBuf,
    inner: Inner,
    decoder: Decoder,
    stats: CaptureStats,
}

impl PcapSource {
    /// Opens `path`, telling pcap from pcapng by the magic number.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, [`Error::Format`] when it is neither.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |e| Error::Io {
            path: path.display().to_string(),
            source: e,
        };
        let mut magic = [0u8; 4];
        File::open(&path)
            .map_err(io)?
            .read_exact(&mut magic)
            .map_err(|_| Error::Format {
                path: path.display().to_string(),
                reason: "shorter than a capture file header".into(),
            })?;
        let file = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io)?);
        let bad = |e: pcap_file::PcapError| Error::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let inner = if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            Inner::PcapNg {
                reader: PcapNgReader::new(file).map_err(bad)?,
                interfaces: Vec::new(),
            }
        } else {
            let reader = PcapReader::new(file).map_err(|e| Error::Format {
                path: path.display().to_string(),
                reason: format!("not a pcap or pcapng file ({e})"),
            })?;
            let link = LinkType::from_code(u32::from(reader.header().datalink));
            Inner::Pcap { reader, link }
        };
        Ok(Self {
            path,
            inner,
            decoder: Decoder::new(),
            stats: CaptureStats::default(),
        })
    }

    /// What was read so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// The next IP packet; frames that are not are counted in [`stats`](Self::stats).
    ///
    /// # Errors
    /// [`Error::Format`] naming the file and frame when the file is corrupt or truncated; the
    /// packets before it were already returned.
    pub fn next_packet(&mut self) -> Option<Result<WirePacket>> {
        loop {
            let frame = self.stats.frames + 1;
            let corrupt = |path: &Path, e: pcap_file::PcapError| Error::Format {
                path: path.display().to_string(),
                reason: format!("frame {frame}: {e}"),
            };
            let decoded = match &mut self.inner {
                Inner::Pcap { reader, link } => {
                    let packet = match reader.next_packet()? {
                        Ok(p) => p,
                        Err(e) => return Some(Err(corrupt(&self.path, e))),
                    };
                    let time_us = i64::try_from(packet.timestamp.as_micros()).unwrap_or(i64::MAX);
                    self.decoder.decode(*link, &packet.data, time_us)
                }
                Inner::PcapNg { reader, interfaces } => {
                    let block = match reader.next_block()? {
                        Ok(b) => b,
                        Err(e) => return Some(Err(corrupt(&self.path, e))),
                    };
                    match block {
                        Block::SectionHeader(_) => {
                            interfaces.clear();
                            continue;
                        }
                        Block::InterfaceDescription(idb) => {
                            let mut scale = (1u128, 1u128);
                            for option in &idb.options {
                                if let InterfaceDescriptionOption::IfTsResol(r) = option {
                                    scale = resolution(*r);
                                }
                            }
                            let link = LinkType::from_code(u32::from(idb.linktype));
                            interfaces.push((link, scale.0, scale.1));
                            continue;
                        }
                        Block::EnhancedPacket(epb) => {
                            let Some(&(link, num, den)) = interfaces.get(epb.interface_id as usize)
                            else {
                                return Some(Err(Error::Format {
                                    path: self.path.display().to_string(),
                                    reason: format!(
                                        "frame {frame}: interface {} was never described",
                                        epb.interface_id
                                    ),
                                }));
                            };
                            // pcap-file hands the raw timestamp units over as nanoseconds.
                            let raw = epb.timestamp.as_nanos();
                            let time_us = i64::try_from(raw * num / den).unwrap_or(i64::MAX);
                            self.decoder.decode(link, &epb.data, time_us)
                        }
                        Block::SimplePacket(spb) => {
                            let link = interfaces.first().map_or(LinkType::Ethernet, |i| i.0);
                            self.decoder.decode(link, &spb.data, 0)
                        }
                        _ => continue,
                    }
                }
            };
            self.stats.frames += 1;
            match decoded {
                Ok(packet) => {
                    self.stats.packets += 1;
                    return Some(Ok(packet));
                }
                Err(skip) => self.stats.count(skip),
            }
        }
    }
}

/// `if_tsresol` as a fraction turning raw units into microseconds.
fn resolution(code: u8) -> (u128, u128) {
    let exponent = u32::from(code & 0x7f);
    if code & 0x80 == 0 {
        // 10^-exponent seconds per unit.
        if exponent >= 6 {
            (1, 10u128.pow(exponent - 6))
        } else {
            (10u128.pow(6 - exponent), 1)
        }
    } else {
        (1_000_000, 1u128 << exponent.min(100))
    }
}
