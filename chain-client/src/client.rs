//! The client: views, and transactions signed with an [`Account`], sent with `send_tx`
//! (wait until final), with nonce retries and a bounded wait for the final outcome.

use std::time::{Duration, Instant};

use near_jsonrpc_client::errors::{JsonRpcError, JsonRpcServerError};
use near_jsonrpc_client::{JsonRpcClient, methods};
use near_jsonrpc_primitives::types::query::{QueryResponseKind, RpcQueryError};
use near_jsonrpc_primitives::types::transactions::{RpcTransactionError, TransactionInfo};
use near_primitives::action::Action;
use near_primitives::errors::InvalidTxError;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::{SignedTransaction, Transaction, TransactionV0};
use near_primitives::types::{AccountId, BlockHeight, BlockReference, Finality, FunctionArgs};
use near_primitives::views::{
    AccessKeyList, AccessKeyView, AccountView, FinalExecutionOutcomeView, QueryRequest,
    TxExecutionStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::call::FunctionCall;
use crate::error::{ChainError, Result, panic_text};
use crate::nonce::Nonces;
use crate::outcome::{TxOutcome, decode_json, from_view};
use crate::signer::Account;

/// How long and how often the client retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Longest wait for a transaction's final outcome (sending included).
    pub tx_timeout: Duration,
    /// Pause between status polls of a transaction whose send timed out.
    pub poll_interval: Duration,
    /// Retries after `InvalidNonce` (another sender used the key).
    pub nonce_retries: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            tx_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            nonce_retries: 5,
        }
    }
}

/// A NEAR JSON-RPC client. Cheap to share (`Arc`) between tasks; nonces are coordinated
/// across all tasks using the same client.
#[derive(Debug)]
pub struct ChainClient {
    rpc: JsonRpcClient,
    url: String,
    config: ClientConfig,
    nonces: Nonces,
}

fn rpc_error<E: std::fmt::Debug + std::fmt::Display>(
    method: &'static str,
    url: &str,
    err: &JsonRpcError<E>,
) -> ChainError {
    match err {
        JsonRpcError::TransportError(e) => ChainError::Transport {
            method,
            url: url.to_owned(),
            message: e.to_string(),
        },
        JsonRpcError::ServerError(e) => ChainError::Rpc {
            method,
            message: e.to_string(),
        },
    }
}

impl ChainClient {
    /// A client of the JSON-RPC at `url` (e.g. `http://127.0.0.1:3030`).
    pub fn new(url: &str) -> Self {
        Self::with_config(url, ClientConfig::default())
    }

    pub fn with_config(url: &str, config: ClientConfig) -> Self {
        Self {
            rpc: JsonRpcClient::connect(url),
            url: url.to_owned(),
            config,
            nonces: Nonces::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying near-jsonrpc-client, for methods this crate does not wrap.
    pub fn rpc(&self) -> &JsonRpcClient {
        &self.rpc
    }

    // ----- blocks and views -----

    /// Height and hash of the latest final block.
    pub async fn final_block(&self) -> Result<(BlockHeight, CryptoHash)> {
        let block = self
            .rpc
            .call(methods::block::RpcBlockRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            })
            .await
            .map_err(|e| rpc_error("block", &self.url, &e))?;
        Ok((block.header.height, block.header.hash))
    }

    /// Height of the latest final block.
    pub async fn block_height(&self) -> Result<BlockHeight> {
        Ok(self.final_block().await?.0)
    }

    async fn query(&self, request: QueryRequest) -> Result<QueryResponseKind, QueryFailure> {
        self.rpc
            .call(methods::query::RpcQueryRequest {
                block_reference: BlockReference::Finality(Finality::Final),
                request,
            })
            .await
            .map(|r| r.kind)
            .map_err(|e| match e.handler_error() {
                Some(handler) => QueryFailure::Handler(clone_query_error(handler)),
                None => QueryFailure::Other(rpc_error("query", &self.url, &e)),
            })
    }

    pub async fn view_account(&self, account_id: &AccountId) -> Result<AccountView> {
        let request = QueryRequest::ViewAccount {
            account_id: account_id.clone(),
        };
        match self.query(request).await {
            Ok(QueryResponseKind::ViewAccount(view)) => Ok(view),
            Ok(other) => Err(unexpected("view_account", &other)),
            Err(QueryFailure::Handler(RpcQueryError::UnknownAccount { .. })) => {
                Err(ChainError::UnknownAccount(account_id.clone()))
            }
            Err(e) => Err(e.into_chain("view_account")),
        }
    }

    pub async fn view_access_key(
        &self,
        account_id: &AccountId,
        public_key: &near_crypto::PublicKey,
    ) -> Result<AccessKeyView> {
        let request = QueryRequest::ViewAccessKey {
            account_id: account_id.clone(),
            public_key: public_key.clone(),
        };
        match self.query(request).await {
            Ok(QueryResponseKind::AccessKey(view)) => Ok(view),
            Ok(other) => Err(unexpected("view_access_key", &other)),
            Err(QueryFailure::Handler(RpcQueryError::UnknownAccessKey { .. })) => {
                Err(ChainError::UnknownAccessKey {
                    account_id: account_id.clone(),
                    public_key: public_key.to_string(),
                })
            }
            Err(QueryFailure::Handler(RpcQueryError::UnknownAccount { .. })) => {
                Err(ChainError::UnknownAccount(account_id.clone()))
            }
            Err(e) => Err(e.into_chain("view_access_key")),
        }
    }

    pub async fn view_access_key_list(&self, account_id: &AccountId) -> Result<AccessKeyList> {
        let request = QueryRequest::ViewAccessKeyList {
            account_id: account_id.clone(),
            after_key: None,
            limit: None,
        };
        match self.query(request).await {
            Ok(QueryResponseKind::AccessKeyList(list)) => Ok(list),
            Ok(other) => Err(unexpected("view_access_key_list", &other)),
            Err(QueryFailure::Handler(RpcQueryError::UnknownAccount { .. })) => {
                Err(ChainError::UnknownAccount(account_id.clone()))
            }
            Err(e) => Err(e.into_chain("view_access_key_list")),
        }
    }

    /// A view call with JSON arguments, its result decoded from JSON.
    pub async fn view<T: DeserializeOwned>(
        &self,
        contract: &AccountId,
        method: &str,
        args: &impl Serialize,
    ) -> Result<T> {
        let args = serde_json::to_vec(args).map_err(|e| ChainError::Args {
            method: method.to_owned(),
            message: e.to_string(),
        })?;
        let bytes = self.view_raw(contract, method, args).await?;
        decode_json(&format!("{contract}.{method}"), &bytes)
    }

    /// A view call with raw arguments; the raw result.
    pub async fn view_raw(
        &self,
        contract: &AccountId,
        method: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let request = QueryRequest::CallFunction {
            account_id: contract.clone(),
            method_name: method.to_owned(),
            args: FunctionArgs::from(args),
        };
        match self.query(request).await {
            Ok(QueryResponseKind::CallResult(result)) => Ok(result.result),
            Ok(other) => Err(unexpected("call_function", &other)),
            Err(QueryFailure::Handler(RpcQueryError::ContractExecutionError {
                vm_error, ..
            })) => Err(ChainError::ContractPanic {
                contract: contract.clone(),
                method: method.to_owned(),
                message: panic_text(strip_wasm_execution(&vm_error)),
                tx_hash: None,
            }),
            Err(QueryFailure::Handler(RpcQueryError::UnknownAccount { .. })) => {
                Err(ChainError::UnknownAccount(contract.clone()))
            }
            Err(e) => Err(e.into_chain("call_function")),
        }
    }

    // ----- transactions -----

    /// Calls a contract method and decodes its JSON return value (`()` for none).
    pub async fn call<T: DeserializeOwned>(
        &self,
        signer: &Account,
        call: FunctionCall,
    ) -> Result<T> {
        self.call_outcome(signer, call).await?.json()
    }

    /// Calls a contract method; the whole outcome (value, logs, events, gas).
    pub async fn call_outcome(&self, signer: &Account, call: FunctionCall) -> Result<TxOutcome> {
        let receiver = call.receiver_id.clone();
        self.send_actions(signer, &receiver, vec![call.action()])
            .await
    }

    /// Signs and sends a transaction of `actions` to `receiver`, waits until it is final and
    /// returns its outcome. A stale nonce is retried with the chain's nonce (up to
    /// `nonce_retries` times); a refused transaction or a failed action is an error; a
    /// transaction whose outcome does not arrive in `tx_timeout` is [`ChainError::Timeout`]
    /// (it is never sent twice).
    pub async fn send_actions(
        &self,
        signer: &Account,
        receiver: &AccountId,
        actions: Vec<Action>,
    ) -> Result<TxOutcome> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let nonce = self.next_nonce(signer).await?;
            let (_, block_hash) = self.final_block().await?;
            let signed = sign(signer, receiver, nonce, block_hash, actions.clone());
            let tx_hash = signed.get_hash();
            tracing::debug!(%tx_hash, signer = %signer.account_id(), %receiver, nonce, "sending transaction");
            match self
                .send_and_wait(signed, signer.account_id(), started)
                .await
            {
                Err(ChainError::InvalidTransaction(e))
                    if attempt < self.config.nonce_retries
                        && matches!(*e, InvalidTxError::InvalidNonce { .. }) =>
                {
                    if let InvalidTxError::InvalidNonce { ak_nonce, .. } = *e {
                        tracing::debug!(ak_nonce, attempt, "stale nonce, retrying");
                        self.nonces
                            .observe(signer.account_id(), signer.public_key(), ak_nonce);
                    }
                    attempt += 1;
                }
                Err(ChainError::InvalidTransaction(e)) => {
                    // The key may have changed under us: fetch it again next time.
                    self.nonces.forget(signer.account_id(), signer.public_key());
                    return Err(ChainError::InvalidTransaction(e));
                }
                other => return other,
            }
        }
    }

    /// The final outcome of a transaction sent earlier (e.g. after a [`ChainError::Timeout`]).
    /// `Ok(None)` while it is unknown or not final.
    pub async fn tx_outcome(
        &self,
        tx_hash: CryptoHash,
        sender: &AccountId,
    ) -> Result<Option<TxOutcome>> {
        let request = methods::tx::RpcTransactionStatusRequest {
            transaction_info: TransactionInfo::TransactionId {
                tx_hash,
                sender_account_id: sender.clone(),
            },
            wait_until: TxExecutionStatus::Final,
        };
        match self.rpc.call(request).await {
            Ok(response) => match response.final_execution_outcome {
                Some(view) => from_view(view.into_outcome()).transpose(),
                None => Ok(None),
            },
            Err(e) => match e.handler_error() {
                Some(
                    RpcTransactionError::UnknownTransaction { .. }
                    | RpcTransactionError::TimeoutError(_),
                ) => Ok(None),
                Some(RpcTransactionError::InvalidTransaction { context }) => {
                    Err(ChainError::InvalidTransaction(Box::new(context.clone())))
                }
                _ => Err(rpc_error("tx", &self.url, &e)),
            },
        }
    }

    async fn next_nonce(&self, signer: &Account) -> Result<u64> {
        if let Some(nonce) = self.nonces.next(signer.account_id(), signer.public_key()) {
            return Ok(nonce);
        }
        let key = self
            .view_access_key(signer.account_id(), signer.public_key())
            .await?;
        Ok(self
            .nonces
            .observe_and_next(signer.account_id(), signer.public_key(), key.nonce))
    }

    /// `send_tx` until final; on a send timeout or a lost connection the transaction may be in
    /// flight, so its status is polled (never re-sent) until `tx_timeout` after `started`.
    async fn send_and_wait(
        &self,
        signed: SignedTransaction,
        sender: &AccountId,
        started: Instant,
    ) -> Result<TxOutcome> {
        let tx_hash = signed.get_hash();
        let request = methods::send_tx::RpcSendTransactionRequest {
            signed_transaction: signed,
            wait_until: TxExecutionStatus::Final,
        };
        let remaining = self.config.tx_timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, self.rpc.call(request)).await {
            Ok(Ok(response)) => {
                if let Some(view) = response.final_execution_outcome
                    && let Some(result) = from_view(view.into_outcome())
                {
                    return result;
                }
            }
            Ok(Err(e)) => match e.handler_error() {
                Some(RpcTransactionError::InvalidTransaction { context }) => {
                    return Err(ChainError::InvalidTransaction(Box::new(context.clone())));
                }
                Some(RpcTransactionError::TimeoutError(_)) => {}
                _ => match &e {
                    // The request may not have reached the node, or its answer got lost.
                    JsonRpcError::TransportError(_)
                    | JsonRpcError::ServerError(JsonRpcServerError::InternalError { .. }) => {
                        tracing::warn!(%tx_hash, error = %e, "send_tx failed; polling the transaction");
                    }
                    _ => return Err(rpc_error("send_tx", &self.url, &e)),
                },
            },
            Err(_elapsed) => {}
        }
        self.poll_until_final(tx_hash, sender, started).await
    }

    async fn poll_until_final(
        &self,
        tx_hash: CryptoHash,
        sender: &AccountId,
        started: Instant,
    ) -> Result<TxOutcome> {
        loop {
            if started.elapsed() >= self.config.tx_timeout {
                return Err(ChainError::Timeout {
                    tx_hash,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            match self.tx_outcome(tx_hash, sender).await {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {}
                Err(ChainError::Transport { message, .. }) => {
                    tracing::debug!(%tx_hash, %message, "status poll failed; retrying");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }
}

/// A signed transaction (what `send_tx` carries).
pub fn sign(
    signer: &Account,
    receiver: &AccountId,
    nonce: u64,
    block_hash: CryptoHash,
    actions: Vec<Action>,
) -> SignedTransaction {
    let tx = Transaction::V0(TransactionV0 {
        signer_id: signer.account_id().clone(),
        public_key: signer.public_key().clone(),
        nonce,
        receiver_id: receiver.clone(),
        block_hash,
        actions,
    });
    let (hash, _) = tx.get_hash_and_size();
    SignedTransaction::new(signer.sign(hash.as_ref()), tx)
}

/// Outcomes the final-outcome view from `tx`/`send_tx` can be turned into by other tools.
pub fn outcome_of(view: FinalExecutionOutcomeView) -> Option<Result<TxOutcome>> {
    from_view(view)
}

enum QueryFailure {
    Handler(RpcQueryError),
    Other(ChainError),
}

impl QueryFailure {
    fn into_chain(self, method: &'static str) -> ChainError {
        match self {
            Self::Handler(e) => ChainError::Rpc {
                method,
                message: e.to_string(),
            },
            Self::Other(e) => e,
        }
    }
}

/// `RpcQueryError` is not `Clone`; keep the variants callers match on and the text of others.
fn clone_query_error(e: &RpcQueryError) -> RpcQueryError {
    match e {
        RpcQueryError::UnknownAccount {
            requested_account_id,
            block_height,
            block_hash,
        } => RpcQueryError::UnknownAccount {
            requested_account_id: requested_account_id.clone(),
            block_height: *block_height,
            block_hash: *block_hash,
        },
        RpcQueryError::UnknownAccessKey {
            public_key,
            block_height,
            block_hash,
        } => RpcQueryError::UnknownAccessKey {
            public_key: public_key.clone(),
            block_height: *block_height,
            block_hash: *block_hash,
        },
        RpcQueryError::ContractExecutionError {
            vm_error,
            error,
            block_height,
            block_hash,
        } => RpcQueryError::ContractExecutionError {
            vm_error: vm_error.clone(),
            error: error.clone(),
            block_height: *block_height,
            block_hash: *block_hash,
        },
        other => RpcQueryError::InternalError {
            error_message: other.to_string(),
        },
    }
}

/// neard wraps view panics as `wasm execution failed with error: ExecutionError("...")`;
/// localnet and newer nodes send the message itself.
fn strip_wasm_execution(vm_error: &str) -> &str {
    vm_error
        .strip_prefix("wasm execution failed with error: ")
        .and_then(|s| {
            s.strip_prefix("FunctionCallError(")
                .map(|s| s.strip_suffix(')').unwrap_or(s))
                .or(Some(s))
        })
        .and_then(|s| {
            s.strip_prefix("ExecutionError(\"")
                .and_then(|s| s.strip_suffix("\")"))
                .or(Some(s))
        })
        .unwrap_or(vm_error)
}

fn unexpected(method: &'static str, kind: &QueryResponseKind) -> ChainError {
    ChainError::Rpc {
        method,
        message: format!("unexpected query answer {kind:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_crypto::{KeyType, SecretKey};

    #[test]
    fn signed_transactions_verify_under_the_signers_key() {
        let key = SecretKey::from_random(KeyType::ED25519);
        let account = Account::from_secret_key("alice.test.near".parse().unwrap(), key.clone());
        let call = FunctionCall::new("market.test.near".parse().unwrap(), "claim_job");
        let signed = sign(
            &account,
            &call.receiver_id,
            42,
            CryptoHash::default(),
            vec![call.action()],
        );
        assert_eq!(signed.transaction.nonce().nonce(), 42);
        assert!(
            signed
                .signature
                .verify(signed.get_hash().as_ref(), &key.public_key())
        );
    }

    #[test]
    fn view_panic_texts_lose_their_wrapping() {
        assert_eq!(
            panic_text(strip_wasm_execution(
                "wasm execution failed with error: FunctionCallError(ExecutionError(\"Smart contract panicked: no job 7\"))"
            )),
            "no job 7"
        );
        assert_eq!(
            panic_text(strip_wasm_execution("Smart contract panicked: no job 7")),
            "no job 7"
        );
    }

    #[tokio::test]
    async fn unreachable_rpc_is_a_transport_error() {
        let client = ChainClient::new("http://127.0.0.1:9");
        match client.block_height().await {
            Err(ChainError::Transport { method, .. }) => assert_eq!(method, "block"),
            other => panic!("{other:?}"),
        }
    }
}
