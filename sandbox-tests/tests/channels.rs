//! Payment channels on localnet with the real registry and a real NEP-141 token: a channel
//! opened in NEAR (the node fetched from the registry) and one in the token, vouchers settled
//! twice with the exact split paid (provider, royalty, fee), a forged voucher refused, a
//! cooperative close, and a unilateral close while the node is away (the user gets the deposit
//! minus what was settled). The funds invariant is checked after every step, and the gas of
//! open / settle / close is printed as `BENCH` lines.
//!
//! Needs the contracts built: `./scripts/build-contracts.sh` (into `$ECLOUD_WASM_DIR`).

use anyhow::ensure;
use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::marketplace::methods::{
    CHANNEL_STORAGE_DEPOSIT, CLOSE_CHANNEL, ChannelArgs, FINISH_CLOSE, GET_CHANNEL, OPEN_CHANNEL,
    OpenChannelArgs, SETTLE_CHANNEL, START_CLOSE, STORAGE_DEPOSIT, StorageDepositArgs,
    UPDATE_CONFIG, UpdateConfigArgs, VoucherArgs,
};
use enclave_cloud_common::interfaces::marketplace::{
    Channel, ChannelState, ConfigPatch, FtMessage, OpenChannelSpec,
};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::voucher::ChannelSigningKey;
use enclave_cloud_common::{Asset, ChannelId, Voucher};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{CurveType, PublicKey};
use near_workspaces::result::ExecutionFinalResult;
use near_workspaces::types::{Gas, NearToken};
use near_workspaces::{Account, AccountId};
use sandbox_tests::calls::call;
use sandbox_tests::marketplace::{
    NEAR, SEC, Suite, TOKEN_UNITS_PER_NEAR, num, ok, refused, succeeded,
};
use serde_json::{Value, json};

const FEE_BPS: u128 = 200;
const ROYALTY_BPS: u128 = 500;
/// The settle budget of the issue: whatever the number of requests a voucher covers.
const SETTLE_BUDGET_TGAS: f64 = 15.0;

/// (provider, royalty, fee) of a settled `delta`, as the marketplace splits it.
fn split(delta: u128) -> (u128, u128, u128) {
    let fee = delta * FEE_BPS / 10_000;
    let royalty = delta * ROYALTY_BPS / 10_000;
    (delta - fee - royalty, royalty, fee)
}

fn tgas(outcome: &ExecutionFinalResult) -> f64 {
    outcome.total_gas_burnt.as_gas() as f64 / 1e12
}

fn bench(name: &str, outcome: &ExecutionFinalResult) {
    println!(
        "BENCH marketplace.sandbox.{name}.gas {:.2} Tgas",
        tgas(outcome)
    );
}

fn channel_key(seed: u8) -> ChannelSigningKey {
    ChannelSigningKey::from_bytes(&[seed; 32])
}

fn public(key: &ChannelSigningKey) -> anyhow::Result<PublicKey> {
    Ok(PublicKey::from_parts(
        CurveType::ED25519,
        key.verifying_key().to_bytes().to_vec(),
    )?)
}

/// The suite's chain and the channel helpers.
struct Channels {
    s: Suite,
    key: ChannelSigningKey,
}

impl Channels {
    fn spec(&self) -> anyhow::Result<OpenChannelSpec> {
        Ok(OpenChannelSpec {
            node_id: self.s.node.id,
            model_id: sandbox_tests::marketplace::model(),
            channel_key: public(&self.key)?,
        })
    }

    fn voucher(&self, id: ChannelId, asset: &Asset, amount: u128) -> Voucher {
        Voucher {
            marketplace: self.s.market.id().clone(),
            channel_id: id,
            asset: asset.clone(),
            amount: U128(amount),
        }
    }

    fn args(&self, id: ChannelId, voucher: Voucher, key: &ChannelSigningKey) -> VoucherArgs {
        VoucherArgs {
            channel_id: id,
            signature: Base64VecU8(voucher.sign(key).to_vec()),
            voucher,
        }
    }

    async fn channel(&self, id: ChannelId) -> anyhow::Result<Option<Channel>> {
        self.s
            .view(GET_CHANNEL, &ChannelArgs { channel_id: id })
            .await
    }

    async fn storage_cost(&self) -> anyhow::Result<u128> {
        let cost: U128 = self.s.view(CHANNEL_STORAGE_DEPOSIT, &NoArgs {}).await?;
        Ok(cost.0)
    }

    /// `open_channel` in NEAR from the user.
    async fn open_near(&self, deposit: u128) -> anyhow::Result<(ChannelId, ExecutionFinalResult)> {
        let args = OpenChannelArgs {
            channel: self.spec()?,
            deposit: U128(deposit),
        };
        let attached = deposit + self.storage_cost().await?;
        let outcome = ok(call(&self.s.user, self.s.market.id(), OPEN_CHANNEL, &args)
            .deposit(NearToken::from_yoctonear(attached))
            .transact()
            .await?)?;
        let id: Option<ChannelId> = outcome.clone().json()?;
        let id = id.ok_or_else(|| anyhow::anyhow!("not opened: {:?}", outcome.logs()))?;
        Ok((id, outcome))
    }

    /// The node (its operator's account) settles or closes with `args`.
    async fn by_node(
        &self,
        method: enclave_cloud_common::interfaces::method::Method,
        args: &VoucherArgs,
    ) -> anyhow::Result<ExecutionFinalResult> {
        Ok(
            call(&self.s.node.operator, self.s.market.id(), method, args)
                .transact()
                .await?,
        )
    }

    async fn fees(&self, asset: &Asset) -> anyhow::Result<u128> {
        Ok(self.s.ledger(asset).await?.fees.0)
    }
}

/// The operator's NEAR after a settlement it signed: it received `provider` and paid for the
/// gas. The operator signs, so its balance also moves by the gas it bought and got back (a
/// real nearcore keeps a penalty on unused gas): the share is checked within what the
/// prepaid gas can cost. The split itself is checked exactly through the returned settlement,
/// the royalty account and the fee ledger, and the token channel checks the provider's share
/// exactly (token balances do not pay gas).
async fn check_operator_received(
    s: &Suite,
    before: u128,
    provider: u128,
    outcome: &ExecutionFinalResult,
) -> anyhow::Result<()> {
    let after = s.settled_near_balance(s.node.operator.id()).await?;
    let tx = outcome.outcome();
    let price = tx.tokens_burnt.as_yoctonear() / u128::from(tx.gas_burnt.as_gas().max(1));
    let gas_paid = (before + provider).saturating_sub(after);
    let most = u128::from(SETTLE_CHANNEL.gas.as_gas() + tx.gas_burnt.as_gas()) * price;
    ensure!(
        after > before && gas_paid <= most,
        "operator went from {before} to {after}: provider {provider}, gas at most {most}"
    );
    Ok(())
}

async fn user_ft_transfer_call(
    s: &Suite,
    user: &Account,
    amount: u128,
    msg: &FtMessage,
) -> anyhow::Result<ExecutionFinalResult> {
    Ok(user
        .call(s.token.id(), "ft_transfer_call")
        .args_json(json!({
            "receiver_id": s.market.id(), "amount": amount.to_string(),
            "msg": serde_json::to_string(msg)?,
        }))
        .deposit(NearToken::from_yoctonear(1))
        .gas(Gas::from_tgas(150))
        .transact()
        .await?)
}

#[tokio::test]
async fn channels_open_settle_and_close_on_localnet() -> anyhow::Result<()> {
    let s = Suite::start().await?;
    let c = Channels {
        s,
        key: channel_key(42),
    };
    let s = &c.s;
    s.check_funds("setup").await?;
    // A challenge period the test can wait out (blocks are ~1 s apart on localnet).
    let patch = UpdateConfigArgs {
        patch: ConfigPatch {
            channel_challenge_period_ns: Some(U64(20 * SEC)),
            ..ConfigPatch::default()
        },
    };
    succeeded(
        call(&s.owner, s.market.id(), UPDATE_CONFIG, &patch)
            .transact()
            .await?,
    )?;

    // ----- a NEAR channel: the node is not cached yet, the registry is asked.
    let deposit = NEAR;
    let (id, opened) = c.open_near(deposit).await?;
    bench("open_channel.registry", &opened);
    let channel = c.channel(id).await?.expect("open");
    ensure!(
        channel.deposit.0 == deposit && channel.settled.0 == 0,
        "{channel:?}"
    );
    ensure!(channel.operator == *s.node.operator.id());
    ensure!(channel.challenge_period_ns.0 == 20 * SEC);
    s.check_funds("open in NEAR").await?;

    // ----- two settlements with increasing vouchers: each pays its difference, split.
    let near = Asset::Near;
    let mut fees = 0;
    let mut settled = 0;
    for (n, amount) in [(1, NEAR / 10), (2, NEAR / 4)] {
        let operator = s.settled_near_balance(s.node.operator.id()).await?;
        let royalty = s.settled_near_balance(s.royalty.id()).await?;
        let args = c.args(id, c.voucher(id, &near, amount), &c.key);
        let outcome = ok(c.by_node(SETTLE_CHANNEL, &args).await?)?;
        let split_paid: Settlement = outcome.clone().json()?;
        let (provider, royalty_share, fee) = split(amount - settled);
        ensure!(
            (
                split_paid.provider.0,
                split_paid.royalty.0,
                split_paid.protocol_fee.0
            ) == (provider, royalty_share, fee),
            "settlement {n}: {split_paid:?}"
        );
        ensure!(
            s.settled_near_balance(s.royalty.id()).await? - royalty == royalty_share,
            "settlement {n}: royalty"
        );
        fees += fee;
        ensure!(c.fees(&near).await? == fees, "settlement {n}: fees");
        check_operator_received(s, operator, provider, &outcome).await?;
        let gas = tgas(&outcome);
        ensure!(
            gas <= SETTLE_BUDGET_TGAS,
            "settle burnt {gas:.2} Tgas, over {SETTLE_BUDGET_TGAS}"
        );
        bench(&format!("settle_channel.{n}"), &outcome);
        settled = amount;
        s.check_funds(&format!("settlement {n}")).await?;
    }

    // ----- refusals: a forged voucher, one over the deposit, one for another contract.
    let forged = c.args(id, c.voucher(id, &near, NEAR / 2), &channel_key(7));
    refused(
        c.by_node(SETTLE_CHANNEL, &forged).await?,
        "not signed by channel",
    )?;
    let over = c.args(id, c.voucher(id, &near, deposit + 1), &c.key);
    refused(c.by_node(SETTLE_CHANNEL, &over).await?, "over channel")?;
    let mut elsewhere = c.voucher(id, &near, NEAR / 2);
    elsewhere.marketplace = "market.testnet".parse()?;
    let elsewhere = c.args(id, elsewhere, &c.key);
    refused(c.by_node(SETTLE_CHANNEL, &elsewhere).await?, "not this one")?;
    let stale = c.args(id, c.voucher(id, &near, settled), &c.key);
    refused(c.by_node(SETTLE_CHANNEL, &stale).await?, "already settled")?;
    // The user cannot settle on the node's behalf.
    let good = c.args(id, c.voucher(id, &near, NEAR / 2), &c.key);
    refused(
        call(&s.user, s.market.id(), SETTLE_CHANNEL, &good)
            .transact()
            .await?,
        "only channel",
    )?;
    s.check_funds("refusals").await?;

    // ----- cooperative close with the final voucher: the rest and the storage to the user.
    let storage = c.storage_cost().await?;
    let user = s.settled_near_balance(s.user.id()).await?;
    let royalty = s.settled_near_balance(s.royalty.id()).await?;
    let last = c.args(id, c.voucher(id, &near, NEAR / 2), &c.key);
    let closed = ok(c.by_node(CLOSE_CHANNEL, &last).await?)?;
    bench("close_channel", &closed);
    let final_split: Settlement = closed.clone().json()?;
    let (_, royalty_share, fee) = split(NEAR / 2 - settled);
    ensure!(
        final_split.refund.0 == deposit - NEAR / 2,
        "{final_split:?}"
    );
    ensure!(
        s.settled_near_balance(s.user.id()).await? - user == deposit - NEAR / 2 + storage,
        "the user got the rest and the storage back"
    );
    ensure!(s.settled_near_balance(s.royalty.id()).await? - royalty == royalty_share);
    fees += fee;
    ensure!(c.fees(&near).await? == fees);
    ensure!(
        c.channel(id).await?.is_none(),
        "closed channels are removed"
    );
    s.check_funds("cooperative close").await?;

    // ----- a token channel (the node is cached now: opened in the transfer's call).
    let token = s.token_asset();
    for account in [
        s.user.id(),
        s.market.id(),
        s.royalty.id(),
        s.node.operator.id(),
    ] {
        s.register_on_token(account).await?;
    }
    succeeded(s.owner
        .call(s.token.id(), "ft_transfer")
        .args_json(json!({ "receiver_id": s.user.id(), "amount": (10 * TOKEN_UNITS_PER_NEAR).to_string() }))
        .deposit(NearToken::from_yoctonear(1))
        .transact()
        .await?)?;
    succeeded(
        call(
            &s.user,
            s.market.id(),
            STORAGE_DEPOSIT,
            &StorageDepositArgs::default(),
        )
        .deposit(NearToken::from_yoctonear(storage + NEAR / 100))
        .transact()
        .await?,
    )?;
    let units = TOKEN_UNITS_PER_NEAR;
    let opened =
        ok(user_ft_transfer_call(s, &s.user, units, &FtMessage::OpenChannel(c.spec()?)).await?)?;
    ensure!(
        num(&opened.clone().json::<Value>()?)? == units,
        "the marketplace kept the deposit"
    );
    bench("open_channel.token", &opened);
    let token_id = ChannelId(id.0 + 1);
    let channel = c.channel(token_id).await?.expect("token channel open");
    ensure!(
        channel.asset == token && channel.deposit.0 == units,
        "{channel:?}"
    );
    s.check_funds("open in the token").await?;
    let token_account: AccountId = s.token.id().clone();
    let op_tokens = s.ft_balance(&token_account, s.node.operator.id()).await?;
    let royalty_tokens = s.ft_balance(&token_account, s.royalty.id()).await?;
    let args = c.args(token_id, c.voucher(token_id, &token, units / 5), &c.key);
    let outcome = ok(c.by_node(SETTLE_CHANNEL, &args).await?)?;
    bench("settle_channel.token", &outcome);
    let (provider, royalty_share, fee) = split(units / 5);
    ensure!(s.ft_balance(&token_account, s.node.operator.id()).await? - op_tokens == provider);
    ensure!(s.ft_balance(&token_account, s.royalty.id()).await? - royalty_tokens == royalty_share);
    ensure!(c.fees(&token).await? == fee);
    s.check_funds("token settlement").await?;

    // ----- unilateral close while the node is away: deposit minus what was settled.
    let (away, _) = c.open_near(deposit).await?;
    let args = c.args(away, c.voucher(away, &near, NEAR / 10), &c.key);
    succeeded(c.by_node(SETTLE_CHANNEL, &args).await?)?;
    s.check_funds("settled before the node left").await?;
    let started = ok(call(
        &s.user,
        s.market.id(),
        START_CLOSE,
        &ChannelArgs { channel_id: away },
    )
    .transact()
    .await?)?;
    bench("start_close", &started);
    let ends: U64 = started.clone().json()?;
    ensure!(matches!(
        c.channel(away).await?.map(|c| c.state),
        Some(ChannelState::Closing { .. })
    ));
    refused(
        call(
            &s.relayer,
            s.market.id(),
            FINISH_CLOSE,
            &ChannelArgs { channel_id: away },
        )
        .transact()
        .await?,
        "challenge period ends",
    )?;
    s.check_funds("closing").await?;
    s.worker.fast_forward(30).await?;
    ensure!(s.now_ns().await? > ends.0);
    let user = s.settled_near_balance(s.user.id()).await?;
    let finished = ok(call(
        &s.relayer,
        s.market.id(),
        FINISH_CLOSE,
        &ChannelArgs { channel_id: away },
    )
    .transact()
    .await?)?;
    bench("finish_close", &finished);
    let refund: U128 = finished.clone().json()?;
    ensure!(refund.0 == deposit - NEAR / 10, "refund {}", refund.0);
    ensure!(
        s.settled_near_balance(s.user.id()).await? - user == deposit - NEAR / 10 + storage,
        "the user got the deposit minus what was settled, and the storage"
    );
    ensure!(c.channel(away).await?.is_none());
    s.check_funds("unilateral close").await?;
    Ok(())
}
