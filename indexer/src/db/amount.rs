//! u128 token amounts as sortable text: 40 decimal digits, zero padded (u128::MAX has 39).

use super::BadValue;

/// Width of a stored amount.
const WIDTH: usize = 40;

/// The stored price of a node without prices: sorts after every real amount.
pub const UNPRICED: &str = "9999999999999999999999999999999999999999";

/// The stored form of an amount.
pub fn pad(v: u128) -> String {
    format!("{v:0WIDTH$}")
}

/// The amount a stored text of `field` holds. Stored values are written by [`pad`]; a text
/// that is not decimal digits (empty, signed, garbage) or exceeds u128 is an error, never 0.
pub fn parse(field: &'static str, s: &str) -> Result<u128, BadValue> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadValue::new(field, s, "is not a decimal amount"));
    }
    s.parse()
        .map_err(|_| BadValue::new(field, s, "exceeds the largest amount (u128)"))
}

/// The API form of a stored amount: plain decimal, as NEAR's `U128` JSON.
pub fn display(field: &'static str, s: &str) -> Result<String, BadValue> {
    Ok(parse(field, s)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_sorts_numerically() {
        let mut v = vec![pad(10), pad(9), pad(u128::MAX), pad(0)];
        v.sort();
        assert_eq!(v, [pad(0), pad(9), pad(10), pad(u128::MAX)]);
        assert_eq!(pad(u128::MAX).len(), 40);
        assert_eq!(parse("v", &pad(12345)), Ok(12345));
        assert_eq!(parse("v", &pad(u128::MAX)), Ok(u128::MAX));
        assert_eq!(display("v", &pad(7)).as_deref(), Ok("7"));
    }

    #[test]
    fn anything_but_decimal_digits_is_an_error_not_zero() {
        for garbage in [
            "garbage", "", "12abc", "+5", "-5", " 5", "5 ", "1e3", "0x10", UNPRICED,
        ] {
            let err = parse("balance", garbage).unwrap_err();
            assert_eq!(err.field, "balance", "{garbage:?}");
            assert_eq!(err.value, garbage);
        }
        assert!(display("cost", "12abc").is_err());
    }
}
