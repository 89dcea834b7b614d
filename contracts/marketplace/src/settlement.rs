//! Settlement arithmetic, pure and checked: no amount can wrap, and the parts of a split
//! always add up to the escrow.

use enclave_cloud_common::events::marketplace::Settlement;
use near_sdk::json_types::U128;

use crate::errors::{MarketplaceError, Result};

pub const BPS_DENOMINATOR: u16 = 10_000;
pub use enclave_cloud_common::pricing::{
    YOCTO_PER_NEAR, mul_div, to_asset_units, usage_cost_yocto,
};

/// `amount * bps / 10_000`, rounded down, without an intermediate overflow.
pub fn mul_bps(amount: u128, bps: u16) -> u128 {
    let bps = u128::from(bps.min(BPS_DENOMINATOR));
    let denominator = u128::from(BPS_DENOMINATOR);
    // (q*d + r) * bps / d == q*bps + r*bps/d; q*bps <= amount and r*bps < d^2: neither wraps.
    (amount / denominator) * bps + (amount % denominator) * bps / denominator
}

/// Splits `min(cap, cost)` into fee, royalty and provider share; the rest of the escrow is
/// refunded. `cost == None` means "more than any amount": the cap is charged.
pub fn split(
    escrow: u128,
    cost: Option<u128>,
    fee_bps: u16,
    royalty_bps: u16,
) -> Result<Settlement> {
    if u32::from(fee_bps) + u32::from(royalty_bps) > u32::from(BPS_DENOMINATOR) {
        return Err(MarketplaceError::Overflow("fee + royalty above 100%"));
    }
    let cost = cost.map_or(escrow, |c| c.min(escrow));
    let protocol_fee = mul_bps(cost, fee_bps);
    let royalty = mul_bps(cost, royalty_bps);
    let provider = cost
        .checked_sub(protocol_fee)
        .and_then(|v| v.checked_sub(royalty))
        .ok_or(MarketplaceError::Overflow("provider share"))?;
    let refund = escrow
        .checked_sub(cost)
        .ok_or(MarketplaceError::Overflow("refund"))?;
    Ok(Settlement {
        cost: U128(cost),
        provider: U128(provider),
        royalty: U128(royalty),
        protocol_fee: U128(protocol_fee),
        refund: U128(refund),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NodePrice, TokenRate};
    use enclave_cloud_common::Usage;
    use near_sdk::json_types::U64;

    fn usage(i: u64, o: u64) -> Usage {
        Usage {
            input_tokens: U64(i),
            output_tokens: U64(o),
        }
    }

    fn price(i: u128, o: u128) -> NodePrice {
        NodePrice {
            input_per_million: U128(i),
            output_per_million: U128(o),
        }
    }

    fn total(s: &Settlement) -> u128 {
        s.provider.0 + s.royalty.0 + s.protocol_fee.0 + s.refund.0
    }

    #[test]
    fn zero_usage_costs_nothing_and_refunds_everything() {
        let cost = usage_cost_yocto(&usage(0, 0), &price(10, 20));
        assert_eq!(cost, Some(0));
        let s = split(1_000, cost, 200, 500).unwrap();
        assert_eq!(
            s,
            Settlement {
                refund: U128(1_000),
                ..Default::default()
            }
        );
    }

    #[test]
    fn usage_over_cap_charges_the_cap() {
        let cost = usage_cost_yocto(&usage(1_000_000, 1_000_000), &price(700, 900));
        assert_eq!(cost, Some(1_600));
        let s = split(1_000, cost, 200, 500).unwrap();
        assert_eq!(s.cost.0, 1_000);
        assert_eq!(s.refund.0, 0);
        assert_eq!((s.protocol_fee.0, s.royalty.0, s.provider.0), (20, 50, 930));
    }

    #[test]
    fn rounding_goes_to_the_user_and_parts_add_up() {
        // 1 output token at 999_999 per million is 0.999999: rounds down to 0.
        assert_eq!(usage_cost_yocto(&usage(0, 1), &price(0, 999_999)), Some(0));
        assert_eq!(
            usage_cost_yocto(&usage(3, 3), &price(500_000, 500_000)),
            Some(2)
        );
        // fee 2% of 99 = 1.98 -> 1; royalty 5% of 99 = 4.95 -> 4; provider takes the rest.
        let s = split(150, Some(99), 200, 500).unwrap();
        assert_eq!(
            (s.protocol_fee.0, s.royalty.0, s.provider.0, s.refund.0),
            (1, 4, 94, 51)
        );
        for (escrow, cost) in [(1, 1), (7, 3), (10_001, 9_999), (u128::MAX, 12_345)] {
            let s = split(escrow, Some(cost), 333, 777).unwrap();
            assert_eq!(total(&s), escrow);
        }
    }

    #[test]
    fn max_values_do_not_wrap() {
        let huge = usage_cost_yocto(&usage(u64::MAX, u64::MAX), &price(u128::MAX, u128::MAX));
        assert_eq!(huge, None, "overflow is reported, not wrapped");
        let s = split(u128::MAX, huge, 200, 500).unwrap();
        assert_eq!(s.cost.0, u128::MAX);
        assert_eq!(total(&s), u128::MAX);
        assert_eq!(mul_bps(u128::MAX, 10_000), u128::MAX);
        assert_eq!(mul_bps(u128::MAX, 5_000), u128::MAX / 2);
        // The largest usage at a price that still fits.
        let fits = usage_cost_yocto(&usage(u64::MAX, 0), &price(1_000_000, 0));
        assert_eq!(fits, Some(u128::from(u64::MAX)));
    }

    #[test]
    fn fee_and_royalty_above_100_percent_are_refused() {
        assert!(split(100, Some(10), 6_000, 5_000).is_err());
        let s = split(100, Some(100), 5_000, 5_000).unwrap();
        assert_eq!((s.provider.0, s.protocol_fee.0, s.royalty.0), (0, 50, 50));
    }

    #[test]
    fn token_conversion_uses_the_rate() {
        // 1 NEAR = 3_000_000 units (a 6-decimals token at 3 per NEAR).
        let rate = TokenRate {
            units_per_near: U128(3_000_000),
        };
        assert_eq!(
            to_asset_units(Some(YOCTO_PER_NEAR / 2), Some(&rate)),
            Some(1_500_000)
        );
        assert_eq!(to_asset_units(Some(1), Some(&rate)), Some(0));
        assert_eq!(to_asset_units(Some(42), None), Some(42));
        let steep = TokenRate {
            units_per_near: U128(u128::MAX),
        };
        assert_eq!(to_asset_units(Some(u128::MAX), Some(&steep)), None);
        assert_eq!(to_asset_units(None, Some(&rate)), None);
        assert_eq!(mul_div(1, 1, 0), None);
    }

    #[test]
    fn an_18_decimals_token_converts_without_overflowing() {
        // Found on localnet: 0.005 NEAR at one token (10^18 units) per NEAR was charged the
        // whole cap, because (a % d) * b overflowed u128 and counted as "more than any cap".
        let rate = TokenRate {
            units_per_near: U128(10u128.pow(18)),
        };
        let yocto = 5 * 10u128.pow(21);
        assert_eq!(
            to_asset_units(Some(yocto), Some(&rate)),
            Some(5 * 10u128.pow(15))
        );
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div(u128::MAX, 3, 2), None);
        assert_eq!(mul_div(u128::MAX - 1, 7, 7), Some(u128::MAX - 1));
        let s = split(
            10u128.pow(16),
            to_asset_units(Some(yocto), Some(&rate)),
            200,
            500,
        )
        .unwrap();
        assert_eq!(s.cost.0, 5 * 10u128.pow(15));
        assert_eq!(s.refund.0, 5 * 10u128.pow(15));
    }
}
