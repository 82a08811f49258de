//! `lagrate serve`: the gRPC and HTTP listeners, the registry, the config
//! watch, and graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use lagrate_proto::external_scaler_server::ExternalScalerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::ScalerService;
use crate::source::SourceFactory;
use crate::source::kafka::KafkaFactory;
use crate::tls::TlsFiles;

/// Serves on already-bound listeners (tests bind port 0) until `shutdown`
/// completes; then stops taking requests, ends streams and returns.
pub async fn run(
    config_path: PathBuf,
    tls: Option<TlsFiles>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(
        config_path,
        Arc::new(KafkaFactory::default()),
        tls,
        grpc,
        http,
        shutdown,
    )
    .await
}

/// [`run`] with the sources `factory` makes (Kafka in production).
pub async fn run_with(
    config_path: PathBuf,
    factory: Arc<dyn SourceFactory>,
    tls: Option<TlsFiles>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = tls.as_ref().map(crate::tls::server_config).transpose()?;
    let config = Config::load(&config_path)?;
    let metrics = Arc::new(Metrics::new());
    metrics.config_valid.set(1);
    let registry = Arc::new(Registry::new(config, factory, metrics));
    registry.expire_on_a_timer();
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
        .add_service(health_service)
        .add_service(ExternalScalerServer::new(service));
    let grpc_server = async move {
        match tls {
            // No Nagle: a GetMetrics answer is one small frame, sent at once.
            None => {
                router
                    .serve_with_incoming_shutdown(
                        TcpIncoming::from(grpc).with_nodelay(Some(true)),
                        grpc_stopped,
                    )
                    .await
            }
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(crate::tls::incoming(grpc, tls), grpc_stopped)
                    .await
            }
        }
    };
    let mut http_stop = stop_rx.clone();
    let http_server =
        axum::serve(http, crate::http::router(registry)).with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        });
    let (grpc_result, http_result) = tokio::join!(grpc_server, async { http_server.await });
    grpc_result?;
    http_result?;
    tracing::info!("lagrate stopped");
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
