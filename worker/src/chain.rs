//! The node's calls to the registry and the marketplace, through chain-client.
//!
//! Two keys of the operator's account sign for the node (a NEAR function-call key has one
//! receiver):
//! * the attested enclave key, limited to the registry: `register_node`, `reattest`,
//!   `heartbeat` (the registry checks the transaction's signing key against the bundle);
//! * the marketplace key derived from it ([`EnclaveKeys::marketplace_signing_key`]), limited
//!   to the marketplace: `claim_job`, `submit_result`, `respond`, `refresh_node`. The result
//!   itself carries the attested key's signature, which the marketplace verifies.

use std::sync::Arc;

use chain_client::near_crypto::{ED25519PublicKey, PublicKey, Signature};
use chain_client::{Account, AccountId, ChainClient, ChainError, FunctionCall, Gas, TxSigner};
use ed25519_dalek::{Signer as _, SigningKey};
use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{Hash32, InputRef, JobId, ModelId, NodeId, OutputRef, RequestId, Usage};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use serde::Deserialize;
use serde_json::json;

use crate::keys::EnclaveKeys;

/// Gas of `register_node` / `reattest` (dev bundle ~5 Tgas, TDX ~28, +90 per GPU).
pub const GAS_REGISTER: Gas = Gas::from_teragas(300);
/// Gas of `heartbeat` (1.45 Tgas measured).
pub const GAS_HEARTBEAT: Gas = Gas::from_teragas(10);
/// Gas of `claim_job` (20 Tgas documented: registry `get_node` + callback when not cached).
pub const GAS_CLAIM: Gas = Gas::from_teragas(30);
/// Gas of `submit_result` (80 Tgas for a token royalty to a model token).
pub const GAS_SUBMIT: Gas = Gas::from_teragas(100);
/// Gas of `respond` (20 Tgas documented).
pub const GAS_RESPOND: Gas = Gas::from_teragas(30);
/// Gas of `refresh_node` (registry `get_node` + callback).
pub const GAS_REFRESH: Gas = Gas::from_teragas(30);

/// The attested enclave key as a transaction signer (the secret never leaves [`EnclaveKeys`]).
pub struct AttestedSigner(pub Arc<EnclaveKeys>);

impl TxSigner for AttestedSigner {
    fn public_key(&self) -> PublicKey {
        PublicKey::ED25519(ED25519PublicKey(self.0.public().near_key))
    }

    fn sign(&self, message: &[u8]) -> Signature {
        Signature::ED25519(ed25519_dalek::Signature::from_bytes(&self.0.sign(message)))
    }
}

/// An ed25519 signing key (the derived marketplace key) as a transaction signer.
pub struct KeySigner(pub SigningKey);

impl TxSigner for KeySigner {
    fn public_key(&self) -> PublicKey {
        PublicKey::ED25519(ED25519PublicKey(self.0.verifying_key().to_bytes()))
    }

    fn sign(&self, message: &[u8]) -> Signature {
        Signature::ED25519(self.0.sign(message))
    }
}

/// The operator account's two node keys.
pub fn node_accounts(operator: &AccountId, keys: &Arc<EnclaveKeys>) -> (Account, Account) {
    let enclave = Account::new(operator.clone(), Arc::new(AttestedSigner(keys.clone())));
    let market = Account::new(
        operator.clone(),
        Arc::new(KeySigner(keys.marketplace_signing_key())),
    );
    (enclave, market)
}

/// A job as `marketplace.get_job` shows it (the fields the worker reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ChainJob {
    pub job_id: JobId,
    pub user: AccountId,
    pub model_id: ModelId,
    /// In the job's asset: yoctoNEAR, or the token's smallest units.
    pub price_cap: U128,
    /// A token job's conversion rate; `None` for NEAR jobs.
    #[serde(default)]
    pub token_rate: Option<ChainTokenRate>,
    pub deadline_ns: U64,
    pub claim_deadline_ns: U64,
    pub input: InputRef,
    pub input_hash: Hash32,
    /// The user's x25519 key, hex.
    pub user_key: String,
    pub claim: Option<ChainClaim>,
}

/// Smallest token units worth one NEAR (the marketplace's `TokenRate`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ChainTokenRate {
    pub units_per_near: U128,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChainClaim {
    pub node_id: NodeId,
}

/// `marketplace.get_job`'s answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobState {
    Open(ChainJob),
    Claimed(ChainJob),
    Settled(serde_json::Value),
}

/// An agent request as `marketplace.get_request` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct ChainRequest {
    pub request_id: RequestId,
    pub model_id: ModelId,
    pub input: InputRef,
    pub input_hash: Hash32,
    pub answer: Option<serde_json::Value>,
}

/// The registry and marketplace as this node uses them.
#[derive(Clone)]
pub struct NodeChain {
    pub client: Arc<ChainClient>,
    pub enclave: Account,
    pub market: Account,
    pub registry: AccountId,
    pub marketplace: AccountId,
}

impl NodeChain {
    pub fn operator(&self) -> &AccountId {
        self.enclave.account_id()
    }

    fn registry_call(&self, method: &str) -> FunctionCall {
        FunctionCall::new(self.registry.clone(), method)
    }

    fn market_call(&self, method: &str) -> FunctionCall {
        FunctionCall::new(self.marketplace.clone(), method)
    }

    /// `register_node({bundle, details})`, signed by the attested key. Returns the node id.
    pub async fn register_node(
        &self,
        bundle: &serde_json::Value,
        details: &serde_json::Value,
    ) -> Result<NodeId, ChainError> {
        let call = self
            .registry_call("register_node")
            .args_json(&json!({ "bundle": bundle, "details": details }))?
            .gas(GAS_REGISTER);
        self.client.call(&self.enclave, call).await
    }

    /// `reattest({node_id, bundle})`: a fresh bundle renews the attestation lifetime.
    pub async fn reattest(
        &self,
        node_id: NodeId,
        bundle: &serde_json::Value,
    ) -> Result<(), ChainError> {
        let call = self
            .registry_call("reattest")
            .args_json(&json!({ "node_id": node_id, "bundle": bundle }))?
            .gas(GAS_REGISTER);
        self.client.call(&self.enclave, call).await
    }

    pub async fn heartbeat(&self, node_id: NodeId) -> Result<(), ChainError> {
        let call = self
            .registry_call("heartbeat")
            .args_json(&json!({ "node_id": node_id }))?
            .gas(GAS_HEARTBEAT);
        self.client.call(&self.enclave, call).await
    }

    /// The chain's clock: the timestamp of the block a view runs in (the registry's `now_ns`).
    /// Deadlines are judged by it, as the contracts judge them, not by this machine's clock.
    pub async fn chain_now_ns(&self) -> Result<u64, ChainError> {
        let now: U64 = self
            .client
            .view(&self.registry, "now_ns", &json!({}))
            .await?;
        Ok(now.0)
    }

    /// The marketplace's largest inline output (`get_config().max_inline_bytes`).
    pub async fn max_inline_bytes(&self) -> Result<u32, ChainError> {
        #[derive(Deserialize)]
        struct Config {
            max_inline_bytes: u32,
        }
        let config: Config = self
            .client
            .view(&self.marketplace, "get_config", &json!({}))
            .await?;
        Ok(config.max_inline_bytes)
    }

    pub async fn get_node(&self, node_id: NodeId) -> Result<Option<NodeView>, ChainError> {
        self.client
            .view(&self.registry, "get_node", &json!({ "node_id": node_id }))
            .await
    }

    /// The live node whose enclave signs with this worker's attested key.
    pub async fn node_of_this_enclave(&self) -> Result<Option<NodeView>, ChainError> {
        self.client
            .view(
                &self.registry,
                "get_node_by_signer_key",
                &json!({ "signer_key": self.enclave.public_key() }),
            )
            .await
    }

    /// `claim_job`: `Ok(())` if this node now holds the job, `Err(reason)` with the
    /// marketplace's logged reason if it refused (the job stays open).
    pub async fn claim_job(
        &self,
        job_id: JobId,
        node_id: NodeId,
    ) -> Result<Result<(), String>, ChainError> {
        let call = self
            .market_call("claim_job")
            .args_json(&json!({ "job_id": job_id, "node_id": node_id }))?
            .gas(GAS_CLAIM);
        let outcome = self.client.call_outcome(&self.market, call).await?;
        if outcome.json::<bool>()? {
            Ok(Ok(()))
        } else {
            Ok(Err(outcome.logs.join("; ")))
        }
    }

    pub async fn get_job(&self, job_id: JobId) -> Result<Option<JobState>, ChainError> {
        self.client
            .view(&self.marketplace, "get_job", &json!({ "job_id": job_id }))
            .await
    }

    /// Open jobs this node may claim, from the contract itself (no indexer needed).
    pub async fn open_jobs_for_node(
        &self,
        node_id: NodeId,
        from_index: u64,
        limit: u64,
    ) -> Result<Vec<ChainJob>, ChainError> {
        self.client
            .view(
                &self.marketplace,
                "open_jobs_for_node",
                &json!({ "node_id": node_id, "from_index": from_index, "limit": limit }),
            )
            .await
    }

    /// Jobs of this node (any status), oldest first.
    pub async fn jobs_by_node(
        &self,
        node_id: NodeId,
        from_index: u64,
        limit: u64,
    ) -> Result<Vec<JobState>, ChainError> {
        self.client
            .view(
                &self.marketplace,
                "jobs_by_node",
                &json!({ "node_id": node_id, "from_index": from_index, "limit": limit }),
            )
            .await
    }

    pub async fn submit_result(
        &self,
        job_id: JobId,
        output: &OutputRef,
        usage: Usage,
        signature: &[u8; 64],
    ) -> Result<Settlement, ChainError> {
        let call = self
            .market_call("submit_result")
            .args_json(&json!({
                "job_id": job_id,
                "output": output,
                "usage": usage,
                "signature": Base64VecU8(signature.to_vec()),
            }))?
            .gas(GAS_SUBMIT);
        self.client.call(&self.market, call).await
    }

    pub async fn get_request(
        &self,
        request_id: RequestId,
    ) -> Result<Option<ChainRequest>, ChainError> {
        self.client
            .view(
                &self.marketplace,
                "get_request",
                &json!({ "request_id": request_id }),
            )
            .await
    }

    /// Re-reads this node into the marketplace's cache (`respond` needs a fresh one).
    pub async fn refresh_node(&self, node_id: NodeId) -> Result<bool, ChainError> {
        let call = self
            .market_call("refresh_node")
            .args_json(&json!({ "node_id": node_id }))?
            .gas(GAS_REFRESH);
        self.client.call(&self.market, call).await
    }

    pub async fn respond(
        &self,
        request_id: RequestId,
        node_id: NodeId,
        output: &OutputRef,
        usage: Usage,
        signature: &[u8; 64],
    ) -> Result<(), ChainError> {
        let call = self
            .market_call("respond")
            .args_json(&json!({
                "request_id": request_id,
                "node_id": node_id,
                "output": output,
                "usage": usage,
                "signature": Base64VecU8(signature.to_vec()),
            }))?
            .gas(GAS_RESPOND);
        self.client.call(&self.market, call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attested_signer_signs_like_the_enclave_key() {
        let keys = Arc::new(EnclaveKeys::generate().unwrap());
        let operator: AccountId = "op.test.near".parse().unwrap();
        let (enclave, market) = node_accounts(&operator, &keys);
        assert_eq!(
            enclave.public_key().to_string(),
            keys.public().near_public_key()
        );
        assert_ne!(enclave.public_key(), market.public_key());
        let signer = AttestedSigner(keys.clone());
        let sig = signer.sign(b"tx hash");
        assert!(sig.verify(b"tx hash", enclave.public_key()));
        let market_signer = KeySigner(keys.marketplace_signing_key());
        assert!(market_signer.sign(b"x").verify(b"x", market.public_key()));
        assert!(!market_signer.sign(b"x").verify(b"x", enclave.public_key()));
    }

    #[test]
    fn job_views_decode() {
        let job = json!({"status": "open", "job_id": "7", "user": "u.test.near",
            "model_id": "minilm", "asset": {"kind": "near"}, "token_rate": null,
            "price_cap": "100", "storage_deposit": "1", "storage_source": "attached",
            "storage_bytes": "10", "created_ns": "1", "claim_deadline_ns": "2", "deadline_ns": "3",
            "target": {"kind": "node", "node_id": "1"},
            "input": {"kind": "inline", "ciphertext": "AAE="},
            "input_hash": "ab".repeat(32), "user_key": "cd".repeat(32), "claim": null});
        let state: JobState = serde_json::from_value(job).unwrap();
        let JobState::Open(job) = state else {
            panic!("{state:?}")
        };
        assert_eq!(job.job_id, JobId(7));
        assert!(job.claim.is_none());
        let settled: JobState =
            serde_json::from_value(json!({"status": "settled", "job_id": "7"})).unwrap();
        assert!(matches!(settled, JobState::Settled(_)));
    }
}
