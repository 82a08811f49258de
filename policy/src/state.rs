//! What the policy remembers between samples, and what it derives from it.

use serde::Serialize;

/// What the policy remembers between samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The last answer.
    pub replicas: Option<u32>,
    /// Backlog the last change expected at the end of its own pause.
    pub projected_backlog: f64,
    /// When that pause (start-up and rebalance) ends.
    pub pause_until: f64,
    /// When the last change was made (None before one).
    pub changed_at: Option<f64>,
    /// When the last change's new pods consume (its start-up ends).
    pub ready_at: f64,
    /// The count before the last change: what processes until `ready_at`.
    pub changed_from: u32,
    /// Share of the partitions the last change's rebalance pauses.
    pub paused_share: f64,
    /// Messages per second the new pod count was expected to drain the
    /// projected backlog at, after the pause.
    pub projected_drain_per_s: f64,
    /// Since when the topic has been idle.
    pub idle_since: Option<f64>,
    /// The highest steady inbound rate over the last planning horizon, and
    /// when it was seen: a smaller count must sustain it.
    pub peak_rate_per_s: f64,
    pub peak_at: f64,
    /// For a trigger priced on its lag: the rate that drains the highest
    /// lag of the last planning horizon within the objective, and when
    /// that lag was seen.
    pub peak_lag_drain_per_s: f64,
    pub peak_lag_at: f64,
    /// Learned messages per second per pod.
    pub learned_capacity_per_s: Option<f64>,
}

impl State {
    /// The backlog the last change projected for `now`: its peak until the pause
    /// ends, then draining at the planned rate; 0 once drained.
    pub fn projected_allowance(&self, now: f64) -> f64 {
        if now <= self.pause_until {
            self.projected_backlog
        } else {
            (self.projected_backlog - self.projected_drain_per_s * (now - self.pause_until))
                .max(0.0)
        }
    }
}
