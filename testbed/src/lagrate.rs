//! `lagrate serve` on free ports, and ScaledObjectRefs as KEDA sends them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, http_get};
use crate::process::{Guarded, wait_for_port};

/// `lagrate serve` on free ports with a config file of its own.
pub struct Lagrate {
    pub grpc_port: u16,
    pub http_port: u16,
    pub config_path: PathBuf,
    bin: PathBuf,
    /// Extra environment of every start.
    env: Vec<(&'static str, String)>,
    /// A cap on open file descriptors (prlimit), for fault tests.
    open_files: Option<u64>,
    dir: tempfile::TempDir,
    child: Option<Guarded>,
}

impl Lagrate {
    /// Starts `bin` (the test's `CARGO_BIN_EXE_lagrate`) with `config`.
    pub fn start(bin: &str, config: &str) -> Self {
        Self::start_with_env(bin, config, Vec::new())
    }

    /// `start`, with extra environment variables.
    pub fn start_with_env(bin: &str, config: &str, env: Vec<(&'static str, String)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut lagrate = Lagrate {
            grpc_port: free_port(),
            http_port: free_port(),
            config_path,
            bin: PathBuf::from(bin),
            env,
            open_files: None,
            dir,
            child: None,
        };
        lagrate.restart();
        lagrate
    }

    /// `start`, with at most `open_files` file descriptors (sockets
    /// included) for the server: a process that runs out of them.
    pub fn start_with_open_files(bin: &str, config: &str, open_files: u64) -> Self {
        let mut lagrate = Self::start(bin, config);
        lagrate.open_files = Some(open_files);
        lagrate.restart();
        lagrate
    }

    /// Another process on the same config file (a second replica).
    pub fn replica(&self) -> Self {
        Self::start_with_env(
            self.bin.to_str().expect("utf-8 path"),
            &std::fs::read_to_string(&self.config_path).expect("config"),
            self.env.clone(),
        )
    }

    pub fn stop(&mut self) {
        self.child = None;
    }

    pub fn restart(&mut self) {
        self.stop();
        let log_path = self.dir.path().join(format!("lagrate-{}.log", free_port()));
        let log = std::fs::File::create(&log_path).expect("log file");
        // LAGRATE_CPUS pins the server (taskset), so a benchmark's clients
        // do not compete with it for the same cores.
        let mut command = match (std::env::var("LAGRATE_CPUS"), self.open_files) {
            (_, Some(n)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(&self.bin);
                c
            }
            (Ok(cpus), None) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpus]).arg(&self.bin);
                c
            }
            (Err(_), None) => Command::new(&self.bin),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .arg(format!("--grpc-listen=127.0.0.1:{}", self.grpc_port))
            .arg(format!("--http-listen=127.0.0.1:{}", self.http_port))
            // Tests want every decision in the log; benchmarks run with the
            // production default (LAGRATE_TEST_LOG=info).
            .env(
                "RUST_LOG",
                std::env::var("LAGRATE_TEST_LOG").unwrap_or_else(|_| "info,lagrate=debug".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start lagrate");
        wait_for_port(self.grpc_port, &mut child, "lagrate", &log_path);
        wait_for_port(self.http_port, &mut child, "lagrate", &log_path);
        self.child = Some(Guarded(child));
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut guarded = self.child.take().expect("lagrate is running");
        guarded.sigterm();
        guarded
            .wait_exit(Duration::from_secs(10))
            .expect("lagrate did not stop within 10s of SIGTERM")
    }

    pub fn write_config(&self, config: &str) {
        // Write then rename, as a ConfigMap update swaps files atomically.
        let tmp = self.dir.path().join("config.yaml.tmp");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// Process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// Resident memory of the running server, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// A counter or gauge from /metrics (the first series of that name).
    pub fn metric_value(&self, name: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// GET a path on the HTTP listener; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(SocketAddr::from(([127, 0, 0, 1], self.http_port)), path)
    }

    /// All log lines so far.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

/// A ScaledObjectRef as KEDA sends it, with KEDA's own external-trigger keys.
pub fn scaled_object(name: &str, metadata: &[(&str, &str)]) -> lagrate_proto::ScaledObjectRef {
    let mut scaler_metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    scaler_metadata.insert("scalerAddress".into(), "lagrate.keda.svc:9090".into());
    lagrate_proto::ScaledObjectRef {
        name: name.to_owned(),
        namespace: "test".to_owned(),
        scaler_metadata,
    }
}
