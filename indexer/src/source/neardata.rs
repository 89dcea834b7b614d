//! The neardata HTTP API: `GET /v0/block/{height}` (a `StreamerMessage`, or `null` for a
//! skipped height) and `GET /v0/last_block/final`. Served by localnet and by public NEAR
//! data services (https needs the `https` feature).

use super::{BlockSource, SourceError, decode_block};
use crate::block::StreamerMessage;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NeardataSource {
    base: String,
    http: reqwest::Client,
}

impl NeardataSource {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("enclave-cloud-indexer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Unreachable {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { base, http })
    }

    async fn get(&self, path: &str) -> Result<axum::body::Bytes, SourceError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: reqwest::Error| SourceError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let resp = self.http.get(&url).send().await.map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(SourceError::Status {
                url,
                status: status.as_u16(),
            });
        }
        resp.bytes().await.map_err(unreachable)
    }
}

impl BlockSource for NeardataSource {
    fn describe(&self) -> String {
        format!("neardata at {}", self.base)
    }

    async fn final_head(&self) -> Result<u64, SourceError> {
        let bytes = self.get("/v0/last_block/final").await?;
        let msg: StreamerMessage =
            serde_json::from_slice(&bytes).map_err(|e| SourceError::Decode {
                height: 0,
                reason: e.to_string(),
            })?;
        Ok(msg.height())
    }

    async fn block(&self, height: u64) -> Result<Option<StreamerMessage>, SourceError> {
        let bytes = self.get(&format!("/v0/block/{height}")).await?;
        decode_block(height, &bytes)
    }
}
