//! Wires the pieces for the binary: storage, the follower on its source, the HTTP API,
//! and a graceful shutdown (stop following after the current block, end feed streams,
//! drain HTTP connections).

use crate::api::{self, ApiContext};
use crate::config::{Config, SourceKind};
use crate::db::{self, Db};
use crate::follower::{ChainStatus, Follower};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::source::{BlockSource, FixtureSource, NeardataSource};
use anyhow::Context;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// Runs the indexer until `shutdown` completes (or the follower reaches `stop_at`).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Before anything is opened or indexed: a second indexer on this data stops here.
    let lock = db::lock::acquire(&config.database_url)?;
    if let Some(lock) = &lock {
        tracing::debug!(lock = %lock.path.display(), "data directory locked");
    }
    let db = Db::open(&config.database_url)
        .await
        .context("opening the database")?;
    tracing::info!(database = %db::redact(&config.database_url), backend = ?db.backend, "database ready");
    let metrics = Metrics::new().context("creating metrics")?;
    let ingestor = Ingestor::new(config.contracts.clone(), metrics.clone());
    match config.source {
        SourceKind::Neardata => {
            let source = NeardataSource::new(&config.source_url, Duration::from_secs(30))?;
            serve(config, db, metrics, ingestor, source, shutdown).await
        }
        #[cfg(feature = "jsonrpc")]
        SourceKind::Jsonrpc => {
            let source =
                crate::source::JsonRpcSource::new(&config.source_url, Duration::from_secs(30))?;
            serve(config, db, metrics, ingestor, source, shutdown).await
        }
        #[cfg(not(feature = "jsonrpc"))]
        SourceKind::Jsonrpc => anyhow::bail!(
            "this indexer was built without the `jsonrpc` feature; use --source neardata"
        ),
        SourceKind::Fixtures => {
            let source = FixtureSource::new(&config.source_url);
            serve(config, db, metrics, ingestor, source, shutdown).await
        }
    }
}

async fn serve<S: BlockSource>(
    config: Config,
    db: Db,
    metrics: Metrics,
    ingestor: Ingestor,
    source: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let status = ChainStatus::new(source.describe(), 0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let follower = Follower {
        source,
        db: db.clone(),
        ingestor,
        config: config.follow.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
    };
    let mut following = tokio::spawn(follower.run(stop_rx));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the API to {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "API listening");
    let site = api::site::Site {
        dir: config.explorer.dir.clone(),
        network: Some(network(&config)),
    };
    match &site.dir {
        Some(dir) => tracing::info!(dir = %dir.display(), "serving the explorer pages"),
        None => tracing::warn!(
            "no explorer bundle (explorer/build.sh, --explorer-dir): / says how to build it"
        ),
    }
    let app = api::router_with_site(
        ApiContext {
            db,
            status: status.clone(),
            metrics,
            node_pages: Default::default(),
        },
        site,
    );

    // One signal stops everything: the external shutdown, or the follower finishing.
    let (done_tx, mut done_rx) = watch::channel(false);
    let closer = {
        let status = status.clone();
        let done_tx = done_tx.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: finishing the current block, closing feeds");
            let _ = done_tx.send(true);
            status.close();
        }
    };
    tokio::spawn(closer);
    let server = http_serve::serve(listener, app, http_serve::Timeouts::default(), async move {
        let _ = done_rx.wait_for(|d| *d).await;
    });
    let server = tokio::spawn(server);

    let follow_result = tokio::select! {
        r = &mut following => Some(r),
        _ = async { let mut rx = done_tx.subscribe(); let _ = rx.wait_for(|d| *d).await; } => None,
    };
    let _ = stop_tx.send(true);
    let follow_result = match follow_result {
        Some(r) => r,
        None => following.await,
    };
    // The follower is done (stopped or reached stop_at): stop serving too.
    status.close();
    let _ = done_tx.send(true);
    server.await.context("API task")?.context("API server")?;
    follow_result
        .context("follower task")?
        .context("follower")?;
    tracing::info!("stopped");
    Ok(())
}

/// What `/v1/network` tells the explorer's wallet.
fn network(config: &Config) -> protocol::indexer::explorer::Network {
    let c = &config.contracts;
    protocol::indexer::explorer::Network {
        rpc_url: config.explorer.rpc_url.clone(),
        network_id: config
            .explorer
            .network_id
            .clone()
            .unwrap_or_else(|| "localnet".to_owned()),
        registry: c.registry.to_string(),
        marketplace: c.marketplace.to_string(),
        factory: c.factory.as_ref().map(ToString::to_string),
        payment_tokens: c.payment_tokens.iter().map(ToString::to_string).collect(),
        methods: api::site::contract_methods(),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
