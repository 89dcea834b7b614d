//! `External` for near-vm-runner: contract storage on the receipt's overlay, and the receipts a
//! contract creates (promises, yields, resumes), collected for the runtime to emit.

use crate::state::{Overlay, StateRead, keys};
use near_crypto::PublicKey;
use near_primitives::account::{AccessKey, AccessKeyPermission, FunctionCallPermission};
use near_primitives::action::{
    Action, AddKeyAction, CreateAccountAction, DeleteAccountAction, DeleteKeyAction,
    DeployContractAction, DeployGlobalContractAction, FunctionCallAction, StakeAction,
    TransferAction, UseGlobalContractAction,
};
use near_primitives::hash::CryptoHash;
use near_primitives::receipt::DataReceiver;
use near_primitives::types::{AccountId, Balance, Gas, GasWeight, Nonce, NonceIndex};
use near_primitives_core::hash::YieldId;
use near_primitives_core::universal_state_init::{
    DecodeMode, RawStateInit, StateInitError, UniversalStateInitCounts,
};
use near_vm_runner::logic::errors::{HostError, VMLogicError};
use near_vm_runner::logic::types::{
    ActionIndex, GlobalContractDeployMode, GlobalContractIdentifier, ReceiptIndex,
};
use near_vm_runner::logic::{External, StorageAccessTracker, ValuePtr};

/// A receipt a contract asked for, before it gets its id.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub receiver_id: AccountId,
    pub input_data_ids: Vec<CryptoHash>,
    pub output_data_receivers: Vec<DataReceiver>,
    pub actions: Vec<Action>,
    /// (action index, weight) of function calls that share the unused gas.
    pub gas_weights: Vec<(usize, u64)>,
    /// A yield: it waits for its single input data id until resumed or timed out.
    pub is_yield: bool,
    /// Actions the contract asked for that localnet cannot execute (state init, gas keys): the receipt fails with a clear error when it runs.
    pub unsupported: Option<&'static str>,
}

struct Value(Vec<u8>);

impl ValuePtr for Value {
    fn len(&self) -> u32 {
        self.0.len() as u32
    }
    fn deref(&self, _: &mut dyn StorageAccessTracker) -> Result<Vec<u8>, VMLogicError> {
        Ok(self.0.clone())
    }
}

pub struct RuntimeExt<'a, 'b> {
    overlay: &'a mut Overlay<'b>,
    account_id: AccountId,
    /// Seed of the data ids this execution generates.
    action_hash: CryptoHash,
    data_count: u64,
    chain_id: String,
    pub receipts: Vec<NewReceipt>,
    /// `promise_yield_resume` calls that found a live yield: (data id, payload).
    pub resumes: Vec<(CryptoHash, Vec<u8>)>,
}

impl<'a, 'b> RuntimeExt<'a, 'b> {
    pub fn new(
        overlay: &'a mut Overlay<'b>,
        account_id: AccountId,
        action_hash: CryptoHash,
        chain_id: String,
    ) -> Self {
        RuntimeExt {
            overlay,
            account_id,
            action_hash,
            data_count: 0,
            chain_id,
            receipts: Vec::new(),
            resumes: Vec::new(),
        }
    }

    fn data_key(&self, key: &[u8]) -> Vec<u8> {
        keys::data(&self.account_id, key)
    }

    fn push_action(&mut self, index: ReceiptIndex, action: Action) -> usize {
        let receipt = &mut self.receipts[index as usize];
        receipt.actions.push(action);
        receipt.actions.len() - 1
    }

    fn unsupported(&mut self, index: ReceiptIndex, what: &'static str) {
        self.receipts[index as usize].unsupported = Some(what);
    }

    fn new_receipt(&mut self, receiver_id: AccountId, is_yield: bool) -> ReceiptIndex {
        self.receipts.push(NewReceipt {
            receiver_id,
            input_data_ids: Vec::new(),
            output_data_receivers: Vec::new(),
            actions: Vec::new(),
            gas_weights: Vec::new(),
            is_yield,
            unsupported: None,
        });
        (self.receipts.len() - 1) as ReceiptIndex
    }
}

fn function_call_key(
    nonce: Nonce,
    allowance: Option<Balance>,
    receiver_id: AccountId,
    method_names: Vec<Vec<u8>>,
) -> Result<AccessKey, VMLogicError> {
    let method_names = method_names
        .into_iter()
        .map(|name| {
            String::from_utf8(name).map_err(|_| VMLogicError::HostError(HostError::BadUTF8))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AccessKey {
        nonce,
        permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
            allowance,
            receiver_id: receiver_id.to_string(),
            method_names,
        }),
    })
}

impl External for RuntimeExt<'_, '_> {
    fn storage_set(
        &mut self,
        _: &mut dyn StorageAccessTracker,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, VMLogicError> {
        let key = self.data_key(key);
        let old = self.overlay.get_raw(&key);
        self.overlay.set_raw(key, value.to_vec());
        Ok(old)
    }

    fn storage_get<'s>(
        &'s self,
        _: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<Option<Box<dyn ValuePtr + 's>>, VMLogicError> {
        Ok(self
            .overlay
            .get_raw(&self.data_key(key))
            .map(|v| Box::new(Value(v)) as Box<dyn ValuePtr>))
    }

    fn storage_remove(
        &mut self,
        _: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, VMLogicError> {
        let key = self.data_key(key);
        let old = self.overlay.get_raw(&key);
        if old.is_some() {
            self.overlay.remove(key);
        }
        Ok(old)
    }

    fn storage_has_key(
        &mut self,
        _: &mut dyn StorageAccessTracker,
        key: &[u8],
    ) -> Result<bool, VMLogicError> {
        Ok(self.overlay.get_raw(&self.data_key(key)).is_some())
    }

    fn generate_data_id(&mut self) -> CryptoHash {
        self.data_count += 1;
        let mut bytes = self.action_hash.as_ref().to_vec();
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&self.data_count.to_le_bytes());
        CryptoHash::hash_bytes(&bytes)
    }

    fn get_recorded_storage_size(&self) -> usize {
        0
    }

    fn storage_proof_size_before_receipt(&self) -> usize {
        0
    }

    fn validator_stake(&self, _: &AccountId) -> Result<Option<Balance>, VMLogicError> {
        Ok(None)
    }

    fn validator_total_stake(&self) -> Result<Balance, VMLogicError> {
        Ok(Balance::ZERO)
    }

    fn chain_id(&self) -> String {
        self.chain_id.clone()
    }

    fn create_action_receipt(
        &mut self,
        receipt_indices: Vec<ReceiptIndex>,
        receiver_id: AccountId,
    ) -> Result<ReceiptIndex, VMLogicError> {
        let mut input_data_ids = Vec::with_capacity(receipt_indices.len());
        for index in receipt_indices {
            let data_id = self.generate_data_id();
            self.receipts[index as usize]
                .output_data_receivers
                .push(DataReceiver {
                    data_id,
                    receiver_id: receiver_id.clone(),
                });
            input_data_ids.push(data_id);
        }
        let index = self.new_receipt(receiver_id, false);
        self.receipts[index as usize].input_data_ids = input_data_ids;
        Ok(index)
    }

    fn create_promise_yield_receipt(
        &mut self,
        receiver_id: AccountId,
    ) -> Result<(ReceiptIndex, CryptoHash), VMLogicError> {
        let data_id = self.generate_data_id();
        let index = self.new_receipt(receiver_id, true);
        self.receipts[index as usize].input_data_ids = vec![data_id];
        Ok((index, data_id))
    }

    fn create_promise_yield_receipt_with_id(
        &mut self,
        receiver_id: AccountId,
        user_yield_id: YieldId,
    ) -> Result<Option<(ReceiptIndex, CryptoHash)>, VMLogicError> {
        // Deterministic yield ids: the data id is derived from the user's id and the account.
        let mut bytes = self.account_id.as_bytes().to_vec();
        bytes.extend_from_slice(&borsh::to_vec(&user_yield_id).unwrap_or_default());
        let data_id = CryptoHash::hash_bytes(&bytes);
        if self
            .overlay
            .get_raw(&keys::yield_entry(&self.account_id, &data_id))
            .is_some()
        {
            return Ok(None);
        }
        let index = self.new_receipt(receiver_id, true);
        self.receipts[index as usize].input_data_ids = vec![data_id];
        Ok(Some((index, data_id)))
    }

    fn submit_promise_resume_data(
        &mut self,
        data_id: CryptoHash,
        data: Vec<u8>,
    ) -> Result<bool, VMLogicError> {
        let key = keys::yield_entry(&self.account_id, &data_id);
        if self.overlay.get_raw(&key).is_none() {
            return Ok(false);
        }
        // A yield is resumed once: the entry goes with this receipt's state changes.
        self.overlay.remove(key);
        self.resumes.push((data_id, data));
        Ok(true)
    }

    fn submit_promise_resume_data_with_yield_id(
        &mut self,
        user_yield_id: YieldId,
        data: Vec<u8>,
    ) -> Result<bool, VMLogicError> {
        let mut bytes = self.account_id.as_bytes().to_vec();
        bytes.extend_from_slice(&borsh::to_vec(&user_yield_id).unwrap_or_default());
        self.submit_promise_resume_data(CryptoHash::hash_bytes(&bytes), data)
    }

    fn append_action_create_account(&mut self, receipt_index: ReceiptIndex) {
        self.push_action(receipt_index, Action::CreateAccount(CreateAccountAction {}));
    }

    fn append_action_deploy_contract(&mut self, receipt_index: ReceiptIndex, code: Vec<u8>) {
        self.push_action(
            receipt_index,
            Action::DeployContract(DeployContractAction { code }),
        );
    }

    fn append_action_deploy_global_contract(
        &mut self,
        receipt_index: ReceiptIndex,
        code: Vec<u8>,
        mode: GlobalContractDeployMode,
    ) {
        let deploy_mode = match mode {
            GlobalContractDeployMode::CodeHash => {
                near_primitives::action::GlobalContractDeployMode::CodeHash
            }
            GlobalContractDeployMode::AccountId => {
                near_primitives::action::GlobalContractDeployMode::AccountId
            }
        };
        self.push_action(
            receipt_index,
            Action::DeployGlobalContract(DeployGlobalContractAction {
                code: code.into(),
                deploy_mode,
            }),
        );
    }

    fn append_action_use_global_contract(
        &mut self,
        receipt_index: ReceiptIndex,
        contract_id: GlobalContractIdentifier,
    ) {
        self.push_action(
            receipt_index,
            Action::UseGlobalContract(Box::new(UseGlobalContractAction {
                contract_identifier: contract_id.into(),
            })),
        );
    }

    fn append_action_deterministic_state_init(
        &mut self,
        receipt_index: ReceiptIndex,
        _contract_id: GlobalContractIdentifier,
        _amount: Balance,
    ) -> ActionIndex {
        self.unsupported(receipt_index, "DeterministicStateInit");
        0
    }

    fn set_deterministic_state_init_data_entry(
        &mut self,
        receipt_index: ReceiptIndex,
        _action_index: ActionIndex,
        _key: Vec<u8>,
        _value: Vec<u8>,
    ) -> Result<(), VMLogicError> {
        self.unsupported(receipt_index, "DeterministicStateInit");
        Ok(())
    }

    fn check_state_init(&self, _state_init: &RawStateInit) -> Result<(), StateInitError> {
        Err(StateInitError::Malformed)
    }

    fn state_init_send_counts(
        &self,
        _state_init: &RawStateInit,
        _mode: DecodeMode,
    ) -> UniversalStateInitCounts {
        UniversalStateInitCounts::default()
    }

    fn append_action_universal_state_init(
        &mut self,
        receipt_index: ReceiptIndex,
        _state_init: RawStateInit,
        _amount: Balance,
    ) {
        self.unsupported(receipt_index, "UniversalStateInit");
    }

    fn append_action_function_call_weight(
        &mut self,
        receipt_index: ReceiptIndex,
        method_name: Vec<u8>,
        args: Vec<u8>,
        attached_deposit: Balance,
        prepaid_gas: Gas,
        gas_weight: GasWeight,
    ) -> Result<(), VMLogicError> {
        let method_name = String::from_utf8(method_name)
            .map_err(|_| VMLogicError::HostError(HostError::BadUTF8))?;
        let action_index = self.push_action(
            receipt_index,
            Action::FunctionCall(Box::new(FunctionCallAction {
                method_name,
                args,
                gas: prepaid_gas,
                deposit: attached_deposit,
            })),
        );
        if gas_weight.0 > 0 {
            self.receipts[receipt_index as usize]
                .gas_weights
                .push((action_index, gas_weight.0));
        }
        Ok(())
    }

    fn append_action_transfer(&mut self, receipt_index: ReceiptIndex, deposit: Balance) {
        self.push_action(receipt_index, Action::Transfer(TransferAction { deposit }));
    }

    fn append_action_transfer_to_gas_key(
        &mut self,
        receipt_index: ReceiptIndex,
        _public_key: PublicKey,
        _deposit: Balance,
    ) {
        self.unsupported(receipt_index, "TransferToGasKey");
    }

    fn append_action_add_gas_key_with_full_access(
        &mut self,
        receipt_index: ReceiptIndex,
        _public_key: PublicKey,
        _num_nonces: NonceIndex,
    ) {
        self.unsupported(receipt_index, "AddGasKey");
    }

    fn append_action_add_gas_key_with_function_call(
        &mut self,
        receipt_index: ReceiptIndex,
        _public_key: PublicKey,
        _num_nonces: NonceIndex,
        _allowance: Option<Balance>,
        _receiver_id: AccountId,
        _method_names: Vec<Vec<u8>>,
    ) -> Result<(), VMLogicError> {
        self.unsupported(receipt_index, "AddGasKey");
        Ok(())
    }

    fn append_action_stake(
        &mut self,
        receipt_index: ReceiptIndex,
        stake: Balance,
        public_key: PublicKey,
    ) {
        self.push_action(
            receipt_index,
            Action::Stake(Box::new(StakeAction { stake, public_key })),
        );
    }

    fn append_action_add_key_with_full_access(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        nonce: Nonce,
    ) {
        self.push_action(
            receipt_index,
            Action::AddKey(Box::new(AddKeyAction {
                public_key,
                access_key: AccessKey {
                    nonce,
                    permission: AccessKeyPermission::FullAccess,
                },
            })),
        );
    }

    fn append_action_add_key_with_function_call(
        &mut self,
        receipt_index: ReceiptIndex,
        public_key: PublicKey,
        nonce: Nonce,
        allowance: Option<Balance>,
        receiver_id: AccountId,
        method_names: Vec<Vec<u8>>,
    ) -> Result<(), VMLogicError> {
        let access_key = function_call_key(nonce, allowance, receiver_id, method_names)?;
        self.push_action(
            receipt_index,
            Action::AddKey(Box::new(AddKeyAction {
                public_key,
                access_key,
            })),
        );
        Ok(())
    }

    fn append_action_delete_key(&mut self, receipt_index: ReceiptIndex, public_key: PublicKey) {
        self.push_action(
            receipt_index,
            Action::DeleteKey(Box::new(DeleteKeyAction { public_key })),
        );
    }

    fn append_action_delete_account(
        &mut self,
        receipt_index: ReceiptIndex,
        beneficiary_id: AccountId,
    ) {
        self.push_action(
            receipt_index,
            Action::DeleteAccount(DeleteAccountAction { beneficiary_id }),
        );
    }

    fn get_receipt_receiver(&self, receipt_index: ReceiptIndex) -> &AccountId {
        &self.receipts[receipt_index as usize].receiver_id
    }

    fn set_refund_to(&mut self, receipt_index: ReceiptIndex, _refund_to: AccountId) {
        self.unsupported(receipt_index, "refund_to");
    }

    fn post_quantum_keys_enabled(&self) -> bool {
        false
    }
}
