//! The explorer pages: the bundle `explorer/build.sh` writes (`index.html` and its assets),
//! served from a directory the indexer is given, and `/v1/network`, what the pages' wallet
//! signs against. Without a bundle `/` answers a page that says how to build one.

use super::error::{ApiError, ApiResult};
use super::params::{NoParams, Q};
use axum::Json;
use axum::extract::{Extension, Path};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use enclave_cloud_common::interfaces::marketplace::methods as market;
use enclave_cloud_common::interfaces::method::{Deposit, Method};
use enclave_cloud_common::interfaces::model_token::methods as token;
use protocol::indexer::explorer::{ContractMethod, Network};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the pages come from and what they sign against.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// The bundle directory; `None`: not built or not configured.
    pub dir: Option<PathBuf>,
    /// `None` when the indexer was not told its contracts (API-only routers in tests).
    pub network: Option<Network>,
}

pub type SiteRef = Arc<Site>;

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>explorer not built</title>
<h1>The explorer pages are not built</h1>
<p>Build them with <code>explorer/build.sh</code> (writes <code>explorer/dist</code>) and start the
indexer with <code>--explorer-dir explorer/dist</code> (or <code>ECLOUD_INDEXER_EXPLORER_DIR</code>).
The REST API is at <a href=\"/openapi.json\">/openapi.json</a>.</p>";

/// `/`: the explorer's one page (client-side routes after `#`).
pub async fn index(Extension(site): Extension<SiteRef>, _: Q<NoParams>) -> Response {
    let Some(dir) = &site.dir else {
        return (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response();
    };
    match tokio::fs::read(dir.join("index.html")).await {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "explorer bundle unreadable");
            (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response()
        }
    }
}

/// `/assets/{file}`: one file of the bundle. Only plain names of known types: no paths.
pub async fn asset(
    Extension(site): Extension<SiteRef>,
    Path(file): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound {
        what: "asset",
        id: file.clone(),
    };
    let plain = !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("map") | Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => return Err(not_found()),
    };
    let dir = site.dir.as_ref().filter(|_| plain).ok_or_else(not_found)?;
    let body = tokio::fs::read(dir.join(&file))
        .await
        .map_err(|_| not_found())?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// Where the indexed contracts live: the RPC URL and contract ids the pages' wallet uses.
#[utoipa::path(get, path = "/v1/network", tag = "status",
    responses((status = 200, body = Network), (status = 404, body = super::error::ErrorBody)))]
pub async fn network(
    Extension(site): Extension<SiteRef>,
    _: Q<NoParams>,
) -> ApiResult<Json<Network>> {
    site.network
        .clone()
        .map(Json)
        .ok_or_else(|| ApiError::NoRoute("/v1/network".to_owned()))
}

/// The methods the pages call, from the contracts' shared interface constants.
pub fn contract_methods() -> BTreeMap<String, ContractMethod> {
    let call = |m: Method| ContractMethod {
        name: m.name.to_owned(),
        gas: m.gas.as_gas().to_string(),
        deposit: match m.deposit {
            Deposit::None => "none",
            Deposit::OneYocto => "one_yocto",
            Deposit::Payable => "payable",
        }
        .to_owned(),
    };
    let view = |name: &str| ContractMethod {
        name: name.to_owned(),
        gas: "0".to_owned(),
        deposit: "view".to_owned(),
    };
    // NEP-145's view names, which the model token implements: the standard's own spelling
    // (contracts/common exports only the marketplace's copy of the first).
    const NEP145_BALANCE_OF: &str = market::STORAGE_BALANCE_OF;
    const NEP145_BOUNDS: &str = "storage_balance_bounds";
    [
        ("marketplace.submit_job", call(market::SUBMIT_JOB)),
        ("marketplace.cancel_job", call(market::CANCEL_JOB)),
        ("marketplace.withdraw", call(market::WITHDRAW)),
        (
            "marketplace.job_storage_deposit",
            view(market::JOB_STORAGE_DEPOSIT),
        ),
        ("marketplace.get_job", view(market::GET_JOB)),
        ("marketplace.credit_of", view(market::CREDIT_OF)),
        ("model_token.contribute", call(token::CONTRIBUTE)),
        ("model_token.claim_revenue", call(token::CLAIM_REVENUE)),
        ("model_token.claimable", view(token::CLAIMABLE)),
        ("model_token.crowdfund", view(token::CROWDFUND)),
        ("model_token.ft_metadata", view(token::FT_METADATA)),
        ("model_token.ft_balance_of", view(token::FT_BALANCE_OF)),
        ("model_token.storage_balance_of", view(NEP145_BALANCE_OF)),
        ("model_token.storage_balance_bounds", view(NEP145_BOUNDS)),
    ]
    .into_iter()
    .map(|(k, m)| (k.to_owned(), m))
    .collect()
}
