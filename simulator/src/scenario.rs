//! Scenarios: a topic, its load profile, the consumers' model parameters and
//! KEDA's settings. Read from YAML (every field optional but `load`), or one
//! of the built-in scenarios.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use lagrate_policy::Rebalance;

/// One segment of the load profile.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segment {
    /// Constant rate (msg/s)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// ...or a linear ramp `[from, to]`...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<[f64; 2]>,
    /// ...or a sine `base + amplitude·sin(2π·t/period)` (a daily curve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sine: Option<Sine>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sine {
    pub base: f64,
    pub amplitude: f64,
    pub period_seconds: f64,
}

/// KEDA ScaledObject settings and the HPA behavior it creates.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KedaSettings {
    pub polling_interval: f64,
    pub cooldown_period: f64,
    pub min_replica_count: u32,
    pub max_replica_count: u32,
    /// HPA sync period (kube-controller-manager, 15 s by default).
    pub hpa_sync_seconds: f64,
    /// HPA tolerance (0.1 by default).
    pub hpa_tolerance: f64,
}

impl Default for KedaSettings {
    fn default() -> Self {
        // The reference demo's ScaledObject.
        Self {
            polling_interval: 30.0,
            cooldown_period: 300.0,
            min_replica_count: 0,
            max_replica_count: 100,
            hpa_sync_seconds: 15.0,
            hpa_tolerance: 0.1,
        }
    }
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default = "defaults::partitions")]
    pub partitions: u32,
    /// Messages per second one pod processes (reference: batches of 100 in 1 s).
    #[serde(default = "defaults::pod_capacity")]
    pub pod_capacity: f64,
    /// Seconds a batch is in flight before its offsets are committed.
    #[serde(default = "defaults::batch_seconds")]
    pub batch_seconds: f64,
    /// S: from scale-up to a new pod consuming.
    #[serde(default = "defaults::startup_seconds")]
    pub startup_seconds: f64,
    /// R: consumption pause of a rebalance.
    #[serde(default = "defaults::rebalance_seconds")]
    pub rebalance_seconds: f64,
    #[serde(default = "defaults::rebalance")]
    pub rebalance: Rebalance,
    /// Replicas at t = 0; by default what the initial load needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<u32>,
    /// Multiplicative load noise, uniform in ±noise (0.2 = ±20 %).
    #[serde(default)]
    pub noise: f64,
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Share of the load on partition 0 (the rest spread evenly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hot_partition_share: Option<f64>,
    /// Whether the broker tells the scaler the group's member count
    /// (DescribeGroups). tansu does not, nor does MSK without the
    /// `kafka-cluster:DescribeGroup` grant.
    #[serde(default = "defaults::members_reported")]
    pub members_reported: bool,
    /// Whether the scaler reads the workload's scale from the Kubernetes
    /// API (the trigger's `scaleTarget`, as k8s/ ships it).
    #[serde(default = "defaults::scale_target_reported")]
    pub scale_target_reported: bool,
    /// Instants (seconds) at which the scaler restarts: its window empties,
    /// as for a new replica, and refills from there.
    #[serde(default)]
    pub scaler_restarts: Vec<f64>,
    /// lagrate's `sampling.warmUp`: what a restarted scaler that sees no
    /// member count answers through its first history.
    #[serde(default)]
    pub warm_up: lagrate_policy::evaluate::WarmUp,
    /// Simulation step, seconds (at most 1).
    #[serde(default = "defaults::step_seconds")]
    pub step_seconds: f64,
    /// How often lagrate samples offsets.
    #[serde(default = "defaults::sample_seconds")]
    pub sample_seconds: f64,
    #[serde(default)]
    pub keda: KedaSettings,
    /// lagrate's policy, as in the config file's `policies.NAME` (podCapacity
    /// defaults to the scenario's). Absent: the default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<lagrate_policy::PolicySettings>,
    pub load: Vec<Segment>,
}

mod defaults {
    use super::Rebalance;
    pub fn partitions() -> u32 {
        24
    }
    pub fn pod_capacity() -> f64 {
        100.0
    }
    pub fn batch_seconds() -> f64 {
        1.0
    }
    pub fn startup_seconds() -> f64 {
        60.0
    }
    pub fn rebalance_seconds() -> f64 {
        60.0
    }
    pub fn rebalance() -> Rebalance {
        Rebalance::Cooperative
    }
    pub fn members_reported() -> bool {
        true
    }
    pub fn scale_target_reported() -> bool {
        true
    }
    pub fn seed() -> u64 {
        42
    }
    pub fn step_seconds() -> f64 {
        1.0
    }
    pub fn sample_seconds() -> f64 {
        2.0
    }
}

impl Scenario {
    /// Reads a scenario file and validates it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scenario: Scenario =
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        scenario
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    /// Checks the fields; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions == 0 {
            return Err("partitions must be >= 1".into());
        }
        for (field, v) in [
            ("podCapacity", self.pod_capacity),
            ("batchSeconds", self.batch_seconds),
            ("sampleSeconds", self.sample_seconds),
            ("keda.hpaSyncSeconds", self.keda.hpa_sync_seconds),
            ("keda.pollingInterval", self.keda.polling_interval),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{field} must be a number > 0, got {v}"));
            }
        }
        if !(self.step_seconds > 0.0 && self.step_seconds <= 1.0) {
            return Err(format!(
                "stepSeconds must be in (0, 1], got {}",
                self.step_seconds
            ));
        }
        if !(0.0..1.0).contains(&self.noise) {
            return Err(format!(
                "noise must be a fraction in [0, 1), got {}",
                self.noise
            ));
        }
        if let Some(share) = self.hot_partition_share
            && !(0.0..=1.0).contains(&share)
        {
            return Err(format!("hotPartitionShare must be in [0, 1], got {share}"));
        }
        if let Some(bad) = self
            .scaler_restarts
            .iter()
            .find(|t| !(t.is_finite() && **t >= 0.0))
        {
            return Err(format!("scalerRestarts must list seconds >= 0, got {bad}"));
        }
        if let Some(policy) = &self.policy {
            policy
                .validate()
                .map_err(|(key, message)| format!("policy.{key} {message}"))?;
        }
        if self.load.is_empty() {
            return Err("load must list at least one segment".into());
        }
        for (i, s) in self.load.iter().enumerate() {
            let kinds = [s.rate.is_some(), s.ramp.is_some(), s.sine.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(format!("load[{i}] needs exactly one of rate, ramp, sine"));
            }
            if s.seconds.is_nan() || s.seconds <= 0.0 {
                return Err(format!("load[{i}].seconds must be > 0"));
            }
        }
        Ok(())
    }

    /// Replicas running at t = 0.
    pub fn replicas_at_start(&self) -> u32 {
        self.initial_replicas.unwrap_or_else(|| {
            pods_needed(
                self.rate_at(0.0) * 1.1,
                self.partitions,
                self.pod_capacity,
                self.hottest_share(),
            )
            .max(1)
        })
    }

    /// Each partition's share of the load: even, or partition 0 hot.
    pub fn partition_shares(&self) -> Vec<f64> {
        let p = self.partitions as usize;
        match self.hot_partition_share {
            Some(hot) if p > 1 => (0..p)
                .map(|i| {
                    if i == 0 {
                        hot
                    } else {
                        (1.0 - hot) / (p - 1) as f64
                    }
                })
                .collect(),
            _ => vec![1.0 / p as f64; p],
        }
    }

    /// The hottest partition's share of the load.
    pub fn hottest_share(&self) -> f64 {
        self.partition_shares().into_iter().fold(0.0, f64::max)
    }

    /// Total simulated time.
    pub fn duration(&self) -> f64 {
        self.load.iter().map(|s| s.seconds).sum()
    }

    /// Noise-free inbound rate at `t`.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for s in &self.load {
            if t < start + s.seconds {
                let x = t - start;
                return match (s.rate, s.ramp, &s.sine) {
                    (Some(r), _, _) => r,
                    (_, Some([a, b]), _) => a + (b - a) * x / s.seconds,
                    (_, _, Some(sine)) => (sine.base
                        + sine.amplitude * (std::f64::consts::TAU * t / sine.period_seconds).sin())
                    .max(0.0),
                    _ => 0.0,
                };
            }
            start += s.seconds;
        }
        0.0
    }

    /// Start times of segments whose rate differs from the previous one's end.
    pub fn load_steps(&self) -> Vec<f64> {
        let mut steps = Vec::new();
        let mut start = 0.0;
        for (i, s) in self.load.iter().enumerate() {
            if i > 0 && s.rate.is_some() {
                let before = self.rate_at(start - 1e-6);
                let after = self.rate_at(start);
                if (after - before).abs() > 0.1 * before.max(1.0) {
                    steps.push(start);
                }
            }
            start += s.seconds;
        }
        steps
    }

    /// Whether P pods of `podCapacity` cover the peak rate.
    pub fn feasible(&self) -> bool {
        let steps = (self.duration() / self.step_seconds) as usize;
        let peak = (0..steps)
            .map(|i| self.rate_at(i as f64 * self.step_seconds))
            .fold(0.0, f64::max)
            * (1.0 + self.noise);
        let per_partition_peak = match self.hot_partition_share {
            Some(share) => peak * share,
            None => peak / f64::from(self.partitions),
        };
        f64::from(self.partitions) * self.pod_capacity >= peak
            && per_partition_peak <= self.pod_capacity
    }
}

impl Segment {
    /// A constant rate.
    pub fn constant(rate: f64, seconds: f64) -> Self {
        Segment {
            rate: Some(rate),
            ramp: None,
            sine: None,
            seconds,
        }
    }

    /// A linear ramp.
    pub fn ramp(from: f64, to: f64, seconds: f64) -> Self {
        Segment {
            rate: None,
            ramp: Some([from, to]),
            sine: None,
            seconds,
        }
    }
}

impl Scenario {
    /// A scenario with every optional field at its default (the reference
    /// consumer's capacity, start-up and rebalance times).
    pub fn with_defaults(name: &str, partitions: u32, load: Vec<Segment>) -> Self {
        Scenario {
            name: name.to_owned(),
            partitions,
            pod_capacity: defaults::pod_capacity(),
            batch_seconds: defaults::batch_seconds(),
            startup_seconds: defaults::startup_seconds(),
            rebalance_seconds: defaults::rebalance_seconds(),
            rebalance: defaults::rebalance(),
            initial_replicas: None,
            noise: 0.0,
            seed: defaults::seed(),
            hot_partition_share: None,
            members_reported: defaults::members_reported(),
            scale_target_reported: defaults::scale_target_reported(),
            scaler_restarts: Vec::new(),
            warm_up: lagrate_policy::evaluate::WarmUp::default(),
            step_seconds: defaults::step_seconds(),
            sample_seconds: defaults::sample_seconds(),
            keda: KedaSettings::default(),
            policy: None,
            load,
        }
    }
}

/// The smallest partition-aware pod count that serves `demand` msg/s when
/// the hottest partition carries `hottest_share` of it (all partitions when
/// an average partition alone needs more than a pod).
pub fn pods_needed(demand: f64, partitions: u32, pod_capacity: f64, hottest_share: f64) -> u32 {
    lagrate_policy::partitions::partition_aware_pods_skewed(
        demand,
        partitions,
        pod_capacity,
        hottest_share,
    )
    .map_or(partitions, |sized| sized.pods)
}
