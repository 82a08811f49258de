//! Real servers for tests and benchmarks, each on 127.0.0.1 with a free
//! port, in its own temp directory, and killed when dropped (also when the
//! test fails): a tansu Kafka broker on SQLite, a Prometheus server, and
//! `lagrate serve`, PostgreSQL, any workspace program (one module each).
//! Plus small Kafka helpers on the broker: topics, produce, commit.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A benchmark's numeric option: `--name VALUE` on its command line.
pub fn bench_arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// A binary of this workspace (`lagrate`, `trade-consumer`, `trade-producer`)
/// for tests outside its package: it sits beside the test's `deps/` folder.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo nextest run --workspace` (or `cargo build --bins` first)",
        path.display()
    );
    path
}

/// Environment for a process that signs MSK IAM tokens offline: made-up
/// static credentials (signing is local; nothing reaches AWS) and no
/// instance metadata or profile lookups.
pub fn offline_aws_credentials() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIDLAGRATETESTONLY".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-key".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
    ]
}

/// Waits until `check` returns Some, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

mod lagrate;
mod net;
mod postgres;
mod process;
mod prometheus;
mod tansu;

pub use lagrate::{Lagrate, scaled_object};
pub use net::{free_port, http_get};
pub use postgres::Postgres;
pub use process::{Process, tool};
pub use prometheus::Prometheus;
pub use tansu::{ReadMessage, Tansu, unique};
