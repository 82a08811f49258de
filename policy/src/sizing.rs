//! What a count of pods processes (partition-aware), the cap on the count,
//! and the floor a lagged partition puts under a scale-down.

use super::observation::Observation;
use super::partitions::group_capacity;
use super::settings::{Params, PartitionCap};

/// Fewest pods that keep the most lagged partition draining: its pod
/// serves its other partitions' traffic first, so the more partitions per
/// pod, the slower it drains. A scale-down may delay that drain by at most
/// the wait objective beyond what a pod of its own would take. Its own inbound
/// rate is taken as the hottest partition's. 0 when nothing lags, the
/// capacity is unknown, or even a pod of its own cannot drain it (no count
/// helps it).
pub(super) fn partition_drain_floor(
    params: &Params,
    obs: &Observation,
    rate: f64,
    capacity: Option<f64>,
) -> u32 {
    let Some(c) = capacity.filter(|_| params.rate_aware) else {
        return 0;
    };
    let p = obs.partitions.max(1);
    let backlog = obs.max_partition_lag;
    let share = hottest_share(obs);
    let own_rate = rate * share;
    if backlog <= 0.0 || p == 1 || own_rate >= c {
        return 0;
    }
    let alone = backlog / (c - own_rate);
    let needed = backlog / (alone + params.settings.wait_objective());
    let other_rate = rate * (1.0 - share) / f64::from(p - 1);
    let most_partitions = if other_rate > 0.0 {
        1 + ((c - own_rate - needed) / other_rate).floor().max(0.0) as u32
    } else {
        p
    };
    p.div_ceil(most_partitions.clamp(1, p))
}

/// Messages per second `pods` process when the load is spread evenly over
/// the partitions: the pod with the most partitions sets the pace.
pub(super) fn effective_capacity(
    params: &Params,
    obs: &Observation,
    pods: u32,
    capacity: f64,
) -> f64 {
    match params.cap {
        PartitionCap::None => f64::from(pods) * capacity,
        _ => group_capacity(obs.partitions, pods, capacity, hottest_share(obs)),
    }
}

/// The hottest partition's share of the load (even when unknown).
pub(super) fn hottest_share(obs: &Observation) -> f64 {
    obs.hottest_share
        .unwrap_or(1.0 / f64::from(obs.partitions.max(1)))
}

/// The cap KEDA's Kafka scaler puts on the replicas: the partitions, the
/// partitions with lag, or none.
pub(super) fn partition_cap(params: &Params, obs: &Observation) -> Option<u32> {
    match params.cap {
        PartitionCap::Partitions => Some(obs.partitions),
        PartitionCap::PartitionsWithLag => Some(obs.partitions_with_lag),
        PartitionCap::None => None,
    }
}
