//! Events of the model factory and the model-token contracts (standard `ecloud_model`).
//! Token balances themselves move with the standard NEP-141 events ([`super::Nep141Event`]).

use near_sdk::json_types::{U64, U128};
use near_sdk::{AccountId, near};

use super::Nep297;
use crate::{Asset, Hash32, ModelId, NodeId};

/// What a model is: every field a holder or a node needs to check it.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelManifest {
    pub name: String,
    /// SHA-256 of the encrypted weights.
    pub weights_hash: Hash32,
    pub encrypted_weights_uri: String,
    pub training_data_manifest_hash: Hash32,
    pub training_data_manifest_uri: String,
    /// MRTD/RTMR measurement of the training image, hex.
    pub training_image_measurement: String,
    /// Compose hashes / measurements of enclaves allowed to serve the model.
    pub allowed_enclave_measurements: Vec<String>,
    pub licence: String,
}

impl ModelManifest {
    /// The hash of the encrypted weights the model is served from, if the manifest names any
    /// (a URI and a non-zero hash): what a node decrypts and checks, signs every response with
    /// and measures into its attestation, and what a client expects. `None`: the model is
    /// served from plain weights.
    pub fn encrypted_weights_hash(&self) -> Option<Hash32> {
        (!self.encrypted_weights_uri.trim().is_empty() && self.weights_hash.0 != [0; 32])
            .then_some(self.weights_hash)
    }
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum ModelEvent {
    /// The factory created a model token account.
    ModelCreated {
        model_id: ModelId,
        token: AccountId,
        owner: AccountId,
    },
    ManifestUpdated {
        model_id: ModelId,
        manifest: ModelManifest,
    },
    CrowdfundStarted {
        goal: U128,
        /// yoctoNEAR per whole token.
        token_price: U128,
        deadline_ns: U64,
        beneficiary: AccountId,
    },
    Contributed {
        account: AccountId,
        amount: U128,
        tokens: U128,
    },
    CrowdfundSucceeded {
        raised: U128,
    },
    CrowdfundFailed {
        raised: U128,
    },
    FundsReleased {
        beneficiary: AccountId,
        amount: U128,
        milestone: u32,
    },
    ContributionRefunded {
        account: AccountId,
        amount: U128,
        tokens_burned: U128,
    },
    RevenueDeposited {
        payer: AccountId,
        asset: Asset,
        amount: U128,
    },
    RevenueClaimed {
        account: AccountId,
        asset: Asset,
        amount: U128,
    },
    KeyGranted {
        node_id: NodeId,
        key_hash: Hash32,
    },
    KeyRevoked {
        node_id: NodeId,
    },
}

impl Nep297 for ModelEvent {
    const STANDARD: &'static str = "ecloud_model";
    const VERSION: &'static str = "1.0.0";
}
