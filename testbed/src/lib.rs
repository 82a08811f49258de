//! Real servers for tests and benchmarks, each on 127.0.0.1 with a free
//! port, in its own temp directory, and killed when dropped (also when the
//! test fails): a tansu Kafka broker on SQLite, a Prometheus server, and
//! `lagrate serve`, PostgreSQL, any workspace program (one module each).
//! Plus small Kafka helpers on the broker: topics, produce, commit.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Ports for test servers: below Linux's ephemeral range (32768 and up),
/// so no outgoing connection of a test's clients takes one between the pick
/// and the server's bind, and apart from `lagrate demo`'s 20000..32000.
const PORTS: std::ops::Range<u16> = 10_000..20_000;
static PORT_CURSOR: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();

/// A free TCP port on loopback, never handed out twice by one process.
/// Each test process starts at a place its id hashes to, so parallel tests
/// (whose ids are often consecutive) pick from different places.
pub fn free_port() -> u16 {
    let span = u32::from(PORTS.end - PORTS.start);
    let cursor = PORT_CURSOR.get_or_init(|| {
        std::sync::atomic::AtomicU32::new(std::process::id().wrapping_mul(2_654_435_761) % span)
    });
    (0..span)
        .map(|_| {
            PORTS.start + (cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span) as u16
        })
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or_else(|| panic!("no free port on 127.0.0.1 in {PORTS:?}"))
}

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

/// A random suffix for topic and group names.
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{prefix}-{:012x}", h.finish() & 0xffff_ffff_ffff)
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

/// A minimal HTTP/1.0 GET, enough for loopback test servers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

mod lagrate;
mod postgres;
mod process;
mod prometheus;
mod tansu;

pub use lagrate::{Lagrate, scaled_object};
pub use postgres::Postgres;
use process::{Guarded, wait_for_port};
pub use process::{Process, tool};
pub use prometheus::Prometheus;
pub use tansu::{ReadMessage, Tansu};
