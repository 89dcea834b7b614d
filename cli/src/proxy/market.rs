//! What the proxy needs from the outside world besides the nodes themselves: candidates from
//! the indexer, the registry's record and policy, and the user's channels in the marketplace.
//! [`ChainMarket`] is the real one (indexer + NEAR RPC); tests put an in-memory one in its place.

use std::future::Future;

use attestation::VerifyPolicy;
use enclave_cloud_common::attestation_policy::{dev_attestation_enabled, verify_policy};
use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::marketplace::{Channel, OpenChannelSpec};
use enclave_cloud_common::{Asset, ChannelId, ModelId, NodeId};
use near_sdk::AccountId;

use crate::Error;
use crate::chain::Chain;
use crate::channels::{ChannelRecord, ChannelStore};
use crate::indexer::{Indexer, NodeQuery};

/// The proxy's view of indexer, registry and marketplace.
pub trait Market: Send + Sync + 'static {
    /// Nodes that may serve `model`, best first (active, cheapest; in `region` if given).
    fn candidates(
        &self,
        model: &ModelId,
        region: Option<&str>,
    ) -> impl Future<Output = Result<Vec<NodeId>, Error>> + Send;
    /// The registry's record of a node (the source of truth for its keys and measurements).
    fn node(&self, id: NodeId) -> impl Future<Output = Result<Option<NodeView>, Error>> + Send;
    /// The attestation policy the registry verifies bundles with.
    fn verify_policy(&self) -> impl Future<Output = Result<VerifyPolicy, Error>> + Send;
    /// Models some active node serves.
    fn models(&self) -> impl Future<Output = Result<Vec<ModelId>, Error>> + Send;
    /// `model`'s manifest (`crate::models::model_manifest`; `None`: a model the factory does
    /// not list). When it names encrypted weights, the node must be one it allows, its
    /// attestation must measure them, and every response must be signed as served by them.
    fn manifest(
        &self,
        model: &ModelId,
    ) -> impl Future<Output = Result<Option<ModelManifest>, Error>> + Send;
    fn marketplace(&self) -> AccountId;
    /// The account that opens and pays the channels.
    fn user(&self) -> Result<AccountId, Error>;
    fn channel(&self, id: ChannelId)
    -> impl Future<Output = Result<Option<Channel>, Error>> + Send;
    /// Opens a channel for `record` (already saved, with its key) and records its id.
    fn open_channel(
        &self,
        store: &ChannelStore,
        record: &mut ChannelRecord,
        spec: OpenChannelSpec,
        asset: &Asset,
        deposit: u128,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    fn top_up(
        &self,
        channel: &Channel,
        amount: u128,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Unix seconds now (attestation expiry).
    fn now_secs(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The deployment: indexer for candidates, NEAR RPC for the rest.
pub struct ChainMarket {
    pub chain: Chain,
    pub indexer: Indexer,
}

impl Market for ChainMarket {
    async fn candidates(
        &self,
        model: &ModelId,
        region: Option<&str>,
    ) -> Result<Vec<NodeId>, Error> {
        let query = NodeQuery {
            model: Some(model.clone()),
            region: region.map(str::to_owned),
            status: Some("active".into()),
            sort: Some("price"),
            limit: Some(200),
            ..NodeQuery::default()
        };
        Ok(self
            .indexer
            .nodes(&query)
            .await?
            .items
            .into_iter()
            .map(|n| n.node_id)
            .collect())
    }

    async fn node(&self, id: NodeId) -> Result<Option<NodeView>, Error> {
        Ok(self.chain.registry().get_node(id).await?)
    }

    async fn verify_policy(&self) -> Result<VerifyPolicy, Error> {
        let registry = self.chain.registry();
        let policy = registry.get_policy().await?;
        let config = registry.get_config().await?;
        let dev_enabled =
            dev_attestation_enabled(&policy, config.dev_mode_available, config.mainnet);
        verify_policy(&policy, dev_enabled).map_err(|e| Error::Chain(e.to_string()))
    }

    async fn models(&self) -> Result<Vec<ModelId>, Error> {
        let query = NodeQuery {
            status: Some("active".into()),
            limit: Some(200),
            ..NodeQuery::default()
        };
        let mut models: Vec<ModelId> = self
            .indexer
            .nodes(&query)
            .await?
            .items
            .into_iter()
            .flat_map(|n| n.prices.into_iter().map(|p| p.model_id))
            .collect();
        models.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        models.dedup();
        Ok(models)
    }

    async fn manifest(&self, model: &ModelId) -> Result<Option<ModelManifest>, Error> {
        crate::models::model_manifest(&self.chain, model).await
    }

    fn marketplace(&self) -> AccountId {
        self.chain.settings().marketplace.clone()
    }

    fn user(&self) -> Result<AccountId, Error> {
        Ok(self.chain.settings().signer()?.clone())
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, Error> {
        self.chain.get_channel(id).await
    }

    async fn open_channel(
        &self,
        store: &ChannelStore,
        record: &mut ChannelRecord,
        spec: OpenChannelSpec,
        asset: &Asset,
        deposit: u128,
    ) -> Result<(), Error> {
        let signer = self.chain.signer()?;
        match self.chain.open_channel(&signer, spec, asset, deposit).await {
            Ok(id) => Ok(store.opened(record, id)?),
            Err(e) => {
                store.discard_pending(record);
                Err(e)
            }
        }
    }

    async fn top_up(&self, channel: &Channel, amount: u128) -> Result<(), Error> {
        let signer = self.chain.signer()?;
        self.chain.top_up_channel(&signer, channel, amount).await
    }
}
