//! A function call to send: receiver, method, arguments, gas and deposit.

use near_primitives::action::{Action, FunctionCallAction};
use near_primitives::gas::Gas;
use near_primitives::types::{AccountId, Balance};
use serde::Serialize;

use crate::error::{ChainError, Result};

/// Gas a call gets unless told otherwise.
pub const DEFAULT_CALL_GAS: Gas = Gas::from_teragas(30);

/// One function call. Defaults: arguments `{}`, 30 Tgas, no deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub receiver_id: AccountId,
    pub method_name: String,
    pub args: Vec<u8>,
    pub gas: Gas,
    pub deposit: Balance,
}

impl FunctionCall {
    pub fn new(receiver_id: AccountId, method_name: impl Into<String>) -> Self {
        Self {
            receiver_id,
            method_name: method_name.into(),
            args: b"{}".to_vec(),
            gas: DEFAULT_CALL_GAS,
            deposit: Balance::ZERO,
        }
    }

    /// JSON arguments (what near-sdk methods take).
    pub fn args_json(mut self, args: &impl Serialize) -> Result<Self> {
        self.args = serde_json::to_vec(args).map_err(|e| ChainError::Args {
            method: self.method_name.clone(),
            message: e.to_string(),
        })?;
        Ok(self)
    }

    /// Arguments as given (borsh, or JSON already encoded).
    pub fn args_raw(mut self, args: Vec<u8>) -> Self {
        self.args = args;
        self
    }

    pub fn gas(mut self, gas: Gas) -> Self {
        self.gas = gas;
        self
    }

    pub fn gas_tgas(self, teragas: u64) -> Self {
        self.gas(Gas::from_teragas(teragas))
    }

    pub fn deposit(mut self, deposit: Balance) -> Self {
        self.deposit = deposit;
        self
    }

    /// The action for a transaction to `receiver_id`.
    pub fn action(&self) -> Action {
        Action::FunctionCall(Box::new(FunctionCallAction {
            method_name: self.method_name.clone(),
            args: self.args.clone(),
            gas: self.gas,
            deposit: self.deposit,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_every_field() {
        let call = FunctionCall::new("market.test.near".parse().unwrap(), "claim_job")
            .args_json(&serde_json::json!({"job_id": 3, "node_id": 1}))
            .unwrap()
            .gas_tgas(40)
            .deposit(Balance::from_yoctonear(1));
        assert_eq!(call.args, br#"{"job_id":3,"node_id":1}"#);
        let Action::FunctionCall(action) = call.action() else {
            panic!("not a function call")
        };
        assert_eq!(action.method_name, "claim_job");
        assert_eq!(action.gas, Gas::from_teragas(40));
        assert_eq!(action.deposit, Balance::from_yoctonear(1));
        let plain = FunctionCall::new("r.near".parse().unwrap(), "m");
        assert_eq!(plain.args, b"{}");
        assert_eq!(plain.gas, DEFAULT_CALL_GAS);
        assert_eq!(plain.deposit, Balance::ZERO);
    }
}
