//! The owner's key keeper (`ecloud model keeper`, [`ecloud::model_keeper`]) against a real
//! chain: the real registry with `dev`-attested nodes and a model token. An allowed node
//! offering the model gets the key, sealed so that only its x25519 secret opens it; a node
//! not offering the model, or one the manifest does not allow, gets none; a restarted keeper
//! does nothing more; a deregistered node loses its grant and gets no new one; a manifest
//! change revokes the nodes it no longer allows.
//!
//! Needs the built contracts (`./scripts/build-contracts.sh`, see `sandbox_tests::model_token`).

use chain_client::ChainClient;
use chain_client::contracts::ModelTokenClient;
use ecloud::chain::Chain;
use ecloud::config::{Network, Settings};
use ecloud::model_keeper::plan::{Ineligible, Verdict};
use ecloud::model_keeper::{Keeper, PassReport};
use enclave_cloud_common::{ModelId, NodeId};
use near_workspaces::types::NearToken;
use near_workspaces::{Account, AccountId};
use protocol::envelope::EncryptionSecret;
use protocol::weights::{ModelKey, open_model_key};
use sandbox_tests::model_token::{DevNode, DevRegistry, account, deploy_token, manifest};
use sandbox_tests::{crypto_key, sandbox};
use serde_json::json;

/// The model `deploy_token` creates.
fn model() -> ModelId {
    "llama".parse().expect("a model id")
}

/// The client's view of the chain: only the RPC and the registry matter to the keeper.
fn chain(rpc: &str, owner: &Account, registry: &AccountId) -> Chain {
    let tmp = std::env::temp_dir();
    Chain::new(&Settings {
        network: Network::Localnet,
        rpc_url: rpc.to_owned(),
        indexer_url: "http://127.0.0.1:9".into(),
        account_id: Some(owner.id().clone()),
        registry: registry.clone(),
        marketplace: registry.clone(),
        factory: registry.clone(),
        credentials_dir: tmp.clone(),
        keys_dir: tmp,
    })
}

fn keeper<'a>(chain: &'a Chain, owner: &Account, token: &AccountId, key: &ModelKey) -> Keeper<'a> {
    let signer =
        chain_client::Account::from_secret_key(owner.id().clone(), crypto_key(owner.secret_key()));
    Keeper::new(chain, None, model(), token.clone(), key.clone(), signer)
}

/// The node offers the model (the enclave key sets its prices).
async fn offer_model(registry: &AccountId, node: &DevNode) -> anyhow::Result<()> {
    node.enclave
        .call(registry, "update_node")
        .args_json(json!({
            "node_id": node.id,
            "update": { "prices": [{
                "model_id": "llama", "input_per_million": "1", "output_per_million": "2",
            }] },
        }))
        .transact()
        .await?
        .into_result()?;
    Ok(())
}

fn verdict_of(report: &PassReport, node: NodeId) -> Verdict {
    report
        .decisions
        .iter()
        .find(|d| d.node_id == node)
        .map(|d| d.verdict.clone())
        .unwrap_or_else(|| panic!("no verdict on node {node}: {report:?}"))
}

fn acted(report: &PassReport) -> bool {
    !report.granted.is_empty() || !report.revoked.is_empty()
}

#[tokio::test]
async fn the_keeper_grants_allowed_nodes_once_and_revokes_what_ends() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = account(&worker, "owner", 50).await?;
    let registry = DevRegistry::deploy(&worker, &owner).await?;
    let reg = registry.contract.id().clone();
    let (secret_a, secret_b) = (EncryptionSecret::generate(), EncryptionSecret::generate());
    let a = registry
        .register_node(&worker, "op1", secret_a.public_key())
        .await?;
    let b = registry
        .register_node(&worker, "op2", secret_b.public_key())
        .await?;
    // c is allowed (a dev node) but does not offer the model.
    let c = registry
        .register_node(&worker, "op3", EncryptionSecret::generate().public_key())
        .await?;
    offer_model(&reg, &a).await?;
    offer_model(&reg, &b).await?;
    // The manifest allows dev nodes.
    let token = deploy_token(&worker, &owner, &reg, json!({})).await?;
    let key = ModelKey::generate()?;
    let rpc = worker.rpc_addr();
    let chain = chain(&rpc, &owner, &reg);
    let client = ChainClient::new(&rpc);
    let grants = ModelTokenClient::new(&client, token.id().clone());

    // First pass: a and b get the key; c gets nothing.
    let first = keeper(&chain, &owner, token.id(), &key).pass().await?;
    assert!(first.errors.is_empty(), "{first:?}");
    assert_eq!(first.granted, vec![a.id, b.id], "{first:?}");
    assert!(
        first.decisions.iter().all(|d| d.node_id != c.id),
        "a node that does not offer the model is not a candidate: {first:?}"
    );
    // Only a's x25519 secret opens a's grant, and it yields the model key.
    let grant_a = grants.key_grant(a.id).await?.expect("a's grant");
    assert_eq!(grant_a.key_hash, key.key_hash());
    let opened = open_model_key(
        &secret_a,
        &model(),
        a.id,
        &grant_a.encrypted_key.0,
        &grant_a.key_hash,
    )?;
    assert_eq!(opened.as_bytes(), key.as_bytes());
    assert!(
        open_model_key(
            &secret_b,
            &model(),
            a.id,
            &grant_a.encrypted_key.0,
            &grant_a.key_hash
        )
        .is_err(),
        "another node's secret does not open a's grant"
    );
    // Sealed to b for b: a's grant does not pass as b's.
    assert!(
        open_model_key(
            &secret_a,
            &model(),
            b.id,
            &grant_a.encrypted_key.0,
            &grant_a.key_hash
        )
        .is_err()
    );
    assert!(grants.key_grant(c.id).await?.is_none());

    // A restarted keeper (nothing in memory) finds nothing to do.
    let restarted = keeper(&chain, &owner, token.id(), &key).pass().await?;
    assert!(
        !acted(&restarted) && restarted.errors.is_empty(),
        "{restarted:?}"
    );
    assert_eq!(restarted.granted_nodes(), 2);
    let after = grants.key_grant(a.id).await?.expect("a's grant");
    assert_eq!(
        after.granted_at_ns, grant_a.granted_at_ns,
        "not granted again"
    );

    // b deregisters: its grant is revoked, and it gets no new one.
    b.enclave
        .call(&reg, "deregister")
        .args_json(json!({ "node_id": b.id }))
        .transact()
        .await?
        .into_result()?;
    let mut k = keeper(&chain, &owner, token.id(), &key);
    let gone = k.pass().await?;
    assert_eq!(gone.revoked, vec![b.id], "{gone:?}");
    assert!(gone.granted.is_empty(), "{gone:?}");
    assert!(grants.key_grant(b.id).await?.is_none());
    let again = k.pass().await?;
    assert!(!acted(&again), "{again:?}");
    assert!(grants.key_grant(b.id).await?.is_none());
    let metrics = k.metrics();
    assert_eq!(
        metrics
            .revocations
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // A model whose manifest does not allow dev nodes: nobody gets its key.
    let strict = deploy_token(
        &worker,
        &owner,
        &reg,
        json!({ "manifest": manifest(&[&"ab".repeat(32)]) }),
    )
    .await?;
    let none = keeper(&chain, &owner, strict.id(), &key).pass().await?;
    assert!(!acted(&none) && none.errors.is_empty(), "{none:?}");
    assert!(matches!(
        verdict_of(&none, a.id),
        Verdict::Skip(Ineligible::NotAllowed(_))
    ));
    let strict_grants = ModelTokenClient::new(&client, strict.id().clone());
    assert!(strict_grants.key_grants().await?.is_empty());

    // The owner drops dev nodes from the manifest: a's grant is revoked.
    owner
        .call(token.id(), "update_manifest")
        .args_json(json!({ "manifest": manifest(&[&"ab".repeat(32)]) }))
        .deposit(NearToken::from_millinear(10))
        .transact()
        .await?
        .into_result()?;
    let changed = keeper(&chain, &owner, token.id(), &key).pass().await?;
    assert_eq!(changed.revoked, vec![a.id], "{changed:?}");
    assert!(grants.key_grants().await?.is_empty());
    Ok(())
}
