//! One entry per ScaledObject trigger: its parsed spec, the sampler it
//! reads, and its last decision. Entries and samplers nobody asks about
//! expire. Decisions are replayed from the sampler's window, so they are a
//! deterministic function of the samples: two scaler replicas with the same
//! window give the same answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::future::Cache;

use crate::clock::{timed, unix_now};
use crate::config::Config;
use crate::error::ScalerError;
use crate::metrics::{Metrics, ObjectLabels};
use crate::sampler::{Sampler, SourceKey, source_key};
use crate::source::{SourceError, SourceFactory};
use crate::trigger::{self, ClusterRef, TriggerSpec};
use lagrate_policy::evaluate::{Answers, Evaluation, SampleWindow};

/// The evaluation an entry last answered with, and the sampler attempt it
/// was computed at.
#[derive(Debug, Clone)]
struct Answer {
    seq: u64,
    evaluation: Arc<Evaluation>,
}

/// Identifies a ScaledObject trigger: two triggers of one ScaledObject
/// differ in their metadata (kept as sorted pairs: one entry's key is
/// ~200 bytes, not a tree's ~550).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub metadata: Box<[(Box<str>, Box<str>)]>,
}

impl EntryKey {
    pub fn new(namespace: &str, name: &str, metadata: &HashMap<String, String>) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = metadata
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect();
        pairs.sort_unstable();
        Self {
            namespace: namespace.into(),
            name: name.into(),
            metadata: pairs.into(),
        }
    }
}

/// Whether a sample taken at `sample_time` may still be answered with at
/// `now`: the one freshness rule of requests and readiness.
pub fn is_fresh(sample_time: f64, now: f64, max_staleness: Duration) -> bool {
    now - sample_time <= max_staleness.as_secs_f64()
}

/// One ScaledObject trigger.
pub struct Entry {
    key: Arc<EntryKey>,
    /// `namespace/name`.
    pub object: String,
    /// The labels of its metric series.
    pub labels: ObjectLabels,
    pub spec: TriggerSpec,
    generation: u64,
    sampler: Arc<Sampler>,
    last: Mutex<Option<Answer>>,
    /// What this trigger answered, for the replays.
    answers: Mutex<Answers>,
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
    /// Keyed by the entry's own key: one copy of its metadata.
    entries: Cache<Arc<EntryKey>, Arc<Entry>>,
    samplers: Cache<SourceKey, Arc<Sampler>>,
    /// The entries that read each sampler (by its address, which the task
    /// serving them keeps from reuse), evaluated together when it lands a
    /// sample: one task per source key rather than one per trigger.
    followers: Arc<Mutex<HashMap<usize, Vec<Weak<Entry>>>>>,
    factory: Arc<dyn SourceFactory>,
    /// Kafka calls in flight at once, over all samplers.
    kafka_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(config: Config, factory: Arc<dyn SourceFactory>, metrics: Arc<Metrics>) -> Self {
        let idle = config.sampling.idle_expiry;
        let kafka_slots = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(config.limits.kafka_concurrency).unwrap_or(usize::MAX),
        ));
        Registry {
            kafka_slots,
            current: ArcSwap::from_pointee(Current {
                config,
                generation: 0,
            }),
            entries: Cache::builder().time_to_idle(idle).build(),
            samplers: Cache::builder().time_to_idle(idle).build(),
            followers: Arc::default(),
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
        let id = EntryKey::new(namespace, name, metadata);
        if let Some(entry) = self.entries.get(&id).await
            && entry.generation == current.generation
        {
            // A call keeps the sampler alive as long as the entry.
            self.samplers.get(&entry.sampler.key).await;
            return Ok(entry);
        }
        let spec = trigger::parse(metadata, &current.config)?;
        let key = source_key(&spec, &current.config, namespace)?;
        let limits = current.config.limits;
        if !self.entries.contains_key(&id) {
            self.entries.run_pending_tasks().await;
            if self.entries.entry_count() >= limits.max_entries {
                return Err(ScalerError::Limit {
                    limit: "limits.maxEntries",
                    value: limits.max_entries,
                });
            }
        }
        if !self.samplers.contains_key(&key) {
            self.samplers.run_pending_tasks().await;
            if self.samplers.entry_count() >= limits.max_source_keys {
                return Err(ScalerError::Limit {
                    limit: "limits.maxSourceKeys",
                    value: limits.max_source_keys,
                });
            }
            if let ClusterRef::Inline(_) = &spec.cluster {
                self.check_inline_clusters(&key, &current.config)?;
            }
        }
        let factory = self.factory.clone();
        let metrics = self.metrics.clone();
        let kafka_slots = self.kafka_slots.clone();
        let sampler = self
            .samplers
            .try_get_with(key.clone(), async move {
                let source = factory.offsets(&key.offsets)?;
                Ok::<_, SourceError>(Sampler::start(key, source, kafka_slots, metrics))
            })
            .await
            .map_err(|e: Arc<SourceError>| ScalerError::Source((*e).clone()))?;
        self.metrics.set_source_keys(self.samplers.entry_count());
        let object = format!("{namespace}/{name}");
        let labels = ObjectLabels {
            scaled_object: Arc::new(object.clone()),
            consumer_group: Arc::new(spec.group.clone()),
            topic: Arc::new(spec.topics.as_deref().unwrap_or_default().join(",")),
        };
        let id = Arc::new(id);
        let entry = Arc::new(Entry {
            key: id.clone(),
            object,
            labels,
            spec,
            generation: current.generation,
            sampler,
            last: Mutex::new(None),
            answers: Mutex::new(Answers::default()),
        });
        self.entries.insert(id, entry.clone()).await;
        self.evaluate_on_every_sample(&entry);
        Ok(entry)
    }

    /// A new sampler on an inline cluster: refused when it would make more
    /// distinct inline clusters than `limits.maxInlineClusters` (each one
    /// is a Kafka client with threads of its own).
    fn check_inline_clusters(&self, key: &SourceKey, config: &Config) -> Result<(), ScalerError> {
        let named: Vec<&kafka_settings::ClusterSettings> = config.clusters.values().collect();
        let mut inline: std::collections::HashSet<Vec<String>> = self
            .samplers
            .iter()
            .map(|(k, _)| k.offsets.cluster.clone())
            .filter(|c| !named.contains(&c))
            .map(|c| c.bootstrap_servers)
            .collect();
        inline.insert(key.offsets.cluster.bootstrap_servers.clone());
        let limit = config.limits.max_inline_clusters;
        if inline.len() as u64 > limit {
            return Err(ScalerError::Limit {
                limit: "limits.maxInlineClusters",
                value: limit,
            });
        }
        Ok(())
    }

    /// Marks the entry and its sampler as in use, as a call does: an open
    /// StreamIsActive keeps its ScaledObject from expiring, so a later call
    /// finds the same sampler rather than starting a second one.
    pub async fn touch(&self, entry: &Entry) {
        self.entries.get(&entry.key).await;
        self.samplers.get(&entry.sampler.key).await;
    }

    /// Replays the policy when a sample lands rather than in the next
    /// KEDA call, so requests find the answer ready: the entry joins its
    /// sampler's followers, and the first one starts the task that
    /// evaluates them all on each sample. The task ends once its sampler,
    /// its followers or the registry are gone.
    fn evaluate_on_every_sample(self: &Arc<Self>, entry: &Arc<Entry>) {
        let sampler = Arc::downgrade(&entry.sampler);
        let id = sampler.as_ptr() as usize;
        {
            let mut followers = self.followers.lock().expect("followers lock poisoned");
            let list = followers.entry(id).or_default();
            list.retain(|e| e.strong_count() > 0);
            list.push(Arc::downgrade(entry));
            if list.len() > 1 {
                return;
            }
        }
        let registry = Arc::downgrade(self);
        let followers = self.followers.clone();
        let mut samples = entry.sampler.subscribe();
        tokio::spawn(async move {
            // Holding `sampler` (weak) keeps its address from reuse while
            // this task serves it.
            let _sampler = sampler;
            // The followers still alive, the others forgotten; none left
            // ends the task (and a later follower starts a new one).
            let live = || {
                let mut all = followers.lock().expect("followers lock poisoned");
                let Some(list) = all.get_mut(&id) else {
                    return Vec::new();
                };
                list.retain(|e| e.strong_count() > 0);
                let entries: Vec<Arc<Entry>> = list.iter().filter_map(Weak::upgrade).collect();
                if entries.is_empty() {
                    all.remove(&id);
                }
                entries
            };
            while samples.changed().await.is_ok() {
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                let entries = live();
                if entries.is_empty() {
                    return;
                }
                for entry in entries {
                    // Boxed: the evaluation's state lives only while it runs.
                    let _ = Box::pin(registry.evaluate(&entry)).await;
                    // Calls waiting for a worker go before the next entry.
                    tokio::task::yield_now().await;
                }
            }
            followers
                .lock()
                .expect("followers lock poisoned")
                .remove(&id);
        });
    }

    /// The entry's decision on the newest sample. Unavailable when there is
    /// no sample yet or the newest is older than `maxStaleness`.
    pub async fn evaluate(&self, entry: &Entry) -> Result<Arc<Evaluation>, ScalerError> {
        let (max_staleness, kafka_timeout) = {
            let sampling = &self.current.load().config.sampling;
            (sampling.max_staleness, sampling.kafka_timeout)
        };
        let now = unix_now();
        let fresh = |sample_time: f64, cause: Option<&SourceError>| {
            if is_fresh(sample_time, now, max_staleness) {
                return Ok(());
            }
            Err(ScalerError::Stale {
                group: entry.spec.group.clone(),
                age_s: now - sample_time,
                max_staleness_s: max_staleness.as_secs_f64(),
                cause: cause.cloned(),
            })
        };
        let sampler = &entry.sampler;
        // The common case: nothing sampled since the last answer.
        let cached = entry.last.lock().expect("entry lock poisoned").clone();
        if let Some(last) = cached.as_ref().filter(|l| l.seq == sampler.seq()) {
            fresh(last.evaluation.sample_time, None)?;
            return Ok(last.evaluation.clone());
        }
        if sampler.newest_sample_time().is_none() {
            sampler.first_attempt(kafka_timeout * 3).await;
        }
        // Evaluated under the window's read lock: no copy of the window.
        let (evaluation, seq, new) = sampler.read(|window, last_error, seq| {
            let Some(newest) = window.newest() else {
                return Err(ScalerError::NoSample {
                    group: entry.spec.group.clone(),
                    cause: last_error.cloned(),
                });
            };
            fresh(newest.t, last_error)?;
            Ok(
                match cached.filter(|l| l.evaluation.sample_time == newest.t) {
                    // A failed attempt: same newest sample, same decision.
                    Some(last) => (last.evaluation, seq, false),
                    None => {
                        let mut answers = entry.answers.lock().expect("answers lock poisoned");
                        let (evaluation, seconds) =
                            timed(|| evaluate_window(&entry.spec, window, &answers));
                        self.metrics.observe_evaluation(seconds);
                        let evaluation =
                            Arc::new(evaluation.expect("a window with a newest sample evaluates"));
                        let warm_up = self.current.load().config.sampling.warm_up;
                        answers.record(
                            evaluation.sample_time,
                            evaluation.decision.replicas,
                            evaluation.given(warm_up),
                            window.keep_seconds(),
                        );
                        (evaluation, seq, true)
                    }
                },
            )
        })?;
        if new {
            self.record(entry, &evaluation);
        }
        *entry.last.lock().expect("entry lock poisoned") = Some(Answer {
            seq,
            evaluation: evaluation.clone(),
        });
        Ok(evaluation)
    }

    /// The entry's decision as KEDA may receive it: [`Registry::evaluate`],
    /// and Unavailable from a replica still warming up that cannot see the
    /// group's size (unless `sampling.warmUp: answer`).
    /// IsActive's answer: the policy's once its evaluation may go to KEDA;
    /// during the warm-up, true as soon as one sample shows work (lag above
    /// `activationLagThreshold`, or traffic for rate-aware triggers), since
    /// activation needs no history; otherwise Unavailable, as GetMetrics.
    pub async fn activation(&self, entry: &Entry) -> Result<bool, ScalerError> {
        let evaluation = self.evaluate(entry).await?;
        let warm_up = self.current.load().config.sampling.warm_up;
        if evaluation.given(warm_up) {
            Ok(evaluation.decision.active)
        } else if lagrate_policy::activated(&entry.spec.params, &evaluation.observation) {
            Ok(true)
        } else {
            Err(ScalerError::WarmingUp {
                group: entry.spec.group.clone(),
            })
        }
    }

    pub async fn answer(&self, entry: &Entry) -> Result<Arc<Evaluation>, ScalerError> {
        let evaluation = self.evaluate(entry).await?;
        let warm_up = self.current.load().config.sampling.warm_up;
        if evaluation.given(warm_up) {
            Ok(evaluation)
        } else {
            Err(ScalerError::WarmingUp {
                group: entry.spec.group.clone(),
            })
        }
    }

    /// Exports one trigger's decision and logs it in a span naming its
    /// ScaledObject (at info when the answer changes).
    fn record(&self, entry: &Entry, evaluation: &Evaluation) {
        self.metrics.record_decision(evaluation);
        let d = &evaluation.decision;
        let before = entry.last.lock().expect("entry lock poisoned").clone();
        let changed = before.is_none_or(|b| b.evaluation.decision.replicas != d.replicas);
        let obs = &evaluation.observation;
        let span = tracing::info_span!("decide", scaled_object = %entry.object);
        let _guard = span.enter();
        if changed {
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

    /// The last evaluation of every live entry, by `namespace/name`; a
    /// ScaledObject with several lagrate triggers lists each as
    /// `namespace/name (group/topics)`.
    pub fn decisions(&self) -> BTreeMap<String, serde_json::Value> {
        let entries: Vec<Arc<Entry>> = self.entries.iter().map(|(_, e)| e).collect();
        let mut triggers: HashMap<&str, usize> = HashMap::new();
        for entry in &entries {
            *triggers.entry(entry.object.as_str()).or_default() += 1;
        }
        let triggers_of = |object: &str| triggers.get(object).copied().unwrap_or(0);
        let mut out = BTreeMap::new();
        for entry in &entries {
            let last = entry.last.lock().expect("entry lock poisoned").clone();
            if let Some(Answer { evaluation, .. }) = last {
                let key = if triggers_of(&entry.object) > 1 {
                    let l = &entry.labels;
                    format!("{} ({}/{})", entry.object, l.consumer_group, l.topic)
                } else {
                    entry.object.clone()
                };
                out.insert(
                    key,
                    serde_json::json!({
                        "metricName": entry.spec.metric_name(),
                        "consumerGroup": entry.spec.group,
                        "policy": entry.spec.policy_name,
                        "rateAware": entry.spec.params.rate_aware,
                        "desired": evaluation.decision.replicas,
                        "reason": evaluation.decision.reason.to_string(),
                        "sampling": entry.sampler.health(),
                        "evaluation": &*evaluation,
                    }),
                );
            }
        }
        out
    }

    /// The `/metrics` text in pieces: the registered families, then each
    /// live trigger's gauges written from its last evaluation.
    pub fn exposition(&self) -> impl Iterator<Item = String> + Send + 'static {
        let objects = self
            .entries
            .iter()
            .filter_map(|(_, entry)| {
                let last = entry.last.lock().expect("entry lock poisoned");
                let evaluation = last.as_ref()?.evaluation.clone();
                Some((entry.labels.clone(), evaluation))
            })
            .collect();
        self.metrics.exposition(objects)
    }

    /// The whole `/metrics` text at once.
    pub fn encode_metrics(&self) -> String {
        self.exposition().collect()
    }

    /// Whether any sampler has a sample fresh enough to answer with.
    pub fn has_fresh_sample(&self) -> bool {
        let max_staleness = self.current.load().config.sampling.max_staleness;
        let now = unix_now();
        self.samplers.iter().any(|(_, s)| {
            s.newest_sample_time()
                .is_some_and(|t| is_fresh(t, now, max_staleness))
        })
    }

    /// Live entries (ScaledObject triggers) and source keys, after expiring
    /// what has been idle past `idleExpiry`.
    pub async fn expire_idle(&self) -> (u64, u64) {
        self.entries.run_pending_tasks().await;
        self.samplers.run_pending_tasks().await;
        let keys = self.samplers.entry_count();
        self.metrics.set_source_keys(keys);
        (self.entries.entry_count(), keys)
    }

    /// Expires idle entries and samplers on a timer, not only when a request
    /// arrives; ends with the registry.
    pub fn expire_on_a_timer(self: &Arc<Self>) {
        let registry = Arc::downgrade(self);
        let every = (self.config().sampling.idle_expiry / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                registry.expire_idle().await;
            }
        });
    }
}

/// A trigger's evaluation of a sampler's window: the server's path through
/// [`crate::evaluate`], the same the simulator takes.
pub fn evaluate_window(
    spec: &TriggerSpec,
    window: &SampleWindow,
    answers: &Answers,
) -> Option<Evaluation> {
    window.evaluate(&spec.params, &spec.lag_rules, answers)
}
