//! A model token's interface types: its init arguments (`ModelInit`, which the factory passes
//! through), the crowdfund's configuration and views, revenue views, and its methods as
//! clients call them. The contract, the factory's clients (`ecloud`) and the tests import these
//! very types.

/// NEP-148 metadata, as the model token takes and reports it.
pub use near_contract_standards::fungible_token::metadata::{
    FT_METADATA_SPEC, FungibleTokenMetadata,
};
use near_sdk::json_types::{U64, U128};
use near_sdk::{AccountId, near};

use crate::events::model::ModelManifest;
use crate::{Asset, ModelId};

/// A critical setting of a model token: proposed by its owner, announced, applied after the
/// delay (`crate::governance`); its code moves only by its owner's `upgrade_code` proposal.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ModelTokenSetting {
    /// Hands the model to another account (e.g. its community's DAO).
    SetOwner { owner: AccountId },
}

/// The governance delay a model token starts with: its holders and backers get three days'
/// notice of a new owner or new code.
pub const DEFAULT_GOVERNANCE_DELAY_NS: u64 = 3 * 24 * 60 * 60 * 1_000_000_000;

/// Everything a model token starts with; the factory passes it through unchanged.
#[near(serializers = [json])]
#[derive(Clone)]
pub struct ModelInit {
    pub model_id: ModelId,
    pub owner: AccountId,
    pub registry: AccountId,
    pub manifest: ModelManifest,
    pub metadata: FungibleTokenMetadata,
    /// Minted to the owner at creation (founders' share); the crowdfund mints the rest.
    #[serde(default)]
    pub initial_supply: Option<U128>,
    #[serde(default)]
    pub key_service: Option<AccountId>,
    /// NEP-141 tokens accepted as revenue from the start.
    #[serde(default)]
    pub revenue_tokens: Vec<AccountId>,
    #[serde(default)]
    pub crowdfund: Option<CrowdfundConfig>,
}

#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrowdfundConfig {
    /// yoctoNEAR to raise for success.
    pub goal: U128,
    /// yoctoNEAR per whole token (10^decimals base units).
    pub token_price: U128,
    pub deadline_ns: U64,
    /// Receives the funds: the training operator.
    pub beneficiary: AccountId,
    /// Release schedule in basis points summing to 10000; empty: everything at success.
    #[serde(default)]
    pub milestones_bps: Vec<u16>,
    /// Releases milestones after the first; default: the owner.
    #[serde(default)]
    pub approver: Option<AccountId>,
}

#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CrowdfundStatus {
    Active,
    Succeeded,
    Failed,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrowdfundView {
    pub config: CrowdfundConfig,
    pub status: CrowdfundStatus,
    pub raised: U128,
    pub tokens_minted: U128,
    pub released: U128,
    pub next_milestone: u32,
    pub milestones: u32,
    pub refunded: U128,
}

/// An amount of one asset.
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetAmount {
    pub asset: Asset,
    pub amount: U128,
}

/// One revenue pool as the views show it.
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenuePoolView {
    pub asset: Asset,
    pub deposited: U128,
    pub claimed: U128,
    /// Forfeited or returned by holders who left, waiting for the next deposit's earning
    /// holders (revenue that no token earns goes to the owner instead).
    pub undistributed: U128,
}

/// The `args` a creator passes to the factory's `create_model`: a [`ModelInit`] without
/// `model_id` and `registry`, which the factory fills in (`owner` too when absent: the caller).
#[near(serializers = [json])]
#[derive(Clone)]
pub struct NewModel {
    pub manifest: ModelManifest,
    pub metadata: FungibleTokenMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_supply: Option<U128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_service: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revenue_tokens: Vec<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdfund: Option<CrowdfundConfig>,
}

/// The model token's methods (name, gas to attach, deposit rule) and arguments.
pub mod methods {
    use near_sdk::{AccountId, near};

    use crate::Asset;
    use crate::interfaces::method::Method;

    /// Deposit: the NEAR to contribute (the caller's storage first if it is not registered).
    /// ~5 Tgas.
    pub const CONTRIBUTE: Method = Method::payable("contribute", 30);
    /// 20 Tgas documented.
    pub const FINALIZE_CROWDFUND: Method = Method::call("finalize_crowdfund", 30);
    /// ≤ 10 Tgas burnt; 10 for an FT payout and 5 for the callback.
    pub const CLAIM_REVENUE: Method = Method::one_yocto("claim_revenue", 30);
    /// Owner only. Deposit: at least 1 yocto and the storage a larger manifest takes; the
    /// rest is refunded. ~5 Tgas.
    pub const UPDATE_MANIFEST: Method = Method::payable("update_manifest", 30);

    pub const FT_METADATA: &str = "ft_metadata";
    pub const FT_TOTAL_SUPPLY: &str = "ft_total_supply";
    pub const FT_BALANCE_OF: &str = "ft_balance_of";
    pub const MANIFEST: &str = "manifest";
    pub const CROWDFUND: &str = "crowdfund";
    pub const REVENUE_POOLS: &str = "revenue_pools";
    pub const CLAIMABLE: &str = "claimable";
    pub const CLAIMABLE_ALL: &str = "claimable_all";

    /// `update_manifest`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct ManifestArgs {
        pub manifest: crate::events::model::ModelManifest,
    }

    /// `claim_revenue`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct AssetArgs {
        pub asset: Asset,
    }

    /// `claimable`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct ClaimableArgs {
        pub account_id: AccountId,
        pub asset: Asset,
    }

    /// `ft_balance_of`, `claimable_all`: one account.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct AccountArgs {
        pub account_id: AccountId,
    }
}
