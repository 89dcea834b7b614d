//! Networks and the protocol features the contracts need.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where to deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Localnet,
    Testnet,
    Mainnet,
}

impl Network {
    pub fn default_rpc_url(self) -> &'static str {
        match self {
            Network::Localnet => "http://127.0.0.1:3030",
            Network::Testnet => "https://rpc.testnet.near.org",
            Network::Mainnet => "https://rpc.mainnet.near.org",
        }
    }

    /// The `dev` attestation kind and the mintable test token are for development networks
    /// only: on mainnet a node must prove real hardware.
    pub fn is_production(self) -> bool {
        self == Network::Mainnet
    }

    /// The governance delay a deployment sets unless told otherwise: a day on mainnet, so
    /// users, operators and token holders see every critical change a day before it applies;
    /// none on development networks, where changes apply when proposed.
    pub fn default_governance_delay(self) -> Duration {
        match self {
            Network::Mainnet => Duration::from_secs(24 * 60 * 60),
            Network::Localnet | Network::Testnet => Duration::ZERO,
        }
    }

    /// The chain id neard reports for this network (localnet reports its genesis chain id,
    /// which is not checked).
    pub fn expected_chain_id(self) -> Option<&'static str> {
        match self {
            Network::Localnet => None,
            Network::Testnet => Some("testnet"),
            Network::Mainnet => Some("mainnet"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Network::Localnet => "localnet",
            Network::Testnet => "testnet",
            Network::Mainnet => "mainnet",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "localnet" => Ok(Network::Localnet),
            "testnet" => Ok(Network::Testnet),
            "mainnet" => Ok(Network::Mainnet),
            other => Err(format!(
                "unknown network {other:?}: expected localnet, testnet or mainnet"
            )),
        }
    }
}

/// Protocol features the contracts use, with the protocol version that enabled each
/// (nearcore's `ProtocolFeature::protocol_version`).
pub const REQUIRED_FEATURES: &[(&str, u32)] = &[
    ("yield/resume (marketplace agent requests)", 67),
    ("global contracts (model factory)", 77),
    ("p256_verify host function (registry: Intel TDX quotes)", 85),
];

/// The outcome of comparing a network's protocol version with [`REQUIRED_FEATURES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolCheck {
    pub protocol_version: u32,
    /// Features the network does not have yet.
    pub missing: Vec<(&'static str, u32)>,
}

impl ProtocolCheck {
    pub fn new(protocol_version: u32) -> Self {
        let missing = REQUIRED_FEATURES
            .iter()
            .copied()
            .filter(|(_, needed)| protocol_version < *needed)
            .collect();
        Self {
            protocol_version,
            missing,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.missing.is_empty()
    }

    pub fn required() -> u32 {
        REQUIRED_FEATURES
            .iter()
            .map(|(_, v)| *v)
            .max()
            .unwrap_or_default()
    }
}

impl fmt::Display for ProtocolCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(
                f,
                "protocol {} (contracts need {})",
                self.protocol_version,
                Self::required()
            );
        }
        write!(f, "protocol {} lacks ", self.protocol_version)?;
        for (i, (feature, version)) in self.missing.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{feature} (protocol {version})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_88_has_everything() {
        let check = ProtocolCheck::new(88);
        assert!(check.is_ok(), "{check}");
        assert_eq!(ProtocolCheck::required(), 85);
    }

    #[test]
    fn older_protocols_name_what_they_lack() {
        let check = ProtocolCheck::new(80);
        assert!(!check.is_ok());
        assert_eq!(check.missing.len(), 1);
        let text = check.to_string();
        assert!(text.contains("p256_verify"), "{text}");
        assert!(text.contains("protocol 85"), "{text}");
        assert_eq!(ProtocolCheck::new(70).missing.len(), 2);
    }

    #[test]
    fn network_names_round_trip() {
        for n in [Network::Localnet, Network::Testnet, Network::Mainnet] {
            assert_eq!(n.name().parse::<Network>(), Ok(n));
        }
        assert!("devnet".parse::<Network>().is_err());
        assert!(Network::Mainnet.is_production());
        assert!(!Network::Testnet.is_production());
    }
}
