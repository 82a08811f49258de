//! The decision: every candidate count priced by the planner ([`Plan`]),
//! inside the protections it does not price (the first answer, a cold
//! start, min and max, the largest step down, a lagged partition's floor,
//! the idle window to zero). Pure: `now` is an argument and all memory is
//! in [`State`].

use super::decision::{Action, Basis, Decision, PartitionLimit, PlanBasis, Reason};
use super::observation::Observation;
use super::partitions::partition_aware_pods_skewed;
use super::pause::{project_pause, rebalance_backlog};
use super::plan::{Forecast, InFlight, Plan, Planner};
use super::settings::{Params, PartitionCap, PolicySettings};
use super::sizing::{effective_capacity, hottest_share, partition_cap, partition_drain_floor};
use super::state::State;
use super::thresholds::NOISE_STANDARD_ERRORS;

/// Below this inbound rate (msg/s) a topic counts as idle.
const IDLE_RATE_PER_S: f64 = 1e-3;
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
    // Pauses are planned at the length the offsets have shown.
    let params = &*params.as_learned(obs);
    let at = Situation::new(params, state, obs, now);
    let mut next = state.clone();
    next.idle_since = at.idle_since;
    // Decide with what was known before this sample; learn from it for the next.
    if params.settings.pod_capacity.is_none() {
        learn_capacity(params, state, obs, now, &mut next);
    }
    let forecast = at.forecast();
    at.hold_peak(&mut next, &forecast);
    let plan = at.plan(forecast, &next);
    let (choice, need) = at.choose(&plan);
    at.book(&mut next, &choice);
    let decision = at.explain(choice, plan, need, forecast);
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

/// What a pod is priced at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pricing {
    /// A rate-aware trigger whose per-pod capacity is known (configured or
    /// learned): the rate and the backlog over the partitions' assignment.
    Rate { capacity: f64 },
    /// KEDA's rule (lag-only triggers, and rate-aware ones until their
    /// capacity is learned): a pod carries `lagThreshold` messages, drained
    /// within the objective; the rate is not priced, and a smaller count
    /// must carry the highest lag of the last horizon.
    Lag { lag_threshold: f64 },
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
    pricing: Pricing,
    current: u32,
    /// The last burst has ended, lasted like the one before it, and left no
    /// backlog: the fall is the burst's end, not a dip within it.
    burst_over: bool,
}

/// The answer and why.
struct Choice {
    replicas: u32,
    action: Action,
    /// The count a held scale-down would have gone to.
    paused_target: Option<u32>,
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
        let pricing = match s.pod_capacity.or(state.learned_capacity_per_s) {
            Some(capacity) if params.rate_aware => Pricing::Rate { capacity },
            _ => Pricing::Lag {
                lag_threshold: params.lag_threshold,
            },
        };
        let burst_over = obs.busy_for_s.is_none()
            && obs.lag <= rate * KEEP_UP_BACKLOG_SECONDS
            && matches!((obs.last_burst_s, obs.burst_before_s),
                (Some(last), Some(before)) if (last - before).abs() <= BURST_LENGTH_MARGIN * before);
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
            pricing,
            current: state.replicas.unwrap_or(0),
            burst_over,
        }
    }

    /// Start-up, rebalance and the objective: how far the plan looks.
    fn horizon(&self) -> f64 {
        self.s.startup_seconds + self.s.rebalance_seconds + self.s.wait_objective()
    }

    /// Messages per second `n` pods process once settled: partition-aware
    /// for a rate-priced trigger, `n` times a pod's share of the lag for a
    /// lag-priced one (KEDA's rule knows no partitions but the cap).
    fn capacity(&self, n: u32) -> f64 {
        match self.pricing {
            Pricing::Rate { capacity } => effective_capacity(self.params, self.obs, n, capacity),
            Pricing::Lag { lag_threshold } => {
                f64::from(n) * lag_threshold / self.s.wait_objective()
            }
        }
    }

    /// Priced on KEDA's rule: the rate is not priced.
    fn lag_priced(&self) -> bool {
        matches!(self.pricing, Pricing::Lag { .. })
    }

    /// The per-pod capacity a rate-priced trigger knows.
    fn rate_capacity(&self) -> Option<f64> {
        match self.pricing {
            Pricing::Rate { capacity } => Some(capacity),
            Pricing::Lag { .. } => None,
        }
    }

    /// What a smaller count must still process: the highest load of the
    /// last horizon (a dip is not yet a fall). For a rate-priced trigger,
    /// the rate seen less its noise (a short window that still spans a
    /// step reads low for a while after it); for a lag-priced one, the
    /// rate that drains the highest lag within the objective.
    fn hold_peak(&self, next: &mut State, forecast: &Forecast) {
        let (seen, peak, at) = match self.pricing {
            Pricing::Rate { .. } => (
                self.steady_rate.max(self.rate - forecast.band),
                &mut next.peak_rate_per_s,
                &mut next.peak_at,
            ),
            Pricing::Lag { .. } => (
                self.obs.lag / self.s.wait_objective(),
                &mut next.peak_lag_drain_per_s,
                &mut next.peak_lag_at,
            ),
        };
        if seen >= *peak || self.now - *at > self.horizon() {
            *peak = seen;
            *at = self.now;
        }
    }

    /// The arrival forecast the plan prices against: the rate now, its
    /// climb, a burst ending like the last one, quiet, and the noise band.
    /// None for a lag-priced trigger: only the backlog is priced.
    fn forecast(&self) -> Forecast {
        let obs = self.obs;
        if self.lag_priced() {
            return Forecast::none();
        }
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
            base: if quiet {
                0.0
            } else {
                obs.burst_base_per_s.unwrap_or(0.0)
            },
            band: NOISE_STANDARD_ERRORS * obs.rate_uncertainty_per_s.unwrap_or(0.0),
        }
    }

    /// The counts worth pricing, within min and max and the partition cap,
    /// and the current. For a rate-priced trigger every count at which the
    /// busiest pod's share of the partitions changes. For a lag-priced
    /// one, where nothing arrives in the plan and a count's worth is the
    /// lag it carries: the least, KEDA's count for the lag now and for the
    /// highest lag a smaller count must carry (`held`, msg/s over the
    /// objective), and the most; a count between two of them meets the
    /// objective no sooner than the next one up.
    fn counts(&self, held: f64) -> Vec<u32> {
        let (params, s, obs) = (self.params, self.s, self.obs);
        let lo = if params.rate_aware && !self.idle_now {
            s.min_replicas.max(1)
        } else {
            s.min_replicas
        };
        let p = obs.partitions.max(1);
        let mut counts: Vec<u32> = match self.pricing {
            Pricing::Lag { lag_threshold } => {
                let hi = partition_cap(params, obs)
                    .map_or(s.max_replicas, |cap| s.max_replicas.min(cap))
                    .max(lo);
                let carrying = |lag: f64| ((lag / lag_threshold).ceil() as u32).clamp(lo, hi);
                let mut counts = vec![
                    lo,
                    carrying(obs.lag),
                    carrying(held * s.wait_objective()),
                    hi,
                ];
                counts.sort_unstable();
                counts.dedup();
                counts
            }
            Pricing::Rate { .. } => {
                let hi = match params.cap {
                    PartitionCap::None => s.max_replicas,
                    _ => s.max_replicas.min(p),
                }
                .max(lo);
                (lo..=hi)
                    .filter(|&n| {
                        n <= lo.max(1)
                            || matches!(params.cap, PartitionCap::None)
                            || p.div_ceil(n) != p.div_ceil(n - 1)
                    })
                    .collect()
            }
        };
        if let Some(current) = self.state.replicas
            && let Err(at) = counts.binary_search(&current)
        {
            counts.insert(at, current);
        }
        counts
    }

    /// The rate a smaller count must sustain: the peak of the last
    /// horizon (as `peaks` holds it, this sample included), unless the
    /// fall is one the forecast expects, or the topic is idle (the idle
    /// window holds the last pod).
    fn held_rate(&self, forecast: &Forecast, peaks: &State) -> f64 {
        let obs = self.obs;
        if self.idle_now {
            return 0.0;
        }
        match self.pricing {
            Pricing::Lag { .. } => peaks.peak_lag_drain_per_s,
            Pricing::Rate { .. } => {
                // A burst forecast to end, one that has ended like the one
                // before it, or traffic that stopped, is a fall the plan
                // already expects; so is one that has lasted as long as the
                // burst before it did: a dip within a load is short beside
                // the load.
                let fallen = obs.last_burst_s.is_some_and(|last| {
                    obs.busy_for_s.is_none() && self.now - peaks.peak_at >= last
                });
                if forecast.ends_in.is_some() || self.burst_over || fallen {
                    0.0
                } else {
                    peaks.peak_rate_per_s.max(self.steady_rate)
                }
            }
        }
    }

    /// Every candidate count priced over the horizon, smaller counts held
    /// to the peaks in `peaks`.
    fn plan(&self, forecast: Forecast, peaks: &State) -> Plan {
        let (s, obs, state) = (self.s, self.obs, self.state);
        let capacity = |n: u32| self.capacity(n);
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
        // KEDA's rule has no wait to price but the lag's share per pod:
        // neither the age of the backlog nor the headroom over a rate.
        let lag_priced = self.lag_priced();
        let held_rate = self.held_rate(&forecast, peaks);
        Planner {
            current: self.current,
            backlog: obs.lag,
            backlog_age_s: if lag_priced {
                0.0
            } else {
                obs.estimated_wait_s.unwrap_or(0.0)
            },
            forecast,
            held_rate,
            in_flight,
            startup_s: s.startup_seconds,
            rebalance_s: s.rebalance_seconds,
            rebalance: s.rebalance,
            headroom: if lag_priced { 0.0 } else { s.headroom },
            objective_s: s.wait_objective(),
            capacity: &capacity,
            counts: self.counts(held_rate),
        }
        .plan()
    }

    /// The planned count, inside the protections the plan does not price:
    /// the first answer, the idle window, a cold start, the largest step
    /// down and the lagged partition's floor. Returns the choice and the
    /// need (the fewest pods that sustain the load, were a change free).
    fn choose(&self, plan: &Plan) -> (Choice, u32) {
        let (s, obs, state) = (self.s, self.obs, self.state);
        // The count that runs is priced even outside min and max (a policy
        // just lowered its max); the answer never is.
        let target = plan.choice().replicas.clamp(s.min_replicas, s.max_replicas);
        let need = plan.smallest_sustaining().map_or(target, |n| n.replicas);
        let to_zero = self.idle_now && self.idle_for >= s.idle_seconds && s.min_replicas == 0;
        let cold_at_once = self.idle_now
            && self.gap_outlasts_idle
            && s.min_replicas == 0
            && self.params.rate_aware;
        // A change's pause (start-up and rebalance, as learned) still runs.
        let pausing = state.changed_at.is_some() && self.now < state.pause_until;
        let mut paused_target = None;
        let choice = match state.replicas {
            None => (target, Action::Initial),
            Some(_) if to_zero => (0, Action::Idle),
            Some(current) if cold_at_once && current > 0 => (0, Action::IdleGapOutlasts),
            Some(current) if self.idle_now && target == 0 && current > 0 => {
                (current.min(1), Action::IdleKeepOne)
            }
            // A scaler that just started has not seen what a scale-down
            // depends on; without a rate, there is nothing to size it on.
            Some(current)
                if target < current
                    && (!obs.window_full
                        || (self.params.rate_aware && obs.inbound_rate_per_s.is_none())) =>
            {
                (current, Action::ColdStart)
            }
            // A group still changing is not one the model can price a
            // reversal on: the pods starting or moving have paid part of
            // their pause. Scale-downs wait for the pause to end.
            Some(current) if target < current && pausing => (current, Action::Settling),
            Some(current) if target < current => {
                let step_floor =
                    (f64::from(current) * (1.0 - s.max_scale_down_step)).floor() as u32;
                let floor =
                    partition_drain_floor(self.params, obs, self.rate, self.rate_capacity());
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
                    && pausing
                    && obs.lag <= state.projected_allowance(self.now)
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
        let (replicas, action) = choice;
        let choice = Choice {
            replicas,
            action,
            paused_target,
        };
        (choice, need)
    }

    /// What the pause of a scale-up from here to `to` would add: S seconds
    /// of the shortfall while new pods start, then R seconds of the traffic
    /// of the partitions that pause.
    fn pause_backlog(&self, to: u32) -> f64 {
        // Where the rate is not priced, all of it is counted.
        let running = if self.lag_priced() {
            0.0
        } else {
            self.capacity(self.current)
        };
        let shortfall = (self.rate - running).max(0.0);
        self.s.startup_seconds * shortfall + rebalance_backlog(self.s, self.rate, self.current, to)
    }

    /// Bookkeeping in `next`: the projected pause of a change, and the
    /// answer.
    fn book(&self, next: &mut State, choice: &Choice) {
        let (s, state, now) = (self.s, self.state, self.now);
        let replicas = choice.replicas;
        let previous = self.current;
        if replicas != previous && replicas > 0 {
            let (pause_s, added) = if replicas > previous {
                // The new pods start, then the group pauses to rebalance:
                // traffic keeps arriving while the backlog waits.
                (
                    s.startup_seconds + s.rebalance_seconds,
                    self.pause_backlog(replicas),
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
            let allowance = state.projected_allowance(now);
            let c = self.rate_capacity().unwrap_or(0.0);
            project_pause(
                self.params,
                self.obs,
                next,
                now,
                allowance,
                pause_s,
                added,
                replicas,
                c,
            );
        }
        next.replicas = Some(replicas);
    }

    /// The decision, with the candidates it priced and the reason a person
    /// can check.
    fn explain(&self, choice: Choice, plan: Plan, need: u32, forecast: Forecast) -> Decision {
        let (params, s, obs) = (self.params, self.s, self.obs);
        let (elapsed_seconds, window) = match choice.action {
            Action::Settling => (
                (self.state.pause_until - self.now).max(0.0),
                s.startup_seconds + s.rebalance_seconds,
            ),
            Action::IdleKeepOne | Action::Idle => (self.idle_for, s.idle_seconds),
            Action::IdleGapOutlasts => (obs.idle_gap_s.unwrap_or(0.0), s.idle_seconds),
            _ => (0.0, 0.0),
        };
        let (basis, partition_limit) = self.basis(&plan, &forecast);
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
        let capacity = self.rate_capacity();
        let hot_partition = match (capacity, &obs.hottest_partition) {
            (Some(c), Some(hot)) if hot.rate_per_s > c => Some(hot.clone()),
            _ => None,
        };
        let active = activated(params, obs) || (params.rate_aware && choice.replicas > 0);
        Decision {
            replicas: choice.replicas,
            need,
            active,
            action: choice.action,
            reason,
            partition_limit,
            hot_partition,
            capacity_per_s: capacity,
            rebalance_seconds: s.rebalance_seconds,
            startup_seconds: s.startup_seconds,
            plan: Some(plan),
        }
    }

    /// What the count was priced on, and the partitions' limit if the
    /// load outgrows them.
    fn basis(&self, plan: &Plan, forecast: &Forecast) -> (Basis, Option<PartitionLimit>) {
        let (params, s, obs) = (self.params, self.s, self.obs);
        let shown = plan.choice();
        match self.pricing {
            Pricing::Rate { capacity } => {
                let p = obs.partitions.max(1);
                let ahead = forecast.at(s.startup_seconds + s.rebalance_seconds, 0.0);
                let limit = (!matches!(params.cap, PartitionCap::None)
                    && partition_aware_pods_skewed(ahead, p, capacity, hottest_share(obs))
                        .is_none())
                .then_some(PartitionLimit {
                    pods_needed: (ahead / capacity).ceil() as u32,
                    partitions: p,
                });
                let basis = Basis::Plan(PlanBasis {
                    rate_per_s: self.rate,
                    band_per_s: forecast.band,
                    source: obs.rate_source,
                    climb_per_s2: obs.rate_climb_per_s2,
                    burst_ends_in: forecast.ends_in.filter(|_| obs.quiet_for_s.is_none()),
                    quiet: obs.quiet_for_s.is_some(),
                    lag: obs.lag,
                    capacity_per_s: capacity,
                    objective_seconds: plan.objective_seconds,
                    worst_wait_s: shown.worst_wait_s,
                    pause_s: shown.pause_s,
                    reachable: plan.reachable,
                    startup_seconds: s.startup_seconds,
                    rebalance_seconds: s.rebalance_seconds,
                });
                (basis, limit)
            }
            Pricing::Lag { lag_threshold } => {
                let needed = (obs.lag / lag_threshold).ceil() as u32;
                let limit = partition_cap(params, obs)
                    .filter(|&cap| needed > cap && cap == obs.partitions)
                    .map(|cap| PartitionLimit {
                        pods_needed: needed,
                        partitions: cap,
                    });
                let basis = Basis::Lag {
                    lag: obs.lag,
                    lag_threshold,
                    highest_lag: plan.held_rate_per_s * s.wait_objective(),
                    horizon_seconds: plan.horizon_seconds,
                };
                (basis, limit)
            }
        }
    }
}

/// DS2-style: while the group is saturated, μ/n is what a pod can do.
/// Learned once a change's pause is over (the pods it started consume).
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
    let settled = now >= state.pause_until;
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
