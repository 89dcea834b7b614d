//! Queries of the head state (`query` RPC), with neard's `RpcQueryError` kinds.

use super::Chain;
use crate::state::{StateRead, keys};
use near_jsonrpc_primitives::types::query::{QueryResponseKind, RpcQueryError, RpcQueryResponse};
use near_primitives::action::GlobalContractIdentifier;
use near_primitives::errors::FunctionCallError;
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;
use near_primitives::views::{
    AccessKeyInfoView, AccessKeyList, AccessKeyView, AccountView, CallResult, ContractCodeView,
    QueryRequest, StateItem, ViewStateResult,
};
use near_primitives_core::config::ViewConfig;
use near_vm_runner::logic::VMContext;
use std::sync::Arc;

impl Chain {
    pub fn query(&self, request: QueryRequest) -> Result<RpcQueryResponse, RpcQueryError> {
        let head = self.head();
        let (block_height, block_hash) = (head.height, head.hash);
        let unknown = |account_id: &AccountId| RpcQueryError::UnknownAccount {
            requested_account_id: account_id.clone(),
            block_height,
            block_hash,
        };
        let kind = match request {
            QueryRequest::ViewAccount { account_id } => {
                let account = self
                    .state
                    .account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                QueryResponseKind::ViewAccount(AccountView::from(&account))
            }
            QueryRequest::ViewCode { account_id } => {
                let account = self
                    .state
                    .account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                let code = self
                    .state
                    .contract_code(&account_id, &account.contract())
                    .ok_or(RpcQueryError::NoContractCode {
                        contract_account_id: account_id.clone(),
                        block_height,
                        block_hash,
                    })?;
                QueryResponseKind::ViewCode(ContractCodeView {
                    hash: CryptoHash::hash_bytes(&code),
                    code,
                })
            }
            QueryRequest::ViewState {
                account_id, prefix, ..
            } => {
                self.state
                    .account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                let prefix: &[u8] = prefix.as_ref();
                let full = keys::data(&account_id, prefix);
                let skip = keys::data_prefix(&account_id).len();
                let values = self
                    .state
                    .scan_prefix(&full)
                    .map(|(k, v)| StateItem {
                        key: k[skip..].to_vec().into(),
                        value: v.clone().into(),
                    })
                    .collect();
                QueryResponseKind::ViewState(ViewStateResult {
                    values,
                    proof: vec![],
                    last_key: None,
                })
            }
            QueryRequest::ViewAccessKey {
                account_id,
                public_key,
            } => {
                let key = self.state.access_key(&account_id, &public_key).ok_or(
                    RpcQueryError::UnknownAccessKey {
                        public_key: public_key.clone(),
                        block_height,
                        block_hash,
                    },
                )?;
                QueryResponseKind::AccessKey(AccessKeyView::from(key))
            }
            QueryRequest::ViewAccessKeyList { account_id, .. } => {
                self.state
                    .account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                let prefix = keys::access_key_prefix(&account_id);
                let keys = self
                    .state
                    .scan_prefix(&prefix)
                    .filter_map(|(k, v)| {
                        let pk: near_crypto::PublicKey =
                            borsh::from_slice(&k[prefix.len()..]).ok()?;
                        let key: near_primitives::account::AccessKey = borsh::from_slice(v).ok()?;
                        Some(AccessKeyInfoView::new(pk, AccessKeyView::from(key)))
                    })
                    .collect();
                QueryResponseKind::AccessKeyList(AccessKeyList {
                    keys,
                    last_key: None,
                })
            }
            QueryRequest::CallFunction {
                account_id,
                method_name,
                args,
            } => {
                let result = self.view_call(
                    &account_id,
                    &method_name,
                    args.into(),
                    block_height,
                    block_hash,
                )?;
                QueryResponseKind::CallResult(result)
            }
            QueryRequest::ViewGlobalContractCode { code_hash } => {
                self.global_code(GlobalContractIdentifier::CodeHash(code_hash), head)?
            }
            QueryRequest::ViewGlobalContractCodeByAccountId { account_id } => {
                self.global_code(GlobalContractIdentifier::AccountId(account_id), head)?
            }
            other => {
                return Err(RpcQueryError::InternalError {
                    error_message: format!("localnet does not serve this query: {other:?}"),
                });
            }
        };
        Ok(RpcQueryResponse {
            kind,
            block_height,
            block_hash,
        })
    }

    /// `view_global_contract_code[_by_account_id]`: the code stored under a global identifier.
    fn global_code(
        &self,
        identifier: GlobalContractIdentifier,
        head: &super::StoredBlock,
    ) -> Result<QueryResponseKind, RpcQueryError> {
        let code = self.state.get_raw(&keys::global_code(&identifier)).ok_or(
            RpcQueryError::NoGlobalContractCode {
                identifier,
                block_height: head.height,
                block_hash: head.hash,
            },
        )?;
        Ok(QueryResponseKind::ViewCode(ContractCodeView {
            hash: CryptoHash::hash_bytes(&code),
            code,
        }))
    }

    fn view_call(
        &self,
        account_id: &AccountId,
        method_name: &str,
        args: Vec<u8>,
        block_height: u64,
        block_hash: CryptoHash,
    ) -> Result<CallResult, RpcQueryError> {
        let account = self
            .state
            .account(account_id)
            .ok_or(RpcQueryError::UnknownAccount {
                requested_account_id: account_id.clone(),
                block_height,
                block_hash,
            })?;
        let contract = account.contract();
        let code = crate::runtime::actions::account_code(&self.state, account_id, &contract)
            .ok_or(RpcQueryError::NoContractCode {
                contract_account_id: account_id.clone(),
                block_height,
                block_hash,
            })?;
        let head = self.head();
        let runtime = &self.runtime;
        let context = VMContext {
            current_account_id: account_id.clone(),
            signer_account_id: account_id.clone(),
            signer_account_pk: vec![],
            predecessor_account_id: account_id.clone(),
            refund_to_account_id: account_id.clone(),
            input: args.into(),
            promise_results: Arc::from(Vec::new()),
            block_height: head.height,
            block_timestamp: head.timestamp_ns,
            epoch_height: head.epoch_height,
            account_balance: account.amount(),
            account_locked_balance: account.locked(),
            storage_usage: account.storage_usage(),
            account_contract: account.contract().into_owned(),
            attached_deposit: near_primitives::types::Balance::ZERO,
            prepaid_gas: runtime.wasm_config.limit_config.max_gas_burnt,
            random_seed: head.hash.as_ref().to_vec(),
            view_config: Some(ViewConfig {
                max_gas_burnt: runtime.wasm_config.limit_config.max_gas_burnt,
            }),
            output_data_receivers: vec![],
        };
        let mut overlay = self.state.overlay();
        let mut ext = crate::runtime::ext::RuntimeExt::new(
            &mut overlay,
            account_id.clone(),
            CryptoHash::hash_bytes(head.hash.as_ref()),
            runtime.chain_id.clone(),
        );
        let gas_counter = context.make_gas_counter(&runtime.wasm_config);
        let prepared = near_vm_runner::prepare(
            &code,
            runtime.wasm_config.clone(),
            Some(runtime.cache.as_ref()),
            gas_counter,
            method_name,
        );
        let outcome =
            near_vm_runner::run(prepared, &mut ext, &context, runtime.config.fees.clone())
                .map_err(|e| RpcQueryError::InternalError {
                    error_message: format!("VM runner error: {e:?}"),
                })?;
        if let Some(err) = outcome.aborted {
            let error: FunctionCallError = crate::runtime::actions::vm_error(err);
            return Err(RpcQueryError::ContractExecutionError {
                vm_error: format!("{error:?}"),
                error,
                block_height,
                block_hash,
            });
        }
        let result = match outcome.return_data {
            near_vm_runner::logic::ReturnData::Value(v) => v,
            _ => vec![],
        };
        Ok(CallResult {
            result,
            logs: outcome.logs,
        })
    }
}
