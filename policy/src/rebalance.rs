//! How a consumer group rebalances when its members change, and the share
//! of its partitions that pauses.

use serde::{Deserialize, Serialize};

/// How a consumer group rebalances when its members change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Rebalance {
    /// Every partition pauses, even when the joining pod gets nothing
    /// (librdkafka's default range,roundrobin assignors).
    #[default]
    Eager,
    /// Only partitions that change owner pause (cooperative-sticky).
    Cooperative,
}

impl Rebalance {
    /// Share of the partitions that pause when the group goes from `from`
    /// to `to` members: all of them under eager rebalancing; under
    /// cooperative, those that change owner (the leaving pods' share, or
    /// the share the joining pods take).
    pub fn paused_share(self, from: u32, to: u32) -> f64 {
        let larger = from.max(to);
        match self {
            Rebalance::Eager => 1.0,
            Rebalance::Cooperative if larger == 0 => 0.0,
            Rebalance::Cooperative => f64::from(larger - from.min(to)) / f64::from(larger),
        }
    }
}
