//! Governance (the owner; later a DAO account): policy, the marketplace allowed to slash, and
//! ownership, all through the timelock of `enclave_cloud_common::governance` (proposed,
//! announced, applied after the delay); `forget_certificates` applies at once (it only makes
//! verification stricter). Every owner call needs one yocto, i.e. a full access key.

use enclave_cloud_common::events::{Nep297, RegistryEvent};
use enclave_cloud_common::{Hash32, OrPanic};
use near_sdk::serde_json::{self, Value};
use near_sdk::{AccountId, PublicKey, near};

use crate::GovernanceApi;
use crate::access::require_owner;
use crate::errors::{RegistryError, Result};
use crate::events::{emit_status_changes, statuses};
use crate::policy::{Policy, PolicyCheck};
use crate::state::Registry;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::storage_keys::StorageKey;
use enclave_cloud_common::NodeId;
use enclave_cloud_common::governance::{self, Change, CodeSource, Governed};
use enclave_cloud_common::interfaces::registry::{GoldenKind, GoldenReference, RegistrySetting};

/// Whether `policy` may be in force on this registry: dev attestations only where the
/// registry was initialised with them, never on mainnet.
pub fn check_dev_rules(mainnet: bool, dev_mode_available: bool, policy: &Policy) -> Result<()> {
    let wants_dev = policy.dev_mode || policy.dev_ca_key.is_some();
    if wants_dev && mainnet {
        return Err(RegistryError::DevModeOnMainnet);
    }
    if wants_dev && !dev_mode_available {
        return Err(RegistryError::DevModeNotAvailable);
    }
    Ok(())
}

impl Registry {
    /// The owner, 1 yocto: `setting` as a governance proposal (applied at once only while the
    /// delay is 0). The old setter methods are this, so existing clients keep working.
    pub(crate) fn try_propose(&mut self, setting: RegistrySetting) -> Result<()> {
        require_owner(self)?;
        let owner = self.owner.clone();
        governance::queue(self, Change::Setting(setting), owner)?;
        Ok(())
    }

    pub(crate) fn try_set_policy(&mut self, policy: Policy) -> Result<()> {
        require_owner(self)?;
        // Checked here too for the typed error; the timelock checks again when it applies.
        self.check_policy(&policy)?;
        self.try_propose(RegistrySetting::SetPolicy(Box::new(policy)))
    }

    pub(crate) fn try_set_marketplace(&mut self, marketplace: AccountId) -> Result<()> {
        self.try_propose(RegistrySetting::SetMarketplace { marketplace })
    }

    pub(crate) fn try_set_owner(&mut self, owner: AccountId) -> Result<()> {
        self.try_propose(RegistrySetting::SetOwner { owner })
    }

    fn check_policy(&self, policy: &Policy) -> Result<()> {
        policy.validate()?;
        check_dev_rules(self.mainnet, self.dev_mode_available, policy)
    }
}

/// How long after the unbonding delay a new marketplace takes over.
pub const MARKETPLACE_CHANGE_MARGIN_NS: u64 = 3_600 * 1_000_000_000;

impl Governed for Registry {
    type Setting = RegistrySetting;
    const CODE: CodeSource = CodeSource::Deployed;

    fn timelock_key() -> Vec<u8> {
        near_sdk::borsh::to_vec(&StorageKey::Governance).unwrap_or_default()
    }

    fn governor(&self) -> &AccountId {
        &self.owner
    }

    fn check_setting(&self, setting: &RegistrySetting) -> std::result::Result<(), String> {
        match setting {
            RegistrySetting::SetPolicy(policy) => {
                self.check_policy(policy).map_err(|e| e.to_string())
            }
            RegistrySetting::PinGoldenSet(set) => {
                crate::golden::validate(set).map_err(|e| e.to_string())
            }
            RegistrySetting::SetMarketplace { .. }
            | RegistrySetting::SetOwner { .. }
            | RegistrySetting::UnpinGoldenSet { .. } => Ok(()),
        }
    }

    /// Replacing the marketplace (the only account that can slash) waits at least the
    /// unbonding delay plus an hour, whatever the governance delay: operators who start
    /// unbonding when it is announced have withdrawn before the new marketplace can slash
    /// them. Naming the first marketplace (deployment) does not wait.
    fn min_wait_ns(&self, setting: &RegistrySetting) -> u64 {
        match setting {
            RegistrySetting::SetMarketplace { .. } if self.marketplace.is_some() => self
                .policy
                .unbonding_delay_ns
                .0
                .saturating_add(MARKETPLACE_CHANGE_MARGIN_NS),
            _ => 0,
        }
    }

    fn apply_setting(&mut self, setting: RegistrySetting) {
        let (field, value) = match setting {
            RegistrySetting::SetPolicy(policy) => {
                let old = std::mem::replace(&mut self.policy, *policy);
                emit_changes(&old, &self.policy);
                return;
            }
            RegistrySetting::SetMarketplace { marketplace } => {
                let value = marketplace.to_string();
                self.marketplace = Some(marketplace);
                ("marketplace", value)
            }
            RegistrySetting::SetOwner { owner } => {
                let value = owner.to_string();
                self.owner = owner;
                ("owner", value)
            }
            RegistrySetting::PinGoldenSet(set) => {
                let value = format!("{:?} {} {}", set.kind, set.product, set.version);
                // Checked when proposed and again by `check_setting` before applying.
                if crate::golden::pin(*set).is_err() {
                    return;
                }
                ("gpu.golden.pinned", value)
            }
            RegistrySetting::UnpinGoldenSet {
                kind,
                product,
                version,
            } => {
                crate::golden::unpin(kind, &product, &version);
                (
                    "gpu.golden.unpinned",
                    format!("{kind:?} {product} {version}"),
                )
            }
        };
        RegistryEvent::PolicyUpdated {
            field: field.to_owned(),
            value,
        }
        .emit();
    }
}

enclave_cloud_common::governed_methods!(Registry, RegistrySetting);

/// One `PolicyUpdated` per top-level field that changed, with its new value as JSON.
fn emit_changes(old: &Policy, new: &Policy) {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return;
    };
    for (field, value) in new {
        if old.get(&field) != Some(&value) {
            RegistryEvent::PolicyUpdated {
                field,
                value: value.to_string(),
            }
            .emit();
        }
    }
}

/// The GPU devices governance revoked. A collection of its own (not in the root state).
pub fn revoked_gpus() -> near_sdk::collections::LookupSet<Hash32> {
    near_sdk::collections::LookupSet::new(StorageKey::RevokedGpus)
}

impl Registry {
    pub(crate) fn try_revoke_gpus(&mut self, device_ids: Vec<Hash32>) -> Result<u32> {
        require_owner(self)?;
        if device_ids.len() > MAX_FORGET {
            return Err(RegistryError::InvalidInput {
                field: "device_ids",
                reason: format!(
                    "{} devices, at most {MAX_FORGET} per call",
                    device_ids.len()
                ),
            });
        }
        let mut detached = 0;
        for device in &device_ids {
            if let Some(node_id) = self.gpu_owner.get(device).copied() {
                self.detach_gpu(node_id, *device)?;
                detached += 1;
            }
        }
        // The denylist is governance's record, stored at the registry's cost.
        let mut revoked = revoked_gpus();
        for device in &device_ids {
            revoked.insert(device);
        }
        RegistryEvent::PolicyUpdated {
            field: "gpu.revoked".to_owned(),
            value: serde_json::to_string(&device_ids).unwrap_or_default(),
        }
        .emit();
        Ok(detached)
    }

    /// Removes `device` from node `node_id` (a GPU, a switch, or a device reserved by its
    /// attestation in progress); the operator gets the freed storage back.
    fn detach_gpu(&mut self, node_id: NodeId, device: Hash32) -> Result<()> {
        let operator = self.node(node_id)?.operator.clone();
        let affected = self.operator(&operator)?.nodes.clone();
        let before = statuses(self, &affected);
        let usage_before = self.storage_mark();
        self.gpu_owner.remove(&device);
        let node = self
            .nodes
            .get_mut(&node_id)
            .ok_or(RegistryError::UnknownNode(node_id))?;
        node.gpus.retain(|g| g.device_id != device);
        let signer_key = node.signer_key.clone();
        // A switch of the node, or a device an attestation in progress reserved for it.
        if let Some(switches) = self.node_switches.get_mut(&node_id) {
            switches.retain(|s| s.device_id != device);
        }
        if let Some(p) = self.pending.get_mut(&signer_key) {
            p.gpus.retain(|g| g.info.device_id != device);
            p.switches.retain(|s| s.device_id != device);
        }
        self.settle_storage(&operator, usage_before)?;
        emit_status_changes(self, &before);
        Ok(())
    }
}

/// Most certificates `forget_certificates` takes in one call.
pub const MAX_FORGET: usize = 100;

impl Registry {
    pub(crate) fn try_forget_certificates(&mut self, hashes: Vec<Hash32>) -> Result<u32> {
        let state = self;
        require_owner(state)?;
        if hashes.len() > MAX_FORGET {
            return Err(RegistryError::InvalidInput {
                field: "hashes",
                reason: format!(
                    "{} certificates, at most {MAX_FORGET} per call",
                    hashes.len()
                ),
            });
        }
        let mut removed = 0;
        for hash in &hashes {
            if state.cert_cache.remove(&hash.0) {
                removed += 1;
            }
        }
        RegistryEvent::PolicyUpdated {
            field: "cert_cache.removed".to_owned(),
            value: serde_json::to_string(&hashes).unwrap_or_default(),
        }
        .emit();
        Ok(removed)
    }
}

#[near]
impl Registry {
    /// Initialises the registry. `mainnet: true` makes the `dev` attestation kind impossible
    /// forever; `dev_ca_key` (localnet/testnet only) enables it with that development CA.
    /// `policy` defaults to [`Policy::default`] (empty allowlists: no TDX node can join until
    /// governance allows measurements).
    #[init]
    pub fn new(
        owner: AccountId,
        mainnet: bool,
        dev_ca_key: Option<PublicKey>,
        policy: Option<Policy>,
    ) -> Self {
        Self::try_new(owner, mainnet, dev_ca_key, policy).or_panic()
    }
}

impl Registry {
    pub(crate) fn try_new(
        owner: AccountId,
        mainnet: bool,
        dev_ca_key: Option<PublicKey>,
        policy: Option<Policy>,
    ) -> Result<Self> {
        let dev_mode_available = dev_ca_key.is_some();
        let mut policy = policy.unwrap_or_default();
        if let Some(key) = dev_ca_key {
            policy.dev_ca_key = Some(key);
            policy.dev_mode = true;
        }
        check_dev_rules(mainnet, dev_mode_available, &policy)?;
        policy.validate()?;
        Ok(Self::with_policy(
            owner,
            mainnet,
            dev_mode_available,
            policy,
        ))
    }
}

#[near]
impl GovernanceApi for Registry {
    #[payable]
    fn set_policy(&mut self, policy: Policy) {
        self.try_set_policy(policy).or_panic()
    }

    #[payable]
    fn forget_certificates(&mut self, hashes: Vec<Hash32>) -> u32 {
        self.try_forget_certificates(hashes).or_panic()
    }

    #[payable]
    fn revoke_gpus(&mut self, device_ids: Vec<Hash32>) -> u32 {
        self.try_revoke_gpus(device_ids).or_panic()
    }

    #[payable]
    fn pin_golden_set(&mut self, set: GoldenReference) {
        crate::golden::validate(&set)
            .and_then(|()| self.try_propose(RegistrySetting::PinGoldenSet(Box::new(set))))
            .or_panic()
    }

    #[payable]
    fn unpin_golden_set(&mut self, kind: GoldenKind, product: String, version: String) {
        self.try_propose(RegistrySetting::UnpinGoldenSet {
            kind,
            product,
            version,
        })
        .or_panic()
    }

    #[payable]
    fn set_marketplace(&mut self, marketplace: AccountId) {
        self.try_set_marketplace(marketplace).or_panic()
    }

    #[payable]
    fn set_owner(&mut self, owner: AccountId) {
        self.try_set_owner(owner).or_panic()
    }
}
