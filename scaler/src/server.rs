//! `lagrate serve`: the gRPC and HTTP listeners, the registry, the config
//! watch, and graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lagrate_proto::external_scaler_server::ExternalScalerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::ScalerService;
use crate::shadow::Shadows;
use crate::source::SourceFactory;
use crate::source::kafka::KafkaFactory;
use crate::tls::TlsFiles;

/// How the listeners treat their callers.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// Open connections per listener; further callers wait in the backlog.
    pub max: usize,
    /// After shutdown begins, how long open connections (a silent client, a
    /// half-sent request, a stream) may take to finish before lagrate exits
    /// anyway: below the pod's termination grace period.
    pub drain: Duration,
}

/// An HTTP/2 PING every this often on an idle gRPC connection; a peer that
/// does not answer within KEEPALIVE_TIMEOUT is dropped.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one gRPC connection may have in progress at once.
const STREAMS_PER_CONNECTION: u32 = 256;

/// Serves on already-bound listeners (tests bind port 0) until `shutdown`
/// completes; then stops taking requests, ends streams and returns, at the
/// latest `connections.drain` later.
pub async fn run(
    config_path: PathBuf,
    tls: Option<TlsFiles>,
    (grpc, http): (TcpListener, TcpListener),
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(
        config_path,
        Arc::new(KafkaFactory::default()),
        tls,
        (grpc, http),
        connections,
        shutdown,
    )
    .await
}

/// [`run`] with the sources `factory` makes (Kafka in production).
pub async fn run_with(
    config_path: PathBuf,
    factory: Arc<dyn SourceFactory>,
    tls: Option<TlsFiles>,
    (grpc, http): (TcpListener, TcpListener),
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = tls.as_ref().map(crate::tls::server_config).transpose()?;
    let config = Config::load(&config_path)?;
    crate::reload::warn_unused(&config);
    let metrics = Arc::new(Metrics::new());
    metrics.record_config_valid(false);
    let registry = Arc::new(Registry::new(config, factory, metrics));
    registry.expire_on_a_timer();
    let shadows = Arc::new(Shadows::default());
    crate::shadow::follow_config(&registry, shadows.clone());
    let _watcher = crate::reload::watch(config_path.clone(), registry.clone())?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ExternalScalerServer<ScalerService>>()
        .await;
    let service = ScalerService::new(registry.clone(), stop_rx.clone());
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    tracing::info!(grpc = %grpc_addr, http = %http_addr, config = %config_path.display(), tls = tls.is_some(), "lagrate serving");

    let mut grpc_stop = stop_rx.clone();
    let grpc_stopped = async move {
        let _ = grpc_stop.wait_for(|stop| *stop).await;
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(STREAMS_PER_CONNECTION))
        .add_service(health_service)
        .add_service(ExternalScalerServer::new(service));
    let grpc_connections = crate::listener::incoming(grpc, connections.max);
    let grpc_server = async move {
        match tls {
            None => {
                router
                    .serve_with_incoming_shutdown(grpc_connections, grpc_stopped)
                    .await
            }
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(
                        crate::tls::incoming(grpc_connections, tls),
                        grpc_stopped,
                    )
                    .await
            }
        }
    };
    let mut http_stop = stop_rx.clone();
    let http_server = axum::serve(
        crate::listener::Limited::new(http, connections.max)?,
        crate::http::router(registry, shadows),
    )
    .with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    });
    let servers = async { tokio::join!(grpc_server, async { http_server.await }) };
    let mut deadline_stop = stop_rx.clone();
    let deadline = async move {
        let _ = deadline_stop.wait_for(|stop| *stop).await;
        tokio::time::sleep(connections.drain).await;
    };
    tokio::select! {
        (grpc_result, http_result) = servers => {
            grpc_result?;
            http_result?;
            tracing::info!("lagrate stopped");
        }
        () = deadline => tracing::warn!(
            drain_s = connections.drain.as_secs_f64(),
            "connections still open at the drain deadline: closing them and stopping"
        ),
    }
    Ok(())
}

/// Completes on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown signal received");
}
