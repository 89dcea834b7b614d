//! Encrypted model weights: the file format, streaming encryption and decryption in constant
//! memory, the model key (its file and its hash), and the key sealed to a node for `grant_key`.
//!
//! The model owner encrypts the weights once (`ecloud model encrypt`), publishes the ciphertext
//! and records its SHA-256 in the manifest (`weights_hash`). The keeper seals the model key to
//! each allowed node's attested x25519 key ([`seal_model_key`]) and posts it with
//! [`ModelKey::key_hash`] (`grant_key`). The worker opens the grant inside the enclave
//! ([`open_model_key`]), checks the key hash, and decrypts with a [`Decryptor`], which yields
//! only authenticated chunks and refuses at the first bad one.
//!
//! # File format (version 1)
//!
//! ```text
//! file   = header (40 bytes) || chunk_0 || ... || chunk_{n-1}
//! header = magic "ECLDWGTS" (8) || version u16 BE (1) || algorithm u16 BE (1: XChaCha20-Poly1305)
//!          || chunk_size u32 BE || plaintext_len u64 BE || file_id (16 random bytes)
//! n      = max(1, ceil(plaintext_len / chunk_size))
//! chunk_i = XChaCha20-Poly1305(key, nonce_i, aad_i, plaintext_i) (ciphertext || 16-byte tag)
//! nonce_i = file_id || i (u64 BE)
//! aad_i   = header || i (u64 BE) || final (1 byte: 1 for i = n-1, else 0)
//! ```
//!
//! Every chunk but the last carries `chunk_size` plaintext bytes; the last carries the rest
//! (possibly none) followed by the SHA-256 of the whole plaintext, so the key holder vouches
//! for the plaintext hash too. All sizes follow from the header, so the reader knows where
//! every chunk ends and how many there are:
//!
//! * tampering with a chunk, or reading it under another key, fails its tag;
//! * the header is in every chunk's AAD: changing any header byte fails chunk 0;
//! * a chunk moved to another position fails (its index is in the nonce and the AAD);
//! * a chunk taken from another file fails (the file id is random per encryption);
//! * a dropped chunk or a cut file ends before the header says it should (`Truncated`), and
//!   a non-final chunk can never pass as the final one (the final flag is in the AAD);
//! * bytes after the final chunk are refused (`TrailingData`).
//!
//! Memory: one chunk buffer (default 1 MiB) on each side, whatever the file size.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use chacha20poly1305::aead::AeadInOut as _;
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};
use enclave_cloud_common::{Hash32, ModelId, NodeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize as _, Zeroizing};

use crate::envelope::{self, EncryptionSecret, Envelope, EnvelopeContext, EnvelopeError};
use crate::keys::KeyError;

/// First bytes of an encrypted weights file.
pub const MAGIC: [u8; 8] = *b"ECLDWGTS";
/// Format version written and read by this code.
pub const FORMAT_VERSION: u16 = 1;
/// The only algorithm of version 1: XChaCha20-Poly1305.
pub const ALG_XCHACHA20_POLY1305: u16 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 40;
/// Length of each chunk's authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the plaintext SHA-256 carried in the final chunk.
pub const TRAILER_LEN: usize = 32;
/// Chunk size `ecloud model encrypt` uses.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// Largest chunk size a reader accepts (bounds its memory whatever the header says).
pub const MAX_CHUNK_SIZE: u32 = 64 << 20;
/// Domain separation of [`ModelKey::key_hash`].
pub const KEY_HASH_DOMAIN: &[u8] = b"ecloud-model-key-v1";

/// Why weights could not be encrypted or decrypted, or a key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("the file ends inside the {HEADER_LEN}-byte header")]
    ShortHeader,
    #[error("not an encrypted weights file (bad magic)")]
    BadMagic,
    #[error("unsupported encrypted weights format version {0} (expected {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    #[error("unsupported encryption algorithm {0}")]
    UnsupportedAlgorithm(u16),
    #[error("chunk size {0} is outside 1..={MAX_CHUNK_SIZE}")]
    BadChunkSize(u32),
    #[error("plaintext length {0} is too large for this chunk size")]
    TooLarge(u64),
    #[error("the input had {actual} bytes, {declared} were declared")]
    InputLength { declared: u64, actual: u64 },
    #[error("the input has more bytes than the {declared} declared")]
    InputLonger { declared: u64 },
    #[error("the file ends inside or before chunk {chunk} of {total} (truncated)")]
    Truncated { chunk: u64, total: u64 },
    #[error(
        "chunk {chunk} does not authenticate (tampered, reordered, from another file, or wrong key)"
    )]
    ChunkAuth { chunk: u64 },
    #[error("bytes follow the final chunk")]
    TrailingData,
    #[error("plaintext SHA-256 is {actual}, expected {expected}")]
    PlaintextHash { expected: Hash32, actual: Hash32 },
    #[error("ciphertext SHA-256 is {actual}, expected {expected}")]
    CiphertextHash { expected: Hash32, actual: Hash32 },
    #[error("decryption already failed; the rest of the file is not read")]
    AlreadyFailed,
    #[error("encryption failed")]
    Encrypt,
}

/// The model's symmetric key: 32 random bytes, wiped when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelKey([u8; 32]);

impl ModelKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| KeyError::Rng(e.to_string()))?;
        Ok(Self(key))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The grant's `key_hash`: SHA-256(`"ecloud-model-key-v1"` || key). A node checks the key
    /// it unseals against it; it reveals nothing about the key.
    pub fn key_hash(&self) -> Hash32 {
        let mut h = Sha256::new();
        h.update(KEY_HASH_DOMAIN);
        h.update(self.0);
        Hash32(h.finalize().into())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

impl Drop for ModelKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ModelKey {{ key_hash: {}, key: <redacted> }}",
            self.key_hash()
        )
    }
}

fn key_io(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `key` to a new file at `path` (32 raw bytes, mode 0600). An existing file is never
/// replaced: losing a model key makes its ciphertext useless.
pub fn write_new_key_file(path: &Path, key: &ModelKey) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(key_io(path))?;
    file.write_all(key.as_bytes()).map_err(key_io(path))?;
    file.sync_all().map_err(key_io(path))
}

/// Reads a model key file; refuses one that others may read (mode must be 0600 or stricter)
/// and one that is not exactly 32 bytes.
pub fn read_key_file(path: &Path) -> Result<ModelKey, KeyError> {
    let meta = fs::metadata(path).map_err(key_io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(key_io(path))?);
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
        name: path.display().to_string(),
        len: bytes.len(),
    })?;
    Ok(ModelKey(key))
}

/// The envelope context of a model key sealed to one node for one model.
pub fn model_key_context(model_id: &ModelId, node_id: NodeId) -> EnvelopeContext {
    EnvelopeContext::ModelKey {
        model_id: model_id.clone(),
        node_id,
    }
}

/// The `encrypted_key` of `grant_key`: `key` sealed (the HPKE envelope of
/// [`crate::envelope`], in its byte form) to the node's attested x25519 key, bound to the
/// model and the node.
pub fn seal_model_key(
    node_x25519_pub: &[u8; 32],
    model_id: &ModelId,
    node_id: NodeId,
    key: &ModelKey,
) -> Result<Vec<u8>, EnvelopeError> {
    envelope::seal_to(
        node_x25519_pub,
        key.as_bytes(),
        &model_key_context(model_id, node_id),
    )
    .map(|e| e.to_bytes())
}

/// Opens a grant's `encrypted_key` with the node's secret and checks it against the grant's
/// `key_hash`.
pub fn open_model_key(
    node_secret: &EncryptionSecret,
    model_id: &ModelId,
    node_id: NodeId,
    sealed: &[u8],
    key_hash: &Hash32,
) -> Result<ModelKey, EnvelopeError> {
    let envelope = Envelope::from_bytes(sealed)?;
    let plain = envelope::open(
        node_secret,
        &envelope,
        &model_key_context(model_id, node_id),
    )?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::Malformed(format!("model key of {} bytes", plain.len())))?;
    let key = ModelKey(bytes);
    if key.key_hash() != *key_hash {
        return Err(EnvelopeError::Malformed(
            "the unsealed model key does not match the grant's key_hash".into(),
        ));
    }
    Ok(key)
}

/// The header of an encrypted weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub chunk_size: u32,
    pub plaintext_len: u64,
    pub file_id: [u8; 16],
}

impl Header {
    fn new(chunk_size: u32, plaintext_len: u64, file_id: [u8; 16]) -> Result<Self, WeightsError> {
        let h = Self {
            chunk_size,
            plaintext_len,
            file_id,
        };
        h.validate()?;
        Ok(h)
    }

    fn validate(&self) -> Result<(), WeightsError> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(WeightsError::BadChunkSize(self.chunk_size));
        }
        // The ciphertext length must be representable.
        let overhead = self
            .chunk_count()
            .checked_mul(TAG_LEN as u64)
            .and_then(|t| t.checked_add((HEADER_LEN + TRAILER_LEN) as u64));
        match overhead.and_then(|o| o.checked_add(self.plaintext_len)) {
            Some(_) => Ok(()),
            None => Err(WeightsError::TooLarge(self.plaintext_len)),
        }
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[10..12].copy_from_slice(&ALG_XCHACHA20_POLY1305.to_be_bytes());
        out[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        out[16..24].copy_from_slice(&self.plaintext_len.to_be_bytes());
        out[24..40].copy_from_slice(&self.file_id);
        out
    }

    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, WeightsError> {
        if bytes[..8] != MAGIC {
            return Err(WeightsError::BadMagic);
        }
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let version = u16_at(8);
        if version != FORMAT_VERSION {
            return Err(WeightsError::UnsupportedVersion(version));
        }
        let alg = u16_at(10);
        if alg != ALG_XCHACHA20_POLY1305 {
            return Err(WeightsError::UnsupportedAlgorithm(alg));
        }
        let mut chunk_size = [0u8; 4];
        chunk_size.copy_from_slice(&bytes[12..16]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[16..24]);
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&bytes[24..40]);
        Self::new(
            u32::from_be_bytes(chunk_size),
            u64::from_be_bytes(len),
            file_id,
        )
    }

    /// Number of chunks: one at least (an empty file still has its authenticated final chunk).
    pub fn chunk_count(&self) -> u64 {
        self.plaintext_len
            .div_ceil(u64::from(self.chunk_size))
            .max(1)
    }

    /// Plaintext bytes of weights in chunk `index` (without the final chunk's trailer).
    fn weights_in(&self, index: u64) -> usize {
        let cs = u64::from(self.chunk_size);
        let before = index * cs;
        // At most chunk_size, which fits in usize (<= 64 MiB).
        (self.plaintext_len - before).min(cs) as usize
    }

    /// Total length of the encrypted file.
    pub fn ciphertext_len(&self) -> u64 {
        HEADER_LEN as u64
            + self.plaintext_len
            + TRAILER_LEN as u64
            + self.chunk_count() * TAG_LEN as u64
    }

    fn nonce(&self, index: u64) -> [u8; 24] {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(&self.file_id);
        n[16..].copy_from_slice(&index.to_be_bytes());
        n
    }
}

fn aad(header: &[u8; HEADER_LEN], index: u64, last: bool) -> [u8; HEADER_LEN + 9] {
    let mut a = [0u8; HEADER_LEN + 9];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
    a[HEADER_LEN + 8] = u8::from(last);
    a
}

/// What [`encrypt`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptSummary {
    /// SHA-256 of the weights (the plaintext).
    pub plaintext_sha256: Hash32,
    /// SHA-256 of the whole encrypted file: the manifest's `weights_hash`.
    pub ciphertext_sha256: Hash32,
    /// Plaintext bytes.
    pub bytes: u64,
    /// Encrypted file bytes.
    pub ciphertext_bytes: u64,
    pub chunk_size: u32,
    pub chunks: u64,
}

/// Reads exactly `buf.len()` bytes unless the input ends first; returns how many were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Encrypts `plaintext_len` bytes from `reader` to `writer` in chunks of `chunk_size`,
/// holding one chunk in memory. `progress` is called with the plaintext bytes done after
/// every chunk. The input must have exactly `plaintext_len` bytes (a file that changes while
/// it is read is refused).
pub fn encrypt<R: Read, W: Write>(
    mut reader: R,
    plaintext_len: u64,
    mut writer: W,
    key: &ModelKey,
    chunk_size: u32,
    mut progress: impl FnMut(u64),
) -> Result<EncryptSummary, WeightsError> {
    let mut file_id = [0u8; 16];
    getrandom::fill(&mut file_id).map_err(|_| WeightsError::Encrypt)?;
    let header = Header::new(chunk_size, plaintext_len, file_id)?;
    let header_bytes = header.to_bytes();
    let cipher = key.cipher();
    let mut plain_hash = Sha256::new();
    let mut cipher_hash = Sha256::new();
    writer.write_all(&header_bytes)?;
    cipher_hash.update(header_bytes);

    let total = header.chunk_count();
    let mut buf = Zeroizing::new(Vec::with_capacity(chunk_size as usize + TRAILER_LEN));
    let mut done = 0u64;
    for index in 0..total {
        let last = index + 1 == total;
        let want = header.weights_in(index);
        buf.clear();
        buf.resize(want, 0);
        let got = read_full(&mut reader, &mut buf)?;
        if got < want {
            return Err(WeightsError::InputLength {
                declared: plaintext_len,
                actual: done + got as u64,
            });
        }
        plain_hash.update(&buf[..]);
        done += want as u64;
        if last {
            if read_full(&mut reader, &mut [0u8; 1])? != 0 {
                return Err(WeightsError::InputLonger {
                    declared: plaintext_len,
                });
            }
            let digest: [u8; 32] = plain_hash.clone().finalize().into();
            buf.extend_from_slice(&digest);
        }
        let tag = cipher
            .encrypt_inout_detached(
                &header.nonce(index).into(),
                &aad(&header_bytes, index, last),
                buf.as_mut_slice().into(),
            )
            .map_err(|_| WeightsError::Encrypt)?;
        writer.write_all(&buf)?;
        writer.write_all(&tag)?;
        cipher_hash.update(&buf[..]);
        cipher_hash.update(tag);
        progress(done);
    }
    writer.flush()?;
    Ok(EncryptSummary {
        plaintext_sha256: Hash32(plain_hash.finalize().into()),
        ciphertext_sha256: Hash32(cipher_hash.finalize().into()),
        bytes: plaintext_len,
        ciphertext_bytes: header.ciphertext_len(),
        chunk_size,
        chunks: total,
    })
}

/// Hashes a decryption must end with, if the caller knows them (e.g. the manifest's
/// `weights_hash` as `ciphertext_sha256`). Checked before the final chunk is released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    pub ciphertext_sha256: Option<Hash32>,
    pub plaintext_sha256: Option<Hash32>,
}

/// What a complete decryption verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptSummary {
    pub plaintext_sha256: Hash32,
    pub ciphertext_sha256: Hash32,
    pub bytes: u64,
}

/// Decrypts an encrypted weights file chunk by chunk. [`Decryptor::next_chunk`] yields each
/// chunk's weights only once its tag verified, refuses at the first bad chunk (and every call
/// after it), and releases the final chunk only after checking the plaintext hash, the
/// expected hashes and that nothing follows. It also implements [`Read`] (errors become
/// `io::ErrorKind::InvalidData`). Weights are complete only once `next_chunk` returned
/// `Ok(None)` or `read` returned 0.
pub struct Decryptor<R> {
    reader: R,
    cipher: XChaCha20Poly1305,
    header: Header,
    header_bytes: [u8; HEADER_LEN],
    expected: Expected,
    next_index: u64,
    buf: Zeroizing<Vec<u8>>,
    /// Weights bytes of the current chunk in `buf`, and how many `read` has handed out.
    chunk_len: usize,
    read_pos: usize,
    plain_hash: Sha256,
    cipher_hash: Sha256,
    done: Option<DecryptSummary>,
    failed: bool,
}

impl<R: Read> Decryptor<R> {
    /// Reads and checks the header.
    pub fn new(reader: R, key: &ModelKey) -> Result<Self, WeightsError> {
        Self::with_expected(reader, key, Expected::default())
    }

    pub fn with_expected(
        mut reader: R,
        key: &ModelKey,
        expected: Expected,
    ) -> Result<Self, WeightsError> {
        let mut header_bytes = [0u8; HEADER_LEN];
        if read_full(&mut reader, &mut header_bytes)? < HEADER_LEN {
            return Err(WeightsError::ShortHeader);
        }
        let header = Header::parse(&header_bytes)?;
        let mut cipher_hash = Sha256::new();
        cipher_hash.update(header_bytes);
        Ok(Self {
            reader,
            cipher: key.cipher(),
            header,
            header_bytes,
            expected,
            next_index: 0,
            buf: Zeroizing::new(Vec::with_capacity(
                header.chunk_size as usize + TRAILER_LEN + TAG_LEN,
            )),
            chunk_len: 0,
            read_pos: 0,
            plain_hash: Sha256::new(),
            cipher_hash,
            done: None,
            failed: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The hashes, once the whole file decrypted and verified.
    pub fn summary(&self) -> Option<DecryptSummary> {
        self.done
    }

    /// The next verified chunk of weights, `Ok(None)` once the whole file verified.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, WeightsError> {
        match self.advance()? {
            Some(n) => Ok(Some(&self.buf[..n])),
            None => Ok(None),
        }
    }

    fn advance(&mut self) -> Result<Option<usize>, WeightsError> {
        if self.failed {
            return Err(WeightsError::AlreadyFailed);
        }
        if self.done.is_some() {
            return Ok(None);
        }
        let result = self.decrypt_next();
        if result.is_err() {
            self.failed = true;
            self.buf.zeroize();
            self.chunk_len = 0;
        }
        result.map(Some)
    }

    fn decrypt_next(&mut self) -> Result<usize, WeightsError> {
        let total = self.header.chunk_count();
        let index = self.next_index;
        let last = index + 1 == total;
        let weights = self.header.weights_in(index);
        let sealed = weights + if last { TRAILER_LEN } else { 0 };
        self.buf.clear();
        self.buf.resize(sealed + TAG_LEN, 0);
        if read_full(&mut self.reader, &mut self.buf)? < sealed + TAG_LEN {
            return Err(WeightsError::Truncated {
                chunk: index,
                total,
            });
        }
        self.cipher_hash.update(&self.buf[..]);
        let (body, tag) = self.buf.split_at_mut(sealed);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| WeightsError::Encrypt)?;
        self.cipher
            .decrypt_inout_detached(
                &self.header.nonce(index).into(),
                &aad(&self.header_bytes, index, last),
                body.into(),
                &(*tag).into(),
            )
            .map_err(|_| WeightsError::ChunkAuth { chunk: index })?;
        self.plain_hash.update(&self.buf[..weights]);
        self.next_index += 1;
        if last {
            self.finish(weights)?;
        }
        self.chunk_len = weights;
        self.read_pos = 0;
        Ok(weights)
    }

    /// Checks the end of the file before the final chunk is released.
    fn finish(&mut self, weights: usize) -> Result<(), WeightsError> {
        if read_full(&mut self.reader, &mut [0u8; 1])? != 0 {
            return Err(WeightsError::TrailingData);
        }
        let plaintext = Hash32(self.plain_hash.clone().finalize().into());
        let mut carried = [0u8; 32];
        carried.copy_from_slice(&self.buf[weights..weights + TRAILER_LEN]);
        if Hash32(carried) != plaintext {
            return Err(WeightsError::PlaintextHash {
                expected: Hash32(carried),
                actual: plaintext,
            });
        }
        let ciphertext = Hash32(self.cipher_hash.clone().finalize().into());
        if let Some(expected) = self.expected.ciphertext_sha256
            && expected != ciphertext
        {
            return Err(WeightsError::CiphertextHash {
                expected,
                actual: ciphertext,
            });
        }
        if let Some(expected) = self.expected.plaintext_sha256
            && expected != plaintext
        {
            return Err(WeightsError::PlaintextHash {
                expected,
                actual: plaintext,
            });
        }
        self.done = Some(DecryptSummary {
            plaintext_sha256: plaintext,
            ciphertext_sha256: ciphertext,
            bytes: self.header.plaintext_len,
        });
        Ok(())
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.read_pos == self.chunk_len {
            match self.advance() {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(0),
                Err(WeightsError::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        let n = out.len().min(self.chunk_len - self.read_pos);
        out[..n].copy_from_slice(&self.buf[self.read_pos..self.read_pos + n]);
        self.read_pos += n;
        Ok(n)
    }
}

/// Decrypts all of `reader` into `writer` (for operators' checks; the worker keeps the
/// weights in memory). Nothing is written for a chunk that does not verify, but chunks before
/// it are: delete the output on error.
pub fn decrypt<R: Read, W: Write>(
    reader: R,
    mut writer: W,
    key: &ModelKey,
    expected: Expected,
) -> Result<DecryptSummary, WeightsError> {
    let mut d = Decryptor::with_expected(reader, key, expected)?;
    while let Some(chunk) = d.next_chunk()? {
        writer.write_all(chunk)?;
    }
    writer.flush()?;
    d.summary().ok_or(WeightsError::AlreadyFailed)
}
