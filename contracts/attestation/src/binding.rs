//! Key binding: the quote's `report_data` commits to the enclave key and the NEAR key that
//! signs the registration, in the layout NEAR's MPC nodes use (near/mpc `ReportDataV1`):
//! `version (u16 BE = 1) || SHA3-384(enclave_key || near_key) || zero padding` (64 bytes).

use sha3::{Digest, Sha3_384};

use crate::AttestationError;
use crate::hexser::to_hex;

/// Version of the report_data layout.
pub const REPORT_DATA_VERSION: u16 = 1;

/// The `report_data` a quote must carry for these keys.
pub fn report_data_for(enclave_key: &[u8; 32], near_key: &[u8; 32]) -> [u8; 64] {
    let mut h = Sha3_384::new();
    h.update(enclave_key);
    h.update(near_key);
    let digest = h.finalize();
    let mut out = [0u8; 64];
    out[..2].copy_from_slice(&REPORT_DATA_VERSION.to_be_bytes());
    out[2..50].copy_from_slice(&digest);
    out
}

/// Checks that `report_data` binds the two keys.
pub fn check_report_data(
    report_data: &[u8; 64],
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
) -> Result<(), AttestationError> {
    let expected = report_data_for(enclave_key, near_key);
    if &expected == report_data {
        Ok(())
    } else {
        Err(AttestationError::ReportDataMismatch {
            expected: to_hex(&expected),
            actual: to_hex(report_data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_version_digest_padding() {
        let rd = report_data_for(&[1; 32], &[2; 32]);
        assert_eq!(&rd[..2], &[0, 1]);
        assert_eq!(&rd[50..], &[0u8; 14]);
        assert_ne!(rd, report_data_for(&[2; 32], &[1; 32]), "order matters");
        assert!(check_report_data(&rd, &[1; 32], &[2; 32]).is_ok());
        let err = check_report_data(&rd, &[1; 32], &[3; 32]).unwrap_err();
        assert!(matches!(err, AttestationError::ReportDataMismatch { .. }));
    }
}
