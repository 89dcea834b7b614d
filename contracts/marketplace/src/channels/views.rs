//! Channel views: anyone, free.

use near_sdk::json_types::U128;
use near_sdk::{AccountId, near};

use enclave_cloud_common::{ChannelId, NodeId};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::channels::{ChannelBook, by_node, by_user, channel_storage_cost, channels};
use crate::state::{Channel, ChannelSettings};
use crate::views::set_page;
use crate::{ChannelViewApi, Marketplace};

fn records(ids: Vec<ChannelId>) -> Vec<Channel> {
    let all = channels();
    ids.into_iter().filter_map(|id| all.get(&id)).collect()
}

#[near]
impl ChannelViewApi for Marketplace {
    fn get_channel(&self, channel_id: ChannelId) -> Option<Channel> {
        channels().get(&channel_id)
    }

    fn channels_by_user(
        &self,
        account_id: AccountId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Channel> {
        by_user()
            .get(&account_id)
            .map_or_else(Vec::new, |set| records(set_page(&set, from_index, limit)))
    }

    fn channels_by_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Channel> {
        by_node()
            .get(&node_id)
            .map_or_else(Vec::new, |set| records(set_page(&set, from_index, limit)))
    }

    fn channel_settings(&self) -> ChannelSettings {
        ChannelBook::load().settings
    }

    fn channel_storage_deposit(&self) -> U128 {
        U128(channel_storage_cost())
    }
}
