//! 256-bit fixed-point numbers with 128 fractional bits: the unit of the reward accumulator.
//!
//! Amounts (yoctoNEAR, token base units) are `u128`; "magnified" values are amounts shifted left
//! by [`FRAC_BITS`]. Reward-per-token and the per-holder corrections live in the ring of integers
//! modulo 2^256 (two's complement, like the `int256` of the ERC-2222 dividend pattern): a sum
//! `balance * reward_per_token + correction` may pass through values above 2^256 on the way, but
//! the final entitlement is a true non-negative number below `deposited << 128 < 2^256`, so
//! computing it modulo 2^256 gives it exactly. Only these ring operations wrap; every amount
//! that leaves the ring (deposits, claims) uses checked arithmetic.

use near_sdk::borsh::{BorshDeserialize, BorshSerialize};
use std::io;

#[allow(clippy::all)]
mod u256 {
    uint::construct_uint! {
        /// Unsigned 256-bit integer.
        pub struct U256(4);
    }
}
pub use u256::U256;

/// Fractional bits of a magnified value: one base unit is `1 << FRAC_BITS`.
pub const FRAC_BITS: usize = 128;

/// A magnified value modulo 2^256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mag(pub U256);

impl Mag {
    pub const ZERO: Self = Self(U256([0; 4]));

    /// `amount << 128`, exact (fits: amount < 2^128).
    pub fn from_amount(amount: u128) -> Self {
        Self(U256::from(amount) << FRAC_BITS)
    }

    /// Whole base units, rounded down (the fractional part stays behind).
    pub fn whole(self) -> u128 {
        (self.0 >> FRAC_BITS).low_u128()
    }

    pub fn wrapping_add(self, other: Self) -> Self {
        Self(self.0.overflowing_add(other.0).0)
    }

    pub fn wrapping_sub(self, other: Self) -> Self {
        Self(self.0.overflowing_sub(other.0).0)
    }

    /// `amount * self` modulo 2^256.
    pub fn wrapping_mul_amount(self, amount: u128) -> Self {
        Self(self.0.overflowing_mul(U256::from(amount)).0)
    }
}

/// Its layout for the state-schema test: the four little-endian words it is stored as.
#[cfg(any(test, feature = "state-schema"))]
impl near_sdk::borsh::BorshSchema for Mag {
    fn add_definitions_recursively(
        definitions: &mut std::collections::BTreeMap<
            near_sdk::borsh::schema::Declaration,
            near_sdk::borsh::schema::Definition,
        >,
    ) {
        <[u64; 4] as near_sdk::borsh::BorshSchema>::add_definitions_recursively(definitions);
    }

    fn declaration() -> near_sdk::borsh::schema::Declaration {
        <[u64; 4] as near_sdk::borsh::BorshSchema>::declaration()
    }
}

impl BorshSerialize for Mag {
    fn serialize<W: io::Write>(&self, writer: &mut W) -> io::Result<()> {
        BorshSerialize::serialize(&self.0.0, writer)
    }
}

impl BorshDeserialize for Mag {
    fn deserialize_reader<R: io::Read>(reader: &mut R) -> io::Result<Self> {
        <[u64; 4] as BorshDeserialize>::deserialize_reader(reader).map(|limbs| Self(U256(limbs)))
    }
}

/// `a * b / c` rounded down, `None` if `c` is zero or the result exceeds `u128`.
/// The product of two `u128` always fits in 256 bits.
pub fn mul_div_floor(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let q = U256::from(a) * U256::from(b) / U256::from(c);
    u128::try_from(q).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::borsh;

    #[test]
    fn whole_and_fraction() {
        let half = Mag(U256::one() << (FRAC_BITS - 1));
        let x = Mag::from_amount(7).wrapping_add(half);
        assert_eq!(x.whole(), 7);
        assert_eq!(Mag::from_amount(u128::MAX).whole(), u128::MAX);
    }

    #[test]
    fn ring_arithmetic_recovers_the_true_sum() {
        // balance * rpt overflows 2^256, the correction brings it back: the sum is exact.
        let rpt = Mag(U256::MAX / 3);
        let big = rpt.wrapping_mul_amount(1_000_000);
        let correction = Mag::ZERO.wrapping_sub(big);
        let entitlement = big
            .wrapping_add(correction)
            .wrapping_add(Mag::from_amount(5));
        assert_eq!(entitlement.whole(), 5);
    }

    #[test]
    fn borsh_round_trip() {
        let x = Mag(U256([1, 2, 3, u64::MAX]));
        let bytes = borsh::to_vec(&x).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(borsh::from_slice::<Mag>(&bytes).unwrap(), x);
    }

    #[test]
    fn mul_div() {
        assert_eq!(mul_div_floor(u128::MAX, 10, 20), Some(u128::MAX / 2));
        assert_eq!(mul_div_floor(7, 3, 2), Some(10));
        assert_eq!(mul_div_floor(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_floor(1, 1, 0), None);
    }
}
