//! The indexer's REST API (indexer/README.md, `indexer/openapi.json`): the listings and
//! histories the chain does not keep in a queryable form. Nothing read here is trusted for
//! security: keys are confirmed with the registry and results are checked by signature.
//! The answers are parsed with the very types the indexer serialises ([`protocol::indexer`]).

use enclave_cloud_common::{JobId, ModelId, NodeId};
use protocol::indexer::{ErrorBody, JobDetail, ModelDetail, Node, NodeDetail, Page};
use serde::de::DeserializeOwned;

use crate::Error;
use crate::nodes::NodeInfo;

/// A client of one indexer.
#[derive(Debug, Clone)]
pub struct Indexer {
    base: String,
    http: reqwest::Client,
}

/// `/v1/nodes` filters (all optional).
#[derive(Debug, Clone, Default)]
pub struct NodeQuery {
    pub model: Option<ModelId>,
    pub region: Option<String>,
    pub gpu: Option<String>,
    /// `active`, `inactive`, `expired` or `deregistered`; `None`: every status.
    pub status: Option<String>,
    /// Highest output price per million tokens, yoctoNEAR.
    pub max_price: Option<u128>,
    /// `id` or `price`.
    pub sort: Option<&'static str>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl NodeQuery {
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        let mut add = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                p.push((k, v));
            }
        };
        add("model", self.model.as_ref().map(ToString::to_string));
        add("region", self.region.clone());
        add("gpu", self.gpu.clone());
        add("status", self.status.clone());
        add("max_price", self.max_price.map(|v| v.to_string()));
        add("sort", self.sort.map(str::to_owned));
        add("limit", self.limit.map(|v| v.to_string()));
        add("cursor", self.cursor.clone());
        p
    }
}

impl Indexer {
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn fail(&self, message: impl Into<String>) -> Error {
        Error::Indexer {
            url: self.base.clone(),
            message: message.into(),
        }
    }

    /// GETs `path`; `Ok(None)` on 404, the indexer's `{error, message}` otherwise.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<Option<T>, Error> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .map_err(|e| self.fail(format!("unreachable: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.fail(format!("reading {path}: {e}")))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body).map_or_else(
                |_| String::from_utf8_lossy(&body).into_owned(),
                |b| format!("{}: {}", b.error, b.message),
            );
            return Err(self.fail(format!("{path}: HTTP {status}: {message}")));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| self.fail(format!("{path}: unexpected answer: {e}")))
    }

    pub async fn nodes(&self, query: &NodeQuery) -> Result<Page<NodeInfo>, Error> {
        let page: Page<Node> = self
            .get("/v1/nodes", &query.params())
            .await?
            .ok_or_else(|| self.fail("/v1/nodes: not found (is this an enclave-cloud indexer?)"))?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|n| self.node_info(n))
                .collect::<Result<_, _>>()?,
            next_cursor: page.next_cursor,
        })
    }

    pub async fn node(&self, id: NodeId) -> Result<Option<NodeInfo>, Error> {
        let detail: Option<NodeDetail> = self.get(&format!("/v1/nodes/{id}"), &[]).await?;
        detail.map(|d| self.node_info(d.node)).transpose()
    }

    fn node_info(&self, node: Node) -> Result<NodeInfo, Error> {
        NodeInfo::try_from(node).map_err(|e| self.fail(format!("/v1/nodes: {e}")))
    }

    pub async fn job(&self, id: JobId) -> Result<Option<JobDetail>, Error> {
        self.get(&format!("/v1/jobs/{id}"), &[]).await
    }

    pub async fn model(&self, id: &ModelId) -> Result<Option<ModelDetail>, Error> {
        self.get(&format!("/v1/models/{id}"), &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_query_sends_only_given_filters() {
        let q = NodeQuery {
            model: Some("minilm".parse().unwrap()),
            max_price: Some(5),
            sort: Some("price"),
            ..NodeQuery::default()
        };
        assert_eq!(
            q.params(),
            vec![
                ("model", "minilm".to_owned()),
                ("max_price", "5".to_owned()),
                ("sort", "price".to_owned())
            ]
        );
        assert!(NodeQuery::default().params().is_empty());
    }
}
