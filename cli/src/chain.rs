//! The chain, through the shared `chain-client` crate: views, and function calls signed with the
//! user's near-cli credentials (`<credentials dir>/<network>/<account>.json`).

use chain_client::{Account, ChainClient, ChainError, FunctionCall, NearToken, TxOutcome};
use near_sdk::AccountId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::config::Settings;

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

/// A call to send: method, JSON arguments, NEAR attached, gas.
pub struct Call<'a, A: Serialize> {
    pub contract: &'a AccountId,
    pub method: &'a str,
    pub args: &'a A,
    /// yoctoNEAR attached.
    pub deposit: u128,
    pub tgas: u64,
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

    /// A view call with JSON arguments.
    pub async fn view<T: DeserializeOwned>(
        &self,
        contract: &AccountId,
        method: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        Ok(self.client.view(contract, method, args).await?)
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

    /// Sends one function call signed by the user and waits for its final outcome.
    pub async fn call<A: Serialize>(
        &self,
        signer: &Account,
        call: Call<'_, A>,
    ) -> Result<TxOutcome, Error> {
        let fc = FunctionCall::new(call.contract.clone(), call.method)
            .args_json(call.args)?
            .gas_tgas(call.tgas)
            .deposit(NearToken::from_yoctonear(call.deposit));
        Ok(self.client.call_outcome(signer, fc).await?)
    }
}

/// The value a call returned, decoded as JSON.
pub fn returned<T: DeserializeOwned>(outcome: &TxOutcome) -> Result<T, Error> {
    Ok(outcome.json()?)
}
