//! One entry per ScaledObject trigger: its parsed spec, the sampler it
//! reads, and its last decision. Entries and samplers nobody asks about
//! expire. Decisions are replayed from the sampler's window, so they are a
//! deterministic function of the samples: two scaler replicas with the same
//! window give the same answers.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::future::Cache;

use crate::clock::unix_now;
use crate::config::Config;
use crate::error::ScalerError;
use crate::metrics::{ActionLabels, Metrics, ObjectLabels};
use crate::policy::{Decision, Observation, RateSource, State, decide};
use crate::sampler::{Sampler, SourceKey};
use crate::signals::observe;
use crate::source::kafka::{ClusterClient, KafkaOffsets};
use crate::source::{OffsetSource, SourceError};
use crate::trigger::{self, ClusterRef, TriggerSpec};

/// Makes the offset reader of a source key (Kafka in production).
pub trait SourceFactory: Send + Sync + 'static {
    fn offsets(&self, key: &SourceKey) -> Result<Arc<dyn OffsetSource>, SourceError>;

    /// Whether `cluster` answers within `timeout` (readiness before the
    /// first sample). Sources that cannot tell say no.
    fn cluster_reachable(
        &self,
        _cluster: &kafka_settings::ClusterSettings,
        _timeout: std::time::Duration,
    ) -> bool {
        false
    }
}

/// The real factory: rdkafka, one client per cluster shared by its groups.
#[derive(Default)]
pub struct KafkaFactory {
    clients: Mutex<HashMap<kafka_settings::ClusterSettings, std::sync::Weak<ClusterClient>>>,
    /// Clients the readiness probe made, kept so that each probe does not
    /// make (and, with MSK IAM, sign a token for) a new one; the samplers
    /// share them once they start.
    probed: Mutex<HashMap<kafka_settings::ClusterSettings, Arc<ClusterClient>>>,
}

impl KafkaFactory {
    /// The cluster's shared client, made on first use.
    fn client(
        &self,
        cluster: &kafka_settings::ClusterSettings,
    ) -> Result<Arc<ClusterClient>, SourceError> {
        let mut clients = self.clients.lock().expect("client map lock poisoned");
        clients.retain(|_, c| c.strong_count() > 0);
        if let Some(client) = clients.get(cluster).and_then(std::sync::Weak::upgrade) {
            return Ok(client);
        }
        let client = Arc::new(ClusterClient::new(cluster)?);
        clients.insert(cluster.clone(), Arc::downgrade(&client));
        Ok(client)
    }
}

impl SourceFactory for KafkaFactory {
    fn offsets(&self, key: &SourceKey) -> Result<Arc<dyn OffsetSource>, SourceError> {
        Ok(Arc::new(KafkaOffsets::new(
            self.client(&key.cluster)?,
            &key.group,
            key.topics.clone(),
            key.kafka_timeout,
        )?))
    }

    fn cluster_reachable(
        &self,
        cluster: &kafka_settings::ClusterSettings,
        timeout: std::time::Duration,
    ) -> bool {
        let Ok(client) = self.client(cluster) else {
            return false;
        };
        self.probed
            .lock()
            .expect("probe map lock poisoned")
            .insert(cluster.clone(), client.clone());
        client.reachable(timeout)
    }
}

/// The last evaluation of an entry.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// Sampler sequence number this was computed at.
    #[serde(skip)]
    pub seq: u64,
    /// Unix seconds of the sample decided on.
    pub sample_time: f64,
    pub observation: Observation,
    pub decision: Decision,
    pub state: State,
}

/// One ScaledObject trigger.
pub struct Entry {
    /// `namespace/name`.
    pub object: String,
    pub spec: TriggerSpec,
    generation: u64,
    sampler: Arc<Sampler>,
    last: Mutex<Option<Arc<Evaluation>>>,
}

impl Entry {
    pub fn sampler(&self) -> &Arc<Sampler> {
        &self.sampler
    }
}

struct Current {
    config: Config,
    generation: u64,
}

/// All entries and samplers.
pub struct Registry {
    current: ArcSwap<Current>,
    entries: Cache<u64, Arc<Entry>>,
    samplers: Cache<SourceKey, Arc<Sampler>>,
    factory: Arc<dyn SourceFactory>,
    pub metrics: Arc<Metrics>,
}

/// Entries idle this long are dropped (KEDA calls every few seconds).
const ENTRY_IDLE: Duration = Duration::from_secs(600);

impl Registry {
    pub fn new(config: Config, factory: Arc<dyn SourceFactory>, metrics: Arc<Metrics>) -> Self {
        let idle = config.sampling.idle_expiry;
        let eviction_metrics = metrics.clone();
        Registry {
            current: ArcSwap::from_pointee(Current {
                config,
                generation: 0,
            }),
            entries: Cache::builder()
                .time_to_idle(ENTRY_IDLE)
                .eviction_listener(move |_key, entry: Arc<Entry>, cause| {
                    if cause == moka::notification::RemovalCause::Expired {
                        eviction_metrics.remove_object(&entry.object);
                    }
                })
                .build(),
            samplers: Cache::builder().time_to_idle(idle).build(),
            factory,
            metrics,
        }
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.current.load().config.clone()
    }

    /// Whether `cluster` answers within `timeout`, through the client its
    /// samplers use (blocking).
    pub fn cluster_reachable(
        &self,
        cluster: &kafka_settings::ClusterSettings,
        timeout: std::time::Duration,
    ) -> bool {
        self.factory.cluster_reachable(cluster, timeout)
    }

    /// Puts a new config in force; entries re-read their spec on next use,
    /// samplers whose settings did not change keep their history.
    pub fn reload(&self, config: Config) {
        let generation = self.current.load().generation + 1;
        self.current.store(Arc::new(Current { config, generation }));
    }

    /// The entry of a ScaledObjectRef, created (and its sampler started) on
    /// first use. Bad metadata is InvalidArgument.
    pub async fn entry(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<Arc<Entry>, ScalerError> {
        let current = self.current.load_full();
        let id = entry_id(namespace, name, metadata);
        if let Some(entry) = self.entries.get(&id).await
            && entry.generation == current.generation
        {
            return Ok(entry);
        }
        let spec = trigger::parse(metadata, &current.config)?;
        let key = self.source_key(&spec, &current.config)?;
        let factory = self.factory.clone();
        let metrics = self.metrics.clone();
        let sampler = self
            .samplers
            .try_get_with(key.clone(), async move {
                let source = factory.offsets(&key)?;
                Ok::<_, SourceError>(Sampler::start(key, source, metrics))
            })
            .await
            .map_err(|e: Arc<SourceError>| ScalerError::Unavailable(e.to_string()))?;
        self.metrics
            .source_keys
            .set(self.samplers.entry_count() as i64);
        let entry = Arc::new(Entry {
            object: format!("{namespace}/{name}"),
            spec,
            generation: current.generation,
            sampler,
            last: Mutex::new(None),
        });
        self.entries.insert(id, entry.clone()).await;
        self.evaluate_on_every_sample(&entry);
        Ok(entry)
    }

    /// Replays the policy when a sample lands rather than in the next
    /// KEDA call, so requests find the answer ready. Ends once the entry or
    /// the registry is gone.
    fn evaluate_on_every_sample(self: &Arc<Self>, entry: &Arc<Entry>) {
        let registry = Arc::downgrade(self);
        let weak_entry = Arc::downgrade(entry);
        let mut samples = entry.sampler.subscribe();
        tokio::spawn(async move {
            while samples.changed().await.is_ok() {
                let (Some(registry), Some(entry)) = (registry.upgrade(), weak_entry.upgrade())
                else {
                    return;
                };
                let _ = registry.evaluate(&entry).await;
            }
        });
    }

    fn source_key(&self, spec: &TriggerSpec, config: &Config) -> Result<SourceKey, ScalerError> {
        let cluster = match &spec.cluster {
            ClusterRef::Named(name) => config.clusters.get(name).cloned().ok_or_else(|| {
                ScalerError::InvalidArgument(format!("cluster {name:?} is not configured"))
            })?,
            ClusterRef::Inline(servers) => {
                kafka_settings::ClusterSettings::plaintext(servers.clone())
            }
        };
        let mut topics = spec.topics.clone();
        if let Some(t) = topics.as_mut() {
            t.sort();
            t.dedup();
        }
        Ok(SourceKey {
            cluster,
            group: spec.group.clone(),
            topics,
            prometheus: config.prometheus.clone(),
            interval: config.sampling.interval,
            window: config.sampling.window,
            kafka_timeout: config.sampling.kafka_timeout,
        })
    }

    /// The entry's decision on the newest sample. Unavailable when there is
    /// no sample yet or the newest is older than `maxStaleness`.
    pub async fn evaluate(&self, entry: &Entry) -> Result<Arc<Evaluation>, ScalerError> {
        let config = &self.current.load().config;
        let max_staleness = config.sampling.max_staleness.as_secs_f64();
        let fresh = |sample_time: f64, last_error: Option<&str>| {
            let age = unix_now() - sample_time;
            if age > max_staleness {
                return Err(ScalerError::Unavailable(format!(
                    "newest sample of group {} is {age:.0}s old (maxStaleness {max_staleness:.0}s): {}",
                    entry.spec.group,
                    last_error.unwrap_or("sampling stalled")
                )));
            }
            Ok(())
        };
        let sampler = &entry.sampler;
        // The common case: nothing sampled since the last answer.
        let cached = entry.last.lock().expect("entry lock poisoned").clone();
        if let Some(last) = cached.as_ref().filter(|l| l.seq == sampler.seq()) {
            fresh(last.sample_time, None)?;
            return Ok(last.clone());
        }
        let mut view = sampler.view();
        if view.samples.is_empty() {
            sampler
                .first_attempt(config.sampling.kafka_timeout * 3)
                .await;
            view = sampler.view();
        }
        let Some(newest) = view.samples.last() else {
            return Err(ScalerError::Unavailable(format!(
                "no sample of group {} yet: {}",
                entry.spec.group,
                view.last_error.as_deref().unwrap_or("first sample pending")
            )));
        };
        fresh(newest.t, view.last_error.as_deref())?;
        let evaluation = match cached.filter(|l| l.sample_time == newest.t) {
            // A failed attempt: same newest sample, same decision.
            Some(last) => Arc::new(Evaluation {
                seq: view.seq,
                ..(*last).clone()
            }),
            None => {
                let evaluation = Arc::new(replay(entry, &view));
                self.record(entry, &evaluation);
                evaluation
            }
        };
        *entry.last.lock().expect("entry lock poisoned") = Some(evaluation.clone());
        Ok(evaluation)
    }

    fn record(&self, entry: &Entry, evaluation: &Evaluation) {
        let labels = ObjectLabels {
            scaled_object: entry.object.clone(),
        };
        let d = &evaluation.decision;
        let obs = &evaluation.observation;
        let m = &self.metrics;
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
        m.decisions
            .get_or_create(&ActionLabels {
                action: d.action.label().into(),
            })
            .inc();
        let span = tracing::info_span!("decide", scaled_object = %entry.object);
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

    /// The last evaluation of every live entry, by `namespace/name`.
    pub fn decisions(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for (_, entry) in self.entries.iter() {
            let last = entry.last.lock().expect("entry lock poisoned").clone();
            if let Some(evaluation) = last {
                out.insert(
                    entry.object.clone(),
                    serde_json::json!({
                        "metricName": entry.spec.metric_name(),
                        "consumerGroup": entry.spec.group,
                        "policy": entry.spec.policy_name,
                        "rateAware": entry.spec.params.rate_aware,
                        "desired": evaluation.decision.replicas,
                        "reason": evaluation.decision.reason.to_string(),
                        "evaluation": &*evaluation,
                    }),
                );
            }
        }
        out
    }

    /// Newest good sample time over all samplers, if any.
    pub fn freshest_sample(&self) -> Option<f64> {
        self.samplers
            .iter()
            .filter_map(|(_, s)| s.view().samples.last().map(|s| s.t))
            .fold(None, |acc: Option<f64>, t| {
                Some(acc.map_or(t, |a| a.max(t)))
            })
    }
}

/// Runs the policy over the window, oldest sample first.
fn replay(entry: &Entry, view: &crate::sampler::WindowView) -> Evaluation {
    let params = &entry.spec.params;
    let history = params.settings.cold_start_seconds();
    let mut state = State::default();
    let mut last = None;
    for (i, sample) in view.samples.iter().enumerate() {
        let window_full = sample.t - view.started_at >= history;
        let obs = observe(&entry.spec.lag_rules, &view.samples, i, window_full);
        let (decision, next) = decide(params, &state, &obs, sample.t);
        state = next;
        last = Some((sample.t, obs, decision));
    }
    let (sample_time, observation, decision) = last.expect("replay is only called with samples");
    Evaluation {
        seq: view.seq,
        sample_time,
        observation,
        decision,
        state,
    }
}

fn entry_id(namespace: &str, name: &str, metadata: &HashMap<String, String>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut hasher);
    name.hash(&mut hasher);
    let mut pairs: Vec<_> = metadata.iter().collect();
    pairs.sort();
    pairs.hash(&mut hasher);
    hasher.finish()
}
