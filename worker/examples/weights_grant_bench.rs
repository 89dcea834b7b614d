//! Encrypted weights on the node: from the moment its key grant is seen to the first request
//! the model answers, as `worker run` does it ([`worker::served_weights::prepare`] with the
//! real loader of `worker::cli::run_backend`): open the grant, decrypt MiniLM's weights in
//! memory (every chunk authenticated, both hashes checked), measure them into the (dev)
//! attestation, load the backend, answer one embedding. Printed as `BENCH` lines:
//!
//! * `worker.encrypted_weights.grant_to_ready`: grant seen → model ready to serve;
//! * `worker.encrypted_weights.grant_to_first_request`: grant seen → first answer.
//!
//! `cargo run -p worker --profile bench --example weights_grant_bench` (needs
//! `ECLOUD_MINILM_DIR`, see `worker/scripts/fetch-model.sh`; one run, times are for ratios).

use std::fs::File;
use std::io::BufWriter;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_cloud_common::interfaces::model_token::key_grants::KeyGrantView;
use enclave_cloud_common::{Hash32, ModelId, NodeId};
use near_sdk::json_types::{Base64VecU8, U64};
use protocol::weights::{DEFAULT_CHUNK_SIZE, ModelKey, encrypt, seal_model_key};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use worker::attest::dev::DevProvider;
use worker::cli::{BackendArgs, BackendKind, run_backend};
use worker::inference::embedded::MiniLmBackend;
use worker::inference::{EmbeddingInput, EmbeddingsRequest, InferenceBackend};
use worker::keys::EnclaveKeys;
use worker::served_weights::{
    EncryptedModel, GrantPolling, GrantSource, Preparation, Readiness, ServedWeights, WeightsState,
    prepare,
};

/// The grant, there at the first poll; remembers when it was first seen.
struct Granted {
    grant: KeyGrantView,
    seen: Mutex<Option<Instant>>,
}

struct Shared(Arc<Granted>);

impl GrantSource for Shared {
    async fn grant(&self, _node: NodeId) -> Result<Option<KeyGrantView>, String> {
        self.0
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
        Ok(Some(self.0.grant.clone()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = MiniLmBackend::dir_from_env() else {
        eprintln!("bench: ECLOUD_MINILM_DIR unset, skipping the encrypted weights benchmark");
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let weights = dir.join("model.safetensors");
    let len = std::fs::metadata(&weights)?.len();
    let enc = tmp.path().join("minilm.enc");
    let key = ModelKey::generate()?;
    encrypt(
        File::open(&weights)?,
        len,
        BufWriter::new(File::create(&enc)?),
        &key,
        DEFAULT_CHUNK_SIZE,
        |_| {},
    )?;
    let weights_hash = Hash32(Sha256::digest(std::fs::read(&enc)?).into());

    let model_id: ModelId = "minilm".parse()?;
    let node_id = NodeId(1);
    let keys = Arc::new(EnclaveKeys::generate()?);
    let public = keys.encryption().public_key();
    let grants = Granted {
        grant: KeyGrantView {
            node_id,
            encrypted_key: Base64VecU8(seal_model_key(&public, &model_id, node_id, &key)?),
            key_hash: key.key_hash(),
            encryption_key: hex::encode(public),
            granted_by: "keeper.test.near".parse()?,
            granted_at_ns: U64(0),
            expires_at_ns: U64(u64::MAX),
        },
        seen: Mutex::new(None),
    };
    let model = EncryptedModel {
        model_id: model_id.clone(),
        backend_model: "all-minilm-l6-v2".into(),
        weights_hash,
        uri: format!("file://{}", enc.display()),
    };
    let args = BackendArgs {
        backend: BackendKind::Embedded,
        model_dir: Some(dir),
        gemma_gguf: None,
        upstream_url: None,
        upstream_api_key: None,
        upstream_timeout_secs: 1,
    };
    let (routed, mut loaders) = run_backend(&args, std::slice::from_ref(&model))?;
    let served = Arc::new(ServedWeights::new([(
        model_id.clone(),
        WeightsState::Pending("starting".into()),
    )]));
    let (_stop, shutdown) = watch::channel(false);
    let preparation = Preparation {
        node_id,
        keys,
        attestation: Arc::new(DevProvider::new(&[1; 32], 3600)),
        cache_dir: tmp.path().join("cache"),
        polling: GrantPolling {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
        },
        shutdown,
        served: served.clone(),
    };
    let target = routed.clone();
    let grants = Arc::new(grants);
    prepare(
        &preparation,
        &model,
        &Shared(Arc::clone(&grants)),
        loaders.remove(0),
        move |b| target.add(b),
    )
    .await;
    let ready = Instant::now();
    if served.readiness(&model_id) != Readiness::Ready {
        return Err(format!("not served: {:?}", served.state(&model_id)).into());
    }
    let answer = routed
        .embed(EmbeddingsRequest {
            model: "all-minilm-l6-v2".into(),
            input: EmbeddingInput::One("the first request after the grant".into()),
            encoding_format: None,
        })
        .await?;
    let answered = Instant::now();
    assert_eq!(answer.data.len(), 1);
    let seen = grants
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .ok_or("the grant was never polled")?;
    eprintln!("bench: MiniLM's weights, {} MB encrypted", len / 1_000_000);
    println!(
        "BENCH worker.encrypted_weights.grant_to_ready {:.2} s",
        (ready - seen).as_secs_f64()
    );
    println!(
        "BENCH worker.encrypted_weights.grant_to_first_request {:.2} s",
        (answered - seen).as_secs_f64()
    );
    Ok(())
}
