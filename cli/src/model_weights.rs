//! Encrypted model weights: `ecloud model encrypt | decrypt` (local files, the format of
//! [`protocol::weights`]) and `ecloud model set-weights` (the manifest's `weights_hash` and
//! `encrypted_weights_uri`, through the model token's `update_manifest`).

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::{Hash32, ModelId};
use protocol::weights::{
    self, DecryptSummary, EncryptSummary, Expected, ModelKey, WeightsError, read_key_file,
    write_new_key_file,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::amount::Near;
use crate::chain::Chain;
use crate::output::Report;

/// Which model key `encrypt` uses.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// An existing key file (mode 0600).
    Existing(PathBuf),
    /// Generate a key and write it to this new file (never replacing one).
    New(PathBuf),
}

/// What `model encrypt` prints (with `--json`, the summary `model set-weights --summary`
/// reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Encrypted {
    pub weights: PathBuf,
    pub out: PathBuf,
    pub key_file: PathBuf,
    pub key_created: bool,
    /// The grants' `key_hash` for this key.
    pub key_hash: Hash32,
    #[serde(flatten)]
    pub summary: EncryptSummary,
    pub seconds: f64,
}

impl Report for Encrypted {
    fn human(&self) -> String {
        format!(
            "encrypted {} -> {}\n  plaintext sha256   {}\n  ciphertext sha256  {}  (the manifest's weights_hash)\n  bytes              {} plaintext, {} encrypted, {} chunks of {}\n  key                {}{} (key_hash {})\n  time               {:.2} s ({})\n",
            self.weights.display(),
            self.out.display(),
            self.summary.plaintext_sha256,
            self.summary.ciphertext_sha256,
            self.summary.bytes,
            self.summary.ciphertext_bytes,
            self.summary.chunks,
            mib(self.summary.chunk_size.into()),
            self.key_file.display(),
            if self.key_created { " (new)" } else { "" },
            self.key_hash,
            self.seconds,
            rate(self.summary.bytes, self.seconds),
        )
    }
}

/// What `model decrypt` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Decrypted {
    pub input: PathBuf,
    pub out: PathBuf,
    #[serde(flatten)]
    pub summary: DecryptSummary,
    pub seconds: f64,
}

impl Report for Decrypted {
    fn human(&self) -> String {
        format!(
            "decrypted and verified {} -> {}\n  plaintext sha256   {}\n  ciphertext sha256  {}\n  bytes              {}\n  time               {:.2} s ({})\n",
            self.input.display(),
            self.out.display(),
            self.summary.plaintext_sha256,
            self.summary.ciphertext_sha256,
            self.summary.bytes,
            self.seconds,
            rate(self.summary.bytes, self.seconds),
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn rate(bytes: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".into();
    }
    format!("{:.1} MB/s", bytes as f64 / 1e6 / seconds)
}

/// Progress on stderr: bytes done of the total and the rate, at most every 200 ms (one line
/// rewritten in place on a terminal, a line per update otherwise).
struct Progress {
    verb: &'static str,
    total: u64,
    start: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    fn new(verb: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Self {
            verb,
            total,
            start: now,
            last: now,
            tty: io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64) {
        let now = Instant::now();
        // A terminal line is rewritten in place five times a second; a log (not a terminal)
        // gets a line every 10 seconds, so a multi-GB file does not flood it.
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if done < self.total && now.duration_since(self.last) < every {
            return;
        }
        self.last = now;
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let line = format!(
            "{}: {} / {} ({pct:.0}%), {}",
            self.verb,
            mib(done),
            mib(self.total),
            rate(done, now.duration_since(self.start).as_secs_f64())
        );
        let mut err = io::stderr().lock();
        let _ = if self.tty {
            write!(
                err,
                "\r{line}\x1b[K{}",
                if done >= self.total { "\n" } else { "" }
            )
        } else {
            writeln!(err, "{line}")
        };
    }
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Read {
        path: path.to_owned(),
        source,
    }
}

fn key_err(path: &Path) -> impl FnOnce(protocol::keys::KeyError) -> Error + '_ {
    move |e| Error::Invalid {
        path: path.to_owned(),
        message: format!("model key: {e}"),
    }
}

/// Maps a format error on `input` to a verification failure, an i/o error to a read error.
fn weights_err(input: &Path, out: &Path, e: WeightsError) -> Error {
    match e {
        WeightsError::Io(source) => Error::Write {
            path: out.to_owned(),
            source,
        },
        WeightsError::InputLength { .. } | WeightsError::InputLonger { .. } => Error::Invalid {
            path: input.to_owned(),
            message: format!("{e} (did the file change while it was read?)"),
        },
        e => Error::Verification(format!("{}: {e}", input.display())),
    }
}

/// Writes through a temporary file next to `out`, renamed into place only on success: a
/// failed run never leaves a partial file under the final name.
fn write_atomically<T>(
    out: &Path,
    body: impl FnOnce(BufWriter<&File>) -> Result<T, Error>,
) -> Result<T, Error> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::BadInput(format!("{} is not a file name", out.display())))?;
    let tmp = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let write_err = |source| Error::Write {
        path: tmp.clone(),
        source,
    };
    let file = File::create(&tmp).map_err(write_err)?;
    let result = body(BufWriter::with_capacity(1 << 20, &file))
        .and_then(|v| file.sync_all().map_err(write_err).map(|()| v));
    match result {
        Ok(v) => {
            fs::rename(&tmp, out).map_err(|source| Error::Write {
                path: out.to_owned(),
                source,
            })?;
            Ok(v)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `ecloud model encrypt`.
pub fn encrypt(
    weights_path: &Path,
    out: &Path,
    key: &KeySource,
    chunk_size: u32,
) -> Result<Encrypted, Error> {
    let input = File::open(weights_path).map_err(read_err(weights_path))?;
    let len = input.metadata().map_err(read_err(weights_path))?.len();
    let (model_key, key_file, key_created) = match key {
        KeySource::Existing(path) => (
            read_key_file(path).map_err(key_err(path))?,
            path.clone(),
            false,
        ),
        KeySource::New(path) => {
            let k = ModelKey::generate()?;
            write_new_key_file(path, &k).map_err(key_err(path))?;
            (k, path.clone(), true)
        }
    };
    let start = Instant::now();
    let mut progress = Progress::new("encrypting", len);
    let summary = write_atomically(out, |w| {
        weights::encrypt(
            BufReader::with_capacity(1 << 20, input),
            len,
            w,
            &model_key,
            chunk_size,
            |done| progress.update(done),
        )
        .map_err(|e| weights_err(weights_path, out, e))
    })?;
    Ok(Encrypted {
        weights: weights_path.to_owned(),
        out: out.to_owned(),
        key_file,
        key_created,
        key_hash: model_key.key_hash(),
        summary,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `ecloud model decrypt`: decrypts and verifies every chunk; with `expected_ciphertext`
/// (the manifest's `weights_hash`) also the file's hash. The output appears only when all
/// of it verified.
pub fn decrypt(
    input_path: &Path,
    out: &Path,
    key_file: &Path,
    expected: Expected,
) -> Result<Decrypted, Error> {
    let key = read_key_file(key_file).map_err(key_err(key_file))?;
    let input = File::open(input_path).map_err(read_err(input_path))?;
    let start = Instant::now();
    let summary = write_atomically(out, |w| {
        let d = weights::Decryptor::with_expected(
            BufReader::with_capacity(1 << 20, input),
            &key,
            expected,
        )
        .map_err(|e| weights_err(input_path, out, e))?;
        let total = d.header().plaintext_len;
        let mut progress = Progress::new("decrypting", total);
        copy_chunks(d, w, &mut progress).map_err(|e| weights_err(input_path, out, e))
    })?;
    Ok(Decrypted {
        input: input_path.to_owned(),
        out: out.to_owned(),
        summary,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn copy_chunks(
    mut d: weights::Decryptor<BufReader<File>>,
    mut w: impl io::Write,
    progress: &mut Progress,
) -> Result<DecryptSummary, WeightsError> {
    let mut done = 0u64;
    while let Some(chunk) = d.next_chunk()? {
        w.write_all(chunk)?;
        done += chunk.len() as u64;
        progress.update(done);
    }
    w.flush()?;
    if done == 0 {
        progress.update(0);
    }
    d.summary().ok_or(WeightsError::AlreadyFailed)
}

/// The hashes `set-weights` takes from an `encrypt --json` summary.
#[derive(Debug, Clone, Deserialize)]
pub struct SummaryHashes {
    pub ciphertext_sha256: Hash32,
    pub plaintext_sha256: Hash32,
}

/// Reads the summary `model encrypt --json` printed.
pub fn read_summary(path: &Path) -> Result<SummaryHashes, Error> {
    serde_json::from_slice(&crate::read_file(path)?).map_err(|e| Error::Invalid {
        path: path.to_owned(),
        message: format!("not an `ecloud model encrypt --json` summary: {e}"),
    })
}

/// Checks an encrypted weights URI: http(s) or file.
pub fn check_uri(uri: &str) -> Result<(), Error> {
    let ok = ["https://", "http://", "file://"]
        .iter()
        .any(|p| uri.len() > p.len() && uri.starts_with(p));
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!(
            "--uri '{uri}': expected an http(s):// or file:// URI of the encrypted weights"
        )))
    }
}

/// `manifest` pointing at new encrypted weights.
pub fn with_weights(
    manifest: ModelManifest,
    uri: &str,
    ciphertext_sha256: Hash32,
) -> ModelManifest {
    ModelManifest {
        weights_hash: ciphertext_sha256,
        encrypted_weights_uri: uri.to_owned(),
        ..manifest
    }
}

/// What `model set-weights` prints.
#[derive(Debug, Clone, Serialize)]
pub struct WeightsSet {
    pub model_id: ModelId,
    pub token: near_sdk::AccountId,
    pub encrypted_weights_uri: String,
    pub weights_hash: Hash32,
    /// Not stored on chain: carried, authenticated, in the ciphertext's final chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<Hash32>,
    pub tx_hash: String,
}

impl Report for WeightsSet {
    fn human(&self) -> String {
        let mut s = format!(
            "manifest of model {} updated ({})\n  encrypted_weights_uri  {}\n  weights_hash           {}\n",
            self.model_id, self.token, self.encrypted_weights_uri, self.weights_hash
        );
        if let Some(p) = self.plaintext_sha256 {
            s += &format!("  plaintext sha256       {p} (in the ciphertext, not on chain)\n");
        }
        s + &format!("  tx                     {}\n", self.tx_hash)
    }
}

/// `ecloud model set-weights`: the model owner points the manifest at encrypted weights.
/// `deposit` pays any storage growth (the contract refunds the rest).
pub async fn set_weights(
    chain: &Chain,
    model: &ModelId,
    uri: &str,
    ciphertext_sha256: Hash32,
    plaintext_sha256: Option<Hash32>,
    deposit: Near,
) -> Result<WeightsSet, Error> {
    check_uri(uri)?;
    let signer = chain.signer()?;
    let listing = crate::models::listing(chain, model).await?;
    let token = chain.model_token(&listing.token);
    let manifest = token
        .manifest()
        .await?
        .ok_or_else(|| Error::NotFound(format!("model '{model}' has no manifest to update")))?;
    let manifest = with_weights(manifest, uri, ciphertext_sha256);
    let ((), outcome) = crate::progress::waiting(
        &format!("updating the manifest of model {model}"),
        token
            .update_manifest(
                manifest,
                chain_client::NearToken::from_yoctonear(deposit.yocto()),
            )?
            .send_outcome(&signer),
    )
    .await?;
    Ok(WeightsSet {
        model_id: model.clone(),
        token: listing.token,
        encrypted_weights_uri: uri.to_owned(),
        weights_hash: ciphertext_sha256,
        plaintext_sha256,
        tx_hash: outcome.tx_hash.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_http_or_file() {
        for ok in [
            "https://h/w.enc",
            "http://h:8080/w.enc",
            "file:///data/w.enc",
        ] {
            assert!(check_uri(ok).is_ok(), "{ok}");
        }
        for bad in ["", "https://", "s3://b/w", "/data/w.enc", "ftp://h/w"] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn with_weights_changes_only_the_weights_fields() {
        let m = ModelManifest {
            name: "n".into(),
            weights_hash: Hash32([1; 32]),
            encrypted_weights_uri: "https://old".into(),
            training_data_manifest_hash: Hash32([2; 32]),
            training_data_manifest_uri: "https://data".into(),
            training_image_measurement: "ab".into(),
            allowed_enclave_measurements: vec!["dev".into()],
            licence: "MIT".into(),
        };
        let n = with_weights(m.clone(), "file:///w.enc", Hash32([9; 32]));
        assert_eq!(n.weights_hash, Hash32([9; 32]));
        assert_eq!(n.encrypted_weights_uri, "file:///w.enc");
        let back = with_weights(n, &m.encrypted_weights_uri, m.weights_hash);
        assert_eq!(back, m);
    }
}
