//! The indexer's REST API responses (`indexer/openapi.json`): the very types the indexer
//! serialises and `ecloud` and the worker parse, so a field can never drift between them.
//! Ids, amounts and nanosecond times travel as decimal strings (like NEAR's `U64`/`U128`).
//! With the `openapi` feature every type derives utoipa's `ToSchema` for the OpenAPI document.

pub mod accounts;
pub mod channels;
pub mod explorer;
pub mod feed;
pub mod governance;
pub mod jobs;
pub mod models;
pub mod nodes;
pub mod stats;

pub use accounts::{Account, Claimable, Earning, Holding};
pub use channels::{Channel, ChannelDetail, ChannelPaid, ChannelPrice, ChannelSettlement};
pub use explorer::{
    ContractMethod, ModelGrant, Network, Operator, Point, SearchHit, SearchResult, Series, Slash,
};
pub use feed::FeedItem;
pub use governance::GovernanceChange;
pub use jobs::{Job, JobDetail, Request, RequestDetail, Settlement, Target, TimelineEntry, Usage};
pub use models::{Crowdfund, Holder, Model, ModelDetail, RevenueEntry, RevenueTotal};
pub use nodes::{Gpu, KeyGrant, Node, NodeDetail, Price, Stake, StatusChange};
pub use stats::{Stats, Status};

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_parameter`, `bad_cursor`, `not_found`,
    /// `method_not_allowed`, `overloaded` (503 with `Retry-After`: no database connection
    /// came free in time; retry later), `internal`.
    pub error: String,
    /// What was wrong, naming the parameter and the value.
    pub message: String,
}

/// One page of a listing. Pass `next_cursor` back as `cursor` for the next page; it is
/// absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` holds up to `limit + 1` items: the extra one only tells that more exist.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_cursor = if more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_limit_items_and_names_the_next_cursor() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n: &i32| n.to_string());
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Page::from_rows(vec![1, 2], 2, |n: &i32| n.to_string());
        assert_eq!(last.next_cursor, None);
        assert_eq!(
            serde_json::to_string(&last).unwrap(),
            r#"{"items":[1,2],"next_cursor":null}"#
        );
    }
}
