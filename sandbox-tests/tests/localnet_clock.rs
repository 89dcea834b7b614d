//! localnet's chain clock: `LOCALNET_GENESIS_TIME` (read by the `init` near-workspaces runs)
//! puts the first block at that time, and the clock runs in real time from there.
//! localnet only: a real near-sandbox ignores the variable.

use sandbox_tests::localnet::sandbox_at;

/// 2026-08-13T00:00:00Z, when the registry's attestation vectors are valid.
const GENESIS_NS: u64 = 1_786_579_200_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

#[tokio::test]
async fn blocks_start_at_the_genesis_time_of_the_environment() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let worker = sandbox_at("2026-08-13T00:00:00Z").await?;
    let first = worker.view_block().await?;
    let elapsed = started.elapsed().as_nanos() as u64;
    assert!(
        first.timestamp() >= GENESIS_NS && first.timestamp() <= GENESIS_NS + elapsed + SECOND_NS,
        "block {} at {} ns, expected within {elapsed} ns after {GENESIS_NS}",
        first.height(),
        first.timestamp()
    );

    // Real time, not a jump: two seconds of wall clock move the chain about two seconds.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = worker.view_block().await?;
    let moved = later.timestamp() - first.timestamp();
    assert!(later.height() > first.height());
    assert!(
        (SECOND_NS..10 * SECOND_NS).contains(&moved),
        "the clock moved {moved} ns in 2 s of wall clock"
    );
    Ok(())
}
