//! Numbers for people, one convention everywhere flowscope shows them (tables, reports, the
//! dashboard): bytes in decimal SI units — 1 kB = 1,000 bytes, 1 MB = 10⁶, 1 GB = 10⁹ — and
//! counts with thousands separators. CSV, JSON and Parquet carry the raw values.

/// Bytes in decimal units: `999 B`, `1.5 kB`, `16.8 GB`.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if !b.is_finite() {
        return b.to_string();
    }
    let sign = if b < 0.0 { "-" } else { "" };
    let mut v = b.abs();
    let mut u = 0;
    while v >= 999.95 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        // Whole bytes as they are; a fraction (an average) to one decimal.
        if v.fract() == 0.0 {
            format!("{sign}{v} B")
        } else {
            format!("{sign}{v:.1} B")
        }
    } else {
        format!("{sign}{v:.1} {}", UNITS[u])
    }
}

/// An integer with thousands separators: `16,806,682,532`.
pub fn thousands(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A measure: thousands separators and two decimals (`13,067.98`); small values keep four
/// significant digits (`0.0001234`).
pub fn decimal(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v != 0.0 && v.abs() < 0.01 {
        return format!("{v:.3e}");
    }
    let rounded = format!("{:.2}", v.abs());
    let (whole, frac) = rounded.split_once('.').unwrap_or((&rounded, "00"));
    let whole: i128 = whole.parse().unwrap_or(0);
    let sign = if v < 0.0 { "-" } else { "" };
    format!("{sign}{}.{frac}", thousands(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_decimal_units() {
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(1_500.0), "1.5 kB");
        assert_eq!(bytes(16_806_682_532.0), "16.8 GB");
        assert_eq!(bytes(66_900_000_000.0), "66.9 GB");
        assert_eq!(bytes(999_960.0), "1.0 MB", "no `1000.0 kB`");
        assert_eq!(bytes(13_067.976_461_089_203), "13.1 kB");
        assert_eq!(bytes(12.5), "12.5 B");
        assert_eq!(bytes(-2_000.0), "-2.0 kB");
    }

    #[test]
    fn thousands_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(16_806_682_532), "16,806,682,532");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }

    #[test]
    fn decimals_rounded() {
        assert_eq!(decimal(13_067.976_461_089_203), "13,067.98");
        assert_eq!(decimal(0.5), "0.50");
        assert_eq!(decimal(-1234.5), "-1,234.50");
        assert_eq!(decimal(0.000_123_4), "1.234e-4");
        assert_eq!(decimal(0.0), "0.00");
    }
}
