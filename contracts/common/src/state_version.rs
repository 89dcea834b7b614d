//! The one state-versioning scheme of the enclave-cloud contracts.
//!
//! A contract's stored root struct starts with `state_version: u16`, the number of its
//! layout. A release that changes the layout bumps the contract's `STATE_VERSION`, keeps a
//! shadow of the previous layout (a struct with the old fields) in its `upgrade` module and
//! converts it in `migrate()` (`#[init(ignore_state)]`, private, called in the deploy
//! transaction). Each contract's state-schema test pins the borsh schema of every version, so a
//! layout change without a new version and a migration fails a test.

use near_sdk::borsh::BorshDeserialize;

/// The storage key near-sdk keeps the contract's root state under.
pub const STATE_KEY: &[u8] = b"STATE";

/// The layout version at the front of a stored state (`None` if it is shorter than a tag).
pub fn stored_version(raw: &[u8]) -> Option<u16> {
    raw.get(..2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_le_bytes)
}

/// `raw` decoded as exactly one `T` (every byte used), or `None`.
pub fn decode_exact<T: BorshDeserialize>(raw: &[u8]) -> Option<T> {
    T::try_from_slice(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_little_endian_prefix() {
        assert_eq!(stored_version(&[2, 0, 9]), Some(2));
        assert_eq!(stored_version(&[1]), None);
    }

    #[test]
    fn decoding_needs_every_byte() {
        assert_eq!(decode_exact::<u16>(&[1, 0]), Some(1));
        assert_eq!(decode_exact::<u16>(&[1, 0, 0]), None);
    }
}

/// The borsh layout of a contract's stored state, pinned by a snapshot file per layout version.
#[cfg(feature = "state-schema")]
pub mod schema {
    use std::fmt::Write as _;
    use std::path::Path;

    use near_sdk::borsh::BorshSchema;
    use near_sdk::borsh::schema::BorshSchemaContainer;

    /// Set to record the snapshot of a new layout version.
    pub const UPDATE_ENV: &str = "UPDATE_STATE_SCHEMA";

    /// The layout of `T` as text: its declaration, then every type it contains, one per line
    /// (sorted, so the text only changes when the layout does).
    pub fn render<T: BorshSchema>() -> String {
        let container = BorshSchemaContainer::for_type::<T>();
        let mut out = format!("root: {}\n", container.declaration());
        for (declaration, definition) in container.definitions() {
            let _ = writeln!(out, "{declaration} = {definition:?}");
        }
        out
    }

    /// Checks that `T` (a contract's root state) still has the layout recorded for `version`
    /// in `dir/v<version>.txt`. A layout change must come with a new version (and a migration
    /// from the old layout); the new snapshot is recorded with `UPDATE_STATE_SCHEMA=1`, which
    /// never overwrites the snapshot of a version already recorded.
    pub fn check<T: BorshSchema>(dir: &Path, version: u16) -> Result<(), String> {
        let path = dir.join(format!("v{version}.txt"));
        let actual = render::<T>();
        match std::fs::read_to_string(&path) {
            Ok(recorded) if recorded == actual => Ok(()),
            Ok(recorded) => Err(format!(
                "the stored state's borsh layout differs from {} (layout version {version}).\n\
                 A layout change needs a new STATE_VERSION, a shadow of the old layout in \
                 upgrade.rs that `migrate` converts, and then `{UPDATE_ENV}=1 cargo test` to \
                 record v{}.txt.\n--- recorded\n{recorded}--- now\n{actual}",
                path.display(),
                version + 1,
            )),
            Err(_) if std::env::var_os(UPDATE_ENV).is_some() => {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                std::fs::write(&path, &actual).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!(
                "no layout snapshot {} ({e}): record it with {UPDATE_ENV}=1",
                path.display()
            )),
        }
    }
}
