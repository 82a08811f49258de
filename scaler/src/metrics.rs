//! Every Prometheus metric the scaler exports, registered in one place.
//! Labels are bounded: ScaledObjects (operator-defined), actions, results.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use lagrate_policy::evaluate::Evaluation;

use crate::source::SourceError;

mod objects;
pub use objects::ObjectLabels;
use objects::ObjectSeries;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// Label of per-source-key series (bounded by limits.maxSourceKeys).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumer_group: String,
}

/// Labels of shadow-mode series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    target: String,
    /// lagrate, keda or actual.
    source: String,
}

/// Label of per-topic series (topics of sampled source keys).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
    /// What failed: bad_metadata, kafka, prometheus, no_sample, stale (ok when it did not).
    reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The scaler's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<ActionLabels, Counter>,
    offset_queries: Counter,
    samples: Family<ResultLabels, Counter>,
    source_keys: Gauge,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    prometheus_series: Family<TopicLabels, Gauge>,
    config_reloads: Family<ResultLabels, Counter>,
    config_reload_errors: Counter,
    config_valid: Gauge,
    /// Seconds from a sample's grid instant until it landed: how late
    /// sampling runs (many keys, a slow cluster, the Kafka-call cap).
    sample_age: Histogram,
    /// Per consumer group sampled: failed samples in a row (0 when fine).
    source_failures: Family<GroupLabels, Gauge>,
    shadow_replicas: Family<ShadowLabels, Gauge>,
    shadow_pod_seconds: Family<ShadowLabels, Counter<f64, AtomicU64>>,
    shadow_wait: Family<ShadowLabels, FloatGauge>,
    shadow_lag: Family<ShadowTargetLabels, FloatGauge>,
    shadow_rejected: Gauge,
    /// Seconds one trigger's evaluation took (the policy replayed over its
    /// source key's window).
    evaluation: Histogram,
    source_errors: Family<SourceErrorLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceErrorLabels {
    /// kafka, prometheus or kubernetes.
    source: String,
    /// authentication, timeout, unknown_group, unknown_topic or unavailable.
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowTargetLabels {
    target: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered with its help text: a list, one entry each.
    #[allow(clippy::too_many_lines)]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lagrate");
        let m = Metrics {
            decisions: Family::default(),
            offset_queries: Counter::default(),
            samples: Family::default(),
            source_keys: Gauge::default(),
            rpcs: Family::default(),
            rpc_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
                    1.0,
                ])
            }),
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
            evaluation: Histogram::new([
                0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            ]),
            source_errors: Family::default(),
            registry: Registry::default(),
        };
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
            "requests",
            "KEDA calls by method, status code and reason (what failed)",
            m.rpcs.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Seconds lagrate spent answering a KEDA call, by method (from the request's arrival at the handler to its answer)",
            m.rpc_seconds.clone(),
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
        registry.register(
            "evaluation_seconds",
            "Seconds one trigger's evaluation took: the policy replayed over its source key's window of samples",
            m.evaluation.clone(),
        );
        registry.register(
            "source_errors",
            "Failed source reads by source (kafka, prometheus, kubernetes) and kind (authentication, timeout, unknown_group, unknown_topic, unavailable)",
            m.source_errors.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition, in pieces: every registered family, then the
    /// per-trigger gauges written from `objects` (each trigger's labels
    /// and last evaluation) a few hundred rows at a time, then the end
    /// marker. Nothing per trigger is kept twice, and with 10,000
    /// ScaledObjects no ~12 MB text is built in one buffer.
    pub fn exposition(
        &self,
        objects: Vec<(ObjectLabels, Arc<Evaluation>)>,
    ) -> impl Iterator<Item = String> + Send + 'static {
        let mut registered = String::new();
        prometheus_client::encoding::text::encode_registry(&mut registered, &self.registry)
            .expect("writing to a String cannot fail");
        std::iter::once(registered)
            .chain(ObjectSeries::new(objects))
            .chain(std::iter::once("# EOF\n".to_owned()))
    }

    /// One source of a shadow target's sample: its size (None: unknown),
    /// estimated wait, and the pod-seconds it added since the sample
    /// before (None: its size was unknown then).
    pub fn record_shadow_source(
        &self,
        target: &str,
        source: &str,
        replicas: Option<u32>,
        wait: Option<f64>,
        added_pod_seconds: Option<f64>,
    ) {
        let labels = shadow_labels(target, source);
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
        if let Some(added) = added_pod_seconds {
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

    /// A shadow target's lag at its newest sample.
    pub fn record_shadow_lag(&self, target: &str, lag: f64) {
        self.shadow_lag
            .get_or_create(&ShadowTargetLabels {
                target: target.to_owned(),
            })
            .set(lag);
    }

    /// How many shadow entries of the config were rejected.
    pub fn set_shadow_rejected(&self, entries: usize) {
        self.shadow_rejected.set(entries as i64);
    }

    /// Drops a shadow target's series.
    pub fn remove_shadow(&self, target: &str) {
        for source in ["lagrate", "keda", "actual"] {
            let labels = shadow_labels(target, source);
            self.shadow_replicas.remove(&labels);
            self.shadow_pod_seconds.remove(&labels);
            self.shadow_wait.remove(&labels);
        }
        self.shadow_lag.remove(&ShadowTargetLabels {
            target: target.to_owned(),
        });
    }
}

impl Metrics {
    /// Counts one trigger's decision by its action (its values are
    /// exported from the trigger's last evaluation when scraped).
    pub fn record_decision(&self, evaluation: &Evaluation) {
        self.decisions
            .get_or_create(&ActionLabels {
                action: evaluation.decision.action.label().into(),
            })
            .inc();
    }

    /// One KEDA call: its method, gRPC status code and what failed.
    pub fn record_rpc(&self, method: &str, code: &str, reason: &str) {
        self.rpcs
            .get_or_create(&RpcLabels {
                method: method.into(),
                code: code.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Seconds one KEDA call took to answer.
    pub fn observe_rpc(&self, method: &'static str, seconds: f64) {
        self.rpc_seconds
            .get_or_create(&MethodLabels { method })
            .observe(seconds);
    }

    /// Seconds one trigger's evaluation took.
    pub fn observe_evaluation(&self, seconds: f64) {
        self.evaluation.observe(seconds);
    }

    /// A sample of `group`'s source key: its error, if it failed, and how
    /// many failed in a row (0 when this one succeeded).
    pub fn record_sample(&self, group: &str, error: Option<&SourceError>, failures_in_a_row: u32) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.samples
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        if let Some(e) = error {
            self.record_source_error(e);
        }
        self.source_failures
            .get_or_create(&GroupLabels {
                consumer_group: group.to_owned(),
            })
            .set(i64::from(failures_in_a_row));
    }

    /// A failed read of a source: Kafka offsets, the inbound rate, the
    /// workload's scale.
    pub fn record_source_error(&self, error: &SourceError) {
        self.source_errors
            .get_or_create(&SourceErrorLabels {
                source: error.label().into(),
                kind: error.kind_label().into(),
            })
            .inc();
    }

    /// Seconds from a sample's grid instant until it landed.
    pub fn observe_sample_age(&self, seconds: f64) {
        self.sample_age.observe(seconds);
    }

    /// Forgets the series of a consumer group no longer sampled.
    pub fn remove_group(&self, group: &str) {
        self.source_failures.remove(&GroupLabels {
            consumer_group: group.to_owned(),
        });
    }

    /// One offset snapshot read from Kafka.
    pub fn count_offset_query(&self) {
        self.offset_queries.inc();
    }

    /// Series the inbound-rate query returned for `topic`.
    pub fn set_prometheus_series(&self, topic: &str, series: usize) {
        self.prometheus_series
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .set(series as i64);
    }

    /// Source keys being sampled.
    pub fn set_source_keys(&self, keys: u64) {
        self.source_keys.set(keys as i64);
    }

    /// The config read (at start or on a change) was valid; `applied` when
    /// it differed from the one in force and replaced it.
    pub fn record_config_valid(&self, applied: bool) {
        self.config_valid.set(1);
        if applied {
            self.config_reloads
                .get_or_create(&ResultLabels {
                    result: "ok".into(),
                })
                .inc();
        }
    }

    /// The config file read on a change was rejected.
    pub fn record_config_rejected(&self) {
        self.config_valid.set(0);
        self.config_reload_errors.inc();
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: "error".into(),
            })
            .inc();
    }
}

/// Labels of one source's shadow series.
fn shadow_labels(target: &str, source: &str) -> ShadowLabels {
    ShadowLabels {
        target: target.to_owned(),
        source: source.to_owned(),
    }
}
