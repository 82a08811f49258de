//! What a policy is configured with: the tunables of a named policy (the
//! config file's `policies.NAME`, overridable per trigger) and the KEDA
//! trigger settings that shape the answer.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::observation::Observation;
pub use super::rebalance::Rebalance;

/// Longest window a policy may set, in seconds (one week).
pub const MAX_SECONDS: f64 = 604_800.0;

/// Tunables of a named policy (config file `policies.NAME`, or overrides in
/// trigger metadata under the same names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicySettings {
    /// Spare capacity over the inbound rate (0.2 = 20 %).
    pub headroom: f64,
    /// The wait objective when `waitObjectiveSeconds` is absent (seconds):
    /// backlog drains within it.
    pub drain_seconds: f64,
    /// The longest a message should wait, beyond the pause of a change
    /// (seconds); `drainSeconds` when absent. Every candidate count is
    /// priced over start-up, rebalance and this objective.
    pub wait_objective_seconds: Option<f64>,
    /// No longer used: each change pays its own pause in the plan. Accepted
    /// so that existing configurations still load.
    #[schemars(extend("deprecated" = true))]
    pub settle_seconds: Option<f64>,
    /// No longer used: a smaller count must sustain the highest load of
    /// the last planning horizon. Accepted so that existing configurations
    /// still load.
    #[schemars(extend("deprecated" = true))]
    pub scale_down_stabilization_seconds: Option<f64>,
    /// Largest fraction of the current replicas removed in one step (0..=1).
    pub max_scale_down_step: f64,
    /// No longer used: the noise band of the rate and the headroom hold
    /// the count. Accepted so that existing configurations still load.
    #[schemars(extend("deprecated" = true))]
    pub dead_band: Option<f64>,
    /// Lag at or under the activation threshold and no inbound traffic for
    /// this long: scale to zero. Until then one pod stays.
    pub idle_seconds: f64,
    /// Expected time from a scale-up to a new pod consuming (S).
    pub startup_seconds: f64,
    /// Expected consumption pause of a rebalance (R).
    pub rebalance_seconds: f64,
    /// How the consumers rebalance (their `partition.assignment.strategy`):
    /// `eager` pauses every partition for R, `cooperative` (cooperative-sticky)
    /// only the partitions that move. Prices the pause of a change.
    pub rebalance: Rebalance,
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
            wait_objective_seconds: None,
            settle_seconds: None,
            scale_down_stabilization_seconds: None,
            max_scale_down_step: 1.0,
            dead_band: None,
            idle_seconds: 300.0,
            startup_seconds: 60.0,
            rebalance_seconds: 60.0,
            rebalance: Rebalance::Eager,
            pod_capacity: None,
            min_replicas: 0,
            max_replicas: 100,
        }
    }
}

impl PolicySettings {
    /// Checks ranges; the error is `(key, what is allowed)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.validate_durations()?;
        if self.headroom > 10.0 {
            return Err((
                "headroom",
                format!(
                    "must be a fraction of at most 10 (1000 %), got {}",
                    self.headroom
                ),
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

    /// The windows and durations: finite, not negative (drain and wait
    /// objective above zero), at most a week.
    fn validate_durations(&self) -> Result<(), (&'static str, String)> {
        let windows = [
            ("idleSeconds", self.idle_seconds),
            ("startupSeconds", self.startup_seconds),
            ("rebalanceSeconds", self.rebalance_seconds),
        ];
        let non_negative = [("headroom", self.headroom)];
        for (key, value) in windows.into_iter().chain(non_negative) {
            if !value.is_finite() || value < 0.0 {
                return Err((key, format!("must be a number >= 0, got {value}")));
            }
        }
        // Every window is a duration the scaler keeps samples for: a week
        // is far past any useful hysteresis and far below what overflows.
        let seconds = windows.into_iter().chain([
            ("drainSeconds", self.drain_seconds),
            (
                "waitObjectiveSeconds",
                self.wait_objective_seconds.unwrap_or(0.0),
            ),
        ]);
        for (key, value) in seconds {
            if value > MAX_SECONDS {
                return Err((
                    key,
                    format!("must be at most {MAX_SECONDS} (one week), got {value}"),
                ));
            }
        }
        let positive = [("drainSeconds", Some(self.drain_seconds))]
            .into_iter()
            .chain([("waitObjectiveSeconds", self.wait_objective_seconds)]);
        for (key, value) in positive {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err((key, format!("must be a number > 0, got {v}")));
            }
        }
        Ok(())
    }

    /// The wait the planner holds messages to beyond a change's pause.
    pub fn wait_objective(&self) -> f64 {
        self.wait_objective_seconds.unwrap_or(self.drain_seconds)
    }

    /// How far the planner looks ahead (start-up, rebalance and the wait
    /// objective, as configured): a smaller count must sustain the highest
    /// load seen over that long, so a newly started scaler observes that
    /// long before it may scale down.
    pub fn cold_start_seconds(&self) -> f64 {
        self.startup_seconds + self.rebalance_seconds + self.wait_objective()
    }

    /// The keys that are accepted but no longer have an effect.
    pub fn unused_keys(&self) -> Vec<&'static str> {
        [
            ("settleSeconds", self.settle_seconds),
            (
                "scaleDownStabilizationSeconds",
                self.scale_down_stabilization_seconds,
            ),
            ("deadBand", self.dead_band),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|_| key))
        .collect()
    }

    /// The longest look-back of this policy, in seconds: the history a
    /// sampler must keep for decisions to be a function of it.
    pub fn history_needed_seconds(&self) -> f64 {
        self.cold_start_seconds().max(self.idle_seconds)
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

impl Params {
    /// These params with the rebalance pause, the assignor and the
    /// start-up time the samples have shown (the configured
    /// `rebalanceSeconds` and `startupSeconds` as their priors, the
    /// configured `rebalance` until a rebalance is seen) in their place.
    pub fn as_learned(&self, obs: &Observation) -> Cow<'_, Params> {
        if obs.learned_rebalance.is_none()
            && obs.learned_startup.is_none()
            && obs
                .learned_rebalance_kind
                .is_none_or(|k| k == self.settings.rebalance)
        {
            return Cow::Borrowed(self);
        }
        let mut params = self.clone();
        let s = &mut params.settings;
        if let Some(kind) = obs.learned_rebalance_kind {
            s.rebalance = kind;
        }
        if let Some(learned) = obs.learned_rebalance {
            s.rebalance_seconds = learned.with_prior(s.rebalance_seconds);
        }
        if let Some(learned) = obs.learned_startup {
            s.startup_seconds = learned.with_prior(s.startup_seconds);
        }
        Cow::Owned(params)
    }
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
