//! Every Prometheus metric the scaler exports, registered in one place.
//! Labels are bounded: ScaledObjects (operator-defined), actions, results.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::evaluate::Evaluation;
use crate::policy::RateSource;

/// Labels of per-trigger series: a ScaledObject with two lagrate
/// triggers (two groups, or two topic lists) has two series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// `namespace/name`.
    pub scaled_object: String,
    pub consumer_group: String,
    /// The trigger's topics, comma-separated; empty for all of the group's.
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Label of per-source-key series (bounded by limits.maxSourceKeys).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub consumer_group: String,
}

/// Labels of shadow-mode series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub target: String,
    /// lagrate, keda or actual.
    pub source: String,
}

/// Label of per-topic series (topics of sampled source keys).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
    /// What failed: bad_metadata, kafka, prometheus, no_sample, stale (ok when it did not).
    pub reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The scaler's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub desired_replicas: Family<ObjectLabels, Gauge>,
    pub lag_messages: Family<ObjectLabels, Gauge>,
    pub inbound_rate: Family<ObjectLabels, FloatGauge>,
    pub rate_from_offsets: Family<ObjectLabels, Gauge>,
    pub pods_needed_beyond_partitions: Family<ObjectLabels, Gauge>,
    pub hot_partition_rate: Family<ObjectLabels, FloatGauge>,
    pub capacity_per_pod: Family<ObjectLabels, FloatGauge>,
    pub rebalance_seconds: Family<ObjectLabels, FloatGauge>,
    pub startup_seconds: Family<ObjectLabels, FloatGauge>,
    pub decisions: Family<ActionLabels, Counter>,
    pub offset_queries: Counter,
    pub samples: Family<ResultLabels, Counter>,
    pub source_keys: Gauge,
    pub rpcs: Family<RpcLabels, Counter>,
    pub prometheus_series: Family<TopicLabels, Gauge>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub config_reload_errors: Counter,
    pub config_valid: Gauge,
    /// Seconds from a sample's grid instant until it landed: how late
    /// sampling runs (many keys, a slow cluster, the Kafka-call cap).
    pub sample_age: Histogram,
    /// Per consumer group sampled: failed samples in a row (0 when fine).
    pub source_failures: Family<GroupLabels, Gauge>,
    pub shadow_replicas: Family<ShadowLabels, Gauge>,
    pub shadow_pod_seconds: Family<ShadowLabels, Counter<f64, AtomicU64>>,
    pub shadow_wait: Family<ShadowLabels, FloatGauge>,
    pub shadow_lag: Family<ShadowTargetLabels, FloatGauge>,
    pub shadow_rejected: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowTargetLabels {
    pub target: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lagrate");
        let m = Metrics {
            desired_replicas: Family::default(),
            lag_messages: Family::default(),
            inbound_rate: Family::default(),
            rate_from_offsets: Family::default(),
            pods_needed_beyond_partitions: Family::default(),
            hot_partition_rate: Family::default(),
            capacity_per_pod: Family::default(),
            rebalance_seconds: Family::default(),
            startup_seconds: Family::default(),
            decisions: Family::default(),
            offset_queries: Counter::default(),
            samples: Family::default(),
            source_keys: Gauge::default(),
            rpcs: Family::default(),
            prometheus_series: Family::default(),
            config_reloads: Family::default(),
            config_reload_errors: Counter::default(),
            config_valid: Gauge::default(),
            source_failures: Family::default(),
            shadow_replicas: Family::default(),
            shadow_pod_seconds: Family::default(),
            shadow_wait: Family::default(),
            shadow_lag: Family::default(),
            shadow_rejected: Gauge::default(),
            sample_age: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            registry: Registry::default(),
        };
        registry.register(
            "desired_replicas",
            "Desired replicas answered to KEDA",
            m.desired_replicas.clone(),
        );
        registry.register(
            "lag_messages",
            "Consumer group lag counted for scaling",
            m.lag_messages.clone(),
        );
        registry.register(
            "inbound_rate_per_second",
            "Inbound messages per second used by the policy",
            m.inbound_rate.clone(),
        );
        registry.register(
            "rate_from_offsets",
            "1 when the inbound rate was derived from offsets (Prometheus not configured, down or empty)",
            m.rate_from_offsets.clone(),
        );
        registry.register(
            "pods_needed_beyond_partitions",
            "Pods the load needs when that exceeds the partition count (0 otherwise): add partitions",
            m.pods_needed_beyond_partitions.clone(),
        );
        registry.register(
            "hot_partition_rate_per_second",
            "Inbound rate of a partition that alone exceeds one pod's capacity (0 when none)",
            m.hot_partition_rate.clone(),
        );
        registry.register(
            "rebalance_seconds",
            "Rebalance pause the policy plans with: rebalanceSeconds, or the pause timed from committed offsets after member-count changes",
            m.rebalance_seconds.clone(),
        );
        registry.register(
            "startup_seconds",
            "Start-up time the policy plans with: startupSeconds, or the time from the workload's spec rising to the group's members joining (scaleTarget and member counts)",
            m.startup_seconds.clone(),
        );
        registry.register(
            "capacity_per_pod",
            "Messages per second per pod used by the policy",
            m.capacity_per_pod.clone(),
        );
        registry.register("decisions", "Decisions by action", m.decisions.clone());
        registry.register(
            "offset_queries",
            "Offset snapshots read from Kafka",
            m.offset_queries.clone(),
        );
        registry.register("samples", "Samples taken by result", m.samples.clone());
        registry.register(
            "source_keys",
            "Source keys being sampled",
            m.source_keys.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests by method, status code and reason",
            m.rpcs.clone(),
        );
        registry.register(
            "requests",
            "KEDA calls by method, status code and reason (what failed)",
            m.rpcs.clone(),
        );
        registry.register(
            "prometheus_series",
            "Series the inbound-rate query returned for a topic at the last sample (one per broker with the default query)",
            m.prometheus_series.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_reload_errors",
            "Config files rejected on reload (invalid, unreadable, or a failed check)",
            m.config_reload_errors.clone(),
        );
        registry.register(
            "config_valid",
            "1 when the last config read was valid",
            m.config_valid.clone(),
        );
        registry.register(
            "sample_age_seconds",
            "Seconds from a sample's grid instant until it landed (sampling on time: below the interval)",
            m.sample_age.clone(),
        );
        registry.register(
            "source_failures",
            "Failed samples in a row per consumer group sampled (a failing key is sampled less often: every 2nd, 4th, then 6th interval)",
            m.source_failures.clone(),
        );
        registry.register(
            "shadow_replicas",
            "Shadow targets: replicas lagrate would answer, KEDA's trigger and the HPA would set, and the group has (source)",
            m.shadow_replicas.clone(),
        );
        registry.register(
            "shadow_pod_seconds",
            "Shadow targets: cumulative pod-seconds per source",
            m.shadow_pod_seconds.clone(),
        );
        registry.register(
            "shadow_estimated_wait_seconds",
            "Shadow targets: backlog / processing rate at the newest sample, per source",
            m.shadow_wait.clone(),
        );
        registry.register(
            "shadow_lag_messages",
            "Shadow targets: lag at the newest sample",
            m.shadow_lag.clone(),
        );
        registry.register(
            "shadow_rejected_entries",
            "Shadow entries of the config rejected (each named in the log and /debug/shadow)",
            m.shadow_rejected.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// A shadow target's sample: the sizes, waits and lag, and the
    /// pod-seconds each source added since the sample before (None: its
    /// size was unknown then).
    pub fn record_shadow(
        &self,
        target: &str,
        point: &crate::shadow::Point,
        waits: &crate::shadow::Sources<Option<f64>>,
        added: &crate::shadow::Sources<Option<f64>>,
    ) {
        let sources = [
            (
                "lagrate",
                point.replicas.lagrate,
                waits.lagrate,
                added.lagrate,
            ),
            ("keda", point.replicas.keda, waits.keda, added.keda),
            ("actual", point.replicas.actual, waits.actual, added.actual),
        ];
        for (source, replicas, wait, added) in sources {
            let labels = crate::shadow::labels(target, source);
            match replicas {
                Some(n) => {
                    self.shadow_replicas
                        .get_or_create(&labels)
                        .set(i64::from(n));
                }
                None => {
                    self.shadow_replicas.remove(&labels);
                }
            }
            if let Some(added) = added {
                self.shadow_pod_seconds.get_or_create(&labels).inc_by(added);
            }
            match wait {
                Some(w) => {
                    self.shadow_wait.get_or_create(&labels).set(w);
                }
                None => {
                    self.shadow_wait.remove(&labels);
                }
            }
        }
        self.shadow_lag
            .get_or_create(&ShadowTargetLabels {
                target: target.to_owned(),
            })
            .set(point.lag);
    }

    /// Drops a shadow target's series.
    pub fn remove_shadow(&self, target: &str) {
        for source in ["lagrate", "keda", "actual"] {
            let labels = crate::shadow::labels(target, source);
            self.shadow_replicas.remove(&labels);
            self.shadow_pod_seconds.remove(&labels);
            self.shadow_wait.remove(&labels);
        }
        self.shadow_lag.remove(&ShadowTargetLabels {
            target: target.to_owned(),
        });
    }

    /// Forgets the series of a ScaledObject that went away.
    pub fn remove_object(&self, labels: &ObjectLabels) {
        self.desired_replicas.remove(labels);
        self.lag_messages.remove(labels);
        self.inbound_rate.remove(labels);
        self.rate_from_offsets.remove(labels);
        self.pods_needed_beyond_partitions.remove(labels);
        self.hot_partition_rate.remove(labels);
        self.capacity_per_pod.remove(labels);
        self.rebalance_seconds.remove(labels);
        self.startup_seconds.remove(labels);
    }
}

impl Metrics {
    /// Exports one trigger's decision and logs it in a span naming its
    /// ScaledObject (at info when the answer changes).
    pub fn record_decision(&self, object: &str, labels: &ObjectLabels, evaluation: &Evaluation) {
        let labels = labels.clone();
        let d = &evaluation.decision;
        let obs = &evaluation.observation;
        let m = self;
        let previous = m
            .desired_replicas
            .get_or_create(&labels)
            .set(i64::from(d.replicas));
        m.lag_messages.get_or_create(&labels).set(obs.lag as i64);
        m.inbound_rate
            .get_or_create(&labels)
            .set(obs.inbound_rate_per_s.unwrap_or(0.0));
        m.rate_from_offsets
            .get_or_create(&labels)
            .set(i64::from(obs.rate_source != RateSource::Prometheus));
        m.pods_needed_beyond_partitions
            .get_or_create(&labels)
            .set(d.partition_limit.map_or(0, |l| i64::from(l.pods_needed)));
        m.hot_partition_rate
            .get_or_create(&labels)
            .set(d.hot_partition.as_ref().map_or(0.0, |h| h.rate_per_s));
        m.capacity_per_pod
            .get_or_create(&labels)
            .set(d.capacity_per_s.unwrap_or(0.0));
        m.rebalance_seconds
            .get_or_create(&labels)
            .set(d.rebalance_seconds);
        m.startup_seconds
            .get_or_create(&labels)
            .set(d.startup_seconds);
        m.decisions
            .get_or_create(&ActionLabels {
                action: d.action.label().into(),
            })
            .inc();
        let span = tracing::info_span!("decide", scaled_object = %object);
        let _guard = span.enter();
        if previous != i64::from(d.replicas) {
            tracing::info!(
                desired = d.replicas,
                need = d.need,
                lag = obs.lag,
                inbound_rate = obs.inbound_rate_per_s,
                rate_source = obs.rate_source.label(),
                reason = %d.reason,
                "decision"
            );
        } else {
            tracing::debug!(desired = d.replicas, need = d.need, lag = obs.lag, reason = %d.reason, "decision");
        }
    }
}
