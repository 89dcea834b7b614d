//! A model's token contract: NEP-141 views, its manifest, crowdfund and revenue, and the
//! weight-key grants to attested nodes.

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::model_token::key_grants::{
    KeyGrantView, MAX_KEY_GRANTS_PAGE,
};
use enclave_cloud_common::interfaces::model_token::methods::{
    self as m, AccountArgs, AssetArgs, ClaimableArgs, GrantDepositArgs, GrantKeyArgs,
    KeyGrantsArgs, ManifestArgs, NodeArgs,
};
use enclave_cloud_common::interfaces::model_token::{
    AssetAmount, CrowdfundStatus, CrowdfundView, FungibleTokenMetadata, ModelTokenSetting,
    RevenuePoolView,
};
use enclave_cloud_common::{Asset, Hash32, NodeId};
use near_primitives::types::{AccountId, Balance};
use near_sdk::json_types::{Base64VecU8, U128};

use super::Call;
use crate::Result;

contract_client!(
    /// The model token contract at `id`.
    ModelTokenClient,
    governed: ModelTokenSetting
);

impl<'a> ModelTokenClient<'a> {
    pub async fn ft_metadata(&self) -> Result<FungibleTokenMetadata> {
        self.contract().view(m::FT_METADATA, &NoArgs {}).await
    }

    pub async fn ft_total_supply(&self) -> Result<U128> {
        self.contract().view(m::FT_TOTAL_SUPPLY, &NoArgs {}).await
    }

    pub async fn ft_balance_of(&self, account_id: &AccountId) -> Result<U128> {
        let args = AccountArgs {
            account_id: account_id.clone(),
        };
        self.contract().view(m::FT_BALANCE_OF, &args).await
    }

    pub async fn manifest(&self) -> Result<Option<ModelManifest>> {
        self.contract().view(m::MANIFEST, &NoArgs {}).await
    }

    pub async fn crowdfund(&self) -> Result<Option<CrowdfundView>> {
        self.contract().view(m::CROWDFUND, &NoArgs {}).await
    }

    pub async fn revenue_pools(&self) -> Result<Vec<RevenuePoolView>> {
        self.contract().view(m::REVENUE_POOLS, &NoArgs {}).await
    }

    /// What `account_id` can claim of `asset` now.
    pub async fn claimable(&self, account_id: &AccountId, asset: &Asset) -> Result<U128> {
        let args = ClaimableArgs {
            account_id: account_id.clone(),
            asset: asset.clone(),
        };
        self.contract().view(m::CLAIMABLE, &args).await
    }

    /// What `account_id` can claim of every revenue asset.
    pub async fn claimable_all(&self, account_id: &AccountId) -> Result<Vec<AssetAmount>> {
        let args = AccountArgs {
            account_id: account_id.clone(),
        };
        self.contract().view(m::CLAIMABLE_ALL, &args).await
    }

    /// Buys crowdfund tokens with `deposit`; returns the tokens minted.
    pub fn contribute(&self, deposit: Balance) -> Result<Call<'a, U128>> {
        self.contract()
            .paid_call(m::CONTRIBUTE, &NoArgs {}, deposit)
    }

    /// Ends the crowdfund once its goal or deadline is reached; returns its status.
    pub fn finalize_crowdfund(&self) -> Result<Call<'a, CrowdfundStatus>> {
        self.contract().call(m::FINALIZE_CROWDFUND, &NoArgs {})
    }

    /// Replaces the manifest (owner only); `deposit` covers its storage growth, the rest is
    /// refunded.
    pub fn update_manifest(
        &self,
        manifest: ModelManifest,
        deposit: Balance,
    ) -> Result<Call<'a, ()>> {
        self.contract()
            .paid_call(m::UPDATE_MANIFEST, &ManifestArgs { manifest }, deposit)
    }

    /// Pays the signer's claimable revenue in `asset`.
    pub fn claim_revenue(&self, asset: Asset) -> Result<Call<'a, serde_json::Value>> {
        self.contract().call(m::CLAIM_REVENUE, &AssetArgs { asset })
    }

    // ----- weight-key grants

    /// The grant of `node_id`, if any.
    pub async fn key_grant(&self, node_id: NodeId) -> Result<Option<KeyGrantView>> {
        self.contract()
            .view(m::KEY_GRANT, &NodeArgs { node_id })
            .await
    }

    /// Every grant, in node order (all pages).
    pub async fn key_grants(&self) -> Result<Vec<KeyGrantView>> {
        let mut all = Vec::new();
        loop {
            let args = KeyGrantsArgs {
                from_index: Some(u32::try_from(all.len()).unwrap_or(u32::MAX)),
                limit: Some(MAX_KEY_GRANTS_PAGE),
            };
            let page: Vec<KeyGrantView> = self.contract().view(m::KEY_GRANTS, &args).await?;
            let last = page.len() < MAX_KEY_GRANTS_PAGE as usize;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// The deposit `grant_key` needs for an encrypted key of `encrypted_len` bytes.
    pub async fn grant_deposit(&self, encrypted_len: u32) -> Result<Balance> {
        self.contract()
            .view(m::GRANT_DEPOSIT, &GrantDepositArgs { encrypted_len })
            .await
    }

    /// Posts the model key sealed to node `node_id` (owner or key service); `deposit` pays
    /// the grant's storage. Returns whether the contract stored it (the registry confirmed
    /// the node eligible).
    pub fn grant_key(
        &self,
        node_id: NodeId,
        encrypted_key: Vec<u8>,
        key_hash: Hash32,
        deposit: Balance,
    ) -> Result<Call<'a, bool>> {
        let args = GrantKeyArgs {
            node_id,
            encrypted_key: Base64VecU8(encrypted_key),
            key_hash,
        };
        self.contract().paid_call(m::GRANT_KEY, &args, deposit)
    }

    /// Deletes the grant of `node_id` (owner or key service).
    pub fn revoke_key(&self, node_id: NodeId) -> Result<Call<'a, ()>> {
        self.contract().call(m::REVOKE_KEY, &NodeArgs { node_id })
    }
}
