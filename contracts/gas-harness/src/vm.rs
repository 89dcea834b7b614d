//! The protocol's VM configuration and the fee arithmetic around a contract's own gas.

use near_parameters::vm::VMKind;
use near_parameters::{ActionCosts, RuntimeConfigStore, RuntimeFeesConfig};
use near_primitives_core::types::Gas;
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::MockContractRuntimeCache;
use near_vm_runner::logic::Config;
use serde_json::Value;
use std::sync::Arc;

/// The current protocol's VM config (wasmtime), its fees, and a compiled-code cache shared by
/// every call (compilation is not charged differently with or without it).
pub struct Vm {
    pub(crate) config: Arc<Config>,
    pub(crate) fees: Arc<RuntimeFeesConfig>,
    pub(crate) cache: MockContractRuntimeCache,
}

impl Default for Vm {
    fn default() -> Self {
        Self::new()
    }
}

impl Vm {
    /// The mainnet runtime config of `PROTOCOL_VERSION`, run by wasmtime.
    pub fn new() -> Self {
        let store = RuntimeConfigStore::new(None);
        let runtime = store.get_config(PROTOCOL_VERSION);
        let mut config = runtime.wasm_config.as_ref().clone();
        config.vm_kind = VMKind::Wasmtime;
        Self {
            config: Arc::new(config),
            fees: Arc::new(runtime.fees.as_ref().clone()),
            cache: MockContractRuntimeCache::default(),
        }
    }

    /// The fee burnt when a receipt carrying `cost` is created: charged to the signer of a
    /// transaction, or to the contract call that creates the receipt (it is then part of that
    /// call's burnt gas). nearcore has two rates: `send_sir` when the receipt's receiver is its
    /// sender, `send_not_sir` otherwise; since protocol 69 they differ for function-call
    /// argument bytes (2,235,934 vs 47,683,715 gas per byte).
    pub fn send_fee(&self, cost: ActionCosts, sender_is_receiver: bool) -> Gas {
        self.fees.fee(cost).send_fee(sender_is_receiver).gas
    }

    /// The fee burnt when the receiver executes a receipt carrying `cost`, before any code runs.
    pub fn exec_fee(&self, cost: ActionCosts) -> Gas {
        self.fees.fee(cost).exec_fee().gas
    }

    /// What a function-call transaction burns before its code runs: the signer's send fees
    /// (converting the transaction into its receipt) plus the receipt's execution fees; both
    /// are a receipt fee, a function-call fee and a per-byte fee on the method name and the
    /// JSON arguments. `sender_is_receiver` picks the send rate (see [`Vm::send_fee`]).
    pub fn function_call_tx_fees(
        &self,
        method: &str,
        args: &Value,
        sender_is_receiver: bool,
    ) -> Gas {
        let send = |c| self.send_fee(c, sender_is_receiver).as_gas();
        let bytes = function_call_bytes(method, args);
        let sent = send(ActionCosts::new_action_receipt)
            + send(ActionCosts::function_call_base)
            + send(ActionCosts::function_call_byte) * bytes;
        Gas::from_gas(sent + self.function_call_exec(method, args).as_gas())
    }

    /// Execution fees of a function-call receipt (charged before its code runs); its send
    /// fees are in the burnt gas of the call that created it.
    pub fn function_call_exec(&self, method: &str, args: &Value) -> Gas {
        self.receipt_exec(
            &[ActionCosts::function_call_base],
            function_call_bytes(method, args),
        )
    }

    /// Execution fees of a receipt that carries only a transfer.
    pub fn transfer_exec(&self) -> Gas {
        self.receipt_exec(&[ActionCosts::transfer], 0)
    }

    /// Execution fees of a receipt a contract created with `actions` (its send fees are already
    /// in the creating call's burnt gas): the receipt fee, each action's fee, and for each
    /// function call the per-byte fee on `function_call_bytes` (method name + arguments).
    pub fn receipt_exec(&self, actions: &[ActionCosts], function_call_bytes: u64) -> Gas {
        let exec = |c| self.exec_fee(c).as_gas();
        let per_call_bytes = exec(ActionCosts::function_call_byte) * function_call_bytes;
        let actions_gas: u64 = actions
            .iter()
            .map(|&c| match c {
                ActionCosts::function_call_base => exec(c) + per_call_bytes,
                _ => exec(c),
            })
            .sum();
        Gas::from_gas(exec(ActionCosts::new_action_receipt) + actions_gas)
    }
}

/// The bytes a function call is charged per byte for: the method name and the JSON arguments
/// (compact, as the harness passes them to the contract).
pub fn function_call_bytes(method: &str, args: &Value) -> u64 {
    (method.len() + args.to_string().len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The current protocol's fees (near-parameters 0.38: parameters.yaml with the diffs of
    // protocols 66 and 69). If nearcore changes them, every BENCH figure moves: this fails first.
    const RECEIPT: u64 = 108_059_500_000;
    const CALL_SEND: u64 = 200_000_000_000;
    const CALL_EXEC: u64 = 780_000_000_000;
    const BYTE_SIR: u64 = 2_235_934;
    const BYTE_NOT_SIR: u64 = 47_683_715;
    const BYTE_EXEC: u64 = 2_235_934;
    const TRANSFER: u64 = 115_123_062_500;

    #[test]
    fn function_call_tx_fees_are_send_plus_exec_per_byte() {
        let vm = Vm::new();
        let args = json!({});
        let bytes = "new".len() as u64 + 2;
        assert_eq!(function_call_bytes("new", &args), bytes);
        let exec = RECEIPT + CALL_EXEC + BYTE_EXEC * bytes;
        assert_eq!(vm.function_call_exec("new", &args).as_gas(), exec);
        assert_eq!(
            vm.function_call_tx_fees("new", &args, true).as_gas(),
            RECEIPT + CALL_SEND + BYTE_SIR * bytes + exec
        );
        assert_eq!(
            vm.function_call_tx_fees("new", &args, false).as_gas(),
            RECEIPT + CALL_SEND + BYTE_NOT_SIR * bytes + exec
        );
    }

    #[test]
    fn receipt_exec_charges_bytes_once_per_function_call() {
        let vm = Vm::new();
        assert_eq!(vm.transfer_exec().as_gas(), RECEIPT + TRANSFER);
        assert_eq!(
            vm.receipt_exec(&[ActionCosts::transfer], 100).as_gas(),
            RECEIPT + TRANSFER,
            "bytes only count with a function call"
        );
        let create = vm.exec_fee(ActionCosts::create_account).as_gas();
        assert_eq!(
            vm.receipt_exec(
                &[
                    ActionCosts::create_account,
                    ActionCosts::transfer,
                    ActionCosts::function_call_base
                ],
                10
            )
            .as_gas(),
            RECEIPT + create + TRANSFER + CALL_EXEC + 10 * BYTE_EXEC
        );
    }
}
