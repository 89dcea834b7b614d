//! Initialisation, the model manifest and the owner's configuration.

use enclave_cloud_common::Asset;
use enclave_cloud_common::events::Nep297;
use enclave_cloud_common::events::model::{ModelEvent, ModelManifest};
use near_contract_standards::fungible_token::metadata::{FT_METADATA_SPEC, FungibleTokenMetadata};
use near_sdk::store::{IterableMap, LazyOption, LookupMap};
use near_sdk::{AccountId, NearToken, env, near};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::access::{OrPanic, charge_storage, refund, require_one_yocto};
use crate::crowdfund::CrowdfundEarnings;
use crate::errors::ModelTokenError;
use crate::rewards::RevenuePool;
use crate::state::MAX_REVENUE_TOKENS;
use crate::storage_keys::StorageKey;
use crate::upgrade::STATE_VERSION;
use crate::{ModelAdminApi, ModelToken};

/// Largest number of enclave measurements a manifest may allow.
pub const MAX_ALLOWED_MEASUREMENTS: usize = 32;
pub use enclave_cloud_common::interfaces::model_token::key_grants::DEV_MEASUREMENT;
const MAX_TEXT: usize = 512;
/// Decimals above this would overflow the crowdfund's price arithmetic for no benefit.
const MAX_DECIMALS: u8 = 24;

pub use enclave_cloud_common::interfaces::model_token::ModelInit;

fn invalid(field: &'static str, reason: impl Into<String>) -> ModelTokenError {
    ModelTokenError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check_text(field: &'static str, value: &str, required: bool) -> Result<(), ModelTokenError> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(invalid(
            field,
            format!("{} bytes, at most {MAX_TEXT}", value.len()),
        ));
    }
    Ok(())
}

/// Checks a manifest and normalises its measurements to lowercase hex.
pub(crate) fn validate_manifest(mut m: ModelManifest) -> Result<ModelManifest, ModelTokenError> {
    check_text("manifest.name", &m.name, true)?;
    check_text(
        "manifest.encrypted_weights_uri",
        &m.encrypted_weights_uri,
        true,
    )?;
    check_text(
        "manifest.training_data_manifest_uri",
        &m.training_data_manifest_uri,
        false,
    )?;
    check_text(
        "manifest.training_image_measurement",
        &m.training_image_measurement,
        false,
    )?;
    check_text("manifest.licence", &m.licence, true)?;
    if m.allowed_enclave_measurements.len() > MAX_ALLOWED_MEASUREMENTS {
        return Err(invalid(
            "manifest.allowed_enclave_measurements",
            format!(
                "{} entries, at most {MAX_ALLOWED_MEASUREMENTS}",
                m.allowed_enclave_measurements.len()
            ),
        ));
    }
    for entry in &mut m.allowed_enclave_measurements {
        entry.make_ascii_lowercase();
        if entry == DEV_MEASUREMENT {
            continue;
        }
        // A compose hash (32 bytes) or an RTMR (48 bytes), hex.
        let hex_ok = entry.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok || !(entry.len() == 64 || entry.len() == 96) {
            return Err(invalid(
                "manifest.allowed_enclave_measurements",
                format!(
                    "'{entry}' is not a 64- or 96-character hex measurement nor '{DEV_MEASUREMENT}'"
                ),
            ));
        }
    }
    Ok(m)
}

fn validate_metadata(m: &FungibleTokenMetadata) -> Result<(), ModelTokenError> {
    if m.spec != FT_METADATA_SPEC {
        return Err(invalid(
            "metadata.spec",
            format!("'{}', expected '{FT_METADATA_SPEC}'", m.spec),
        ));
    }
    check_text("metadata.name", &m.name, true)?;
    check_text("metadata.symbol", &m.symbol, true)?;
    if m.decimals > MAX_DECIMALS {
        return Err(invalid(
            "metadata.decimals",
            format!("{}, at most {MAX_DECIMALS}", m.decimals),
        ));
    }
    if m.reference.is_some() != m.reference_hash.is_some() {
        return Err(invalid(
            "metadata.reference_hash",
            "give both reference and reference_hash or neither",
        ));
    }
    if m.reference_hash.as_ref().is_some_and(|h| h.0.len() != 32) {
        return Err(invalid("metadata.reference_hash", "must be 32 bytes"));
    }
    Ok(())
}

#[near]
impl ModelToken {
    /// Creates the model token. Called once, by the factory in the creating batch (or by
    /// whoever deploys the code); the account's balance pays for the initial state.
    #[init]
    #[handle_result]
    pub fn new(init: ModelInit) -> Result<Self, ModelTokenError> {
        let manifest = validate_manifest(init.manifest)?;
        validate_metadata(&init.metadata)?;
        let mut this = Self {
            state_version: STATE_VERSION,
            model_id: init.model_id,
            owner: init.owner,
            registry: init.registry,
            key_service: init.key_service,
            manifest: LazyOption::new(StorageKey::Manifest, Some(manifest)),
            metadata: LazyOption::new(StorageKey::Metadata, Some(init.metadata)),
            holders: LookupMap::new(StorageKey::Holders),
            total_supply: 0,
            holder_storage_bytes: 0,
            pools: vec![RevenuePool::new(Asset::Near)],
            crowdfund: None,
            grants: IterableMap::new(StorageKey::Grants),
            crowdfund_earnings: CrowdfundEarnings::default(),
        };
        this.holder_storage_bytes = this.measure_holder_storage();
        for token in init.revenue_tokens {
            this.allow_revenue_token(token)?;
        }
        let owner = this.owner.clone();
        this.register(&owner);
        if let Some(supply) = init.initial_supply.filter(|s| s.0 > 0) {
            this.mint(&owner, supply.0, Some("initial supply"))?;
        }
        this.emit_manifest();
        if let Some(config) = init.crowdfund {
            this.open_crowdfund(config)?;
        }
        Ok(this)
    }

    fn emit_manifest(&self) {
        if let Some(manifest) = self.manifest.get() {
            ModelEvent::ManifestUpdated {
                model_id: self.model_id.clone(),
                manifest: manifest.clone(),
            }
            .emit();
        }
    }

    fn allow_revenue_token(&mut self, token: AccountId) -> Result<(), ModelTokenError> {
        if token == env::current_account_id() {
            return Err(invalid(
                "token",
                "the model token cannot be its own revenue",
            ));
        }
        let asset = Asset::Ft {
            token: token.clone(),
        };
        if self.pools.iter().any(|p| p.asset == asset) {
            return Err(ModelTokenError::TokenAlreadyAllowed(token));
        }
        if self.pools.len() > MAX_REVENUE_TOKENS {
            return Err(ModelTokenError::TooManyRevenueTokens(MAX_REVENUE_TOKENS));
        }
        self.pools.push(RevenuePool::new(asset));
        Ok(())
    }

    fn try_update_manifest(&mut self, manifest: ModelManifest) -> Result<(), ModelTokenError> {
        let caller = self.require_owner()?;
        let attached = env::attached_deposit();
        if attached.is_zero() {
            return Err(ModelTokenError::OneYoctoRequired(attached));
        }
        let manifest = validate_manifest(manifest)?;
        let mark = self.storage_mark();
        self.manifest.set(Some(manifest));
        let grown = self.storage_grown_since(mark);
        charge_storage(grown, attached, &caller)?;
        self.emit_manifest();
        Ok(())
    }

    fn try_add_revenue_token(&mut self, token: AccountId) -> Result<(), ModelTokenError> {
        let caller = self.require_owner()?;
        self.allow_revenue_token(token)?;
        // The pool lives in the root state, written after the call: charge its size now.
        let pool_bytes = self
            .pools
            .last()
            .and_then(|p| near_sdk::borsh::to_vec(p).ok())
            .map_or(0, |v| v.len() as u128);
        let required = env::storage_byte_cost()
            .saturating_mul(pool_bytes)
            .max(NearToken::from_yoctonear(1));
        let attached = env::attached_deposit();
        let change = attached
            .checked_sub(required)
            .ok_or(ModelTokenError::DepositTooSmall { required, attached })?;
        refund(&caller, change);
        Ok(())
    }
}

#[near]
impl ModelAdminApi for ModelToken {
    #[payable]
    fn update_manifest(&mut self, manifest: ModelManifest) {
        self.try_update_manifest(manifest).or_panic()
    }

    #[payable]
    fn set_key_service(&mut self, key_service: Option<AccountId>) {
        require_one_yocto()
            .and_then(|()| self.require_owner())
            .or_panic();
        self.key_service = key_service;
    }

    #[payable]
    fn add_revenue_token(&mut self, token: AccountId) {
        self.try_add_revenue_token(token).or_panic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::json_types::U128;
    use near_sdk::test_utils::get_logs;

    #[test]
    fn new_registers_owner_mints_initial_supply_and_emits_manifest() {
        let t = setup_with(|init| init.initial_supply = Some(U128(1_000)));
        assert_eq!(t.balance_of(&acc(OWNER)), 1_000);
        assert_eq!(t.total_supply, 1_000);
        let logs = get_logs();
        assert!(logs.iter().any(|l| l.contains("\"ft_mint\"")), "{logs:?}");
        assert!(
            logs.iter().any(|l| l.contains("\"manifest_updated\"")),
            "{logs:?}"
        );
        assert!(t.holder_storage_bytes > 200, "{}", t.holder_storage_bytes);
    }

    #[test]
    fn new_refuses_bad_manifest_and_metadata() {
        ctx(OWNER, NearToken::from_yoctonear(0));
        let mut init = model_init();
        init.manifest.allowed_enclave_measurements = vec!["zz".into()];
        let err = ModelToken::new(init)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("'zz' is not a 64- or 96-character hex measurement"),
            "{err}"
        );
        let mut init = model_init();
        init.metadata.decimals = 30;
        let err = ModelToken::new(init)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("metadata.decimals"), "{err}");
        let mut init = model_init();
        init.revenue_tokens = vec![acc("a.near"), acc("a.near")];
        let err = ModelToken::new(init)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("already allow-listed"), "{err}");
    }

    #[test]
    fn owner_updates_manifest_with_event_others_cannot() {
        let mut t = setup();
        ctx(OWNER, NearToken::from_millinear(100));
        let mut m = model_init().manifest;
        m.name = "renamed".into();
        m.allowed_enclave_measurements = vec!["AB".repeat(32)];
        t.update_manifest(m);
        let stored = t.manifest.get().clone().unwrap();
        assert_eq!(stored.name, "renamed");
        assert_eq!(stored.allowed_enclave_measurements, vec!["ab".repeat(32)]);
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"manifest_updated\"") && l.contains("renamed"))
        );

        ctx(ALICE, NearToken::from_millinear(100));
        let err = t.try_update_manifest(model_init().manifest).unwrap_err();
        assert!(matches!(err, ModelTokenError::NotOwner { .. }), "{err}");
        ctx(OWNER, NearToken::from_yoctonear(0));
        let err = t.try_update_manifest(model_init().manifest).unwrap_err();
        assert!(matches!(err, ModelTokenError::OneYoctoRequired(_)), "{err}");
    }

    #[test]
    fn set_key_service_needs_owner_and_one_yocto() {
        let mut t = setup();
        ctx(OWNER, NearToken::from_yoctonear(1));
        t.set_key_service(Some(acc(KEY_SERVICE)));
        assert_eq!(t.key_service, Some(acc(KEY_SERVICE)));
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.set_key_service(None), "only the owner");
        ctx(OWNER, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.set_key_service(None), "attach exactly 1 yoctoNEAR");
    }

    #[test]
    fn add_revenue_token_charges_storage_and_is_bounded() {
        let mut t = setup();
        // USDC is allow-listed at init.
        for i in 1..MAX_REVENUE_TOKENS {
            ctx(OWNER, NearToken::from_millinear(10));
            t.add_revenue_token(acc(&format!("t{i}.near")));
        }
        assert_eq!(t.pools.len(), 1 + MAX_REVENUE_TOKENS);
        ctx(OWNER, NearToken::from_millinear(10));
        let err = t.try_add_revenue_token(acc("one-more.near")).unwrap_err();
        assert!(
            matches!(err, ModelTokenError::TooManyRevenueTokens(_)),
            "{err}"
        );
        let mut t = setup();
        ctx(OWNER, NearToken::from_yoctonear(1));
        let err = t.try_add_revenue_token(acc("usdt.near")).unwrap_err();
        assert!(
            matches!(err, ModelTokenError::DepositTooSmall { .. }),
            "{err}"
        );
        ctx(ALICE, NearToken::from_millinear(10));
        let err = t.try_add_revenue_token(acc("usdt.near")).unwrap_err();
        assert!(matches!(err, ModelTokenError::NotOwner { .. }), "{err}");
    }
}
