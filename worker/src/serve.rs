//! Glue of the API listener (`worker serve`, `worker run --api-listen`): keys, attestation, backend, the gateway, and (unless
//! `--unpaid-api`) the chain, the channel store and the settlement task, into the API
//! listener ([`crate::paid_api::app`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chain_client::ChainClient;
use enclave_cloud_common::{ModelId, NodeId};
use sealed_api::{Gateway, Limits};

use crate::api::ApiState;
use crate::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use crate::chain::NodeChain;
use crate::channels::{
    CHANNELS_DIR, ChannelStore, MarketplaceChannels, PaymentConfig, Payments, SettlePolicy,
};
use crate::cli::{
    CliError, ENDPOINT_TIMEOUTS, PaymentArgs, ServeArgs, backend, device_source, load_keys,
    provider, shutdown_signal,
};
use crate::keys::EnclaveKeys;
use crate::paid_api::{Inference, PaidState, ReportSource, SignatureStore, Signing};
use crate::register::NodeRecord;
use crate::served_weights::ServedWeights;

/// How long a channel's `get_channel` view is trusted (a close is noticed within it).
pub const CHANNEL_VIEW_TTL: Duration = Duration::from_secs(10);
/// Pause between settlement passes.
pub const SETTLE_POLL: Duration = Duration::from_secs(2);

/// What the API listener serves with: the node's keys, attestation and backend.
pub struct ApiNode {
    pub keys: Arc<EnclaveKeys>,
    pub provider: Arc<dyn AttestationProvider>,
    pub gpus: Option<Arc<dyn GpuEvidenceSource>>,
    pub api: ApiState,
    /// Marketplace model id → backend model (`run --model`); `None`: request models are the
    /// backend's own names (`serve`).
    pub models: Option<Arc<BTreeMap<ModelId, String>>>,
    /// Which weights each model is served with (`run`; `None` for `serve`).
    pub weights: Option<Arc<ServedWeights>>,
}

/// The chain of a paid node: its channels are read and settled through it.
pub struct PaidChain {
    pub chain: NodeChain,
    pub node_id: NodeId,
}

/// `worker serve`: until Ctrl-C / SIGTERM.
pub async fn serve_command(data_dir: &Path, args: &ServeArgs) -> Result<(), CliError> {
    let keys = Arc::new(load_keys(data_dir)?);
    let provider: Arc<dyn AttestationProvider> = Arc::from(provider(&args.attestation)?);
    let gpus: Option<Arc<dyn GpuEvidenceSource>> =
        device_source(&args.attestation, &keys)?.map(Arc::from);
    let bundle = provider.attest(&keys.public(), now_unix_secs())?;
    let api = ApiState::new(backend(&args.backend)?, bundle);
    let payment = &args.channels.payment;
    let paid = if payment.unpaid_api {
        None
    } else {
        let channel_args = &args.channels;
        let record = NodeRecord::load(data_dir).map_err(CliError::Usage)?;
        let (operator, registry, marketplace) =
            crate::node::contracts(&channel_args.chain, record.as_ref())?;
        let client = Arc::new(ChainClient::new(&channel_args.chain.rpc_url));
        let chain = crate::node::node_chain(client, &keys, &operator, registry, marketplace);
        let node_id = crate::node::node_id(&chain, channel_args.node_id, record.as_ref()).await?;
        Some(PaidChain { chain, node_id })
    };
    let node = ApiNode {
        keys,
        provider,
        gpus,
        api,
        models: None,
        weights: None,
    };
    let app = api_app(data_dir, node, payment, paid)?;
    let listen = args.listen;
    let io_err = |source| CliError::Io {
        path: PathBuf::from(listen.to_string()),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(io_err)?;
    tracing::info!(%listen, paid = !payment.unpaid_api, "serving the OpenAI-compatible endpoint");
    http_serve::serve(listener, app, ENDPOINT_TIMEOUTS, shutdown_signal())
        .await
        .map_err(io_err)
}

/// The API listener's router (`serve`, `run --api-listen`): paid through `paid`'s channels
/// (and their settlement task, spawned here), or unpaid with `--unpaid-api` (`paid` unused).
pub fn api_app(
    data_dir: &Path,
    node: ApiNode,
    payment: &PaymentArgs,
    paid: Option<PaidChain>,
) -> Result<axum::Router, CliError> {
    let gateway_key = node
        .keys
        .gateway_key()
        .map_err(|e| CliError::Usage(format!("the enclave key as OHTTP key: {e}")))?;
    let gateway = Gateway::new(gateway_key, Limits::default());
    let report = ReportSource::new(
        node.keys.clone(),
        node.provider.clone(),
        node.gpus.clone(),
        gateway.key_config().clone(),
    );
    let signatures = SignatureStore::new();
    let inference = if payment.unpaid_api {
        tracing::warn!("--unpaid-api: inference is served plain and unpaid (development only)");
        Inference::Unpaid
    } else {
        let paid = paid.ok_or_else(|| {
            CliError::Usage("the paid API needs the node's chain (or --unpaid-api)".into())
        })?;
        Inference::Paid(paid_state(data_dir, payment, paid, &node, &signatures)?)
    };
    Ok(crate::paid_api::app(
        node.api, inference, report, signatures, gateway,
    ))
}

/// The channel store and the settlement task of a paid node.
fn paid_state(
    data_dir: &Path,
    payment: &PaymentArgs,
    paid: PaidChain,
    node: &ApiNode,
    signatures: &Arc<SignatureStore>,
) -> Result<PaidState, CliError> {
    let PaidChain { chain, node_id } = paid;
    let marketplace = chain.marketplace.clone();
    let market = Arc::new(MarketplaceChannels { chain });
    let store = ChannelStore::open(&data_dir.join(CHANNELS_DIR))?;
    let config = PaymentConfig {
        marketplace,
        node_id,
        credit_limit_yocto: payment.channel_credit_limit,
        view_ttl: CHANNEL_VIEW_TTL,
    };
    let payments = Payments::open(config, market.clone(), store)?;
    let policy = SettlePolicy {
        min_amount_yocto: payment.settle_min_amount,
        interval: payment.settle_interval,
        poll: SETTLE_POLL,
    };
    tokio::spawn(crate::channels::settle::run(
        payments.clone(),
        market,
        policy,
    ));
    tracing::info!(%node_id, "paid API: channels of this node, settled in the background");
    Ok(PaidState {
        api: node.api.clone(),
        payments,
        signing: Signing {
            keys: node.keys.clone(),
            signatures: signatures.clone(),
        },
        models: node.models.clone(),
        weights: node.weights.clone(),
    })
}
