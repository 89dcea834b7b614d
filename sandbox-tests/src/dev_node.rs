//! Nodes that join a registry initialised with a development CA: the operator stakes, adds
//! the enclave's NEAR key as a function-call key for the registry, and the enclave registers
//! with a `dev` bundle signed by the CA. One path for every suite that needs a live node.

use anyhow::bail;
use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::registry::NodeUpdate;
use enclave_cloud_common::interfaces::registry::methods::{
    DEPOSIT_STAKE, REGISTER_NODE, RegisterNodeArgs,
};
use near_workspaces::network::Sandbox;
use near_workspaces::types::{AccessKey, NearToken, SecretKey};
use near_workspaces::{Account, AccountId, Worker};
use serde_json::{Value, json};

use crate::calls::call;

/// How long a dev bundle made here stays valid.
const DEV_BUNDLE_LIFETIME_SECS: u64 = 24 * 3600;

/// A `dev` attestation bundle binding `tee_key` (the enclave's x25519 key) and the public half
/// of `near_key`, valid until `expires_at` (unix seconds), signed by `ca`.
pub fn dev_bundle(
    ca: &SecretKey,
    tee_key: [u8; 32],
    near_key: &SecretKey,
    expires_at: u64,
) -> anyhow::Result<Value> {
    let near_public = crate::crypto_key(near_key).public_key();
    let near_key_bytes: [u8; 32] = near_public
        .key_data()
        .try_into()
        .map_err(|_| anyhow::anyhow!("ed25519 public keys are 32 bytes"))?;
    let message = attestation::dev_attestation_message(&tee_key, &near_key_bytes, expires_at);
    let near_crypto::Signature::ED25519(signature) = crate::crypto_key(ca).sign(&message) else {
        bail!("the dev CA key is ed25519");
    };
    Ok(json!({
        "version": 1,
        "kind": "dev",
        "enclave_key": hex::encode(tee_key),
        "near_public_key": near_public.to_string(),
        "dev": { "expires_at": expires_at, "signature": hex::encode(signature.to_bytes()) },
    }))
}

/// What [`enroll`] needs besides the chain: who stakes how much, which keys, which details.
pub struct Enrolment<'a> {
    pub registry: &'a AccountId,
    pub operator: &'a Account,
    pub stake: NearToken,
    pub ca: &'a SecretKey,
    /// The enclave's NEAR key (added to the operator's account; it signs the registration).
    pub enclave_key: &'a SecretKey,
    /// The enclave's x25519 key, bound by the bundle.
    pub tee_key: [u8; 32],
    /// The node's endpoint, region, prices and capacity, or `None` for the registry's
    /// defaults.
    pub details: Option<NodeUpdate>,
}

/// Stakes, adds the enclave key and registers the node; returns the node id and the
/// enclave's account handle.
pub async fn enroll(
    worker: &Worker<Sandbox>,
    enrolment: Enrolment<'_>,
) -> anyhow::Result<(NodeId, Account)> {
    let Enrolment {
        registry,
        operator,
        stake,
        ca,
        enclave_key,
        tee_key,
        details,
    } = enrolment;
    call(operator, registry, DEPOSIT_STAKE, &NoArgs {})
        .deposit(stake)
        .transact()
        .await?
        .into_result()?;
    operator
        .batch(operator.id())
        .add_key(
            enclave_key.public_key(),
            AccessKey::function_call_access(registry, &[], None),
        )
        .transact()
        .await?
        .into_result()?;
    let now_secs = worker.view_block().await?.timestamp() / 1_000_000_000;
    let bundle = dev_bundle(
        ca,
        tee_key,
        enclave_key,
        now_secs + DEV_BUNDLE_LIFETIME_SECS,
    )?;
    let enclave = Account::from_secret_key(operator.id().clone(), enclave_key.clone(), worker);
    let id: NodeId = call(
        &enclave,
        registry,
        REGISTER_NODE,
        &RegisterNodeArgs { bundle, details },
    )
    .transact()
    .await?
    .into_result()?
    .json()?;
    Ok((id, enclave))
}
