//! Identifiers. Numeric ids are sequential per contract and travel as JSON strings
//! (like NEAR's `U64`) so JavaScript clients never lose precision.

use near_sdk::near;
use std::fmt;
use std::str::FromStr;

/// Why a textual identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("'{0}' is not a valid number id: expected decimal digits")]
    NotANumber(String),
    #[error(
        "'{0}' is not a valid model id: use 2-32 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    BadModelId(String),
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[near(serializers = [borsh])]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            /// The id that follows this one; ids are never reused.
            pub fn next(self) -> Self {
                Self(self.0.checked_add(1).expect("id space exhausted"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse::<u64>().map(Self).map_err(|_| IdError::NotANumber(s.to_owned()))
            }
        }

        impl near_sdk::serde::Serialize for $name {
            fn serialize<S: near_sdk::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> near_sdk::serde::Deserialize<'de> for $name {
            fn deserialize<D: near_sdk::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as near_sdk::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(near_sdk::serde::de::Error::custom)
            }
        }
    };
}

numeric_id!(
    /// A node in the registry, assigned at registration.
    NodeId
);
numeric_id!(
    /// An escrowed inference job in the marketplace.
    JobId
);
numeric_id!(
    /// An agent request (a contract calling AI through yield/resume).
    RequestId
);
numeric_id!(
    /// A payment channel in the marketplace: ids are sequential and never reused.
    ChannelId
);

/// A model's id: a short slug that is also the sub-account of its token contract
/// (`<model>.<factory>`), hence the account-id friendly alphabet.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId(String);

impl ModelId {
    pub const MIN_LEN: usize = 2;
    pub const MAX_LEN: usize = 32;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_valid(s: &str) -> bool {
        (Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ModelId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if Self::is_valid(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadModelId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for ModelId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl near_sdk::serde::Serialize for ModelId {
    fn serialize<S: near_sdk::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> near_sdk::serde::Deserialize<'de> for ModelId {
    fn deserialize<D: near_sdk::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as near_sdk::serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(near_sdk::serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_travel_as_strings() {
        assert_eq!(serde_json::to_string(&JobId(42)).unwrap(), "\"42\"");
        assert_eq!(serde_json::from_str::<NodeId>("\"7\"").unwrap(), NodeId(7));
        let err = serde_json::from_str::<NodeId>("\"x7\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'x7' is not a valid number id"), "{err}");
        assert_eq!(JobId(1).next(), JobId(2));
    }

    #[test]
    fn model_ids_are_account_friendly_slugs() {
        for ok in ["llama-3-8b", "m7", "00"] {
            assert_eq!(ok.parse::<ModelId>().unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "a",
            "Llama",
            "has.dot",
            "-lead",
            "trail-",
            &"x".repeat(33),
        ] {
            assert!(bad.parse::<ModelId>().is_err(), "{bad} must be refused");
        }
        let err = serde_json::from_str::<ModelId>("\"Bad\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'Bad' is not a valid model id"), "{err}");
    }
}
