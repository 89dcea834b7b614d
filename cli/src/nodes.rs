//! Nodes: listing them (indexer), choosing one for a job, and confirming its attested keys with
//! the registry, the source of truth (the indexer only helps find candidates).

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{AttestationKind, ModelId, ModelPrice, NodeId, NodeStatus};
use near_sdk::json_types::{U64, U128};
use serde::Serialize;

use crate::Error;
use crate::amount::Near;
use crate::indexer::{Indexer, NodeQuery};
use crate::output::{Align, Report, Table};
use chain_client::amount::NEAR_DECIMALS;

/// One attested GPU (what the listing shows of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuSummary {
    pub model: String,
}

/// A node as the client uses it: converted from the registry's [`NodeView`] (`get_node`) or
/// from the indexer's [`protocol::indexer::Node`] (its fields carry the same names; ids,
/// statuses and amounts as text there).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub operator: String,
    pub status: NodeStatus,
    pub kind: AttestationKind,
    /// The enclave's ed25519 NEAR key, `ed25519:<base58>`: signs result receipts.
    pub signer_key: String,
    /// The enclave's x25519 key, hex: job inputs are sealed to it.
    pub encryption_key: String,
    pub tcb_status: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub gpus: Vec<GpuSummary>,
    pub prices: Vec<ModelPrice>,
    pub capacity: u32,
    pub attestation_expires_at_ns: U64,
    pub last_heartbeat_ns: U64,
}

impl NodeInfo {
    /// The x25519 key inputs are sealed to.
    pub fn encryption_key_bytes(&self) -> Result<[u8; 32], Error> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(self.encryption_key.trim(), &mut out).map_err(|_| {
            Error::Verification(format!(
                "node {} has no valid x25519 key ('{}')",
                self.node_id, self.encryption_key
            ))
        })?;
        Ok(out)
    }

    /// The ed25519 key that signs the node's receipts.
    pub fn signer_key_bytes(&self) -> Result<[u8; 32], Error> {
        ed25519_key_bytes(&self.signer_key)
    }

    pub fn price_of(&self, model: &ModelId) -> Option<&ModelPrice> {
        self.prices.iter().find(|p| &p.model_id == model)
    }

    /// Why this node cannot take a job for `model` now, if it cannot.
    pub fn unusable_for(&self, model: &ModelId, now_ns: u64) -> Option<String> {
        let id = self.node_id;
        if self.status != NodeStatus::Active {
            return Some(format!(
                "node {id} is {}, not active",
                status_name(self.status)
            ));
        }
        if self.attestation_expires_at_ns.0 <= now_ns {
            return Some(format!("node {id}'s attestation has expired"));
        }
        if self.price_of(model).is_none() {
            return Some(format!("node {id} does not serve model '{model}'"));
        }
        None
    }
}

/// Why an indexer node record does not make a [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node '{node_id}': {field} '{value}' is not valid")]
pub struct BadNodeRecord {
    pub node_id: String,
    pub field: &'static str,
    pub value: String,
}

impl TryFrom<protocol::indexer::Node> for NodeInfo {
    type Error = BadNodeRecord;

    fn try_from(n: protocol::indexer::Node) -> Result<Self, Self::Error> {
        let bad = |field: &'static str, value: &str| BadNodeRecord {
            node_id: n.node_id.clone(),
            field,
            value: value.to_owned(),
        };
        let u64_of = |field: &'static str, value: &str| {
            value.parse::<u64>().map(U64).map_err(|_| bad(field, value))
        };
        let u128_of = |field: &'static str, value: &str| {
            value
                .parse::<u128>()
                .map(U128)
                .map_err(|_| bad(field, value))
        };
        let prices = n
            .prices
            .iter()
            .map(|p| {
                Ok(ModelPrice {
                    model_id: p
                        .model_id
                        .parse()
                        .map_err(|_| bad("model_id", &p.model_id))?,
                    input_per_million: u128_of("input_per_million", &p.input_per_million)?,
                    output_per_million: u128_of("output_per_million", &p.output_per_million)?,
                })
            })
            .collect::<Result<_, BadNodeRecord>>()?;
        Ok(Self {
            node_id: n.node_id.parse().map_err(|_| bad("node_id", &n.node_id))?,
            status: enum_named(&n.status).ok_or_else(|| bad("status", &n.status))?,
            kind: enum_named(&n.kind).ok_or_else(|| bad("kind", &n.kind))?,
            tcb_status: Some(n.tcb_status.clone()),
            capacity: u32::try_from(n.capacity)
                .map_err(|_| bad("capacity", &n.capacity.to_string()))?,
            attestation_expires_at_ns: u64_of(
                "attestation_expires_at_ns",
                &n.attestation_expires_at_ns,
            )?,
            last_heartbeat_ns: u64_of("last_heartbeat_ns", &n.last_heartbeat_ns)?,
            gpus: n
                .gpus
                .iter()
                .map(|g| GpuSummary {
                    model: g.model.clone(),
                })
                .collect(),
            prices,
            operator: n.operator,
            signer_key: n.signer_key,
            encryption_key: n.encryption_key,
            region: n.region,
            endpoint: n.endpoint,
        })
    }
}

/// The registry's record, `get_node`.
impl From<NodeView> for NodeInfo {
    fn from(n: NodeView) -> Self {
        Self {
            node_id: n.node_id,
            operator: n.operator.to_string(),
            status: n.status,
            kind: n.kind,
            signer_key: String::from(&n.signer_key),
            encryption_key: n.encryption_key,
            tcb_status: json_name(&n.tcb_status),
            region: n.region,
            endpoint: n.endpoint,
            gpus: n
                .gpus
                .into_iter()
                .map(|g| GpuSummary { model: g.model })
                .collect(),
            prices: n.prices,
            capacity: n.capacity,
            attestation_expires_at_ns: n.attestation_expires_at_ns,
            last_heartbeat_ns: n.last_heartbeat_ns,
        }
    }
}

/// A shared enum's JSON name, e.g. `UpToDate`.
fn json_name<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
}

/// A shared enum from its JSON (snake_case) name, e.g. `active` or `dev`.
fn enum_named<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// `ed25519:<base58>` → the 32 key bytes.
pub fn ed25519_key_bytes(key: &str) -> Result<[u8; 32], Error> {
    let bad = || Error::Verification(format!("'{key}' is not an ed25519 public key"));
    let parsed: near_sdk::PublicKey = key.parse().map_err(|_| bad())?;
    let bytes = parsed.as_bytes();
    // near-sdk's form: one curve byte (0 = ed25519), then the key.
    match bytes.split_first() {
        Some((0, rest)) => rest.try_into().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

pub fn status_name(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Active => "active",
        NodeStatus::Inactive => "inactive",
        NodeStatus::Expired => "expired",
        NodeStatus::Deregistered => "deregistered",
        NodeStatus::Pending => "pending",
    }
}

/// The first node of `candidates` (in the order given, e.g. cheapest first) that can take a
/// job for `model`; otherwise an error listing why each was passed over.
pub fn choose<'a>(
    candidates: &'a [NodeInfo],
    model: &ModelId,
    now_ns: u64,
) -> Result<&'a NodeInfo, Error> {
    let mut reasons = Vec::new();
    for node in candidates {
        match node.unusable_for(model, now_ns) {
            None => return Ok(node),
            Some(why) => reasons.push(why),
        }
    }
    Err(Error::NotFound(if reasons.is_empty() {
        format!("no node serves model '{model}' with these filters")
    } else {
        format!("no usable node for model '{model}': {}", reasons.join("; "))
    }))
}

/// The registry's record must carry the same keys the candidate was chosen with (the indexer
/// could be stale or lying); the registry's record is what the job uses.
pub fn confirm(candidate: &NodeInfo, on_chain: Option<NodeInfo>) -> Result<NodeInfo, Error> {
    let id = candidate.node_id;
    let chain =
        on_chain.ok_or_else(|| Error::NotFound(format!("node {id} is not in the registry")))?;
    if chain.encryption_key != candidate.encryption_key || chain.signer_key != candidate.signer_key
    {
        return Err(Error::Verification(format!(
            "node {id}'s keys in the registry differ from the indexer's; not sending to it"
        )));
    }
    Ok(chain)
}

/// A price per million tokens for display.
pub fn price_text(p: &ModelPrice) -> String {
    format!(
        "{} in / {} out per 1M tokens",
        Near(p.input_per_million.0),
        Near(p.output_per_million.0)
    )
}

/// The listing as a table: a row per node and model price (the node's columns repeated), only
/// `model`'s prices when given; prices in NEAR per million tokens, right-aligned.
pub fn table(nodes: &[NodeInfo], model: Option<&ModelId>) -> String {
    if nodes.is_empty() {
        return "no nodes match\n".into();
    }
    let mut t = Table::new(&[
        ("NODE", Align::Left),
        ("STATUS", Align::Left),
        ("KIND", Align::Left),
        ("REGION", Align::Left),
        ("GPUS", Align::Left),
        ("MODEL", Align::Left),
        ("IN NEAR/1M", Align::Right),
        ("OUT NEAR/1M", Align::Right),
    ]);
    for n in nodes {
        let gpus = n
            .gpus
            .iter()
            .map(|g| g.model.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let kind = match n.kind {
            AttestationKind::Tdx => "tdx",
            AttestationKind::Dev => "dev",
        };
        let node = [
            n.node_id.to_string(),
            status_name(n.status).to_owned(),
            kind.to_owned(),
            n.region.clone().unwrap_or_default(),
            gpus,
        ];
        let prices: Vec<&ModelPrice> = n
            .prices
            .iter()
            .filter(|p| model.is_none_or(|m| &p.model_id == m))
            .collect();
        if prices.is_empty() {
            t.row(node.clone());
        }
        for p in prices {
            let near = |v: u128| chain_client::amount::format_number(v, NEAR_DECIMALS);
            t.row(node.iter().cloned().chain([
                p.model_id.to_string(),
                near(p.input_per_million.0),
                near(p.output_per_million.0),
            ]));
        }
    }
    t.render("")
}

/// What `ecloud nodes` prints.
#[derive(Debug, Clone, Serialize)]
pub struct NodeList {
    pub items: Vec<NodeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// The model filter: the table shows only its prices.
    #[serde(skip)]
    pub model: Option<ModelId>,
}

impl Report for NodeList {
    fn human(&self) -> String {
        let mut out = table(&self.items, self.model.as_ref());
        if let Some(c) = &self.next_cursor {
            out.push_str(&format!("more: --cursor {c}\n"));
        }
        out
    }
}

/// `ecloud nodes`.
pub async fn list(indexer: &Indexer, query: NodeQuery) -> Result<NodeList, Error> {
    let model = query.model.clone();
    let page = indexer.nodes(&query).await?;
    Ok(NodeList {
        items: page.items,
        next_cursor: page.next_cursor,
        model,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use near_sdk::json_types::U128;

    /// A node as the indexer serves it.
    pub(crate) fn indexer_node(
        id: u64,
        status: &str,
        enc: [u8; 32],
        near: [u8; 32],
    ) -> serde_json::Value {
        serde_json::json!({
            "node_id": id.to_string(), "operator": "op.test.near", "status": status, "kind": "dev",
            "signer_key": attestation::format_near_ed25519_key(&near),
            "encryption_key": hex::encode(enc), "tcb_status": "None",
            "measurements": {}, "capacity": 4, "gpus": [{"model": "H100", "device_id": "00"}],
            "prices": [{"model_id": "minilm", "input_per_million": "1000", "output_per_million": "2000"}],
            "region": "eu", "endpoint": null, "registered_height": 5,
            "registered_at_ns": "1", "attestation_expires_at_ns": "9000000000000000000",
            "last_heartbeat_ns": "2", "jobs_settled": 0, "requests_answered": 0
        })
    }

    /// [`indexer_node`] as the client reads it.
    pub(crate) fn indexer_node_info(
        id: u64,
        status: &str,
        enc: [u8; 32],
        near: [u8; 32],
    ) -> NodeInfo {
        let record: protocol::indexer::Node =
            serde_json::from_value(indexer_node(id, status, enc, near)).unwrap();
        NodeInfo::try_from(record).unwrap()
    }

    fn node(id: u64, status: &str) -> NodeInfo {
        indexer_node_info(id, status, [9; 32], [7; 32])
    }

    #[test]
    fn malformed_indexer_records_are_named_errors() {
        for (field, value) in [
            ("node_id", serde_json::json!("x")),
            ("status", serde_json::json!("sleeping")),
            ("kind", serde_json::json!("sgx")),
            ("attestation_expires_at_ns", serde_json::json!("-1")),
            ("capacity", serde_json::json!(-4)),
        ] {
            let mut json = indexer_node(1, "active", [9; 32], [7; 32]);
            json[field] = value;
            let record: protocol::indexer::Node = serde_json::from_value(json).unwrap();
            let err = NodeInfo::try_from(record).unwrap_err();
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn reads_the_indexer_and_registry_shapes() {
        let n = node(3, "active");
        assert_eq!(n.node_id, NodeId(3));
        assert_eq!(n.encryption_key_bytes().unwrap(), [9; 32]);
        assert_eq!(n.signer_key_bytes().unwrap(), [7; 32]);
        assert_eq!(
            n.price_of(&"minilm".parse().unwrap())
                .unwrap()
                .output_per_million,
            U128(2000)
        );
        // The registry's NodeView (JSON of the shared type) reads the same way.
        let view = serde_json::json!({
            "node_id": "3", "operator": "op.test.near", "status": "active", "kind": "dev",
            "signer_key": n.signer_key, "encryption_key": n.encryption_key, "tcb_status": "None",
            "measurements": {"mrtd": "", "rtmr0": "", "rtmr1": "", "rtmr2": "", "rtmr3": "", "compose_hash": null},
            "gpus": [], "endpoint": null, "region": null, "prices": [], "capacity": 1,
            "registered_at_ns": "1", "attestation_expires_at_ns": "5", "last_heartbeat_ns": "1"
        });
        let v = NodeInfo::from(serde_json::from_value::<NodeView>(view).unwrap());
        assert_eq!(v.encryption_key, n.encryption_key);
        assert_eq!(v.signer_key, n.signer_key);
        assert_eq!(v.operator, "op.test.near");
        assert_eq!(v.tcb_status.as_deref(), Some("None"));
        assert_eq!(v.attestation_expires_at_ns, U64(5));
    }

    #[test]
    fn choose_skips_unusable_nodes_and_says_why() {
        let m: ModelId = "minilm".parse().unwrap();
        let nodes = [node(1, "inactive"), node(2, "active")];
        assert_eq!(choose(&nodes, &m, 10).unwrap().node_id, NodeId(2));
        let err = choose(&nodes[..1], &m, 10).unwrap_err().to_string();
        assert!(err.contains("node 1 is inactive"), "{err}");
        let other: ModelId = "llama".parse().unwrap();
        let err = choose(&nodes, &other, 10).unwrap_err().to_string();
        assert!(err.contains("node 2 does not serve model 'llama'"), "{err}");
        let err = choose(&nodes[1..], &m, u64::MAX).unwrap_err().to_string();
        assert!(err.contains("attestation has expired"), "{err}");
        assert!(matches!(choose(&[], &m, 1), Err(Error::NotFound(_))));
    }

    #[test]
    fn confirm_requires_the_registry_to_agree() {
        let n = node(1, "active");
        assert_eq!(confirm(&n, Some(n.clone())).unwrap(), n);
        assert!(matches!(confirm(&n, None), Err(Error::NotFound(_))));
        let mut swapped = n.clone();
        swapped.encryption_key = hex::encode([1u8; 32]);
        assert!(matches!(
            confirm(&n, Some(swapped)),
            Err(Error::Verification(_))
        ));
    }

    #[test]
    fn bad_keys_are_errors_not_panics() {
        let mut n = node(1, "active");
        n.encryption_key = "zz".into();
        assert!(n.encryption_key_bytes().is_err());
        n.signer_key = "secp256k1:abc".into();
        assert!(n.signer_key_bytes().is_err());
        assert!(ed25519_key_bytes("").is_err());
    }

    #[test]
    fn table_lists_prices_in_near() {
        let t = table(&[node(1, "active")], None);
        // 1000 and 2000 yoctoNEAR per million tokens: below the smallest decimal shown.
        assert!(t.contains("minilm   <0.000001    <0.000001\n"), "{t}");
        let mut n = node(1, "active");
        n.prices[0].input_per_million = U128(275 * 10u128.pow(18) - 1);
        n.prices[0].output_per_million = U128(15 * 10u128.pow(23));
        let t = table(&[n], None);
        assert!(t.contains("minilm    0.000275          1.5\n"), "{t}");
        assert!(t.contains("H100"));
        assert_eq!(table(&[], None), "no nodes match\n");
    }
}
