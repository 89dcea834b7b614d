//! Glue of `worker serve`: keys, attestation, backend, the gateway, and (unless
//! `--unpaid-api`) the chain, the channel store and the settlement task, into the API
//! listener ([`crate::paid_api::app`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chain_client::ChainClient;
use sealed_api::{Gateway, Limits};

use crate::api::ApiState;
use crate::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use crate::channels::{
    CHANNELS_DIR, ChannelStore, MarketplaceChannels, PaymentConfig, Payments, SettlePolicy,
};
use crate::cli::{
    CliError, ENDPOINT_TIMEOUTS, ServeArgs, backend, device_source, load_keys, provider,
    shutdown_signal,
};
use crate::keys::EnclaveKeys;
use crate::paid_api::{Inference, PaidState, ReportSource, SignatureStore, Signing};
use crate::register::NodeRecord;

/// How long a channel's `get_channel` view is trusted (a close is noticed within it).
pub const CHANNEL_VIEW_TTL: Duration = Duration::from_secs(10);
/// Pause between settlement passes.
pub const SETTLE_POLL: Duration = Duration::from_secs(2);

/// `worker serve`: until Ctrl-C / SIGTERM.
pub async fn serve_command(data_dir: &Path, args: &ServeArgs) -> Result<(), CliError> {
    let keys = Arc::new(load_keys(data_dir)?);
    let provider: Arc<dyn AttestationProvider> = Arc::from(provider(&args.attestation)?);
    let gpus: Option<Arc<dyn GpuEvidenceSource>> =
        device_source(&args.attestation, &keys)?.map(Arc::from);
    let bundle = provider.attest(&keys.public(), now_unix_secs())?;
    let api = ApiState::new(backend(&args.backend)?, bundle);
    let gateway_key = keys
        .gateway_key()
        .map_err(|e| CliError::Usage(format!("the enclave key as OHTTP key: {e}")))?;
    let gateway = Gateway::new(gateway_key, Limits::default());
    let report = ReportSource::new(keys.clone(), provider, gpus, gateway.key_config().clone());
    let signatures = SignatureStore::new();
    let inference = if args.unpaid_api {
        tracing::warn!("--unpaid-api: inference is served plain and unpaid (development only)");
        Inference::Unpaid
    } else {
        Inference::Paid(paid_state(data_dir, args, &keys, &api, &signatures).await?)
    };
    let app = crate::paid_api::app(api, inference, report, signatures, gateway);
    let listen = args.listen;
    let io_err = |source| CliError::Io {
        path: PathBuf::from(listen.to_string()),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(io_err)?;
    tracing::info!(%listen, paid = !args.unpaid_api, "serving the OpenAI-compatible endpoint");
    http_serve::serve(listener, app, ENDPOINT_TIMEOUTS, shutdown_signal())
        .await
        .map_err(io_err)
}

/// The chain, the channel store and the settlement task of a paid node.
async fn paid_state(
    data_dir: &Path,
    args: &ServeArgs,
    keys: &Arc<EnclaveKeys>,
    api: &ApiState,
    signatures: &Arc<SignatureStore>,
) -> Result<PaidState, CliError> {
    let channel_args = &args.channels;
    let record = NodeRecord::load(data_dir).map_err(CliError::Usage)?;
    let (operator, registry, marketplace) =
        crate::node::contracts(&channel_args.chain, record.as_ref())?;
    let client = Arc::new(ChainClient::new(&channel_args.chain.rpc_url));
    let chain = crate::node::node_chain(client, keys, &operator, registry, marketplace.clone());
    let node_id = crate::node::node_id(&chain, channel_args.node_id, record.as_ref()).await?;
    let market = Arc::new(MarketplaceChannels { chain });
    let store = ChannelStore::open(&data_dir.join(CHANNELS_DIR))?;
    let config = PaymentConfig {
        marketplace,
        node_id,
        credit_limit_yocto: channel_args.channel_credit_limit,
        view_ttl: CHANNEL_VIEW_TTL,
    };
    let payments = Payments::open(config, market.clone(), store)?;
    let policy = SettlePolicy {
        min_amount_yocto: channel_args.settle_min_amount,
        interval: channel_args.settle_interval,
        poll: SETTLE_POLL,
    };
    tokio::spawn(crate::channels::settle::run(
        payments.clone(),
        market,
        policy,
    ));
    tracing::info!(%node_id, "paid API: channels of this node, settled in the background");
    Ok(PaidState {
        api: api.clone(),
        payments,
        signing: Signing {
            keys: keys.clone(),
            signatures: signatures.clone(),
        },
    })
}
