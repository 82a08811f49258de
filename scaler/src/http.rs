//! The HTTP listener: `/metrics`, `/healthz`, `/readyz`, `/debug/decisions`,
//! `/debug/shadow`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::registry::Registry;
use crate::shadow::Shadows;

pub fn router(registry: Arc<Registry>, shadows: Arc<Shadows>) -> Router {
    let shadow = Router::new()
        .route("/debug/shadow", get(shadow))
        .with_state(shadows);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/debug/decisions", get(decisions))
        .with_state(registry)
        .merge(shadow)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        // Streamed piece by piece: the text of 10,000 ScaledObjects is
        // never held whole.
        axum::body::Body::from_stream(futures::stream::iter(
            registry.exposition().map(Ok::<_, std::convert::Infallible>),
        )),
    )
}

async fn decisions(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    Json(registry.decisions())
}

async fn shadow(State(shadows): State<Arc<Shadows>>) -> impl IntoResponse {
    Json(shadows.json())
}

/// Ready when the config is loaded (it is, once serving) and at least one
/// source answers: a fresh sample, or else a configured cluster's metadata.
async fn ready(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let config = registry.config();
    if registry.has_fresh_sample() {
        return (StatusCode::OK, "ready: sampling\n".to_owned());
    }
    let clusters: Vec<_> = config.clusters.into_iter().collect();
    let probe = tokio::task::spawn_blocking(move || {
        clusters.iter().find_map(|(name, cluster)| {
            registry
                .cluster_reachable(cluster, Duration::from_secs(2))
                .then(|| name.clone())
        })
    })
    .await
    .ok()
    .flatten();
    match probe {
        Some(name) => (StatusCode::OK, format!("ready: cluster {name} reachable\n")),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no fresh sample and no configured cluster reachable\n".to_owned(),
        ),
    }
}
