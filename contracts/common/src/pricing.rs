//! Price arithmetic shared by the marketplace (job settlement, channel openings) and its
//! clients (the worker bills channel requests with it, `ecloud proxy` checks the bill), so
//! both sides of a payment channel compute the same cost to the unit.

use crate::Usage;
use crate::interfaces::marketplace::{NodePrice, TokenRate};

/// Prices are per one million tokens.
pub const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;
pub const YOCTO_PER_NEAR: u128 = 1_000_000_000_000_000_000_000_000;

// The macro's expansion is not ours to lint.
#[allow(clippy::all)]
mod wide {
    uint::construct_uint! {
        /// Wide enough for the product of two u128 amounts.
        pub struct U256(4);
    }
}
use wide::U256;

/// `a * b / d` rounded down, or `None` if the result does not fit in u128. The product is
/// taken in 256 bits: `(a % d) * b` alone overflows u128 for ordinary amounts (a 0.005 NEAR
/// job in an 18-decimals token is 5e21 * 1e18).
pub fn mul_div(a: u128, b: u128, d: u128) -> Option<u128> {
    if d == 0 {
        return None;
    }
    let result = U256::from(a) * U256::from(b) / U256::from(d);
    (result <= U256::from(u128::MAX)).then(|| result.as_u128())
}

/// Cost of `usage` at `price` in yoctoNEAR, rounded down; `None` when it exceeds u128 (any
/// cap is then the cost).
pub fn usage_cost_yocto(usage: &Usage, price: &NodePrice) -> Option<u128> {
    let input = mul_div(
        u128::from(usage.input_tokens.0),
        price.input_per_million.0,
        TOKENS_PER_PRICE_UNIT,
    )?;
    let output = mul_div(
        u128::from(usage.output_tokens.0),
        price.output_per_million.0,
        TOKENS_PER_PRICE_UNIT,
    )?;
    // Sum before dividing would round less, but each part is exact to one unit already and
    // the split stays conservative for the user.
    input.checked_add(output)
}

/// A yoctoNEAR amount in the job's asset: NEAR as is, a token through its rate.
pub fn to_asset_units(yocto: Option<u128>, rate: Option<&TokenRate>) -> Option<u128> {
    let yocto = yocto?;
    match rate {
        None => Some(yocto),
        Some(rate) => mul_div(yocto, rate.units_per_near.0, YOCTO_PER_NEAR),
    }
}
