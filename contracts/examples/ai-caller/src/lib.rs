//! Example: a contract that asks AI a question through the enclave-cloud marketplace.
//!
//! `ask` forwards the attached NEAR to `marketplace.request(...)`. The marketplace yields until
//! an attested node answers (or 200 blocks pass) and then calls `on_ai_response` here with the
//! output or `None`. The marketplace refunds whatever was not spent to this contract; this
//! contract passes it on to whoever asked, so nobody's deposit stays here.

use near_sdk::json_types::U128;
use near_sdk::store::LookupMap;
use near_sdk::{
    AccountId, BorshStorageKey, Gas, NearToken, PanicOnDefault, Promise, PromiseError, env, near,
};

use enclave_cloud_common::interfaces::{AiResponse, ext_marketplace_agent};
use enclave_cloud_common::{InputRef, ModelId, RequestId};

/// Gas for `marketplace.request`, 30 Tgas of which wait in its yield for the answer.
pub const GAS_REQUEST: Gas = Gas::from_tgas(60);
/// Gas for the callback that records the request id.
pub const GAS_ON_SUBMITTED: Gas = Gas::from_tgas(5);

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiCallerError {
    #[error("only {expected} may answer, not {caller}")]
    NotMarketplace {
        expected: AccountId,
        caller: AccountId,
    },
}

impl near_sdk::FunctionError for AiCallerError {
    fn panic(&self) -> ! {
        env::panic_str(&self.to_string())
    }
}

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
enum StorageKey {
    Pending,
    Answers,
}

/// Who asked, and what they attached.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub asker: AccountId,
    pub deposit: U128,
}

/// What came back for a request.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Answered { response: AiResponse },
    TimedOut,
}

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct AiCaller {
    marketplace: AccountId,
    pending: LookupMap<RequestId, Pending>,
    answers: LookupMap<RequestId, Outcome>,
}

#[near]
impl AiCaller {
    #[init]
    pub fn new(marketplace: AccountId) -> Self {
        Self {
            marketplace,
            pending: LookupMap::new(StorageKey::Pending),
            answers: LookupMap::new(StorageKey::Answers),
        }
    }

    /// Anyone. Deposit: the price cap plus the marketplace's `request_deposit`; all of it is
    /// forwarded. Gas: 100 Tgas. Returns the request id once the marketplace accepted it.
    #[payable]
    pub fn ask(&mut self, model_id: ModelId, input: InputRef, price_cap: U128) -> Promise {
        let deposit = env::attached_deposit();
        ext_marketplace_agent::ext(self.marketplace.clone())
            .with_attached_deposit(deposit)
            .with_static_gas(GAS_REQUEST)
            .request(model_id, input, price_cap)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_ON_SUBMITTED)
                    .on_request_submitted(
                        env::predecessor_account_id(),
                        U128(deposit.as_yoctonear()),
                    ),
            )
    }

    /// Callback of `ask`. Private. If the marketplace refused the request, its deposit came
    /// back here: return it to the asker.
    #[private]
    pub fn on_request_submitted(
        &mut self,
        asker: AccountId,
        deposit: U128,
        #[callback_result] request_id: Result<RequestId, PromiseError>,
    ) -> Option<RequestId> {
        match request_id {
            Ok(id) => {
                self.pending.insert(id, Pending { asker, deposit });
                Some(id)
            }
            Err(_) => {
                env::log_str("the marketplace refused the request; deposit returned");
                let _ = Promise::new(asker).transfer(NearToken::from_yoctonear(deposit.0));
                None
            }
        }
    }

    /// The marketplace only: the answer (or `None` after the timeout) to a request. Passes the
    /// unspent deposit, which the marketplace refunded to this contract, back to the asker.
    #[handle_result]
    pub fn on_ai_response(
        &mut self,
        request_id: RequestId,
        response: Option<AiResponse>,
    ) -> Result<(), AiCallerError> {
        let caller = env::predecessor_account_id();
        if caller != self.marketplace {
            return Err(AiCallerError::NotMarketplace {
                expected: self.marketplace.clone(),
                caller,
            });
        }
        let spent = response.as_ref().map_or(0, |r| r.cost.0);
        if let Some(pending) = self.pending.remove(&request_id) {
            let unspent = pending.deposit.0.saturating_sub(spent);
            if unspent > 0 {
                let _ = Promise::new(pending.asker).transfer(NearToken::from_yoctonear(unspent));
            }
        }
        let outcome = match response {
            Some(response) => Outcome::Answered { response },
            None => Outcome::TimedOut,
        };
        env::log_str(&format!("request {request_id}: {outcome:?}"));
        self.answers.insert(request_id, outcome);
        Ok(())
    }

    pub fn get_answer(&self, request_id: RequestId) -> Option<&Outcome> {
        self.answers.get(&request_id)
    }

    pub fn get_pending(&self, request_id: RequestId) -> Option<&Pending> {
        self.pending.get(&request_id)
    }

    pub fn marketplace(&self) -> AccountId {
        self.marketplace.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::NodeId;
    use enclave_cloud_common::Usage;
    use near_sdk::json_types::{Base64VecU8, U64};
    use near_sdk::mock::MockAction;
    use near_sdk::test_utils::{VMContextBuilder, get_created_receipts};
    use near_sdk::testing_env;

    const NEAR: u128 = 10u128.pow(24);

    fn acc(s: &str) -> AccountId {
        s.parse().unwrap()
    }

    fn context(predecessor: &str, deposit: u128) {
        testing_env!(
            VMContextBuilder::new()
                .current_account_id(acc("caller.near"))
                .predecessor_account_id(acc(predecessor))
                .attached_deposit(NearToken::from_yoctonear(deposit))
                .build()
        );
    }

    fn input() -> InputRef {
        InputRef::Inline {
            ciphertext: Base64VecU8(b"question".to_vec()),
        }
    }

    fn transfers() -> Vec<(AccountId, u128)> {
        get_created_receipts()
            .into_iter()
            .flat_map(|r| {
                let to = r.receiver_id.clone();
                r.actions.into_iter().filter_map(move |a| match a {
                    MockAction::Transfer { deposit, .. } => {
                        Some((to.clone(), deposit.as_yoctonear()))
                    }
                    _ => None,
                })
            })
            .collect()
    }

    fn response(cost: u128) -> AiResponse {
        AiResponse {
            node_id: NodeId(7),
            output: InputRef::Inline {
                ciphertext: Base64VecU8(b"answer".to_vec()),
            },
            usage: Usage {
                input_tokens: U64(1),
                output_tokens: U64(2),
            },
            cost: U128(cost),
        }
    }

    #[test]
    fn ask_forwards_the_whole_deposit_to_the_marketplace() {
        context("alice.near", 2 * NEAR);
        let mut c = AiCaller::new(acc("market.near"));
        let _ = c.ask("llama-3-8b".parse().unwrap(), input(), U128(NEAR));
        let receipts = get_created_receipts();
        let request = receipts
            .iter()
            .find(|r| r.receiver_id.as_str() == "market.near")
            .unwrap();
        let MockAction::FunctionCallWeight {
            method_name,
            attached_deposit,
            args,
            prepaid_gas,
            ..
        } = &request.actions[0]
        else {
            panic!("{request:?}")
        };
        assert_eq!(method_name, b"request");
        assert_eq!(attached_deposit.as_yoctonear(), 2 * NEAR);
        assert_eq!(*prepaid_gas, GAS_REQUEST);
        let args: near_sdk::serde_json::Value = near_sdk::serde_json::from_slice(args).unwrap();
        assert_eq!(args["price_cap"], "1000000000000000000000000");
        assert_eq!(args["model_id"], "llama-3-8b");
    }

    #[test]
    fn an_answer_is_stored_and_the_unspent_deposit_goes_back_to_the_asker() {
        context("caller.near", 0);
        let mut c = AiCaller::new(acc("market.near"));
        let id = c.on_request_submitted(acc("alice.near"), U128(2 * NEAR), Ok(RequestId(1)));
        assert_eq!(id, Some(RequestId(1)));
        context("market.near", 0);
        c.on_ai_response(RequestId(1), Some(response(NEAR / 2)))
            .unwrap();
        assert_eq!(transfers(), vec![(acc("alice.near"), 2 * NEAR - NEAR / 2)]);
        assert_eq!(
            c.get_answer(RequestId(1)),
            Some(&Outcome::Answered {
                response: response(NEAR / 2)
            })
        );
        assert!(c.get_pending(RequestId(1)).is_none());
    }

    #[test]
    fn a_timeout_returns_everything() {
        context("caller.near", 0);
        let mut c = AiCaller::new(acc("market.near"));
        c.on_request_submitted(acc("alice.near"), U128(2 * NEAR), Ok(RequestId(4)));
        context("market.near", 0);
        c.on_ai_response(RequestId(4), None).unwrap();
        assert_eq!(transfers(), vec![(acc("alice.near"), 2 * NEAR)]);
        assert_eq!(c.get_answer(RequestId(4)), Some(&Outcome::TimedOut));
    }

    #[test]
    fn a_refused_request_returns_the_deposit() {
        context("caller.near", 0);
        let mut c = AiCaller::new(acc("market.near"));
        assert_eq!(
            c.on_request_submitted(acc("alice.near"), U128(NEAR), Err(PromiseError::Failed)),
            None
        );
        assert_eq!(transfers(), vec![(acc("alice.near"), NEAR)]);
    }

    #[test]
    fn only_the_marketplace_answers() {
        context("caller.near", 0);
        let mut c = AiCaller::new(acc("market.near"));
        c.on_request_submitted(acc("alice.near"), U128(NEAR), Ok(RequestId(1)));
        context("mallory.near", 0);
        let err = c
            .on_ai_response(RequestId(1), Some(response(1)))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "only market.near may answer, not mallory.near"
        );
        assert!(c.get_answer(RequestId(1)).is_none());
        assert!(transfers().is_empty());
    }
}
