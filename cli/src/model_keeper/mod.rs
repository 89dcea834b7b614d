//! `ecloud model keeper`: the model owner's key keeper. It alone holds the model key (a file
//! of mode 0600) and, every `--interval`, reads the chain, decides with [`plan::plan`] and
//! acts: it posts the key sealed to each allowed node's attested x25519 key (`grant_key`,
//! once per node attestation) and revokes the grants of nodes whose attestation ended, that
//! stopped offering the model or that the manifest no longer allows.
//!
//! Everything it decides comes from chain state (the manifest, the registry's nodes, the
//! token's grants), so a keeper killed at any point and restarted picks up where it stopped:
//! a grant that reached the chain is not posted again, one that did not is posted on the next
//! pass. The indexer only helps find nodes; the registry has the last word on each.
//!
//! Each grant or revocation, and each change of a node's verdict, is logged on stderr as one
//! `keeper:` line; `--metrics-listen` serves the counts ([`metrics`]).

pub mod metrics;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chain_client::{Account, NearToken};
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::registry::NodeFilter;
use enclave_cloud_common::{Hash32, ModelId, NodeId};
use near_sdk::AccountId;
use protocol::keys::KeyError;
use protocol::weights::{ModelKey, read_key_file, seal_model_key};
use serde::Serialize;

use crate::Error;
use crate::chain::Chain;
use crate::indexer::{Indexer, NodeQuery};
use crate::output::Report;
use metrics::Metrics;
use plan::{ChainState, Decision, Verdict};

/// Nodes per page when the keeper lists them (indexer and registry).
const PAGE: u32 = 100;

/// Reads the model key, refusing a file others may read: only the keeper holds the key.
pub fn load_key(path: &Path) -> Result<ModelKey, Error> {
    read_key_file(path).map_err(|e| match e {
        KeyError::Permissions { path, mode } => Error::BadInput(format!(
            "the model key file {} is readable by others (mode {mode:03o}); only the keeper may \
             hold the model key: `chmod 600 {}` (and replace the key if others read it)",
            path.display(),
            path.display()
        )),
        other => Error::BadInput(format!("the model key file {}: {other}", path.display())),
    })
}

/// What one pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub model_id: Option<ModelId>,
    /// Every node's verdict.
    pub decisions: Vec<Decision>,
    /// Grants the contract stored in this pass.
    pub granted: Vec<NodeId>,
    pub revoked: Vec<NodeId>,
    /// What failed (reads, refused grants, failed transactions); the next pass retries.
    pub errors: Vec<String>,
    pub seconds: f64,
}

impl PassReport {
    /// Nodes that hold an up-to-date grant after this pass.
    pub fn granted_nodes(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| {
                matches!(d.verdict, Verdict::Keep(plan::KeepReason::UpToDate))
                    || self.granted.contains(&d.node_id)
            })
            .count()
    }
}

impl Report for PassReport {
    fn human(&self) -> String {
        let mut out = format!(
            "model {}: {} nodes, {} granted, {} revoked, {} up to date, {} errors ({:.1} s)\n",
            self.model_id.as_ref().map_or("?", |m| m.as_str()),
            self.decisions.len(),
            self.granted.len(),
            self.revoked.len(),
            self.granted_nodes() - self.granted.len(),
            self.errors.len(),
            self.seconds
        );
        for d in &self.decisions {
            out += &format!("  node {:>5}  {}\n", d.node_id.to_string(), d.verdict);
        }
        for e in &self.errors {
            out += &format!("  error: {e}\n");
        }
        out
    }
}

/// One model's keeper: the chain, the key, and who signs.
pub struct Keeper<'a> {
    chain: &'a Chain,
    indexer: Option<&'a Indexer>,
    model: ModelId,
    token: AccountId,
    key: ModelKey,
    key_hash: Hash32,
    signer: Account,
    metrics: Arc<Metrics>,
    /// The verdict last logged per node, so that an unchanged verdict is not logged again.
    logged: HashMap<NodeId, String>,
}

impl<'a> Keeper<'a> {
    /// A keeper of `model`, whose token contract is `token`, signing as `signer` (the owner
    /// or the token's key service). `indexer`, if given, is one more way to find nodes.
    pub fn new(
        chain: &'a Chain,
        indexer: Option<&'a Indexer>,
        model: ModelId,
        token: AccountId,
        key: ModelKey,
        signer: Account,
    ) -> Self {
        Self {
            chain,
            indexer,
            model,
            token,
            key_hash: key.key_hash(),
            key,
            signer,
            metrics: Arc::default(),
            logged: HashMap::new(),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Reads the chain, plans, and carries the plan out. A failed read fails the pass; a
    /// failed grant or revocation is recorded and the rest go on.
    pub async fn pass(&mut self) -> Result<PassReport, Error> {
        let started = Instant::now();
        Metrics::add(&self.metrics.passes, 1);
        let mut report = PassReport {
            model_id: Some(self.model.clone()),
            ..PassReport::default()
        };
        let state = match self.observe(&mut report.errors).await {
            Ok(state) => state,
            Err(e) => {
                Metrics::add(&self.metrics.errors, 1);
                return Err(e);
            }
        };
        report.decisions = plan::plan(&self.model, &self.key_hash, &state);
        for d in &report.decisions {
            self.log_decision(d);
            let done = match &d.verdict {
                Verdict::Grant { encryption_key, .. } => self
                    .grant(d.node_id, encryption_key)
                    .await
                    .inspect(|&stored| {
                        if stored {
                            report.granted.push(d.node_id);
                        }
                    }),
                Verdict::Revoke(_) => self.revoke(d.node_id).await.map(|()| {
                    report.revoked.push(d.node_id);
                    true
                }),
                Verdict::Keep(_) | Verdict::Skip(_) => continue,
            };
            match done {
                Ok(true) => {}
                Ok(false) => report.errors.push(format!(
                    "node {}: the model token refused the grant (the registry no longer reports it eligible)",
                    d.node_id
                )),
                Err(e) => report.errors.push(format!("node {}: {e}", d.node_id)),
            }
        }
        let errors = report.errors.len() as u64;
        Metrics::add(&self.metrics.errors, errors);
        for e in &report.errors {
            log(&format!("error {e}"));
        }
        self.metrics.granted_nodes.store(
            report.granted_nodes() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics
            .last_pass_unix
            .store(unix_now(), std::sync::atomic::Ordering::Relaxed);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The chain state the plan needs. Nodes come from the registry (those pricing the
    /// model), the indexer (any it lists for the model; its failure is recorded, not fatal)
    /// and the grants; the registry reports each.
    async fn observe(&self, errors: &mut Vec<String>) -> Result<ChainState, Error> {
        let token = self.chain.model_token(&self.token);
        let registry = self.chain.registry();
        let manifest = token.manifest().await?;
        let now_ns = registry.now_ns().await?;
        let grants: BTreeMap<NodeId, _> = token
            .key_grants()
            .await?
            .into_iter()
            .map(|g| (g.node_id, g))
            .collect();
        let mut nodes: BTreeMap<NodeId, Option<NodeView>> = BTreeMap::new();
        let filter = NodeFilter {
            model: Some(self.model.clone()),
            ..NodeFilter::default()
        };
        let mut from = None;
        loop {
            let page = registry
                .list_nodes(Some(filter.clone()), from, Some(PAGE))
                .await?;
            nodes.extend(page.nodes.into_iter().map(|n| (n.node_id, Some(n))));
            match page.next_index {
                Some(next) => from = Some(next.0),
                None => break,
            }
        }
        let mut others: Vec<NodeId> = grants.keys().copied().collect();
        if let Some(indexer) = self.indexer {
            match self.indexed_nodes(indexer).await {
                Ok(ids) => others.extend(ids),
                Err(e) => errors.push(format!("indexer (the registry's list is used): {e}")),
            }
        }
        for id in others {
            if let std::collections::btree_map::Entry::Vacant(entry) = nodes.entry(id) {
                entry.insert(registry.get_node(id).await?);
            }
        }
        Ok(ChainState {
            manifest,
            now_ns,
            nodes,
            grants,
        })
    }

    /// Every node the indexer lists for the model, whatever its status.
    async fn indexed_nodes(&self, indexer: &Indexer) -> Result<Vec<NodeId>, Error> {
        let mut ids = Vec::new();
        let mut query = NodeQuery {
            model: Some(self.model.clone()),
            sort: Some("id"),
            limit: Some(PAGE),
            ..NodeQuery::default()
        };
        loop {
            let page = indexer.nodes(&query).await?;
            ids.extend(page.items.iter().map(|n| n.node_id));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(ids),
            }
        }
    }

    /// Seals the key to the node and posts it; `Ok(false)` if the contract refused it.
    async fn grant(&self, node_id: NodeId, encryption_key: &[u8; 32]) -> Result<bool, Error> {
        let sealed = seal_model_key(encryption_key, &self.model, node_id, &self.key)
            .map_err(|e| Error::Verification(format!("sealing the key to node {node_id}: {e}")))?;
        let token = self.chain.model_token(&self.token);
        let len = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
        let deposit: NearToken = token.grant_deposit(len).await?;
        let (stored, outcome) = token
            .grant_key(node_id, sealed, self.key_hash, deposit)?
            .send_outcome(&self.signer)
            .await?;
        if stored {
            Metrics::add(&self.metrics.grants, 1);
            log(&format!(
                "granted node={node_id} key_hash={} tx={}",
                self.key_hash, outcome.tx_hash
            ));
        } else {
            let why = outcome
                .logs
                .iter()
                .find(|l| l.starts_with("key grant refused"))
                .cloned()
                .unwrap_or_default();
            log(&format!(
                "refused node={node_id} tx={} {why}",
                outcome.tx_hash
            ));
        }
        Ok(stored)
    }

    async fn revoke(&self, node_id: NodeId) -> Result<(), Error> {
        let ((), outcome) = self
            .chain
            .model_token(&self.token)
            .revoke_key(node_id)?
            .send_outcome(&self.signer)
            .await?;
        Metrics::add(&self.metrics.revocations, 1);
        log(&format!("revoked node={node_id} tx={}", outcome.tx_hash));
        Ok(())
    }

    /// Logs a decision that acts, or one whose verdict changed since it was last logged.
    fn log_decision(&mut self, d: &Decision) {
        let text = d.verdict.to_string();
        if d.verdict.acts() || self.logged.get(&d.node_id) != Some(&text) {
            log(&format!("decision node={} {text}", d.node_id));
        }
        self.logged.insert(d.node_id, text);
    }
}

/// One `keeper:` line on stderr, stamped with the unix time.
fn log(line: &str) {
    eprintln!("keeper: t={} {line}", unix_now());
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `ecloud model keeper`'s options.
#[derive(Debug, Clone)]
pub struct KeeperOptions {
    pub model: ModelId,
    pub key_file: std::path::PathBuf,
    pub interval: Duration,
    pub once: bool,
    pub metrics_listen: Option<SocketAddr>,
}

/// What the command prints when it stops: the last pass (with `--once`: the only one) and
/// the totals.
#[derive(Debug, Clone, Serialize)]
pub struct KeeperSummary {
    pub passes: u64,
    pub grants: u64,
    pub revocations: u64,
    pub errors: u64,
    pub last_pass: Option<PassReport>,
}

impl Report for KeeperSummary {
    fn human(&self) -> String {
        let mut out = self
            .last_pass
            .as_ref()
            .map(Report::human)
            .unwrap_or_default();
        out += &format!(
            "keeper: {} passes, {} grants, {} revocations, {} errors\n",
            self.passes, self.grants, self.revocations, self.errors
        );
        out
    }
}

/// `ecloud model keeper`: loads the key (refusing a file others may read), finds the model's
/// token through the factory, then passes every `interval` until Ctrl-C (or once). A pass
/// that cannot read the chain is logged and retried at the next interval; with `--once` it
/// fails the command.
pub async fn run(
    chain: &Chain,
    indexer: &Indexer,
    options: KeeperOptions,
) -> Result<KeeperSummary, Error> {
    if options.interval.is_zero() && !options.once {
        return Err(Error::BadInput("--interval must be at least 1 s".into()));
    }
    let key = load_key(&options.key_file)?;
    let signer = chain.signer()?;
    let listing = crate::models::listing(chain, &options.model).await?;
    let mut keeper = Keeper::new(
        chain,
        Some(indexer),
        options.model.clone(),
        listing.token.clone(),
        key,
        signer,
    );
    let metrics = keeper.metrics();
    if let Some(addr) = options.metrics_listen {
        let bound = metrics::serve(addr, keeper.metrics(), options.model.to_string()).await?;
        log(&format!("metrics at http://{bound}/metrics"));
    }
    log(&format!(
        "keeping model={} token={} key_hash={} signer={}",
        options.model,
        listing.token,
        keeper.key_hash,
        keeper.signer.account_id()
    ));
    let mut last = None;
    loop {
        match keeper.pass().await {
            Ok(report) => {
                log(&format!(
                    "pass nodes={} granted={} revoked={} up_to_date={} errors={} seconds={:.1}",
                    report.decisions.len(),
                    report.granted.len(),
                    report.revoked.len(),
                    report.granted_nodes() - report.granted.len(),
                    report.errors.len(),
                    report.seconds
                ));
                last = Some(report);
            }
            Err(e) if options.once => return Err(e),
            Err(e) => log(&format!(
                "error pass failed, retrying in {:?}: {e}",
                options.interval
            )),
        }
        if options.once {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            _ = tokio::signal::ctrl_c() => {
                log("interrupted; stopping");
                break;
            }
        }
    }
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Ok(KeeperSummary {
        passes: get(&metrics.passes),
        grants: get(&metrics.grants),
        revocations: get(&metrics.revocations),
        errors: get(&metrics.errors),
        last_pass: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.key");
        protocol::weights::write_new_key_file(&path, &ModelKey::from_bytes([5; 32])).unwrap();
        assert_eq!(
            load_key(&path).unwrap().key_hash(),
            ModelKey::from_bytes([5; 32]).key_hash()
        );
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_key(&path).unwrap_err().to_string();
            assert!(err.contains("readable by others"), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_key(&path).is_ok());
    }
}
