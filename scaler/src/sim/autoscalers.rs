//! The autoscalers compared: KEDA's Kafka trigger as configured by the
//! reference demo and tuned, the Kafka trigger plus a Prometheus rate
//! trigger, lagrate behind KEDA's external trigger, and three references
//! that are not deployable (ideal-reactive, clairvoyant; `bound` is computed
//! in the report).

use std::collections::VecDeque;
use std::sync::Arc;

use super::hpa::{Behavior, Hpa, Keda};
use super::scenario::Scenario;
use super::world::World;
use crate::policy::{Decision, Params, PartitionCap, PolicySettings, State, decide};
use crate::signals::{PrometheusReading, Sample, observe};
use crate::trigger::{LagRules, OffsetReset};

/// What an autoscaler may look at besides the world: the true load.
pub struct Truth<'a> {
    pub scenario: &'a Scenario,
}

/// Decides the Deployment's replicas, called every step.
pub trait Autoscaler {
    fn name(&self) -> &'static str;
    fn tick(&mut self, t: f64, current: u32, world: &World, truth: &Truth<'_>) -> u32;
    /// The last lagrate decision, for reports.
    fn last_decision(&self) -> Option<&Decision> {
        None
    }
    /// Decisions that changed the answer, as `(t, text)`, for `--explain`.
    fn changes(&self) -> &[(f64, String)] {
        &[]
    }
}

/// KEDA's Kafka trigger: total lag capped at partitions x lagThreshold.
fn kafka_metric(lag: f64, lag_threshold: f64, partitions: u32) -> f64 {
    // KEDA: if lag / threshold exceeds the partition count, report
    // partitions x threshold (allowIdleConsumers false).
    if (lag / lag_threshold).floor() > f64::from(partitions) {
        f64::from(partitions) * lag_threshold
    } else {
        lag
    }
}

/// KEDA with a Kafka trigger and optionally a Prometheus rate trigger.
pub struct KedaTriggers {
    name: &'static str,
    keda: Keda,
    lag_threshold: f64,
    /// Target of the Prometheus rate trigger (msg/s per pod), if any.
    rate_target: Option<f64>,
    arrivals: VecDeque<(f64, f64)>,
}

impl KedaTriggers {
    pub fn new(
        name: &'static str,
        s: &Scenario,
        lag_threshold: f64,
        rate_target: Option<f64>,
    ) -> Self {
        let k = &s.keda;
        let hpa = Hpa::new(
            k.min_replica_count.max(1),
            k.max_replica_count,
            k.hpa_tolerance,
            Behavior::reference(),
        );
        KedaTriggers {
            name,
            keda: Keda::new(
                k.polling_interval,
                k.cooldown_period,
                k.min_replica_count,
                hpa,
                k.hpa_sync_seconds,
            ),
            lag_threshold,
            rate_target,
            arrivals: VecDeque::new(),
        }
    }

    /// Prometheus `rate(...[1m])` of the topic's inbound counter.
    fn rate_1m(&self) -> f64 {
        match (self.arrivals.front(), self.arrivals.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => ((b.1 - a.1) / (b.0 - a.0)).max(0.0),
            _ => 0.0,
        }
    }
}

impl Autoscaler for KedaTriggers {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tick(&mut self, t: f64, current: u32, world: &World, truth: &Truth<'_>) -> u32 {
        self.arrivals.push_back((t, world.arrived_total()));
        while self.arrivals.front().is_some_and(|a| t - a.0 > 60.0) {
            self.arrivals.pop_front();
        }
        let lag = world.lag();
        let rate = self.rate_1m();
        let partitions = truth.scenario.partitions;
        let (threshold, rate_target) = (self.lag_threshold, self.rate_target);
        self.keda.tick(
            t,
            current,
            None,
            || lag > 0.0 || rate_target.is_some() && rate > 0.0,
            || {
                let mut metrics = vec![(kafka_metric(lag, threshold, partitions), threshold)];
                if let Some(target) = rate_target {
                    metrics.push((rate, target));
                }
                metrics
            },
        )
    }
}

/// lagrate behind KEDA's `external-push` trigger: the policy runs on its own
/// samples; the HPA reads the answer at each sync (target 1, pass-through
/// behavior) and activation is pushed.
pub struct Lagrate {
    keda: Keda,
    params: Params,
    rules: LagRules,
    sample_seconds: f64,
    next_sample: f64,
    window: Vec<Arc<Sample>>,
    state: State,
    decision: Option<Decision>,
    changes: Vec<(f64, String)>,
}

/// KEDA cooldown for lagrate's ScaledObject: lagrate's idle window already
/// keeps one pod before scaling to zero.
const LAGRATE_COOLDOWN_S: f64 = 30.0;

impl Lagrate {
    pub fn new(s: &Scenario) -> Self {
        let k = &s.keda;
        // The HPA's own tolerance would ignore answers within 10 % of the
        // current count (44 -> 48 pods on 48 partitions); lagrate's
        // ScaledObject sets it to 0 (HPA configurable tolerance, Kubernetes
        // 1.33+), its dead band does that job.
        let hpa = Hpa::new(
            k.min_replica_count.max(1),
            k.max_replica_count,
            0.0,
            Behavior::pass_through(),
        );
        Lagrate {
            keda: Keda::new(
                k.polling_interval,
                LAGRATE_COOLDOWN_S,
                k.min_replica_count,
                hpa,
                k.hpa_sync_seconds,
            ),
            params: Params {
                settings: PolicySettings {
                    pod_capacity: Some(s.pod_capacity),
                    max_replicas: k.max_replica_count,
                    ..PolicySettings::default()
                },
                lag_threshold: 500.0,
                activation_lag_threshold: 0.0,
                cap: PartitionCap::Partitions,
                rate_aware: true,
            },
            rules: LagRules {
                offset_reset: OffsetReset::Latest,
                scale_to_zero_on_invalid_offset: false,
                exclude_persistent_lag: false,
            },
            sample_seconds: s.sample_seconds,
            next_sample: 0.0,
            window: Vec::new(),
            // The scaler has been running: its last answer is what runs.
            state: State {
                replicas: Some(s.replicas_at_start()),
                ..State::default()
            },
            decision: None,
            changes: Vec::new(),
        }
    }
}

impl Autoscaler for Lagrate {
    fn name(&self) -> &'static str {
        "lagrate"
    }

    fn tick(&mut self, t: f64, current: u32, world: &World, _truth: &Truth<'_>) -> u32 {
        let mut pushed = None;
        if t >= self.next_sample {
            self.next_sample += self.sample_seconds;
            self.window.push(Arc::new(Sample {
                t,
                offsets: world.snapshot(),
                prometheus: PrometheusReading::NotConfigured,
            }));
            // observe() looks back 15 s at most.
            if self.window.len() > 32 {
                self.window.drain(..self.window.len() - 32);
            }
            // The scaler has been running long before the scenario starts.
            let obs = observe(&self.rules, &self.window, self.window.len() - 1, true);
            let (decision, state) = decide(&self.params, &self.state, &obs, t);
            let was_active = self.decision.as_ref().is_some_and(|d| d.active);
            if decision.active != was_active {
                pushed = Some(decision.active);
            }
            if self.decision.as_ref().map(|d| d.replicas) != Some(decision.replicas) {
                self.changes.push((
                    t,
                    format!(
                        "lag {:.0} rate {:.0}/s: {}",
                        obs.lag,
                        obs.inbound_rate_per_s.unwrap_or(0.0),
                        decision.reason
                    ),
                ));
            }
            self.state = state;
            self.decision = Some(decision);
        }
        let (active, value) = self
            .decision
            .as_ref()
            .map_or((false, 0.0), |d| (d.active, f64::from(d.replicas)));
        self.keda
            .tick(t, current, pushed, || active, || vec![(value, 1.0)])
    }

    fn last_decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    fn changes(&self) -> &[(f64, String)] {
        &self.changes
    }
}

/// The smallest partition-aware pod count that serves `demand` msg/s (all
/// partitions when one partition alone needs more than a pod).
pub fn pods_needed(demand: f64, partitions: u32, pod_capacity: f64) -> u32 {
    crate::policy::partition_aware_pods(demand, partitions, pod_capacity).unwrap_or(partitions)
}

/// Knows the exact current load and backlog at every instant and sizes for
/// them with lagrate's headroom and drain time, with no KEDA or HPA in
/// between and no hysteresis but one: it does not shrink while a backlog is
/// still draining.
pub struct IdealReactive {
    settings: PolicySettings,
    lead_seconds: f64,
    name: &'static str,
}

impl Default for IdealReactive {
    fn default() -> Self {
        Self::new()
    }
}

impl IdealReactive {
    pub fn new() -> Self {
        IdealReactive {
            settings: PolicySettings::default(),
            lead_seconds: 0.0,
            name: "ideal-reactive",
        }
    }

    /// Also knows the future: sizes at each instant for the most the next
    /// S + R seconds will need, so capacity is ready before the load arrives.
    pub fn clairvoyant(s: &Scenario) -> Self {
        IdealReactive {
            settings: PolicySettings::default(),
            lead_seconds: s.startup_seconds + s.rebalance_seconds,
            name: "clairvoyant",
        }
    }
}

impl Autoscaler for IdealReactive {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tick(&mut self, t: f64, current: u32, world: &World, truth: &Truth<'_>) -> u32 {
        let s = truth.scenario;
        let backlog = world.queued();
        let mut rate = s.rate_at(t);
        let mut x = 5.0;
        while x <= self.lead_seconds {
            rate = rate.max(s.rate_at(t + x));
            x += 5.0;
        }
        // Backlog the headroom drains within the drain time needs no pods.
        let headroom = rate * self.settings.headroom;
        let excess = (backlog - headroom * self.settings.drain_seconds).max(0.0);
        let demand = rate + headroom + excess / self.settings.drain_seconds;
        let need = pods_needed(demand, s.partitions, s.pod_capacity);
        let draining = backlog > 2.0 * rate * s.batch_seconds + f64::from(s.partitions);
        if need < current && draining {
            current
        } else {
            need
        }
    }
}
