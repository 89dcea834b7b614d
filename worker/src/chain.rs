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

use chain_client::contracts::{MarketplaceClient, ModelTokenClient, RegistryClient};
use chain_client::near_crypto::{ED25519PublicKey, PublicKey, Signature};
use chain_client::{Account, AccountId, ChainClient, ChainError, TxSigner};
use ed25519_dalek::{Signer as _, SigningKey};
use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::marketplace::{Job, JobView, Request};
use enclave_cloud_common::interfaces::registry::NodeUpdate;
use enclave_cloud_common::{Asset, JobId, NodeId, OutputRef, RequestId, ResultReceipt, Usage};

use crate::keys::EnclaveKeys;

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

    pub fn registry_client(&self) -> RegistryClient<'_> {
        RegistryClient::new(&self.client, self.registry.clone())
    }

    pub fn market_client(&self) -> MarketplaceClient<'_> {
        MarketplaceClient::new(&self.client, self.marketplace.clone())
    }

    /// `register_node({bundle, details})`, signed by the attested key. Returns the node id.
    pub async fn register_node(
        &self,
        bundle: &serde_json::Value,
        details: NodeUpdate,
    ) -> Result<NodeId, ChainError> {
        self.registry_client()
            .register_node(bundle, Some(details))?
            .send(&self.enclave)
            .await
    }

    /// `reattest({node_id, bundle})`: a fresh bundle renews the attestation lifetime.
    pub async fn reattest(
        &self,
        node_id: NodeId,
        bundle: &serde_json::Value,
    ) -> Result<(), ChainError> {
        self.registry_client()
            .reattest(node_id, bundle)?
            .send(&self.enclave)
            .await
    }

    pub async fn heartbeat(&self, node_id: NodeId) -> Result<(), ChainError> {
        self.registry_client()
            .heartbeat(node_id)?
            .send(&self.enclave)
            .await
    }

    /// `units` of `asset` for the logs: NEAR with its decimals (`0.000275 NEAR`), a token with
    /// its `ft_metadata` decimals and symbol (its smallest units and account when the token
    /// does not answer).
    pub async fn amount_text(&self, asset: &Asset, units: u128) -> String {
        match asset {
            Asset::Near => chain_client::format_near(units),
            Asset::Ft { token } => {
                match ModelTokenClient::new(&self.client, token.clone())
                    .ft_metadata()
                    .await
                {
                    Ok(m) => chain_client::format_amount(units, m.decimals, &m.symbol),
                    Err(_) => format!("{units} units of {token}"),
                }
            }
        }
    }

    /// The chain's clock: the timestamp of the block a view runs in (the registry's `now_ns`).
    /// Deadlines are judged by it, as the contracts judge them, not by this machine's clock.
    pub async fn chain_now_ns(&self) -> Result<u64, ChainError> {
        self.registry_client().now_ns().await
    }

    /// The marketplace's largest inline output (`get_config().max_inline_bytes`).
    pub async fn max_inline_bytes(&self) -> Result<u32, ChainError> {
        Ok(self.market_client().get_config().await?.max_inline_bytes)
    }

    pub async fn get_node(&self, node_id: NodeId) -> Result<Option<NodeView>, ChainError> {
        self.registry_client().get_node(node_id).await
    }

    /// The live node whose enclave signs with this worker's attested key.
    pub async fn node_of_this_enclave(&self) -> Result<Option<NodeView>, ChainError> {
        let key = self.enclave.public_key().to_string();
        let key = key.parse().map_err(|e| ChainError::Args {
            method: "get_node_by_signer_key".to_owned(),
            message: format!("{key}: {e:?}"),
        })?;
        self.registry_client().get_node_by_signer_key(&key).await
    }

    /// `claim_job`: `Ok(())` if this node now holds the job, `Err(reason)` with the
    /// marketplace's logged reason if it refused (the job stays open).
    pub async fn claim_job(
        &self,
        job_id: JobId,
        node_id: NodeId,
    ) -> Result<Result<(), String>, ChainError> {
        let (claimed, outcome) = self
            .market_client()
            .claim_job(job_id, node_id)?
            .send_outcome(&self.market)
            .await?;
        if claimed {
            Ok(Ok(()))
        } else {
            Ok(Err(outcome.logs.join("; ")))
        }
    }

    pub async fn get_job(&self, job_id: JobId) -> Result<Option<JobView>, ChainError> {
        self.market_client().get_job(job_id).await
    }

    /// Open jobs this node may claim, from the contract itself (no indexer needed).
    pub async fn open_jobs_for_node(
        &self,
        node_id: NodeId,
        from_index: u64,
        limit: u64,
    ) -> Result<Vec<Job>, ChainError> {
        self.market_client()
            .open_jobs_for_node(node_id, from_index, limit)
            .await
    }

    /// Jobs of this node (any status), oldest first.
    pub async fn jobs_by_node(
        &self,
        node_id: NodeId,
        from_index: u64,
        limit: u64,
    ) -> Result<Vec<JobView>, ChainError> {
        self.market_client()
            .jobs_by_node(node_id, from_index, limit)
            .await
    }

    /// Settles a job with its signed receipt (`receipt.subject` is the job; its usage and
    /// weights hash travel as signed).
    pub async fn submit_result(
        &self,
        job_id: JobId,
        output: &OutputRef,
        receipt: &ResultReceipt,
        signature: &[u8; 64],
    ) -> Result<Settlement, ChainError> {
        self.market_client()
            .submit_result(
                job_id,
                output,
                receipt.usage,
                receipt.weights_hash,
                signature,
            )?
            .send(&self.market)
            .await
    }

    pub async fn get_request(&self, request_id: RequestId) -> Result<Option<Request>, ChainError> {
        self.market_client().get_request(request_id).await
    }

    /// Re-reads this node into the marketplace's cache (`respond` needs a fresh one).
    pub async fn refresh_node(&self, node_id: NodeId) -> Result<bool, ChainError> {
        self.market_client()
            .refresh_node(node_id)?
            .send(&self.market)
            .await
    }

    pub async fn respond(
        &self,
        request_id: RequestId,
        node_id: NodeId,
        output: &OutputRef,
        usage: Usage,
        signature: &[u8; 64],
    ) -> Result<(), ChainError> {
        self.market_client()
            .respond(request_id, node_id, output, usage, signature)?
            .send(&self.market)
            .await
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
    fn the_marketplace_job_view_decodes() {
        let job = serde_json::json!({"status": "open", "job_id": "7", "user": "u.test.near",
            "model_id": "minilm", "asset": {"kind": "near"}, "token_rate": null,
            "price_cap": "100", "storage_deposit": "1", "storage_source": "attached",
            "storage_bytes": "10", "created_ns": "1", "claim_deadline_ns": "2", "deadline_ns": "3",
            "target": {"kind": "node", "node_id": "1"},
            "input": {"kind": "inline", "ciphertext": "AAE="},
            "input_hash": "ab".repeat(32), "user_key": "cd".repeat(32), "claim": null});
        let state: JobView = serde_json::from_value(job).unwrap();
        let JobView::Open(job) = state else {
            panic!("{state:?}")
        };
        assert_eq!(job.job_id, JobId(7));
        assert!(job.claim.is_none());
    }
}
