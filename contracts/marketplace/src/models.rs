//! Where a model's royalties go: an account governance names, or the model's token once the
//! model factory confirms that the model was created (`confirm_model`), else the protocol
//! fees. Confirmation is what stops a squatter: royalties for an id nobody created are never
//! set aside for whoever creates it first.
//!
//! The entry's ~100 bytes are the marketplace's, like an entry governance sets: there is at
//! most one per model the factory created (creating one costs far more than the entry), and
//! governance may lift or replace it without any storage balance to settle.

use near_sdk::{AccountId, Promise, PromiseError, env, near};

use enclave_cloud_common::ModelId;
use enclave_cloud_common::events::Nep297;
use enclave_cloud_common::events::marketplace::MarketplaceEvent;
use enclave_cloud_common::interfaces::model_factory::{ModelView, ext_model_listing};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::errors::MarketplaceError;
use crate::governance::require_no_deposit;
use crate::{GAS_MODEL_LISTING, GAS_ON_MODEL_CONFIRMED, Marketplace, ModelRoyaltyApi};

impl Marketplace {
    /// Records `model_id`'s token as its royalty account if `answer` confirms it under
    /// `factory` (still the configured factory). `Ok(false)` when an account is already
    /// named (kept as it is).
    fn confirm_from_listing(
        &mut self,
        model_id: &ModelId,
        factory: &AccountId,
        answer: Result<Option<ModelView>, PromiseError>,
    ) -> Result<bool, MarketplaceError> {
        let refuse = |reason: &str| MarketplaceError::ModelNotConfirmed {
            model_id: model_id.clone(),
            factory: factory.clone(),
            reason: reason.to_owned(),
        };
        if self.config.model_factory.as_ref() != Some(factory) {
            return Err(refuse("the marketplace's model factory changed meanwhile"));
        }
        let listing = match answer {
            Err(_) => return Err(refuse("the factory call failed")),
            Ok(None) => return Err(refuse("it never created this model")),
            Ok(Some(listing)) => listing,
        };
        if !listing.confirms(model_id, factory) {
            return Err(refuse(&format!(
                "its listing shows {} {:?} with token {}",
                listing.model_id, listing.status, listing.token
            )));
        }
        if self.royalty_accounts.get(model_id).is_some() {
            return Ok(false);
        }
        self.royalty_accounts.insert(model_id, &listing.token);
        MarketplaceEvent::PolicyUpdated {
            field: format!("royalty_account.{model_id}"),
            value: listing.token.to_string(),
        }
        .emit();
        Ok(true)
    }
}

#[near]
impl Marketplace {
    /// Callback of `confirm_model`. Private. Whether the model's royalties now go to its token.
    #[private]
    pub fn on_model_confirmed(
        &mut self,
        model_id: ModelId,
        factory: AccountId,
        #[callback_result] answer: Result<Option<ModelView>, PromiseError>,
    ) -> bool {
        match self.confirm_from_listing(&model_id, &factory, answer) {
            Ok(recorded) => {
                if !recorded {
                    env::log_str(&format!(
                        "model {model_id} keeps the royalty account governance set"
                    ));
                }
                true
            }
            Err(e) => {
                env::log_str(&format!("model {model_id} not confirmed: {e}"));
                false
            }
        }
    }
}

#[near]
impl ModelRoyaltyApi for Marketplace {
    fn confirm_model(&mut self, model_id: ModelId) -> Promise {
        use enclave_cloud_common::OrPanic;
        require_no_deposit().or_panic();
        let factory = self
            .config
            .model_factory
            .clone()
            .ok_or(MarketplaceError::NoModelFactory)
            .or_panic();
        ext_model_listing::ext(factory.clone())
            .with_static_gas(GAS_MODEL_LISTING)
            .model(model_id.clone())
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_ON_MODEL_CONFIRMED)
                    .on_model_confirmed(model_id, factory),
            )
    }
}
