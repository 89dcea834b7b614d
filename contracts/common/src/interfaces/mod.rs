//! Cross-contract interfaces and the views they return, shared by caller and callee so a
//! rename on one side cannot silently break the other; and each contract's argument and view
//! types (one module per contract), which the contract and its off-chain clients import alike.

pub mod marketplace;
pub mod method;
pub mod model_factory;
pub mod model_token;
pub mod registry;

use near_sdk::json_types::{U64, U128};
use near_sdk::{AccountId, NearToken, PublicKey, ext_contract, near};

use crate::{AttestationKind, GpuInfo, Measurements, ModelPrice, NodeId, NodeStatus, TcbStatus};

/// A node as the registry reports it: what the marketplace caches on claim, what the
/// indexer stores and what the worker and users read.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub node_id: NodeId,
    pub operator: AccountId,
    pub status: NodeStatus,
    pub kind: AttestationKind,
    /// The enclave's ed25519 NEAR access key: signs registrations, results and receipts.
    pub signer_key: PublicKey,
    /// The enclave's x25519 key, hex: users encrypt job inputs to it.
    pub encryption_key: String,
    pub tcb_status: TcbStatus,
    pub measurements: Measurements,
    pub gpus: Vec<GpuInfo>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub prices: Vec<ModelPrice>,
    pub capacity: u32,
    pub registered_at_ns: U64,
    pub attestation_expires_at_ns: U64,
    pub last_heartbeat_ns: U64,
}

/// The registry as other contracts call it.
#[ext_contract(ext_registry)]
pub trait RegistryApi {
    /// A node, or `None` if unknown.
    fn get_node(&self, node_id: NodeId) -> Option<NodeView>;

    /// Marketplace only: moves up to `amount` of the node operator's stake to `beneficiary`.
    /// Returns what was actually slashed.
    fn slash(&mut self, node_id: NodeId, amount: NearToken, beneficiary: AccountId) -> NearToken;
}

/// A model token contract as the marketplace pays it.
#[ext_contract(ext_model_token)]
pub trait ModelRevenueApi {
    /// Payable: the attached NEAR is revenue for the token holders.
    fn deposit_revenue(&mut self);
}

/// The marketplace as a contract that calls AI sees it (agent request, yield/resume).
#[ext_contract(ext_marketplace_agent)]
pub trait MarketplaceAgentApi {
    /// Payable: attach `price_cap` plus the request's storage (see the marketplace's
    /// `request_deposit` view). Returns the request id at once; the answer (or `None` after the
    /// yield timeout, with the deposit refunded) arrives later through
    /// [`AiCallbackApi::on_ai_response`] on the predecessor.
    fn request(
        &mut self,
        model_id: crate::ModelId,
        input: crate::InputRef,
        price_cap: U128,
    ) -> crate::RequestId;
}

/// Callback a contract implements to receive an agent request's answer from the
/// marketplace (yield/resume flow).
#[ext_contract(ext_ai_caller)]
pub trait AiCallbackApi {
    fn on_ai_response(&mut self, request_id: crate::RequestId, response: Option<AiResponse>);
}

/// The answer to an agent request.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct AiResponse {
    pub node_id: NodeId,
    pub output: crate::OutputRef,
    pub usage: crate::Usage,
    pub cost: U128,
}
