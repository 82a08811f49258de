//! The scaling policy: observations in, desired replicas out.
//!
//! Pure: no I/O, no clock reads, no randomness. `now` is an argument, and
//! everything the policy remembers is in [`State`], returned with each
//! [`Decision`]. The server and the simulator run this same code.
//!
//! Two ways of sizing, chosen by the trigger:
//! * lag-only (KEDA's Kafka keys only): `ceil(lag / lagThreshold)`, capped at
//!   the partitions, exactly what KEDA's Kafka scaler makes the HPA do;
//! * rate-aware (a `policy` or `podCapacity`): the smallest partition-aware
//!   pod count that serves `λ·(1+headroom) + backlog/drainSeconds` at `c`
//!   messages per second per pod.
//!
//! Both then go through the same hysteresis: one step up to the need, a
//! settle window through start-up and rebalance in which backlog inside the
//! projection is not new demand, scale-down only after the need stayed lower
//! for the stabilization window, a dead band, no scale-down from a cold
//! start, and scale to zero only after an idle window.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Below this inbound rate (msg/s) a topic counts as idle.
const IDLE_RATE_PER_S: f64 = 1e-3;
/// A steady rate this much above the one seen when the need fell counts as
/// a ramp, and holds the scale-down.
const RAMP_LEAD: f64 = 0.02;
/// Shortest share of the stabilization window a scale-down waits.
const MIN_STABILIZATION_SHARE: f64 = 0.2;
/// Weight of a new capacity sample in the learned per-pod capacity.
const CAPACITY_LEARNING_WEIGHT: f64 = 0.3;
/// A group counts as saturated (so `μ/n` measures capacity) while its backlog
/// exceeds this many seconds of inbound traffic.
const SATURATION_BACKLOG_SECONDS: f64 = 10.0;

/// Tunables of a named policy (config file `policies.NAME`, or overrides in
/// trigger metadata under the same names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Spare capacity over the inbound rate (0.2 = 20 %).
    pub headroom: f64,
    /// Backlog is sized to drain within this many seconds.
    pub drain_seconds: f64,
    /// After a scale-up, hold this long (pod start, ramp-up, rebalance).
    pub settle_seconds: f64,
    /// The need must stay lower this long before scaling down.
    pub scale_down_stabilization_seconds: f64,
    /// Largest fraction of the current replicas removed in one step (0..=1).
    pub max_scale_down_step: f64,
    /// Changes within this fraction of the current replicas are ignored.
    pub dead_band: f64,
    /// Lag at or under the activation threshold and no inbound traffic for
    /// this long: scale to zero. Until then one pod stays.
    pub idle_seconds: f64,
    /// Expected time from a scale-up to a new pod consuming (S).
    pub startup_seconds: f64,
    /// Expected consumption pause of a rebalance (R).
    pub rebalance_seconds: f64,
    /// Messages per second one pod processes; learned while the group is
    /// saturated when absent.
    pub pod_capacity: Option<f64>,
    /// Floor of the answer (0 allows scale to zero).
    pub min_replicas: u32,
    /// Ceiling of the answer.
    pub max_replicas: u32,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            headroom: 0.1,
            drain_seconds: 60.0,
            settle_seconds: 120.0,
            scale_down_stabilization_seconds: 300.0,
            max_scale_down_step: 1.0,
            dead_band: 0.1,
            idle_seconds: 300.0,
            startup_seconds: 60.0,
            rebalance_seconds: 60.0,
            pod_capacity: None,
            min_replicas: 0,
            max_replicas: 100,
        }
    }
}

/// The keys of [`PolicySettings`] that trigger metadata may override.
pub const OVERRIDE_KEYS: &[&str] = &[
    "headroom",
    "drainSeconds",
    "settleSeconds",
    "scaleDownStabilizationSeconds",
    "maxScaleDownStep",
    "deadBand",
    "idleSeconds",
    "startupSeconds",
    "rebalanceSeconds",
    "podCapacity",
    "minReplicas",
    "maxReplicas",
];

impl PolicySettings {
    /// Checks ranges; the error is `(key, what is allowed)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let non_negative = [
            ("headroom", self.headroom),
            ("settleSeconds", self.settle_seconds),
            (
                "scaleDownStabilizationSeconds",
                self.scale_down_stabilization_seconds,
            ),
            ("deadBand", self.dead_band),
            ("idleSeconds", self.idle_seconds),
            ("startupSeconds", self.startup_seconds),
            ("rebalanceSeconds", self.rebalance_seconds),
        ];
        for (key, value) in non_negative {
            if !value.is_finite() || value < 0.0 {
                return Err((key, format!("must be a number >= 0, got {value}")));
            }
        }
        if !self.drain_seconds.is_finite() || self.drain_seconds <= 0.0 {
            return Err((
                "drainSeconds",
                format!("must be a number > 0, got {}", self.drain_seconds),
            ));
        }
        if !(self.max_scale_down_step > 0.0 && self.max_scale_down_step <= 1.0) {
            return Err((
                "maxScaleDownStep",
                format!(
                    "must be a fraction in (0, 1], got {}",
                    self.max_scale_down_step
                ),
            ));
        }
        if self.dead_band >= 1.0 {
            return Err((
                "deadBand",
                format!("must be a fraction below 1, got {}", self.dead_band),
            ));
        }
        if let Some(c) = self.pod_capacity
            && !(c.is_finite() && c > 0.0)
        {
            return Err((
                "podCapacity",
                format!("must be a number of messages per second > 0, got {c}"),
            ));
        }
        if self.max_replicas == 0 || self.min_replicas > self.max_replicas {
            return Err((
                "maxReplicas",
                format!(
                    "must be >= 1 and >= minReplicas ({}), got {}",
                    self.min_replicas, self.max_replicas
                ),
            ));
        }
        Ok(())
    }

    /// Applies one metadata override; the error says what is allowed.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = || -> Result<f64, String> {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{key} must be a number, got {value:?}"))
        };
        let count = || -> Result<u32, String> {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("{key} must be a whole number >= 0, got {value:?}"))
        };
        match key {
            "headroom" => self.headroom = number()?,
            "drainSeconds" => self.drain_seconds = number()?,
            "settleSeconds" => self.settle_seconds = number()?,
            "scaleDownStabilizationSeconds" => self.scale_down_stabilization_seconds = number()?,
            "maxScaleDownStep" => self.max_scale_down_step = number()?,
            "deadBand" => self.dead_band = number()?,
            "idleSeconds" => self.idle_seconds = number()?,
            "startupSeconds" => self.startup_seconds = number()?,
            "rebalanceSeconds" => self.rebalance_seconds = number()?,
            "podCapacity" => self.pod_capacity = Some(number()?),
            "minReplicas" => self.min_replicas = count()?,
            "maxReplicas" => self.max_replicas = count()?,
            _ => {
                return Err(format!(
                    "{key} is not a policy setting; allowed: {}",
                    OVERRIDE_KEYS.join(", ")
                ));
            }
        }
        self.validate()
            .map_err(|(key, message)| format!("{key} {message}"))
    }

    /// How long a newly started scaler must observe before it may scale
    /// down: the windows a scale-down decision depends on.
    pub fn cold_start_seconds(&self) -> f64 {
        self.scale_down_stabilization_seconds
            .max(self.settle_seconds)
    }

    /// The longest look-back of this policy, in seconds: the history a
    /// sampler must keep for decisions to be a function of it.
    pub fn history_needed_seconds(&self) -> f64 {
        self.scale_down_stabilization_seconds
            .max(self.settle_seconds)
            .max(self.idle_seconds)
    }
}

/// Which partitions bound the replica count (KEDA's Kafka scaler rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PartitionCap {
    /// At most one pod per partition (KEDA's default).
    Partitions,
    /// At most one pod per partition that has lag (`limitToPartitionsWithLag`).
    PartitionsWithLag,
    /// No cap (`allowIdleConsumers`).
    None,
}

/// Everything the policy is configured with for one ScaledObject.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub settings: PolicySettings,
    /// KEDA `lagThreshold`: lag one pod is expected to carry (lag-only sizing).
    pub lag_threshold: f64,
    /// KEDA `activationLagThreshold`.
    pub activation_lag_threshold: f64,
    pub cap: PartitionCap,
    /// Size from the inbound rate and per-pod capacity (a `policy` or
    /// `podCapacity` was given); otherwise lag-only like KEDA.
    pub rate_aware: bool,
}

/// Where the inbound rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateSource {
    /// Prometheus answered with the inbound rate.
    Prometheus,
    /// Derived from high-watermark deltas; Prometheus is not configured.
    Offsets,
    /// Derived from offsets because Prometheus failed or returned nothing.
    OffsetsPrometheusDown,
    /// Prometheus answered, but the offsets show a higher (newer) rate.
    OffsetsAhead,
}

impl RateSource {
    /// Short name used in reasons and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            RateSource::Prometheus => "prometheus",
            RateSource::Offsets => "offsets",
            RateSource::OffsetsPrometheusDown => "offsets (prometheus unavailable)",
            RateSource::OffsetsAhead => "offsets (ahead of prometheus)",
        }
    }
}

/// A partition whose own inbound rate exceeds what one pod can process.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HotPartition {
    /// `topic/partition`.
    pub partition: String,
    pub rate_per_s: f64,
}

/// The signals of one ScaledObject at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// Total lag counted for scaling (KEDA's rules applied).
    pub lag: f64,
    /// Total lag counted for activation (persistent lag included).
    pub activation_lag: f64,
    /// Partitions of the topics.
    pub partitions: u32,
    /// Partitions with lag > 0.
    pub partitions_with_lag: u32,
    /// λ, messages per second into the topics, fast: sees a step within two
    /// samples (sizes scale-ups); None before two samples.
    pub inbound_rate_per_s: Option<f64>,
    /// λ averaged over the short window (sizes scale-downs: noise in the
    /// fast rate must not hold pods).
    pub steady_rate_per_s: Option<f64>,
    pub rate_source: RateSource,
    /// μ, committed offsets per second.
    pub processing_rate_per_s: Option<f64>,
    /// The fastest partition, when it alone needs more than one pod.
    pub hottest_partition: Option<HotPartition>,
    /// Consumer group members, when the broker reports them.
    pub members: Option<u32>,
    /// Whether a full window of history exists (false right after a start).
    pub window_full: bool,
}

/// What the policy remembers between samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The last answer.
    pub replicas: Option<u32>,
    /// End of the settle window of the last scale-up.
    pub settle_until: f64,
    /// Backlog the last change expected at the end of its own pause.
    pub projected_backlog: f64,
    /// When that pause (start-up and rebalance) ends.
    pub pause_until: f64,
    /// Messages per second the new pod count was expected to drain the
    /// projected backlog at, after the pause.
    pub projected_drain_per_s: f64,
    /// Since when the need has stayed below the answer.
    pub lower_since: Option<f64>,
    /// The steady inbound rate when the need fell below the answer: a
    /// scale-down waits while the rate is still rising past it (a ramp).
    pub rate_when_lower: f64,
    /// Since when the topic has been idle.
    pub idle_since: Option<f64>,
    /// Learned messages per second per pod.
    pub learned_capacity_per_s: Option<f64>,
}

/// Why the answer is what it is; `label()` names it for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Initial,
    ScaleUp,
    ScaleDown,
    Steady,
    DeadBand,
    Settling,
    ColdStart,
    Stabilizing,
    IdleKeepOne,
    Idle,
}

impl Action {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Action::Initial => "initial",
            Action::ScaleUp => "scale-up",
            Action::ScaleDown => "scale-down",
            Action::Steady => "steady",
            Action::DeadBand => "dead-band",
            Action::Settling => "settling",
            Action::ColdStart => "cold-start",
            Action::Stabilizing => "stabilizing",
            Action::IdleKeepOne => "idle-keep-one",
            Action::Idle => "idle",
        }
    }
}

/// More pods are needed than partitions allow: the fix is more partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLimit {
    pub pods_needed: u32,
    pub partitions: u32,
}

/// The answer for one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Desired replicas: the metric value KEDA receives.
    pub replicas: u32,
    /// The need before hysteresis.
    pub need: u32,
    /// KEDA activation (IsActive).
    pub active: bool,
    pub action: Action,
    /// The action and the numbers behind it; displays as a sentence.
    #[serde(serialize_with = "as_text")]
    pub reason: Reason,
    pub partition_limit: Option<PartitionLimit>,
    pub hot_partition: Option<HotPartition>,
    /// Per-pod capacity used (configured or learned), msg/s.
    pub capacity_per_s: Option<f64>,
}

/// How the need was computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Basis {
    Lag {
        lag: f64,
        lag_threshold: f64,
    },
    Rate {
        rate_per_s: f64,
        source: RateSource,
        headroom: f64,
        backlog: f64,
        drain_seconds: f64,
        capacity_per_s: f64,
    },
}

/// Why a decision is what it is. Kept as numbers and rendered only when
/// displayed: the server replays many decisions and shows one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub action: Action,
    pub from: u32,
    pub to: u32,
    pub basis: Basis,
    pub partition_limit: Option<PartitionLimit>,
    /// Seconds into (or left of) the window the action refers to.
    pub elapsed_seconds: f64,
    /// Length of that window (settle, stabilization, idle) or the dead band.
    pub window: f64,
}

fn as_text<S: serde::Serializer>(reason: &Reason, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(reason)
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::Lag { lag, lag_threshold } => {
                write!(f, "lag {lag:.0} / lagThreshold {lag_threshold}")
            }
            Basis::Rate {
                rate_per_s,
                source,
                headroom,
                backlog,
                drain_seconds,
                capacity_per_s,
            } => write!(
                f,
                "rate {rate_per_s:.1}/s from {} x {:.2} + backlog {backlog:.0} / {drain_seconds}s over {capacity_per_s:.1}/s per pod",
                source.label(),
                1.0 + headroom
            ),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Reason {
            from,
            to,
            basis,
            window,
            elapsed_seconds,
            ..
        } = self;
        match self.action {
            Action::Initial => write!(f, "initial: {to} ({basis})")?,
            Action::ScaleUp => write!(
                f,
                "scale up {from} -> {to} in one step, settle for {window}s ({basis})"
            )?,
            Action::ScaleDown => write!(f, "scale down {from} -> {to} ({basis})")?,
            Action::Steady => write!(f, "steady at {to} ({basis})")?,
            Action::DeadBand => write!(
                f,
                "hold {to}: need within the {:.0}% dead band ({basis})",
                window * 100.0
            )?,
            Action::Settling => write!(
                f,
                "hold {to}: settling after scale-up for {elapsed_seconds:.0}s more ({basis})"
            )?,
            Action::ColdStart => write!(
                f,
                "hold {to}: no scale-down before a full window of samples ({basis})"
            )?,
            Action::Stabilizing => write!(
                f,
                "hold {to}: need lower for {elapsed_seconds:.0}s of the {window}s stabilization window ({basis})"
            )?,
            Action::IdleKeepOne => write!(
                f,
                "hold {to}: idle for {elapsed_seconds:.0}s of {window}s before scaling to zero"
            )?,
            Action::Idle => write!(f, "idle for {elapsed_seconds:.0}s: scale to zero")?,
        }
        if let Some(limit) = self.partition_limit {
            write!(
                f,
                "; needs {} pods but the topic has {} partitions: add partitions",
                limit.pods_needed, limit.partitions
            )?;
        }
        Ok(())
    }
}

/// The need and how it was computed.
struct Need {
    pods: u32,
    basis: Basis,
    partition_limit: Option<PartitionLimit>,
}

/// Decides the desired replicas at time `now` (seconds on any fixed clock).
pub fn decide(params: &Params, state: &State, obs: &Observation, now: f64) -> (Decision, State) {
    let s = &params.settings;
    let mut next = state.clone();
    let rate = obs.inbound_rate_per_s.unwrap_or(0.0);
    let steady_rate = obs.steady_rate_per_s.unwrap_or(rate).min(rate);

    let idle_now = obs.activation_lag <= params.activation_lag_threshold && rate < IDLE_RATE_PER_S;
    next.idle_since = if idle_now {
        state.idle_since.or(Some(now))
    } else {
        None
    };
    let idle_for = next.idle_since.map_or(0.0, |since| now - since);

    // Decide with what was known before this sample; learn from it for the next.
    let capacity = s.pod_capacity.or(state.learned_capacity_per_s);
    if s.pod_capacity.is_none() {
        learn_capacity(params, state, obs, now, &mut next);
    }
    let lag_sized = !(params.rate_aware && capacity.is_some());
    let in_settle = now < state.settle_until;
    // Backlog the last change's own pause created, still draining as
    // planned, is not new demand: only what exceeds the projection counts.
    let allowance = projected_allowance(state, now);
    let excess_backlog = (obs.lag - allowance).max(0.0);
    let current = state.replicas.unwrap_or(0);
    // What the pause of a scale-up from here would add: S seconds of the
    // shortfall while new pods start, then R seconds of all traffic.
    let pause_backlog = |c: f64| {
        s.startup_seconds * (rate - effective_capacity(params, obs, current, c)).max(0.0)
            + s.rebalance_seconds * rate
    };
    // Three sizings: `need` (backlog beyond the projection: what would
    // justify a scale-up), `need_up` (a scale-up is sized once, for the step
    // and for its own pause), `need_down` (the whole backlog: no pods go
    // while it still needs them).
    let (need, need_up, need_down) = match capacity {
        Some(c) if !lag_sized => {
            let need = rate_need(params, obs, rate, excess_backlog, c);
            let up = if need.pods > current {
                rate_need(params, obs, rate, excess_backlog + pause_backlog(c), c)
            } else {
                rate_need(params, obs, rate, excess_backlog, c)
            };
            (need, up, rate_need(params, obs, steady_rate, obs.lag, c))
        }
        // Lag-only sizing counts the whole backlog; the settle rule below
        // keeps it from reacting to backlog inside the projection.
        _ => (
            lag_need(params, obs, obs.lag),
            lag_need(params, obs, obs.lag),
            lag_need(params, obs, obs.lag),
        ),
    };
    let bound = |n: u32| {
        let n = n.clamp(s.min_replicas, s.max_replicas);
        if params.rate_aware && !idle_now {
            n.max(1)
        } else {
            n
        }
    };
    let pods = bound(need.pods);
    let pods_up = bound(need_up.pods).max(pods);
    let pods_down = bound(need_down.pods).max(pods);
    let to_zero = idle_now && idle_for >= s.idle_seconds && s.min_replicas == 0;
    // Still climbing past the rate seen when the need fell: a ramp.
    let rising =
        state.lower_since.is_some() && steady_rate > state.rate_when_lower * (1.0 + RAMP_LEAD);

    let (replicas, action) = match state.replicas {
        None => (pods, Action::Initial),
        // A scaler that just started has not seen the windows a scale-down
        // depends on: hold, whatever the need says.
        Some(current) if pods_down < current && !obs.window_full => (current, Action::ColdStart),
        // No rate yet (a single sample): nothing to size a scale-down on.
        Some(current)
            if pods_down < current && params.rate_aware && obs.inbound_rate_per_s.is_none() =>
        {
            (current, Action::ColdStart)
        }
        Some(_) if to_zero => (0, Action::Idle),
        Some(current) if pods > current => {
            if current > 0 && f64::from(pods) <= f64::from(current) * (1.0 + s.dead_band) {
                (current, Action::DeadBand)
            } else if in_settle && lag_sized && obs.lag <= state.projected_backlog {
                (current, Action::Settling)
            } else {
                (pods_up, Action::ScaleUp)
            }
        }
        Some(current) if pods_down < current => {
            if idle_now && pods_down == 0 && params.rate_aware {
                (current.min(1), Action::IdleKeepOne)
            } else if in_settle {
                (current, Action::Settling)
            } else if f64::from(pods_down) >= f64::from(current) * (1.0 - s.dead_band) {
                (current, Action::DeadBand)
            } else {
                let since = state.lower_since.unwrap_or(now);
                if rising {
                    // Trend lead: the load is climbing; what it needs soon is
                    // not less than what runs now.
                    (current, Action::Stabilizing)
                } else if now - since >= stabilization_seconds(s, pods_down, current) {
                    let step_floor =
                        (f64::from(current) * (1.0 - s.max_scale_down_step)).floor() as u32;
                    (pods_down.max(step_floor), Action::ScaleDown)
                } else {
                    (current, Action::Stabilizing)
                }
            }
        }
        Some(current) => (current, Action::Steady),
    };

    // Bookkeeping of the windows.
    let previous = state.replicas.unwrap_or(0);
    if replicas != previous && replicas > 0 {
        let c = capacity.unwrap_or(0.0);
        let (pause_s, added) = if replicas > previous {
            next.settle_until = now + s.settle_seconds;
            // The new pods start, then the group pauses to rebalance:
            // traffic keeps arriving while the backlog waits.
            (s.startup_seconds + s.rebalance_seconds, pause_backlog(c))
        } else {
            // Partitions of removed pods pause while they move.
            (s.rebalance_seconds, s.rebalance_seconds * rate)
        };
        next.projected_backlog = allowance.max(obs.lag) + added;
        next.pause_until = now + pause_s;
        next.projected_drain_per_s = (effective_capacity(params, obs, replicas, c) - rate).max(0.0);
    }
    next.lower_since = match action {
        // A rising rate restarts the window.
        Action::Stabilizing if rising => Some(now),
        Action::Stabilizing | Action::DeadBand if pods_down < replicas => {
            state.lower_since.or(Some(now))
        }
        // After a bounded step, the next step waits another window.
        Action::ScaleDown if replicas > pods_down => Some(now),
        _ => None,
    };
    if next.lower_since != state.lower_since {
        next.rate_when_lower = steady_rate;
    }
    next.replicas = Some(replicas);

    let (elapsed_seconds, window) = match action {
        Action::ScaleUp => (0.0, s.settle_seconds),
        Action::Settling => ((state.settle_until - now).max(0.0), s.settle_seconds),
        Action::Stabilizing => (
            now - next.lower_since.unwrap_or(now),
            stabilization_seconds(s, pods_down, replicas),
        ),
        Action::DeadBand => (0.0, s.dead_band),
        Action::IdleKeepOne | Action::Idle => (idle_for, s.idle_seconds),
        _ => (0.0, 0.0),
    };
    // A scale-up is explained by the sizing it used (pause included).
    let shown = match action {
        Action::ScaleUp => need_up,
        Action::ScaleDown | Action::Stabilizing | Action::IdleKeepOne => need_down,
        _ => need,
    };
    let partition_limit = shown.partition_limit;
    let reason = Reason {
        action,
        from: state.replicas.unwrap_or(0),
        to: replicas,
        basis: shown.basis,
        partition_limit,
        elapsed_seconds,
        window,
    };
    let hot_partition = match (capacity, &obs.hottest_partition) {
        (Some(c), Some(hot)) if hot.rate_per_s > c => Some(hot.clone()),
        _ => None,
    };
    let active = if params.rate_aware {
        obs.activation_lag > params.activation_lag_threshold
            || rate >= IDLE_RATE_PER_S
            || replicas > 0
    } else {
        obs.activation_lag > params.activation_lag_threshold
    };
    let decision = Decision {
        replicas,
        need: pods_down,
        active,
        action,
        reason,
        partition_limit,
        hot_partition,
        capacity_per_s: capacity,
    };
    (decision, next)
}

/// How long the need must stay lower before scaling from `current` down to
/// `need`: the full window for a small step (noise is small steps), in
/// proportion for a large one (a load that fell 90 % has not fallen by
/// chance), and never less than `MIN_STABILIZATION_SHARE` of the window.
fn stabilization_seconds(s: &PolicySettings, need: u32, current: u32) -> f64 {
    let kept = if current == 0 {
        1.0
    } else {
        f64::from(need) / f64::from(current)
    };
    s.scale_down_stabilization_seconds * kept.max(MIN_STABILIZATION_SHARE)
}

/// The backlog the last change projected for `now`: its peak until the pause
/// ends, then draining at the planned rate; 0 once drained.
fn projected_allowance(state: &State, now: f64) -> f64 {
    if now <= state.pause_until {
        state.projected_backlog
    } else {
        (state.projected_backlog - state.projected_drain_per_s * (now - state.pause_until)).max(0.0)
    }
}

/// Messages per second `pods` process when the load is spread evenly over
/// the partitions: the pod with the most partitions sets the pace.
fn effective_capacity(params: &Params, obs: &Observation, pods: u32, capacity: f64) -> f64 {
    if pods == 0 {
        return 0.0;
    }
    match params.cap {
        PartitionCap::None => f64::from(pods) * capacity,
        _ => {
            let p = obs.partitions.max(1);
            let busiest = p.div_ceil(pods.min(p));
            f64::from(p) * capacity / f64::from(busiest)
        }
    }
}

/// KEDA's Kafka scaler: `ceil(lag / lagThreshold)`, capped at the partitions.
fn lag_need(params: &Params, obs: &Observation, lag: f64) -> Need {
    let raw = if lag > 0.0 {
        (lag / params.lag_threshold).ceil() as u32
    } else {
        0
    };
    let cap = partition_cap(params, obs);
    let pods = cap.map_or(raw, |cap| raw.min(cap));
    Need {
        pods,
        basis: Basis::Lag {
            lag,
            lag_threshold: params.lag_threshold,
        },
        partition_limit: cap
            .filter(|&cap| raw > cap && cap == obs.partitions)
            .map(|cap| PartitionLimit {
                pods_needed: raw,
                partitions: cap,
            }),
    }
}

fn partition_cap(params: &Params, obs: &Observation) -> Option<u32> {
    match params.cap {
        PartitionCap::Partitions => Some(obs.partitions),
        PartitionCap::PartitionsWithLag => Some(obs.partitions_with_lag),
        PartitionCap::None => None,
    }
}

/// Smallest pod count that serves the demand, partition-aware: with P
/// partitions over n pods some pod owns ceil(P/n) of them.
fn rate_need(params: &Params, obs: &Observation, rate: f64, backlog: f64, capacity: f64) -> Need {
    let s = &params.settings;
    let demand = rate * (1.0 + s.headroom) + backlog / s.drain_seconds;
    let basis = Basis::Rate {
        rate_per_s: rate,
        source: obs.rate_source,
        headroom: s.headroom,
        backlog,
        drain_seconds: s.drain_seconds,
        capacity_per_s: capacity,
    };
    let unbounded = (demand / capacity).ceil() as u32;
    let Some(cap) = partition_cap(params, obs) else {
        return Need {
            pods: unbounded,
            basis,
            partition_limit: None,
        };
    };
    let p = obs.partitions.max(1);
    let (pods, partition_limit) = match partition_aware_pods(demand, p, capacity) {
        Some(pods) => (pods, None),
        None => (
            p,
            Some(PartitionLimit {
                pods_needed: unbounded,
                partitions: p,
            }),
        ),
    };
    let pods = if demand <= 0.0 {
        0
    } else {
        pods.min(cap.max(1))
    };
    Need {
        pods,
        basis,
        partition_limit,
    }
}

/// The smallest pod count that serves `demand` msg/s spread evenly over
/// `partitions`, when the pod owning the most partitions (ceil(P/n)) sets
/// the pace; `None` when one partition alone needs more than a pod. This
/// count is never below `ceil(demand / capacity)`.
pub fn partition_aware_pods(demand: f64, partitions: u32, capacity: f64) -> Option<u32> {
    if demand <= 0.0 {
        return Some(0);
    }
    let per_partition = demand / f64::from(partitions);
    let partitions_per_pod = (capacity / per_partition).floor() as u32;
    (partitions_per_pod >= 1).then(|| partitions.div_ceil(partitions_per_pod.min(partitions)))
}

/// DS2-style: while the group is saturated, μ/n is what a pod can do.
fn learn_capacity(params: &Params, state: &State, obs: &Observation, now: f64, next: &mut State) {
    if !params.rate_aware {
        return;
    }
    let rate = obs.inbound_rate_per_s.unwrap_or(0.0);
    let saturated = obs.lag
        > params
            .activation_lag_threshold
            .max(rate * SATURATION_BACKLOG_SECONDS)
        && obs.lag > 0.0;
    let settled = now >= state.settle_until;
    let pods = obs.members.or(state.replicas).unwrap_or(0);
    if let (true, true, Some(mu)) = (saturated, settled && pods > 0, obs.processing_rate_per_s)
        && mu > 0.0
    {
        let sample = mu / f64::from(pods);
        let learned = match state.learned_capacity_per_s {
            None => sample,
            Some(c) => c + CAPACITY_LEARNING_WEIGHT * (sample.clamp(c / 2.0, c * 2.0) - c),
        };
        next.learned_capacity_per_s = Some(learned);
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.replicas, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag_only(lag_threshold: f64) -> Params {
        Params {
            settings: PolicySettings::default(),
            lag_threshold,
            activation_lag_threshold: 0.0,
            cap: PartitionCap::Partitions,
            rate_aware: false,
        }
    }

    fn rate_aware(pod_capacity: f64) -> Params {
        Params {
            settings: PolicySettings {
                pod_capacity: Some(pod_capacity),
                headroom: 0.0,
                ..PolicySettings::default()
            },
            rate_aware: true,
            ..lag_only(10.0)
        }
    }

    fn obs(lag: f64, rate: f64, partitions: u32) -> Observation {
        Observation {
            lag,
            activation_lag: lag,
            partitions,
            partitions_with_lag: partitions,
            inbound_rate_per_s: Some(rate),
            steady_rate_per_s: Some(rate),
            rate_source: RateSource::Offsets,
            processing_rate_per_s: None,
            hottest_partition: None,
            members: None,
            window_full: true,
        }
    }

    #[test]
    fn first_answer_is_kedas_ceil_lag_over_threshold_capped_at_partitions() {
        let first = |lag, partitions| {
            decide(
                &lag_only(100.0),
                &State::default(),
                &obs(lag, 0.0, partitions),
                0.0,
            )
            .0
        };
        assert_eq!(first(1000.0, 24).replicas, 10);
        assert_eq!(first(1001.0, 24).replicas, 11);
        let capped = first(10_000.0, 24);
        assert_eq!(capped.replicas, 24);
        assert_eq!(
            capped.partition_limit,
            Some(PartitionLimit {
                pods_needed: 100,
                partitions: 24
            })
        );
        assert_eq!(first(0.0, 24).replicas, 0);
    }

    #[test]
    fn partition_aware_need_is_the_smallest_count_whose_busiest_pod_keeps_up() {
        // 24 partitions, 1000 msg/s, 100 per pod: 10 pods would leave some pod
        // 3 partitions (125 msg/s); 12 pods give each 2 (83 msg/s).
        let d = decide(
            &rate_aware(100.0),
            &State::default(),
            &obs(0.0, 1000.0, 24),
            0.0,
        )
        .0;
        assert_eq!(d.replicas, 12);
    }

    #[test]
    fn load_beyond_the_partitions_is_reported_not_answered_with_more_pods() {
        let d = decide(
            &rate_aware(100.0),
            &State::default(),
            &obs(0.0, 5000.0, 24),
            0.0,
        )
        .0;
        assert_eq!(d.replicas, 24);
        assert_eq!(
            d.partition_limit,
            Some(PartitionLimit {
                pods_needed: 50,
                partitions: 24
            })
        );
        assert!(
            d.reason
                .to_string()
                .contains("needs 50 pods but the topic has 24 partitions"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn hot_partition_is_named() {
        let mut o = obs(0.0, 300.0, 8);
        o.hottest_partition = Some(HotPartition {
            partition: "trades/3".into(),
            rate_per_s: 250.0,
        });
        let d = decide(&rate_aware(100.0), &State::default(), &o, 0.0).0;
        assert_eq!(
            d.hot_partition.map(|h| h.partition),
            Some("trades/3".to_owned())
        );
    }

    #[test]
    fn scale_down_waits_a_window_proportional_to_what_remains_then_steps_within_the_bound() {
        let mut p = rate_aware(100.0);
        p.settings.max_scale_down_step = 0.75;
        let (up, mut state) = decide(&p, &State::default(), &obs(0.0, 2000.0, 48), 0.0);
        assert_eq!(up.replicas, 24);
        let mut answers = Vec::new();
        let mut t = 200.0; // past the settle window
        while t <= 700.0 {
            let (d, next) = decide(&p, &state, &obs(0.0, 400.0, 48), t);
            answers.push((t, d.replicas));
            state = next;
            t += 5.0;
        }
        let at = |time: f64| answers.iter().find(|(t, _)| *t == time).unwrap().1;
        // Need 4 of 24: the window is 300 s x 4/24 = 50 s, floored at 20 %
        // (60 s); the step is bounded to 75 % of 24 pods.
        assert_eq!(at(255.0), 24, "held during the window: {answers:?}");
        assert_eq!(at(260.0), 6, "24 -> max(need 4, 24 x 0.25): {answers:?}");
        // Then 6 -> 4 waits 300 s x 4/6 = 200 s.
        assert_eq!(at(455.0), 6, "{answers:?}");
        assert_eq!(at(460.0), 4, "{answers:?}");
    }

    #[test]
    fn idle_topic_keeps_one_pod_for_the_idle_window_then_goes_to_zero() {
        let p = rate_aware(100.0);
        let (_, mut state) = decide(&p, &State::default(), &obs(0.0, 300.0, 8), 0.0);
        let mut seen = Vec::new();
        for i in 1..=80 {
            let t = 200.0 + f64::from(i) * 5.0;
            let (d, next) = decide(&p, &state, &obs(0.0, 0.0, 8), t);
            seen.push((t, d.replicas));
            state = next;
        }
        assert_eq!(seen[0].1, 1, "one pod stays at once");
        let zero_at = seen.iter().find(|(_, r)| *r == 0).map(|(t, _)| *t).unwrap();
        assert!(
            (505.0..=510.0).contains(&zero_at),
            "zero after 300 s idle, at {zero_at}"
        );
    }

    #[test]
    fn backlog_from_the_groups_own_pause_does_not_trigger_a_second_scale_up() {
        let p = rate_aware(100.0);
        let (up, state) = decide(
            &p,
            &State {
                replicas: Some(2),
                ..State::default()
            },
            &obs(0.0, 1000.0, 96),
            0.0,
        );
        // Sized once for 1000 msg/s and for the backlog of its own pause:
        // S x (1000 - 200) + R x 1000 = 108000 messages, drained in 60 s.
        assert_eq!(up.replicas, 32, "{}", up.reason);
        // During start-up and rebalance nothing is consumed: backlog builds.
        let mut state = state;
        for i in 1..24 {
            let t = f64::from(i) * 5.0;
            let (d, next) = decide(&p, &state, &obs(1000.0 * t, 1000.0, 96), t);
            assert_eq!(d.replicas, 32, "at {t}s: {}", d.reason);
            state = next;
        }
    }

    #[test]
    fn no_scale_down_while_the_rate_is_still_rising() {
        let p = rate_aware(100.0);
        let mut state = State {
            replicas: Some(24),
            ..State::default()
        };
        // A ramp from 400 to 1000 msg/s over 10 minutes on 48 partitions:
        // the need stays below 24 pods, but the load is climbing.
        let mut t = 0.0;
        while t < 600.0 {
            let (d, next) = decide(&p, &state, &obs(0.0, 400.0 + t, 48), t);
            assert_eq!(
                d.replicas, 24,
                "scaled down on a ramp at {t}s: {}",
                d.reason
            );
            state = next;
            t += 5.0;
        }
        // Once it levels off, the scale-down comes.
        let mut down = None;
        while t < 1200.0 {
            let (d, next) = decide(&p, &state, &obs(0.0, 1000.0, 48), t);
            state = next;
            if d.replicas < 24 {
                down = Some(d.replicas);
                break;
            }
            t += 5.0;
        }
        assert_eq!(down, Some(12), "1000 msg/s x 1.1 on 48 partitions: 12 pods");
    }
}
