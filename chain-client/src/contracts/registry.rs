//! The node registry: registration, attestation, heartbeats, stake and its views.

use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::registry::methods::{
    self as m, AccountArgs, AddGpuArgs, BeginAttestationArgs, ListNodesArgs, NodeArgs,
    PrunePendingArgs, ReattestArgs, RegisterNodeArgs, SetMarketplaceArgs, SetPolicyArgs,
    SignerKeyArgs,
};
use enclave_cloud_common::interfaces::registry::{
    AttestationProgress, ConfigView, NodeFilter, NodePage, NodeUpdate, OperatorView,
    PendingAttestationView, Policy, RegistrySetting,
};
use near_primitives::types::{AccountId, Balance};
use near_sdk::json_types::U64;
use serde::Serialize;

use super::Call;
use crate::Result;

contract_client!(
    /// The registry contract at `id`.
    RegistryClient,
    governed: RegistrySetting
);

impl<'a> RegistryClient<'a> {
    // ----- views

    pub async fn get_node(&self, node_id: NodeId) -> Result<Option<NodeView>> {
        self.contract()
            .view(m::GET_NODE, &NodeArgs { node_id })
            .await
    }

    /// The live node whose enclave signs with `signer_key`.
    pub async fn get_node_by_signer_key(
        &self,
        signer_key: &near_sdk::PublicKey,
    ) -> Result<Option<NodeView>> {
        let args = SignerKeyArgs {
            signer_key: signer_key.clone(),
        };
        self.contract().view(m::GET_NODE_BY_SIGNER_KEY, &args).await
    }

    /// A page of nodes matching `filter`.
    pub async fn list_nodes(
        &self,
        filter: Option<NodeFilter>,
        from_index: Option<u64>,
        limit: Option<u32>,
    ) -> Result<NodePage> {
        let args = ListNodesArgs {
            filter,
            from_index: from_index.map(U64),
            limit,
        };
        self.contract().view(m::LIST_NODES, &args).await
    }

    pub async fn get_operator(&self, account_id: &AccountId) -> Result<Option<OperatorView>> {
        let args = AccountArgs {
            account_id: account_id.clone(),
        };
        self.contract().view(m::GET_OPERATOR, &args).await
    }

    pub async fn get_policy(&self) -> Result<Policy> {
        self.contract().view(m::GET_POLICY, &NoArgs {}).await
    }

    pub async fn get_config(&self) -> Result<ConfigView> {
        self.contract().view(m::GET_CONFIG, &NoArgs {}).await
    }

    /// The chain's clock: the timestamp of the block the view runs in, ns.
    pub async fn now_ns(&self) -> Result<u64> {
        let now: U64 = self.contract().view(m::NOW_NS, &NoArgs {}).await?;
        Ok(now.0)
    }

    // ----- calls

    /// Signed by the enclave key the bundle attests. `B` is the bundle's JSON form. Returns
    /// the node id.
    pub fn register_node<B: Serialize>(
        &self,
        bundle: B,
        details: Option<NodeUpdate>,
    ) -> Result<Call<'a, NodeId>> {
        self.contract()
            .call(m::REGISTER_NODE, &RegisterNodeArgs { bundle, details })
    }

    /// A fresh bundle renews the node's attestation.
    pub fn reattest<B: Serialize>(&self, node_id: NodeId, bundle: B) -> Result<Call<'a, ()>> {
        self.contract()
            .call(m::REATTEST, &ReattestArgs { node_id, bundle })
    }

    /// Signed by the enclave key: begins a registration (`node_id` `None`) or a
    /// re-attestation declaring its GPUs and switches; returns the challenge.
    pub fn begin_attestation(
        &self,
        gpus: u32,
        switches: u32,
        node_id: Option<NodeId>,
    ) -> Result<Call<'a, PendingAttestationView>> {
        self.contract().call(
            m::BEGIN_ATTESTATION,
            &BeginAttestationArgs {
                gpus,
                switches,
                node_id,
            },
        )
    }

    /// Signed by the enclave key: more devices of its attestation in progress (`E`: the
    /// evidence's JSON form).
    pub fn add_gpu<E: Serialize>(
        &self,
        node_id: NodeId,
        gpus: Vec<E>,
        switches: Vec<E>,
    ) -> Result<Call<'a, AttestationProgress>> {
        self.contract().call(
            m::ADD_GPU,
            &AddGpuArgs {
                node_id,
                gpus,
                switches,
            },
        )
    }

    /// Anyone: removes expired attestations in progress of these enclave keys.
    pub fn prune_pending(&self, signer_keys: Vec<near_sdk::PublicKey>) -> Result<Call<'a, u32>> {
        self.contract()
            .call(m::PRUNE_PENDING, &PrunePendingArgs { signer_keys })
    }

    /// The attestation in progress begun by `signer_key`.
    pub async fn get_pending_attestation(
        &self,
        signer_key: &near_sdk::PublicKey,
    ) -> Result<Option<PendingAttestationView>> {
        self.contract()
            .view(
                m::GET_PENDING_ATTESTATION,
                &SignerKeyArgs {
                    signer_key: signer_key.clone(),
                },
            )
            .await
    }

    pub fn heartbeat(&self, node_id: NodeId) -> Result<Call<'a, ()>> {
        self.contract().call(m::HEARTBEAT, &NodeArgs { node_id })
    }

    /// The node's operator: removes the node (1 yocto); its grants, cached entries and
    /// offers end with it.
    pub fn deregister(&self, node_id: NodeId) -> Result<Call<'a, ()>> {
        self.contract().call(m::DEREGISTER, &NodeArgs { node_id })
    }

    /// Adds `deposit` to the signer's stake; returns the new total.
    pub fn deposit_stake(&self, deposit: Balance) -> Result<Call<'a, Balance>> {
        self.contract()
            .paid_call(m::DEPOSIT_STAKE, &NoArgs {}, deposit)
    }

    /// Owner only: replaces the whole policy (`P`: [`Policy`] or its JSON).
    pub fn set_policy<P: Serialize>(&self, policy: P) -> Result<Call<'a, ()>> {
        self.contract()
            .call(m::SET_POLICY, &SetPolicyArgs { policy })
    }

    /// Owner only: the marketplace allowed to slash.
    pub fn set_marketplace(&self, marketplace: AccountId) -> Result<Call<'a, ()>> {
        self.contract()
            .call(m::SET_MARKETPLACE, &SetMarketplaceArgs { marketplace })
    }
}
