//! Progress of long waits (a transaction until its final outcome, a download) on stderr, so
//! that stdout holds only the result (`--json` stays one document). On a terminal one line
//! counts the seconds in place; otherwise (logs, CI) a line when the wait starts and one when
//! it ends, never a line per tick.

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Runs `work`, reporting on stderr `what… N s` while it runs and how long it took.
pub async fn waiting<F: Future>(what: &str, work: F) -> F::Output {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    if !tty {
        eprintln!("{what}…");
    }
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tick.tick(), if tty => {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{what}… {} s\x1b[K", start.elapsed().as_secs());
                let _ = err.flush();
            }
        }
    };
    let took = start.elapsed().as_secs_f64();
    if tty {
        eprintln!("\r{what}… done in {took:.1} s\x1b[K");
    } else {
        eprintln!("{what}: done in {took:.1} s");
    }
    out
}
