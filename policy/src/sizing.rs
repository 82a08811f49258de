//! How many pods a need takes: from the lag (KEDA's rule) or from the rate
//! and backlog (partition-aware), what a count processes, and the floor a
//! lagged partition puts under a scale-down.

use super::decision::{Basis, PartitionLimit};
use super::observation::Observation;
use super::partitions::{group_capacity, partition_aware_pods_skewed};
use super::settings::{Params, PartitionCap};

/// The need and how it was computed.
#[derive(Clone)]
pub(super) struct Need {
    pub(super) pods: u32,
    pub(super) basis: Basis,
    pub(super) partition_limit: Option<PartitionLimit>,
}

/// Fewest pods that keep the most lagged partition draining: its pod
/// serves its other partitions' traffic first, so the more partitions per
/// pod, the slower it drains. A scale-down may delay that drain by at most
/// `drainSeconds` beyond what a pod of its own would take. Its own inbound
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
    let needed = backlog / (alone + params.settings.drain_seconds);
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

/// KEDA's Kafka scaler: `ceil(lag / lagThreshold)`, capped at the partitions.
pub(super) fn lag_need(params: &Params, obs: &Observation, lag: f64) -> Need {
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
pub(super) fn rate_need(
    params: &Params,
    obs: &Observation,
    rate: f64,
    backlog: f64,
    capacity: f64,
) -> Need {
    climbing_need(params, obs, rate, rate, backlog, capacity)
}

/// [`rate_need`] for a rate climbing to `ahead` by the time new pods
/// consume: the climb, like backlog, is served by the headroom first.
pub(super) fn climbing_need(
    params: &Params,
    obs: &Observation,
    rate: f64,
    ahead: f64,
    backlog: f64,
    capacity: f64,
) -> Need {
    let headroom = params.settings.headroom;
    sized_need(params, obs, rate, ahead, headroom, backlog, capacity)
}

/// [`climbing_need`] with the given headroom.
///
/// The headroom is spare capacity over the rate now. It covers noise, and
/// is spent first on backlog and on a climb: only what they need beyond it
/// (at the rate `ahead`, when new pods consume) takes more pods.
pub(super) fn sized_need(
    params: &Params,
    obs: &Observation,
    rate: f64,
    ahead: f64,
    headroom: f64,
    backlog: f64,
    capacity: f64,
) -> Need {
    let s = &params.settings;
    let demand = (rate * (1.0 + headroom)).max(ahead + backlog / s.drain_seconds);
    // Shown, and checked against the partitions, at the rate sized for.
    let basis = Basis::Rate {
        rate_per_s: ahead,
        source: obs.rate_source,
        headroom,
        backlog,
        lag: obs.lag,
        drain_seconds: s.drain_seconds,
        capacity_per_s: capacity,
        climb: None,
        burst_ends_in: None,
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
    let share = hottest_share(obs);
    let pods =
        partition_aware_pods_skewed(demand, p, capacity, share).map_or(p, |sized| sized.pods);
    // "Add partitions" only when the sustained rate itself outgrows one pod
    // per partition: a backlog that needs more pods for a while drains on
    // the pods the partitions allow.
    let partition_limit = partition_aware_pods_skewed(ahead, p, capacity, share)
        .is_none()
        .then_some(PartitionLimit {
            pods_needed: unbounded,
            partitions: p,
        });
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
