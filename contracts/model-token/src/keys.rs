//! Weight-key grants: the model key, encrypted to one node's attested x25519 key, posted only
//! after the registry confirms the node may serve the model.

use enclave_cloud_common::events::Nep297;
use enclave_cloud_common::events::model::{ModelEvent, ModelManifest};
pub use enclave_cloud_common::interfaces::model_token::key_grants::KeyGrantView;
use enclave_cloud_common::interfaces::model_token::key_grants::{
    MAX_KEY_GRANTS_PAGE, key_grant_eligibility,
};
use enclave_cloud_common::interfaces::{NodeView, ext_registry};
use enclave_cloud_common::{Hash32, NodeId};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, Gas, NearToken, Promise, PromiseError, env, near};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::access::{OrPanic, refund, require_one_yocto};
use crate::errors::ModelTokenError;
use crate::{KeyGrantApi, ModelToken};

/// Largest encrypted key accepted (an HPKE-sealed 32-byte key is well under 200 bytes).
pub const MAX_ENCRYPTED_KEY: usize = 1024;
/// Bytes of a grant besides the ciphertext: ids, hash, the node's key, accounts, overhead.
const GRANT_BASE_BYTES: u64 = 500;
const GAS_FOR_GET_NODE: Gas = Gas::from_tgas(10);
const GAS_FOR_GRANT_CALLBACK: Gas = Gas::from_tgas(15);
const MIN_GAS_FOR_GRANT: Gas = Gas::from_tgas(35);

#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub encrypted_key: Vec<u8>,
    pub key_hash: Hash32,
    /// The node's x25519 key the ciphertext is for (from the registry at grant time).
    pub encryption_key: String,
    pub granted_by: AccountId,
    pub granted_at_ns: u64,
    /// The node's attestation expiry at grant time; a re-attested node gets a new grant.
    pub expires_at_ns: u64,
    /// Storage paid by `granted_by`, refunded on revocation or replacement.
    pub storage_deposit: u128,
}

fn grant_view(node_id: NodeId, g: &KeyGrant) -> KeyGrantView {
    KeyGrantView {
        node_id,
        encrypted_key: Base64VecU8(g.encrypted_key.clone()),
        key_hash: g.key_hash,
        encryption_key: g.encryption_key.clone(),
        granted_by: g.granted_by.clone(),
        granted_at_ns: U64(g.granted_at_ns),
        expires_at_ns: U64(g.expires_at_ns),
    }
}

/// Why a node may not receive the key, or `Ok` if it may (the shared check of
/// [`key_grant_eligibility`], which the owner's keeper plans with too).
pub(crate) fn check_node(
    node: &NodeView,
    manifest: &ModelManifest,
    now_ns: u64,
) -> Result<(), String> {
    key_grant_eligibility(node, manifest, now_ns).map_err(|refusal| refusal.to_string())
}

fn grant_deposit_for(len: usize) -> NearToken {
    env::storage_byte_cost().saturating_mul(u128::from(GRANT_BASE_BYTES) + len as u128)
}

impl ModelToken {
    fn try_grant_key(
        &mut self,
        node_id: NodeId,
        encrypted_key: Base64VecU8,
        key_hash: Hash32,
    ) -> Result<Promise, ModelTokenError> {
        let grantor = self.require_key_manager()?;
        let len = encrypted_key.0.len();
        if len == 0 || len > MAX_ENCRYPTED_KEY {
            return Err(ModelTokenError::EncryptedKeyTooLarge {
                len,
                max: MAX_ENCRYPTED_KEY,
            });
        }
        let attached = env::attached_deposit();
        let required = grant_deposit_for(len);
        if attached < required {
            return Err(ModelTokenError::DepositTooSmall { required, attached });
        }
        let prepaid = env::prepaid_gas();
        if prepaid < MIN_GAS_FOR_GRANT {
            return Err(ModelTokenError::NotEnoughGas {
                required: MIN_GAS_FOR_GRANT,
                attached: prepaid,
            });
        }
        Ok(ext_registry::ext(self.registry.clone())
            .with_static_gas(GAS_FOR_GET_NODE)
            .get_node(node_id)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_FOR_GRANT_CALLBACK)
                    .with_unused_gas_weight(0)
                    .on_node_checked(
                        node_id,
                        encrypted_key,
                        key_hash,
                        grantor,
                        U128(attached.as_yoctonear()),
                    ),
            ))
    }

    /// Stores the grant if the node qualifies; otherwise refunds the deposit. Never panics
    /// after the deposit arrived, so the deposit always goes somewhere.
    fn settle_grant(
        &mut self,
        node_id: NodeId,
        encrypted_key: Vec<u8>,
        key_hash: Hash32,
        grantor: AccountId,
        deposit: NearToken,
        node: Result<Option<NodeView>, PromiseError>,
    ) -> bool {
        let now = env::block_timestamp();
        let node = match node {
            Ok(Some(node)) => node,
            Ok(None) => {
                return refuse(
                    &grantor,
                    deposit,
                    format!("node {node_id} is not in the registry"),
                );
            }
            Err(e) => return refuse(&grantor, deposit, format!("registry call failed: {e:?}")),
        };
        let verdict = match self.manifest.get() {
            Some(manifest) => check_node(&node, manifest, now),
            None => Err("the model has no manifest".to_owned()),
        };
        if let Err(reason) = verdict {
            return refuse(&grantor, deposit, reason);
        }
        if let Some(old) = self.grants.remove(&node_id) {
            refund(
                &old.granted_by,
                NearToken::from_yoctonear(old.storage_deposit),
            );
        }
        let mark = self.storage_mark();
        let mut grant = KeyGrant {
            encrypted_key,
            key_hash,
            encryption_key: node.encryption_key,
            granted_by: grantor.clone(),
            granted_at_ns: now,
            expires_at_ns: node.attestation_expires_at_ns.0,
            storage_deposit: 0,
        };
        self.grants.insert(node_id, grant.clone());
        let cost =
            env::storage_byte_cost().saturating_mul(u128::from(self.storage_grown_since(mark)));
        let Some(change) = deposit.checked_sub(cost) else {
            self.grants.remove(&node_id);
            return refuse(
                &grantor,
                deposit,
                format!("the grant needs {cost} of storage"),
            );
        };
        grant.storage_deposit = cost.as_yoctonear();
        self.grants.insert(node_id, grant);
        refund(&grantor, change);
        ModelEvent::KeyGranted { node_id, key_hash }.emit();
        true
    }

    fn try_revoke_key(&mut self, node_id: NodeId) -> Result<(), ModelTokenError> {
        require_one_yocto()?;
        self.require_key_manager()?;
        let grant = self
            .grants
            .remove(&node_id)
            .ok_or(ModelTokenError::NoGrant(node_id))?;
        refund(
            &grant.granted_by,
            NearToken::from_yoctonear(grant.storage_deposit),
        );
        ModelEvent::KeyRevoked { node_id }.emit();
        Ok(())
    }
}

fn refuse(grantor: &AccountId, deposit: NearToken, reason: String) -> bool {
    env::log_str(&format!("key grant refused: {reason}"));
    refund(grantor, deposit);
    false
}

#[near]
impl KeyGrantApi for ModelToken {
    #[payable]
    fn grant_key(
        &mut self,
        node_id: NodeId,
        encrypted_key: Base64VecU8,
        key_hash: Hash32,
    ) -> Promise {
        self.try_grant_key(node_id, encrypted_key, key_hash)
            .or_panic()
    }

    #[payable]
    fn revoke_key(&mut self, node_id: NodeId) {
        self.try_revoke_key(node_id).or_panic()
    }

    fn key_grant(&self, node_id: NodeId) -> Option<KeyGrantView> {
        self.grants.get(&node_id).map(|g| grant_view(node_id, g))
    }

    fn key_grants(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<KeyGrantView> {
        self.grants
            .iter()
            .skip(from_index.unwrap_or(0) as usize)
            .take(
                limit
                    .unwrap_or(MAX_KEY_GRANTS_PAGE)
                    .min(MAX_KEY_GRANTS_PAGE) as usize,
            )
            .map(|(id, g)| grant_view(*id, g))
            .collect()
    }
}

#[near]
impl ModelToken {
    /// Deposit `grant_key` needs for an encrypted key of `encrypted_len` bytes.
    pub fn grant_deposit(&self, encrypted_len: u32) -> NearToken {
        grant_deposit_for(encrypted_len as usize)
    }

    /// Callback of `grant_key` (this contract only): stores the grant only if the registry
    /// reports the node eligible; refunds the deposit otherwise.
    #[private]
    pub fn on_node_checked(
        &mut self,
        node_id: NodeId,
        encrypted_key: Base64VecU8,
        key_hash: Hash32,
        grantor: AccountId,
        deposit: U128,
        #[callback_result] node: Result<Option<NodeView>, PromiseError>,
    ) -> bool {
        self.settle_grant(
            node_id,
            encrypted_key.0,
            key_hash,
            grantor,
            NearToken::from_yoctonear(deposit.0),
            node,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use enclave_cloud_common::{AttestationKind, Measurements, NodeStatus, TcbStatus};
    use near_sdk::test_utils::{get_created_receipts, get_logs};

    pub(crate) fn node(status: NodeStatus, expires: u64, compose: Hash32) -> NodeView {
        NodeView {
            node_id: NodeId(7),
            operator: acc("op.near"),
            status,
            kind: AttestationKind::Tdx,
            signer_key: "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
                .parse()
                .unwrap(),
            encryption_key: "11".repeat(32),
            tcb_status: TcbStatus::UpToDate,
            measurements: Measurements {
                rtmr3: "cd".repeat(48),
                compose_hash: Some(compose),
                ..Default::default()
            },
            gpus: vec![],
            endpoint: None,
            region: None,
            prices: vec![],
            capacity: 1,
            registered_at_ns: U64(0),
            attestation_expires_at_ns: U64(expires),
            last_heartbeat_ns: U64(NOW),
        }
    }

    fn allowed() -> Hash32 {
        Hash32([0xab; 32])
    }

    fn grant(t: &mut ModelToken, who: &str) {
        ctx_gas(who, NearToken::from_millinear(100), Gas::from_tgas(50));
        let _ = t.grant_key(NodeId(7), Base64VecU8(vec![9; 80]), Hash32([1; 32]));
    }

    fn answer(t: &mut ModelToken, node: Option<NodeView>) -> bool {
        let data = near_sdk::serde_json::to_vec(&node).unwrap();
        callback_ctx(near_sdk::PromiseResult::Successful(data));
        t.on_node_checked(
            NodeId(7),
            Base64VecU8(vec![9; 80]),
            Hash32([1; 32]),
            acc(KEY_SERVICE),
            U128(NearToken::from_millinear(100).as_yoctonear()),
            Ok(node),
        )
    }

    #[test]
    fn grant_calls_registry_and_stores_only_eligible_nodes() {
        let mut t = setup();
        grant(&mut t, KEY_SERVICE);
        let r = get_created_receipts();
        assert_eq!(r[0].receiver_id, acc(REGISTRY));
        assert!(answer(
            &mut t,
            Some(node(NodeStatus::Active, NOW + 100, allowed()))
        ));
        assert!(get_logs().iter().any(|l| l.contains("\"key_granted\"")));
        let g = t.key_grant(NodeId(7)).unwrap();
        assert_eq!(g.encryption_key, "11".repeat(32));
        assert_eq!(t.key_grants(None, None).len(), 1);
        // The excess deposit is refunded.
        assert!(
            get_created_receipts()
                .iter()
                .any(|r| r.receiver_id == acc(KEY_SERVICE))
        );
    }

    /// Issue 15, finding 7: a grant stores exactly the bytes its grantor paid for, a
    /// replacement or a revocation frees exactly what it refunds.
    #[test]
    fn grant_storage_is_paid_byte_for_byte() {
        let mut t = setup();
        let byte = env::storage_byte_cost().as_yoctonear();
        let paid_bytes = |t: &ModelToken| {
            t.grants
                .get(&NodeId(7))
                .map_or(0, |g| (g.storage_deposit / byte) as i64)
        };
        let eligible = node(NodeStatus::Active, NOW + 100, allowed());
        grant(&mut t, KEY_SERVICE);
        assert!(assert_storage_paid(&mut t, "grant", |t| {
            let granted = answer(t, Some(eligible.clone()));
            (granted, paid_bytes(t))
        }));
        assert!(paid_bytes(&t) > 0);
        // A replacement: the old deposit is refunded, the new one charged; net zero here.
        grant(&mut t, OWNER);
        assert!(assert_storage_paid(&mut t, "replacement", |t| {
            (answer(t, Some(eligible)), 0)
        }));
        let refunded = paid_bytes(&t);
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_storage_paid(&mut t, "revoke", |t| {
            t.revoke_key(NodeId(7));
            ((), -refunded)
        });
        assert!(t.key_grant(NodeId(7)).is_none());
    }

    #[test]
    fn ineligible_nodes_are_refused_and_refunded() {
        let cases = [
            (
                Some(node(NodeStatus::Inactive, NOW + 100, allowed())),
                "not active",
            ),
            (
                Some(node(NodeStatus::Active, NOW, allowed())),
                "attestation expired",
            ),
            (
                Some(node(NodeStatus::Active, NOW + 100, Hash32([2; 32]))),
                "not allowed by the manifest",
            ),
            (None, "not in the registry"),
        ];
        for (n, reason) in cases {
            let mut t = setup();
            assert!(!answer(&mut t, n));
            assert!(
                get_logs().iter().any(|l| l.contains(reason)),
                "{reason}: {:?}",
                get_logs()
            );
            assert!(t.key_grant(NodeId(7)).is_none());
            assert_eq!(get_created_receipts()[0].receiver_id, acc(KEY_SERVICE));
        }
        // A failed registry call is refused the same way.
        let mut t = setup();
        callback_ctx(near_sdk::PromiseResult::Failed);
        let dep = U128(NearToken::from_millinear(100).as_yoctonear());
        assert!(!t.on_node_checked(
            NodeId(7),
            Base64VecU8(vec![1]),
            Hash32([1; 32]),
            acc(OWNER),
            dep,
            Err(PromiseError::Failed)
        ));
        assert!(t.key_grant(NodeId(7)).is_none());
    }

    #[test]
    fn rtmr3_match_is_accepted_too() {
        let mut m = model_init().manifest;
        m.allowed_enclave_measurements = vec!["cd".repeat(48)];
        let n = node(NodeStatus::Active, NOW + 1, Hash32([3; 32]));
        assert_eq!(check_node(&n, &m, NOW), Ok(()));
    }

    #[test]
    fn dev_nodes_need_the_dev_entry_and_never_match_hex_entries() {
        let mut m = model_init().manifest;
        let mut dev = node(NodeStatus::Active, NOW + 1, allowed());
        dev.kind = AttestationKind::Dev;
        // What the registry records for a dev node: no measurements at all.
        dev.measurements = Measurements::default();
        let err = check_node(&dev, &m, NOW).unwrap_err();
        assert!(err.contains("Dev attestation"), "{err}");
        // Even a dev node reporting an allowed compose hash is not a TDX node.
        dev.measurements.compose_hash = Some(allowed());
        assert!(check_node(&dev, &m, NOW).is_err());
        m.allowed_enclave_measurements.push("DEV".into());
        let m = crate::manifest::validate_manifest(m).unwrap();
        assert!(m.allowed_enclave_measurements.contains(&"dev".to_owned()));
        assert_eq!(check_node(&dev, &m, NOW), Ok(()));
        // The entry admits no TDX node that is not otherwise allowed.
        let mut m = m;
        m.allowed_enclave_measurements = vec!["dev".into()];
        let tdx = node(NodeStatus::Active, NOW + 1, allowed());
        assert!(check_node(&tdx, &m, NOW).is_err());
    }

    #[test]
    fn who_may_grant_and_revoke() {
        let mut t = setup();
        ctx_gas(ALICE, NearToken::from_millinear(100), Gas::from_tgas(50));
        assert_panics_with(
            || t.grant_key(NodeId(7), Base64VecU8(vec![1]), Hash32([1; 32])),
            "may manage keys",
        );
        ctx_gas(OWNER, NearToken::from_yoctonear(1), Gas::from_tgas(50));
        assert_panics_with(
            || t.grant_key(NodeId(7), Base64VecU8(vec![1]), Hash32([1; 32])),
            "attach at least",
        );
        ctx_gas(OWNER, NearToken::from_millinear(100), Gas::from_tgas(20));
        assert_panics_with(
            || t.grant_key(NodeId(7), Base64VecU8(vec![1]), Hash32([1; 32])),
            "gas",
        );
        ctx_gas(OWNER, NearToken::from_millinear(100), Gas::from_tgas(50));
        assert_panics_with(
            || t.grant_key(NodeId(7), Base64VecU8(vec![1; 2000]), Hash32([1; 32])),
            "at most 1024",
        );
        grant(&mut t, OWNER);
        assert!(answer(
            &mut t,
            Some(node(NodeStatus::Active, NOW + 100, allowed()))
        ));

        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.revoke_key(NodeId(7)), "may manage keys");
        ctx(KEY_SERVICE, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.revoke_key(NodeId(7)), "1 yoctoNEAR");
        ctx(KEY_SERVICE, NearToken::from_yoctonear(1));
        t.revoke_key(NodeId(7));
        assert!(get_logs().iter().any(|l| l.contains("\"key_revoked\"")));
        assert!(t.key_grant(NodeId(7)).is_none());
        assert_eq!(
            get_created_receipts()[0].receiver_id,
            acc(KEY_SERVICE),
            "storage refunded to the payer"
        );
        ctx(KEY_SERVICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.revoke_key(NodeId(7)), "has no key grant");
    }
}
