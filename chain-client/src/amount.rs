//! Amounts for people: NEAR and fungible tokens written with their decimals and rounded, for
//! text output (`ecloud`), logs (the worker) and the deploy tool. Exact values belong in JSON
//! (integer strings of the smallest unit); this is never parsed back.
//!
//! The rules ([`format_amount`]):
//! * zero is `0 NEAR`;
//! * an amount of at least one whole unit keeps its integer part in full (no abbreviation, no
//!   thousands separators, so the text can be pasted back as an `ecloud` argument) and at most
//!   [`WHOLE_PLACES`] decimals: `1.5 NEAR`, `123456.789 NEAR`;
//! * an amount under one unit keeps [`SIGNIFICANT_DIGITS`] significant digits, at most
//!   [`MAX_PLACES`] decimals: `0.011 NEAR`, `0.000275 NEAR`;
//! * never more decimals than the token has; trailing zeros trimmed; rounded half up;
//! * a non-zero amount below the smallest shown decimal is `<0.000001 NEAR`, never `0`.

/// NEAR's decimals: 1 NEAR is 10^24 yoctoNEAR.
pub const NEAR_DECIMALS: u8 = 24;
/// Significant digits kept for amounts under one unit.
pub const SIGNIFICANT_DIGITS: usize = 3;
/// Decimals kept for amounts of at least one unit.
pub const WHOLE_PLACES: usize = 3;
/// The most decimals ever shown; anything smaller reads `<0.000001`.
pub const MAX_PLACES: usize = 6;

/// `yocto` yoctoNEAR for people: `0.011 NEAR`, `<0.000001 NEAR`.
pub fn format_near(yocto: u128) -> String {
    format_amount(yocto, NEAR_DECIMALS, "NEAR")
}

/// `units` of a token's smallest unit with `decimals`, rounded for people and followed by
/// `symbol` (nothing when `symbol` is empty). See the module's rules.
pub fn format_amount(units: u128, decimals: u8, symbol: &str) -> String {
    let number = format_number(units, decimals);
    if symbol.is_empty() {
        number
    } else {
        format!("{number} {symbol}")
    }
}

/// The number part of [`format_amount`].
pub fn format_number(units: u128, decimals: u8) -> String {
    let decimals = usize::from(decimals);
    // Digits padded so there is at least one before the point; string arithmetic, since
    // 10^decimals does not fit a u128 beyond 38 decimals.
    let digits = format!("{units:0>width$}", width = decimals + 1);
    let (whole, frac) = digits.split_at(digits.len() - decimals);
    let max_places = decimals.min(MAX_PLACES);
    let places = if whole != "0" {
        WHOLE_PLACES.min(max_places)
    } else {
        match frac.bytes().position(|b| b != b'0') {
            None => return "0".to_owned(),
            Some(first) if first >= max_places => {
                return format!("<0.{}1", "0".repeat(max_places - 1));
            }
            Some(first) => (first + SIGNIFICANT_DIGITS).min(max_places),
        }
    };
    let mut kept: Vec<u8> = whole.bytes().chain(frac.bytes().take(places)).collect();
    if frac.as_bytes().get(places).is_some_and(|&d| d >= b'5') {
        round_up(&mut kept);
    }
    let point = kept.len() - places;
    let (whole, frac) = kept.split_at(point);
    let whole = String::from_utf8_lossy(whole);
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let frac = String::from_utf8_lossy(frac);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{frac}")
    }
}

/// Adds one to the last digit of a decimal digit string, carrying (a leading `1` may appear).
fn round_up(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEAR: u128 = 10u128.pow(24);

    #[test]
    fn near_amounts_read_as_people_expect() {
        let cases = [
            (0, "0 NEAR"),
            (1, "<0.000001 NEAR"),
            (NEAR / 1_000_000 - 1, "<0.000001 NEAR"),
            (NEAR / 1_000_000, "0.000001 NEAR"),
            (275 * NEAR / 1_000_000 - 1, "0.000275 NEAR"),
            (11_000_000_000_000_000_000_000, "0.011 NEAR"),
            (NEAR / 2 * 3, "1.5 NEAR"),
            (123_456_789 * NEAR / 1000, "123456.789 NEAR"),
            (NEAR, "1 NEAR"),
            (NEAR - 1, "1 NEAR"),
            (1_234_567 * NEAR / 1_000_000_000, "0.00123 NEAR"),
            (999_999 * NEAR / 1_000_000, "1 NEAR"),
            (9_995 * NEAR / 10_000, "1 NEAR"),
            (9_994 * NEAR / 10_000, "0.999 NEAR"),
            (20_004 * NEAR / 10_000, "2 NEAR"),
            (100_000 * NEAR, "100000 NEAR"),
            (u128::MAX, "340282366920938.463 NEAR"),
        ];
        for (yocto, text) in cases {
            assert_eq!(format_near(yocto), text, "{yocto} yocto");
        }
    }

    #[test]
    fn tokens_use_their_decimals() {
        assert_eq!(format_amount(1, 6, "USDC"), "0.000001 USDC");
        assert_eq!(format_amount(1_500_000, 6, "USDC"), "1.5 USDC");
        assert_eq!(format_amount(1_234_567, 6, "USDC"), "1.235 USDC");
        assert_eq!(format_amount(275, 6, "USDC"), "0.000275 USDC");
        assert_eq!(format_amount(2_750, 6, "USDC"), "0.00275 USDC");
        assert_eq!(format_amount(0, 6, "USDC"), "0 USDC");
        assert_eq!(format_amount(1, 18, "TKN"), "<0.000001 TKN");
        assert_eq!(format_amount(11 * 10u128.pow(15), 18, "TKN"), "0.011 TKN");
        assert_eq!(format_amount(10u128.pow(18), 18, "TKN"), "1 TKN");
        assert_eq!(
            format_amount(u128::MAX, 18, "TKN"),
            "340282366920938463463.375 TKN"
        );
        assert_eq!(format_amount(42, 0, "PTS"), "42 PTS");
        assert_eq!(
            format_amount(u128::MAX, 0, "PTS"),
            "340282366920938463463374607431768211455 PTS"
        );
        assert_eq!(format_amount(15, 1, "X"), "1.5 X");
        assert_eq!(format_amount(1, 2, "X"), "0.01 X");
        assert_eq!(format_amount(u128::MAX, 255, "X"), "<0.000001 X");
        assert_eq!(format_amount(5, 0, ""), "5");
        assert_eq!(format_number(11_000_000_000_000_000_000_000, 24), "0.011");
    }

    #[test]
    fn never_zero_when_not_zero() {
        for decimals in [0u8, 1, 6, 18, 24, 40] {
            for units in [1u128, 4, 5, 9, 499_999, 500_000, 999_999, u128::MAX] {
                let text = format_number(units, decimals);
                assert_ne!(text, "0", "{units} at {decimals} decimals");
                assert!(
                    !text.contains('.') || !text.ends_with('0'),
                    "{text}: trailing zero"
                );
            }
        }
    }
}
