//! What the keeper should do, decided from chain state alone: the model's manifest, the chain's
//! clock, every node that offers the model or holds a grant (as the registry reports it now)
//! and the grants the model token stores. Pure, so a restarted keeper decides exactly what a
//! running one would: nothing is remembered between passes.
//!
//! A grant belongs to one attestation of one node: the node's x25519 key and its attestation
//! expiry as the registry reported them when the contract stored the grant. A node that
//! re-attests (a new key, or a new expiry) gets a fresh grant; a node whose attestation ended
//! (expired, deregistered, gone from the registry), that stopped offering the model, or that
//! the manifest no longer allows, loses its grant. A node that is merely inactive (missed
//! heartbeats) or still pending keeps the grant it has and gets none yet: one heartbeat
//! brings it back, and the contract would refuse it anyway.

use std::collections::BTreeMap;
use std::fmt;

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::model_token::key_grants::{
    KeyGrantRefusal, KeyGrantView, manifest_allows,
};
use enclave_cloud_common::{Hash32, ModelId, NodeId, NodeStatus};
use serde::Serialize;

/// What the keeper reads before each pass.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// The model token's manifest (`None`: it has none, so no node is allowed).
    pub manifest: Option<ModelManifest>,
    /// The chain's clock (the registry's `now_ns`), the time the contract checks against.
    pub now_ns: u64,
    /// Every node the indexer or the registry lists for the model and every node holding a
    /// grant, as the registry's `get_node` reports it now (`None`: not in the registry).
    pub nodes: BTreeMap<NodeId, Option<NodeView>>,
    /// The grants the model token stores, by node.
    pub grants: BTreeMap<NodeId, KeyGrantView>,
}

/// One node's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub node_id: NodeId,
    pub verdict: Verdict,
}

/// What to do about a node, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// Seal the model key to `encryption_key` and post it (`grant_key`).
    Grant {
        #[serde(with = "hex_key")]
        encryption_key: [u8; 32],
        why: GrantReason,
    },
    /// Delete the node's grant (`revoke_key`).
    Revoke(Ineligible),
    /// The node's grant stays as it is.
    Keep(KeepReason),
    /// The node has no grant and gets none now.
    Skip(Ineligible),
}

impl Verdict {
    /// Whether the verdict sends a transaction.
    pub fn acts(&self) -> bool {
        matches!(self, Self::Grant { .. } | Self::Revoke(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantReason {
    /// The node has no grant yet.
    New,
    /// The node re-attested with a new enclave key: the old grant is sealed to a key the
    /// enclave no longer holds.
    NewEnclaveKey,
    /// The node re-attested (same key, a new attestation expiry).
    NewAttestation,
    /// The grant holds another model key (the owner rotated it).
    OtherModelKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// The grant is for the node's current attestation and the current key.
    UpToDate,
    /// The node is inactive or pending: its grant stays until its attestation ends, and a
    /// new one waits until it is active again.
    NotActive(NodeStatus),
}

/// Why a node may not hold the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    NotInRegistry,
    Deregistered,
    /// Its attestation expired (at this chain time, ns).
    AttestationExpired(u64),
    /// It no longer lists a price for the model.
    DoesNotOfferModel,
    NoManifest,
    /// The manifest does not allow its enclave (the contract's own check).
    NotAllowed(String),
    /// Its registered x25519 key is not 32 bytes of hex.
    BadEncryptionKey,
    /// Inactive or pending, with no grant yet.
    NotActive(NodeStatus),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Grant { why, .. } => write!(f, "grant ({why})"),
            Self::Revoke(why) => write!(f, "revoke ({why})"),
            Self::Keep(why) => write!(f, "keep ({why})"),
            Self::Skip(why) => write!(f, "skip ({why})"),
        }
    }
}

impl fmt::Display for GrantReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::New => "new node",
            Self::NewEnclaveKey => "re-attested with a new enclave key",
            Self::NewAttestation => "re-attested",
            Self::OtherModelKey => "its grant holds another model key",
        })
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpToDate => f.write_str("up to date"),
            Self::NotActive(s) => write!(f, "node is {s:?}; its grant stays until it ends"),
        }
    }
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInRegistry => f.write_str("not in the registry"),
            Self::Deregistered => f.write_str("deregistered"),
            Self::AttestationExpired(at) => write!(f, "attestation expired at {at} ns"),
            Self::DoesNotOfferModel => f.write_str("does not offer the model"),
            Self::NoManifest => f.write_str("the model has no manifest"),
            Self::NotAllowed(why) => f.write_str(why),
            Self::BadEncryptionKey => f.write_str("its encryption key is not 32 bytes of hex"),
            Self::NotActive(s) => write!(f, "node is {s:?}, not active"),
        }
    }
}

/// The verdict on every node of `state`, in node order.
pub fn plan(model: &ModelId, key_hash: &Hash32, state: &ChainState) -> Vec<Decision> {
    let ids: std::collections::BTreeSet<NodeId> = state
        .nodes
        .keys()
        .chain(state.grants.keys())
        .copied()
        .collect();
    ids.into_iter()
        .map(|node_id| {
            let node = state.nodes.get(&node_id).and_then(Option::as_ref);
            let grant = state.grants.get(&node_id);
            Decision {
                node_id,
                verdict: verdict(model, key_hash, state, node, grant),
            }
        })
        .collect()
}

fn verdict(
    model: &ModelId,
    key_hash: &Hash32,
    state: &ChainState,
    node: Option<&NodeView>,
    grant: Option<&KeyGrantView>,
) -> Verdict {
    let eligible = node.ok_or(Ineligible::NotInRegistry).and_then(|node| {
        attestation_allows(model, state, node).map(|encryption_key| (node, encryption_key))
    });
    let (node, encryption_key) = match eligible {
        Ok(found) => found,
        Err(why) if grant.is_some() => return Verdict::Revoke(why),
        Err(why) => return Verdict::Skip(why),
    };
    if node.status != NodeStatus::Active {
        return match grant {
            Some(_) => Verdict::Keep(KeepReason::NotActive(node.status)),
            None => Verdict::Skip(Ineligible::NotActive(node.status)),
        };
    }
    let why = match grant {
        None => GrantReason::New,
        Some(g) if !g.encryption_key.eq_ignore_ascii_case(&node.encryption_key) => {
            GrantReason::NewEnclaveKey
        }
        Some(g) if g.expires_at_ns != node.attestation_expires_at_ns => GrantReason::NewAttestation,
        Some(g) if g.key_hash != *key_hash => GrantReason::OtherModelKey,
        Some(_) => return Verdict::Keep(KeepReason::UpToDate),
    };
    Verdict::Grant {
        encryption_key,
        why,
    }
}

/// Whether the node's current attestation may hold the key at all, whatever its liveness:
/// registered, unexpired, offering the model, allowed by the manifest, with a usable key.
fn attestation_allows(
    model: &ModelId,
    state: &ChainState,
    node: &NodeView,
) -> Result<[u8; 32], Ineligible> {
    match node.status {
        NodeStatus::Deregistered => return Err(Ineligible::Deregistered),
        NodeStatus::Expired => {
            return Err(Ineligible::AttestationExpired(
                node.attestation_expires_at_ns.0,
            ));
        }
        NodeStatus::Active | NodeStatus::Inactive | NodeStatus::Pending => {}
    }
    if node.attestation_expires_at_ns.0 <= state.now_ns {
        return Err(Ineligible::AttestationExpired(
            node.attestation_expires_at_ns.0,
        ));
    }
    if !node.prices.iter().any(|p| p.model_id == *model) {
        return Err(Ineligible::DoesNotOfferModel);
    }
    let manifest = state.manifest.as_ref().ok_or(Ineligible::NoManifest)?;
    manifest_allows(node, manifest).map_err(|refusal| match refusal {
        KeyGrantRefusal::NoEncryptionKey { .. } => Ineligible::BadEncryptionKey,
        other => Ineligible::NotAllowed(other.to_string()),
    })?;
    parse_key(&node.encryption_key).ok_or(Ineligible::BadEncryptionKey)
}

fn parse_key(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

mod hex_key {
    pub fn serialize<S: serde::Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::interfaces::model_token::key_grants::DEV_MEASUREMENT;
    use enclave_cloud_common::{AttestationKind, Measurements, ModelPrice, TcbStatus};
    use near_sdk::json_types::{Base64VecU8, U64, U128};

    const NOW: u64 = 1_000_000;
    const EXPIRES: u64 = NOW + 3_600;
    const COMPOSE: Hash32 = Hash32([0xab; 32]);
    const OUR_KEY: Hash32 = Hash32([0x44; 32]);

    fn model() -> ModelId {
        "llama".parse().unwrap()
    }

    fn manifest(allowed: &[&str]) -> ModelManifest {
        ModelManifest {
            name: "Llama".into(),
            allowed_enclave_measurements: allowed.iter().map(|s| (*s).to_owned()).collect(),
            ..ModelManifest::default()
        }
    }

    fn allowing_tdx() -> ModelManifest {
        manifest(&[&COMPOSE.to_string()])
    }

    fn enclave_key(id: u64) -> String {
        hex::encode([id as u8; 32])
    }

    /// An active TDX node with the allowed compose hash, offering the model.
    fn node(id: u64) -> NodeView {
        NodeView {
            node_id: NodeId(id),
            operator: "op.near".parse().unwrap(),
            status: NodeStatus::Active,
            kind: AttestationKind::Tdx,
            signer_key: "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
                .parse()
                .unwrap(),
            encryption_key: enclave_key(id),
            tcb_status: TcbStatus::UpToDate,
            measurements: Measurements {
                rtmr3: "cd".repeat(48),
                compose_hash: Some(COMPOSE),
                ..Default::default()
            },
            gpus: vec![],
            endpoint: None,
            region: None,
            prices: vec![ModelPrice {
                model_id: model(),
                input_per_million: U128(1),
                output_per_million: U128(2),
            }],
            capacity: 1,
            registered_at_ns: U64(0),
            attestation_expires_at_ns: U64(EXPIRES),
            last_heartbeat_ns: U64(NOW),
        }
    }

    /// The grant the contract stores for `node` under `key_hash`.
    fn grant_for(node: &NodeView, key_hash: Hash32) -> KeyGrantView {
        KeyGrantView {
            node_id: node.node_id,
            encrypted_key: Base64VecU8(vec![7; 80]),
            key_hash,
            encryption_key: node.encryption_key.clone(),
            granted_by: "owner.near".parse().unwrap(),
            granted_at_ns: U64(NOW - 10),
            expires_at_ns: node.attestation_expires_at_ns,
        }
    }

    fn state(
        manifest: ModelManifest,
        nodes: Vec<NodeView>,
        grants: Vec<KeyGrantView>,
    ) -> ChainState {
        ChainState {
            manifest: Some(manifest),
            now_ns: NOW,
            nodes: nodes.into_iter().map(|n| (n.node_id, Some(n))).collect(),
            grants: grants.into_iter().map(|g| (g.node_id, g)).collect(),
        }
    }

    fn verdicts(s: &ChainState) -> Vec<(u64, Verdict)> {
        plan(&model(), &OUR_KEY, s)
            .into_iter()
            .map(|d| (d.node_id.0, d.verdict))
            .collect()
    }

    fn only(s: &ChainState) -> Verdict {
        let mut v = verdicts(s);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0).1
    }

    fn grant(id: u64, why: GrantReason) -> Verdict {
        Verdict::Grant {
            encryption_key: [id as u8; 32],
            why,
        }
    }

    #[test]
    fn an_allowed_node_gets_a_grant() {
        let s = state(allowing_tdx(), vec![node(1)], vec![]);
        assert_eq!(only(&s), grant(1, GrantReason::New));
        // By RTMR3 too, and a dev node by the `dev` entry.
        let s = state(manifest(&[&"cd".repeat(48)]), vec![node(1)], vec![]);
        assert_eq!(only(&s), grant(1, GrantReason::New));
        let mut dev = node(2);
        dev.kind = AttestationKind::Dev;
        dev.measurements = Measurements::default();
        let s = state(manifest(&[DEV_MEASUREMENT]), vec![dev], vec![]);
        assert_eq!(only(&s), grant(2, GrantReason::New));
    }

    #[test]
    fn a_node_the_manifest_does_not_allow_gets_nothing() {
        let s = state(manifest(&[&"ef".repeat(32)]), vec![node(1)], vec![]);
        let Verdict::Skip(Ineligible::NotAllowed(why)) = only(&s) else {
            panic!("{:?}", only(&s));
        };
        assert!(why.contains("not allowed by the manifest"), "{why}");
        // A dev node never matches a hex entry, a TDX node never the `dev` entry.
        let mut dev = node(2);
        dev.kind = AttestationKind::Dev;
        let s = state(allowing_tdx(), vec![dev], vec![]);
        assert!(matches!(only(&s), Verdict::Skip(Ineligible::NotAllowed(_))));
        let s = state(manifest(&[DEV_MEASUREMENT]), vec![node(1)], vec![]);
        assert!(matches!(only(&s), Verdict::Skip(Ineligible::NotAllowed(_))));
        // No manifest: nobody.
        let mut s = state(allowing_tdx(), vec![node(1)], vec![]);
        s.manifest = None;
        assert_eq!(only(&s), Verdict::Skip(Ineligible::NoManifest));
    }

    #[test]
    fn an_already_granted_node_is_left_alone() {
        let n = node(1);
        let s = state(
            allowing_tdx(),
            vec![n.clone()],
            vec![grant_for(&n, OUR_KEY)],
        );
        assert_eq!(only(&s), Verdict::Keep(KeepReason::UpToDate));
        assert!(
            plan(&model(), &OUR_KEY, &s)
                .iter()
                .all(|d| !d.verdict.acts())
        );
        // The registry's hex case does not matter.
        let mut g = grant_for(&n, OUR_KEY);
        g.encryption_key = g.encryption_key.to_ascii_uppercase();
        let s = state(allowing_tdx(), vec![n], vec![g]);
        assert_eq!(only(&s), Verdict::Keep(KeepReason::UpToDate));
    }

    #[test]
    fn a_reattested_node_gets_a_fresh_grant() {
        let old = node(1);
        let g = grant_for(&old, OUR_KEY);
        // Same key, a new attestation.
        let mut renewed = old.clone();
        renewed.attestation_expires_at_ns = U64(EXPIRES + 7_200);
        let s = state(allowing_tdx(), vec![renewed], vec![g.clone()]);
        assert_eq!(only(&s), grant(1, GrantReason::NewAttestation));
        // A new enclave key (the grant's ciphertext is for the old one).
        let mut rekeyed = old.clone();
        rekeyed.encryption_key = hex::encode([9u8; 32]);
        let s = state(allowing_tdx(), vec![rekeyed], vec![g.clone()]);
        assert_eq!(
            only(&s),
            Verdict::Grant {
                encryption_key: [9; 32],
                why: GrantReason::NewEnclaveKey
            }
        );
        // A grant whose own expiry passed but whose node re-attested is replaced, not revoked.
        let mut late = g;
        late.expires_at_ns = U64(NOW - 1);
        let s = state(allowing_tdx(), vec![old], vec![late]);
        assert_eq!(only(&s), grant(1, GrantReason::NewAttestation));
    }

    #[test]
    fn a_grant_under_another_model_key_is_replaced() {
        let n = node(1);
        let s = state(
            allowing_tdx(),
            vec![n.clone()],
            vec![grant_for(&n, Hash32([1; 32]))],
        );
        assert_eq!(only(&s), grant(1, GrantReason::OtherModelKey));
    }

    #[test]
    fn expired_and_deregistered_nodes_are_revoked() {
        let n = node(1);
        let g = grant_for(&n, OUR_KEY);
        let mut expired = n.clone();
        expired.attestation_expires_at_ns = U64(NOW);
        let s = state(allowing_tdx(), vec![expired], vec![g.clone()]);
        assert_eq!(
            only(&s),
            Verdict::Revoke(Ineligible::AttestationExpired(NOW))
        );
        // The registry's own status says so before the clock does.
        let mut marked = n.clone();
        marked.status = NodeStatus::Expired;
        let s = state(allowing_tdx(), vec![marked], vec![g.clone()]);
        assert_eq!(
            only(&s),
            Verdict::Revoke(Ineligible::AttestationExpired(EXPIRES))
        );
        let mut gone = n.clone();
        gone.status = NodeStatus::Deregistered;
        let s = state(allowing_tdx(), vec![gone], vec![g.clone()]);
        assert_eq!(only(&s), Verdict::Revoke(Ineligible::Deregistered));
        // Unknown to the registry (only its grant names it).
        let s = state(allowing_tdx(), vec![], vec![g.clone()]);
        assert_eq!(only(&s), Verdict::Revoke(Ineligible::NotInRegistry));
        let mut s = state(allowing_tdx(), vec![], vec![g]);
        s.nodes.insert(NodeId(1), None);
        assert_eq!(only(&s), Verdict::Revoke(Ineligible::NotInRegistry));
        // Without a grant there is nothing to revoke.
        let mut expired = n;
        expired.attestation_expires_at_ns = U64(NOW - 5);
        let s = state(allowing_tdx(), vec![expired], vec![]);
        assert_eq!(
            only(&s),
            Verdict::Skip(Ineligible::AttestationExpired(NOW - 5))
        );
    }

    #[test]
    fn a_manifest_change_revokes_nodes_it_no_longer_allows() {
        let (a, mut b) = (node(1), node(2));
        b.measurements.compose_hash = Some(Hash32([0xee; 32]));
        let grants = vec![grant_for(&a, OUR_KEY), grant_for(&b, OUR_KEY)];
        let both = manifest(&[&COMPOSE.to_string(), &"ee".repeat(32)]);
        let s = state(both, vec![a.clone(), b.clone()], grants.clone());
        assert!(
            verdicts(&s)
                .iter()
                .all(|(_, v)| *v == Verdict::Keep(KeepReason::UpToDate))
        );
        // The owner drops b's measurement: b loses its grant, a keeps its own.
        let s = state(allowing_tdx(), vec![a.clone(), b.clone()], grants.clone());
        let v = verdicts(&s);
        assert_eq!(v[0], (1, Verdict::Keep(KeepReason::UpToDate)));
        assert!(
            matches!(v[1], (2, Verdict::Revoke(Ineligible::NotAllowed(_)))),
            "{v:?}"
        );
        // A manifest that lost its entries revokes everyone.
        let s = state(manifest(&[]), vec![a, b], grants);
        assert!(
            verdicts(&s)
                .iter()
                .all(|(_, v)| matches!(v, Verdict::Revoke(Ineligible::NotAllowed(_))))
        );
    }

    #[test]
    fn a_node_that_stops_offering_the_model_is_revoked() {
        let mut n = node(1);
        let g = grant_for(&n, OUR_KEY);
        n.prices[0].model_id = "other".parse().unwrap();
        let s = state(allowing_tdx(), vec![n.clone()], vec![g]);
        assert_eq!(only(&s), Verdict::Revoke(Ineligible::DoesNotOfferModel));
        let s = state(allowing_tdx(), vec![n], vec![]);
        assert_eq!(only(&s), Verdict::Skip(Ineligible::DoesNotOfferModel));
    }

    #[test]
    fn inactive_and_pending_nodes_keep_their_grant_but_get_no_new_one() {
        for status in [NodeStatus::Inactive, NodeStatus::Pending] {
            let mut n = node(1);
            n.status = status;
            let s = state(allowing_tdx(), vec![n.clone()], vec![]);
            assert_eq!(only(&s), Verdict::Skip(Ineligible::NotActive(status)));
            let s = state(
                allowing_tdx(),
                vec![n.clone()],
                vec![grant_for(&n, OUR_KEY)],
            );
            assert_eq!(only(&s), Verdict::Keep(KeepReason::NotActive(status)));
            // Inactive but no longer allowed: revoked all the same.
            let s = state(manifest(&[]), vec![n.clone()], vec![grant_for(&n, OUR_KEY)]);
            assert!(matches!(
                only(&s),
                Verdict::Revoke(Ineligible::NotAllowed(_))
            ));
        }
    }

    #[test]
    fn unusable_encryption_keys_get_nothing() {
        for bad in ["", "zz", &"11".repeat(31)] {
            let mut n = node(1);
            n.encryption_key = bad.to_owned();
            let s = state(allowing_tdx(), vec![n.clone()], vec![]);
            assert_eq!(
                only(&s),
                Verdict::Skip(Ineligible::BadEncryptionKey),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_node_gets_one_verdict_in_node_order() {
        let (a, b, c) = (node(3), node(1), node(2));
        let mut gone = grant_for(&node(9), OUR_KEY);
        gone.node_id = NodeId(9);
        let s = state(
            allowing_tdx(),
            vec![a.clone(), b.clone(), c],
            vec![grant_for(&a, OUR_KEY), gone],
        );
        let v = verdicts(&s);
        assert_eq!(
            v,
            vec![
                (1, grant(1, GrantReason::New)),
                (2, grant(2, GrantReason::New)),
                (3, Verdict::Keep(KeepReason::UpToDate)),
                (9, Verdict::Revoke(Ineligible::NotInRegistry)),
            ]
        );
        // Applying the plan (what the chain then holds) leaves nothing to do: a restart
        // after a completed pass is a no-op.
        let mut after = s.clone();
        for d in plan(&model(), &OUR_KEY, &s) {
            match d.verdict {
                Verdict::Grant { .. } => {
                    let n = after.nodes[&d.node_id].clone().unwrap();
                    after.grants.insert(d.node_id, grant_for(&n, OUR_KEY));
                }
                Verdict::Revoke(_) => {
                    after.grants.remove(&d.node_id);
                }
                Verdict::Keep(_) | Verdict::Skip(_) => {}
            }
        }
        assert!(
            plan(&model(), &OUR_KEY, &after)
                .iter()
                .all(|d| !d.verdict.acts())
        );
    }

    #[test]
    fn verdicts_read_well() {
        assert_eq!(
            grant(1, GrantReason::NewAttestation).to_string(),
            "grant (re-attested)"
        );
        assert_eq!(
            Verdict::Revoke(Ineligible::Deregistered).to_string(),
            "revoke (deregistered)"
        );
        let json = serde_json::to_value(grant(1, GrantReason::New)).unwrap();
        assert_eq!(json["action"], "grant");
        assert_eq!(json["reason"]["encryption_key"], "01".repeat(32));
    }
}
