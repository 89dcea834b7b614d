//! NEP-297 events of every enclave-cloud contract, defined once.
//!
//! A log line is `EVENT_JSON:{"standard":..,"version":..,"event":..,"data":..}`. Each contract
//! family has one standard name and one version; a change to an event's shape bumps the
//! version, and [`AnyEvent::parse`] only accepts versions it knows, so the indexer never
//! misreads an event written by a newer contract. A version that only added fields (with
//! serde defaults) keeps reading the older ones (`Nep297::OLDER_VERSIONS`).

pub mod marketplace;
pub mod model;
pub mod nep141;
pub mod registry;

use near_sdk::serde::de::DeserializeOwned;
use near_sdk::serde::{Deserialize, Serialize};
use std::borrow::Cow;

pub use marketplace::MarketplaceEvent;
pub use model::ModelEvent;
pub use nep141::Nep141Event;
pub use registry::RegistryEvent;

pub use crate::governance::GovernanceEvent;

/// The prefix NEAR tooling looks for in logs.
pub const EVENT_JSON_PREFIX: &str = "EVENT_JSON:";

/// An event enum that belongs to one NEP-297 standard.
pub trait Nep297: Serialize + DeserializeOwned {
    const STANDARD: &'static str;
    const VERSION: &'static str;
    /// Earlier versions this type still reads: their events are a subset of this version's
    /// (newer fields have serde defaults).
    const OLDER_VERSIONS: &'static [&'static str] = &[];

    /// Whether a log line of `version` is read with this type.
    fn reads_version(version: &str) -> bool {
        version == Self::VERSION || Self::OLDER_VERSIONS.contains(&version)
    }

    /// The exact log line, `EVENT_JSON:{...}`.
    fn to_log_line(&self) -> String {
        let envelope = Envelope {
            standard: Cow::Borrowed(Self::STANDARD),
            version: Cow::Borrowed(Self::VERSION),
            event: self,
        };
        // Serializing plain data structs to JSON cannot fail.
        let json = serde_json::to_string(&envelope).unwrap_or_default();
        format!("{EVENT_JSON_PREFIX}{json}")
    }

    /// Writes the event to the receipt's logs. Generic, so it is only instantiated inside
    /// contracts (host builds never reference the NEAR log host function).
    fn emit(&self) {
        near_sdk::env::log_str(&self.to_log_line());
    }
}

#[derive(Serialize, Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct Envelope<'a, E> {
    standard: Cow<'a, str>,
    version: Cow<'a, str>,
    #[serde(flatten)]
    event: E,
}

#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde")]
struct Header<'a> {
    #[serde(borrow)]
    standard: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
}

/// Why a log line that claims to be an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event JSON is malformed: {0}")]
    Malformed(String),
    #[error("unknown event standard '{standard}' version '{version}'")]
    UnknownStandard { standard: String, version: String },
    #[error("event of standard '{standard}' does not match its schema: {reason}")]
    BadEvent { standard: String, reason: String },
}

/// Any event an enclave-cloud component reads.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    Registry(RegistryEvent),
    Marketplace(MarketplaceEvent),
    Model(ModelEvent),
    Nep141(Nep141Event),
    Governance(GovernanceEvent),
}

impl AnyEvent {
    /// Parses one log line. `Ok(None)`: the line is not an event (plain log).
    pub fn parse(log: &str) -> Result<Option<Self>, EventError> {
        let Some(json) = log.strip_prefix(EVENT_JSON_PREFIX) else {
            return Ok(None);
        };
        let header: Header<'_> =
            serde_json::from_str(json).map_err(|e| EventError::Malformed(e.to_string()))?;
        let event = match (header.standard.as_ref(), header.version.as_ref()) {
            (RegistryEvent::STANDARD, v) if RegistryEvent::reads_version(v) => {
                Self::Registry(body(json)?)
            }
            (MarketplaceEvent::STANDARD, v) if MarketplaceEvent::reads_version(v) => {
                Self::Marketplace(body(json)?)
            }
            (ModelEvent::STANDARD, v) if ModelEvent::reads_version(v) => Self::Model(body(json)?),
            (Nep141Event::STANDARD, v) if Nep141Event::reads_version(v) => {
                Self::Nep141(body(json)?)
            }
            (GovernanceEvent::<near_sdk::serde_json::Value>::STANDARD, v)
                if GovernanceEvent::<near_sdk::serde_json::Value>::reads_version(v) =>
            {
                Self::Governance(body(json)?)
            }
            (standard, version) => {
                return Err(EventError::UnknownStandard {
                    standard: standard.to_owned(),
                    version: version.to_owned(),
                });
            }
        };
        Ok(Some(event))
    }

    /// The log line this event is written as.
    pub fn to_log_line(&self) -> String {
        match self {
            Self::Registry(e) => e.to_log_line(),
            Self::Marketplace(e) => e.to_log_line(),
            Self::Model(e) => e.to_log_line(),
            Self::Nep141(e) => e.to_log_line(),
            Self::Governance(e) => e.to_log_line(),
        }
    }
}

fn body<E: Nep297>(json: &str) -> Result<E, EventError> {
    serde_json::from_str::<Envelope<'_, E>>(json)
        .map(|e| e.event)
        .map_err(|e| EventError::BadEvent {
            standard: E::STANDARD.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
