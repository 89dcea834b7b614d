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

    /// The owner or its key service. Deposit: at least `grant_deposit` for the encrypted
    /// key's length (the excess, or all of it when the registry refuses the node, comes
    /// back). Returns whether the grant was stored. ~40 Tgas with the registry's `get_node`.
    pub const GRANT_KEY: Method = Method::payable("grant_key", 40);
    /// The owner or its key service, 1 yocto. ~5 Tgas.
    pub const REVOKE_KEY: Method = Method::one_yocto("revoke_key", 30);
    pub const KEY_GRANT: &str = "key_grant";
    pub const KEY_GRANTS: &str = "key_grants";
    pub const GRANT_DEPOSIT: &str = "grant_deposit";

    /// `grant_key`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct GrantKeyArgs {
        pub node_id: crate::NodeId,
        pub encrypted_key: near_sdk::json_types::Base64VecU8,
        pub key_hash: crate::Hash32,
    }

    /// `revoke_key`'s and `key_grant`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct NodeArgs {
        pub node_id: crate::NodeId,
    }

    /// `key_grants`' arguments (a page in node order, at most 100).
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct KeyGrantsArgs {
        pub from_index: Option<u32>,
        pub limit: Option<u32>,
    }

    /// `grant_deposit`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct GrantDepositArgs {
        pub encrypted_len: u32,
    }

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

/// Weight-key grants: who may hold the model key, and the grants as the views show them. The
/// model token checks a node with [`key_grant_eligibility`] before it stores a grant; the
/// owner's key keeper (`ecloud model keeper`) plans its grants and revocations with the same
/// checks, so the two never disagree about a node.
pub mod key_grants {
    use std::fmt;

    use near_sdk::json_types::{Base64VecU8, U64};
    use near_sdk::{AccountId, near};

    use crate::events::model::ModelManifest;
    use crate::interfaces::NodeView;
    use crate::{AttestationKind, Hash32, NodeId, NodeStatus};

    /// The entry of `allowed_enclave_measurements` that admits nodes of the `dev` attestation
    /// kind. A dev attestation measures nothing (the registry records empty measurements), so
    /// no hex entry can ever match one; only registries initialised with a development CA
    /// (never mainnet) have such nodes, so the entry is harmless elsewhere.
    pub const DEV_MEASUREMENT: &str = "dev";
    /// Most grants one `key_grants` page holds.
    pub const MAX_KEY_GRANTS_PAGE: u32 = 100;

    /// One grant as `key_grant` and `key_grants` show it.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct KeyGrantView {
        pub node_id: NodeId,
        pub encrypted_key: Base64VecU8,
        pub key_hash: Hash32,
        /// The node's x25519 key the ciphertext is for (from the registry at grant time).
        pub encryption_key: String,
        pub granted_by: AccountId,
        pub granted_at_ns: U64,
        /// The node's attestation expiry at grant time; a re-attested node gets a new grant.
        pub expires_at_ns: U64,
    }

    /// Why a node may not receive the model key.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum KeyGrantRefusal {
        /// Not active (inactive, expired, deregistered or pending).
        NotActive {
            node_id: NodeId,
            status: NodeStatus,
        },
        AttestationExpired {
            node_id: NodeId,
            expired_at_ns: u64,
        },
        NoEncryptionKey {
            node_id: NodeId,
        },
        /// Neither its compose hash nor its RTMR3 (nor `dev` for a dev node) is in the
        /// manifest's `allowed_enclave_measurements`.
        NotAllowed {
            node_id: NodeId,
            kind: AttestationKind,
            compose_hash: Option<String>,
            rtmr3: String,
        },
    }

    impl fmt::Display for KeyGrantRefusal {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::NotActive { node_id, status } => {
                    write!(f, "node {node_id} is {status:?}, not active")
                }
                Self::AttestationExpired {
                    node_id,
                    expired_at_ns,
                } => write!(
                    f,
                    "node {node_id}'s attestation expired at {expired_at_ns} ns"
                ),
                Self::NoEncryptionKey { node_id } => {
                    write!(f, "node {node_id} has no encryption key")
                }
                Self::NotAllowed {
                    node_id,
                    kind,
                    compose_hash,
                    rtmr3,
                } => write!(
                    f,
                    "node {node_id} ({kind:?} attestation)'s compose hash {compose_hash:?} and rtmr3 '{rtmr3}' are not allowed by the manifest"
                ),
            }
        }
    }

    /// Whether the manifest allows the node's enclave (its measurements and its x25519 key),
    /// whatever the node's status: the part of [`key_grant_eligibility`] a manifest change
    /// can alter.
    pub fn manifest_allows(
        node: &NodeView,
        manifest: &ModelManifest,
    ) -> Result<(), KeyGrantRefusal> {
        if node.encryption_key.is_empty() {
            return Err(KeyGrantRefusal::NoEncryptionKey {
                node_id: node.node_id,
            });
        }
        let compose = node.measurements.compose_hash.map(|h| h.to_string());
        let rtmr3 = node.measurements.rtmr3.to_ascii_lowercase();
        let dev = node.kind == AttestationKind::Dev;
        // A dev node's measurements are empty: it matches only the explicit `dev` entry.
        let allowed = manifest.allowed_enclave_measurements.iter().any(|m| {
            if m == DEV_MEASUREMENT {
                dev
            } else {
                !dev && (Some(m) == compose.as_ref() || *m == rtmr3)
            }
        });
        if !allowed {
            return Err(KeyGrantRefusal::NotAllowed {
                node_id: node.node_id,
                kind: node.kind,
                compose_hash: compose,
                rtmr3,
            });
        }
        Ok(())
    }

    /// Whether `node` may receive the model key at `now_ns`: active, attestation unexpired,
    /// and allowed by the manifest ([`manifest_allows`]).
    pub fn key_grant_eligibility(
        node: &NodeView,
        manifest: &ModelManifest,
        now_ns: u64,
    ) -> Result<(), KeyGrantRefusal> {
        if node.status != NodeStatus::Active {
            return Err(KeyGrantRefusal::NotActive {
                node_id: node.node_id,
                status: node.status,
            });
        }
        if node.attestation_expires_at_ns.0 <= now_ns {
            return Err(KeyGrantRefusal::AttestationExpired {
                node_id: node.node_id,
                expired_at_ns: node.attestation_expires_at_ns.0,
            });
        }
        manifest_allows(node, manifest)
    }
}
