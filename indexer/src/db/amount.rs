//! u128 token amounts as sortable text: 40 decimal digits, zero padded (u128::MAX has 39).

/// Width of a stored amount.
const WIDTH: usize = 40;

/// The stored price of a node without prices: sorts after every real amount.
pub const UNPRICED: &str = "9999999999999999999999999999999999999999";

/// The stored form of an amount.
pub fn pad(v: u128) -> String {
    format!("{v:0WIDTH$}")
}

/// The amount a stored text holds. Stored values are written by [`pad`]; anything else is
/// treated as zero and logged, rather than failing a read.
pub fn parse(s: &str) -> u128 {
    s.parse().unwrap_or_else(|_| {
        tracing::warn!(
            value = s,
            "stored amount is not a decimal number; reading it as 0"
        );
        0
    })
}

/// The API form of a stored amount: plain decimal, as NEAR's `U128` JSON.
pub fn display(s: &str) -> String {
    parse(s).to_string()
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
        assert_eq!(parse(&pad(12345)), 12345);
        assert_eq!(display(&pad(7)), "7");
        assert_eq!(parse("garbage"), 0);
    }
}
