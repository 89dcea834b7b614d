//! The chain, through the shared `chain-client` crate: the typed clients of the deployment's
//! contracts (each method's name, gas and deposit rule come from the contract's interface),
//! and function calls signed with the user's near-cli credentials
//! (`<credentials dir>/<network>/<account>.json`).

use chain_client::contracts::{
    MarketplaceClient, ModelFactoryClient, ModelTokenClient, RegistryClient,
};
use chain_client::{Account, ChainClient, ChainError, FunctionCall, NearToken, TxOutcome};
use enclave_cloud_common::Asset;
use near_sdk::AccountId;
use near_sdk::json_types::U128;

use crate::Error;
use crate::amount::TokenFormat;
use crate::config::Settings;

/// Gas for `ft_transfer_call` to a NEP-141 token (not one of our contracts): the token's own
/// 30 Tgas plus the receiver's `ft_on_transfer` (the marketplace's job submission).
pub const FT_TRANSFER_CALL_TGAS: u64 = 100;

/// A view or a call failed: contract refusals keep the contract's own message.
impl From<ChainError> for Error {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Credentials { path, message } => Error::BadInput(format!(
                "cannot use the near-cli credentials {path}: {message}"
            )),
            ChainError::Args { method, message } => {
                Error::BadInput(format!("arguments of {method}: {message}"))
            }
            other => Error::Chain(other.to_string()),
        }
    }
}

/// The deployment's chain as one client and the settings it was made from.
pub struct Chain {
    client: ChainClient,
    settings: Settings,
}

impl Chain {
    pub fn new(settings: &Settings) -> Self {
        Self {
            client: ChainClient::new(&settings.rpc_url),
            settings: settings.clone(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The RPC client itself (views and calls the typed clients do not cover yet).
    pub fn client(&self) -> &ChainClient {
        &self.client
    }

    /// The deployment's marketplace (`--marketplace`).
    pub fn marketplace(&self) -> MarketplaceClient<'_> {
        MarketplaceClient::new(&self.client, self.settings.marketplace.clone())
    }

    /// The deployment's node registry (`--registry`).
    pub fn registry(&self) -> RegistryClient<'_> {
        RegistryClient::new(&self.client, self.settings.registry.clone())
    }

    /// The deployment's model factory (`--factory`).
    pub fn factory(&self) -> ModelFactoryClient<'_> {
        ModelFactoryClient::new(&self.client, self.settings.factory.clone())
    }

    /// A model's token contract (the `token` of its factory listing).
    pub fn model_token(&self, token: &AccountId) -> ModelTokenClient<'_> {
        ModelTokenClient::new(&self.client, token.clone())
    }

    /// How amounts of `asset` are written: a NEP-141 token's `ft_metadata` symbol and
    /// decimals (`None` for NEAR, or when the token does not answer: the text then shows its
    /// smallest units; the command does not fail over its display).
    pub async fn token_format(&self, asset: &Asset) -> Option<TokenFormat> {
        let Asset::Ft { token } = asset else {
            return None;
        };
        let m = self.model_token(token).ft_metadata().await.ok()?;
        Some(TokenFormat {
            symbol: m.symbol,
            decimals: m.decimals,
        })
    }

    /// The signer: `--account-id` with its near-cli credentials for this network.
    pub fn signer(&self) -> Result<Account, Error> {
        let account = self.settings.signer()?;
        Ok(Account::from_near_credentials(
            &self.settings.credentials_dir,
            self.settings.network.as_str(),
            account,
        )?)
    }

    /// NEP-141 `ft_transfer_call` of `amount` of `token` to `receiver` with `msg` (one yocto
    /// attached), signed by the user; waits for its final outcome.
    pub async fn ft_transfer_call(
        &self,
        signer: &Account,
        token: &AccountId,
        receiver: &AccountId,
        amount: u128,
        msg: String,
    ) -> Result<TxOutcome, Error> {
        let fc = FunctionCall::new(token.clone(), "ft_transfer_call")
            .args_json(&serde_json::json!({
                "receiver_id": receiver,
                "amount": U128(amount),
                "msg": msg,
            }))?
            .gas_tgas(FT_TRANSFER_CALL_TGAS)
            .deposit(NearToken::from_yoctonear(1));
        Ok(self.client.call_outcome(signer, fc).await?)
    }
}
