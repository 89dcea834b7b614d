//! Payment channels: a user deposits NEAR or an accepted token for one node and one model,
//! then pays per request off chain with vouchers (the channel key's signature over the
//! cumulative amount owed, `enclave_cloud_common::Voucher`). The node settles its newest
//! voucher whenever it likes, one transaction for any number of requests; the user can always
//! get the unsettled rest back: cooperatively (the node closes with its final voucher) or
//! unilaterally after a challenge period in which the node may still settle.
//!
//! All channel state lives under its own storage keys (appended to `StorageKey`), outside the
//! root struct, so adding channels needed no state migration.
//!
//! Money: the unsettled deposit is escrow in the channel's asset (`funds` recomputes it from
//! the records); each settlement releases the difference through the same split and payout
//! code as a job (`settlement::split`, `Marketplace::book_split`).

pub(crate) mod open;
mod settle;
mod views;

use near_sdk::collections::{LookupMap, UnorderedSet};
use near_sdk::{AccountId, borsh, env, near};

use enclave_cloud_common::{ChannelId, NodeId};

use crate::jobs::{index_insert, index_remove};
use crate::state::{Channel, ChannelSettings};
use crate::storage::bytes_cost;
use crate::storage_keys::StorageKey;

/// Storage a channel pays for, whatever its accounts' lengths: its record, its entry in the
/// live set, its entries in the user's and the node's indexes, and the headers of those
/// indexes when it is their first channel. A flat upper bound (the unit tests measure the
/// longest case: 1,142 bytes; the gas report a typical first channel: 1,001), charged at
/// opening and refunded in full at close, when all of it is removed.
pub const CHANNEL_STORAGE_BYTES: u64 = 2_000;

/// What opening a channel costs in storage, in yoctoNEAR.
pub fn channel_storage_cost() -> u128 {
    bytes_cost(CHANNEL_STORAGE_BYTES)
}

/// The channels' id counter, settings and the set of live (open or closing) channels: one
/// small record under its own key. The set's handle lives here because a legacy collection
/// keeps its length in its handle, which must be stored.
#[near(serializers = [borsh])]
pub struct ChannelBook {
    /// Never reused: closed channels are removed, their ids are not given again.
    pub next_channel_id: ChannelId,
    pub settings: ChannelSettings,
    /// Open and closing channels (what `funds` recomputes the escrow from).
    pub live: UnorderedSet<ChannelId>,
}

impl Default for ChannelBook {
    fn default() -> Self {
        Self {
            next_channel_id: ChannelId(1),
            settings: ChannelSettings::default(),
            live: UnorderedSet::new(StorageKey::LiveChannels),
        }
    }
}

fn book_key() -> Vec<u8> {
    borsh::to_vec(&StorageKey::ChannelBook).unwrap_or_default()
}

impl ChannelBook {
    /// The stored book, or the defaults before the first channel or setting. A stored book
    /// that does not decode stops the call: starting over would reuse channel ids.
    pub fn load() -> Self {
        match env::storage_read(&book_key()) {
            None => Self::default(),
            Some(raw) => borsh::from_slice(&raw)
                .unwrap_or_else(|e| env::panic_str(&format!("the channel book is corrupt: {e}"))),
        }
    }

    pub fn save(&self) {
        env::storage_write(&book_key(), &borsh::to_vec(self).unwrap_or_default());
    }
}

/// The channel records, by id.
pub fn channels() -> LookupMap<ChannelId, Channel> {
    LookupMap::new(StorageKey::Channels)
}

/// Every live channel (for `funds`: tests and audits).
pub fn live_channels() -> Vec<Channel> {
    let all = channels();
    ChannelBook::load()
        .live
        .iter()
        .filter_map(|id| all.get(&id))
        .collect()
}

fn by_user() -> LookupMap<AccountId, UnorderedSet<ChannelId>> {
    LookupMap::new(StorageKey::ChannelsByUser)
}

fn by_node() -> LookupMap<NodeId, UnorderedSet<ChannelId>> {
    LookupMap::new(StorageKey::ChannelsByNode)
}

/// Stores a new channel and its index entries.
fn insert_channel(book: &mut ChannelBook, channel: &Channel) {
    channels().insert(&channel.channel_id, channel);
    book.live.insert(&channel.channel_id);
    book.save();
    index_insert(
        &mut by_user(),
        &channel.user,
        StorageKey::UserChannels {
            account_hash: env::sha256_array(channel.user.as_bytes()),
        },
        channel.channel_id,
    );
    index_insert(
        &mut by_node(),
        &channel.node_id,
        StorageKey::NodeChannels {
            node_id: channel.node_id,
        },
        channel.channel_id,
    );
}

/// Removes a closed channel and its index entries (all the storage it was charged for).
fn remove_channel(channel: &Channel) {
    channels().remove(&channel.channel_id);
    let mut book = ChannelBook::load();
    book.live.remove(&channel.channel_id);
    book.save();
    index_remove(&mut by_user(), &channel.user, channel.channel_id);
    index_remove(&mut by_node(), &channel.node_id, channel.channel_id);
}
