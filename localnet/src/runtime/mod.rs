//! The runtime: transactions become receipts, receipts run their actions on nearcore's VM.
//! It follows nearcore's `node-runtime` (not published on crates.io) rule by rule, on the
//! protocol types of `near-primitives` and the fees of `near-parameters`.

pub(crate) mod actions;
pub mod ext;
pub mod fees;
pub mod global;
mod verify;

pub use verify::verify_and_charge;

use crate::state::{State, StateRead, keys};
use ext::NewReceipt;
use near_parameters::RuntimeConfig;
use near_primitives::account::Account;
use near_primitives::action::Action;
use near_primitives::errors::{ActionError, ActionErrorKind, TxExecutionError};
use near_primitives::hash::CryptoHash;
use near_primitives::receipt::{ActionReceipt, DataReceipt, Receipt, ReceiptEnum, ReceiptV0};
use near_primitives::types::{AccountId, Balance, Gas};
use near_primitives::utils::{
    create_action_hash_from_receipt_id, create_receipt_id_from_receipt_id,
};
use near_primitives::views::{
    ExecutionMetadataView, ExecutionOutcomeView, ExecutionStatusView, StateChangeCauseView,
};
use near_vm_runner::ContractRuntimeCache;
use near_vm_runner::logic::types::PromiseResult;
use std::sync::Arc;

/// The block a receipt or transaction is applied in.
#[derive(Clone, Debug)]
pub struct BlockContext {
    pub height: u64,
    pub hash: CryptoHash,
    pub prev_hash: CryptoHash,
    pub timestamp_ns: u64,
    pub epoch_height: u64,
    pub gas_price: Balance,
    pub random_seed: CryptoHash,
}

/// Protocol configuration and the compiled-contract cache.
pub struct Runtime {
    pub config: Arc<RuntimeConfig>,
    pub wasm_config: Arc<near_parameters::vm::Config>,
    pub cache: Box<dyn ContractRuntimeCache>,
    pub chain_id: String,
}

/// What applying one receipt produced.
pub struct Applied {
    pub outcome: ExecutionOutcomeView,
    /// Receipts to deliver: action receipts, data, resumes, refunds.
    pub receipts: Vec<Receipt>,
}

fn system() -> AccountId {
    "system"
        .parse()
        .unwrap_or_else(|_| unreachable!("`system` is a valid account id"))
}

pub fn outcome(
    executor_id: AccountId,
    status: ExecutionStatusView,
    gas_burnt: Gas,
    gas_price: Balance,
    logs: Vec<String>,
    receipt_ids: Vec<CryptoHash>,
) -> ExecutionOutcomeView {
    ExecutionOutcomeView {
        logs,
        receipt_ids,
        gas_burnt,
        tokens_burnt: fees::gas_cost(gas_burnt, gas_price),
        executor_id,
        status,
        metadata: ExecutionMetadataView::default(),
    }
}

/// The running totals of one receipt's execution.
pub(crate) struct Execution {
    pub gas_burnt: Gas,
    pub gas_used: Gas,
    pub logs: Vec<String>,
    pub new_receipts: Vec<NewReceipt>,
    pub resumes: Vec<(CryptoHash, Vec<u8>)>,
    pub return_data: near_vm_runner::logic::ReturnData,
    /// Receipts created directly by actions (delegate, delete account): already complete.
    pub direct_receipts: Vec<(AccountId, Vec<Action>)>,
    /// Who acts on the receiver: the predecessor, or the receiver once it was created here.
    pub actor_id: AccountId,
    /// Gas the VM burnt in function calls: a share of it rewards the contract.
    pub function_call_burnt: Gas,
    /// Balance burnt for the storage of global contracts deployed by this receipt.
    pub storage_burnt: Balance,
    /// Global contract distribution receipts (they have no outcome of their own).
    pub distributions: Vec<Receipt>,
}

impl Execution {
    pub fn burn(&mut self, gas: Gas) {
        self.gas_burnt = self.gas_burnt.checked_add(gas).unwrap_or(Gas::MAX);
        self.gas_used = self.gas_used.checked_add(gas).unwrap_or(Gas::MAX);
    }
}

impl Runtime {
    /// Applies a receipt that has all its input data. Commits state on success only.
    pub fn apply_action_receipt(
        &self,
        state: &mut State,
        receipt: &Receipt,
        action: &ActionReceipt,
        promise_results: Arc<[PromiseResult]>,
        block: &BlockContext,
    ) -> Applied {
        let fees = &self.config.fees;
        let receiver = receipt.receiver_id().clone();
        let receipt_id = *receipt.receipt_id();
        let mut exec = Execution {
            gas_burnt: Gas::ZERO,
            gas_used: Gas::ZERO,
            logs: Vec::new(),
            new_receipts: Vec::new(),
            resumes: Vec::new(),
            return_data: near_vm_runner::logic::ReturnData::None,
            direct_receipts: Vec::new(),
            actor_id: receipt.predecessor_id().clone(),
            function_call_burnt: Gas::ZERO,
            storage_burnt: Balance::ZERO,
            distributions: Vec::new(),
        };
        exec.burn(fees::receipt_exec_fee(fees));

        let mut overlay = state.overlay();
        let mut account: Option<Account> = overlay.account(&receiver);
        let mut result: Result<(), ActionError> = Ok(());
        let last = action.actions.len().saturating_sub(1);
        for (index, act) in action.actions.iter().enumerate() {
            exec.burn(fees::exec_fee(fees, act));
            let action_hash = create_action_hash_from_receipt_id(&receipt_id, block.height, index);
            let ctx = actions::ActionContext {
                runtime: self,
                receipt,
                action_receipt: action,
                block,
                action_hash,
                promise_results: promise_results.clone(),
                is_last: index == last,
            };
            if let Err(kind) =
                actions::apply_action(&ctx, act, &mut overlay, &mut account, &mut exec)
            {
                result = Err(ActionError {
                    index: Some(index as u64),
                    kind,
                });
                break;
            }
        }
        if result.is_ok()
            && let Some(acc) = &account
            && let Err(amount) = actions::check_storage_stake(&self.config, acc)
        {
            result = Err(ActionError {
                index: None,
                kind: ActionErrorKind::LackBalanceForState {
                    account_id: receiver.clone(),
                    amount,
                },
            });
        }

        let mut receipts = Vec::new();
        let mut receipt_ids = Vec::new();
        let mut next_id = {
            let mut n = 0usize;
            move || {
                n += 1;
                create_receipt_id_from_receipt_id(&receipt_id, block.height, n - 1)
            }
        };

        let status = match &result {
            Ok(()) => {
                if let Some(acc) = &account {
                    overlay.set_account(&receiver, acc);
                }
                let changes = overlay.into_changes();
                state.set_cause(Some(StateChangeCauseView::ReceiptProcessing {
                    receipt_hash: receipt_id,
                }));
                state.commit(changes);
                let ids: Vec<CryptoHash> = exec.new_receipts.iter().map(|_| next_id()).collect();
                let status = match &exec.return_data {
                    near_vm_runner::logic::ReturnData::Value(v) => {
                        ExecutionStatusView::SuccessValue(v.clone())
                    }
                    near_vm_runner::logic::ReturnData::ReceiptIndex(i) => {
                        let i = *i as usize;
                        // The returned promise answers whoever waited for this receipt.
                        if let Some(r) = exec.new_receipts.get_mut(i) {
                            r.output_data_receivers
                                .extend(action.output_data_receivers.iter().cloned());
                        }
                        ids.get(i)
                            .map(|id| ExecutionStatusView::SuccessReceiptId(*id))
                            .unwrap_or(ExecutionStatusView::SuccessValue(vec![]))
                    }
                    near_vm_runner::logic::ReturnData::None => {
                        ExecutionStatusView::SuccessValue(vec![])
                    }
                };
                let data = match &exec.return_data {
                    near_vm_runner::logic::ReturnData::Value(v) => Some(Some(v.clone())),
                    near_vm_runner::logic::ReturnData::None => Some(Some(vec![])),
                    near_vm_runner::logic::ReturnData::ReceiptIndex(_) => None,
                };
                for (new, id) in std::mem::take(&mut exec.new_receipts).into_iter().zip(ids) {
                    receipt_ids.push(id);
                    let r = self.new_action_receipt(&receiver, id, action, new);
                    receipts.push(r);
                }
                for (to, actions) in std::mem::take(&mut exec.direct_receipts) {
                    let id = next_id();
                    receipt_ids.push(id);
                    receipts.push(Receipt::V0(ReceiptV0 {
                        predecessor_id: receiver.clone(),
                        receiver_id: to,
                        receipt_id: id,
                        receipt: ReceiptEnum::Action(ActionReceipt {
                            signer_id: action.signer_id.clone(),
                            signer_public_key: action.signer_public_key.clone(),
                            gas_price: action.gas_price,
                            output_data_receivers: vec![],
                            input_data_ids: vec![],
                            actions,
                        }),
                    }));
                }
                // Not listed in the outcome's receipt ids: a distribution never gets an
                // outcome, and the transaction is complete without it (as on nearcore).
                for distribution in std::mem::take(&mut exec.distributions) {
                    receipts.push(with_id(distribution, next_id()));
                }
                for (data_id, payload) in std::mem::take(&mut exec.resumes) {
                    receipts.push(data_receipt(
                        &receiver,
                        &receiver,
                        next_id(),
                        data_id,
                        Some(payload),
                        true,
                    ));
                }
                if let Some(data) = data {
                    for dr in &action.output_data_receivers {
                        receipts.push(data_receipt(
                            &receiver,
                            &dr.receiver_id,
                            next_id(),
                            dr.data_id,
                            data.clone(),
                            false,
                        ));
                    }
                }
                status
            }
            Err(e) => {
                for dr in &action.output_data_receivers {
                    receipts.push(data_receipt(
                        &receiver,
                        &dr.receiver_id,
                        next_id(),
                        dr.data_id,
                        None,
                        false,
                    ));
                }
                ExecutionStatusView::Failure(TxExecutionError::ActionError(e.clone()))
            }
        };

        // The contract earns its share of the gas its code burnt, success or not.
        state.set_cause(Some(StateChangeCauseView::ActionReceiptGasReward {
            receipt_hash: receipt_id,
        }));
        self.reward_contract(state, &receiver, exec.function_call_burnt, action.gas_price);

        // Refunds: deposits of a failed receipt to its predecessor, unused gas to the signer.
        if receipt.predecessor_id() != &system() {
            let prepaid = fees::total_prepaid_gas(&action.actions)
                .checked_add(fees::total_prepaid_exec_fees(fees, &action.actions))
                .and_then(|g| g.checked_add(fees::receipt_exec_fee(fees)))
                .unwrap_or(Gas::MAX);
            let spent = if result.is_ok() {
                exec.gas_used
            } else {
                exec.gas_burnt
            };
            let gross = prepaid.checked_sub(spent).unwrap_or(Gas::ZERO);
            let penalty = fees.gas_penalty_for_gas_refund(gross);
            exec.gas_burnt = exec.gas_burnt.checked_add(penalty).unwrap_or(Gas::MAX);
            let gas_refund = fees::gas_cost(gross.saturating_sub(penalty), action.gas_price);
            if result.is_err() {
                let deposit = fees::total_deposit(&action.actions);
                if !deposit.is_zero() {
                    let id = next_id();
                    receipt_ids.push(id);
                    receipts.push(with_id(
                        Receipt::new_balance_refund(receipt.balance_refund_receiver(), deposit),
                        id,
                    ));
                }
            }
            if !gas_refund.is_zero() {
                let id = next_id();
                receipt_ids.push(id);
                receipts.push(with_id(
                    Receipt::new_gas_refund(
                        &action.signer_id,
                        gas_refund,
                        action.signer_public_key.clone(),
                    ),
                    id,
                ));
            }
        }

        let mut outcome = outcome(
            receiver,
            status,
            exec.gas_burnt,
            action.gas_price,
            exec.logs,
            receipt_ids,
        );
        // Global contract storage is burnt too, and counted in the outcome (nearcore 0.38).
        if result.is_ok() {
            outcome.tokens_burnt = outcome.tokens_burnt.saturating_add(exec.storage_burnt);
        }
        Applied { outcome, receipts }
    }

    fn reward_contract(&self, state: &mut State, receiver: &AccountId, burnt: Gas, price: Balance) {
        let ratio = self.config.fees.burnt_gas_reward;
        if burnt == Gas::ZERO || *ratio.numer() <= 0 {
            return;
        }
        let reward_gas =
            u128::from(burnt.as_gas()) * (*ratio.numer() as u128) / (*ratio.denom() as u128);
        let reward = Balance::from_yoctonear(reward_gas.saturating_mul(price.as_yoctonear()));
        let mut overlay = state.overlay();
        if let Some(mut account) = overlay.account(receiver) {
            account.set_amount(account.amount().saturating_add(reward));
            overlay.set_account(receiver, &account);
            let changes = overlay.into_changes();
            state.commit(changes);
        }
    }

    fn new_action_receipt(
        &self,
        predecessor: &AccountId,
        receipt_id: CryptoHash,
        parent: &ActionReceipt,
        new: NewReceipt,
    ) -> Receipt {
        let actions = new.actions;
        let action_receipt = ActionReceipt {
            signer_id: parent.signer_id.clone(),
            signer_public_key: parent.signer_public_key.clone(),
            gas_price: parent.gas_price,
            output_data_receivers: new.output_data_receivers,
            input_data_ids: new.input_data_ids,
            actions,
        };
        Receipt::V0(ReceiptV0 {
            predecessor_id: predecessor.clone(),
            receiver_id: new.receiver_id,
            receipt_id,
            receipt: if new.is_yield {
                ReceiptEnum::PromiseYield(action_receipt)
            } else {
                ReceiptEnum::Action(action_receipt)
            },
        })
    }
}

fn with_id(mut receipt: Receipt, id: CryptoHash) -> Receipt {
    receipt.set_receipt_id(id);
    receipt
}

fn data_receipt(
    from: &AccountId,
    to: &AccountId,
    receipt_id: CryptoHash,
    data_id: CryptoHash,
    data: Option<Vec<u8>>,
    resume: bool,
) -> Receipt {
    let data = DataReceipt { data_id, data };
    Receipt::V0(ReceiptV0 {
        predecessor_id: from.clone(),
        receiver_id: to.clone(),
        receipt_id,
        receipt: if resume {
            ReceiptEnum::PromiseResume(data)
        } else {
            ReceiptEnum::Data(data)
        },
    })
}

/// A resume with no payload: what a yield receives when it times out.
pub fn yield_timeout_receipt(account: &AccountId, data_id: CryptoHash, height: u64) -> Receipt {
    let id = create_receipt_id_from_receipt_id(&data_id, height, 0);
    data_receipt(account, account, id, data_id, None, true)
}

/// Keys of the bookkeeping of receipts waiting for data.
pub fn postponed_key(receipt_id: &CryptoHash) -> Vec<u8> {
    keys::by_hash(keys::POSTPONED, receipt_id)
}
