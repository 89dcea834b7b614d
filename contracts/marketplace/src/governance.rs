//! Owner-controlled configuration: fees, limits, accepted tokens, royalty accounts, pause.
//! The critical settings go through the timelock of `enclave_cloud_common::governance`
//! (`propose_change` / `apply_change` / `cancel_change` / `apply_upgrade` / `governance`).

use near_sdk::json_types::U128;
use near_sdk::{AccountId, NearToken, env, near};

use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::governance::{self, Change, CodeSource, Governed};
use enclave_cloud_common::interfaces::marketplace::MarketplaceSetting;
use enclave_cloud_common::{ModelId, OrPanic};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::channels::ChannelBook;
use crate::errors::{MarketplaceError, Result, invalid};
use crate::settlement::BPS_DENOMINATOR;
use crate::state::{ChannelSettings, Config, ConfigPatch, TokenRate};
use crate::storage_keys::StorageKey;
use crate::{GovernanceApi, Marketplace, STATE_VERSION};

use near_sdk::collections::{LookupMap, UnorderedMap, UnorderedSet, Vector};

/// Sensitive calls need exactly one yoctoNEAR: proof of a full-access key.
pub fn require_one_yocto() -> Result<()> {
    if env::attached_deposit() == NearToken::from_yoctonear(1) {
        Ok(())
    } else {
        Err(MarketplaceError::OneYoctoRequired)
    }
}

/// Calls that must not carry money (it would be stranded).
pub fn require_no_deposit() -> Result<()> {
    let attached = env::attached_deposit();
    if attached.is_zero() {
        Ok(())
    } else {
        Err(MarketplaceError::UnexpectedDeposit(attached))
    }
}

fn policy(field: &str, value: impl ToString) {
    MarketplaceEvent::PolicyUpdated {
        field: field.to_owned(),
        value: value.to_string(),
    }
    .emit();
}

impl Marketplace {
    pub(crate) fn with_config(config: Config) -> Self {
        Self {
            state_version: STATE_VERSION,
            config,
            next_job_id: enclave_cloud_common::JobId(1),
            next_request_id: enclave_cloud_common::RequestId(1),
            jobs: LookupMap::new(StorageKey::Jobs),
            open_jobs: UnorderedSet::new(StorageKey::OpenJobs),
            claimed_jobs: UnorderedSet::new(StorageKey::ClaimedJobs),
            receipts: LookupMap::new(StorageKey::Receipts),
            settled_jobs: Vector::new(StorageKey::SettledJobs),
            jobs_by_user: LookupMap::new(StorageKey::JobsByUser),
            jobs_by_node: LookupMap::new(StorageKey::JobsByNode),
            nodes: LookupMap::new(StorageKey::NodesV2),
            requests: UnorderedMap::new(StorageKey::Requests),
            credits: UnorderedMap::new(StorageKey::Credits),
            storage_balances: UnorderedMap::new(StorageKey::StorageBalances),
            accepted_tokens: UnorderedMap::new(StorageKey::AcceptedTokens),
            royalty_accounts: LookupMap::new(StorageKey::RoyaltyAccounts),
            ledgers: Default::default(),
            locked_storage: U128(0),
            in_flight: LookupMap::new(StorageKey::InFlight),
        }
    }

    pub(crate) fn require_owner(&self) -> Result<()> {
        require_one_yocto()?;
        let caller = env::predecessor_account_id();
        if caller == self.config.owner {
            Ok(())
        } else {
            Err(MarketplaceError::NotOwner {
                owner: self.config.owner.clone(),
                caller,
            })
        }
    }

    pub(crate) fn require_not_paused(&self) -> Result<()> {
        if self.config.paused {
            Err(MarketplaceError::Paused)
        } else {
            Ok(())
        }
    }

    /// The owner, 1 yocto. A patch that touches a critical field is a governance proposal
    /// (applied at once only while the delay is 0); the rest applies now.
    pub(crate) fn try_update_config(&mut self, mut patch: ConfigPatch) -> Result<()> {
        self.require_owner()?;
        self.check_patch(&patch)?;
        // The channel settings apply at once and are never queued (they are not part of a
        // queued patch's borsh form): a channel keeps the settings it was opened with.
        self.apply_channel_settings(&mut patch);
        if patch.is_critical() {
            let owner = self.config.owner.clone();
            governance::queue(
                self,
                Change::Setting(MarketplaceSetting::UpdateConfig(patch)),
                owner,
            )?;
        } else {
            self.apply_patch(patch);
        }
        Ok(())
    }

    /// Whether `patch` would leave a consistent configuration.
    fn check_patch(&self, patch: &ConfigPatch) -> Result<()> {
        let current = &self.config;
        let fee = patch.protocol_fee_bps.unwrap_or(current.protocol_fee_bps);
        let royalty = patch.royalty_bps.unwrap_or(current.royalty_bps);
        if u32::from(fee) + u32::from(royalty) > u32::from(BPS_DENOMINATOR) {
            return Err(invalid(
                "protocol_fee_bps + royalty_bps",
                format!("{fee} + {royalty} exceeds {BPS_DENOMINATOR}"),
            ));
        }
        if patch.max_inline_bytes == Some(0) {
            return Err(invalid("max_inline_bytes", "must be more than 0"));
        }
        if patch.default_node_capacity == Some(0) {
            return Err(invalid("default_node_capacity", "must be more than 0"));
        }
        let window = patch
            .min_answer_window_ns
            .unwrap_or(current.min_answer_window_ns);
        let longest = patch
            .max_job_duration_ns
            .unwrap_or(current.max_job_duration_ns);
        if let Some(period) = patch.channel_challenge_period_ns
            && (period.0 == 0 || period.0 > ChannelSettings::MAX_CHALLENGE_PERIOD_NS)
        {
            return Err(invalid(
                "channel_challenge_period_ns",
                format!(
                    "{} must be in 1..={}",
                    period.0,
                    ChannelSettings::MAX_CHALLENGE_PERIOD_NS
                ),
            ));
        }
        if patch.min_channel_deposit.is_some_and(|d| d.is_zero()) {
            return Err(invalid("min_channel_deposit", "must be more than 0"));
        }
        if window.0 >= longest.0 {
            return Err(invalid(
                "min_answer_window_ns",
                format!(
                    "{} must be below max_job_duration_ns {}",
                    window.0, longest.0
                ),
            ));
        }
        Ok(())
    }

    /// Takes the channel settings out of a checked patch and applies them, one
    /// `policy_updated` event per field.
    fn apply_channel_settings(&mut self, patch: &mut ConfigPatch) {
        let period = patch.channel_challenge_period_ns.take();
        let minimum = patch.min_channel_deposit.take();
        if period.is_none() && minimum.is_none() {
            return;
        }
        let mut book = ChannelBook::load();
        if let Some(period) = period {
            policy("channel_challenge_period_ns", period.0);
            book.settings.challenge_period_ns = period;
        }
        if let Some(minimum) = minimum {
            policy("min_channel_deposit", minimum.as_yoctonear());
            book.settings.min_deposit = minimum;
        }
        book.save();
    }

    /// Applies a checked patch, one `policy_updated` event per field.
    fn apply_patch(&mut self, patch: ConfigPatch) {
        let next = &mut self.config;
        macro_rules! apply {
            ($($field:ident),*) => {$(
                if let Some(value) = patch.$field {
                    policy(stringify!($field), near_sdk::serde_json::to_string(&value).unwrap_or_default());
                    next.$field = value.into();
                }
            )*};
        }
        apply!(
            owner,
            registry,
            treasury,
            protocol_fee_bps,
            royalty_bps,
            max_inline_bytes,
            claim_window_ns,
            max_job_duration_ns,
            node_cache_ttl_ns,
            slash_amount,
            paused,
            min_answer_window_ns,
            default_node_capacity
        );
        if let Some(factory) = patch.model_factory {
            policy("model_factory", &factory);
            next.model_factory = Some(factory);
        }
    }

    pub(crate) fn try_set_accepted_token(
        &mut self,
        token: AccountId,
        rate: Option<TokenRate>,
    ) -> Result<()> {
        self.require_owner()?;
        match rate {
            Some(rate) if rate.units_per_near.0 == 0 => {
                return Err(invalid("rate.units_per_near", "must be more than 0"));
            }
            Some(rate) => {
                self.accepted_tokens.insert(&token, &rate);
                policy(&format!("accepted_token.{token}"), rate.units_per_near.0);
            }
            None => {
                self.accepted_tokens.remove(&token);
                policy(&format!("accepted_token.{token}"), "removed");
            }
        }
        Ok(())
    }

    /// The owner, 1 yocto: a governance proposal.
    pub(crate) fn try_set_royalty_account(
        &mut self,
        model_id: ModelId,
        account: Option<AccountId>,
    ) -> Result<()> {
        self.require_owner()?;
        let owner = self.config.owner.clone();
        governance::queue(
            self,
            Change::Setting(MarketplaceSetting::SetRoyaltyAccount { model_id, account }),
            owner,
        )?;
        Ok(())
    }

    fn apply_royalty_account(&mut self, model_id: ModelId, account: Option<AccountId>) {
        match account {
            Some(account) => {
                self.royalty_accounts.insert(&model_id, &account);
                policy(&format!("royalty_account.{model_id}"), &account);
            }
            None => {
                self.royalty_accounts.remove(&model_id);
                policy(&format!("royalty_account.{model_id}"), "default");
            }
        }
    }
}

impl Governed for Marketplace {
    type Setting = MarketplaceSetting;
    const CODE: CodeSource = CodeSource::Deployed;

    fn timelock_key() -> Vec<u8> {
        near_sdk::borsh::to_vec(&StorageKey::Governance).unwrap_or_default()
    }

    fn governor(&self) -> &AccountId {
        &self.config.owner
    }

    fn check_setting(&self, setting: &MarketplaceSetting) -> std::result::Result<(), String> {
        match setting {
            MarketplaceSetting::UpdateConfig(patch) => {
                self.check_patch(patch).map_err(|e| e.to_string())
            }
            MarketplaceSetting::SetRoyaltyAccount { .. } => Ok(()),
        }
    }

    fn apply_setting(&mut self, setting: MarketplaceSetting) {
        match setting {
            MarketplaceSetting::UpdateConfig(patch) => self.apply_patch(patch),
            MarketplaceSetting::SetRoyaltyAccount { model_id, account } => {
                self.apply_royalty_account(model_id, account)
            }
        }
    }
}

enclave_cloud_common::governed_methods!(Marketplace, MarketplaceSetting);

#[near]
impl Marketplace {
    /// Creates the marketplace. `registry` is asked about nodes; `treasury` receives fees.
    #[init]
    pub fn new(owner: AccountId, registry: AccountId, treasury: AccountId) -> Self {
        Self::with_config(Config::new(owner, registry, treasury))
    }
}

#[near]
impl GovernanceApi for Marketplace {
    #[payable]
    fn update_config(&mut self, patch: ConfigPatch) {
        self.try_update_config(patch).or_panic()
    }

    #[payable]
    fn set_accepted_token(&mut self, token: AccountId, rate: Option<TokenRate>) {
        self.try_set_accepted_token(token, rate).or_panic()
    }

    #[payable]
    fn set_royalty_account(&mut self, model_id: ModelId, account: Option<AccountId>) {
        self.try_set_royalty_account(model_id, account).or_panic()
    }
}
