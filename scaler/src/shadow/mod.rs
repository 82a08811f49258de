//! Shadow mode: lagrate beside the trigger a team runs today. Each target
//! of the config's `shadow:` list is sampled like a ScaledObject (same
//! samplers, same evaluation) without KEDA calling, and three series are
//! kept from the same samples: what lagrate would answer, what KEDA's
//! `kafka` trigger and the HPA would set (the simulator's KEDA and HPA
//! code, not a second implementation), and the group's actual size (its
//! member count, when the broker reports it, or the value of the target's
//! `actualQuery`). Cumulative pod-seconds and
//! the estimated wait (backlog / processing rate) of each say what a switch
//! would cost or save.

pub mod target;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use lagrate_policy::evaluate::Evaluation;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::source::prometheus::PrometheusRate;
use lagrate_sim::autoscalers::kafka_metric;
use lagrate_sim::hpa::{Behavior, Hpa};
use lagrate_sim::keda::Keda;

pub use target::{KedaTrigger, ShadowTarget};

/// The HPA's sync period (kube-controller-manager's default) and tolerance.
const HPA_SYNC_SECONDS: f64 = 15.0;
const HPA_TOLERANCE: f64 = 0.1;
/// Points of history kept per target for /debug/shadow.
const HISTORY: usize = 720;

/// One value per source.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sources<T> {
    pub lagrate: T,
    pub keda: T,
    pub actual: T,
}

/// One sample of a target: its signals and the three sizes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Unix seconds of the sample.
    pub t: f64,
    pub lag: f64,
    pub partitions: u32,
    pub replicas: Sources<Option<u32>>,
}

/// A target's state, as /debug/shadow shows it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetState {
    pub consumer_group: String,
    pub keda_settings: KedaSettingsView,
    /// The newest sample's sizes, lag and lagrate's reason.
    pub latest: Option<Point>,
    pub reason: Option<String>,
    /// Pod-seconds since the target was first sampled.
    pub pod_seconds: Sources<f64>,
    /// Backlog / processing rate at the newest sample, seconds.
    pub estimated_wait_seconds: Sources<Option<f64>>,
    /// The newest samples, oldest first.
    pub history: VecDeque<Point>,
    /// Why the target is not being sampled, if it is not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KedaSettingsView {
    pub lag_threshold: f64,
    pub min_replica_count: u32,
    pub max_replica_count: u32,
    pub polling_interval: f64,
    pub cooldown_period: f64,
}

/// Every shadow target's state.
#[derive(Default)]
pub struct Shadows {
    targets: Mutex<BTreeMap<String, TargetState>>,
    rejected: Mutex<Vec<String>>,
}

impl Shadows {
    /// /debug/shadow: the targets and the rejected entries.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "targets": &*self.targets.lock().expect("shadow lock poisoned"),
            "rejected": &*self.rejected.lock().expect("shadow lock poisoned"),
        })
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut TargetState)) {
        let mut targets = self.targets.lock().expect("shadow lock poisoned");
        if let Some(state) = targets.get_mut(name) {
            change(state);
        }
    }
}

/// Follows the config's shadow targets for the registry's life: starts a
/// task per target, and restarts them when a reload changes the list.
pub fn follow_config(registry: &Arc<Registry>, shadows: Arc<Shadows>) {
    let weak = Arc::downgrade(registry);
    tokio::spawn(async move {
        let mut running: Vec<ShadowTarget> = Vec::new();
        let mut tasks: Vec<tokio::task::AbortHandle> = Vec::new();
        loop {
            let Some(registry) = weak.upgrade() else {
                for task in &tasks {
                    task.abort();
                }
                return;
            };
            let config = registry.config();
            let (targets, rejected) = target::parse_all(&config);
            {
                let mut known = shadows.rejected.lock().expect("shadow lock poisoned");
                if *known != rejected {
                    for why in &rejected {
                        tracing::warn!(error = %why, "shadow entry rejected; the others run");
                    }
                    registry.metrics.set_shadow_rejected(rejected.len());
                    *known = rejected;
                }
            }
            if targets != running {
                for task in tasks.drain(..) {
                    task.abort();
                }
                for old in &running {
                    registry.metrics.remove_shadow(&old.name);
                }
                let mut states = shadows.targets.lock().expect("shadow lock poisoned");
                states.clear();
                for target in &targets {
                    states.insert(target.name.clone(), TargetState::new(target));
                    let task = tokio::spawn(follow(weak.clone(), shadows.clone(), target.clone()));
                    tasks.push(task.abort_handle());
                }
                running = targets;
                tracing::info!(targets = running.len(), "shadow targets (re)started");
            }
            let interval = config.sampling.interval;
            drop(registry);
            tokio::time::sleep(interval.min(Duration::from_secs(5))).await;
        }
    });
}

impl TargetState {
    fn new(target: &ShadowTarget) -> Self {
        let k = target.keda;
        TargetState {
            consumer_group: target
                .metadata
                .get("consumerGroup")
                .cloned()
                .unwrap_or_default(),
            keda_settings: KedaSettingsView {
                lag_threshold: k.lag_threshold,
                min_replica_count: k.min_replica_count,
                max_replica_count: k.max_replica_count,
                polling_interval: k.polling_interval,
                cooldown_period: k.cooldown_period,
            },
            ..TargetState::default()
        }
    }
}

/// The KEDA and HPA of a ScaledObject with the target's `kafka` trigger:
/// HPA defaults (no `behavior`), sync every 15 s.
pub fn keda_of(k: &KedaTrigger) -> Keda {
    let hpa = Hpa::new(
        k.min_replica_count.max(1),
        k.max_replica_count,
        HPA_TOLERANCE,
        Behavior::default(),
    );
    Keda::new(
        k.polling_interval,
        k.cooldown_period,
        k.min_replica_count,
        hpa,
        HPA_SYNC_SECONDS,
    )
}

/// What KEDA's trigger and the HPA set after a sample of `lag` on
/// `partitions`, with `current` replicas: the one step both the server and
/// tests take.
pub fn keda_step(
    keda: &mut Keda,
    trigger: &KedaTrigger,
    (t, current): (f64, u32),
    (lag, partitions): (f64, u32),
) -> u32 {
    let threshold = trigger.lag_threshold;
    keda.tick(
        t,
        current,
        None,
        || lag > 0.0,
        || vec![(kafka_metric(lag, threshold, partitions), threshold)],
    )
}

/// Samples one target until aborted.
#[tracing::instrument(name = "shadow", skip_all, fields(target = %target.name, group = target.metadata.get("consumerGroup").map(String::as_str).unwrap_or_default()))]
async fn follow(registry: std::sync::Weak<Registry>, shadows: Arc<Shadows>, target: ShadowTarget) {
    let actual_source = match (&target.actual_query, registry.upgrade()) {
        (Some(query), Some(reg)) => reg
            .config()
            .prometheus
            .as_ref()
            .map(|p| (PrometheusRate::new(p), query.clone())),
        _ => None,
    };
    let mut follower = Follower {
        keda: keda_of(&target.keda),
        keda_replicas: None,
        previous: None,
        actual_source,
        target,
    };
    loop {
        let Some(reg) = registry.upgrade() else {
            return;
        };
        let name = &follower.target.name;
        let interval = reg.config().sampling.interval;
        let entry = match reg.entry("shadow", name, &follower.target.metadata).await {
            Ok(entry) => entry,
            Err(e) => {
                let why = e.to_string();
                shadows.update(name, |s| s.error = Some(why));
                drop(reg);
                tokio::time::sleep(interval).await;
                continue;
            }
        };
        let mut samples = entry.sampler().subscribe();
        match reg.evaluate(&entry).await {
            Ok(evaluation)
                if follower
                    .previous
                    .as_ref()
                    .is_none_or(|p| p.t < evaluation.sample_time) =>
            {
                follower.sampled(&evaluation, &reg.metrics, &shadows).await;
            }
            Ok(_) => {}
            Err(e) => {
                let why = e.to_string();
                shadows.update(name, |s| s.error = Some(why));
            }
        }
        drop(reg);
        // The next sample, or an interval: calling keeps the key alive.
        let _ = tokio::time::timeout(interval, samples.changed()).await;
    }
}

/// One shadow target's KEDA and HPA, and what the last sample saw.
struct Follower {
    target: ShadowTarget,
    keda: Keda,
    keda_replicas: Option<u32>,
    previous: Option<Point>,
    /// Where the group's actual size is read, when not from its members.
    actual_source: Option<(PrometheusRate, String)>,
}

impl Follower {
    /// The group's actual size: the value of `actualQuery`, or else its
    /// member count.
    async fn actual(&self, members: Option<u32>) -> Option<u32> {
        let Some((prometheus, query)) = &self.actual_source else {
            return members;
        };
        match prometheus.value_of(query).await {
            Ok(value) => value.map(|v| v.round().max(0.0) as u32),
            Err(e) => {
                tracing::debug!(error = %e, "actualQuery failed");
                None
            }
        }
    }

    /// A new sample's three sizes, waits and pod-seconds, into the metrics
    /// and the target's state.
    async fn sampled(&mut self, evaluation: &Evaluation, metrics: &Metrics, shadows: &Shadows) {
        let obs = &evaluation.observation;
        let d = &evaluation.decision;
        let t = evaluation.sample_time;
        let actual = self.actual(obs.members).await;
        let trigger = &self.target.keda;
        let current = *self
            .keda_replicas
            .get_or_insert(actual.unwrap_or(trigger.min_replica_count));
        let keda_now = keda_step(
            &mut self.keda,
            trigger,
            (t, current),
            (obs.lag, obs.partitions),
        );
        self.keda_replicas = Some(keda_now);
        let point = Point {
            t,
            lag: obs.lag,
            partitions: obs.partitions,
            replicas: Sources {
                lagrate: Some(d.replicas),
                keda: Some(keda_now),
                actual,
            },
        };
        let waits = Sources {
            lagrate: wait(obs.lag, d.replicas, obs.partitions, d.capacity_per_s),
            keda: wait(obs.lag, keda_now, obs.partitions, d.capacity_per_s),
            actual: obs
                .processing_rate_per_s
                .filter(|r| *r > 0.0)
                .map(|r| obs.lag / r),
        };
        let added = self
            .previous
            .replace(point.clone())
            .map(|last| pod_seconds_since(&last, point.t))
            .unwrap_or_default();
        let name = &self.target.name;
        for (source, replicas, wait, added) in [
            (
                "lagrate",
                point.replicas.lagrate,
                waits.lagrate,
                added.lagrate,
            ),
            ("keda", point.replicas.keda, waits.keda, added.keda),
            ("actual", point.replicas.actual, waits.actual, added.actual),
        ] {
            metrics.record_shadow_source(name, source, replicas, wait, added);
        }
        metrics.record_shadow_lag(name, point.lag);
        let reason = d.reason.to_string();
        shadows.update(name, |s| {
            s.pod_seconds.lagrate += added.lagrate.unwrap_or(0.0);
            s.pod_seconds.keda += added.keda.unwrap_or(0.0);
            s.pod_seconds.actual += added.actual.unwrap_or(0.0);
            s.history.push_back(point.clone());
            while s.history.len() > HISTORY {
                s.history.pop_front();
            }
            s.latest = Some(point);
            s.reason = Some(reason);
            s.estimated_wait_seconds = waits;
            s.error = None;
        });
    }
}

/// Pod-seconds each source ran from `last` until `t`, at the sizes of
/// `last`; None for a source whose size was unknown.
fn pod_seconds_since(last: &Point, t: f64) -> Sources<Option<f64>> {
    let dt = (t - last.t).max(0.0);
    let run = |replicas: Option<u32>| replicas.map(|n| f64::from(n) * dt);
    Sources {
        lagrate: run(last.replicas.lagrate),
        keda: run(last.replicas.keda),
        actual: run(last.replicas.actual),
    }
}

/// Seconds `replicas` pods take to clear `lag` (pods beyond the partitions
/// idle); None when nothing would consume or the capacity is unknown.
fn wait(lag: f64, replicas: u32, partitions: u32, capacity: Option<f64>) -> Option<f64> {
    let consuming = replicas.min(partitions);
    match capacity {
        Some(c) if c > 0.0 && consuming > 0 => Some(lag / (f64::from(consuming) * c)),
        _ if lag <= 0.0 => Some(0.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_counts_only_pods_that_own_partitions() {
        assert_eq!(wait(1200.0, 10, 6, Some(100.0)), Some(2.0));
        assert_eq!(wait(1200.0, 0, 6, Some(100.0)), None, "nobody consumes");
        assert_eq!(wait(0.0, 0, 6, None), Some(0.0));
        assert_eq!(wait(10.0, 2, 6, None), None, "capacity unknown");
    }

    #[test]
    fn keda_scales_from_zero_on_lag_and_follows_lag_over_threshold() {
        let trigger = KedaTrigger {
            lag_threshold: 100.0,
            min_replica_count: 0,
            max_replica_count: 10,
            polling_interval: 30.0,
            cooldown_period: 300.0,
        };
        let mut keda = keda_of(&trigger);
        let t0 = 1_700_000_000.0;
        assert_eq!(keda_step(&mut keda, &trigger, (t0, 0), (0.0, 6)), 0);
        let up = keda_step(&mut keda, &trigger, (t0 + 30.0, 0), (450.0, 6));
        assert_eq!(up, 1, "activation: minReplicaCount or 1");
        let sized = keda_step(&mut keda, &trigger, (t0 + 45.0, up), (450.0, 6));
        assert_eq!(sized, 5, "ceil(450 / 100)");
    }
}
