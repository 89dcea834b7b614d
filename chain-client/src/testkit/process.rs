//! Child processes that log to a file and die with the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestkitError, TestkitResult, io};

/// A running child process. Dropping it kills it (SIGKILL), so a failing test leaves nothing
/// behind.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> TestkitResult<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("log file {}", log.display())))?;
        let err = file.try_clone().map_err(io("log file"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {name} ({command:?})")))?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started");
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: the process gets no chance to clean up (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns the exit code if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Fails with the log tail if the process exited.
    pub fn check_alive(&mut self) -> TestkitResult<()> {
        if self.is_running() {
            return Ok(());
        }
        Err(TestkitError::Setup(format!(
            "{} is not running; log {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail(40)
        )))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> TestkitResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(listener.local_addr().map_err(io("local address"))?.port())
}

/// Waits until `url` answers HTTP 2xx, or `process` exits, or `timeout` passes.
pub async fn wait_for_http(
    url: &str,
    process: &mut Process,
    timeout: Duration,
) -> TestkitResult<()> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(()) = http_ok(url).await {
            return Ok(());
        }
        process.check_alive()?;
        if Instant::now() > until {
            return Err(TestkitError::Setup(format!(
                "{} did not answer {url} within {timeout:?}; log:\n{}",
                process.name(),
                process.log_tail(40)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A bare HTTP/1.0 GET over a TCP socket: `Some(())` on a 2xx status line.
async fn http_ok(url: &str) -> Option<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    let line = std::str::from_utf8(&head).ok()?;
    line.split(' ').nth(1)?.starts_with('2').then_some(())
}
