//! Typed errors: every variant names what failed, and `Display` carries the values.

/// Why an attestation bundle (or one of its parts) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// A field is missing, has the wrong length or does not decode.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// The bundle's `kind` needs a section that is absent (e.g. `tdx` for kind `tdx`).
    #[error("bundle of kind {kind} has no `{section}` section")]
    MissingSection {
        kind: &'static str,
        section: &'static str,
    },
    /// The quote is not a TDX quote (e.g. an SGX quote given to a TDX-only verifier).
    #[error("not a TDX quote: TEE type {tee_type:#x} (TDX is 0x81)")]
    NotTdx { tee_type: u32 },
    /// The TD runs with the debug attribute set: its memory is readable by the host.
    #[error("TD debug attribute is set: debug TDs are refused")]
    DebugTd,
    /// DCAP verification by dcap-qvl failed (certificate chains, CRLs, TCB info / QE identity
    /// signatures and validity windows, QE report, quote signature, TCB level match).
    #[error("TDX quote verification failed: {0}")]
    Quote(String),
    /// The quote verified but its TCB status is not accepted by the policy.
    #[error("TCB status {status} refused by policy: {reason}")]
    TcbStatusRefused { status: String, reason: String },
    /// The event log is inconsistent (bad digest length, recomputed digest differs, ...).
    #[error("event log: {0}")]
    EventLog(String),
    /// Replaying the imr=3 events does not give the quote's RTMR3.
    #[error("RTMR3 mismatch: event log replays to {computed}, quote has {quoted}")]
    Rtmr3Mismatch { computed: String, quoted: String },
    /// The policy requires a `compose-hash` event and there is none.
    #[error("no compose-hash event in the event log")]
    MissingComposeHash,
    /// `sha256(app_compose)` differs from the `compose-hash` event.
    #[error("compose hash mismatch: event has {event}, sha256(app_compose) is {computed}")]
    ComposeHashMismatch { event: String, computed: String },
    /// The quote's report_data does not commit to the bundle's keys.
    #[error("report_data mismatch: keys give {expected}, quote has {actual}")]
    ReportDataMismatch { expected: String, actual: String },
    /// A `dev` bundle while the policy has no development CA.
    #[error("dev attestation is not allowed by this policy")]
    DevNotAllowed,
    /// The dev attestation's expiry has passed.
    #[error("dev attestation expired at {expires_at} (now {now})")]
    DevExpired { expires_at: u64, now: u64 },
    /// The dev attestation is not signed by the policy's development CA.
    #[error("dev attestation signature is not valid for the development CA key")]
    DevSignature,
    /// A GPU's evidence was refused.
    #[error("GPU {index}: {error}")]
    Gpu { index: usize, error: GpuError },
    /// An NVSwitch's evidence was refused.
    #[error("NVSwitch {index}: {error}")]
    Switch { index: usize, error: GpuError },
    /// The GPUs and switches verified one by one, but do not form one protected-PCIe node.
    #[error("GPU topology: {0}")]
    Topology(GpuError),
}

/// Why one GPU's evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The SPDM request/response does not parse.
    #[error("malformed GPU report: {0}")]
    Report(String),
    /// The evidence's `nonce` field differs from the nonce in its signed request.
    #[error("GPU report nonce mismatch: the evidence claims {expected}, the report has {found}")]
    Nonce { expected: String, found: String },
    /// The signed request's nonce is not the binding nonce of this enclave, NEAR key and
    /// challenge ([`crate::gpu_binding_nonce`]): evidence made for someone else (e.g. NVIDIA's
    /// public samples) or for another challenge.
    #[error(
        "GPU nonce not bound to this enclave: expected {expected} (enclave key, NEAR key and \
         challenge), the report answers {found}"
    )]
    NotBound { expected: String, found: String },
    /// The report's signature does not verify with the leaf certificate's key.
    #[error("GPU report signature is invalid")]
    ReportSignature,
    /// A certificate of the chain does not parse (index 0 = leaf).
    #[error("GPU certificate {index} does not parse: {reason}")]
    CertParse { index: usize, reason: String },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("GPU certificate {index} signature is invalid")]
    CertSignature { index: usize },
    /// A certificate is outside its validity window.
    #[error("GPU certificate {index} is not valid at {now} (valid {not_before}..{not_after})")]
    CertValidity {
        index: usize,
        now: u64,
        not_before: u64,
        not_after: u64,
    },
    /// A certificate's issuer name is not its issuer certificate's subject.
    #[error("GPU certificate {index} issuer does not match the next certificate's subject")]
    CertIssuer { index: usize },
    /// The chain holds the same certificate twice (the pinned root counts as one of them).
    #[error("GPU certificate {index} repeats certificate {first} of the chain")]
    CertDuplicate { index: usize, first: usize },
    /// An issuing certificate is not a CA.
    #[error("GPU certificate {index} issues certificates but is not a CA")]
    CertNotCa { index: usize },
    /// The GPU's measurements or versions are off its pinned reference (golden) sets.
    #[error("golden measurements: {0}")]
    Golden(String),
    /// A reference integrity manifest (RIM) does not parse or does not verify.
    #[error("RIM: {0}")]
    Rim(String),
    /// Unsupported key or signature algorithm (NVIDIA uses ECDSA P-384 / SHA-384).
    #[error("GPU certificate {index}: unsupported algorithm ({what})")]
    Algorithm { index: usize, what: &'static str },
    /// The evidence is of a device that is not a confidential-computing GPU (an NVSwitch, a
    /// consumer chip).
    #[error("NVIDIA device {model} is not a GPU (only Hopper and Blackwell GPUs count)")]
    NotAGpu { model: String },
    /// Evidence presented as an NVSwitch is of another device (a GPU, an unknown chip).
    #[error("NVIDIA device {model} is not an NVSwitch")]
    NotASwitch { model: String },
    /// The GPUs' and switches' protected-PCIe data do not match (NVIDIA's topology check).
    #[error("{0}")]
    Topology(String),
    /// No `nvidia-gpu-evidence` event in RTMR3 carries this GPU's evidence digest.
    #[error("GPU evidence {digest} is not measured in RTMR3")]
    NotMeasured { digest: String },
    /// The chain does not end at the pinned NVIDIA Device Identity CA.
    #[error("GPU certificate chain does not reach the pinned NVIDIA Device Identity CA")]
    UntrustedRoot,
}

impl AttestationError {
    /// A stable, machine-readable name of the failure (for JSON verdicts and contract errors).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::MissingSection { .. } => "missing_section",
            Self::NotTdx { .. } => "not_tdx",
            Self::DebugTd => "debug_td",
            Self::Quote(_) => "quote_verification",
            Self::TcbStatusRefused { .. } => "tcb_status_refused",
            Self::EventLog(_) => "event_log",
            Self::Rtmr3Mismatch { .. } => "rtmr3_mismatch",
            Self::MissingComposeHash => "missing_compose_hash",
            Self::ComposeHashMismatch { .. } => "compose_hash_mismatch",
            Self::ReportDataMismatch { .. } => "report_data_mismatch",
            Self::DevNotAllowed => "dev_not_allowed",
            Self::DevExpired { .. } => "dev_expired",
            Self::DevSignature => "dev_signature",
            Self::Gpu { error, .. } | Self::Switch { error, .. } | Self::Topology(error) => {
                error.code()
            }
        }
    }
}

impl GpuError {
    /// A stable, machine-readable name of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Report(_) => "gpu_report_malformed",
            Self::Nonce { .. } => "gpu_nonce",
            Self::NotBound { .. } => "gpu_not_bound",
            Self::NotASwitch { .. } => "gpu_not_a_switch",
            Self::Topology(_) => "gpu_topology",
            Self::ReportSignature => "gpu_report_signature",
            Self::CertParse { .. } => "gpu_cert_parse",
            Self::CertSignature { .. } => "gpu_cert_signature",
            Self::CertValidity { .. } => "gpu_cert_validity",
            Self::CertIssuer { .. } => "gpu_cert_issuer",
            Self::CertDuplicate { .. } => "gpu_cert_duplicate",
            Self::CertNotCa { .. } => "gpu_cert_not_ca",
            Self::Golden(_) => "gpu_golden_measurements",
            Self::Rim(_) => "gpu_rim",
            Self::Algorithm { .. } => "gpu_algorithm",
            Self::UntrustedRoot => "gpu_untrusted_root",
            Self::NotMeasured { .. } => "gpu_not_measured",
            Self::NotAGpu { .. } => "gpu_not_a_gpu",
        }
    }
}
