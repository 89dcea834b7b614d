//! Encrypted weights throughput: encryption, and decryption (verified chunks into memory, as
//! the worker does) against a plain read of the same encrypted file, both from the page
//! cache. One run, printed as BENCH lines; compare only the ratio.
//!
//! `cargo run --profile bench -p protocol --example weights_bench` (size in MiB:
//! `ECLOUD_WEIGHTS_BENCH_MIB`, default 256).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::time::Instant;

use protocol::weights::{DEFAULT_CHUNK_SIZE, Decryptor, ModelKey, encrypt};
use sha2::{Digest as _, Sha256};

/// Weights stand-in: a byte pattern made on demand.
struct Pattern(u64);

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            *b = (self.0.wrapping_mul(2654435761) >> 13) as u8;
            self.0 += 1;
        }
        Ok(buf.len())
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Reads the whole file in 1 MiB reads, returning a checksum so the read is not optimised
/// away.
fn plain_read(path: &std::path::Path) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; DEFAULT_CHUNK_SIZE as usize];
    let mut sum = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(sum);
        }
        sum = sum.wrapping_add(u64::from(buf[n - 1]));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::var("ECLOUD_WEIGHTS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let dir = tempfile::tempdir()?;
    let enc = dir.path().join("weights.enc");
    let key = ModelKey::generate()?;

    let t = Instant::now();
    let out = BufWriter::with_capacity(1 << 20, File::create(&enc)?);
    let summary = encrypt(
        Pattern(0).take(len),
        len,
        out,
        &key,
        DEFAULT_CHUNK_SIZE,
        |_| {},
    )?;
    let encrypt_s = t.elapsed().as_secs_f64();

    // Warm the page cache, then time a plain read and a verified decryption of the same file.
    plain_read(&enc)?;
    let t = Instant::now();
    let check = plain_read(&enc)?;
    let read_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut d = Decryptor::new(BufReader::with_capacity(1 << 20, File::open(&enc)?), &key)?;
    let mut sum = 0u64;
    while let Some(chunk) = d.next_chunk()? {
        sum = sum.wrapping_add(chunk.len() as u64);
    }
    let decrypt_s = t.elapsed().as_secs_f64();
    let done = d.summary().ok_or("decryption did not complete")?;

    // What one SHA-256 pass over the file costs (decryption hashes the ciphertext and the
    // plaintext as it goes).
    let t = Instant::now();
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(&enc)?, &mut HashWriter(&mut hasher))?;
    let digest: [u8; 32] = hasher.finalize().into();
    let sha_s = t.elapsed().as_secs_f64();
    assert_eq!(digest, done.ciphertext_sha256.0);
    assert_eq!(done.plaintext_sha256, summary.plaintext_sha256);
    assert_eq!(sum, len);
    eprintln!("({mib} MiB, 1 MiB chunks, read checksum {check})");

    let cipher_len = summary.ciphertext_bytes;
    println!(
        "BENCH weights.encrypt_throughput {:.0} MB/s",
        mb_s(len, encrypt_s)
    );
    println!(
        "BENCH weights.plain_read_throughput {:.0} MB/s",
        mb_s(cipher_len, read_s)
    );
    println!(
        "BENCH weights.decrypt_throughput {:.0} MB/s",
        mb_s(cipher_len, decrypt_s)
    );
    println!(
        "BENCH weights.sha256_throughput {:.0} MB/s",
        mb_s(cipher_len, sha_s)
    );
    println!(
        "BENCH weights.decrypt_vs_plain_read {:.3} ratio",
        read_s / decrypt_s
    );
    Ok(())
}
