//! NEP-141 (core and resolver) and NEP-148 (metadata). Balances move through the ledger, which
//! keeps the revenue corrections in step; events are the common `nep141` ones.

use near_contract_standards::fungible_token::core::FungibleTokenCore;
use near_contract_standards::fungible_token::metadata::{
    FungibleTokenMetadata, FungibleTokenMetadataProvider,
};
use near_contract_standards::fungible_token::receiver::ext_ft_receiver;
use near_contract_standards::fungible_token::resolver::FungibleTokenResolver;
use near_sdk::json_types::U128;
use near_sdk::{AccountId, Gas, PromiseOrValue, env, near, serde_json};

use crate::ModelToken;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::access::{OrPanic, require_one_yocto};
use crate::errors::ModelTokenError;

/// Gas kept for `ft_resolve_transfer`; the receiver gets the rest.
const GAS_FOR_RESOLVE_TRANSFER: Gas = Gas::from_tgas(5);
/// Least gas `ft_transfer_call` accepts: its own work, the resolver and a useful receiver call.
const MIN_GAS_FOR_FT_TRANSFER_CALL: Gas = Gas::from_tgas(30);

impl ModelToken {
    fn checked_transfer(
        &mut self,
        receiver_id: &AccountId,
        amount: U128,
        memo: Option<String>,
    ) -> Result<AccountId, ModelTokenError> {
        require_one_yocto()?;
        let sender = env::predecessor_account_id();
        self.transfer(&sender, receiver_id, amount.0, memo)?;
        Ok(sender)
    }

    /// Gives back what the receiver of `ft_transfer_call` did not use; returns the amount used.
    fn resolve_transfer(
        &mut self,
        sender: &AccountId,
        receiver: &AccountId,
        amount: u128,
    ) -> Result<u128, ModelTokenError> {
        const MAX_RESULT_LEN: usize = "\"340282366920938463463374607431768211455\"".len();
        let unused = env::promise_result_checked(0, MAX_RESULT_LEN)
            .ok()
            .and_then(|v| serde_json::from_slice::<U128>(&v).ok())
            .map_or(amount, |u| u.0)
            .min(amount);
        // Never the receiver's locked crowdfund tokens: they are not what it was sent.
        let refund = unused.min(self.transferable_of(receiver));
        if refund == 0 {
            return Ok(amount);
        }
        if self.holders.contains_key(sender) {
            self.transfer(receiver, sender, refund, Some("refund".to_owned()))?;
            Ok(amount - refund)
        } else {
            // The sender unregistered meanwhile: the returned tokens have no owner.
            self.burn(receiver, refund, Some("refund"))?;
            Ok(amount)
        }
    }
}

#[near]
impl FungibleTokenCore for ModelToken {
    /// 1 yocto. Moves tokens to a registered receiver; a backer's refundable crowdfund tokens
    /// are locked until the crowdfund succeeds (every other token moves). O(1): ≤ 10 Tgas
    /// whatever the number of holders.
    #[payable]
    fn ft_transfer(&mut self, receiver_id: AccountId, amount: U128, memo: Option<String>) {
        self.checked_transfer(&receiver_id, amount, memo).or_panic();
    }

    /// 1 yocto, at least 30 Tgas. Transfers, calls `receiver.ft_on_transfer` with the rest of
    /// the gas and resolves in `ft_resolve_transfer` (5 Tgas), which takes back the unused part.
    #[payable]
    fn ft_transfer_call(
        &mut self,
        receiver_id: AccountId,
        amount: U128,
        memo: Option<String>,
        msg: String,
    ) -> PromiseOrValue<U128> {
        let prepaid = env::prepaid_gas();
        if prepaid < MIN_GAS_FOR_FT_TRANSFER_CALL {
            ModelTokenError::NotEnoughGas {
                required: MIN_GAS_FOR_FT_TRANSFER_CALL,
                attached: prepaid,
            }
            .or_panic_now();
        }
        let sender = self.checked_transfer(&receiver_id, amount, memo).or_panic();
        ext_ft_receiver::ext(receiver_id.clone())
            .with_unused_gas_weight(1)
            .ft_on_transfer(sender.clone(), amount, msg)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_FOR_RESOLVE_TRANSFER)
                    .with_unused_gas_weight(0)
                    .ft_resolve_transfer(sender, receiver_id, amount),
            )
            .into()
    }

    fn ft_total_supply(&self) -> U128 {
        U128(self.total_supply)
    }

    fn ft_balance_of(&self, account_id: AccountId) -> U128 {
        U128(self.balance_of(&account_id))
    }
}

#[near]
impl FungibleTokenResolver for ModelToken {
    /// Callback of `ft_transfer_call` (this contract only).
    #[private]
    fn ft_resolve_transfer(
        &mut self,
        sender_id: AccountId,
        receiver_id: AccountId,
        amount: U128,
    ) -> U128 {
        U128(
            self.resolve_transfer(&sender_id, &receiver_id, amount.0)
                .or_panic(),
        )
    }
}

#[near]
impl FungibleTokenMetadataProvider for ModelToken {
    fn ft_metadata(&self) -> FungibleTokenMetadata {
        self.metadata
            .get()
            .clone()
            .unwrap_or_else(|| env::panic_str("token metadata missing"))
    }
}

impl ModelTokenError {
    /// Fails the call with this error's message.
    pub(crate) fn or_panic_now(self) -> ! {
        near_sdk::FunctionError::panic(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::test_utils::get_logs;
    use near_sdk::{NearToken, PromiseResult};

    #[test]
    fn transfer_moves_balance_with_event_and_one_yocto() {
        let mut t = setup_with_holders(&[(ALICE, 100)]);
        register(&mut t, BOB);
        ctx(ALICE, NearToken::from_yoctonear(1));
        t.ft_transfer(acc(BOB), U128(40), Some("hi".into()));
        assert_eq!(
            (t.balance_of(&acc(ALICE)), t.balance_of(&acc(BOB))),
            (60, 40)
        );
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"ft_transfer\"") && l.contains("hi"))
        );
        assert_eq!(t.ft_total_supply().0, 100);

        ctx(ALICE, NearToken::from_yoctonear(0));
        assert_panics_with(
            || t.ft_transfer(acc(BOB), U128(1), None),
            "attach exactly 1 yoctoNEAR",
        );
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(
            || t.ft_transfer(acc(BOB), U128(61), None),
            "holds 60 tokens, cannot move 61",
        );
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(
            || t.ft_transfer(acc(CAROL), U128(1), None),
            "is not registered",
        );
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.ft_transfer(acc(ALICE), U128(1), None), "same account");
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(
            || t.ft_transfer(acc(BOB), U128(0), None),
            "must be positive",
        );
    }

    #[test]
    fn transfer_call_schedules_receiver_and_resolver() {
        let mut t = setup_with_holders(&[(ALICE, 100)]);
        register(&mut t, BOB);
        ctx_gas(ALICE, NearToken::from_yoctonear(1), Gas::from_tgas(50));
        let _ = t.ft_transfer_call(acc(BOB), U128(10), None, "m".into());
        let receipts = near_sdk::test_utils::get_created_receipts();
        assert_eq!(receipts.len(), 2, "{receipts:?}");
        assert_eq!(receipts[0].receiver_id, acc(BOB));

        ctx_gas(ALICE, NearToken::from_yoctonear(1), Gas::from_tgas(10));
        assert_panics_with(
            || t.ft_transfer_call(acc(BOB), U128(1), None, String::new()),
            "gas",
        );
    }

    #[test]
    fn resolve_returns_unused_tokens_or_burns_them_without_sender() {
        let mut t = setup_with_holders(&[(ALICE, 100), (BOB, 0)]);
        // BOB received 30, used 10.
        ctx(ALICE, NearToken::from_yoctonear(1));
        t.ft_transfer(acc(BOB), U128(30), None);
        callback_ctx(PromiseResult::Successful(b"\"20\"".to_vec()));
        assert_eq!(t.ft_resolve_transfer(acc(ALICE), acc(BOB), U128(30)).0, 10);
        assert_eq!(
            (t.balance_of(&acc(ALICE)), t.balance_of(&acc(BOB))),
            (90, 10)
        );

        // Receiver failed: everything comes back.
        ctx(ALICE, NearToken::from_yoctonear(1));
        t.ft_transfer(acc(BOB), U128(5), None);
        callback_ctx(PromiseResult::Failed);
        assert_eq!(t.ft_resolve_transfer(acc(ALICE), acc(BOB), U128(5)).0, 0);
        assert_eq!(t.balance_of(&acc(ALICE)), 90);

        // Sender gone: the refund is burned.
        t.holders.remove(&acc(ALICE));
        callback_ctx(PromiseResult::Failed);
        assert_eq!(t.ft_resolve_transfer(acc(ALICE), acc(BOB), U128(4)).0, 4);
        assert_eq!(t.balance_of(&acc(BOB)), 6);
        assert!(get_logs().iter().any(|l| l.contains("\"ft_burn\"")));
    }

    #[test]
    fn metadata_view() {
        let t = setup();
        assert_eq!(t.ft_metadata().symbol, "LLM");
    }
}
