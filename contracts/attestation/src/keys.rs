//! NEAR ed25519 public keys in their text form, `ed25519:<base58>`.

use crate::AttestationError;

/// Parses `ed25519:<base58 of 32 bytes>`.
pub fn parse_near_ed25519_key(s: &str) -> Result<[u8; 32], AttestationError> {
    let bad = |reason: &str| AttestationError::Malformed {
        what: "near_public_key",
        reason: format!("{reason}: '{s}'"),
    };
    let b58 = s
        .strip_prefix("ed25519:")
        .ok_or_else(|| bad("expected an ed25519:<base58> key"))?;
    let bytes = bs58::decode(b58)
        .into_vec()
        .map_err(|_| bad("invalid base58"))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| bad("an ed25519 key has 32 bytes"))
}

/// Formats 32 bytes as `ed25519:<base58>`.
pub fn format_near_ed25519_key(key: &[u8; 32]) -> String {
    format!("ed25519:{}", bs58::encode(key).into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let s = "ed25519:J992NeWhuaJXeUVJcDCVwfS5j1G26B5aJDUZ8iuBCYdc";
        let k = parse_near_ed25519_key(s).expect("valid key");
        assert_eq!(format_near_ed25519_key(&k), s);
        for bad in [
            "",
            "ed25519:",
            "secp256k1:abc",
            "ed25519:0OIl",
            "ed25519:abc",
        ] {
            assert!(parse_near_ed25519_key(bad).is_err(), "{bad}");
        }
    }
}
