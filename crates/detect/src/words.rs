//! Figures in words, for summaries: bytes, durations, the service on a port.

/// The ports that should not be reachable from the internet, with their usual services: the
/// default of the exposed-port detection's `sensitive_ports`, and the names its summaries use.
pub const SENSITIVE_PORTS: [(u16, &str); 14] = [
    (22, "SSH"),
    (23, "Telnet"),
    (445, "SMB"),
    (1433, "SQL Server"),
    (1521, "Oracle"),
    (2375, "Docker API"),
    (3306, "MySQL"),
    (3389, "RDP"),
    (5432, "PostgreSQL"),
    (5900, "VNC"),
    (6379, "Redis"),
    (9200, "Elasticsearch"),
    (11211, "Memcached"),
    (27017, "MongoDB"),
];

/// The usual service on a port, for summaries (`service` for a port not listed).
pub fn service_name(port: u16) -> &'static str {
    SENSITIVE_PORTS
        .iter()
        .find(|(p, _)| *p == port)
        .map_or("service", |(_, name)| name)
}

/// Bytes for people, in decimal units as everywhere in flowscope: `432.0 MB`.
pub fn human_bytes(b: u64) -> String {
    flowscope_query::units::bytes(b as f64)
}

/// Seconds for people: `12 min`, `45 s`, `2.5 h`.
pub fn human_duration(s: i64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7_200 {
        format!("{} min", (s + 30) / 60)
    } else {
        format!("{:.1} h", s as f64 / 3_600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_services() {
        assert_eq!(human_bytes(432_000_000), "432.0 MB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(720), "12 min");
        assert_eq!(human_duration(9_000), "2.5 h");
        assert_eq!(service_name(3389), "RDP");
        assert_eq!(service_name(8080), "service");
        // The documented default of `sensitive_ports`, in order.
        assert_eq!(
            crate::Thresholds::default().sensitive_ports,
            [
                22, 23, 445, 1433, 1521, 2375, 3306, 3389, 5432, 5900, 6379, 9200, 11211, 27017
            ]
        );
    }
}
