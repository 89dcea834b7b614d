//! A contract account on a mocked state that persists from call to call.

use crate::{NEAR, T0, Vm};
use anyhow::{Context, Result, anyhow, bail};
use near_primitives_core::account::AccountContract;
use near_primitives_core::types::{AccountId, Balance, Gas};
use near_vm_runner::logic::VMContext;
use near_vm_runner::logic::mocks::mock_external::{MockAction, MockedExternal};
use near_vm_runner::logic::types::{PromiseResult, ReturnData};
use near_vm_runner::{ContractCode, ProfileDataV3};
use serde_json::Value;

/// One contract account: its code, its storage (kept between calls) and its storage usage.
/// A clone is an independent copy of the account's state, to measure alternatives from it.
#[derive(Clone)]
pub struct Contract {
    account: AccountId,
    ext: MockedExternal,
    storage_usage: u64,
    balance: u128,
}

/// Who makes a call and with what: the signer (also predecessor and refund receiver), the
/// signer's borsh public key, the attached deposit, the results of the promises the call is a
/// callback of, the block time and the prepaid gas.
pub struct Call<'a> {
    who: &'a str,
    key: Vec<u8>,
    deposit: u128,
    results: Vec<PromiseResult>,
    now_ns: u64,
    prepaid_gas: Gas,
}

impl<'a> Call<'a> {
    /// A call by `who` with a zero ed25519 key, no deposit, no promise results, at [`T0`],
    /// with 300 Tgas.
    pub fn by(who: &'a str) -> Self {
        Self {
            who,
            key: vec![0; 33],
            deposit: 0,
            results: vec![],
            now_ns: T0,
            prepaid_gas: Gas::from_teragas(300),
        }
    }

    /// Attached deposit in yoctoNEAR.
    pub fn deposit(mut self, yocto: u128) -> Self {
        self.deposit = yocto;
        self
    }

    /// The signer's public key, borsh: curve byte (0 = ed25519) then the key bytes.
    pub fn key(mut self, borsh_public_key: Vec<u8>) -> Self {
        self.key = borsh_public_key;
        self
    }

    /// The results of the promises this call is the callback of.
    pub fn results(mut self, results: Vec<PromiseResult>) -> Self {
        self.results = results;
        self
    }

    /// The block timestamp in nanoseconds.
    pub fn at(mut self, now_ns: u64) -> Self {
        self.now_ns = now_ns;
        self
    }

    /// The gas attached to the receipt (the VM stops the call when it is used up).
    pub fn prepaid_gas(mut self, gas: Gas) -> Self {
        self.prepaid_gas = gas;
        self
    }
}

/// What one successful call did.
#[derive(Debug)]
pub struct Outcome {
    /// Gas burnt by the code, including the send fees of the receipts it created.
    pub gas: Gas,
    /// The return value (empty if the method returned nothing or a promise).
    pub value: Vec<u8>,
    pub logs: Vec<String>,
    /// The receipts' actions this call created, as nearcore's mock records them.
    pub actions: Vec<MockAction>,
    /// Where the gas went (wasm instructions, each host function).
    pub profile: ProfileDataV3,
}

impl Outcome {
    /// The arguments of the first function call to `method` this call scheduled.
    pub fn scheduled_args(&self, method: &str) -> Result<&[u8]> {
        self.actions
            .iter()
            .find_map(|a| match a {
                MockAction::FunctionCallWeight {
                    method_name, args, ..
                } if method_name == method.as_bytes() => Some(args.as_slice()),
                _ => None,
            })
            .with_context(|| format!("no call to {method} scheduled: {:?}", self.actions))
    }

    /// The JSON arguments of the first function call to `method` this call scheduled.
    pub fn scheduled_json(&self, method: &str) -> Result<Value> {
        let args = self.scheduled_args(method)?;
        serde_json::from_slice(args).with_context(|| format!("arguments of {method}"))
    }

    /// How many transfers this call scheduled.
    pub fn transfers(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, MockAction::Transfer { .. }))
            .count()
    }
}

impl Contract {
    /// `account` running `code`, with 10,000 bytes of storage already used and 1,000 NEAR.
    pub fn new(account: &str, code: &[u8]) -> Result<Self> {
        Ok(Self {
            account: account
                .parse()
                .with_context(|| format!("account {account}"))?,
            ext: MockedExternal::with_code(ContractCode::new(code.to_vec(), None)),
            storage_usage: 10_000,
            balance: 1_000 * NEAR,
        })
    }

    /// The account's balance in yoctoNEAR (what `env::account_balance` returns).
    pub fn with_balance(mut self, yocto: u128) -> Self {
        self.balance = yocto;
        self
    }

    pub fn account(&self) -> &str {
        self.account.as_str()
    }

    /// Bytes of storage the account uses (updated by every successful call).
    pub fn storage_usage(&self) -> u64 {
        self.storage_usage
    }

    /// Calls `method` with `args` as JSON.
    pub fn call(&mut self, vm: &Vm, call: Call<'_>, method: &str, args: &Value) -> Result<Outcome> {
        self.call_raw(vm, call, method, serde_json::to_vec(args)?)
    }

    /// Calls `method` with `input` as given. A VM error, or a call the contract aborts
    /// (panic, trap, missing method, gas exhausted), is an error naming the method, the
    /// caller, the gas burnt and the logs. The mock does not roll back what a failed call
    /// wrote or scheduled: benches stop at the first error.
    pub fn call_raw(
        &mut self,
        vm: &Vm,
        call: Call<'_>,
        method: &str,
        input: Vec<u8>,
    ) -> Result<Outcome> {
        let who: AccountId = call
            .who
            .parse()
            .with_context(|| format!("caller {}", call.who))?;
        let context = VMContext {
            current_account_id: self.account.clone(),
            signer_account_id: who.clone(),
            signer_account_pk: call.key,
            predecessor_account_id: who.clone(),
            refund_to_account_id: who,
            input: input.into(),
            promise_results: call.results.into(),
            block_height: 1,
            block_timestamp: call.now_ns,
            epoch_height: 1,
            account_balance: Balance::from_yoctonear(self.balance),
            account_locked_balance: Balance::from_yoctonear(0),
            storage_usage: self.storage_usage,
            account_contract: AccountContract::None,
            attached_deposit: Balance::from_yoctonear(call.deposit),
            prepaid_gas: call.prepaid_gas,
            random_seed: vec![0; 32],
            view_config: None,
            output_data_receivers: vec![],
        };
        // The mock keeps one action log per account: a yield created by one call is found
        // there when a later call resumes it, and receipt indices count from its start.
        let first_action = self.ext.action_log.len();
        let counter = context.make_gas_counter(&vm.config);
        let prepared = near_vm_runner::prepare(
            &self.ext,
            vm.config.clone(),
            Some(&vm.cache),
            counter,
            method,
        );
        let outcome = near_vm_runner::run(prepared, &mut self.ext, &context, vm.fees.clone())
            .map_err(|e| anyhow!("VM error in {method}: {e:?}"))?;
        if let Some(err) = outcome.aborted {
            bail!(
                "{method} by {} failed after {} gas: {err:?}; logs {:?}",
                call.who,
                outcome.burnt_gas,
                outcome.logs
            );
        }
        self.storage_usage = outcome.storage_usage;
        Ok(Outcome {
            gas: outcome.burnt_gas,
            value: match outcome.return_data {
                ReturnData::Value(v) => v,
                _ => vec![],
            },
            logs: outcome.logs,
            actions: self.ext.action_log[first_action..].to_vec(),
            profile: outcome.profile,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module exporting `boom` (traps on `unreachable`) and `ok` (returns), no memory.
    const TINY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // types: () -> ()
        0x03, 0x03, 0x02, 0x00, 0x00, // functions: two of type 0
        0x07, 0x0d, 0x02, // exports: two
        0x04, b'b', b'o', b'o', b'm', 0x00, 0x00, // "boom" = function 0
        0x02, b'o', b'k', 0x00, 0x01, // "ok" = function 1
        0x0a, 0x08, 0x02, // code: two bodies
        0x03, 0x00, 0x00, 0x0b, // no locals, unreachable, end
        0x02, 0x00, 0x0b, // no locals, end
    ];

    #[test]
    fn a_call_burns_gas_and_keeps_state() -> Result<()> {
        let vm = Vm::new();
        let mut c = Contract::new("tiny.test.near", TINY)?;
        let out = c.call_raw(&vm, Call::by("alice.test.near"), "ok", vec![])?;
        assert!(out.gas.as_gas() > 0, "loading and running code costs gas");
        assert!(out.value.is_empty() && out.actions.is_empty() && out.logs.is_empty());
        assert_eq!(out.transfers(), 0);
        assert_eq!(c.storage_usage(), 10_000);
        assert_eq!(c.account(), "tiny.test.near");
        Ok(())
    }

    #[test]
    fn an_aborted_call_is_an_error_naming_method_and_caller() -> Result<()> {
        let vm = Vm::new();
        let mut c = Contract::new("tiny.test.near", TINY)?;
        let err = c
            .call_raw(&vm, Call::by("alice.test.near"), "boom", vec![])
            .expect_err("unreachable traps");
        let msg = format!("{err:#}");
        assert!(msg.contains("boom by alice.test.near failed"), "{msg}");
        let err = c
            .call_raw(&vm, Call::by("bob.test.near"), "missing", vec![])
            .expect_err("no such export");
        assert!(
            format!("{err:#}").contains("missing by bob.test.near"),
            "{err:#}"
        );
        Ok(())
    }

    #[test]
    fn bad_accounts_are_errors() {
        assert!(Contract::new("Not An Account", TINY).is_err());
        let vm = Vm::new();
        let Ok(mut c) = Contract::new("tiny.test.near", TINY) else {
            panic!("valid account")
        };
        assert!(c.call_raw(&vm, Call::by("NOPE"), "ok", vec![]).is_err());
    }

    #[test]
    fn scheduled_args_name_a_missing_method() {
        let out = Outcome {
            gas: Gas::from_gas(0),
            value: vec![],
            logs: vec![],
            actions: vec![],
            profile: ProfileDataV3::default(),
        };
        let err = out
            .scheduled_args("on_payouts")
            .expect_err("nothing scheduled");
        assert!(err.to_string().contains("no call to on_payouts"), "{err}");
    }
}
