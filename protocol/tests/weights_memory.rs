//! Encryption and decryption of encrypted weights hold one chunk at a time: 16 MiB (64 chunks)
//! through both, under a counting allocator, never has more than a few chunks' worth allocated.
//! (One test in this binary: the allocator counts the whole process.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};

use protocol::weights::{Decryptor, ModelKey, encrypt};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const TOTAL: u64 = 16 << 20;
const CHUNK: u32 = 256 << 10;

/// Endless-looking weights: a byte pattern produced on demand, never stored.
struct Pattern(u64);

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for b in buf.iter_mut() {
            *b = (self.0 % 251) as u8;
            self.0 += 1;
        }
        Ok(buf.len())
    }
}

/// The ciphertext goes through a temporary file; the plaintext is never stored.
#[test]
fn sixty_four_mib_through_encrypt_and_decrypt_in_bounded_memory() {
    let key = ModelKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.enc");
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);

    let out = io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let summary = encrypt(Pattern(0).take(TOTAL), TOTAL, out, &key, CHUNK, |_| {}).unwrap();
    let enc_peak = PEAK.load(Ordering::SeqCst) - base;

    PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
    let base = LIVE.load(Ordering::SeqCst);
    let file = io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut d = Decryptor::new(file, &key).unwrap();
    let mut check = Pattern(0);
    let mut expect = vec![0u8; CHUNK as usize];
    let mut n = 0u64;
    while let Some(chunk) = d.next_chunk().unwrap() {
        check.read_exact(&mut expect[..chunk.len()]).unwrap();
        assert_eq!(chunk, &expect[..chunk.len()]);
        n += chunk.len() as u64;
    }
    let dec_peak = PEAK.load(Ordering::SeqCst) - base;
    assert_eq!(n, TOTAL);
    assert_eq!(
        d.summary().unwrap().plaintext_sha256,
        summary.plaintext_sha256
    );

    eprintln!("peak heap: encrypt {enc_peak} B, decrypt {dec_peak} B for {TOTAL} B of weights");
    // One chunk buffer plus I/O buffers; the whole file would be 64 chunks.
    let bound = 3 * CHUNK as usize;
    assert!(enc_peak < bound, "encrypt peak {enc_peak}");
    // The test's own `expect` buffer is one more chunk.
    assert!(dec_peak < bound + CHUNK as usize, "decrypt peak {dec_peak}");
}
