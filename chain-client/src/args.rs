//! Amounts and durations as people type them on a command line (`ecloud`, `worker`, the deploy
//! tool share these parsers): NEAR as a decimal (`1.5`, `0.001 NEAR`) or exact yoctoNEAR
//! (`25yocto`), token amounts in the token's smallest units; durations as `90s`, `10m`, `2h`,
//! `7d`.
//!
//! Output: [`Near`]'s `Display` and [`asset_amount`] write amounts for people, rounded by
//! [`crate::amount`] (`0.011 NEAR`, `0.000275 NEAR`, `1.5 USDC`); `--json` output keeps
//! the exact integer strings of the smallest unit.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use enclave_cloud_common::Asset;

/// yoctoNEAR in one NEAR.
pub const YOCTO_PER_NEAR: u128 = 1_000_000_000_000_000_000_000_000;
const NEAR_DECIMALS: usize = 24;

/// An amount of NEAR, exact to the yoctoNEAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Near(pub u128);

/// Why an amount or duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error(
        "'{0}' is not a NEAR amount: use a decimal number of NEAR (e.g. 0.5 or '0.5 NEAR') or whole yoctoNEAR (e.g. 1000yocto)"
    )]
    BadNear(String),
    #[error("'{0}' has more than 24 decimals (yoctoNEAR is the smallest unit)")]
    TooPrecise(String),
    #[error("'{0}' is too large")]
    Overflow(String),
    #[error("'{0}' is not a token amount: use a whole number of the token's smallest units")]
    BadUnits(String),
    #[error(
        "'{0}' is not a duration: use numbers with d, h, m or s (e.g. 90s, 10m, 2h, 7d, 1h30m)"
    )]
    BadDuration(String),
}

impl Near {
    pub fn yocto(self) -> u128 {
        self.0
    }

    /// `1.5 NEAR`, `0 NEAR`, `0.000000000000000000000001 NEAR`: exact, trailing zeros dropped
    /// (parses back to the same amount).
    pub fn exact(self) -> String {
        let whole = self.0 / YOCTO_PER_NEAR;
        let frac = self.0 % YOCTO_PER_NEAR;
        if frac == 0 {
            format!("{whole} NEAR")
        } else {
            let frac = format!("{frac:0>NEAR_DECIMALS$}");
            format!("{whole}.{} NEAR", frac.trim_end_matches('0'))
        }
    }
}

/// How a NEP-141 token's amounts are written: its `ft_metadata` symbol and decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    pub symbol: String,
    pub decimals: u8,
}

/// `near`, or `ft:<token>` (the names the job records use).
pub fn asset_name(asset: &Asset) -> String {
    match asset {
        Asset::Near => "near".to_owned(),
        Asset::Ft { token } => format!("ft:{token}"),
    }
}

/// `units` of `asset` for people: NEAR with its 24 decimals, a token with its metadata's
/// decimals and symbol. A token whose metadata could not be read shows its smallest units and
/// its account (`12 units of usdc.test.near`): exact, since nothing says how to round it.
pub fn asset_amount(asset: &Asset, units: u128, token: Option<&TokenFormat>) -> String {
    match (asset, token) {
        (Asset::Near, _) => crate::format_near(units),
        (Asset::Ft { .. }, Some(t)) => crate::format_amount(units, t.decimals, &t.symbol),
        (Asset::Ft { token }, None) => format!("{units} units of {token}"),
    }
}

impl FromStr for Near {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(yocto) = t
            .strip_suffix("yocto")
            .or_else(|| t.strip_suffix("yoctoNEAR"))
        {
            let yocto = yocto.trim();
            if yocto.is_empty() || !yocto.bytes().all(|b| b.is_ascii_digit()) {
                return Err(AmountError::BadNear(s.to_owned()));
            }
            return yocto
                .parse::<u128>()
                .map(Near)
                .map_err(|_| AmountError::Overflow(s.to_owned()));
        }
        let number = t
            .strip_suffix("NEAR")
            .or_else(|| t.strip_suffix("near"))
            .unwrap_or(t)
            .trim();
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
            return Err(AmountError::BadNear(s.to_owned()));
        }
        if frac.len() > NEAR_DECIMALS {
            return Err(AmountError::TooPrecise(s.to_owned()));
        }
        let overflow = || AmountError::Overflow(s.to_owned());
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let frac_yocto: u128 = if frac.is_empty() {
            0
        } else {
            let padded = format!("{frac:0<NEAR_DECIMALS$}");
            padded.parse().map_err(|_| overflow())?
        };
        whole
            .checked_mul(YOCTO_PER_NEAR)
            .and_then(|w| w.checked_add(frac_yocto))
            .map(Near)
            .ok_or_else(overflow)
    }
}

impl fmt::Display for Near {
    /// For people: `1.5 NEAR`, `0.000275 NEAR`, `<0.000001 NEAR` ([`crate::format_near`]);
    /// [`Near::exact`] for the exact value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::format_near(self.0))
    }
}

/// A token amount in the token's smallest units.
pub fn parse_units(s: &str) -> Result<u128, AmountError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AmountError::BadUnits(s.to_owned()));
    }
    t.parse().map_err(|_| AmountError::Overflow(s.to_owned()))
}

/// A positive duration: [`parse_duration_or_zero`] refusing zero (intervals, deadlines and
/// windows where zero means nothing sensible).
pub fn parse_duration(s: &str) -> Result<Duration, AmountError> {
    parse_duration_or_zero(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| AmountError::BadDuration(s.to_owned()))
}

/// `<number><unit>` terms with units `d`, `h`, `m`, `s`, added up (`90s`, `10m`, `24h`, `7d`,
/// `1h30m`, `1h 30m`); a number alone is seconds (`45`, `0`).
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, AmountError> {
    let bad = || AmountError::BadDuration(s.to_owned());
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_secs).map_err(|_| bad());
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
            .and_then(|n| secs.checked_add(n))
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs(secs))
}

/// `ns` in hours, minutes and seconds: `24h`, `1h30m`, `72h`, `0s` (a remainder below a
/// second is shown in ns). Parses back with [`parse_duration_or_zero`].
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
    fn near_amounts_parse_exactly() {
        let cases = [
            ("1", YOCTO_PER_NEAR),
            ("1.5", YOCTO_PER_NEAR / 2 * 3),
            ("0.001 NEAR", YOCTO_PER_NEAR / 1000),
            (".25", YOCTO_PER_NEAR / 4),
            ("2.", 2 * YOCTO_PER_NEAR),
            ("0.000000000000000000000001", 1),
            ("25yocto", 25),
            ("7 yoctoNEAR", 7),
        ];
        for (text, yocto) in cases {
            assert_eq!(text.parse::<Near>(), Ok(Near(yocto)), "{text}");
        }
    }

    #[test]
    fn bad_near_amounts_are_named() {
        for text in [
            "", ".", "abc", "-1", "1,5", "1e3", "1.2.3", "yocto", "1.5yocto",
        ] {
            let err = text.parse::<Near>().unwrap_err();
            assert!(matches!(err, AmountError::BadNear(_)), "{text}: {err:?}");
        }
        assert!(matches!(
            "0.0000000000000000000000001".parse::<Near>(),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            "999999999999999999999".parse::<Near>(),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn near_exact_text_parses_back() {
        assert_eq!(Near(0).exact(), "0 NEAR");
        assert_eq!(Near(YOCTO_PER_NEAR / 2 * 3).exact(), "1.5 NEAR");
        assert_eq!(Near(1).exact(), "0.000000000000000000000001 NEAR");
        for text in ["3", "0.125", "12.000000000000000000000007"] {
            let n: Near = text.parse().unwrap();
            assert_eq!(n.exact().parse::<Near>().unwrap(), n);
        }
    }

    #[test]
    fn near_displays_for_people() {
        assert_eq!(Near(0).to_string(), "0 NEAR");
        assert_eq!(Near(1).to_string(), "<0.000001 NEAR");
        assert_eq!(
            Near(274_999_999_999_999_999_999).to_string(),
            "0.000275 NEAR"
        );
        assert_eq!(
            Near(11_000_000_000_000_000_000_000).to_string(),
            "0.011 NEAR"
        );
        assert_eq!(Near(YOCTO_PER_NEAR / 2 * 3).to_string(), "1.5 NEAR");
    }

    #[test]
    fn asset_amounts_use_the_token_metadata() {
        let usdc = TokenFormat {
            symbol: "USDC".into(),
            decimals: 6,
        };
        let ft = Asset::Ft {
            token: "usdc.test.near".parse().unwrap(),
        };
        assert_eq!(asset_amount(&ft, 1_500_000, Some(&usdc)), "1.5 USDC");
        assert_eq!(asset_amount(&ft, 12, None), "12 units of usdc.test.near");
        assert_eq!(
            asset_amount(&Asset::Near, YOCTO_PER_NEAR / 1000 * 11, Some(&usdc)),
            "0.011 NEAR"
        );
    }

    #[test]
    fn units_and_durations() {
        assert_eq!(parse_units("1000000"), Ok(1_000_000));
        assert!(parse_units("1.5").is_err());
        assert!(parse_units("").is_err());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "0m", "0", "h", "5w", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_add_up_their_terms_and_may_be_zero() {
        let cases = [
            ("24h", 86_400),
            ("90s", 90),
            ("3d", 3 * 86_400),
            ("1h30m", 5_400),
            ("1h 30m", 5_400),
            (" 2h ", 7_200),
            ("0s", 0),
            ("0", 0),
            ("10", 10),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration_or_zero(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in [
            "",
            "h",
            "10x",
            "-1h",
            "1.5h",
            "1h30",
            "99999999999999999999d",
        ] {
            let err = parse_duration_or_zero(bad).expect_err(bad).to_string();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_in_the_largest_exact_units() {
        const S: u64 = 1_000_000_000;
        assert_eq!(format_duration_ns(0), "0s");
        assert_eq!(format_duration_ns(86_400 * S), "24h");
        assert_eq!(format_duration_ns(3 * 86_400 * S), "72h");
        assert_eq!(format_duration_ns(5_400 * S), "1h30m");
        assert_eq!(format_duration_ns(90 * S), "1m30s");
        assert_eq!(format_duration_ns(1_500), "1500ns");
        for ns in [0, 86_400 * S, 5_400 * S, 90 * S] {
            let text = format_duration_ns(ns);
            assert_eq!(
                parse_duration_or_zero(&text).map(|d| d.as_nanos()),
                Ok(u128::from(ns)),
                "{text}"
            );
        }
    }
}
