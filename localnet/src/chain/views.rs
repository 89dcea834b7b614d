//! Queries of the state at a block (`query` RPC), with neard's `RpcQueryError` kinds.

use super::{Chain, StoredBlock};
use crate::state::{Overlay, StateRead, keys};
use near_jsonrpc_primitives::types::query::{QueryResponseKind, RpcQueryError, RpcQueryResponse};
use near_primitives::action::GlobalContractIdentifier;
use near_primitives::errors::{CompilationError, FunctionCallError};
use near_primitives::hash::CryptoHash;
use near_primitives::types::{AccountId, BlockReference};
use near_primitives::views::{
    AccessKeyInfoView, AccessKeyList, AccessKeyView, AccountView, CallResult, ContractCodeView,
    QueryRequest, StateItem, ViewStateResult,
};
use near_primitives_core::config::ViewConfig;
use near_vm_runner::logic::VMContext;
use std::sync::Arc;

impl Chain {
    /// A query of the head state.
    pub fn query(&self, request: QueryRequest) -> Result<RpcQueryResponse, RpcQueryError> {
        self.query_at(&BlockReference::latest(), request)
    }

    /// A query of the state at the block `reference` names, answered as neard's view client
    /// does (errors carry that block's height and hash).
    pub fn query_at(
        &self,
        reference: &BlockReference,
        request: QueryRequest,
    ) -> Result<RpcQueryResponse, RpcQueryError> {
        let block = self.query_block(reference)?;
        let mut view = self
            .state_at(block.height)
            .map_err(|e| RpcQueryError::InternalError {
                error_message: e.to_string(),
            })?;
        let (block_height, block_hash) = (block.height, block.hash);
        let unknown = |account_id: &AccountId| RpcQueryError::UnknownAccount {
            requested_account_id: account_id.clone(),
            block_height,
            block_hash,
        };
        let kind = match request {
            QueryRequest::ViewAccount { account_id } => {
                let account = view
                    .account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                QueryResponseKind::ViewAccount(AccountView::from(&account))
            }
            QueryRequest::ViewCode { account_id } => {
                let account = view
                    .account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                let code = view.contract_code(&account_id, &account.contract()).ok_or(
                    RpcQueryError::NoContractCode {
                        contract_account_id: account_id.clone(),
                        block_height,
                        block_hash,
                    },
                )?;
                QueryResponseKind::ViewCode(ContractCodeView {
                    hash: CryptoHash::hash_bytes(&code),
                    code,
                })
            }
            QueryRequest::ViewState {
                account_id, prefix, ..
            } => {
                view.account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                let prefix: &[u8] = prefix.as_ref();
                let full = keys::data(&account_id, prefix);
                let skip = keys::data_prefix(&account_id).len();
                let values = view
                    .scan_prefix(&full)
                    .into_iter()
                    .map(|(k, v)| StateItem {
                        key: k[skip..].to_vec().into(),
                        value: v.into(),
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
                // neard looks the key up without checking the account first.
                let key = view.access_key(&account_id, &public_key).ok_or(
                    RpcQueryError::UnknownAccessKey {
                        public_key: public_key.clone(),
                        block_height,
                        block_hash,
                    },
                )?;
                QueryResponseKind::AccessKey(AccessKeyView::from(key))
            }
            QueryRequest::ViewAccessKeyList { account_id, .. } => {
                view.account(&account_id)
                    .ok_or_else(|| unknown(&account_id))?;
                let prefix = keys::access_key_prefix(&account_id);
                let keys = view
                    .scan_prefix(&prefix)
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let pk: near_crypto::PublicKey =
                            borsh::from_slice(&k[prefix.len()..]).ok()?;
                        let key: near_primitives::account::AccessKey =
                            borsh::from_slice(&v).ok()?;
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
                let result =
                    self.view_call(&mut view, &block, &account_id, &method_name, args.into())?;
                QueryResponseKind::CallResult(result)
            }
            QueryRequest::ViewGlobalContractCode { code_hash } => {
                global_code(&view, GlobalContractIdentifier::CodeHash(code_hash), &block)?
            }
            QueryRequest::ViewGlobalContractCodeByAccountId { account_id } => global_code(
                &view,
                GlobalContractIdentifier::AccountId(account_id),
                &block,
            )?,
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

    /// `call_function`: runs a view method on the state of `block`. A call that fails in the
    /// VM (no code included, as neard: the `CodeDoesNotExist` compilation error) is a
    /// `ContractExecutionError` whose `vm_error` is neard's message.
    fn view_call(
        &self,
        view: &mut Overlay<'_>,
        block: &StoredBlock,
        account_id: &AccountId,
        method_name: &str,
        args: Vec<u8>,
    ) -> Result<CallResult, RpcQueryError> {
        let (block_height, block_hash) = (block.height, block.hash);
        let execution_error = |error: FunctionCallError| RpcQueryError::ContractExecutionError {
            vm_error: format!("wasm execution failed with error: {error:?}"),
            error,
            block_height,
            block_hash,
        };
        let account = view
            .account(account_id)
            .ok_or(RpcQueryError::UnknownAccount {
                requested_account_id: account_id.clone(),
                block_height,
                block_hash,
            })?;
        let runtime = &self.runtime;
        let context = VMContext {
            current_account_id: account_id.clone(),
            signer_account_id: account_id.clone(),
            signer_account_pk: vec![],
            predecessor_account_id: account_id.clone(),
            refund_to_account_id: account_id.clone(),
            input: args.into(),
            promise_results: Arc::from(Vec::new()),
            block_height: block.height,
            block_timestamp: block.timestamp_ns,
            epoch_height: block.epoch_height,
            account_balance: account.amount(),
            account_locked_balance: account.locked(),
            storage_usage: account.storage_usage(),
            account_contract: account.contract().into_owned(),
            attached_deposit: near_primitives::types::Balance::ZERO,
            prepaid_gas: runtime.wasm_config.limit_config.max_gas_burnt,
            random_seed: block.hash.as_ref().to_vec(),
            view_config: Some(ViewConfig {
                max_gas_burnt: runtime.wasm_config.limit_config.max_gas_burnt,
            }),
            output_data_receivers: vec![],
        };
        let contract = account.contract();
        let Some(code) = crate::runtime::actions::account_code(&*view, account_id, &contract)
        else {
            return Err(execution_error(FunctionCallError::CompilationError(
                CompilationError::CodeDoesNotExist {
                    account_id: account_id.clone(),
                },
            )));
        };
        let gas_counter = context.make_gas_counter(&runtime.wasm_config);
        let prepared = near_vm_runner::prepare(
            &code,
            runtime.wasm_config.clone(),
            Some(runtime.cache.as_ref()),
            gas_counter,
            method_name,
        );
        let mut ext = crate::runtime::ext::RuntimeExt::new(
            view,
            account_id.clone(),
            CryptoHash::hash_bytes(block.hash.as_ref()),
            runtime.chain_id.clone(),
        );
        let outcome =
            near_vm_runner::run(prepared, &mut ext, &context, runtime.config.fees.clone())
                .map_err(|e| RpcQueryError::InternalError {
                    error_message: format!("VM runner error: {e:?}"),
                })?;
        if let Some(err) = outcome.aborted {
            return Err(execution_error(crate::runtime::actions::vm_error(err)));
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

/// `view_global_contract_code[_by_account_id]`: the code stored under a global identifier.
fn global_code(
    view: &Overlay<'_>,
    identifier: GlobalContractIdentifier,
    block: &StoredBlock,
) -> Result<QueryResponseKind, RpcQueryError> {
    let code = view.get_raw(&keys::global_code(&identifier)).ok_or(
        RpcQueryError::NoGlobalContractCode {
            identifier,
            block_height: block.height,
            block_hash: block.hash,
        },
    )?;
    Ok(QueryResponseKind::ViewCode(ContractCodeView {
        hash: CryptoHash::hash_bytes(&code),
        code,
    }))
}
