//! Reading an HTTP body from a server we do not trust without holding more than a limit in
//! memory: a node's output URI, an OCSP responder. The body is read chunk by chunk and
//! abandoned as soon as it passes the limit (a `Content-Length` is not believed).

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the answer: {0}")]
    Io(#[from] reqwest::Error),
}

/// The whole body of `response`, at most `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
