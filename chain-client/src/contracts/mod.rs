//! Typed clients of enclave-cloud's contracts. Each method's name, gas and deposit rule come
//! from the contract's interface (`enclave_cloud_common::interfaces::*::methods`), its
//! arguments and return value are the contract's own types: a client cannot misspell a method,
//! forget its deposit or decode a view into a type of its own.
//!
//! Views are `async` methods. Change methods return a [`Call`], sent with a signer:
//!
//! ```no_run
//! # async fn demo(chain: &chain_client::ChainClient, signer: &chain_client::Account,
//! #   market: chain_client::AccountId) -> chain_client::Result<()> {
//! use chain_client::contracts::MarketplaceClient;
//! use enclave_cloud_common::{JobId, NodeId};
//! let market = MarketplaceClient::new(chain, market);
//! let claimed: bool = market.claim_job(JobId(7), NodeId(1))?.send(signer).await?;
//! # Ok(()) }
//! ```

/// Declares a typed client of one contract: the chain, the contract's account, `new`, `id`
/// and the `contract()` its methods go through. `governed: Setting` adds the governance
/// methods every timelocked contract has (`crate::governance::methods`), typed with the
/// contract's own `Change<Setting>`.
macro_rules! contract_client {
    ($(#[$doc:meta])* $name:ident, governed: $setting:ty) => {
        contract_client!($(#[$doc])* $name);

        impl<'a> $name<'a> {
            /// View: the governance delay and the pending changes.
            pub async fn governance(
                &self,
            ) -> crate::Result<
                enclave_cloud_common::governance::Timelock<
                    enclave_cloud_common::governance::Change<$setting>,
                >,
            > {
                self.contract().governance().await
            }

            /// The owner, 1 yocto: queues `change` (applied at once while the delay is 0);
            /// returns the proposal, with its id and when it may be applied.
            pub fn propose_change(
                &self,
                change: enclave_cloud_common::governance::Change<$setting>,
            ) -> crate::Result<
                super::Call<
                    'a,
                    enclave_cloud_common::governance::Proposal<
                        enclave_cloud_common::governance::Change<$setting>,
                    >,
                >,
            > {
                self.contract().propose_change(change)
            }

            /// Anyone, once due: applies pending change `id`.
            pub fn apply_change(
                &self,
                id: near_sdk::json_types::U64,
            ) -> crate::Result<super::Call<'a, ()>> {
                self.contract().apply_change(id)
            }

            /// The owner, 1 yocto: withdraws pending change `id`.
            pub fn cancel_change(
                &self,
                id: near_sdk::json_types::U64,
            ) -> crate::Result<super::Call<'a, ()>> {
                self.contract().cancel_change(id)
            }

            /// Anyone, once due: deploys `code` (its SHA-256 must be a due `upgrade_code`
            /// proposal) and runs `migrate`. The call's input is the raw wasm.
            pub fn apply_upgrade(&self, code: Vec<u8>) -> super::Call<'a, ()> {
                self.contract().apply_upgrade(code)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<'a> {
            chain: &'a crate::ChainClient,
            id: near_primitives::types::AccountId,
        }

        impl<'a> $name<'a> {
            pub fn new(chain: &'a crate::ChainClient, id: near_primitives::types::AccountId) -> Self {
                Self { chain, id }
            }

            pub fn id(&self) -> &near_primitives::types::AccountId {
                &self.id
            }

            fn contract(&self) -> super::Contract<'a, '_> {
                super::Contract {
                    chain: self.chain,
                    id: &self.id,
                }
            }
        }
    };
}

mod marketplace;
mod model_factory;
mod model_token;
mod registry;

use std::marker::PhantomData;

use enclave_cloud_common::governance::methods::{
    self as governance_api, ChangeIdArgs, ProposeChangeArgs,
};
use enclave_cloud_common::governance::{Change, Proposal, Timelock};
use enclave_cloud_common::interfaces::method::{Method, NoArgs};
use near_primitives::gas::Gas;
use near_primitives::types::{AccountId, Balance};
use near_sdk::json_types::U64;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use marketplace::MarketplaceClient;
pub use model_factory::ModelFactoryClient;
pub use model_token::ModelTokenClient;
pub use registry::RegistryClient;

use crate::{Account, ChainClient, ChainError, FunctionCall, Result, TxOutcome};

/// One contract's client: the chain and the contract's account.
#[derive(Clone, Copy)]
struct Contract<'c, 'i> {
    chain: &'c ChainClient,
    id: &'i AccountId,
}

impl<'c> Contract<'c, '_> {
    async fn view<T: DeserializeOwned>(&self, method: &str, args: &impl Serialize) -> Result<T> {
        self.chain.view(self.id, method, args).await
    }

    /// A call of `method` whose deposit the method fixes (none or one yocto).
    fn call<R>(&self, method: Method, args: &impl Serialize) -> Result<Call<'c, R>> {
        let call = function_call(self.id, method, args, None)?;
        Ok(Call {
            chain: self.chain,
            call,
            returns: PhantomData,
        })
    }

    /// A call of `method` whose input is `args` as given (not JSON), e.g. a wasm module.
    fn raw_call<R>(&self, method: Method, args: Vec<u8>) -> Call<'c, R> {
        let call = FunctionCall::new(self.id.clone(), method.name)
            .args_raw(args)
            .gas(Gas::from_gas(method.gas.as_gas()))
            .deposit(method.fixed_deposit().unwrap_or(Balance::ZERO));
        Call {
            chain: self.chain,
            call,
            returns: PhantomData,
        }
    }

    // ----- governance (the same methods on every timelocked contract)

    async fn governance<S: DeserializeOwned>(&self) -> Result<Timelock<Change<S>>> {
        self.view(governance_api::GOVERNANCE, &NoArgs {}).await
    }

    fn propose_change<S: Serialize>(
        &self,
        change: Change<S>,
    ) -> Result<Call<'c, Proposal<Change<S>>>> {
        self.call(
            governance_api::PROPOSE_CHANGE,
            &ProposeChangeArgs { change },
        )
    }

    fn apply_change(&self, id: U64) -> Result<Call<'c, ()>> {
        self.call(governance_api::APPLY_CHANGE, &ChangeIdArgs { id })
    }

    fn cancel_change(&self, id: U64) -> Result<Call<'c, ()>> {
        self.call(governance_api::CANCEL_CHANGE, &ChangeIdArgs { id })
    }

    fn apply_upgrade(&self, code: Vec<u8>) -> Call<'c, ()> {
        self.raw_call(governance_api::APPLY_UPGRADE, code)
    }

    /// A call of `method` with `deposit` attached.
    fn paid_call<R>(
        &self,
        method: Method,
        args: &impl Serialize,
        deposit: Balance,
    ) -> Result<Call<'c, R>> {
        let call = function_call(self.id, method, args, Some(deposit))?;
        Ok(Call {
            chain: self.chain,
            call,
            returns: PhantomData,
        })
    }
}

/// `method` of the contract `receiver` as a plain [`FunctionCall`] (e.g. the init call batched
/// with a deployment): its name and gas from the table, `deposit` for a payable method or
/// `None` for the one the method fixes.
pub fn function_call(
    receiver: &AccountId,
    method: Method,
    args: &impl Serialize,
    deposit: Option<Balance>,
) -> Result<FunctionCall> {
    let deposit = match (deposit, method.fixed_deposit()) {
        (Some(deposit), _) => deposit,
        (None, Some(fixed)) => fixed,
        (None, None) => {
            return Err(ChainError::Args {
                method: method.name.to_owned(),
                message: "a payable method needs its deposit".to_owned(),
            });
        }
    };
    Ok(FunctionCall::new(receiver.clone(), method.name)
        .args_json(args)?
        .gas(Gas::from_gas(method.gas.as_gas()))
        .deposit(deposit))
}

/// A change method call ready to be signed: the method's name, gas and deposit as its
/// contract declares them; `R` is what it returns.
#[must_use = "a call does nothing until it is sent"]
pub struct Call<'a, R> {
    chain: &'a ChainClient,
    call: FunctionCall,
    returns: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Call<'_, R> {
    /// More (or less) gas than the method's default, e.g. a registration with many GPUs.
    pub fn gas(mut self, gas: Gas) -> Self {
        self.call.gas = gas;
        self
    }

    /// The function call as it will be sent.
    pub fn function_call(&self) -> &FunctionCall {
        &self.call
    }

    /// Signs with `signer`, waits until final, decodes the return value.
    pub async fn send(self, signer: &Account) -> Result<R> {
        self.chain.call(signer, self.call).await
    }

    /// Signs with `signer`, waits until final; the whole outcome (hash, logs, events) and the
    /// decoded return value.
    pub async fn send_outcome(self, signer: &Account) -> Result<(R, TxOutcome)> {
        let outcome = self.chain.call_outcome(signer, self.call).await?;
        Ok((outcome.json()?, outcome))
    }
}

#[cfg(test)]
mod tests;
