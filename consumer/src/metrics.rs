//! The consumer's metrics, with the reference dashboard's names.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: String,
}

pub struct Metrics {
    registry: Registry,
    pub processed: Counter,
    pub batch_seconds: Histogram,
    pub message_age: Histogram,
    pub lag: Family<PartitionLabel, Gauge>,
    pub busy_seconds: Counter<f64, AtomicU64>,
    pub invalid: Family<ReasonLabel, Counter>,
    pub duplicates: Counter,
    pub stopped_partitions: Gauge,
    pub write_failures: Counter,
    pub batch_messages: Histogram,
    /// Why /healthz fails, once something a restart can fix went wrong:
    /// per kind of failure, its cause.
    unhealthy: std::sync::Mutex<Vec<(&'static str, String)>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// not_json, empty, not_storable, rejected_by_sink or conflict.
    pub reason: String,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            processed: Counter::default(),
            batch_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            message_age: Histogram::new([
                0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
            lag: Family::default(),
            busy_seconds: Counter::default(),
            invalid: Family::default(),
            duplicates: Counter::default(),
            stopped_partitions: Gauge::default(),
            write_failures: Counter::default(),
            batch_messages: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ]),
            unhealthy: std::sync::Mutex::new(Vec::new()),
        };
        registry.register(
            "kafka_messages_processed",
            "Messages written by the sink",
            m.processed.clone(),
        );
        registry.register(
            "kafka_batch_processing_seconds",
            "Time to write one batch",
            m.batch_seconds.clone(),
        );
        registry.register(
            "kafka_message_age_seconds",
            "Now minus the message timestamp, when consumed",
            m.message_age.clone(),
        );
        registry.register(
            "kafka_consumer_partition_lag",
            "High watermark minus the written offset, per partition",
            m.lag.clone(),
        );
        registry.register(
            "kafka_consumer_busy_seconds",
            "Seconds spent writing batches (busy time / wall time = utilisation)",
            m.busy_seconds.clone(),
        );
        registry.register(
            "kafka_consumer_invalid_messages",
            "Messages that are not valid trades, by reason (not_json, empty, not_storable, rejected_by_sink, conflict)",
            m.invalid.clone(),
        );
        registry.register(
            "kafka_consumer_duplicate_trades",
            "Trades already stored exactly as read (a batch read again after a rebalance or a crash)",
            m.duplicates.clone(),
        );
        registry.register(
            "kafka_consumer_stopped_partitions",
            "Partitions stopped at a message that cannot be stored (ON_REFUSED=stop-partition) or whose dead letter cannot be delivered",
            m.stopped_partitions.clone(),
        );
        registry.register(
            "kafka_consumer_batch_messages",
            "Messages per batch taken for the sink (never more than BATCH_SIZE)",
            m.batch_messages.clone(),
        );
        registry.register(
            "kafka_consumer_write_failures",
            "Batch writes that failed and were retried (the log names each error)",
            m.write_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&PartitionLabel {
                partition: partition.to_string(),
            })
            .set(lag);
    }

    pub fn invalid_message(&self, reason: &str) {
        self.invalid
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Makes /healthz fail with `cause` (a failure of `kind`) until it is
    /// restored: Kubernetes restarts the pod.
    pub fn fail_health(&self, kind: &'static str, cause: String) {
        let mut causes = self.unhealthy.lock().expect("health lock");
        causes.retain(|(k, _)| *k != kind);
        causes.push((kind, cause));
    }

    /// /healthz no longer fails for `kind`.
    pub fn restore_health(&self, kind: &'static str) {
        let mut causes = self.unhealthy.lock().expect("health lock");
        causes.retain(|(k, _)| *k != kind);
    }

    fn health(&self) -> Result<&'static str, (axum::http::StatusCode, String)> {
        let causes = self.unhealthy.lock().expect("health lock");
        if causes.is_empty() {
            return Ok("ok\n");
        }
        let text: Vec<&str> = causes.iter().map(|(_, cause)| cause.as_str()).collect();
        Err((
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", text.join("\n")),
        ))
    }

    /// Forgets the lag of partitions this consumer no longer owns.
    pub fn forget_lag(&self, partitions: &[i32]) {
        for p in partitions {
            self.lag.remove(&PartitionLabel {
                partition: p.to_string(),
            });
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.encode() }),
        )
        .route(
            "/healthz",
            get(|State(m): State<Arc<Metrics>>| async move { m.health() }),
        )
        .with_state(metrics);
    let _ = axum::serve(listener, router).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_partitions_lag_is_no_longer_exported() {
        let m = Metrics::new();
        m.set_lag(3, 40);
        m.set_lag(7, 5);
        assert!(
            m.encode()
                .contains(r#"kafka_consumer_partition_lag{partition="3"} 40"#)
        );
        m.forget_lag(&[3]);
        let text = m.encode();
        assert!(!text.contains(r#"partition="3""#), "{text}");
        assert!(text.contains(r#"kafka_consumer_partition_lag{partition="7"} 5"#));
    }
}
