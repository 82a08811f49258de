//! The signals of one ScaledObject at one sample, as the policy sees them.

use serde::Serialize;

use crate::rebalance::Rebalance;

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

/// Weight of a new pause in the smoothed one once a few are known.
const PAUSE_LEARNING_WEIGHT: f64 = 0.3;

/// Rebalance pauses timed from the offsets (the group's member count must
/// be reported): how long, after the count changed, the partitions that
/// were behind went without a commit (every partition under eager
/// rebalancing, the moved ones under cooperative).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnedPause {
    /// Smoothed over the pauses timed (recent ones weigh more).
    pub seconds: f64,
    pub observations: u32,
}

impl LearnedPause {
    pub(crate) fn with(learned: Option<Self>, seconds: f64) -> Self {
        match learned {
            None => LearnedPause {
                seconds,
                observations: 1,
            },
            Some(p) => {
                let n = p.observations.saturating_add(1);
                let weight = (1.0 / f64::from(n)).max(PAUSE_LEARNING_WEIGHT);
                LearnedPause {
                    seconds: p.seconds + weight * (seconds - p.seconds),
                    observations: n,
                }
            }
        }
    }

    /// The pause to plan with: the configured `prior` counts as one more
    /// observation, so the pauses seen take over as they accumulate,
    /// however far from the prior they are.
    pub fn with_prior(&self, prior: f64) -> f64 {
        let n = f64::from(self.observations);
        (prior + n * self.seconds) / (n + 1.0)
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
    /// The newest interval's rate when it alone shows a step above the
    /// fast rate (the interval before it does not confirm it yet): a
    /// scale-up sized now would be sized on a rate still catching up.
    pub unconfirmed_step_per_s: Option<f64>,
    /// Standard error of the short-window rate, from the spread of single
    /// intervals' rates over the last two minutes: how far noise alone
    /// moves the estimate. None with fewer than three intervals.
    pub rate_uncertainty_per_s: Option<f64>,
    /// A steady climb of the inbound rate (msg/s per second) over the last
    /// two minutes, beyond what noise explains; None when the rate is
    /// level, falling, stepping or too noisy to tell (and from Prometheus).
    pub rate_climb_per_s2: Option<f64>,
    pub rate_source: RateSource,
    /// μ, committed offsets per second.
    pub processing_rate_per_s: Option<f64>,
    /// The fastest partition, when it alone needs more than one pod.
    pub hottest_partition: Option<HotPartition>,
    /// The fastest partition's share of the inbound rate over the short
    /// window (from offsets); None before two samples or with no traffic.
    pub hottest_share: Option<f64>,
    /// The largest lag of one partition: one pod drains it, at the share of
    /// its capacity the partitions it owns leave.
    pub max_partition_lag: f64,
    /// Estimated age of the next message to consume (seconds): when the
    /// group's committed position was produced, from the window's history
    /// of high watermarks (summed over the partitions, interpolated
    /// between samples). The wait a message now arriving at the group's
    /// position has had; a partition further behind than the others waits
    /// longer. At least the window's span when the position is older than
    /// the window; None while a partition has never committed.
    pub estimated_wait_s: Option<f64>,
    /// The most recent stretch without inbound traffic that has ended (the
    /// gap before the traffic now or last seen), seconds, as far back as
    /// the window shows: the gap the next burst is expected after.
    pub idle_gap_s: Option<f64>,
    /// How long no message has arrived, while none does (as far back as
    /// the window shows); None while messages arrive.
    pub quiet_for_s: Option<f64>,
    /// How long the burst under way has lasted (traffic above twice the
    /// rate before it and its noise; any traffic after a quiet stretch),
    /// when its start was seen; None otherwise.
    pub busy_for_s: Option<f64>,
    /// The rate the burst under way rose from: what the topic falls back
    /// to when it ends (0 after a quiet stretch).
    pub burst_base_per_s: Option<f64>,
    /// How long the last burst that ended lasted, as far back as the
    /// window shows.
    pub last_burst_s: Option<f64>,
    /// How long the burst before the last one lasted.
    pub burst_before_s: Option<f64>,
    /// Rebalance pauses timed from the offsets since this scaler started
    /// (None before one, or when members are not reported).
    pub learned_rebalance: Option<LearnedPause>,
    /// The assignor the offsets showed at the latest timed rebalance
    /// (which partitions stopped committing); plans use it in place of the
    /// configured `rebalance`.
    pub learned_rebalance_kind: Option<Rebalance>,
    /// Start-up times (the workload's spec rising to the members joining)
    /// timed since this scaler started (None before one, or without both
    /// member counts and `scaleTarget`).
    pub learned_startup: Option<LearnedPause>,
    /// Consumer group members, when the broker reports them.
    pub members: Option<u32>,
    /// Replicas the scaled workload's spec asks for (Kubernetes API), when
    /// the trigger names its `scaleTarget`.
    pub target_replicas: Option<u32>,
    /// Whether a full window of history exists (false right after a start).
    pub window_full: bool,
}

impl Observation {
    /// The group's size as seen from outside the policy: the larger of its
    /// members and its workload's spec (pods still starting, or still
    /// stopping, count); None when neither is known.
    pub fn group_size(&self) -> Option<u32> {
        match (self.members, self.target_replicas) {
            (Some(m), Some(t)) => Some(m.max(t)),
            (m, t) => m.or(t),
        }
    }
}

#[cfg(test)]
impl Observation {
    /// A group at `lag` on `partitions` partitions, every one of them
    /// lagging, with a steady inbound `rate` from offsets and nothing else
    /// known; a full window.
    pub(crate) fn steady(lag: f64, rate: f64, partitions: u32) -> Self {
        Observation {
            lag,
            activation_lag: lag,
            partitions,
            partitions_with_lag: partitions,
            inbound_rate_per_s: Some(rate),
            steady_rate_per_s: Some(rate),
            unconfirmed_step_per_s: None,
            rate_uncertainty_per_s: None,
            rate_climb_per_s2: None,
            rate_source: RateSource::Offsets,
            processing_rate_per_s: None,
            hottest_partition: None,
            hottest_share: None,
            max_partition_lag: 0.0,
            estimated_wait_s: None,
            idle_gap_s: None,
            quiet_for_s: None,
            busy_for_s: None,
            burst_base_per_s: None,
            last_burst_s: None,
            burst_before_s: None,
            learned_rebalance: None,
            learned_rebalance_kind: None,
            learned_startup: None,
            members: None,
            target_replicas: None,
            window_full: true,
        }
    }
}
