//! Child processes killed on drop, the wait for their port, and where
//! their binaries are found.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn wait_for_port(port: u16, child: &mut Child, name: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{name} exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not listen on {port} within 30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
pub(crate) struct Guarded(pub(crate) Child);

impl Guarded {
    /// Asks the process to stop, as Kubernetes does.
    pub(crate) fn sigterm(&self) {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill");
    }

    /// The exit status once the process has exited, or None after `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds a tool: `$ENV_VAR`, then the install cache, then PATH.
pub fn tool(env_var: &str, cached: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    let cache = std::env::var("LAGRATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lagrate")
        });
    let candidate = cache.join(cached);
    if candidate.exists() {
        return candidate;
    }
    PathBuf::from(name)
}

/// Any program of the workspace, run with environment variables and its
/// output in a log file; killed on drop.
pub struct Process {
    pub name: String,
    child: Option<Guarded>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn start(bin: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("out.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Process {
            name: bin.rsplit('/').next().unwrap_or(bin).to_owned(),
            child: Some(Guarded(child)),
            log_path,
            _dir: dir,
        }
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGTERM, then the exit status (panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.child.as_ref().expect("running").sigterm();
        self.wait(timeout)
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut guarded = self.child.take().expect("running");
        match guarded.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {timeout:?}:\n{}",
                self.name,
                self.logs()
            ),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// The exit status if it has exited (the process is then reaped).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.0.try_wait().ok()??;
        self.child = None;
        Some(status)
    }
}
