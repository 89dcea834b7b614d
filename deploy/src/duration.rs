//! Durations as a user writes them (`24h`, `10m`, `1h30m`, `0s`) and as progress output
//! shows them, for `--governance-delay`.

use std::time::Duration;

/// Parses `<number><unit>` terms, units `d`, `h`, `m`, `s` (`90s`, `10m`, `24h`, `3d`,
/// `1h30m`); `0` and `0s` are a zero duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use a number with d, h, m or s (e.g. 24h, 10m, 1h30m, 0s)"
        )
    };
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut secs: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per = match rest[..unit_len].trim() {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => return Err(bad()),
        };
        secs = number
            .checked_mul(per)
            .and_then(|s| secs.checked_add(s))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs(secs))
}

/// `ns` in hours, minutes and seconds: `24h`, `1h30m`, `72h`, `0s` (a remainder below a
/// second is shown in ns).
pub fn format_duration_ns(ns: u64) -> String {
    const NS: u64 = 1_000_000_000;
    if !ns.is_multiple_of(NS) {
        return format!("{ns}ns");
    }
    let mut secs = ns / NS;
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, per) in [("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= per {
            out.push_str(&format!("{}{unit}", secs / per));
            secs %= per;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_help_promises() {
        let cases = [
            ("24h", 86_400),
            ("10m", 600),
            ("90s", 90),
            ("3d", 3 * 86_400),
            ("1h30m", 5_400),
            ("0s", 0),
            ("0", 0),
            (" 2h ", 7_200),
            ("1h 30m", 5_400),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in [
            "",
            "h",
            "10",
            "10x",
            "-1h",
            "1.5h",
            "1h30",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_units() {
        const S: u64 = 1_000_000_000;
        assert_eq!(format_duration_ns(0), "0s");
        assert_eq!(format_duration_ns(86_400 * S), "24h");
        assert_eq!(format_duration_ns(3 * 86_400 * S), "72h");
        assert_eq!(format_duration_ns(3_600 * S), "1h");
        assert_eq!(format_duration_ns(5_400 * S), "1h30m");
        assert_eq!(format_duration_ns(90 * S), "1m30s");
        assert_eq!(format_duration_ns(1_500), "1500ns");
    }
}
