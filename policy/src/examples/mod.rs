//! Examples of the policy's behaviour, one rule each: how a need is sized
//! (`sizing`), how the answer moves from one need to the next
//! (`hysteresis`), bursts (`bursts`), and the planner (`planner`). The helpers below build their
//! parameters, state and observations.

use super::*;

mod bursts;
mod hysteresis;
mod planner;
mod sizing;

fn lag_only(lag_threshold: f64) -> Params {
    Params {
        settings: PolicySettings::default(),
        lag_threshold,
        activation_lag_threshold: 0.0,
        cap: PartitionCap::Partitions,
        rate_aware: false,
    }
}

/// Rate-aware, with a known per-pod capacity and no headroom.
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

/// [`rate_aware`] with `headroom` over the rate.
fn with_headroom(pod_capacity: f64, headroom: f64) -> Params {
    let mut params = rate_aware(pod_capacity);
    params.settings.headroom = headroom;
    params
}

/// `params` under cooperative rebalancing: only moved partitions pause.
fn cooperative(params: &Params) -> Params {
    let mut params = params.clone();
    params.settings.rebalance = Rebalance::Cooperative;
    params
}

/// The state of a policy that last answered `replicas`.
fn running(replicas: u32) -> State {
    State {
        replicas: Some(replicas),
        ..State::default()
    }
}

/// `replicas` running, the rate having peaked at `peak` msg/s `ago`
/// seconds before 0.
fn after_peak(replicas: u32, peak: f64, ago: f64) -> State {
    State {
        peak_rate_per_s: peak,
        peak_at: -ago,
        ..running(replicas)
    }
}

fn obs(lag: f64, rate: f64, partitions: u32) -> Observation {
    Observation::steady(lag, rate, partitions)
}
