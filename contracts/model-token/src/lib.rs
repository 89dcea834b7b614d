//! Model token contract: the NEP-141 revenue-share token of one model, its crowdfund and the
//! grants of its weight key to attested nodes. One instance per model, created by the
//! model factory at `<model>.<factory>` and initialised with [`ModelToken::new`].
//!
//! Standards: NEP-141 (fungible token), NEP-145 (storage management: a holder pays for its own
//! record, [`state::MAX_POOLS`] reward corrections included), NEP-148 (metadata), NEP-297
//! events through `enclave_cloud_common::events` (`nep141` for balances, `ecloud_model` for
//! the rest). Revenue arrives as NEAR through `deposit_revenue` (the marketplace's
//! [`enclave_cloud_common::interfaces::ModelRevenueApi`]) or as an allow-listed NEP-141 token
//! through `ft_transfer_call` (`ft_on_transfer`).
//!
//! Every public method is declared in one of the traits below, which state who may call it,
//! what deposit it takes and the gas it is designed for; the implementations live in the
//! module of their concern. Gas figures are design targets, measured by the sandbox tests.

mod access;
mod crowdfund;
mod errors;
mod fixed;
mod ft;
mod governance;
mod keys;
mod ledger;
mod manifest;
mod revenue;
mod rewards;
mod state;
mod storage;
mod storage_keys;
mod upgrade;
mod views;

#[cfg(test)]
mod test_utils;
/// Unit-test helpers shared with the model factory's tests (feature `test-utils`).
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
#[cfg(test)]
mod tests_crowdfund_economics;
#[cfg(test)]
mod tests_property;

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::{Asset, Hash32, NodeId};
use near_sdk::json_types::{Base64VecU8, U128};
use near_sdk::{AccountId, Promise, ext_contract};

pub use crowdfund::{CrowdfundConfig, CrowdfundStatus, CrowdfundView};
pub use errors::ModelTokenError;
pub use keys::KeyGrantView;
pub use manifest::ModelInit;
pub use revenue::{AssetAmount, RevenuePoolView};
pub use state::{MAX_POOLS, MAX_REVENUE_TOKENS, ModelToken, ModelTokenExt};

/// Owner configuration.
#[ext_contract(ext_model_admin)]
pub trait ModelAdminApi {
    /// Owner only. Replaces the manifest and emits `manifest_updated`. Attach at least 1 yocto
    /// and enough for any storage growth (the excess is refunded). ~5 Tgas.
    fn update_manifest(&mut self, manifest: ModelManifest);
    /// Owner only, 1 yocto. Sets (or clears) the key service account that may grant keys.
    fn set_key_service(&mut self, key_service: Option<AccountId>);
    /// Owner only. Allow-lists a NEP-141 token as revenue (at most
    /// [`MAX_REVENUE_TOKENS`]; never removed, so claims stay possible). Attach the storage
    /// of the new pool (the excess is refunded). ~5 Tgas.
    fn add_revenue_token(&mut self, token: AccountId);
}

/// Revenue of the holders. Deposits: `deposit_revenue` (NEAR, any payer) and
/// `ft_on_transfer` (allow-listed tokens, any payer); both O(1), ~3 Tgas.
#[ext_contract(ext_model_revenue)]
pub trait RevenueApi {
    /// Any registered holder, 1 yocto. Pays the caller's whole claimable amount of `asset`
    /// (NEAR transfer, or `ft_transfer` on the token) and resolves in `on_revenue_claimed`,
    /// which makes the amount claimable again if the payout failed. O(1), ≤ 10 Tgas burnt
    /// (attach 30 Tgas: 10 for an FT payout, 5 for the callback).
    fn claim_revenue(&mut self, asset: Asset) -> Promise;
    /// What `account_id` can claim of `asset` now.
    fn claimable(&self, account_id: AccountId, asset: Asset) -> U128;
    /// What `account_id` can claim of every revenue asset.
    fn claimable_all(&self, account_id: AccountId) -> Vec<AssetAmount>;
    /// Every revenue pool: deposited, claimed, undistributed.
    fn revenue_pools(&self) -> Vec<RevenuePoolView>;
}

/// The crowdfund that pays for training.
#[ext_contract(ext_model_crowdfund)]
pub trait CrowdfundApi {
    /// Owner only, 1 yocto; once. Opens the crowdfund and emits `crowdfund_started`. The
    /// tokens it mints stay locked (no transfer, no revenue) until it succeeds; every other
    /// token moves and earns as usual.
    fn start_crowdfund(&mut self, config: CrowdfundConfig);
    /// Anyone while the crowdfund is active. Attach NEAR: first the caller's NEP-145 storage
    /// if it is not registered yet, the rest buys `rest * 10^decimals / token_price` tokens,
    /// locked until the crowdfund succeeds: they neither move nor earn revenue before.
    /// Emits `contributed` and `ft_mint`. ~5 Tgas.
    fn contribute(&mut self) -> U128;
    /// Anyone, once the goal is reached or the deadline passed. Success releases the funds
    /// (or the first milestone) to the beneficiary and lets every crowdfund token move and
    /// earn from then on (O(1): the accumulators are recorded, no holder is touched); failure
    /// opens refunds, and the crowdfund tokens stay locked and earn nothing until refunded.
    /// Attach 20 Tgas.
    fn finalize_crowdfund(&mut self) -> CrowdfundStatus;
    /// The approver (default: the owner), 1 yocto, after success: releases the next
    /// milestone. A failed transfer makes the milestone releasable again.
    fn release_milestone(&mut self) -> Promise;
    /// A contributor after failure, no deposit: burns the (locked, never earning) tokens of
    /// the contribution and sends back the NEAR; a failed transfer restores the tokens. While
    /// the refund is in flight the contribution stays on the record (a second call and
    /// `storage_unregister` are refused), so the callback never grows the state. Attach 20 Tgas.
    fn refund_contribution(&mut self) -> Promise;
    fn crowdfund(&self) -> Option<CrowdfundView>;
    /// NEAR contributed by `account_id` and the tokens it received for it (while its refund
    /// is in flight: the NEAR and 0 tokens).
    fn contribution(&self, account_id: AccountId) -> (U128, U128);
}

/// Weight-key grants to attested nodes.
#[ext_contract(ext_model_keys)]
pub trait KeyGrantApi {
    /// The owner or its key service. Posts the model key encrypted to node `node_id`'s enclave
    /// key. The node is checked with `registry.get_node`: active, attestation unexpired, and
    /// its compose hash or RTMR3 in the manifest's `allowed_enclave_measurements` (for a node
    /// of the `dev` attestation kind: the entry `dev`); only then the callback stores the grant
    /// (replacing an earlier one) and emits `key_granted`.
    /// Attach the grant's storage (see [`ModelToken::grant_deposit`]); the excess, or all of it
    /// if the node is refused, goes back to the caller. Attach 40 Tgas. The transaction's
    /// result is the callback's: `true` if the grant was stored.
    fn grant_key(
        &mut self,
        node_id: NodeId,
        encrypted_key: Base64VecU8,
        key_hash: Hash32,
    ) -> Promise;
    /// The owner or its key service, 1 yocto. Deletes the grant, refunds its storage to
    /// whoever paid it and emits `key_revoked`.
    fn revoke_key(&mut self, node_id: NodeId);
    fn key_grant(&self, node_id: NodeId) -> Option<KeyGrantView>;
    /// Grants in node order, paginated.
    fn key_grants(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<KeyGrantView>;
}
