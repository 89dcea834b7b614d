//! `ecloud channel open | list | top-up | close | finish-close`.

use std::path::PathBuf;

use enclave_cloud_common::interfaces::marketplace::{Channel, ChannelState, OpenChannelSpec};
use enclave_cloud_common::{Asset, ChannelId, ModelId, NodeId, NodeStatus};
use near_sdk::AccountId;
use near_sdk::json_types::U128;
use serde::Serialize;

use super::state::{ChannelRecord, ChannelStore};
use crate::Error;
use crate::amount::{self, Near, asset_amount, asset_name};
use crate::chain::Chain;
use crate::output::{Align, Report, Table};

impl From<super::state::StateError> for Error {
    fn from(e: super::state::StateError) -> Self {
        Error::BadInput(format!("channel state: {e}"))
    }
}

/// The channel state files of the chain's network.
pub fn store(chain: &Chain) -> ChannelStore {
    ChannelStore::new(&chain.settings().network_keys_dir())
}

/// An amount of `asset` from the command line: NEAR (`0.5`, `0.5 NEAR`, `10yocto`) or a
/// token's smallest units.
pub fn parse_amount(asset: &Asset, text: &str, flag: &str) -> Result<u128, Error> {
    match asset {
        Asset::Near => text.parse::<Near>().map(Near::yocto),
        Asset::Ft { .. } => amount::parse_units(text),
    }
    .map_err(|e| Error::BadInput(format!("{flag}: {e}")))
}

/// Opens a channel to `node_id` for `model_id`: the channel key is generated and its state
/// written (0600) before the transaction is sent, then moved to the channel's id.
pub async fn open_channel(
    chain: &Chain,
    store: &ChannelStore,
    node_id: NodeId,
    model_id: &ModelId,
    asset: &Asset,
    deposit: u128,
) -> Result<ChannelRecord, Error> {
    let signer = chain.signer()?;
    let node = chain
        .registry()
        .get_node(node_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("node {node_id} is not in the registry")))?;
    if node.status != NodeStatus::Active {
        return Err(Error::NotReady(format!("node {node_id} is not active")));
    }
    if !node.prices.iter().any(|p| &p.model_id == model_id) {
        return Err(Error::NotFound(format!(
            "node {node_id} does not serve model '{model_id}'"
        )));
    }
    let mut record = ChannelRecord::generate(
        chain.settings().marketplace.clone(),
        node_id,
        model_id.clone(),
        asset.clone(),
    )?;
    store.save(&record)?;
    let spec = OpenChannelSpec {
        node_id,
        model_id: model_id.clone(),
        channel_key: record.public_key()?,
    };
    match chain.open_channel(&signer, spec, asset, deposit).await {
        Ok(id) => {
            store.opened(&mut record, id)?;
            Ok(record)
        }
        Err(e) => {
            store.discard_pending(&record);
            Err(e)
        }
    }
}

/// What `channel open` prints.
#[derive(Debug, Serialize)]
pub struct Opened {
    pub channel_id: ChannelId,
    pub node_id: NodeId,
    pub model_id: ModelId,
    pub asset: String,
    pub deposit: U128,
    /// The channel key's public half (`ed25519:...`), as the marketplace records it.
    pub channel_key: String,
    /// The file holding the channel key and the client state (mode 0600).
    pub state_file: PathBuf,
    #[serde(skip)]
    asset_kind: Asset,
}

impl Report for Opened {
    fn human(&self) -> String {
        format!(
            "channel {} opened to node {} for model {}: {} deposited\n  key    {}\n  state  {}\n",
            self.channel_id,
            self.node_id,
            self.model_id,
            asset_amount(&self.asset_kind, self.deposit.0, None),
            self.channel_key,
            self.state_file.display()
        )
    }
}

pub async fn open(
    chain: &Chain,
    node_id: NodeId,
    model_id: &ModelId,
    asset: &Asset,
    deposit: u128,
) -> Result<Opened, Error> {
    let store = store(chain);
    let record = open_channel(chain, &store, node_id, model_id, asset, deposit).await?;
    let channel_id = record
        .channel_id
        .ok_or_else(|| Error::Chain("opened without an id".into()))?;
    Ok(Opened {
        channel_id,
        node_id,
        model_id: model_id.clone(),
        asset: asset_name(asset),
        deposit: U128(deposit),
        channel_key: String::from(&record.public_key()?),
        state_file: store.dir().join(record.file_name()),
        asset_kind: asset.clone(),
    })
}

/// One row of `channel list`: the chain's record and the local state, when either exists.
#[derive(Debug, Serialize)]
pub struct ChannelRow {
    pub channel_id: Option<ChannelId>,
    pub node_id: NodeId,
    pub model_id: ModelId,
    pub asset: String,
    /// `open`, `closing`, `closed` (gone from the chain) or `pending` (never opened).
    pub state: &'static str,
    /// When a closing channel may be finished (ns).
    pub closing_ends_ns: Option<String>,
    pub deposit: Option<U128>,
    pub settled: Option<U128>,
    /// The newest voucher this client signed (local state; `None` without a state file).
    pub owed: Option<U128>,
    pub next_sequence: Option<u64>,
    #[serde(skip)]
    asset_kind: Asset,
}

#[derive(Debug, Serialize)]
pub struct ChannelList {
    pub account_id: AccountId,
    pub channels: Vec<ChannelRow>,
}

fn row(chain: Option<&Channel>, local: Option<&ChannelRecord>) -> Option<ChannelRow> {
    let (node_id, model_id, asset) = match (chain, local) {
        (Some(c), _) => (c.node_id, c.model_id.clone(), c.asset.clone()),
        (None, Some(l)) => (l.node_id, l.model_id.clone(), l.asset.clone()),
        (None, None) => return None,
    };
    let (state, ends) = match (chain.map(|c| c.state), local) {
        (Some(ChannelState::Open), _) => ("open", None),
        (Some(ChannelState::Closing { ends_ns, .. }), _) => ("closing", Some(ends_ns.0)),
        (None, Some(l)) if l.channel_id.is_none() => ("pending", None),
        (None, _) => ("closed", None),
    };
    Some(ChannelRow {
        channel_id: chain
            .map(|c| c.channel_id)
            .or_else(|| local.and_then(|l| l.channel_id)),
        node_id,
        model_id,
        asset: asset_name(&asset),
        state,
        closing_ends_ns: ends.map(|e| e.to_string()),
        deposit: chain.map(|c| c.deposit),
        settled: chain.map(|c| c.settled),
        owed: local.map(|l| l.owed),
        next_sequence: local.map(|l| l.next_sequence.0),
        asset_kind: asset,
    })
}

/// The user's channels on chain, joined with the local state files (closed channels whose
/// state is still on disk show as `closed`).
pub async fn list(chain: &Chain) -> Result<ChannelList, Error> {
    let user = chain.settings().signer()?.clone();
    let on_chain = chain.channels_of(&user).await?;
    let local = store(chain).all(&chain.settings().marketplace)?;
    let mut channels: Vec<ChannelRow> = on_chain
        .iter()
        .filter_map(|c| {
            let l = local.iter().find(|l| l.channel_id == Some(c.channel_id));
            row(Some(c), l)
        })
        .collect();
    for l in &local {
        let known = l
            .channel_id
            .is_some_and(|id| on_chain.iter().any(|c| c.channel_id == id));
        if !known {
            channels.extend(row(None, Some(l)));
        }
    }
    channels.sort_by_key(|r| r.channel_id.map_or(u64::MAX, |c| c.0));
    Ok(ChannelList {
        account_id: user,
        channels,
    })
}

impl Report for ChannelList {
    fn human(&self) -> String {
        if self.channels.is_empty() {
            return format!("no channels for {}\n", self.account_id);
        }
        let mut t = Table::new(&[
            ("CHANNEL", Align::Right),
            ("NODE", Align::Right),
            ("MODEL", Align::Left),
            ("STATE", Align::Left),
            ("DEPOSIT", Align::Right),
            ("SETTLED", Align::Right),
            ("OWED", Align::Right),
        ]);
        for r in &self.channels {
            let amount = |v: Option<U128>| {
                v.map(|v| asset_amount(&r.asset_kind, v.0, None))
                    .unwrap_or_default()
            };
            t.row([
                r.channel_id.map(|c| c.to_string()).unwrap_or_default(),
                r.node_id.to_string(),
                r.model_id.to_string(),
                r.state.to_owned(),
                amount(r.deposit),
                amount(r.settled),
                amount(r.owed),
            ]);
        }
        t.render("")
    }
}

/// What `top-up`, `close` and `finish-close` print.
#[derive(Debug, Serialize)]
pub struct ChannelAction {
    pub channel_id: ChannelId,
    /// `topped_up`, `closing` or `closed`.
    pub action: &'static str,
    pub amount: Option<U128>,
    /// When the challenge period ends (ns), for `closing`.
    pub ends_ns: Option<String>,
    #[serde(skip)]
    asset_kind: Asset,
}

impl Report for ChannelAction {
    fn human(&self) -> String {
        let amount = |v: U128| asset_amount(&self.asset_kind, v.0, None);
        match (self.action, self.amount, &self.ends_ns) {
            ("topped_up", Some(a), _) => {
                format!("channel {}: {} added\n", self.channel_id, amount(a))
            }
            ("closing", _, Some(ends)) => format!(
                "channel {}: closing; the node may settle until {ends} ns, then run `ecloud channel finish-close {}`\n",
                self.channel_id, self.channel_id
            ),
            (_, Some(a), _) => format!(
                "channel {} closed: {} refunded\n",
                self.channel_id,
                amount(a)
            ),
            _ => format!("channel {}: {}\n", self.channel_id, self.action),
        }
    }
}

async fn own_channel(chain: &Chain, id: ChannelId) -> Result<Channel, Error> {
    let user = chain.settings().signer()?;
    let channel = chain
        .get_channel(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("channel {id} is not open (unknown or closed)")))?;
    if &channel.user != user {
        return Err(Error::BadInput(format!(
            "channel {id} belongs to {}, not {user}",
            channel.user
        )));
    }
    Ok(channel)
}

pub async fn top_up(
    chain: &Chain,
    id: ChannelId,
    amount_text: &str,
) -> Result<ChannelAction, Error> {
    let channel = own_channel(chain, id).await?;
    let amount = parse_amount(&channel.asset, amount_text, "--amount")?;
    chain
        .top_up_channel(&chain.signer()?, &channel, amount)
        .await?;
    Ok(ChannelAction {
        channel_id: id,
        action: "topped_up",
        amount: Some(U128(amount)),
        ends_ns: None,
        asset_kind: channel.asset,
    })
}

/// `start_close`, or with `finish` (after the challenge period) `finish_close`.
pub async fn close(chain: &Chain, id: ChannelId, finish: bool) -> Result<ChannelAction, Error> {
    let channel = own_channel(chain, id).await?;
    let signer = chain.signer()?;
    if finish {
        let refund = chain.finish_close(&signer, id).await?;
        return Ok(ChannelAction {
            channel_id: id,
            action: "closed",
            amount: Some(U128(refund)),
            ends_ns: None,
            asset_kind: channel.asset,
        });
    }
    let ends = match channel.state {
        ChannelState::Closing { ends_ns, .. } => ends_ns.0,
        ChannelState::Open => chain.start_close(&signer, id).await?,
    };
    Ok(ChannelAction {
        channel_id: id,
        action: "closing",
        amount: None,
        ends_ns: Some(ends.to_string()),
        asset_kind: channel.asset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::interfaces::marketplace::{NodePrice, StorageSource};
    use near_sdk::json_types::U64;

    fn channel(id: u64, state: ChannelState) -> Channel {
        Channel {
            channel_id: ChannelId(id),
            user: "alice.test.near".parse().unwrap(),
            node_id: NodeId(1),
            operator: "op.test.near".parse().unwrap(),
            model_id: "llm".parse().unwrap(),
            channel_key: "ed25519:11111111111111111111111111111111".parse().unwrap(),
            asset: Asset::Near,
            price: NodePrice {
                input_per_million: U128(1),
                output_per_million: U128(2),
            },
            token_rate: None,
            deposit: U128(1_000),
            settled: U128(100),
            storage_deposit: near_sdk::NearToken::from_yoctonear(0),
            storage_source: StorageSource::Attached,
            challenge_period_ns: U64(10),
            opened_ns: U64(1),
            state,
        }
    }

    #[test]
    fn rows_join_the_chain_and_the_local_state() {
        let mut local = ChannelRecord::generate(
            "m.test.near".parse().unwrap(),
            NodeId(1),
            "llm".parse().unwrap(),
            Asset::Near,
        )
        .unwrap();
        let pending = row(None, Some(&local)).unwrap();
        assert_eq!(pending.state, "pending");
        local.channel_id = Some(ChannelId(5));
        local.pay(300, 1_000).unwrap();
        let open = row(Some(&channel(5, ChannelState::Open)), Some(&local)).unwrap();
        assert_eq!(
            (open.state, open.deposit, open.settled, open.owed),
            ("open", Some(U128(1_000)), Some(U128(100)), Some(U128(300)))
        );
        let closing = row(
            Some(&channel(
                5,
                ChannelState::Closing {
                    started_ns: U64(1),
                    ends_ns: U64(99),
                },
            )),
            None,
        )
        .unwrap();
        assert_eq!(closing.state, "closing");
        assert_eq!(closing.closing_ends_ns.as_deref(), Some("99"));
        assert_eq!(row(None, Some(&local)).unwrap().state, "closed");
        let list = ChannelList {
            account_id: "alice.test.near".parse().unwrap(),
            channels: vec![open, closing],
        };
        let text = list.human();
        assert!(text.starts_with("CHANNEL  NODE  MODEL  STATE"), "{text}");
        assert!(text.contains("closing"), "{text}");
    }

    #[test]
    fn amounts_follow_the_asset() {
        assert_eq!(
            parse_amount(&Asset::Near, "0.5 NEAR", "--deposit").unwrap(),
            amount::YOCTO_PER_NEAR / 2
        );
        let token = Asset::Ft {
            token: "usdt.test.near".parse().unwrap(),
        };
        assert_eq!(parse_amount(&token, "1500", "--deposit").unwrap(), 1500);
        let err = parse_amount(&token, "1.5", "--deposit").unwrap_err();
        assert!(err.to_string().contains("--deposit"), "{err}");
    }
}
