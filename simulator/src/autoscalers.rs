//! The autoscalers compared: KEDA's Kafka trigger as configured by the
//! reference demo and tuned, the Kafka trigger plus a Prometheus rate
//! trigger, lagrate behind KEDA's external trigger, and three references
//! that are not deployable (ideal-reactive, clairvoyant; `bound` is computed
//! in the report).

use std::collections::VecDeque;
use std::sync::Arc;

use super::hpa::{Behavior, Hpa};
use super::keda::Keda;
use super::scenario::{Scenario, pods_needed};
use super::world::{TOPIC, World};
use lagrate_policy::evaluate::{Answers, Evaluation, SampleWindow, window_seconds_for};
use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets};
use lagrate_policy::sample::{PrometheusReading, Sample};
use lagrate_policy::signals::{LagRules, OffsetReset};
use lagrate_policy::{Decision, Params, PartitionCap, PolicySettings};

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
    /// Decisions that changed the answer or held it for a new reason, as
    /// `(t, text)`, for `--explain`.
    fn changes(&self) -> &[(f64, String)] {
        &[]
    }
    /// Per sample, lagrate's estimate of the next message's wait (from
    /// offsets) and the age of the oldest message not yet consumed.
    fn wait_estimates(&self) -> &[(f64, f64)] {
        &[]
    }
}

/// KEDA's Kafka trigger: total lag capped at partitions x lagThreshold.
pub fn kafka_metric(lag: f64, lag_threshold: f64, partitions: u32) -> f64 {
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
        KedaTriggers {
            name,
            keda: kafka_trigger_keda(s, Behavior::reference()),
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

/// KEDA and the HPA of a ScaledObject with KEDA's own triggers, as the
/// scenario configures them, with the given HPA behavior.
pub fn kafka_trigger_keda(s: &Scenario, behavior: Behavior) -> Keda {
    let k = &s.keda;
    let hpa = Hpa::new(
        k.min_replica_count.max(1),
        k.max_replica_count,
        k.hpa_tolerance,
        behavior,
    );
    Keda::new(
        k.polling_interval,
        k.cooldown_period,
        k.min_replica_count,
        hpa,
        k.hpa_sync_seconds,
    )
}

/// KEDA and the HPA of lagrate's ScaledObject (`k8s/base`): the scenario's
/// polling, sync and replica bounds, lagrate's cooldown, HPA tolerance 0
/// and a pass-through behavior.
pub fn lagrate_keda(s: &Scenario) -> Keda {
    let k = &s.keda;
    // The HPA's own tolerance would ignore answers within 10 % of the
    // current count (44 -> 48 pods on 48 partitions); lagrate's
    // ScaledObject sets it to 0 (HPA configurable tolerance, Kubernetes
    // 1.33+), its dead band does that job.
    let hpa = Hpa::new(
        k.min_replica_count.max(1),
        k.max_replica_count,
        LAGRATE_HPA_TOLERANCE,
        Behavior::pass_through(),
    );
    Keda::new(
        k.polling_interval,
        LAGRATE_COOLDOWN_S,
        k.min_replica_count,
        hpa,
        k.hpa_sync_seconds,
    )
}

/// lagrate behind KEDA's `external-push` trigger: the server's evaluation
/// over the window the server would keep, sampled on the same grid; the
/// HPA reads the answer at each sync (target 1, pass-through behavior) and
/// activation is pushed.
pub struct Lagrate {
    keda: Keda,
    params: Params,
    rules: LagRules,
    sample_seconds: f64,
    next_sample: f64,
    window: SampleWindow,
    /// Scaler restarts still to come, earliest last.
    restarts: Vec<f64>,
    warm_up: lagrate_policy::evaluate::WarmUp,
    /// Whether it reads the workload's scale (`scaleTarget`).
    scale_target_reported: bool,
    /// What it answered KEDA, for its replays.
    answers: Answers,
    evaluation: Option<Evaluation>,
    changes: Vec<(f64, String)>,
    /// See [`Autoscaler::wait_estimates`].
    waits: Vec<(f64, f64)>,
}

/// The `lagThreshold` of lagrate's ScaledObject in the simulated deployment.
pub const LAGRATE_LAG_THRESHOLD: f64 = 500.0;

/// The HPA tolerance lagrate's ScaledObject sets, both directions.
pub const LAGRATE_HPA_TOLERANCE: f64 = 0.0;

/// KEDA cooldown for lagrate's ScaledObject: lagrate's idle window already
/// keeps one pod before scaling to zero.
const LAGRATE_COOLDOWN_S: f64 = 30.0;

impl Lagrate {
    /// lagrate as it runs when the scenario starts: it has sampled the
    /// initial load for longer than its window.
    pub fn new(s: &Scenario) -> Self {
        let mut lagrate = Self::new_replica(s);
        for sample in history_before_start(s, lagrate.window.keep_seconds()) {
            lagrate.window.push(Arc::new(sample));
        }
        lagrate
    }

    /// A scaler replica that has just started: its window is empty.
    pub fn new_replica(s: &Scenario) -> Self {
        let params = Self::params(s);
        let window = SampleWindow::new(window_seconds_for(&params.settings, s.sample_seconds));
        let mut restarts = s.scaler_restarts.clone();
        restarts.sort_by(|a, b| b.total_cmp(a));
        Lagrate {
            keda: lagrate_keda(s),
            params,
            rules: Self::lag_rules(),
            sample_seconds: s.sample_seconds,
            next_sample: 0.0,
            window,
            restarts,
            warm_up: s.warm_up,
            scale_target_reported: s.scale_target_reported,
            answers: Answers::default(),
            evaluation: None,
            changes: Vec::new(),
            waits: Vec::new(),
        }
    }

    /// What lagrate's ScaledObject and config say in the simulated
    /// deployment: the scenario's policy (or the default one with the
    /// scenario's maxReplicaCount), podCapacity from the scenario unless the
    /// policy sets it, `lagThreshold: 500`, KEDA's partition cap.
    pub fn params(s: &Scenario) -> Params {
        // Without a policy of its own, the SRE has configured the assignor
        // their consumers use.
        let mut settings = s.policy.clone().unwrap_or_else(|| PolicySettings {
            max_replicas: s.keda.max_replica_count,
            rebalance: s.rebalance,
            ..PolicySettings::default()
        });
        settings.pod_capacity = settings.pod_capacity.or(Some(s.pod_capacity));
        Params {
            settings,
            lag_threshold: LAGRATE_LAG_THRESHOLD,
            activation_lag_threshold: 0.0,
            cap: PartitionCap::Partitions,
            rate_aware: true,
        }
    }

    /// KEDA's default lag rules.
    pub fn lag_rules() -> LagRules {
        LagRules {
            offset_reset: OffsetReset::Latest,
            scale_to_zero_on_invalid_offset: false,
            exclude_persistent_lag: false,
        }
    }

    /// The newest evaluation.
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.evaluation.as_ref()
    }

    /// A sample lands: what the server's sampler and registry do with it.
    pub fn on_sample(&mut self, sample: Sample) -> Option<&Evaluation> {
        self.window.push(Arc::new(sample));
        self.evaluation = self
            .window
            .evaluate(&self.params, &self.rules, &self.answers);
        if let Some(e) = &self.evaluation {
            let keep = self.window.keep_seconds();
            self.answers.record(
                e.sample_time,
                e.decision.replicas,
                e.given(self.warm_up),
                keep,
            );
        }
        self.evaluation.as_ref()
    }
}

/// The samples a scaler that has run since long before t = 0 holds at
/// t = 0: the initial load, kept up with by the initial group, on the grid.
/// Offsets count back from the world's zero at t = 0.
fn history_before_start(s: &Scenario, keep_seconds: f64) -> Vec<Sample> {
    let rate = s.rate_at(0.0);
    let shares = s.partition_shares();
    let intervals = (keep_seconds / s.sample_seconds).ceil() as i64;
    (1..=intervals)
        .rev()
        .map(|k| {
            let t = -(k as f64) * s.sample_seconds;
            Sample {
                t,
                offsets: OffsetSnapshot {
                    partitions: shares
                        .iter()
                        .enumerate()
                        .map(|(p, share)| {
                            let offset = (rate * share * t).floor() as i64;
                            PartitionOffsets {
                                topic: Arc::from(TOPIC),
                                partition: p as i32,
                                high_watermark: offset,
                                committed: Some(offset),
                            }
                        })
                        .collect(),
                    members: Some(s.replicas_at_start()),
                },
                prometheus: PrometheusReading::NotConfigured,
                target_replicas: None,
            }
        })
        .collect()
}

impl Autoscaler for Lagrate {
    fn name(&self) -> &'static str {
        "lagrate"
    }

    fn tick(&mut self, t: f64, current: u32, world: &World, _truth: &Truth<'_>) -> u32 {
        if self.restarts.last().is_some_and(|r| *r <= t) {
            self.restarts.pop();
            self.window.clear();
            self.answers.clear();
        }
        let mut pushed = None;
        if t >= self.next_sample {
            self.next_sample += self.sample_seconds;
            let was = self
                .evaluation
                .as_ref()
                .map(|e| (e.decision.active, e.decision.replicas, e.decision.action));
            let sample = Sample {
                t,
                offsets: world.snapshot(),
                prometheus: PrometheusReading::NotConfigured,
                target_replicas: self.scale_target_reported.then_some(current),
            };
            let warm_up = self.warm_up;
            let mut estimated = None;
            if let Some(e) = self.on_sample(sample) {
                estimated = e.observation.estimated_wait_s;
                let d = &e.decision;
                if Some(d.active) != was.map(|w| w.0) && e.given(warm_up) {
                    pushed = Some(d.active);
                }
                // The answer changed, or it holds for a new reason.
                let new_hold = d.action.is_hold() && Some(d.action) != was.map(|w| w.2);
                if Some(d.replicas) != was.map(|w| w.1) || new_hold {
                    let mut line = format!(
                        "lag {:.0} rate {:.0}/s: {}",
                        e.observation.lag,
                        e.observation.inbound_rate_per_s.unwrap_or(0.0),
                        d.reason
                    );
                    if let Some(plan) = &d.plan {
                        line = format!("{line}\n{}", plan.to_string().trim_end());
                    }
                    self.changes.push((t, line));
                }
            }
            if let Some(wait) = estimated {
                self.waits.push((wait, world.oldest_unconsumed_age(t)));
            }
        }
        // A replica still warming up with no group size answers
        // Unavailable: KEDA keeps the activity as it is and the HPA holds.
        let (active, metrics) = match self.evaluation.as_ref() {
            Some(e) if e.given(self.warm_up) => (
                e.decision.active,
                vec![(f64::from(e.decision.replicas), 1.0)],
            ),
            Some(_) => (current > 0, Vec::new()),
            None => (false, vec![(0.0, 1.0)]),
        };
        self.keda
            .tick(t, current, pushed, || active, || metrics.clone())
    }

    fn last_decision(&self) -> Option<&Decision> {
        self.evaluation.as_ref().map(|e| &e.decision)
    }

    fn changes(&self) -> &[(f64, String)] {
        &self.changes
    }

    fn wait_estimates(&self) -> &[(f64, f64)] {
        &self.waits
    }
}

/// Knows the exact current load and backlog at every instant and sizes for
/// them with lagrate's headroom and drain time, with no KEDA or HPA in
/// between and no hysteresis but one: it does not shrink while a backlog is
/// still draining.
pub struct IdealReactive {
    settings: PolicySettings,
    lead_seconds: f64,
    name: &'static str,
    /// Its answers go through KEDA and the HPA as lagrate's do (sampled by
    /// the HPA at its sync), or act at once.
    keda: Option<Keda>,
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
            keda: None,
        }
    }

    /// The same knowledge behind lagrate's ScaledObject: KEDA's activation
    /// and the HPA's sync stand between the answer and the pods, as they
    /// do for any external scaler. What no policy behind KEDA can beat:
    /// the part of a gap to ideal-reactive that is the pipeline's.
    pub fn behind_keda(s: &Scenario) -> Self {
        IdealReactive {
            settings: PolicySettings::default(),
            lead_seconds: 0.0,
            name: "ideal-behind-keda",
            keda: Some(lagrate_keda(s)),
        }
    }

    /// Also knows the future: sizes at each instant for the most the next
    /// S + R seconds will need, so capacity is ready before the load arrives.
    pub fn clairvoyant(s: &Scenario) -> Self {
        IdealReactive {
            settings: PolicySettings::default(),
            lead_seconds: s.startup_seconds + s.rebalance_seconds,
            name: "clairvoyant",
            keda: None,
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
        let need = pods_needed(demand, s.partitions, s.pod_capacity, s.hottest_share());
        let draining = backlog > 2.0 * rate * s.batch_seconds + f64::from(s.partitions);
        let answer = if need < current && draining {
            current
        } else {
            need
        };
        match &mut self.keda {
            None => answer,
            // Activation pushed the moment there is work, as lagrate's
            // external-push trigger does.
            Some(keda) => keda.tick(
                t,
                current,
                (answer > 0).then_some(true),
                || answer > 0,
                || vec![(f64::from(answer), 1.0)],
            ),
        }
    }
}
