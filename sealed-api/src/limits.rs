//! Bounds on what a peer can make us buffer.

/// Size limits applied when opening messages from the network. Every decoder checks them
/// before allocating, so hostile input costs at most these many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest Binary HTTP request (plaintext) a gateway accepts, whole or chunked.
    pub max_request_bytes: usize,
    /// Largest Binary HTTP response a client (or the gateway, when it buffers a whole
    /// response) accepts. A stream's total length is not bounded: it is consumed chunk by
    /// chunk.
    pub max_response_bytes: usize,
    /// Largest chunk ciphertext (AEAD output) in a chunked message.
    pub max_chunk_bytes: usize,
}

/// Plaintext carried by one chunk at most (a padded frame fills it exactly).
pub const MAX_FRAME: usize = 16 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            max_chunk_bytes: MAX_FRAME + 16,
        }
    }
}
