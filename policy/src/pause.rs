//! What a change of the group's size costs while it rebalances: the
//! backlog its pause leaves, the projection a change records, and a change
//! seen in the group but not asked for.

use super::observation::Observation;
use super::settings::{Params, PolicySettings};
use super::sizing::effective_capacity;
use super::state::State;

/// The group was seen to change to `members` pods without this replay
/// having asked for it (the answer of a replay that began earlier, or an
/// operator's): go on from what runs, expecting the backlog of the
/// rebalance that change began.
pub fn adopt(params: &Params, state: &State, obs: &Observation, now: f64, members: u32) -> State {
    let params = &*params.as_learned(obs);
    let s = &params.settings;
    let rate = obs.inbound_rate_per_s.unwrap_or(0.0);
    let capacity = s
        .pod_capacity
        .or(state.learned_capacity_per_s)
        .unwrap_or(0.0);
    let previous = state.replicas.unwrap_or(0);
    let mut next = state.clone();
    let added = rebalance_backlog(s, rate, previous, members);
    let allowance = state.projected_allowance(now);
    project_pause(
        params,
        obs,
        &mut next,
        now,
        allowance,
        s.rebalance_seconds,
        added,
        members,
        capacity,
    );
    next.changed_at = Some(now);
    next.ready_at = now;
    next.changed_from = previous;
    next.paused_share = s.rebalance.paused_share(previous, members);
    next.replicas = Some(members);
    next
}

/// Records what a change to `replicas` pods expects: the backlog peaks at
/// the lag plus what its pause adds, when the pause ends, then drains at
/// what the new count processes beyond the rate. While the last change's
/// pause is still under way its projected peak (`allowance`) counts even
/// where the lag does not show it yet; once it is over, what the lag no
/// longer shows has drained.
#[allow(clippy::too_many_arguments)]
pub(super) fn project_pause(
    params: &Params,
    obs: &Observation,
    next: &mut State,
    now: f64,
    allowance: f64,
    pause_seconds: f64,
    added: f64,
    replicas: u32,
    capacity: f64,
) {
    let rate = obs.inbound_rate_per_s.unwrap_or(0.0);
    let waiting = if now <= next.pause_until {
        allowance.max(obs.lag)
    } else {
        obs.lag
    };
    next.projected_backlog = waiting + added;
    next.pause_until = now + pause_seconds;
    next.projected_drain_per_s =
        (effective_capacity(params, obs, replicas, capacity) - rate).max(0.0);
}

/// Messages that wait while the group rebalances from `from` to `to` pods:
/// R seconds of the traffic of the partitions that pause.
pub(super) fn rebalance_backlog(s: &PolicySettings, rate: f64, from: u32, to: u32) -> f64 {
    s.rebalance_seconds * rate * s.rebalance.paused_share(from, to)
}
