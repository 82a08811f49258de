//! How the workload binaries (trade-producer, trade-consumer) start and
//! stop: logs to stderr filtered by `RUST_LOG`, an error that ends `run`
//! printed with its causes and a failing exit status, and SIGTERM (or
//! Ctrl-C) turned into a flag their loops check, so they finish their work
//! in hand before exiting; a process still running [`STOP_DEADLINE`] after
//! the signal exits anyway.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sets up logging, then runs `run`: success exits 0; an error is printed as
/// `name: error: cause: ...` and exits 1.
pub fn main(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime the binary's HTTP endpoint and signal watch run on, the flag
/// SIGTERM (or Ctrl-C) sets, and the endpoint's listener on
/// `0.0.0.0:port`.
pub fn background(
    port: u16,
) -> anyhow::Result<(
    tokio::runtime::Runtime,
    Arc<AtomicBool>,
    tokio::net::TcpListener,
)> {
    let runtime = tokio::runtime::Runtime::new()?;
    let stop = stop_on_sigterm(&runtime);
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("0.0.0.0", port)))?;
    Ok((runtime, stop, listener))
}

/// How long after SIGTERM a process may take to finish its work in hand.
/// Past it, the work is hung on something outside the process (a database
/// that accepts and never answers holds a write with no error to end it),
/// and the process exits with status 1: whatever it had not finished it
/// had not committed either, so the partitions' next owner reads it again.
/// Shorter than the 10 s Kubernetes users expect a stop to take, and well
/// inside the pod's termination grace period (30 s by default).
pub const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(9);

/// A flag that turns true on SIGTERM or Ctrl-C, watched on `runtime`; the
/// process exits [`STOP_DEADLINE`] later if it is still running.
pub fn stop_on_sigterm(runtime: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    runtime.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stopping.store(true, Ordering::Relaxed);
        tokio::time::sleep(STOP_DEADLINE).await;
        tracing::error!(
            deadline_s = STOP_DEADLINE.as_secs(),
            "still running this long after SIGTERM: the work in hand hangs (a sink that never answers?); exiting without it, uncommitted, for the next owner to read again"
        );
        std::process::exit(1);
    });
    stop
}
