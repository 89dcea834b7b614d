//! `/v1/nodes/{id}/feed` (server-sent events) and `/v1/nodes/{id}/offers` (pages): what a
//! node may take.

use serde::{Deserialize, Serialize};

use super::jobs::{Job, Request};

/// Something a node may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedItem {
    /// The item's id: pass the last one seen as `Last-Event-ID` or `after` to resume.
    pub id: String,
    /// `job` or `request`.
    pub kind: String,
    pub job: Option<Job>,
    pub request: Option<Request>,
}
