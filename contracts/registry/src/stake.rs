//! Operator stake: deposit, unbonding, withdrawal and slashing.

use enclave_cloud_common::NodeId;
use enclave_cloud_common::OrPanic;
use enclave_cloud_common::events::{Nep297, RegistryEvent};
use near_sdk::json_types::U64;
use near_sdk::{AccountId, Gas, NearToken, Promise, env, near};

use crate::StakeApi;
use crate::access::{assert_one_yocto, require_marketplace};
use crate::errors::{RegistryError, Result};
use crate::events::{emit_status_changes, statuses};
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{Operator, Registry};
use crate::storage_keys::StorageKey;

/// Gas for the callbacks that settle a transfer (they only touch one record).
pub const CALLBACK_GAS: Gas = Gas::from_tgas(5);

impl Registry {
    pub(crate) fn try_deposit_stake(&mut self) -> Result<NearToken> {
        let state = self;
        let operator = env::predecessor_account_id();
        let amount = env::attached_deposit();
        if amount.is_zero() {
            return Err(RegistryError::ZeroStake);
        }
        let usage_before = state.storage_mark();
        let nodes = state
            .operators
            .get(&operator)
            .map(|op| op.nodes.clone())
            .unwrap_or_default();
        let before = statuses(state, &nodes);
        let op = state.operators.entry(operator.clone()).or_default();
        op.stake = op.stake.saturating_add(amount);
        let total = op.stake;
        // A new operator's record is paid from its first deposit.
        state.settle_storage(&operator, usage_before)?;
        RegistryEvent::StakeDeposited {
            operator,
            amount,
            total,
        }
        .emit();
        // Topping up after a slash can make the operator's nodes active again.
        emit_status_changes(state, &before);
        Ok(total)
    }
}

impl Registry {
    pub(crate) fn try_request_unstake(&mut self, amount: NearToken) -> Result<U64> {
        let state = self;
        assert_one_yocto()?;
        let operator = env::predecessor_account_id();
        let delay = state.policy.unbonding_delay_ns.0;
        let required =
            Operator::required_stake(&state.policy, state.operator(&operator)?.nodes.len());
        let op = state.operator_mut(&operator)?;
        if amount.is_zero() {
            return Err(RegistryError::invalid("amount", "must be positive"));
        }
        if op.withdrawing {
            return Err(RegistryError::WithdrawalInFlight(operator));
        }
        let max = op.free_stake().saturating_sub(required);
        if amount > max {
            return Err(RegistryError::UnstakeTooLarge {
                operator,
                requested: amount,
                max,
                nodes: op.nodes.len() as u32,
            });
        }
        op.stake = op.stake.saturating_sub(amount);
        op.unbonding = op.unbonding.saturating_add(amount);
        // A new request restarts the clock for everything still unbonding.
        op.unlocks_at_ns = env::block_timestamp().saturating_add(delay);
        let unlocks_at_ns = U64(op.unlocks_at_ns);
        RegistryEvent::UnstakeRequested {
            operator,
            amount,
            unlocks_at_ns,
        }
        .emit();
        Ok(unlocks_at_ns)
    }
}

impl Registry {
    pub(crate) fn try_withdraw(&mut self) -> Result<Promise> {
        let state = self;
        assert_one_yocto()?;
        let operator = env::predecessor_account_id();
        let now = env::block_timestamp();
        let op = state.operator_mut(&operator)?;
        if op.withdrawing {
            return Err(RegistryError::WithdrawalInFlight(operator));
        }
        if op.unbonding.is_zero() {
            return Err(RegistryError::NothingToWithdraw(operator));
        }
        if now < op.unlocks_at_ns {
            return Err(RegistryError::StillUnbonding {
                operator,
                unlocks_at_ns: op.unlocks_at_ns,
                now_ns: now,
            });
        }
        // State first: the amount leaves the books before the transfer is even scheduled.
        let amount = op.unbonding;
        op.unbonding = NearToken::from_yoctonear(0);
        op.withdrawing = true;
        Ok(Promise::new(operator.clone()).transfer(amount).then(
            crate::Registry::ext(env::current_account_id())
                .with_static_gas(CALLBACK_GAS)
                .on_withdraw(operator, amount),
        ))
    }
}

#[near]
impl Registry {
    /// Callback of `withdraw`: a failed transfer puts the amount back into unbonding (still
    /// unlocked), so it can be withdrawn again.
    #[private]
    pub fn on_withdraw(&mut self, operator: AccountId, amount: NearToken) {
        let state = self;
        let transferred = near_sdk::is_promise_success();
        let Some(op) = state.operators.get_mut(&operator) else {
            return;
        };
        op.withdrawing = false;
        if transferred {
            RegistryEvent::StakeWithdrawn { operator, amount }.emit();
        } else {
            op.unbonding = op.unbonding.saturating_add(amount);
        }
    }
}

impl Registry {
    /// Takes up to `amount` from the node operator's stake, bonded first, then unbonding (an
    /// operator cannot dodge a slash by unstaking). The stake that pays for storage is never taken.
    ///
    /// O(1) in the operator's node count: it reads the node and its operator only and logs one
    /// event, `NodeSlashed`, whose `under_staked` tells that all of the operator's nodes are
    /// inactive now (no `NodeStatusChanged` per node: the marketplace attaches a fixed gas, and
    /// a receipt may log at most 100 lines).
    pub(crate) fn try_slash(
        &mut self,
        node_id: NodeId,
        amount: NearToken,
        beneficiary: AccountId,
    ) -> Result<NearToken> {
        let state = self;
        require_marketplace(state)?;
        let operator = state.node(node_id)?.operator.clone();
        let policy = &state.policy;
        let op = state
            .operators
            .get_mut(&operator)
            .ok_or_else(|| RegistryError::UnknownOperator(operator.clone()))?;
        let from_stake = amount.min(op.free_stake());
        op.stake = op.stake.saturating_sub(from_stake);
        let from_unbonding = amount.saturating_sub(from_stake).min(op.unbonding);
        op.unbonding = op.unbonding.saturating_sub(from_unbonding);
        let slashed = from_stake.saturating_add(from_unbonding);
        if !slashed.is_zero() {
            RegistryEvent::NodeSlashed {
                node_id,
                operator,
                amount: slashed,
                beneficiary: beneficiary.clone(),
                stake: Some(op.stake),
                under_staked: !op.is_sufficiently_staked(policy),
            }
            .emit();
            pay(beneficiary, slashed);
        }
        Ok(slashed)
    }
}

/// Sends `amount` to `beneficiary`; if the transfer fails the amount becomes a credit the
/// beneficiary can claim, so nothing is stranded.
fn pay(beneficiary: AccountId, amount: NearToken) {
    Promise::new(beneficiary.clone())
        .transfer(amount)
        .then(
            crate::Registry::ext(env::current_account_id())
                .with_static_gas(CALLBACK_GAS)
                .on_payout(beneficiary, amount),
        )
        .detach();
}

#[near]
impl Registry {
    #[private]
    pub fn on_payout(&mut self, beneficiary: AccountId, amount: NearToken) {
        if !near_sdk::is_promise_success() {
            self.add_credit(beneficiary, amount);
        }
    }
}

/// What each self-paid credit entry locked for its storage. A collection of its own (not in
/// the root state): entries from before it existed locked nothing and release nothing.
fn credit_locks() -> near_sdk::collections::LookupMap<AccountId, NearToken> {
    near_sdk::collections::LookupMap::new(StorageKey::CreditLocks)
}

impl Registry {
    /// Books a payout that did not arrive. A new entry pays for its own storage out of
    /// `amount` (locked while the entry exists, paid back with the claim); an amount too small
    /// for that is stored at the registry's cost (one entry per beneficiary).
    fn add_credit(&mut self, beneficiary: AccountId, amount: NearToken) {
        let before = self.storage_mark();
        let existing = self.credits.get(&beneficiary).copied();
        let total = existing.unwrap_or_default().saturating_add(amount);
        self.credits.insert(beneficiary.clone(), total);
        if existing.is_some() {
            return;
        }
        let mut locks = credit_locks();
        // The lock's own record is part of what the entry costs.
        locks.insert(&beneficiary, &NearToken::from_yoctonear(0));
        let grown = self.storage_mark().saturating_sub(before);
        let cost = env::storage_byte_cost().saturating_mul(u128::from(grown));
        if cost < amount {
            locks.insert(&beneficiary, &cost);
            self.credits
                .insert(beneficiary, amount.saturating_sub(cost));
        } else {
            locks.remove(&beneficiary);
        }
    }

    pub(crate) fn try_claim_credit(&mut self) -> Result<NearToken> {
        let state = self;
        let account = env::predecessor_account_id();
        let amount = state
            .credits
            .remove(&account)
            .ok_or_else(|| RegistryError::NoCredit(account.clone()))?;
        // The storage the entry paid for comes back with it.
        let lock = credit_locks().remove(&account).unwrap_or_default();
        pay(account, amount.saturating_add(lock));
        Ok(amount)
    }
}

#[near]
impl StakeApi for Registry {
    #[payable]
    fn deposit_stake(&mut self) -> NearToken {
        self.try_deposit_stake().or_panic()
    }

    #[payable]
    fn request_unstake(&mut self, amount: NearToken) -> U64 {
        self.try_request_unstake(amount).or_panic()
    }

    #[payable]
    fn withdraw(&mut self) -> Promise {
        self.try_withdraw().or_panic()
    }

    fn slash(&mut self, node_id: NodeId, amount: NearToken, beneficiary: AccountId) -> NearToken {
        self.try_slash(node_id, amount, beneficiary).or_panic()
    }

    fn claim_credit(&mut self) -> NearToken {
        self.try_claim_credit().or_panic()
    }
}
