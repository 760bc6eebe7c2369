//! Threat-intelligence lists: known-bad addresses and networks.
//!
//! Three file shapes are read, told apart by their content:
//! - one address or CIDR block per line, `#` starting a comment (whole line or trailing);
//! - Spamhaus DROP style: `CIDR ; SBL-id`, `;` starting a comment line;
//! - CSV with a header row naming the address column (`ip`, `ip_address`, `address`, `cidr`,
//!   `network`, `indicator`); a `description`, `threat`, `label`, `tags` or `source` column
//!   becomes the entry's label.
//!
//! A line that is not an address is reported (file and line) and skipped; the rest is kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use flowscope_record::net::Cidr;

use crate::error::{Error, Result};

/// One list entry: the network and what the list says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The network (a single address is a /32 or /128).
    pub cidr: Cidr,
    /// The label: the list's id or description, else the file name.
    pub label: String,
}

/// Known-bad networks, looked up by address.
#[derive(Debug, Default, Clone)]
pub struct ThreatIntel {
    /// prefix length -> network address -> label (first entry wins).
    by_prefix: HashMap<u8, HashMap<IpAddr, String>>,
    prefixes: Vec<u8>,
    entries: usize,
}

/// What reading one file gave.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Entries kept.
    pub entries: usize,
    /// Lines that were not addresses (file, line, what is wrong).
    pub rejected: Vec<Error>,
}

const ADDRESS_COLUMNS: [&str; 7] = [
    "ip",
    "ip_address",
    "ipaddress",
    "address",
    "cidr",
    "network",
    "indicator",
];
const LABEL_COLUMNS: [&str; 6] = ["description", "threat", "label", "tags", "source", "name"];

impl ThreatIntel {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Adds one network.
    pub fn insert(&mut self, cidr: Cidr, label: impl Into<String>) {
        let map = self.by_prefix.entry(cidr.prefix()).or_default();
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(cidr.network()) {
            e.insert(label.into());
            self.entries += 1;
        }
        if !self.prefixes.contains(&cidr.prefix()) {
            self.prefixes.push(cidr.prefix());
            self.prefixes.sort_unstable_by(|a, b| b.cmp(a));
        }
    }

    /// The IPv4 networks as sorted, disjoint, inclusive ranges of addresses (adjacent and
    /// overlapping networks merged): whether an IPv4 address is on the list at all, by one
    /// binary search.
    pub fn v4_ranges(&self) -> Vec<(u32, u32)> {
        let mut ranges: Vec<(u32, u32)> = self
            .by_prefix
            .iter()
            .flat_map(|(prefix, nets)| nets.keys().map(move |net| (*prefix, *net)))
            .filter_map(|(prefix, net)| match net {
                IpAddr::V4(v4) if prefix <= 32 => {
                    let lo = u32::from(v4);
                    let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                    Some((lo, lo | host))
                }
                _ => None,
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
    }

    /// Whether `addr` lies in one of `ranges` (as [`ThreatIntel::v4_ranges`] gives them).
    pub fn v4_listed(ranges: &[(u32, u32)], addr: u32) -> bool {
        let i = ranges.partition_point(|(lo, _)| *lo <= addr);
        i > 0 && ranges[i - 1].1 >= addr
    }

    /// The label of the most specific entry holding `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<(&str, Cidr)> {
        for &prefix in &self.prefixes {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                continue;
            }
            let Ok(net) = Cidr::parse(&format!("{addr}/{prefix}")) else {
                continue;
            };
            if let Some(label) = self
                .by_prefix
                .get(&prefix)
                .and_then(|m| m.get(&net.network()))
            {
                return Some((label, net));
            }
        }
        None
    }

    /// Reads a list file into this set.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read. Bad lines are not errors: they are counted
    /// in [`Loaded::rejected`].
    pub fn load(&mut self, path: &Path) -> Result<Loaded> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(self.read(&text, &path.display().to_string(), &name))
    }

    /// Reads list text; `file` names it in messages, `default_label` labels entries without one.
    pub fn read(&mut self, text: &str, file: &str, default_label: &str) -> Loaded {
        let mut loaded = Loaded::default();
        let mut csv: Option<(usize, Option<usize>)> = None;
        let mut first = true;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim().trim_start_matches('\u{feff}');
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if first {
                first = false;
                if line.contains(',') {
                    let header: Vec<String> = line
                        .split(',')
                        .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
                        .collect();
                    if Cidr::parse(&header[0]).is_err() {
                        match header
                            .iter()
                            .position(|h| ADDRESS_COLUMNS.contains(&h.as_str()))
                        {
                            Some(col) => {
                                let label = header
                                    .iter()
                                    .position(|h| LABEL_COLUMNS.contains(&h.as_str()));
                                csv = Some((col, label));
                                continue;
                            }
                            None => {
                                loaded.rejected.push(Error::Intel {
                                    file: file.into(),
                                    line: line_no,
                                    message: format!(
                                        "a CSV header needs an address column ({}); got `{line}`",
                                        ADDRESS_COLUMNS.join(", ")
                                    ),
                                });
                                return loaded;
                            }
                        }
                    }
                }
            }
            let (addr, label) = match csv {
                Some((col, label_col)) => {
                    let fields: Vec<&str> = line
                        .split(',')
                        .map(|f| f.trim().trim_matches('"'))
                        .collect();
                    let Some(addr) = fields.get(col) else {
                        loaded.rejected.push(Error::Intel {
                            file: file.into(),
                            line: line_no,
                            message: format!("no column {} in `{line}`", col + 1),
                        });
                        continue;
                    };
                    let label = label_col
                        .and_then(|c| fields.get(c))
                        .filter(|l| !l.is_empty())
                        .map(|l| (*l).to_string());
                    (*addr, label)
                }
                None => {
                    let content = line.split('#').next().unwrap_or("").trim();
                    match content.split_once(';') {
                        Some((addr, id)) => {
                            let id = id.trim();
                            (addr.trim(), (!id.is_empty()).then(|| id.to_string()))
                        }
                        None => (content.split_whitespace().next().unwrap_or(""), None),
                    }
                }
            };
            match Cidr::parse(addr) {
                Ok(cidr) => {
                    self.insert(cidr, label.unwrap_or_else(|| default_label.to_string()));
                    loaded.entries += 1;
                }
                Err(message) => loaded.rejected.push(Error::Intel {
                    file: file.into(),
                    line: line_no,
                    message,
                }),
            }
        }
        loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_list_with_comments_and_a_bad_line() {
        let mut intel = ThreatIntel::new();
        let loaded = intel.read(
            "# tor exits\n185.220.101.0/24  # relay range\n\n203.0.113.9\nnot-an-ip\n2001:db8::/32\n",
            "bad.txt",
            "bad.txt",
        );
        assert_eq!(loaded.entries, 3);
        assert_eq!(loaded.rejected.len(), 1);
        assert!(
            loaded.rejected[0].to_string().starts_with("bad.txt:5: "),
            "{}",
            loaded.rejected[0]
        );
        assert_eq!(intel.lookup(ip("185.220.101.45")).unwrap().0, "bad.txt");
        assert!(intel.lookup(ip("185.220.102.45")).is_none());
        assert!(intel.lookup(ip("203.0.113.9")).is_some());
        assert!(intel.lookup(ip("203.0.113.10")).is_none());
        assert!(intel.lookup(ip("2001:db8::1")).is_some());
    }

    #[test]
    fn spamhaus_drop_and_csv() {
        let mut intel = ThreatIntel::new();
        let drop =
            "; Spamhaus DROP List 2026/11/01\n; Last-Modified: x\n1.10.16.0/20 ; SBL256894\n";
        assert_eq!(intel.read(drop, "drop.txt", "drop.txt").entries, 1);
        assert_eq!(intel.lookup(ip("1.10.31.255")).unwrap().0, "SBL256894");
        let csv = "first_seen,ip_address,description\n2026-01-01,192.0.2.99,\"c2 server\"\n2026-01-02,bogus,x\n";
        let loaded = intel.read(csv, "feed.csv", "feed.csv");
        assert_eq!((loaded.entries, loaded.rejected.len()), (1, 1));
        assert_eq!(intel.lookup(ip("192.0.2.99")).unwrap().0, "c2 server");
        // The most specific entry wins.
        intel.insert(Cidr::parse("1.10.16.5").unwrap(), "host");
        assert_eq!(intel.lookup(ip("1.10.16.5")).unwrap().0, "host");
        assert_eq!(intel.len(), 3);
        let bad = intel.read("when,what\n1,2\n", "nohdr.csv", "x");
        assert_eq!(bad.rejected.len(), 1);
    }

    #[test]
    fn v4_ranges_agree_with_lookups() {
        let mut intel = ThreatIntel::new();
        for cidr in [
            "10.0.0.0/8",
            "10.1.2.3", // inside the /8: merged
            "192.0.2.0/25",
            "192.0.2.128/25", // adjacent: one range
            "198.51.100.7",
            "2001:db8::/32", // IPv6: not a v4 range
        ] {
            intel.insert(Cidr::parse(cidr).unwrap(), "x");
        }
        let ranges = intel.v4_ranges();
        assert_eq!(
            ranges,
            vec![
                (0x0a00_0000, 0x0aff_ffff),
                (0xc000_0200, 0xc000_02ff),
                (0xc633_6407, 0xc633_6407)
            ]
        );
        let mut a = 0u32;
        for _ in 0..200_000 {
            a = a.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            for b in [
                a,
                a & 0xffff_ff00,
                0x0a00_0000 | (a >> 8),
                0xc000_0200 | (a & 0x1ff),
            ] {
                let via_lookup = intel
                    .lookup(IpAddr::from(std::net::Ipv4Addr::from(b)))
                    .is_some();
                assert_eq!(ThreatIntel::v4_listed(&ranges, b), via_lookup, "{b:#x}");
            }
        }
        let mut everything = ThreatIntel::new();
        everything.insert(Cidr::parse("0.0.0.0/0").unwrap(), "all");
        everything.insert(Cidr::parse("255.255.255.255").unwrap(), "last");
        assert_eq!(everything.v4_ranges(), vec![(0, u32::MAX)]);
    }
}
