//! The decision itself: the need from lag or rate, then the hysteresis
//! (one step up, settle, stabilized and bounded scale-down, dead band, idle
//! window). Pure: `now` is an argument and all memory is in [`State`].

use serde::Serialize;

use super::decision::{Action, Basis, Climb, Decision, Reason};
use super::observation::Observation;
use super::pause::{price_scale_down, project_pause, rebalance_backlog};
use super::settings::{Params, PolicySettings};
use super::sizing::{
    climbing_need, effective_capacity, lag_need, partition_drain_floor, rate_need,
};
use crate::traffic::NOISE_STANDARD_ERRORS;

/// Below this inbound rate (msg/s) a topic counts as idle.
const IDLE_RATE_PER_S: f64 = 1e-3;
/// A steady rate this much above the one seen when the need fell counts as
/// a ramp, and holds the scale-down.
const RAMP_LEAD: f64 = 0.02;
/// Shortest share of the stabilization window a scale-down waits.
const MIN_STABILIZATION_SHARE: f64 = 0.2;
/// A burst counts as lasting like the last one until it has run this much
/// longer: one burst's length is a rough estimate of the next one's.
const BURST_LENGTH_MARGIN: f64 = 0.5;
/// Weight of a new capacity sample in the learned per-pod capacity.
const CAPACITY_LEARNING_WEIGHT: f64 = 0.3;
/// A group counts as saturated (so `μ/n` measures capacity) while its backlog
/// exceeds this many seconds of inbound traffic.
const SATURATION_BACKLOG_SECONDS: f64 = 10.0;

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
    /// The last sample held a scale-up for a step its newest interval
    /// alone showed: the next one scales, confirmed or not.
    pub confirming_step: bool,
}

/// Backlog (seconds of the inbound rate) a group that keeps up still shows:
/// batches in flight.
const KEEP_UP_BACKLOG_SECONDS: f64 = 5.0;

/// Decides the desired replicas at time `now` (seconds on any fixed clock).
pub fn decide(params: &Params, state: &State, obs: &Observation, now: f64) -> (Decision, State) {
    // Rebalance pauses are planned at the length the offsets have shown.
    let params = &*params.as_learned(obs);
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
    // Bursts apart by more than the idle window: a pod kept warm would idle
    // out before the next one, and pay the cold start anyway.
    let gap_outlasts_idle = obs.idle_gap_s.is_some_and(|gap| gap >= s.idle_seconds);

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
    // What the pause of a scale-up from here to `to` would add: S seconds
    // of the shortfall while new pods start, then R seconds of the traffic
    // of the partitions that pause.
    let pause_backlog = |c: f64, to: u32| {
        s.startup_seconds * (rate - effective_capacity(params, obs, current, c)).max(0.0)
            + rebalance_backlog(s, rate, current, to)
    };
    // On a steady climb the need is sized for the rate when a scale-up's
    // pods will consume (after start-up and rebalance), not the rate now.
    let climb = obs.rate_climb_per_s2.map(|per_s2| Climb {
        per_s2,
        lead_seconds: s.startup_seconds + s.rebalance_seconds,
    });
    let rate_ahead = rate + climb.map_or(0.0, |c| c.per_s2 * c.lead_seconds);
    let ahead = |backlog: f64, c: f64| {
        let mut need = climbing_need(params, obs, rate, rate_ahead, backlog, c);
        if let Basis::Rate { climb: shown, .. } = &mut need.basis {
            *shown = climb;
        }
        need
    };
    // The last burst has ended, lasted like the one before it, and left no
    // backlog: the fall is the burst's end, not a dip within it.
    let burst_over = obs.busy_for_s.is_none()
        && obs.lag <= rate * KEEP_UP_BACKLOG_SECONDS
        && matches!((obs.last_burst_s, obs.burst_before_s),
            (Some(last), Some(before)) if (last - before).abs() <= BURST_LENGTH_MARGIN * before);
    // What the topic falls back to when the burst under way ends.
    let base_after_burst = obs.burst_base_per_s.unwrap_or(0.0);
    // A burst lasting like the last one (up to half again as long: one
    // burst's length is a rough estimate of the next one's): the seconds
    // until it should end, when that is before a scale-up's pods would
    // consume (after start-up and rebalance).
    let burst_remaining = match (obs.quiet_for_s, obs.busy_for_s, obs.last_burst_s) {
        (None, Some(busy), Some(last)) if busy <= last * (1.0 + BURST_LENGTH_MARGIN) => {
            Some((last - busy).max(0.0)).filter(|r| *r < s.startup_seconds + s.rebalance_seconds)
        }
        _ => None,
    };
    // Three sizings: `need` (backlog beyond the projection: what would
    // justify a scale-up), `need_up` (a scale-up is sized once, for the step
    // and for its own pause), `need_down` (the whole backlog: no pods go
    // while it still needs them).
    let (need, need_up, need_down) = match capacity {
        Some(c) if !lag_sized => {
            let need = ahead(excess_backlog, c);
            let up = if need.pods > current {
                ahead(excess_backlog + pause_backlog(c, need.pods), c)
            } else {
                ahead(excess_backlog, c)
            };
            // A burst lasting like the last one that ends before new pods
            // consume leaves them only its backlog, not the traffic of a
            // whole pause: a scale-up is sized for the rate now or for that
            // backlog, whichever needs more.
            let left_by_burst = burst_remaining.map(|remaining| {
                let serve = effective_capacity(params, obs, current, c);
                // At the step's rate while the short window catches up.
                let burst_rate = rate.max(obs.unconfirmed_step_per_s.unwrap_or(0.0));
                let left = excess_backlog + (burst_rate - serve).max(0.0) * remaining;
                let mut sized = rate_need(params, obs, base_after_burst, left, c);
                if let Basis::Rate { burst_ends_in, .. } = &mut sized.basis {
                    *burst_ends_in = Some(remaining);
                }
                sized
            });
            let up = match left_by_burst {
                Some(burst) if burst.pods < up.pods => {
                    if burst.pods > need.pods {
                        burst
                    } else {
                        need.clone()
                    }
                }
                _ => up,
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
    // A group with no backlog beyond the projection, whose need exceeds it
    // only by what the rate's own noise can explain, shows no need yet: a
    // scale-up's pause would make the backlog it is meant to prevent. The
    // backlog's growth is the second witness.
    let keeps_up = |current: u32| {
        let Some(c) = capacity else { return false };
        let noise = NOISE_STANDARD_ERRORS * obs.rate_uncertainty_per_s.unwrap_or(0.0);
        excess_backlog <= rate * KEEP_UP_BACKLOG_SECONDS
            && climbing_need(
                params,
                obs,
                (rate - noise).max(0.0),
                (rate_ahead - noise).max(0.0),
                0.0,
                c,
            )
            .pods
                <= current
    };
    // Traffic that has stopped, or a burst lasting as the last one did,
    // ends before a scale-up's pods would consume (after start-up and
    // rebalance): if the pods that run (settled: not still starting)
    // drain what it leaves within drainSeconds, the scale-up would only
    // add its pause.
    let drains_first = |current: u32| {
        let c = capacity?;
        let (remaining, hold) = if obs.quiet_for_s.is_some() {
            (0.0, Action::TrafficStopped)
        } else {
            (burst_remaining?, Action::BurstEndsFirst)
        };
        let serve = effective_capacity(params, obs, current, c);
        let left = obs.lag + (rate - serve).max(0.0) * remaining;
        // Once it ends, the pods drain it beside the rate it fell back to.
        let spare = serve - base_after_burst;
        (remaining < s.startup_seconds + s.rebalance_seconds && left <= spare * s.drain_seconds)
            .then_some(hold)
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
    let pods_down = bound(
        need_down
            .pods
            .max(partition_drain_floor(params, obs, rate, capacity)),
    )
    .max(pods);
    let to_zero = idle_now && idle_for >= s.idle_seconds && s.min_replicas == 0;
    let cold_at_once = idle_now && gap_outlasts_idle && s.min_replicas == 0;
    // Still climbing past the rate seen when the need fell: a ramp.
    let rising =
        state.lower_since.is_some() && steady_rate > state.rate_when_lower * (1.0 + RAMP_LEAD);

    // A rate-sized scale-down prices its own pause (see `price_scale_down`).
    let mut priced_need = None;
    let mut paused_target = None;
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
        Some(current) if cold_at_once && current > 0 && params.rate_aware => {
            (0, Action::IdleGapOutlasts)
        }
        Some(current) if pods > current => {
            if current > 0 && f64::from(pods) <= f64::from(current) * (1.0 + s.dead_band) {
                (current, Action::DeadBand)
            } else if current > 0 && !lag_sized && keeps_up(current) {
                (current, Action::KeepingUp)
            } else if current > 0
                && !lag_sized
                && !in_settle
                && let Some(hold) = drains_first(current)
            {
                (current, hold)
            } else if in_settle && lag_sized && obs.lag <= state.projected_backlog {
                (current, Action::Settling)
            } else if !state.confirming_step
                && let (Some(c), Some(step)) =
                    (capacity.filter(|_| !lag_sized), obs.unconfirmed_step_per_s)
                && bound(rate_need(params, obs, step, excess_backlog, c).pods) > pods_up
            {
                // The rate is still catching up with a step: sized now,
                // this scale-up would need a second one a sample later
                // (and a second rebalance). One sample later it is sized
                // once.
                (current, Action::ConfirmingStep)
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
                } else if now - since >= stabilization_seconds(s, pods_down, current, burst_over) {
                    let step_floor =
                        (f64::from(current) * (1.0 - s.max_scale_down_step)).floor() as u32;
                    let target = pods_down.max(step_floor);
                    match capacity.filter(|_| !lag_sized) {
                        Some(c) => {
                            let (to, priced) =
                                price_scale_down(params, obs, steady_rate, current, target, c);
                            priced_need = Some(priced);
                            if to < current {
                                (to, Action::ScaleDown)
                            } else {
                                paused_target = Some(target);
                                (current, Action::PauseTooCostly)
                            }
                        }
                        None => (target, Action::ScaleDown),
                    }
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
            (
                s.startup_seconds + s.rebalance_seconds,
                pause_backlog(c, replicas),
            )
        } else {
            // Partitions pause while they move.
            (
                s.rebalance_seconds,
                rebalance_backlog(s, rate, previous, replicas),
            )
        };
        project_pause(
            params, obs, &mut next, now, allowance, pause_s, added, replicas, c,
        );
    }
    next.lower_since = match action {
        // A rising rate restarts the window.
        Action::Stabilizing if rising => Some(now),
        // A cold start holds the count, not the clock: once the window is
        // full, the need has been lower for as long as it was seen lower.
        Action::Stabilizing | Action::DeadBand | Action::PauseTooCostly | Action::ColdStart
            if pods_down < replicas =>
        {
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
    next.confirming_step = action == Action::ConfirmingStep;

    let (elapsed_seconds, window) = match action {
        Action::ScaleUp => (0.0, s.settle_seconds),
        Action::Settling => ((state.settle_until - now).max(0.0), s.settle_seconds),
        Action::Stabilizing => (
            now - next.lower_since.unwrap_or(now),
            stabilization_seconds(s, pods_down, replicas, burst_over),
        ),
        Action::DeadBand => (0.0, s.dead_band),
        Action::IdleKeepOne | Action::Idle => (idle_for, s.idle_seconds),
        Action::IdleGapOutlasts => (obs.idle_gap_s.unwrap_or(0.0), s.idle_seconds),
        Action::TrafficStopped => (obs.quiet_for_s.unwrap_or(0.0), 0.0),
        Action::BurstEndsFirst => (
            obs.busy_for_s.unwrap_or(0.0),
            obs.last_burst_s.unwrap_or(0.0),
        ),
        _ => (0.0, 0.0),
    };
    // A scale-up is explained by the sizing it used (pause included).
    let shown = match action {
        Action::ScaleUp => need_up,
        Action::ScaleDown | Action::PauseTooCostly => priced_need.unwrap_or(need_down),
        Action::Stabilizing | Action::IdleKeepOne => need_down,
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
        paused_target,
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
        rebalance_seconds: s.rebalance_seconds,
        startup_seconds: s.startup_seconds,
    };
    (decision, next)
}

/// How long the need must stay lower before scaling from `current` down to
/// `need`: the full window for a small step (noise is small steps), in
/// proportion for a large one (a load that fell 90 % has not fallen by
/// chance), and never less than `MIN_STABILIZATION_SHARE` of the window (a
/// short fall may be a dip) unless `burst_over`: a burst that lasted like
/// the one before it has ended, and its backlog has drained.
fn stabilization_seconds(s: &PolicySettings, need: u32, current: u32, burst_over: bool) -> f64 {
    let kept = if current == 0 {
        1.0
    } else {
        f64::from(need) / f64::from(current)
    };
    let least = if burst_over {
        0.0
    } else {
        MIN_STABILIZATION_SHARE
    };
    s.scale_down_stabilization_seconds * kept.max(least)
}

/// The backlog the last change projected for `now`: its peak until the pause
/// ends, then draining at the planned rate; 0 once drained.
pub(super) fn projected_allowance(state: &State, now: f64) -> f64 {
    if now <= state.pause_until {
        state.projected_backlog
    } else {
        (state.projected_backlog - state.projected_drain_per_s * (now - state.pause_until)).max(0.0)
    }
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
