//! `GET /v1/attestation/report?nonce=<64 hex>&signing_algo=ecdsa|ed25519`: an attestation
//! report in NEAR AI Cloud's shape (`sealed_api::AttestationReport`), with fresh evidence for
//! each call: a new bundle from the worker's attestation provider and, on a node with GPUs,
//! every device's evidence over the nonce (`gpu_challenge` = the nonce). `report_data` binds
//! the signing address and the nonce, `signer_binding` (the NEAR key's signature) binds the
//! secp256k1 key, `ohttp_key_config` carries the enclave key. Evidence is costly, so calls
//! are rate-limited (token bucket, [`RATE_PER_SEC`] with bursts of [`BURST`]; 429 beyond).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use sealed_api::report::{SigningAddresses, report_data};
use sealed_api::{AttestationReport, KeyConfig, SigningAlgo};
use serde::Deserialize;

use crate::api::ApiError;
use crate::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use crate::keys::EnclaveKeys;

/// Reports per second, sustained.
pub const RATE_PER_SEC: f64 = 1.0;
/// Reports in a burst.
pub const BURST: f64 = 5.0;

/// A token bucket.
pub struct RateLimiter {
    state: Mutex<(f64, Instant)>,
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            state: Mutex::new((burst, Instant::now())),
            rate,
            burst,
        }
    }

    /// Takes a token if one is left.
    pub fn try_take(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a report is made from.
#[derive(Clone)]
pub struct ReportSource {
    pub keys: Arc<EnclaveKeys>,
    pub provider: Arc<dyn AttestationProvider>,
    pub gpus: Option<Arc<dyn GpuEvidenceSource>>,
    pub key_config: KeyConfig,
    pub limiter: Arc<RateLimiter>,
}

impl ReportSource {
    pub fn new(
        keys: Arc<EnclaveKeys>,
        provider: Arc<dyn AttestationProvider>,
        gpus: Option<Arc<dyn GpuEvidenceSource>>,
        key_config: KeyConfig,
    ) -> Self {
        Self {
            keys,
            provider,
            gpus,
            key_config,
            limiter: Arc::new(RateLimiter::new(RATE_PER_SEC, BURST)),
        }
    }

    /// A report for `nonce` (64 hex digits) and `algo`, with fresh evidence.
    pub fn report(&self, nonce: &str, algo: SigningAlgo) -> Result<AttestationReport, ApiError> {
        let mut nonce_bytes = [0u8; 32];
        hex::decode_to_slice(nonce, &mut nonce_bytes).map_err(|_| ApiError::Invalid {
            param: "nonce",
            message: "expected 64 hex digits (32 bytes)".into(),
        })?;
        let nonce = nonce.to_ascii_lowercase();
        let public = self.keys.public();
        let mut bundle = self
            .provider
            .attest(&public, now_unix_secs())
            .map_err(|e| ApiError::Evidence(e.to_string()))?;
        if let Some(gpus) = &self.gpus {
            let device_nonce =
                attestation::gpu_binding_nonce(&public.enclave_key, &public.near_key, &nonce_bytes);
            let evidence = gpus
                .evidence(device_nonce)
                .map_err(|e| ApiError::Evidence(e.to_string()))?;
            bundle.gpus = evidence.gpus;
            bundle.switches = evidence.switches;
            bundle.gpu_challenge = Some(nonce.clone());
        }
        let signer = self.keys.response_signer();
        let address = signer.address(algo);
        let data =
            report_data(&address, algo, &nonce).map_err(|e| ApiError::Evidence(e.to_string()))?;
        Ok(AttestationReport {
            signing_address: address,
            signing_algo: algo,
            request_nonce: nonce.clone(),
            report_data: hex::encode(data),
            attestation: bundle,
            signing_addresses: SigningAddresses {
                ecdsa: signer.address(SigningAlgo::Ecdsa),
                ed25519: signer.address(SigningAlgo::Ed25519),
            },
            ohttp_key_config: hex::encode(self.key_config.encode()),
            signer_binding: signer
                .signer_binding(&nonce)
                .map_err(|e| ApiError::Evidence(e.to_string()))?,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReportQuery {
    nonce: Option<String>,
    signing_algo: Option<String>,
}

pub(crate) async fn get_report(
    State(source): State<ReportSource>,
    Query(query): Query<ReportQuery>,
) -> Response {
    let result = async {
        let algo = super::signatures::signing_algo(query.signing_algo.as_deref())?;
        let nonce = query.nonce.ok_or(ApiError::Invalid {
            param: "nonce",
            message: "required: 64 hex digits chosen by the client".into(),
        })?;
        if !source.limiter.try_take() {
            return Err(ApiError::RateLimited);
        }
        // Evidence may block (configfs-tsm, NVML): off the async workers.
        tokio::task::spawn_blocking(move || source.report(&nonce, algo))
            .await
            .map_err(|e| ApiError::Evidence(e.to_string()))?
    }
    .await;
    match result {
        Ok(report) => Json(report).into_response(),
        Err(e) => e.into_response(),
    }
}
