//! The decision itself: the need from lag or rate, then the hysteresis
//! (one step up, settle, stabilized and bounded scale-down, dead band, idle
//! window). Pure: `now` is an argument and all memory is in [`State`].

use super::decision::{Action, Basis, Climb, Decision, PartitionLimit, PlanBasis, Reason};
use super::observation::Observation;
use super::partitions::partition_aware_pods_skewed;
use super::pause::{price_scale_down, project_pause, rebalance_backlog};
use super::plan::{Forecast, InFlight, Plan, Planner};
use super::settings::{Params, PartitionCap, PolicySettings, Strategy};
use super::sizing::{
    Need, climbing_need, effective_capacity, hottest_share, lag_need, partition_drain_floor,
    rate_need,
};
use super::state::State;
use super::thresholds::NOISE_STANDARD_ERRORS;

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

/// Backlog (seconds of the inbound rate) a group that keeps up still shows:
/// batches in flight.
const KEEP_UP_BACKLOG_SECONDS: f64 = 5.0;

/// Decides the desired replicas at time `now` (seconds on any fixed clock).
pub fn decide(params: &Params, state: &State, obs: &Observation, now: f64) -> (Decision, State) {
    // Rebalance pauses are planned at the length the offsets have shown.
    let params = &*params.as_learned(obs);
    let at = Situation::new(params, state, obs, now);
    let mut next = state.clone();
    next.idle_since = at.idle_since;
    // Decide with what was known before this sample; learn from it for the next.
    if params.settings.pod_capacity.is_none() {
        learn_capacity(params, state, obs, now, &mut next);
    }
    if let Some(c) = at
        .capacity
        .filter(|_| !at.lag_sized && params.settings.strategy == Strategy::Planner)
    {
        let horizon = params.settings.startup_seconds
            + params.settings.rebalance_seconds
            + params.settings.wait_objective();
        let forecast = at.forecast();
        // The rate seen, less its noise: a short window that still spans a
        // step reads low for a while after it, and the peak holds the step.
        let seen = at.steady_rate.max(at.rate - forecast.band);
        if seen >= state.peak_rate_per_s || now - state.peak_at > horizon {
            next.peak_rate_per_s = seen;
            next.peak_at = now;
        }
        let plan = at.plan(c, forecast);
        let (choice, need) = at.choose_planned(&plan, c);
        at.book(&mut next, &choice, need);
        let decision = at.explain_planned(&next, choice, plan, need, c, forecast);
        return (decision, next);
    }
    let sizes = at.sizings();
    let bounds = at.bounds(&sizes);
    let choice = at.choose(&bounds);
    at.book(&mut next, &choice, bounds.down);
    let decision = at.explain(&next, choice, sizes, bounds.down);
    (decision, next)
}

/// Whether one sample alone shows work for the group: lag above the
/// activation threshold, or inbound traffic for rate-aware triggers.
/// Activation needs no history, so a replica that has just started answers
/// it from its first sample.
pub fn activated(params: &Params, obs: &Observation) -> bool {
    obs.activation_lag > params.activation_lag_threshold
        || (params.rate_aware && obs.inbound_rate_per_s.unwrap_or(0.0) >= IDLE_RATE_PER_S)
}

/// What one decision sees: the observation read against the settings and
/// what the policy remembers, computed once.
struct Situation<'a> {
    params: &'a Params,
    s: &'a PolicySettings,
    state: &'a State,
    obs: &'a Observation,
    now: f64,
    rate: f64,
    steady_rate: f64,
    idle_now: bool,
    idle_since: Option<f64>,
    idle_for: f64,
    /// Bursts apart by more than the idle window: a pod kept warm would
    /// idle out before the next one, and pay the cold start anyway.
    gap_outlasts_idle: bool,
    capacity: Option<f64>,
    lag_sized: bool,
    in_settle: bool,
    /// Backlog the last change's own pause created, still draining as
    /// planned: not new demand.
    allowance: f64,
    /// Only what exceeds that projection counts.
    excess_backlog: f64,
    current: u32,
    climb: Option<Climb>,
    rate_ahead: f64,
    /// The last burst has ended, lasted like the one before it, and left no
    /// backlog: the fall is the burst's end, not a dip within it.
    burst_over: bool,
    /// What the topic falls back to when the burst under way ends.
    base_after_burst: f64,
    /// A burst lasting like the last one (up to half again as long: one
    /// burst's length is a rough estimate of the next one's): the seconds
    /// until it should end, when that is before a scale-up's pods would
    /// consume (after start-up and rebalance).
    burst_remaining: Option<f64>,
}

/// Three sizings: `need` (backlog beyond the projection: what would justify
/// a scale-up), `up` (a scale-up is sized once, for the step and for its own
/// pause), `down` (the whole backlog: no pods go while it still needs them).
struct Sizings {
    need: Need,
    up: Need,
    down: Need,
}

/// The sizings bounded by min, max and the partitions' drain floor.
struct Bounds {
    pods: u32,
    up: u32,
    down: u32,
}

/// The answer and why; a rate-sized scale-down also carries its pricing.
struct Choice {
    replicas: u32,
    action: Action,
    priced_need: Option<Need>,
    paused_target: Option<u32>,
}

impl Choice {
    fn plain((replicas, action): (u32, Action)) -> Self {
        Choice {
            replicas,
            action,
            priced_need: None,
            paused_target: None,
        }
    }
}

impl<'a> Situation<'a> {
    fn new(params: &'a Params, state: &'a State, obs: &'a Observation, now: f64) -> Self {
        let s = &params.settings;
        let rate = obs.inbound_rate_per_s.unwrap_or(0.0);
        let idle_now =
            obs.activation_lag <= params.activation_lag_threshold && rate < IDLE_RATE_PER_S;
        let idle_since = if idle_now {
            state.idle_since.or(Some(now))
        } else {
            None
        };
        let capacity = s.pod_capacity.or(state.learned_capacity_per_s);
        let allowance = state.projected_allowance(now);
        // On a steady climb the need is sized for the rate when a scale-up's
        // pods will consume (after start-up and rebalance), not the rate now.
        let climb = obs.rate_climb_per_s2.map(|per_s2| Climb {
            per_s2,
            lead_seconds: s.startup_seconds + s.rebalance_seconds,
        });
        let burst_over = obs.busy_for_s.is_none()
            && obs.lag <= rate * KEEP_UP_BACKLOG_SECONDS
            && matches!((obs.last_burst_s, obs.burst_before_s),
                (Some(last), Some(before)) if (last - before).abs() <= BURST_LENGTH_MARGIN * before);
        let burst_remaining = match (obs.quiet_for_s, obs.busy_for_s, obs.last_burst_s) {
            (None, Some(busy), Some(last)) if busy <= last * (1.0 + BURST_LENGTH_MARGIN) => {
                Some((last - busy).max(0.0))
                    .filter(|r| *r < s.startup_seconds + s.rebalance_seconds)
            }
            _ => None,
        };
        Situation {
            params,
            s,
            state,
            obs,
            now,
            rate,
            steady_rate: obs.steady_rate_per_s.unwrap_or(rate).min(rate),
            idle_now,
            idle_since,
            idle_for: idle_since.map_or(0.0, |since| now - since),
            gap_outlasts_idle: obs.idle_gap_s.is_some_and(|gap| gap >= s.idle_seconds),
            capacity,
            lag_sized: !(params.rate_aware && capacity.is_some()),
            in_settle: now < state.settle_until,
            allowance,
            excess_backlog: (obs.lag - allowance).max(0.0),
            current: state.replicas.unwrap_or(0),
            climb,
            rate_ahead: rate + climb.map_or(0.0, |c| c.per_s2 * c.lead_seconds),
            burst_over,
            base_after_burst: obs.burst_base_per_s.unwrap_or(0.0),
            burst_remaining,
        }
    }

    /// What the pause of a scale-up from here to `to` would add: S seconds
    /// of the shortfall while new pods start, then R seconds of the traffic
    /// of the partitions that pause.
    fn pause_backlog(&self, c: f64, to: u32) -> f64 {
        let shortfall =
            (self.rate - effective_capacity(self.params, self.obs, self.current, c)).max(0.0);
        self.s.startup_seconds * shortfall + rebalance_backlog(self.s, self.rate, self.current, to)
    }

    /// The need for `backlog` at the rate ahead on a climb.
    fn ahead(&self, backlog: f64, c: f64) -> Need {
        let (params, obs) = (self.params, self.obs);
        let mut need = climbing_need(params, obs, self.rate, self.rate_ahead, backlog, c);
        if let Basis::Rate { climb: shown, .. } = &mut need.basis {
            *shown = self.climb;
        }
        need
    }

    fn sizings(&self) -> Sizings {
        let (params, obs) = (self.params, self.obs);
        match self.capacity {
            Some(c) if !self.lag_sized => {
                let need = self.ahead(self.excess_backlog, c);
                let up = if need.pods > self.current {
                    self.ahead(self.excess_backlog + self.pause_backlog(c, need.pods), c)
                } else {
                    self.ahead(self.excess_backlog, c)
                };
                let up = self.burst_sizing(c, &need, up);
                let down = rate_need(params, obs, self.steady_rate, obs.lag, c);
                Sizings { need, up, down }
            }
            // Lag-only sizing counts the whole backlog; the settle rule
            // keeps it from reacting to backlog inside the projection.
            _ => Sizings {
                need: lag_need(params, obs, obs.lag),
                up: lag_need(params, obs, obs.lag),
                down: lag_need(params, obs, obs.lag),
            },
        }
    }

    /// A burst lasting like the last one that ends before new pods consume
    /// leaves them only its backlog, not the traffic of a whole pause: a
    /// scale-up is sized for the rate now or for that backlog, whichever
    /// needs more.
    fn burst_sizing(&self, c: f64, need: &Need, up: Need) -> Need {
        let Some(remaining) = self.burst_remaining else {
            return up;
        };
        let (params, obs) = (self.params, self.obs);
        let serve = effective_capacity(params, obs, self.current, c);
        // At the step's rate while the short window catches up.
        let burst_rate = self.rate.max(obs.unconfirmed_step_per_s.unwrap_or(0.0));
        let left = self.excess_backlog + (burst_rate - serve).max(0.0) * remaining;
        let mut burst = rate_need(params, obs, self.base_after_burst, left, c);
        if let Basis::Rate { burst_ends_in, .. } = &mut burst.basis {
            *burst_ends_in = Some(remaining);
        }
        if burst.pods >= up.pods {
            up
        } else if burst.pods > need.pods {
            burst
        } else {
            need.clone()
        }
    }

    /// Within min and max, and at least one pod for rate-aware triggers
    /// that are not idle.
    fn bound(&self, n: u32) -> u32 {
        let n = n.clamp(self.s.min_replicas, self.s.max_replicas);
        if self.params.rate_aware && !self.idle_now {
            n.max(1)
        } else {
            n
        }
    }

    fn bounds(&self, sizes: &Sizings) -> Bounds {
        let (params, obs) = (self.params, self.obs);
        let pods = self.bound(sizes.need.pods);
        let floor = partition_drain_floor(params, obs, self.rate, self.capacity);
        Bounds {
            pods,
            up: self.bound(sizes.up.pods).max(pods),
            down: self.bound(sizes.down.pods.max(floor)).max(pods),
        }
    }

    /// A group with no backlog beyond the projection, whose need exceeds
    /// `current` only by what the rate's own noise can explain, shows no
    /// need yet: a scale-up's pause would make the backlog it is meant to
    /// prevent. The backlog's growth is the second witness.
    fn keeps_up(&self, current: u32) -> bool {
        let Some(c) = self.capacity else { return false };
        let noise = NOISE_STANDARD_ERRORS * self.obs.rate_uncertainty_per_s.unwrap_or(0.0);
        let calm_rate = (self.rate - noise).max(0.0);
        let calm_ahead = (self.rate_ahead - noise).max(0.0);
        self.excess_backlog <= self.rate * KEEP_UP_BACKLOG_SECONDS
            && climbing_need(self.params, self.obs, calm_rate, calm_ahead, 0.0, c).pods <= current
    }

    /// Traffic that has stopped, or a burst lasting as the last one did,
    /// ends before a scale-up's pods would consume (after start-up and
    /// rebalance): if the pods that run (settled: not still starting) drain
    /// what it leaves within drainSeconds, the scale-up would only add its
    /// pause.
    fn drains_first(&self, current: u32) -> Option<Action> {
        let c = self.capacity?;
        let (s, obs) = (self.s, self.obs);
        let (remaining, hold) = if obs.quiet_for_s.is_some() {
            (0.0, Action::TrafficStopped)
        } else {
            (self.burst_remaining?, Action::BurstEndsFirst)
        };
        let serve = effective_capacity(self.params, obs, current, c);
        let left = obs.lag + (self.rate - serve).max(0.0) * remaining;
        // Once it ends, the pods drain it beside the rate it fell back to.
        let spare = serve - self.base_after_burst;
        (remaining < s.startup_seconds + s.rebalance_seconds && left <= spare * s.drain_seconds)
            .then_some(hold)
    }

    /// Still climbing past the rate seen when the need fell: a ramp.
    fn rising(&self) -> bool {
        self.state.lower_since.is_some()
            && self.steady_rate > self.state.rate_when_lower * (1.0 + RAMP_LEAD)
    }

    fn choose(&self, b: &Bounds) -> Choice {
        let (s, obs) = (self.s, self.obs);
        let to_zero = self.idle_now && self.idle_for >= s.idle_seconds && s.min_replicas == 0;
        let cold_at_once = self.idle_now && self.gap_outlasts_idle && s.min_replicas == 0;
        let choice = match self.state.replicas {
            None => (b.pods, Action::Initial),
            // A scaler that just started has not seen the windows a
            // scale-down depends on: hold, whatever the need says.
            Some(current) if b.down < current && !obs.window_full => (current, Action::ColdStart),
            // No rate yet (a single sample): nothing to size a scale-down on.
            Some(current)
                if b.down < current
                    && self.params.rate_aware
                    && obs.inbound_rate_per_s.is_none() =>
            {
                (current, Action::ColdStart)
            }
            Some(_) if to_zero => (0, Action::Idle),
            Some(current) if cold_at_once && current > 0 && self.params.rate_aware => {
                (0, Action::IdleGapOutlasts)
            }
            Some(current) if b.pods > current => self.choose_up(current, b),
            Some(current) if b.down < current => return self.choose_down(current, b.down),
            Some(current) => (current, Action::Steady),
        };
        Choice::plain(choice)
    }

    fn choose_up(&self, current: u32, b: &Bounds) -> (u32, Action) {
        let (s, obs, state) = (self.s, self.obs, self.state);
        if current > 0 && f64::from(b.pods) <= f64::from(current) * (1.0 + s.dead_band) {
            (current, Action::DeadBand)
        } else if current > 0 && !self.lag_sized && self.keeps_up(current) {
            (current, Action::KeepingUp)
        } else if current > 0
            && !self.lag_sized
            && !self.in_settle
            && let Some(hold) = self.drains_first(current)
        {
            (current, hold)
        } else if self.in_settle && self.lag_sized && obs.lag <= state.projected_backlog {
            (current, Action::Settling)
        } else if !state.confirming_step
            && let (Some(c), Some(step)) = (
                self.capacity.filter(|_| !self.lag_sized),
                obs.unconfirmed_step_per_s,
            )
            && self.bound(rate_need(self.params, obs, step, self.excess_backlog, c).pods) > b.up
        {
            // The rate is still catching up with a step: sized now, this
            // scale-up would need a second one a sample later (and a second
            // rebalance). One sample later it is sized once.
            (current, Action::ConfirmingStep)
        } else {
            (b.up, Action::ScaleUp)
        }
    }

    fn choose_down(&self, current: u32, down: u32) -> Choice {
        let s = self.s;
        let hold = |action| Choice::plain((current, action));
        if self.idle_now && down == 0 && self.params.rate_aware {
            return Choice::plain((current.min(1), Action::IdleKeepOne));
        }
        if self.in_settle {
            return hold(Action::Settling);
        }
        if f64::from(down) >= f64::from(current) * (1.0 - s.dead_band) {
            return hold(Action::DeadBand);
        }
        let since = self.state.lower_since.unwrap_or(self.now);
        // Trend lead: the load is climbing; what it needs soon is not less
        // than what runs now.
        if self.rising()
            || self.now - since < stabilization_seconds(s, down, current, self.burst_over)
        {
            return hold(Action::Stabilizing);
        }
        let step_floor = (f64::from(current) * (1.0 - s.max_scale_down_step)).floor() as u32;
        let target = down.max(step_floor);
        let Some(c) = self.capacity.filter(|_| !self.lag_sized) else {
            return Choice::plain((target, Action::ScaleDown));
        };
        // A rate-sized scale-down prices its own pause (see `price_scale_down`).
        let (to, priced) =
            price_scale_down(self.params, self.obs, self.steady_rate, current, target, c);
        let (replicas, action, paused_target) = if to < current {
            (to, Action::ScaleDown, None)
        } else {
            (current, Action::PauseTooCostly, Some(target))
        };
        Choice {
            replicas,
            action,
            priced_need: Some(priced),
            paused_target,
        }
    }

    /// Bookkeeping of the windows in `next`: the settle window and the
    /// projected pause of a change, since when the need stayed lower, and
    /// the answer.
    fn book(&self, next: &mut State, choice: &Choice, down: u32) {
        let (s, state, now) = (self.s, self.state, self.now);
        let (replicas, action) = (choice.replicas, choice.action);
        let previous = self.current;
        if replicas != previous && replicas > 0 {
            let c = self.capacity.unwrap_or(0.0);
            let (pause_s, added) = if replicas > previous {
                next.settle_until = now + s.settle_seconds;
                // The new pods start, then the group pauses to rebalance:
                // traffic keeps arriving while the backlog waits.
                (
                    s.startup_seconds + s.rebalance_seconds,
                    self.pause_backlog(c, replicas),
                )
            } else {
                // Partitions pause while they move.
                (
                    s.rebalance_seconds,
                    rebalance_backlog(s, self.rate, previous, replicas),
                )
            };
            // Pods of a scale-up still starting do not run yet: a change
            // made before they consume changes that scale-up, counted from
            // the pods that do run.
            let running = if state.changed_at.is_some() && now < state.ready_at {
                state.changed_from.min(previous)
            } else {
                previous
            };
            next.changed_at = Some(now);
            next.ready_at = if replicas > previous {
                now + s.startup_seconds
            } else if replicas > running {
                state.ready_at
            } else {
                now
            };
            next.changed_from = running;
            next.paused_share = s.rebalance.paused_share(running, replicas);
            let (params, obs, allowance) = (self.params, self.obs, self.allowance);
            project_pause(
                params, obs, next, now, allowance, pause_s, added, replicas, c,
            );
        }
        next.lower_since = match action {
            // A rising rate restarts the window.
            Action::Stabilizing if self.rising() => Some(now),
            // A cold start holds the count, not the clock: once the window
            // is full, the need has been lower for as long as it was seen
            // lower.
            Action::Stabilizing | Action::DeadBand | Action::PauseTooCostly | Action::ColdStart
                if down < replicas =>
            {
                state.lower_since.or(Some(now))
            }
            // After a bounded step, the next step waits another window.
            Action::ScaleDown if replicas > down => Some(now),
            _ => None,
        };
        if next.lower_since != state.lower_since {
            next.rate_when_lower = self.steady_rate;
        }
        next.replicas = Some(replicas);
        next.confirming_step = action == Action::ConfirmingStep;
    }

    /// How far into its window the action is, and the window.
    fn progress(&self, next: &State, action: Action, down: u32, replicas: u32) -> (f64, f64) {
        let (s, obs, now) = (self.s, self.obs, self.now);
        match action {
            Action::ScaleUp => (0.0, s.settle_seconds),
            Action::Settling => ((self.state.settle_until - now).max(0.0), s.settle_seconds),
            Action::Stabilizing => (
                now - next.lower_since.unwrap_or(now),
                stabilization_seconds(s, down, replicas, self.burst_over),
            ),
            Action::DeadBand => (0.0, s.dead_band),
            Action::IdleKeepOne | Action::Idle => (self.idle_for, s.idle_seconds),
            Action::IdleGapOutlasts => (obs.idle_gap_s.unwrap_or(0.0), s.idle_seconds),
            Action::TrafficStopped => (obs.quiet_for_s.unwrap_or(0.0), 0.0),
            Action::BurstEndsFirst => (
                obs.busy_for_s.unwrap_or(0.0),
                obs.last_burst_s.unwrap_or(0.0),
            ),
            _ => (0.0, 0.0),
        }
    }

    /// The arrival forecast the plan prices against: the rate now, its
    /// climb, a burst ending like the last one, quiet, and the noise band.
    fn forecast(&self) -> Forecast {
        let obs = self.obs;
        let quiet = obs.quiet_for_s.is_some();
        let (ends_in, ends_late) = if quiet {
            (Some(0.0), Some(0.0))
        } else {
            let late = 1.0 + BURST_LENGTH_MARGIN;
            match (obs.busy_for_s, obs.last_burst_s) {
                (Some(busy), Some(last)) if busy <= last * late => (
                    Some((last - busy).max(0.0)),
                    Some((last * late - busy).max(0.0)),
                ),
                _ => (None, None),
            }
        };
        Forecast {
            // A step the newest interval shows is sized for at once: a
            // count sized on the rate still catching up would need a
            // second change, and a second pause.
            rate: self.rate.max(obs.unconfirmed_step_per_s.unwrap_or(0.0)),
            climb: obs.rate_climb_per_s2.unwrap_or(0.0),
            ends_in,
            ends_late,
            base: if quiet { 0.0 } else { self.base_after_burst },
            band: NOISE_STANDARD_ERRORS * obs.rate_uncertainty_per_s.unwrap_or(0.0),
        }
    }

    /// The counts worth pricing: within min and max, every count at which
    /// the busiest pod's share of the partitions changes, and the current.
    fn counts(&self) -> Vec<u32> {
        let (params, s, obs) = (self.params, self.s, self.obs);
        let lo = if params.rate_aware && !self.idle_now {
            s.min_replicas.max(1)
        } else {
            s.min_replicas
        };
        let p = obs.partitions.max(1);
        let hi = match params.cap {
            PartitionCap::None => s.max_replicas,
            _ => s.max_replicas.min(p),
        }
        .max(lo);
        let mut counts: Vec<u32> = (lo..=hi)
            .filter(|&n| {
                n <= lo.max(1)
                    || matches!(params.cap, PartitionCap::None)
                    || p.div_ceil(n) != p.div_ceil(n - 1)
            })
            .collect();
        if let Some(current) = self.state.replicas
            && let Err(at) = counts.binary_search(&current)
        {
            counts.insert(at, current);
        }
        counts
    }

    /// Every candidate count priced over the horizon.
    fn plan(&self, c: f64, forecast: Forecast) -> Plan {
        let (params, s, obs, state) = (self.params, self.s, self.obs, self.state);
        let capacity = |n: u32| effective_capacity(params, obs, n, c);
        let current = self.current;
        // A burst forecast to end, one that has ended like the one before
        // it, or traffic that stopped, is a fall the plan already expects;
        // so is one that has lasted as long as the burst before it did: a
        // dip within a load is short beside the load.
        let fallen = obs
            .last_burst_s
            .is_some_and(|last| obs.busy_for_s.is_none() && self.now - state.peak_at >= last);
        let held_rate = if forecast.ends_in.is_some() || self.burst_over || fallen {
            0.0
        } else {
            state.peak_rate_per_s.max(self.steady_rate)
        };
        let counts = self.counts();
        let in_flight = match state.changed_at {
            Some(_) => InFlight {
                ready_in: (state.ready_at - self.now).max(0.0),
                paused_for: (state.pause_until - self.now).max(0.0),
                before: capacity(state.changed_from),
                from: state.changed_from,
                share: state.paused_share,
            },
            None => InFlight::default(),
        };
        Planner {
            current,
            backlog: obs.lag,
            backlog_age_s: obs.estimated_wait_s.unwrap_or(0.0),
            forecast,
            held_rate,
            in_flight,
            startup_s: s.startup_seconds,
            rebalance_s: s.rebalance_seconds,
            rebalance: s.rebalance,
            headroom: s.headroom,
            objective_s: s.wait_objective(),
            capacity: &capacity,
            counts,
        }
        .plan()
    }

    /// The planned count, inside the protections the plan does not price:
    /// the first answer, the idle window, a cold start, the largest step
    /// down and the lagged partition's floor. Returns the choice and the
    /// need (the fewest pods that sustain the load, were a change free).
    fn choose_planned(&self, plan: &Plan, c: f64) -> (Choice, u32) {
        let (s, obs) = (self.s, self.obs);
        // The count that runs is priced even outside min and max (a policy
        // just lowered its max); the answer never is.
        let target = plan.choice().replicas.clamp(s.min_replicas, s.max_replicas);
        let need = plan.smallest_sustaining().map_or(target, |n| n.replicas);
        let to_zero = self.idle_now && self.idle_for >= s.idle_seconds && s.min_replicas == 0;
        let cold_at_once = self.idle_now && self.gap_outlasts_idle && s.min_replicas == 0;
        let mut paused_target = None;
        let choice = match self.state.replicas {
            None => (target, Action::Initial),
            Some(_) if to_zero => (0, Action::Idle),
            Some(current) if cold_at_once && current > 0 => (0, Action::IdleGapOutlasts),
            Some(current) if self.idle_now && target == 0 && current > 0 => {
                (current.min(1), Action::IdleKeepOne)
            }
            Some(current)
                if target < current && (!obs.window_full || obs.inbound_rate_per_s.is_none()) =>
            {
                (current, Action::ColdStart)
            }
            // A group still changing is not one the model can price a
            // reversal on: the pods starting or moving have paid part of
            // their pause. Scale-downs wait for the pause (start-up and
            // rebalance, as learned) to end.
            Some(current)
                if target < current
                    && self.state.changed_at.is_some()
                    && self.now < self.state.pause_until =>
            {
                (current, Action::Settling)
            }
            Some(current) if target < current => {
                let step_floor =
                    (f64::from(current) * (1.0 - s.max_scale_down_step)).floor() as u32;
                let floor = partition_drain_floor(self.params, obs, self.rate, Some(c));
                let to = target.max(step_floor).max(floor);
                if to < current {
                    (to, Action::ScaleDown)
                } else {
                    (current, Action::Steady)
                }
            }
            // Nothing learned since the last change was sized: its pause
            // still runs, the backlog is within what it projected and the
            // count it set processes the rate. Planned again on the same
            // facts, a second scale-up would only add a second pause.
            Some(current)
                if target > current
                    && self.state.changed_at.is_some()
                    && self.now < self.state.pause_until
                    && obs.lag <= self.state.projected_allowance(self.now)
                    && plan
                        .candidates
                        .iter()
                        .any(|c| c.replicas == current && c.sustains) =>
            {
                (current, Action::Settling)
            }
            Some(current) if target > current => (target, Action::ScaleUp),
            Some(current) if need < current => {
                paused_target = Some(need);
                (current, Action::PauseTooCostly)
            }
            Some(current) => (current, Action::Steady),
        };
        let mut choice = Choice::plain(choice);
        choice.paused_target = paused_target;
        (choice, need)
    }

    /// The planned decision, with the candidates it priced.
    fn explain_planned(
        &self,
        next: &State,
        choice: Choice,
        plan: Plan,
        need: u32,
        c: f64,
        forecast: Forecast,
    ) -> Decision {
        let (params, s, obs) = (self.params, self.s, self.obs);
        let (elapsed_seconds, window) = match choice.action {
            Action::Settling => (
                (self.state.pause_until - self.now).max(0.0),
                s.startup_seconds + s.rebalance_seconds,
            ),
            Action::IdleKeepOne | Action::Idle | Action::IdleGapOutlasts => {
                self.progress(next, choice.action, need, choice.replicas)
            }
            _ => (0.0, 0.0),
        };
        let p = obs.partitions.max(1);
        let ahead = forecast.at(s.startup_seconds + s.rebalance_seconds, 0.0);
        let partition_limit = (!matches!(params.cap, PartitionCap::None)
            && partition_aware_pods_skewed(ahead, p, c, hottest_share(obs)).is_none())
        .then_some(PartitionLimit {
            pods_needed: (ahead / c).ceil() as u32,
            partitions: p,
        });
        let shown = plan.choice();
        let basis = Basis::Plan(PlanBasis {
            rate_per_s: self.rate,
            band_per_s: forecast.band,
            source: obs.rate_source,
            climb_per_s2: obs.rate_climb_per_s2,
            burst_ends_in: forecast.ends_in.filter(|_| obs.quiet_for_s.is_none()),
            quiet: obs.quiet_for_s.is_some(),
            lag: obs.lag,
            capacity_per_s: c,
            objective_seconds: plan.objective_seconds,
            worst_wait_s: shown.worst_wait_s,
            pause_s: shown.pause_s,
            reachable: plan.reachable,
            startup_seconds: s.startup_seconds,
            rebalance_seconds: s.rebalance_seconds,
        });
        let reason = Reason {
            action: choice.action,
            from: self.current,
            to: choice.replicas,
            basis,
            partition_limit,
            elapsed_seconds,
            window,
            paused_target: choice.paused_target,
            estimated_wait_s: obs.estimated_wait_s,
        };
        let hot_partition = match &obs.hottest_partition {
            Some(hot) if hot.rate_per_s > c => Some(hot.clone()),
            _ => None,
        };
        let active = activated(params, obs) || choice.replicas > 0;
        Decision {
            replicas: choice.replicas,
            need,
            active,
            action: choice.action,
            reason,
            partition_limit,
            hot_partition,
            capacity_per_s: Some(c),
            rebalance_seconds: s.rebalance_seconds,
            startup_seconds: s.startup_seconds,
            plan: Some(plan),
        }
    }

    /// The decision, with the reason a person can check.
    fn explain(&self, next: &State, choice: Choice, sizes: Sizings, down: u32) -> Decision {
        let (params, s, obs) = (self.params, self.s, self.obs);
        let Choice {
            replicas,
            action,
            priced_need,
            paused_target,
        } = choice;
        let (elapsed_seconds, window) = self.progress(next, action, down, replicas);
        // A scale-up is explained by the sizing it used (pause included).
        let shown = match action {
            Action::ScaleUp => sizes.up,
            Action::ScaleDown | Action::PauseTooCostly => priced_need.unwrap_or(sizes.down),
            Action::Stabilizing | Action::IdleKeepOne => sizes.down,
            _ => sizes.need,
        };
        let partition_limit = shown.partition_limit;
        let reason = Reason {
            action,
            from: self.current,
            to: replicas,
            basis: shown.basis,
            partition_limit,
            elapsed_seconds,
            window,
            paused_target,
            estimated_wait_s: obs.estimated_wait_s,
        };
        let hot_partition = match (self.capacity, &obs.hottest_partition) {
            (Some(c), Some(hot)) if hot.rate_per_s > c => Some(hot.clone()),
            _ => None,
        };
        let active = activated(params, obs) || (params.rate_aware && replicas > 0);
        Decision {
            replicas,
            need: down,
            active,
            action,
            reason,
            partition_limit,
            hot_partition,
            capacity_per_s: self.capacity,
            rebalance_seconds: s.rebalance_seconds,
            startup_seconds: s.startup_seconds,
            plan: None,
        }
    }
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
