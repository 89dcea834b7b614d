//! Model tokens: `ecloud model create | contribute | claim | show`.
//!
//! A model is created through the factory (`create_model`), which makes `<model>.<factory>`
//! running the model-token contract. Contributions buy tokens in its crowdfund; holders claim
//! the royalties every settled job of the model pays to the token.

use chain_client::{ChainError, NearToken};
use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::model_factory::{ModelStatus, ModelView};
use enclave_cloud_common::interfaces::model_token::{
    AssetAmount, CrowdfundConfig, CrowdfundStatus, CrowdfundView, FT_METADATA_SPEC,
    FungibleTokenMetadata, NewModel, RevenuePoolView,
};
use enclave_cloud_common::{Asset, Hash32, ModelId};
use near_sdk::AccountId;
use near_sdk::json_types::{U64, U128};
use serde::Serialize;

use crate::Error;
use crate::amount::{Near, TokenFormat, asset_amount, asset_name};
use crate::chain::Chain;
use crate::output::{Align, Report, Table};

/// `ecloud model create`.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    pub model_id: ModelId,
    pub manifest: ModelManifest,
    pub name: String,
    pub symbol: String,
    pub decimals: u8,
    pub initial_supply: Option<u128>,
    pub owner: Option<AccountId>,
    pub key_service: Option<AccountId>,
    pub crowdfund: Option<CrowdfundConfig>,
}

/// The `args` object of `create_model` (the model-token `ModelInit` without `model_id` and
/// `registry`, which the factory fills in; `owner` defaults to the caller).
pub fn init_args(a: &CreateArgs) -> NewModel {
    NewModel {
        manifest: a.manifest.clone(),
        metadata: FungibleTokenMetadata {
            spec: FT_METADATA_SPEC.to_owned(),
            name: a.name.clone(),
            symbol: a.symbol.clone(),
            icon: None,
            reference: None,
            reference_hash: None,
            decimals: a.decimals,
        },
        initial_supply: a.initial_supply.map(U128),
        owner: a.owner.clone(),
        key_service: a.key_service.clone(),
        revenue_tokens: Vec::new(),
        crowdfund: a.crowdfund.clone(),
    }
}

/// What `model create` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub model_id: ModelId,
    pub token: AccountId,
    pub owner: AccountId,
    pub deposit: U128,
    pub tx_hash: String,
    /// Whether the marketplace now sends the model's royalties to its token.
    pub royalties: Confirmed,
}

impl Report for Created {
    fn human(&self) -> String {
        format!(
            "model {} created: token contract {}, owner {}\n  deposit  {}\n  tx       {}\n{}",
            self.model_id,
            self.token,
            self.owner,
            Near(self.deposit.0),
            self.tx_hash,
            self.royalties.human()
        )
    }
}

/// What `model confirm` prints (and `model create` after creating).
#[derive(Debug, Clone, Serialize)]
pub struct Confirmed {
    pub model_id: ModelId,
    pub marketplace: AccountId,
    /// Where the marketplace sends the model's royalties now (`None`: protocol fees).
    pub royalty_account: Option<AccountId>,
    /// The marketplace's reason when it did not confirm the model.
    pub refused: Option<String>,
    pub tx_hash: Option<String>,
}

impl Report for Confirmed {
    fn human(&self) -> String {
        match (&self.royalty_account, &self.refused) {
            (Some(account), _) => format!(
                "  royalties of {} in {} go to {account}\n",
                self.model_id, self.marketplace
            ),
            (None, Some(why)) => format!(
                "  royalties of {} in {} are protocol fees: {why}\n",
                self.model_id, self.marketplace
            ),
            (None, None) => format!(
                "  royalties of {} in {} are protocol fees\n",
                self.model_id, self.marketplace
            ),
        }
    }
}

/// `model confirm`: has the marketplace ask the factory whether the model was created and, if
/// so, send its royalties to its token from now on (until then they are protocol fees).
pub async fn confirm(chain: &Chain, model: &ModelId) -> Result<Confirmed, Error> {
    let signer = chain.signer()?;
    let market = chain.marketplace();
    let mut confirmed = Confirmed {
        model_id: model.clone(),
        marketplace: market.id().clone(),
        royalty_account: None,
        refused: None,
        tx_hash: None,
    };
    if let Some(account) = market.royalty_account(model).await? {
        confirmed.royalty_account = Some(account);
        return Ok(confirmed);
    }
    let sent = crate::progress::waiting(
        &format!("confirming model {model} with the marketplace"),
        market.confirm_model(model.clone())?.send_outcome(&signer),
    )
    .await;
    let logs = match sent {
        Ok((_, outcome)) => {
            confirmed.tx_hash = Some(outcome.tx_hash.to_string());
            outcome.logs
        }
        // E.g. a marketplace without a model factory: the model exists all the same.
        Err(ChainError::ContractPanic {
            message, tx_hash, ..
        }) => {
            confirmed.tx_hash = tx_hash.map(|h| h.to_string());
            vec![message]
        }
        Err(e) => return Err(e.into()),
    };
    confirmed.royalty_account = market.royalty_account(model).await?;
    if confirmed.royalty_account.is_none() {
        confirmed.refused = Some(
            logs.into_iter()
                .next_back()
                .unwrap_or_else(|| "the marketplace did not confirm it".to_owned()),
        );
    }
    Ok(confirmed)
}

/// The hash of the encrypted weights `model`'s manifest names
/// (`ModelManifest::encrypted_weights_hash`): what its answers must be signed with. `None`:
/// plain weights, a model the factory does not list, or no factory on this chain at all. Any
/// other failure to read it is an error (callers fail closed).
pub async fn encrypted_weights_hash(
    chain: &Chain,
    model: &ModelId,
) -> Result<Option<Hash32>, Error> {
    Ok(model_manifest(chain, model)
        .await?
        .and_then(|m| m.encrypted_weights_hash()))
}

/// `model`'s manifest on the token the factory lists for it; `None` for a model the factory
/// does not list, or no factory on this chain at all. Any other failure is an error.
pub async fn model_manifest(
    chain: &Chain,
    model: &ModelId,
) -> Result<Option<ModelManifest>, Error> {
    let factory = chain.factory();
    let listing = match factory.model(model).await {
        Ok(Some(listing)) => listing,
        Ok(None) => return Ok(None),
        Err(chain_client::ChainError::UnknownAccount(id)) if &id == factory.id() => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(chain.model_token(&listing.token).manifest().await?)
}

pub(crate) async fn listing(chain: &Chain, model: &ModelId) -> Result<ModelView, Error> {
    let factory = chain.factory();
    factory.model(model).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "model '{model}' is not listed by the factory {}",
            factory.id()
        ))
    })
}

/// `ecloud model create`: pays `create_deposit(args)` (or `deposit`) to the factory.
pub async fn create(
    chain: &Chain,
    a: &CreateArgs,
    deposit: Option<Near>,
) -> Result<Created, Error> {
    let signer = chain.signer()?;
    let factory = chain.factory();
    // The owner is always named: the factory's `create_deposit` view cannot default it to the
    // caller (views have no predecessor), and the deposit must be computed for these exact
    // arguments.
    let mut args = init_args(a);
    if args.owner.is_none() {
        args.owner = Some(signer.account_id().clone());
    }
    let least = factory.create_deposit(&args).await?.as_yoctonear();
    let deposit = deposit.map_or(least, Near::yocto);
    if deposit < least {
        return Err(Error::BadInput(format!(
            "--deposit {} is less than the {} the factory needs for this model",
            Near(deposit).exact(),
            Near(least).exact()
        )));
    }
    let (created, outcome) = crate::progress::waiting(
        &format!("creating model {}", a.model_id),
        factory
            .create_model(
                a.model_id.clone(),
                &args,
                NearToken::from_yoctonear(deposit),
            )?
            .send_outcome(&signer),
    )
    .await?;
    // The callback's answer: false when creating the account or `new` failed (refunded).
    let created: bool = serde_json::from_value(created).map_err(|e| {
        Error::Chain(format!(
            "the factory's answer to create_model is not true or false: {e} (tx {})",
            outcome.tx_hash
        ))
    })?;
    if !created {
        let why = outcome
            .failed_receipts
            .iter()
            .map(|(who, e)| format!("{who}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Chain(format!(
            "the factory could not create model '{}' ({why}); the deposit was refunded (tx {})",
            a.model_id, outcome.tx_hash
        )));
    }
    let m = listing(chain, &a.model_id).await?;
    let royalties = confirm(chain, &a.model_id).await?;
    Ok(Created {
        model_id: m.model_id,
        token: m.token,
        owner: m.owner,
        deposit: U128(deposit),
        tx_hash: outcome.tx_hash.to_string(),
        royalties,
    })
}

/// What `model contribute` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Contributed {
    pub model_id: ModelId,
    pub token: AccountId,
    pub amount: U128,
    /// Tokens minted to the contributor (smallest units).
    pub tokens: U128,
    pub decimals: u8,
    pub tx_hash: String,
}

impl Report for Contributed {
    fn human(&self) -> String {
        format!(
            "contributed {} to model {}: received {} tokens of {}\n  tx  {}\n",
            Near(self.amount.0),
            self.model_id,
            units_text(self.tokens.0, self.decimals),
            self.token,
            self.tx_hash
        )
    }
}

/// `amount` smallest units with `decimals`, as a decimal number for people (rounded like every
/// amount: [`chain_client::amount`]).
pub fn units_text(amount: u128, decimals: u8) -> String {
    chain_client::amount::format_number(amount, decimals)
}

/// `ecloud model contribute`.
pub async fn contribute(
    chain: &Chain,
    model: &ModelId,
    amount: Near,
) -> Result<Contributed, Error> {
    if amount.yocto() == 0 {
        return Err(Error::BadInput("--amount must be more than zero".into()));
    }
    let signer = chain.signer()?;
    let m = listing(chain, model).await?;
    let token = chain.model_token(&m.token);
    let meta = token.ft_metadata().await?;
    let (tokens, outcome) = crate::progress::waiting(
        &format!("contributing {amount} to model {model}"),
        token
            .contribute(NearToken::from_yoctonear(amount.yocto()))?
            .send_outcome(&signer),
    )
    .await?;
    Ok(Contributed {
        model_id: model.clone(),
        token: m.token,
        amount: U128(amount.yocto()),
        tokens,
        decimals: meta.decimals,
        tx_hash: outcome.tx_hash.to_string(),
    })
}

/// What `model finalize` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Finalized {
    pub model_id: ModelId,
    pub token: AccountId,
    /// The crowdfund's status after the call, as the token reports it.
    pub status: CrowdfundStatus,
    pub tx_hash: String,
}

impl Report for Finalized {
    fn human(&self) -> String {
        format!(
            "crowdfund of model {} finalized: {}\n  tx  {}\n",
            self.model_id,
            status_text(self.status),
            self.tx_hash
        )
    }
}

/// `ecloud model finalize`: closes a crowdfund whose goal is reached or whose deadline passed
/// (anyone may). Success releases the funds (or the first milestone) to the beneficiary;
/// failure opens refunds.
pub async fn finalize(chain: &Chain, model: &ModelId) -> Result<Finalized, Error> {
    let signer = chain.signer()?;
    let m = listing(chain, model).await?;
    let (status, outcome) = crate::progress::waiting(
        &format!("finalizing the crowdfund of model {model}"),
        chain
            .model_token(&m.token)
            .finalize_crowdfund()?
            .send_outcome(&signer),
    )
    .await?;
    if let Some((who, e)) = outcome.failed_receipts.first() {
        return Err(Error::Chain(format!(
            "the release to the beneficiary failed ({who}: {e}) (tx {})",
            outcome.tx_hash
        )));
    }
    Ok(Finalized {
        model_id: model.clone(),
        token: m.token,
        status,
        tx_hash: outcome.tx_hash.to_string(),
    })
}

/// What `model claim` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Claimed {
    pub model_id: ModelId,
    pub asset: Asset,
    /// What was claimable and paid out (zero: nothing was sent).
    pub amount: U128,
    pub tx_hash: Option<String>,
    /// The token's symbol and decimals for the text output (not in the JSON).
    #[serde(skip)]
    pub token_format: Option<TokenFormat>,
}

impl Report for Claimed {
    fn human(&self) -> String {
        let amount = asset_amount(&self.asset, self.amount.0, self.token_format.as_ref());
        match &self.tx_hash {
            None => {
                let asset = match &self.asset {
                    Asset::Near => "NEAR".to_owned(),
                    Asset::Ft { token } => token.to_string(),
                };
                format!("nothing to claim from model {} in {asset}\n", self.model_id)
            }
            Some(tx) => format!(
                "claimed {amount} of model {}'s revenue\n  tx  {tx}\n",
                self.model_id
            ),
        }
    }
}

/// `ecloud model claim`: pays the caller's claimable revenue in `asset`.
pub async fn claim(chain: &Chain, model: &ModelId, asset: Asset) -> Result<Claimed, Error> {
    let signer = chain.signer()?;
    let m = listing(chain, model).await?;
    let token = chain.model_token(&m.token);
    let claimable = token.claimable(signer.account_id(), &asset).await?;
    if claimable.0 == 0 {
        return Ok(Claimed {
            model_id: model.clone(),
            asset,
            amount: U128(0),
            tx_hash: None,
            token_format: None,
        });
    }
    let (_, outcome) = crate::progress::waiting(
        &format!("claiming revenue of model {model}"),
        token.claim_revenue(asset.clone())?.send_outcome(&signer),
    )
    .await?;
    if let Some((who, e)) = outcome.failed_receipts.first() {
        return Err(Error::Chain(format!(
            "the payout failed ({who}: {e}); the amount stays claimable (tx {})",
            outcome.tx_hash
        )));
    }
    let token_format = chain.token_format(&asset).await;
    Ok(Claimed {
        model_id: model.clone(),
        asset,
        amount: claimable,
        tx_hash: Some(outcome.tx_hash.to_string()),
        token_format,
    })
}

/// What `model show` prints: the factory's listing ([`ModelView`], without the code it was
/// created with) and the token's own views.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub model_id: ModelId,
    pub token: AccountId,
    pub owner: AccountId,
    pub creator: AccountId,
    pub created_at_ns: U64,
    pub status: ModelStatus,
    pub name: String,
    pub symbol: String,
    pub decimals: u8,
    pub total_supply: U128,
    pub manifest: Option<ModelManifest>,
    pub crowdfund: Option<CrowdfundView>,
    pub revenue_pools: Vec<RevenuePoolView>,
    /// With `--account-id`: its balance and what it can claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,
    /// Symbols and decimals of the payment tokens in its pools, for the text output (not in
    /// the JSON).
    #[serde(skip)]
    pub token_formats: Vec<(Asset, TokenFormat)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    pub account_id: AccountId,
    pub balance: U128,
    pub claimable: Vec<AssetAmount>,
}

/// `ecloud model show`.
pub async fn show(chain: &Chain, model: &ModelId) -> Result<ModelReport, Error> {
    let m = listing(chain, model).await?;
    let t = chain.model_token(&m.token);
    let meta = t.ft_metadata().await?;
    let total_supply = t.ft_total_supply().await?;
    let manifest = t.manifest().await?;
    let crowdfund = t.crowdfund().await?;
    let revenue_pools = t.revenue_pools().await?;
    let holder = match chain.settings().account_id.clone() {
        None => None,
        Some(account_id) => {
            let balance = t.ft_balance_of(&account_id).await?;
            let claimable = t.claimable_all(&account_id).await?;
            Some(Holder {
                account_id,
                balance,
                claimable,
            })
        }
    };
    let mut token_formats = Vec::new();
    let assets = revenue_pools.iter().map(|p| &p.asset).chain(
        holder
            .iter()
            .flat_map(|h| h.claimable.iter().map(|c| &c.asset)),
    );
    for asset in assets {
        if token_formats.iter().any(|(a, _)| a == asset) {
            continue;
        }
        if let Some(f) = chain.token_format(asset).await {
            token_formats.push((asset.clone(), f));
        }
    }
    Ok(ModelReport {
        model_id: m.model_id,
        token: m.token,
        owner: m.owner,
        creator: m.creator,
        created_at_ns: m.created_at_ns,
        status: m.status,
        name: meta.name,
        symbol: meta.symbol,
        decimals: meta.decimals,
        total_supply,
        manifest,
        crowdfund,
        revenue_pools,
        holder,
        token_formats,
    })
}

/// `active`, `succeeded` or `failed`, as the contract writes it.
fn status_text(status: CrowdfundStatus) -> &'static str {
    match status {
        CrowdfundStatus::Active => "active",
        CrowdfundStatus::Succeeded => "succeeded",
        CrowdfundStatus::Failed => "failed",
    }
}

impl Report for ModelReport {
    fn human(&self) -> String {
        let asset_text = |asset: &Asset, amount: U128| {
            let format = self
                .token_formats
                .iter()
                .find_map(|(a, f)| (a == asset).then_some(f));
            asset_amount(asset, amount.0, format)
        };
        let mut out = format!(
            "model {} ({} {}): token {}\n  owner        {}\n  supply       {}\n",
            self.model_id,
            self.name,
            self.symbol,
            self.token,
            self.owner,
            units_text(self.total_supply.0, self.decimals)
        );
        if let Some(m) = &self.manifest {
            out.push_str(&format!(
                "  weights      {} (sha256 {})\n  licence      {}\n",
                m.encrypted_weights_uri, m.weights_hash, m.licence
            ));
        }
        if let Some(c) = &self.crowdfund {
            out.push_str(&format!(
                "  crowdfund    {}: raised {} of {} (token price {} per {})\n",
                status_text(c.status),
                Near(c.raised.0),
                Near(c.config.goal.0),
                Near(c.config.token_price.0),
                self.symbol
            ));
        }
        if !self.revenue_pools.is_empty() {
            out.push_str("  revenue\n");
            let mut t = Table::new(&[
                ("ASSET", Align::Left),
                ("DEPOSITED", Align::Right),
                ("CLAIMED", Align::Right),
            ]);
            for p in &self.revenue_pools {
                t.row([
                    asset_name(&p.asset),
                    asset_text(&p.asset, p.deposited),
                    asset_text(&p.asset, p.claimed),
                ]);
            }
            out.push_str(&t.render("    "));
        }
        if let Some(h) = &self.holder {
            out.push_str(&format!(
                "  {}: balance {}\n",
                h.account_id,
                units_text(h.balance.0, self.decimals)
            ));
            if !h.claimable.is_empty() {
                let mut t = Table::new(&[("ASSET", Align::Left), ("CLAIMABLE", Align::Right)]);
                for c in &h.claimable {
                    t.row([asset_name(&c.asset), asset_text(&c.asset, c.amount)]);
                }
                out.push_str(&t.render("    "));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::Hash32;

    fn manifest() -> ModelManifest {
        ModelManifest {
            name: "MiniLM".into(),
            weights_hash: Hash32([1; 32]),
            encrypted_weights_uri: "https://example.org/w.enc".into(),
            training_data_manifest_hash: Hash32([2; 32]),
            training_data_manifest_uri: String::new(),
            training_image_measurement: String::new(),
            allowed_enclave_measurements: vec![],
            licence: "apache-2.0".into(),
        }
    }

    #[test]
    fn init_args_match_the_model_token_init() {
        let a = CreateArgs {
            model_id: "minilm".parse().unwrap(),
            manifest: manifest(),
            name: "MiniLM revenue".into(),
            symbol: "MINI".into(),
            decimals: 18,
            initial_supply: Some(1000),
            owner: None,
            key_service: None,
            crowdfund: Some(CrowdfundConfig {
                goal: U128(5),
                token_price: U128(7),
                deadline_ns: U64(9),
                beneficiary: "trainer.test.near".parse().unwrap(),
                milestones_bps: vec![],
                approver: None,
            }),
        };
        let mut v = serde_json::to_value(init_args(&a)).unwrap();
        assert_eq!(v["metadata"]["spec"], "ft-1.0.0");
        assert_eq!(v["metadata"]["decimals"], 18);
        assert_eq!(v["initial_supply"], "1000");
        assert_eq!(v["manifest"]["weights_hash"], hex::encode([1u8; 32]));
        assert_eq!(v["crowdfund"]["goal"], "5");
        assert_eq!(v["crowdfund"]["deadline_ns"], "9");
        assert!(
            v.get("owner").is_none(),
            "the factory defaults the owner to the caller"
        );
        assert!(
            v.get("model_id").is_none(),
            "the factory fills in the model id"
        );
        // What the factory passes on (with model_id, registry and owner) is the token's init.
        v["model_id"] = "minilm".into();
        v["registry"] = "registry.test.near".into();
        v["owner"] = "alice.test.near".into();
        let init: enclave_cloud_common::interfaces::model_token::ModelInit =
            serde_json::from_value(v).unwrap();
        assert_eq!(init.crowdfund.map(|c| c.token_price), Some(U128(7)));
    }

    #[test]
    fn token_units_display() {
        assert_eq!(units_text(0, 0), "0");
        assert_eq!(units_text(1_500_000, 6), "1.5");
        assert_eq!(units_text(5, 3), "0.005");
        assert_eq!(units_text(2_000, 3), "2");
        assert_eq!(units_text(12, 0), "12");
        assert_eq!(units_text(1, 18), "<0.000001");
        assert_eq!(units_text(1_000_000 * 10u128.pow(18), 18), "1000000");
    }
}
