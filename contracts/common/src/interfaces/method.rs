//! A contract method as its clients call it: the name, the gas to attach and what deposit it
//! takes, written once next to the contract's interface types (see [`super::marketplace`] and
//! [`super::registry`]). Typed clients (`chain_client::contracts`), deploy and the sandbox
//! tests read these instead of restating names and figures.

use near_sdk::{Gas, NearToken};

/// What a call must attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deposit {
    /// Nothing: the method refuses (or would strand) an attached deposit.
    None,
    /// Exactly one yoctoNEAR: the confirmation of a full-access key.
    OneYocto,
    /// An amount the caller computes (price cap plus storage, stake, ...).
    Payable,
}

/// A change method: its name, the gas a client attaches and its deposit rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub name: &'static str,
    pub gas: Gas,
    pub deposit: Deposit,
}

impl Method {
    /// A method that takes no deposit.
    pub const fn call(name: &'static str, tgas: u64) -> Self {
        Self {
            name,
            gas: Gas::from_tgas(tgas),
            deposit: Deposit::None,
        }
    }

    /// A method confirmed with one yoctoNEAR.
    pub const fn one_yocto(name: &'static str, tgas: u64) -> Self {
        Self {
            name,
            gas: Gas::from_tgas(tgas),
            deposit: Deposit::OneYocto,
        }
    }

    /// A method paid with an amount the caller computes.
    pub const fn payable(name: &'static str, tgas: u64) -> Self {
        Self {
            name,
            gas: Gas::from_tgas(tgas),
            deposit: Deposit::Payable,
        }
    }

    /// The deposit when the method fixes it (`None` for a payable method).
    pub const fn fixed_deposit(&self) -> Option<NearToken> {
        match self.deposit {
            Deposit::None => Some(NearToken::from_yoctonear(0)),
            Deposit::OneYocto => Some(NearToken::from_yoctonear(1)),
            Deposit::Payable => None,
        }
    }
}

/// The arguments of a method that takes none: `{}`.
#[near_sdk::near(serializers = [json])]
#[derive(Debug, Clone, Copy, Default)]
pub struct NoArgs {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_deposits_follow_the_rule() {
        assert_eq!(
            Method::one_yocto("m", 5).fixed_deposit(),
            Some(NearToken::from_yoctonear(1))
        );
        assert_eq!(
            Method::call("m", 5).fixed_deposit(),
            Some(NearToken::from_yoctonear(0))
        );
        assert_eq!(Method::payable("m", 5).fixed_deposit(), None);
        assert_eq!(Method::call("m", 5).gas, Gas::from_tgas(5));
    }
}
