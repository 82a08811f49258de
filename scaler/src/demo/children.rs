//! The demo's child processes: each with its output in a log file, asked
//! to stop with SIGTERM (as Kubernetes does) and killed if it does not, and
//! killed when dropped, so that no path out of the demo leaves one behind.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};

/// Ports handed out are below Linux's ephemeral range (32768 and up), so
/// that the many outgoing connections of the demo's Kafka clients cannot
/// take a port between the moment it is picked and the moment a child
/// binds it; each is handed out once.
const PORTS: std::ops::Range<u16> = 20_000..32_000;
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A free TCP port on loopback, not handed out before by this process.
pub fn free_port() -> anyhow::Result<u16> {
    let span = PORTS.end - PORTS.start;
    // Start where this process's id hashes to, so that concurrent demos
    // (tests, whose ids are often consecutive) look in different places.
    let _ = NEXT_PORT.compare_exchange(
        0,
        (u64::from(std::process::id()).wrapping_mul(2_654_435_761) % u64::from(span)) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = PORTS.start + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port on 127.0.0.1 in {PORTS:?}")
}

/// A running child process.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program` in `cwd` with output appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        cwd: &Path,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Asks the process to stop.
    pub fn sigterm(&self) {
        if let Some(pid) = self.child.id().and_then(|id| Pid::from_raw(id as i32)) {
            let _ = kill_process(pid, Signal::TERM);
        }
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once it has exited.
    pub async fn stop(&mut self, grace: Duration) {
        self.sigterm();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Waits until `port` on loopback accepts connections, or fails with
    /// the end of the log when the process exits or `timeout` passes.
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if self.exited() || tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "{} did not listen on {addr} (log {}):\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A program of this workspace: beside the running `lagrate` (cargo puts
/// every binary of a build in one directory), or in `dir` when given.
pub fn sibling_binary(dir: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the lagrate executable has no directory")?
            .to_path_buf(),
    };
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release --bins` (or point --bin-dir at it)",
        path.display()
    );
    Ok(path)
}

/// A tool on the machine: the given path, else the install cache
/// (`$LAGRATE_CACHE`, default ~/.cache/lagrate), else PATH.
pub fn tool(given: Option<&Path>, cached: &str, name: &str) -> PathBuf {
    if let Some(path) = given {
        return path.to_path_buf();
    }
    let cache = std::env::var_os("LAGRATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lagrate")
        });
    let candidate = cache.join(cached);
    if candidate.exists() {
        candidate
    } else {
        PathBuf::from(name)
    }
}
