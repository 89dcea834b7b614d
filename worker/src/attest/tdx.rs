//! Intel TDX through the Linux configfs-tsm interface (`/sys/kernel/config/tsm/report`,
//! kernel >= 6.7, `Documentation/ABI/testing/configfs-tsm`):
//!
//! 1. `mkdir <root>/<entry>` (configfs creates the attributes);
//! 2. check `provider` is `tdx_guest`; read `generation`;
//! 3. write the 64-byte `report_data` to `inblob`;
//! 4. read the quote from `outblob`, then `generation` again: it must be exactly one more,
//!    otherwise another process wrote `inblob` in between and the quote may bind its data.
//!
//! The quote's `report_data` is checked against ours before anything is returned. The bundle
//! adds the DCAP collateral (`QuoteCollateralV3` JSON, e.g. fetched from a PCCS by the host or
//! dstack), the dstack event log and app compose when present, and GPU evidence over a fresh
//! nonce. The root is configurable so tests run against a directory that imitates configfs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use attestation::{
    AttestationBundle, AttestationKind, BUNDLE_VERSION, EventLogEntry, QuoteCollateralV3,
    TdxEvidence,
};

use super::{AttestError, AttestationProvider};
use crate::keys::PublicKeys;

/// Where the kernel exposes TSM reports.
pub const DEFAULT_TSM_ROOT: &str = "/sys/kernel/config/tsm/report";
/// The report entry this worker creates under the root.
pub const DEFAULT_TSM_ENTRY: &str = "enclave-cloud-worker";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AttestError + '_ {
    move |source| AttestError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A configfs-tsm report entry.
#[derive(Debug, Clone)]
pub struct ConfigfsTsm {
    root: PathBuf,
    entry: String,
}

impl ConfigfsTsm {
    pub fn new(root: impl Into<PathBuf>, entry: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            entry: entry.into(),
        }
    }

    fn read_generation(dir: &Path) -> Result<u64, AttestError> {
        let path = dir.join("generation");
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        text.trim().parse().map_err(|_| AttestError::TsmAttribute {
            what: "generation",
            value: text.trim().to_owned(),
        })
    }

    /// A TDX quote whose `report_data` is `report_data`.
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        let dir = self.root.join(&self.entry);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // A previous run's entry: reusable, the generation check catches interleaving.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        let provider_path = dir.join("provider");
        let provider = fs::read_to_string(&provider_path).map_err(io_err(&provider_path))?;
        if provider.trim() != "tdx_guest" {
            return Err(AttestError::WrongTsmProvider(provider.trim().to_owned()));
        }
        let before = Self::read_generation(&dir)?;
        let inblob = dir.join("inblob");
        fs::write(&inblob, report_data).map_err(io_err(&inblob))?;
        let outblob = dir.join("outblob");
        let quote = fs::read(&outblob).map_err(io_err(&outblob))?;
        let after = Self::read_generation(&dir)?;
        if before.checked_add(1) != Some(after) {
            return Err(AttestError::TsmRace { before, after });
        }
        check_binds(&quote, report_data)?;
        Ok(quote)
    }
}

/// Refuses a quote whose `report_data` is not `report_data` (another process's, or a TEE
/// that answered something else).
pub(super) fn check_binds(quote: &[u8], report_data: &[u8; 64]) -> Result<(), AttestError> {
    let report = attestation::tdx::parse_td_report(quote).map_err(AttestError::Quote)?;
    if &report.report_data != report_data {
        return Err(AttestError::ReportDataMismatch);
    }
    Ok(())
}

/// The `tdx` bundle of `keys` with this evidence, without devices.
pub(super) fn tdx_bundle(keys: &PublicKeys, evidence: TdxEvidence) -> AttestationBundle {
    AttestationBundle {
        version: BUNDLE_VERSION,
        kind: AttestationKind::Tdx,
        enclave_key: keys.enclave_key.to_vec(),
        near_public_key: keys.near_public_key(),
        tdx: Some(evidence),
        dev: None,
        gpus: Vec::new(),
        switches: Vec::new(),
        gpu_challenge: None,
    }
}

/// Reads a JSON evidence file.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    path: &Path,
) -> Result<T, AttestError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| AttestError::Evidence {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the app compose file, if one is given.
pub(super) fn read_app_compose(path: Option<&Path>) -> Result<Option<String>, AttestError> {
    path.map(|path| fs::read_to_string(path).map_err(io_err(path)))
        .transpose()
}

/// Files with the rest of the TDX evidence.
#[derive(Debug, Clone, Default)]
pub struct TdxEvidenceFiles {
    /// dcap-qvl `QuoteCollateralV3` JSON (required by the verifier).
    pub collateral: PathBuf,
    /// dstack event log JSON (array of entries), if the CVM is a dstack one.
    pub event_log: Option<PathBuf>,
    /// The app compose text whose sha256 the `compose-hash` event carries.
    pub app_compose: Option<PathBuf>,
}

/// The TDX bundle without devices: GPUs and NVSwitches answer a registry challenge and are
/// added by [`crate::devices`].
pub struct TdxProvider {
    tsm: ConfigfsTsm,
    files: TdxEvidenceFiles,
}

impl TdxProvider {
    pub fn new(tsm: ConfigfsTsm, files: TdxEvidenceFiles) -> Self {
        Self { tsm, files }
    }
}

impl AttestationProvider for TdxProvider {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Tdx
    }

    /// configfs-tsm cannot extend RTMR3 and the event log here is a static file, so a node on
    /// this provider cannot measure, and so does not serve, encrypted weights (refused with
    /// this error rather than served unmeasured). On a dstack CVM use `--provider dstack`:
    /// the guest agent extends RTMR3 and keeps the log ([`super::dstack`]).
    fn measure(&self, event: &str, _payload: &[u8]) -> Result<(), AttestError> {
        Err(AttestError::Measure {
            event: event.to_owned(),
            reason: "configfs-tsm cannot extend RTMR3 with a logged event; on a dstack CVM \
                     attest with --provider dstack (its guest agent measures)"
                .into(),
        })
    }

    fn attest(
        &self,
        keys: &PublicKeys,
        _now_unix_secs: u64,
    ) -> Result<AttestationBundle, AttestError> {
        let quote = self.tsm.quote(&keys.report_data())?;
        let collateral: QuoteCollateralV3 = read_json("DCAP collateral", &self.files.collateral)?;
        let event_log: Vec<EventLogEntry> = match &self.files.event_log {
            Some(path) => read_json("dstack event log", path)?,
            None => Vec::new(),
        };
        let app_compose = read_app_compose(self.files.app_compose.as_deref())?;
        Ok(tdx_bundle(
            keys,
            TdxEvidence {
                quote,
                collateral,
                event_log,
                app_compose,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::EnclaveKeys;
    use std::process::Command;
    use std::thread;

    /// Offset of `report_data` in a v4 TDX quote (48-byte header + 520 bytes of TD report).
    const REPORT_DATA_OFFSET: usize = 568;

    fn vectors() -> PathBuf {
        PathBuf::from(attestation::TESTDATA_DIR)
    }

    fn real_quote() -> Vec<u8> {
        fs::read(vectors().join("intel-tdx-dcap-sample/tdx_quote")).unwrap()
    }

    fn mkfifo(path: &Path) {
        let status = Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    }

    /// Builds the quote the imitated TEE returns for the `report_data` it was given.
    type MakeQuote = Box<dyn FnOnce(&[u8]) -> Vec<u8> + Send>;

    /// The real DCAP sample quote with `report_data` patched in, then `tamper`ed.
    fn patched(tamper: fn(&mut Vec<u8>)) -> MakeQuote {
        Box::new(move |report_data| {
            let mut quote = real_quote();
            quote[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64].copy_from_slice(report_data);
            tamper(&mut quote);
            quote
        })
    }

    /// Imitates the kernel for one report: `inblob` and `outblob` are FIFOs, so the "kernel"
    /// thread sees exactly what the provider wrote and answers only after it, like configfs
    /// (which generates the quote on the read of `outblob`).
    fn fake_kernel(
        root: &Path,
        entry: &str,
        generation_step: u64,
        make_quote: MakeQuote,
    ) -> thread::JoinHandle<()> {
        let dir = root.join(entry);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("provider"), "tdx_guest\n").unwrap();
        fs::write(dir.join("generation"), "3\n").unwrap();
        mkfifo(&dir.join("inblob"));
        mkfifo(&dir.join("outblob"));
        thread::spawn(move || {
            let report_data = fs::read(dir.join("inblob")).unwrap();
            assert_eq!(report_data.len(), 64);
            let quote = make_quote(&report_data);
            fs::write(dir.join("generation"), format!("{}\n", 3 + generation_step)).unwrap();
            fs::write(dir.join("outblob"), &quote).unwrap();
        })
    }

    fn evidence_files(dir: &Path) -> TdxEvidenceFiles {
        TdxEvidenceFiles {
            collateral: vectors().join("intel-tdx-dcap-sample/tdx_quote_collateral.json"),
            event_log: None,
            app_compose: Some(dir.join("compose.json")),
        }
    }

    #[test]
    fn quote_from_configfs_binds_our_keys() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("compose.json"), "{\"services\":{}}").unwrap();
        let kernel = fake_kernel(tmp.path(), DEFAULT_TSM_ENTRY, 1, patched(|_| {}));
        let keys = EnclaveKeys::generate().unwrap().public();
        let provider = TdxProvider::new(
            ConfigfsTsm::new(tmp.path(), DEFAULT_TSM_ENTRY),
            evidence_files(tmp.path()),
        );
        let bundle = provider.attest(&keys, 0).unwrap();
        kernel.join().unwrap();
        assert_eq!(bundle.kind, AttestationKind::Tdx);
        let tdx = bundle.tdx.as_ref().unwrap();
        let report = attestation::tdx::parse_td_report(&tdx.quote).unwrap();
        attestation::check_report_data(&report.report_data, &keys.enclave_key, &keys.near_key)
            .unwrap();
        assert_eq!(tdx.app_compose.as_deref(), Some("{\"services\":{}}"));
        // The bundle survives the JSON the registry parses.
        let json = serde_json::to_vec(&bundle).unwrap();
        assert_eq!(attestation::parse_bundle(&json).unwrap(), bundle);
    }

    /// The real dstack node: its quote binds its own two keys. Given those keys, the provider
    /// produces (through the imitated configfs, with the vector's collateral, event log and
    /// compose) a bundle that the attestation library verifies at the vector's valid time.
    #[test]
    fn real_dstack_quote_makes_a_bundle_that_verifies() {
        let public_data = fs::read(vectors().join("intel-tdx-dstack-node/public_data.json"));
        let reference = attestation::bundle_from_dstack_public_data(&public_data.unwrap()).unwrap();
        let tdx = reference.tdx.clone().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let files = TdxEvidenceFiles {
            collateral: tmp.path().join("collateral.json"),
            event_log: Some(tmp.path().join("event_log.json")),
            app_compose: Some(tmp.path().join("app_compose.json")),
        };
        fs::write(
            &files.collateral,
            serde_json::to_vec(&tdx.collateral).unwrap(),
        )
        .unwrap();
        fs::write(
            files.event_log.as_ref().unwrap(),
            serde_json::to_vec(&tdx.event_log).unwrap(),
        )
        .unwrap();
        fs::write(
            files.app_compose.as_ref().unwrap(),
            tdx.app_compose.clone().unwrap(),
        )
        .unwrap();
        let quote = tdx.quote.clone();
        let kernel = fake_kernel(tmp.path(), "e", 1, Box::new(move |_| quote));
        let keys = PublicKeys {
            enclave_key: reference.enclave_key.as_slice().try_into().unwrap(),
            near_key: attestation::parse_near_ed25519_key(&reference.near_public_key).unwrap(),
        };
        let provider = TdxProvider::new(ConfigfsTsm::new(tmp.path(), "e"), files);
        let bundle = provider.attest(&keys, 0).unwrap();
        kernel.join().unwrap();
        assert_eq!(bundle, reference);
        let verdict = attestation::verify_bundle(
            &bundle,
            1_786_622_400, // 2026-08-13, inside the vector's collateral window
            &attestation::VerifyPolicy::default(),
            &attestation::RustCrypto,
        )
        .unwrap();
        assert_eq!(
            verdict.bound_keys.near_public_key,
            reference.near_public_key
        );
        assert_eq!(verdict.tcb_status.as_deref(), Some("UpToDate"));
    }

    #[test]
    fn concurrent_writer_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = fake_kernel(tmp.path(), "e", 2, patched(|_| {}));
        let keys = EnclaveKeys::generate().unwrap().public();
        let err = ConfigfsTsm::new(tmp.path(), "e")
            .quote(&keys.report_data())
            .unwrap_err();
        kernel.join().unwrap();
        assert!(
            matches!(
                err,
                AttestError::TsmRace {
                    before: 3,
                    after: 5
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn quote_with_other_report_data_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = fake_kernel(tmp.path(), "e", 1, patched(|q| q[REPORT_DATA_OFFSET] ^= 1));
        let keys = EnclaveKeys::generate().unwrap().public();
        let err = ConfigfsTsm::new(tmp.path(), "e")
            .quote(&keys.report_data())
            .unwrap_err();
        kernel.join().unwrap();
        assert!(matches!(err, AttestError::ReportDataMismatch), "{err}");
    }

    #[test]
    fn wrong_provider_and_missing_interface_are_typed() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = EnclaveKeys::generate().unwrap().public();
        let err = ConfigfsTsm::new(tmp.path().join("absent"), "e")
            .quote(&keys.report_data())
            .unwrap_err();
        assert!(matches!(err, AttestError::Io { .. }), "{err}");
        fs::create_dir_all(tmp.path().join("e")).unwrap();
        fs::write(tmp.path().join("e/provider"), "sev_guest\n").unwrap();
        let err = ConfigfsTsm::new(tmp.path(), "e")
            .quote(&keys.report_data())
            .unwrap_err();
        assert!(matches!(err, AttestError::WrongTsmProvider(ref p) if p == "sev_guest"));
    }
}
