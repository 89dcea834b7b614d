//! Blocks from a directory of `<height>.json` files, each a `StreamerMessage` (or `null`).
//!
//! The final head is the highest height present, re-read on every call, so a test that
//! writes a new file simulates the chain moving on. A height below the head without a file
//! is a skipped height, exactly like neardata's `null`.

use super::{BlockSource, SourceError, decode_block};
use crate::block::StreamerMessage;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FixtureSource {
    dir: PathBuf,
}

impl FixtureSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file a block at `height` lives in.
    pub fn path_for(dir: &Path, height: u64) -> PathBuf {
        dir.join(format!("{height}.json"))
    }

    fn io_error(&self, e: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.dir.display().to_string(),
            reason: e.to_string(),
        }
    }
}

impl BlockSource for FixtureSource {
    fn describe(&self) -> String {
        format!("fixtures in {}", self.dir.display())
    }

    async fn final_head(&self) -> Result<u64, SourceError> {
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| self.io_error(e))?;
        let mut head = 0;
        while let Some(entry) = entries.next_entry().await.map_err(|e| self.io_error(e))? {
            let name = entry.file_name();
            let height = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(h) = height {
                head = head.max(h);
            }
        }
        Ok(head)
    }

    async fn block(&self, height: u64) -> Result<Option<StreamerMessage>, SourceError> {
        let path = Self::path_for(&self.dir, height);
        match tokio::fs::read(&path).await {
            Ok(bytes) => decode_block(height, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SourceError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
