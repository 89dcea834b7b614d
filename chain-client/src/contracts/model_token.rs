//! A model's token contract: NEP-141 views, its manifest, crowdfund and revenue.

use enclave_cloud_common::Asset;
use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::model_token::methods::{
    self as m, AccountArgs, AssetArgs, ClaimableArgs, ManifestArgs,
};
use enclave_cloud_common::interfaces::model_token::{
    AssetAmount, CrowdfundStatus, CrowdfundView, FungibleTokenMetadata, ModelTokenSetting,
    RevenuePoolView,
};
use near_primitives::types::{AccountId, Balance};
use near_sdk::json_types::U128;

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
}
