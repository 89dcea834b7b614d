//! A contract that exercises the chain, not an application: storage, logs, panics, deposits,
//! cross-contract promises (`then`, `and`) with callbacks, yield/resume, and global contracts
//! deployed and used from a contract.
//! Every method is public and takes no deposit unless it says so; gas is whatever the caller
//! attaches (the promise methods attach 20 Tgas per call and 10 Tgas per callback).

use near_sdk::json_types::Base58CryptoHash;
use near_sdk::{AccountId, CryptoHash, Gas, GasWeight, NearToken, Promise, env, near};

const CALL_GAS: Gas = Gas::from_tgas(20);
const CALLBACK_GAS: Gas = Gas::from_tgas(10);
const PENDING_YIELD: &[u8] = b"pending_yield";

#[near(contract_state)]
#[derive(Default)]
pub struct Probe {}

/// Results bigger than this are reported as failed (and cost no gas to read).
const MAX_RESULT_LEN: usize = 1024;

fn result_text(index: u64) -> String {
    match env::promise_result_checked(index, MAX_RESULT_LEN) {
        Ok(value) => format!("ok:{}", String::from_utf8_lossy(&value)),
        Err(_) => "failed".to_string(),
    }
}

#[near]
impl Probe {
    /// Stores `value` under `key` (the caller's storage is paid from this account's balance).
    pub fn set(&mut self, key: String, value: String) {
        env::log_str(&format!("set {key}"));
        env::storage_write(key.as_bytes(), value.as_bytes());
    }

    pub fn get(&self, key: String) -> Option<String> {
        env::storage_read(key.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Grows this account's state by `bytes` bytes (for storage staking).
    pub fn fill(&mut self, bytes: u32) {
        env::storage_write(b"fill", &vec![7u8; bytes as usize]);
    }

    /// Always panics with `message`.
    pub fn fail(&self, message: String) {
        env::panic_str(&message)
    }

    pub fn echo(&self, value: String) -> String {
        env::log_str(&format!("echo {value}"));
        value
    }

    /// Accepts any deposit and returns it.
    #[payable]
    pub fn deposit(&mut self) -> NearToken {
        env::attached_deposit()
    }

    /// Calls `method(args)` on `target` with `deposit` (taken from the attached deposit), then
    /// `on_result` here, which returns `ok:<value>` or `failed`.
    #[payable]
    pub fn relay(
        &mut self,
        target: AccountId,
        method: String,
        args: String,
        deposit: NearToken,
    ) -> Promise {
        Promise::new(target)
            .function_call(method, args.into_bytes(), deposit, CALL_GAS)
            .then(Promise::new(env::current_account_id()).function_call(
                "on_result".to_string(),
                vec![],
                NearToken::from_yoctonear(0),
                CALLBACK_GAS,
            ))
    }

    /// `target.echo(value)` and `target.fail(value)` in parallel (`and`), then one callback
    /// that sees both results.
    pub fn fan_out(&mut self, target: AccountId, value: String) -> Promise {
        let args = format!("{{\"value\":{value:?}}}").into_bytes();
        let message = format!("{{\"message\":{value:?}}}").into_bytes();
        let zero = NearToken::from_yoctonear(0);
        Promise::new(target.clone())
            .function_call("echo".to_string(), args, zero, CALL_GAS)
            .and(Promise::new(target).function_call("fail".to_string(), message, zero, CALL_GAS))
            .then(Promise::new(env::current_account_id()).function_call(
                "on_results".to_string(),
                vec![],
                zero,
                CALLBACK_GAS,
            ))
    }

    #[private]
    pub fn on_result(&mut self) -> String {
        result_text(0)
    }

    #[private]
    pub fn on_results(&mut self) -> Vec<String> {
        (0..env::promise_results_count()).map(result_text).collect()
    }

    /// Yields until `answer` is called (or the protocol's yield timeout passes); the call
    /// then returns `answer:<text>` (or `timeout`).
    pub fn ask(&mut self) {
        let promise = env::promise_yield_create("on_answer", [], CALLBACK_GAS, GasWeight(1), 0);
        let data_id = env::read_register(0).unwrap_or_else(|| env::panic_str("no yield id"));
        env::storage_write(PENDING_YIELD, &data_id);
        env::promise_return(promise);
    }

    /// Resumes the pending yield with `text`; false if there is none to resume.
    pub fn answer(&mut self, text: String) -> bool {
        let Some(id) = env::storage_read(PENDING_YIELD) else {
            return false;
        };
        let Ok(data_id) = CryptoHash::try_from(id.as_slice()) else {
            env::panic_str("stored yield id is not 32 bytes")
        };
        env::promise_yield_resume(&data_id, text.as_bytes())
    }

    /// Deploys this call's raw input (not JSON: a wasm) as a global contract referenced by its
    /// code hash. The runtime burns its storage cost from this account's balance.
    pub fn deploy_global_by_hash(&mut self) -> Promise {
        Promise::new(env::current_account_id())
            .deploy_global_contract(env::input().unwrap_or_default())
    }

    /// Deploys this call's raw input as the global contract referenced by this account's id;
    /// deploying again upgrades it for every account that uses it.
    pub fn deploy_global_by_account(&mut self) -> Promise {
        Promise::new(env::current_account_id())
            .deploy_global_contract_by_account_id(env::input().unwrap_or_default())
    }

    /// Creates `<name>.<this account>` funded with the attached deposit and running the
    /// global contract `code_hash` or, without it, the one `owner` deployed by account id.
    #[payable]
    pub fn create_user(
        &mut self,
        name: String,
        code_hash: Option<Base58CryptoHash>,
        owner: Option<AccountId>,
    ) -> Promise {
        let account = format!("{name}.{}", env::current_account_id());
        let account: AccountId = account
            .parse()
            .unwrap_or_else(|_| env::panic_str(&format!("bad account id {account}")));
        let batch = Promise::new(account)
            .create_account()
            .transfer(env::attached_deposit());
        match (code_hash, owner) {
            (Some(hash), _) => batch.use_global_contract(hash),
            (None, Some(owner)) => batch.use_global_contract_by_account_id(owner),
            (None, None) => env::panic_str("give code_hash or owner"),
        }
    }

    #[private]
    pub fn on_answer(&mut self) -> String {
        env::storage_remove(PENDING_YIELD);
        match env::promise_result_checked(0, MAX_RESULT_LEN) {
            Ok(value) => format!("answer:{}", String::from_utf8_lossy(&value)),
            Err(_) => "timeout".to_string(),
        }
    }
}
