//! A model token's methods as clients call them and their JSON arguments. Its views' types
//! stay with the contract (`model-token`); clients read them as JSON.

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

    pub const FT_METADATA: &str = "ft_metadata";
    pub const FT_TOTAL_SUPPLY: &str = "ft_total_supply";
    pub const FT_BALANCE_OF: &str = "ft_balance_of";
    pub const MANIFEST: &str = "manifest";
    pub const CROWDFUND: &str = "crowdfund";
    pub const REVENUE_POOLS: &str = "revenue_pools";
    pub const CLAIMABLE: &str = "claimable";
    pub const CLAIMABLE_ALL: &str = "claimable_all";

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
