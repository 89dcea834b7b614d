//! Which weights this node serves each model with, and `worker run`'s preparation of a model
//! whose manifest has encrypted weights (issue 18):
//!
//! 1. fetch the ciphertext the manifest names into `<data dir>/weights` (resumable, its SHA-256
//!    checked against the manifest's `weights_hash`), [`crate::encrypted_weights`];
//! 2. wait for this node's key grant on the model token (polled with backoff, progress logged);
//! 3. open the grant with the enclave's x25519 secret, decrypt in memory (never on disk), the
//!    ciphertext hash checked against the manifest again and the plaintext hash the key holder
//!    sealed into the final chunk checked too;
//! 4. only then load the backend and mark the model ready ([`ServedWeights`]).
//!
//! A model that fails any step is refused (one `error` log line naming the model and why) and
//! never served; the node keeps serving its other models. Until a model is ready the daemon
//! does not claim its jobs ([`ServedWeights::readiness`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::model_token::key_grants::KeyGrantView;
use enclave_cloud_common::{Hash32, ModelId, NodeId};
use protocol::envelope::EncryptionSecret;
use protocol::weights::{DecryptSummary, Expected};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::attest::AttestationProvider;
use crate::encrypted_weights::{
    EncryptedWeightsError, decrypt_in_memory, fetch_ciphertext, open_grant,
};
use crate::inference::{InferenceBackend, InferenceError};

/// Where a model's weights stand on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsState {
    /// Plain weights the operator configured (no encrypted-weights manifest): served as ever.
    Plain,
    /// Encrypted weights being fetched, waiting for their grant or being decrypted.
    Pending(String),
    /// Decrypted and checked; served. `weights_hash` is the manifest's (the ciphertext's
    /// SHA-256), `plaintext_hash` the decrypted weights' SHA-256.
    Ready {
        weights_hash: Hash32,
        plaintext_hash: Hash32,
    },
    /// Refused for good (tampered, wrong hash, no backend for it): never served by this run.
    Refused(String),
    /// Decrypted once, but this node's key grant was revoked (the manifest no longer allows
    /// it, its attestation ended): not served unless a grant comes back.
    Revoked {
        weights_hash: Hash32,
        plaintext_hash: Hash32,
    },
}

/// Whether the daemon may take work for a model now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet: its encrypted weights are being prepared. Leave the work for later.
    NotYet(String),
    /// Never in this run.
    Never(String),
}

/// The state of every model this node serves; shared by the daemon, the API and the
/// preparation tasks.
#[derive(Debug, Default)]
pub struct ServedWeights {
    states: RwLock<BTreeMap<ModelId, WeightsState>>,
}

impl ServedWeights {
    pub fn new(states: impl IntoIterator<Item = (ModelId, WeightsState)>) -> Self {
        Self {
            states: RwLock::new(states.into_iter().collect()),
        }
    }

    pub fn set(&self, model: &ModelId, state: WeightsState) {
        self.states
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.clone(), state);
    }

    pub fn state(&self, model: &ModelId) -> Option<WeightsState> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
    }

    /// Whether work for `model` may be taken. A model this node does not list is `Ready`:
    /// the executor answers it as not served, as it always did.
    pub fn readiness(&self, model: &ModelId) -> Readiness {
        match self.state(model) {
            None | Some(WeightsState::Plain) | Some(WeightsState::Ready { .. }) => Readiness::Ready,
            Some(WeightsState::Pending(stage)) => Readiness::NotYet(format!(
                "model {model}'s encrypted weights are not ready ({stage})"
            )),
            Some(WeightsState::Refused(why)) => {
                Readiness::Never(format!("model {model}'s weights were refused: {why}"))
            }
            Some(WeightsState::Revoked { .. }) => Readiness::Never(format!(
                "this node's key grant of model {model} was revoked"
            )),
        }
    }

    /// The manifest's weights hash `model` is served with (encrypted weights only).
    pub fn weights_hash(&self, model: &ModelId) -> Option<Hash32> {
        match self.state(model)? {
            WeightsState::Ready { weights_hash, .. } => Some(weights_hash),
            _ => None,
        }
    }

    /// Every model served from encrypted weights, with its weights hash (sorted by model).
    pub fn ready_hashes(&self) -> Vec<(ModelId, Hash32)> {
        self.states
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(m, s)| match s {
                WeightsState::Ready { weights_hash, .. } => Some((m.clone(), *weights_hash)),
                _ => None,
            })
            .collect()
    }
}

/// A model the node serves whose manifest names encrypted weights.
#[derive(Debug, Clone)]
pub struct EncryptedModel {
    pub model_id: ModelId,
    /// The backend model it is served as (`run --model ID=BACKEND_MODEL`).
    pub backend_model: String,
    /// The ciphertext's SHA-256 (the manifest's `weights_hash`).
    pub weights_hash: Hash32,
    pub uri: String,
}

impl EncryptedModel {
    /// The encrypted weights a manifest names, or `None` for a manifest without them (no URI,
    /// or a zero hash: plain weights).
    pub fn from_manifest(
        model_id: ModelId,
        backend_model: String,
        manifest: &ModelManifest,
    ) -> Option<Self> {
        Some(Self {
            model_id,
            backend_model,
            weights_hash: manifest.encrypted_weights_hash()?,
            uri: manifest.encrypted_weights_uri.trim().to_owned(),
        })
    }
}

/// Where this node's grant of a model comes from (the model token's `key_grant` view; a map
/// in tests).
pub trait GrantSource: Send + Sync {
    fn grant(
        &self,
        node_id: NodeId,
    ) -> impl std::future::Future<Output = Result<Option<KeyGrantView>, String>> + Send;
}

/// How the grant is waited for: polls starting at `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct GrantPolling {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for GrantPolling {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// Why a model's encrypted weights were not made ready.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Weights(#[from] EncryptedWeightsError),
    #[error("loading the decrypted weights: {0}")]
    Load(#[from] InferenceError),
    #[error(transparent)]
    Measure(#[from] crate::attest::AttestError),
    #[error("stopped while {0}")]
    Stopped(&'static str),
}

/// The weights of one model decrypted in memory, checked against the manifest.
pub struct Decrypted {
    pub weights: Zeroizing<Vec<u8>>,
    pub summary: DecryptSummary,
    /// The grant's `key_hash` (which key opened them).
    pub key_hash: Hash32,
}

/// Steps 1–3: fetch, wait for the grant, open it, decrypt and check. Returns when the weights
/// are in memory, or with the reason they never will be; `shutdown` turning true stops the
/// wait.
#[allow(clippy::too_many_arguments)]
pub async fn fetch_and_decrypt(
    model: &EncryptedModel,
    node_id: NodeId,
    secret: &EncryptionSecret,
    grants: &impl GrantSource,
    cache_dir: PathBuf,
    polling: GrantPolling,
    mut shutdown: watch::Receiver<bool>,
    mut on_stage: impl FnMut(&str),
) -> Result<Decrypted, PrepareError> {
    let id = &model.model_id;
    on_stage("fetching the ciphertext");
    let mut shown = 0u64;
    let path = fetch_ciphertext(
        &model.uri,
        &cache_dir,
        &model.weights_hash,
        |done, total| {
            // One line per 10% (or per 64 MiB when the size is unknown).
            let step = total.map_or(64 << 20, |t| (t / 10).max(1));
            if done >= shown + step || Some(done) == total {
                shown = done;
                tracing::info!(model = %id, done, total, "encrypted weights: downloading");
            }
        },
    )
    .await?;
    tracing::info!(model = %id, path = %path.display(), weights_hash = %model.weights_hash,
        "encrypted weights: ciphertext present, hash matches the manifest");

    on_stage("waiting for the key grant");
    let mine = hex::encode(secret.public_key());
    let mut delay = polling.initial;
    let mut polls = 0u32;
    let grant = loop {
        polls += 1;
        match grants.grant(node_id).await {
            Ok(Some(g)) if g.encryption_key.eq_ignore_ascii_case(&mine) => break g,
            Ok(Some(g)) => tracing::info!(model = %id, %node_id, polls,
                grant_for = %g.encryption_key,
                "encrypted weights: the grant is sealed to another key (an older attestation); waiting for a new one"),
            Ok(None) => tracing::info!(model = %id, %node_id, polls, next_poll = ?delay,
                "encrypted weights: waiting for this node's key grant"),
            Err(e) => tracing::warn!(model = %id, %node_id, polls, error = %e,
                "encrypted weights: cannot read the key grant; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return Err(PrepareError::Stopped("waiting for the key grant")),
        }
        delay = (delay * 2).min(polling.max);
    };
    tracing::info!(model = %id, %node_id, key_hash = %grant.key_hash, granted_by = %grant.granted_by,
        "encrypted weights: key granted");

    on_stage("decrypting");
    let key = open_grant(secret, id, node_id, &grant.encrypted_key.0, &grant.key_hash)?;
    let expected = Expected {
        ciphertext_sha256: Some(model.weights_hash),
        plaintext_sha256: None,
    };
    let started = std::time::Instant::now();
    let (weights, summary) =
        tokio::task::spawn_blocking(move || decrypt_in_memory(&path, &key, expected))
            .await
            .map_err(|e| {
                EncryptedWeightsError::Decrypt(protocol::weights::WeightsError::Io(
                    std::io::Error::other(e.to_string()),
                ))
            })??;
    tracing::info!(model = %id, bytes = weights.len(), plaintext_hash = %summary.plaintext_sha256,
        seconds = started.elapsed().as_secs_f64(), "encrypted weights: decrypted in memory and checked");
    Ok(Decrypted {
        weights,
        summary,
        key_hash: grant.key_hash,
    })
}

/// Makes a backend of decrypted weights (the embedded MiniLM or Gemma).
pub type Loader =
    Box<dyn FnOnce(Decrypted) -> Result<Arc<dyn InferenceBackend>, InferenceError> + Send>;

/// What every model's preparation shares: the node, its keys and attestation, where the
/// ciphertext is cached, how grants are polled, when to stop, and the models' states.
#[derive(Clone)]
pub struct Preparation {
    pub node_id: NodeId,
    pub keys: Arc<crate::keys::EnclaveKeys>,
    /// Measures the weights into RTMR3 (`ecloud-model-weights`) before they are served.
    pub attestation: Arc<dyn AttestationProvider>,
    pub cache_dir: PathBuf,
    pub polling: GrantPolling,
    pub shutdown: watch::Receiver<bool>,
    pub served: Arc<ServedWeights>,
}

/// The whole preparation of one model: [`fetch_and_decrypt`], `load`, measure the weights hash
/// into the attestation (RTMR3 event `ecloud-model-weights`), then `add` the backend and mark
/// the model ready. A failure marks it refused and logs why, once. Returns the key hash of
/// the grant it was served with, when it is.
pub async fn prepare(
    p: &Preparation,
    model: &EncryptedModel,
    grants: &impl GrantSource,
    load: Loader,
    add: impl FnOnce(Arc<dyn InferenceBackend>),
) -> Option<Hash32> {
    let id = model.model_id.clone();
    let served = p.served.clone();
    let stage = |s: &str| served.set(&id, WeightsState::Pending(s.to_owned()));
    let result = async {
        let decrypted = fetch_and_decrypt(
            model,
            p.node_id,
            p.keys.encryption(),
            grants,
            p.cache_dir.clone(),
            p.polling,
            p.shutdown.clone(),
            stage,
        )
        .await?;
        let plaintext_hash = decrypted.summary.plaintext_sha256;
        let decrypted_key_hash = decrypted.key_hash;
        let backend = tokio::task::spawn_blocking(move || load(decrypted))
            .await
            .map_err(|e| InferenceError::Model(e.to_string()))??;
        p.attestation
            .measure(attestation::MODEL_WEIGHTS_EVENT, &model.weights_hash.0)?;
        tracing::info!(model = %id, weights_hash = %model.weights_hash,
            event = attestation::MODEL_WEIGHTS_EVENT, "encrypted weights: measured into RTMR3");
        Ok::<_, PrepareError>((backend, plaintext_hash, decrypted_key_hash))
    }
    .await;
    match result {
        Ok((backend, plaintext_hash, key_hash)) => {
            add(backend);
            served.set(
                &id,
                WeightsState::Ready {
                    weights_hash: model.weights_hash,
                    plaintext_hash,
                },
            );
            tracing::info!(model = %id, weights_hash = %model.weights_hash, %plaintext_hash,
                "serving the model from its encrypted weights");
            Some(key_hash)
        }
        Err(PrepareError::Stopped(what)) => {
            tracing::info!(model = %id, "stopped while {what}");
            None
        }
        Err(e) => {
            tracing::error!(model = %id, weights_hash = %model.weights_hash, uri = %model.uri,
                error = %e, "REFUSED encrypted weights: the model is not served");
            served.set(&id, WeightsState::Refused(e.to_string()));
            None
        }
    }
}

/// After [`prepare`] served `model` with the grant of `key_hash`: polls the grant every
/// `p.polling.max` until `p.shutdown`. A revoked grant (none, or one of another key) stops the
/// model being served (`Revoked`, logged); a grant of the same key sealed to this node again
/// serves it again. A failed read changes nothing.
pub async fn watch_grant(
    p: &Preparation,
    model: &EncryptedModel,
    grants: &impl GrantSource,
    key_hash: Hash32,
) {
    let id = &model.model_id;
    let mine = hex::encode(p.keys.encryption().public_key());
    let mut shutdown = p.shutdown.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(p.polling.max) => {}
            _ = shutdown.changed() => return,
        }
        let granted = match grants.grant(p.node_id).await {
            Ok(g) => g.is_some_and(|g| {
                g.key_hash == key_hash && g.encryption_key.eq_ignore_ascii_case(&mine)
            }),
            Err(e) => {
                tracing::warn!(model = %id, error = %e, "encrypted weights: cannot read the key grant");
                continue;
            }
        };
        match (p.served.state(id), granted) {
            (
                Some(WeightsState::Ready {
                    weights_hash,
                    plaintext_hash,
                }),
                false,
            ) => {
                tracing::error!(model = %id, node_id = %p.node_id,
                    "REVOKED: this node's key grant is gone; the model is no longer served");
                p.served.set(
                    id,
                    WeightsState::Revoked {
                        weights_hash,
                        plaintext_hash,
                    },
                );
            }
            (
                Some(WeightsState::Revoked {
                    weights_hash,
                    plaintext_hash,
                }),
                true,
            ) => {
                tracing::info!(model = %id, node_id = %p.node_id,
                    "encrypted weights: granted again; serving the model again");
                p.served.set(
                    id,
                    WeightsState::Ready {
                        weights_hash,
                        plaintext_hash,
                    },
                );
            }
            _ => {}
        }
    }
}

/// The model token's `key_grant` view as a [`GrantSource`].
pub struct TokenGrants {
    pub client: Arc<chain_client::ChainClient>,
    pub token: chain_client::AccountId,
}

impl GrantSource for TokenGrants {
    async fn grant(&self, node_id: NodeId) -> Result<Option<KeyGrantView>, String> {
        chain_client::contracts::ModelTokenClient::new(&self.client, self.token.clone())
            .key_grant(node_id)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The models of `models` (marketplace id → backend model) whose manifest, on the token the
/// factory lists for them, names encrypted weights, each with its token. A model the factory
/// does not list, or whose manifest names no encrypted weights, is served from plain weights.
pub async fn resolve(
    client: &chain_client::ChainClient,
    factory: &chain_client::AccountId,
    models: &BTreeMap<ModelId, String>,
) -> Result<Vec<(EncryptedModel, chain_client::AccountId)>, chain_client::ChainError> {
    let listing = chain_client::contracts::ModelFactoryClient::new(client, factory.clone());
    let mut encrypted = Vec::new();
    for (id, backend_model) in models {
        let Some(view) = listing.model(id).await? else {
            tracing::info!(model = %id, %factory, "not listed by the factory: plain weights");
            continue;
        };
        let manifest = chain_client::contracts::ModelTokenClient::new(client, view.token.clone())
            .manifest()
            .await?
            .unwrap_or_default();
        match EncryptedModel::from_manifest(id.clone(), backend_model.clone(), &manifest) {
            Some(model) => {
                tracing::info!(model = %id, token = %view.token, uri = %model.uri,
                    weights_hash = %model.weights_hash, "the manifest names encrypted weights");
                encrypted.push((model, view.token));
            }
            None => tracing::info!(model = %id, token = %view.token,
                "the manifest names no encrypted weights: plain weights"),
        }
    }
    Ok(encrypted)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use near_sdk::json_types::{Base64VecU8, U64};
    use protocol::weights::{self, ModelKey};
    use sha2::{Digest as _, Sha256};

    use super::*;

    /// Grants appear after `after` polls.
    struct Delayed {
        grant: KeyGrantView,
        after: u32,
        polls: Mutex<u32>,
    }

    impl GrantSource for Delayed {
        async fn grant(&self, _node: NodeId) -> Result<Option<KeyGrantView>, String> {
            let mut polls = self.polls.lock().unwrap();
            *polls += 1;
            if *polls == 1 {
                return Err("rpc down".into());
            }
            Ok((*polls > self.after).then(|| self.grant.clone()))
        }
    }

    struct Fixture {
        keys: Arc<crate::keys::EnclaveKeys>,
        attestation: Arc<dyn AttestationProvider>,
        model: EncryptedModel,
        grant: KeyGrantView,
        plain: Vec<u8>,
        dir: tempfile::TempDir,
    }

    /// Encrypted weights changed by `mutate`; the manifest hashes the file before the change,
    /// or after it with `hash_mutated` (an owner who published a damaged file).
    fn fixture(mutate: impl FnOnce(&mut Vec<u8>), hash_mutated: bool) -> Fixture {
        let keys = Arc::new(crate::keys::EnclaveKeys::generate().unwrap());
        let key = ModelKey::from_bytes([9; 32]);
        let plain: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let mut cipher = Vec::new();
        weights::encrypt(
            plain.as_slice(),
            plain.len() as u64,
            &mut cipher,
            &key,
            1024,
            |_| {},
        )
        .unwrap();
        let mut weights_hash = Hash32(Sha256::digest(&cipher).into());
        mutate(&mut cipher);
        if hash_mutated {
            weights_hash = Hash32(Sha256::digest(&cipher).into());
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.enc");
        std::fs::write(&file, &cipher).unwrap();
        let model_id: ModelId = "gemma".parse().unwrap();
        let public = keys.encryption().public_key();
        let sealed = weights::seal_model_key(&public, &model_id, NodeId(3), &key).unwrap();
        let grant = KeyGrantView {
            node_id: NodeId(3),
            encrypted_key: Base64VecU8(sealed),
            key_hash: key.key_hash(),
            encryption_key: hex::encode(public),
            granted_by: "keeper.test.near".parse().unwrap(),
            granted_at_ns: U64(1),
            expires_at_ns: U64(2),
        };
        let manifest = ModelManifest {
            weights_hash,
            encrypted_weights_uri: format!("file://{}", file.display()),
            ..ModelManifest::default()
        };
        let model = EncryptedModel::from_manifest(model_id, "gemma-3-270m".into(), &manifest)
            .expect("encrypted");
        Fixture {
            keys,
            attestation: Arc::new(crate::attest::dev::DevProvider::new(&[5; 32], 3600)),
            model,
            grant,
            plain,
            dir,
        }
    }

    fn fast() -> GrantPolling {
        GrantPolling {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    /// Records what the loader got and serves nothing.
    struct Nothing;
    impl InferenceBackend for Nothing {
        fn name(&self) -> &'static str {
            "nothing"
        }
        fn chat(
            &self,
            _r: crate::inference::ChatCompletionRequest,
        ) -> crate::inference::BackendFuture<'_, crate::inference::ChatCompletionResponse> {
            Box::pin(async { Err(InferenceError::Model("none".into())) })
        }
        fn embed(
            &self,
            _r: crate::inference::EmbeddingsRequest,
        ) -> crate::inference::BackendFuture<'_, crate::inference::EmbeddingsResponse> {
            Box::pin(async { Err(InferenceError::Model("none".into())) })
        }
    }

    async fn run(f: &Fixture, grants: impl GrantSource) -> (Arc<ServedWeights>, Option<Vec<u8>>) {
        let served = Arc::new(ServedWeights::new([(
            f.model.model_id.clone(),
            WeightsState::Pending("starting".into()),
        )]));
        let loaded = Arc::new(Mutex::new(None));
        let seen = loaded.clone();
        let load: Loader = Box::new(move |d: Decrypted| {
            *seen.lock().unwrap() = Some(d.weights.to_vec());
            Ok(Arc::new(Nothing) as Arc<dyn InferenceBackend>)
        });
        let added = Arc::new(Mutex::new(false));
        let added2 = added.clone();
        let (_tx, rx) = watch::channel(false);
        let p = Preparation {
            node_id: NodeId(3),
            keys: f.keys.clone(),
            attestation: f.attestation.clone(),
            cache_dir: f.dir.path().join("cache"),
            polling: fast(),
            shutdown: rx,
            served: served.clone(),
        };
        prepare(&p, &f.model, &grants, load, move |_| {
            *added2.lock().unwrap() = true
        })
        .await;
        let got = loaded.lock().unwrap().clone();
        assert_eq!(
            *added.lock().unwrap(),
            served.readiness(&f.model.model_id) == Readiness::Ready,
            "added iff ready"
        );
        (served, got)
    }

    #[tokio::test]
    async fn a_granted_model_is_decrypted_checked_loaded_and_ready() {
        let f = fixture(|_| {}, false);
        let grants = Delayed {
            grant: f.grant.clone(),
            after: 3,
            polls: Mutex::new(0),
        };
        let (served, loaded) = run(&f, grants).await;
        assert_eq!(loaded.as_deref(), Some(f.plain.as_slice()));
        let id = &f.model.model_id;
        assert_eq!(served.readiness(id), Readiness::Ready);
        // Measured: the node's attestations now carry the weights, the verifier shows them.
        let bundle = f.attestation.attest(&f.keys.public(), 1_000).unwrap();
        let policy = attestation::VerifyPolicy {
            dev_ca_public_key: Some(
                crate::attest::dev::DevProvider::new(&[5; 32], 1).ca_public_key(),
            ),
            ..attestation::VerifyPolicy::default()
        };
        let verdict =
            attestation::verify_bundle(&bundle, 1_000, &policy, &attestation::RustCrypto).unwrap();
        assert_eq!(
            verdict.model_weights,
            vec![f.model.weights_hash.to_string()]
        );
        assert_eq!(served.weights_hash(id), Some(f.model.weights_hash));
        assert_eq!(
            served.state(id),
            Some(WeightsState::Ready {
                weights_hash: f.model.weights_hash,
                plaintext_hash: Hash32(Sha256::digest(&f.plain).into()),
            })
        );
    }

    /// A provider that cannot measure (a TDX node without dstack's guest agent): refused
    /// rather than served unmeasured.
    struct CannotMeasure;
    impl AttestationProvider for CannotMeasure {
        fn kind(&self) -> attestation::AttestationKind {
            attestation::AttestationKind::Tdx
        }
        fn attest(
            &self,
            _keys: &crate::keys::PublicKeys,
            _now: u64,
        ) -> Result<attestation::AttestationBundle, crate::attest::AttestError> {
            Err(crate::attest::AttestError::Rng("none".into()))
        }
        fn measure(&self, event: &str, _p: &[u8]) -> Result<(), crate::attest::AttestError> {
            Err(crate::attest::AttestError::Measure {
                event: event.into(),
                reason: "no RTMR3".into(),
            })
        }
    }

    #[tokio::test]
    async fn weights_that_cannot_be_measured_are_not_served() {
        let mut f = fixture(|_| {}, false);
        f.attestation = Arc::new(CannotMeasure);
        let grants = Delayed {
            grant: f.grant.clone(),
            after: 0,
            polls: Mutex::new(0),
        };
        let (served, _loaded) = run(&f, grants).await;
        assert!(
            matches!(served.readiness(&f.model.model_id), Readiness::Never(ref why) if why.contains("RTMR3")),
            "{:?}",
            served.state(&f.model.model_id)
        );
    }

    #[tokio::test]
    async fn tampered_truncated_or_reordered_weights_are_refused_before_loading() {
        let header = weights::HEADER_LEN;
        let chunk = 1024 + weights::TAG_LEN;
        let tamper = |c: &mut Vec<u8>| c[header + 5] ^= 1;
        let truncate = |c: &mut Vec<u8>| c.truncate(c.len() - chunk);
        let reorder = |c: &mut Vec<u8>| {
            let first: Vec<u8> = c[header..header + chunk].to_vec();
            let second: Vec<u8> = c[header + chunk..header + 2 * chunk].to_vec();
            c[header..header + chunk].copy_from_slice(&second);
            c[header + chunk..header + 2 * chunk].copy_from_slice(&first);
        };
        type Damage<'a> = &'a dyn Fn(&mut Vec<u8>);
        let cases: [(&str, Damage); 3] = [
            ("tampered", &tamper),
            ("truncated", &truncate),
            ("reordered", &reorder),
        ];
        // The manifest's hash catches a changed file first; a damaged file the manifest
        // hashes (published so by mistake) fails the chunks' authentication.
        for ((name, mutate), hash_mutated) in cases.iter().flat_map(|c| [(*c, false), (*c, true)]) {
            let f = fixture(|c| mutate(c), hash_mutated);
            let expect = if hash_mutated {
                "decrypting"
            } else {
                "weights_hash"
            };
            let grants = Delayed {
                grant: f.grant.clone(),
                after: 0,
                polls: Mutex::new(0),
            };
            let (served, loaded) = run(&f, grants).await;
            assert!(loaded.is_none(), "{name}: nothing loaded");
            let id = &f.model.model_id;
            assert!(
                matches!(served.readiness(id), Readiness::Never(ref why) if why.contains(expect)),
                "{name} (manifest hashes the damaged file: {hash_mutated}): {:?}",
                served.state(id)
            );
            assert_eq!(served.weights_hash(id), None);
        }
    }

    #[tokio::test]
    async fn a_grant_for_another_key_is_waited_out_and_a_wrong_key_hash_refused() {
        let f = fixture(|_| {}, false);
        let mut other = f.grant.clone();
        other.encryption_key = "11".repeat(32);
        struct Stale(KeyGrantView, Mutex<u32>);
        impl GrantSource for Stale {
            async fn grant(&self, _n: NodeId) -> Result<Option<KeyGrantView>, String> {
                let mut n = self.1.lock().unwrap();
                *n += 1;
                Ok(Some(self.0.clone()))
            }
        }
        let served = Arc::new(ServedWeights::default());
        let (tx, rx) = watch::channel(false);
        let stale = Stale(other, Mutex::new(0));
        let model = f.model.clone();
        let keys = f.keys.clone();
        let cache = f.dir.path().join("cache");
        let waiting = fetch_and_decrypt(
            &model,
            NodeId(3),
            keys.encryption(),
            &stale,
            cache,
            fast(),
            rx,
            |_| {},
        );
        let stop = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(true).unwrap();
        };
        let (result, ()) = tokio::join!(waiting, stop);
        assert!(
            matches!(result, Err(PrepareError::Stopped(_))),
            "kept waiting"
        );
        assert!(*stale.1.lock().unwrap() > 2, "polled again");
        drop(served);

        let mut bad_hash = f.grant.clone();
        bad_hash.key_hash = Hash32([0; 32]);
        let (served, loaded) = run(
            &f,
            Delayed {
                grant: bad_hash,
                after: 0,
                polls: Mutex::new(0),
            },
        )
        .await;
        assert!(loaded.is_none());
        assert!(matches!(
            served.readiness(&f.model.model_id),
            Readiness::Never(_)
        ));
    }

    /// Scripted grant answers; records the model's state at each poll (what the previous
    /// answer made of it) and stops the watch once the script is done.
    struct Script {
        answers: Mutex<Vec<Option<KeyGrantView>>>,
        served: Arc<ServedWeights>,
        model: ModelId,
        states: Mutex<Vec<WeightsState>>,
        stop: watch::Sender<bool>,
    }
    impl GrantSource for Script {
        async fn grant(&self, _n: NodeId) -> Result<Option<KeyGrantView>, String> {
            let mut answers = self.answers.lock().unwrap();
            if answers.is_empty() {
                let _ = self.stop.send(true);
                return Err("the script is done".into());
            }
            self.states
                .lock()
                .unwrap()
                .push(self.served.state(&self.model).unwrap());
            Ok(answers.remove(0))
        }
    }

    /// A served model whose grant is revoked stops being served; granted the same key again,
    /// it is served again; a grant of another key counts as revoked.
    #[tokio::test]
    async fn a_revoked_grant_stops_the_model_and_a_new_grant_restores_it() {
        let f = fixture(|_| {}, false);
        let id = f.model.model_id.clone();
        let ready = WeightsState::Ready {
            weights_hash: f.model.weights_hash,
            plaintext_hash: Hash32([1; 32]),
        };
        let served = Arc::new(ServedWeights::new([(id.clone(), ready.clone())]));
        let (tx, rx) = watch::channel(false);
        let p = Preparation {
            node_id: NodeId(3),
            keys: f.keys.clone(),
            attestation: f.attestation.clone(),
            cache_dir: f.dir.path().join("cache"),
            polling: GrantPolling {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            shutdown: rx,
            served: served.clone(),
        };
        let mut other_key = f.grant.clone();
        other_key.key_hash = Hash32([7; 32]);
        let script = Script {
            answers: Mutex::new(vec![
                Some(f.grant.clone()),
                None,
                Some(f.grant.clone()),
                Some(other_key),
            ]),
            served: served.clone(),
            model: id.clone(),
            states: Mutex::new(Vec::new()),
            stop: tx,
        };
        watch_grant(&p, &f.model, &script, f.grant.key_hash).await;
        let revoked = WeightsState::Revoked {
            weights_hash: f.model.weights_hash,
            plaintext_hash: Hash32([1; 32]),
        };
        assert_eq!(
            *script.states.lock().unwrap(),
            vec![ready.clone(), ready.clone(), revoked.clone(), ready],
            "served, still granted, revoked, granted again"
        );
        assert_eq!(
            served.state(&id),
            Some(revoked),
            "revoked: a grant of another key"
        );
        assert!(matches!(
            served.readiness(&id),
            Readiness::Never(ref why) if why.contains("revoked")
        ));
        assert_eq!(served.weights_hash(&id), None);
    }

    #[test]
    fn a_manifest_without_encrypted_weights_is_plain() {
        let m = ModelManifest::default();
        assert!(EncryptedModel::from_manifest("gemma".parse().unwrap(), "x".into(), &m).is_none());
        let served = ServedWeights::new([("gemma".parse().unwrap(), WeightsState::Plain)]);
        assert_eq!(
            served.readiness(&"gemma".parse().unwrap()),
            Readiness::Ready
        );
        assert_eq!(
            served.readiness(&"minilm".parse().unwrap()),
            Readiness::Ready
        );
        assert!(served.ready_hashes().is_empty());
    }
}
