//! The planner: for each candidate replica count, a fluid model of the
//! group rolled forward over a short horizon (start-up, rebalance and the
//! wait objective), priced in pod-seconds and in the longest wait it
//! predicts. The answer is the fewest pods that sustain the load and keep
//! the wait within the objective beyond the change's own pause; where no
//! count does, the one that comes closest. More pods must buy a shorter
//! wait: a count whose own pause makes messages wait longer than a smaller
//! count would is never the answer, whatever its pause allows it.
//!
//! A change pays its pause: new pods consume only after start-up, then the
//! group stops to rebalance (every partition under eager rebalancing, the
//! moved ones under cooperative). A count is held against the noise band:
//! the current count is kept while it sustains the rate's lower band, a
//! smaller one is taken only when it sustains the upper band, so noise
//! alone never moves the answer.

use std::cmp::Ordering;

use serde::Serialize;

use super::rebalance::Rebalance;

/// Steps of the fluid model over the horizon.
const STEPS: usize = 48;

/// The inbound rate ahead: a central forecast and a noise band around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Forecast {
    /// msg/s now.
    pub rate: f64,
    /// Steady climb, msg/s per second.
    pub climb: f64,
    /// The burst under way ends in this many seconds (lasting like the
    /// last one), and the rate falls to `base`.
    pub ends_in: Option<f64>,
    /// The latest it is expected to end: one burst's length is a rough
    /// estimate of the next one's. A change is held to this end, the count
    /// that runs to the earliest.
    pub ends_late: Option<f64>,
    pub base: f64,
    /// Half-width of the noise band, msg/s.
    pub band: f64,
}

impl Forecast {
    /// No arrivals: what a trigger that does not price the rate plans with.
    pub fn none() -> Self {
        Forecast {
            rate: 0.0,
            climb: 0.0,
            ends_in: None,
            ends_late: None,
            base: 0.0,
            band: 0.0,
        }
    }

    /// The rate at `t` seconds from now; `side` -1, 0 or +1 picks the lower
    /// band, the centre or the upper band.
    pub fn at(&self, t: f64, side: f64) -> f64 {
        let central = match self.end(side) {
            Some(end) if t >= end => self.base,
            _ => self.rate + self.climb * t,
        };
        (central + side * self.band).max(0.0)
    }

    /// When the burst under way ends on `side`: at the earliest for the
    /// lower band (the count that runs is kept if it drains the burst
    /// before new pods could help), at the latest for the upper (a
    /// scale-down), never for the centre (a scale-up is sized for the
    /// burst going on: one sized for it to end needs a second change when
    /// it does not).
    fn end(&self, side: f64) -> Option<f64> {
        if side < 0.0 {
            self.ends_in
        } else if side > 0.0 {
            self.ends_late
        } else {
            None
        }
    }

    /// The rate that lasts from `t` on: past the burst's end, what it
    /// falls back to (the burst itself is backlog to drain, not a rate to
    /// sustain).
    pub fn lasting(&self, t: f64, side: f64) -> f64 {
        self.at(self.end(side).map_or(t, |end| end.max(t)), side)
    }
}

/// A change of the group still under way when the plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct InFlight {
    /// Seconds until the new pods consume (0 when none start).
    pub ready_in: f64,
    /// Seconds until the group's pause ends.
    pub paused_for: f64,
    /// Messages per second processed until `ready_in`.
    pub before: f64,
    /// The count before the change, and the share of the partitions its
    /// rebalance pauses.
    pub from: u32,
    pub share: f64,
}

/// One candidate count as priced by the plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub replicas: u32,
    /// Pod-seconds over the horizon.
    pub pod_seconds: f64,
    /// Longest wait the plan predicts for a message arriving from now on
    /// (the upper band of the forecast). Unbounded (null in JSON) for a
    /// count that does not process the rate that lasts, where another
    /// does: it is not rolled forward.
    pub worst_wait_s: f64,
    /// Seconds by which some message's wait exceeds the objective (beyond
    /// the change's pause, for those arriving during it).
    pub excess_s: f64,
    /// The change's own pause, which the objective allows for (start-up
    /// and rebalance for a scale-up, the rebalance for a scale-down, what
    /// remains of a change under way for the current count).
    pub pause_s: f64,
    /// Messages per second the count processes once settled.
    pub capacity_per_s: f64,
    /// It processes the rate it is held against (with the headroom) once
    /// settled.
    pub sustains: bool,
}

impl Candidate {
    pub fn meets(&self) -> bool {
        self.sustains && self.excess_s <= 0.0
    }
}

/// Every candidate priced, and the one chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub objective_seconds: f64,
    pub horizon_seconds: f64,
    /// The rate a smaller count must sustain (the highest of the horizon).
    pub held_rate_per_s: f64,
    pub candidates: Vec<Candidate>,
    /// Index of the chosen candidate.
    pub chosen: usize,
    /// Whether the chosen count meets the objective.
    pub reachable: bool,
}

impl Plan {
    pub fn choice(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }

    /// The smallest count that sustains the load, were its pause free.
    pub fn smallest_sustaining(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.sustains)
    }
}

/// The table of candidates, the chosen one marked: what a person reads to
/// see why the winner won.
impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "candidates over a {:.0}s horizon, objective {:.0}s beyond each change's pause:",
            self.horizon_seconds, self.objective_seconds
        )?;
        writeln!(
            f,
            "       pods  pod-seconds  longest wait   pause  beyond objective  processes the rate"
        )?;
        for (i, c) in self.candidates.iter().enumerate() {
            let mark = if i == self.chosen { "->" } else { "  " };
            let wait = if c.worst_wait_s.is_finite() {
                format!("{:.0}s", c.worst_wait_s)
            } else {
                "unbounded".to_owned()
            };
            let beyond = if c.excess_s.is_finite() {
                format!("{:.0}s", c.excess_s)
            } else {
                "never drains".to_owned()
            };
            writeln!(
                f,
                "    {mark} {:>4}  {:>11.0}  {:>12}  {:>5.0}s  {:>16}  {}",
                c.replicas,
                c.pod_seconds,
                wait,
                c.pause_s,
                beyond,
                if c.sustains { "yes" } else { "no" }
            )?;
        }
        Ok(())
    }
}

/// A change's pause as the plan prices it.
struct Change {
    /// When the pause starts and ends, seconds from now.
    window: (f64, f64),
    /// The share of the partitions it stops.
    share: f64,
    /// What the other partitions' pods process meanwhile.
    during: f64,
    /// The side of the noise band the change is held against: the lower
    /// for the count that runs, the upper for fewer pods, the centre for
    /// more.
    side: f64,
}

/// What a plan is made from.
pub(super) struct Planner<'a> {
    pub current: u32,
    pub backlog: f64,
    /// How long the oldest waiting message has waited.
    pub backlog_age_s: f64,
    pub forecast: Forecast,
    /// The highest rate seen over the last horizon: a smaller count must
    /// sustain it too (a dip is not yet a fall).
    pub held_rate: f64,
    pub in_flight: InFlight,
    pub startup_s: f64,
    pub rebalance_s: f64,
    pub rebalance: Rebalance,
    pub headroom: f64,
    pub objective_s: f64,
    /// Messages per second `n` pods process once settled.
    pub capacity: &'a dyn Fn(u32) -> f64,
    /// The counts worth pricing: those at which the capacity changes.
    pub counts: Vec<u32>,
}

impl Planner<'_> {
    pub fn horizon(&self) -> f64 {
        (self.startup_s + self.rebalance_s + self.objective_s).max(1.0)
    }

    /// Prices the candidates, fewest pods first, and chooses: the first
    /// that meets the objective is the answer (a count's pod-seconds grow
    /// with it), so the counts above it are not priced; where none meets
    /// it, every count is, and the closest is chosen.
    pub fn plan(&self) -> Plan {
        debug_assert!(self.counts.windows(2).all(|w| w[0] < w[1]), "counts ascend");
        let horizon = self.horizon();
        let mut candidates: Vec<Candidate> = Vec::with_capacity(self.counts.len());
        // The shortest wait of a smaller count that sustains the load: more
        // pods must buy a wait no longer than it (a change that meets the
        // objective only because its own pause is allowed for, while fewer
        // pods would make messages wait less, buys nothing).
        let mut shortest = f64::INFINITY;
        let mut met = None;
        for &n in &self.counts {
            let candidate = self.price(n, false);
            let meets = candidate.meets() && candidate.worst_wait_s.round() <= shortest;
            if candidate.sustains {
                shortest = shortest.min(candidate.worst_wait_s.round());
            }
            candidates.push(candidate);
            if meets {
                met = Some(candidates.len() - 1);
                break;
            }
        }
        // Where no count processes the rate, the closest is the one whose
        // backlog grows slowest: each is rolled forward after all.
        if !candidates.iter().any(|c| c.sustains) {
            for c in &mut candidates {
                *c = self.price(c.replicas, true);
            }
        }
        let reachable = met.is_some();
        let chosen = met.unwrap_or_else(|| closest(&candidates));
        Plan {
            objective_seconds: self.objective_s,
            horizon_seconds: horizon,
            held_rate_per_s: self.held_rate,
            candidates,
            chosen,
            reachable,
        }
    }

    /// The pause of a change from the current count to `n`: each change is
    /// a pause window in which a share of the partitions stops while the
    /// rest go on (before it the group runs as it is).
    /// `settled` and `running` are what `n` and the current count process.
    fn change(&self, n: u32, settled: f64, running: f64) -> Change {
        let m = self.current;
        let (s, r) = (self.startup_s, self.rebalance_s);
        let flight = self.in_flight;
        // Pods of a scale-up still starting: fewer than it asked for is a
        // change of that scale-up, not a scale-down of pods that run. Those
        // still needed start with it and join in its rebalance; below the
        // pods that run, the rest are never started.
        let starting = flight.ready_in > 0.0 && flight.from < m;
        let flight_window = (flight.ready_in, flight.paused_for.max(flight.ready_in));
        let (window, share, during, side) = match n.cmp(&m) {
            Ordering::Greater => ((s, s + r), self.rebalance.paused_share(m, n), running, 0.0),
            Ordering::Less if starting && n > flight.from => (
                flight_window,
                self.rebalance.paused_share(flight.from, n),
                (self.capacity)(flight.from),
                1.0,
            ),
            Ordering::Less if starting => (
                if n < flight.from {
                    (0.0, r)
                } else {
                    (0.0, 0.0)
                },
                self.rebalance.paused_share(flight.from, n),
                settled,
                1.0,
            ),
            Ordering::Less => ((0.0, r), self.rebalance.paused_share(m, n), settled, 1.0),
            Ordering::Equal => (
                flight_window,
                flight.share,
                (self.capacity)(flight.from.min(m)),
                -1.0,
            ),
        };
        Change {
            window,
            share,
            during,
            side,
        }
    }

    /// Prices `n` pods: rolls the group forward, unless the count does not
    /// process the rate that lasts and `roll_all` is false (it then never
    /// drains, in the long run: its waits are unbounded).
    fn price(&self, n: u32, roll_all: bool) -> Candidate {
        let m = self.current;
        let settled = (self.capacity)(n);
        let running = (self.capacity)(m);
        let f = &self.forecast;
        let flight = self.in_flight;
        let Change {
            window,
            share,
            during,
            side,
        } = self.change(n, settled, running);
        let pause_s = window.1;
        let horizon = self.horizon();
        // Sustained once the change's pods consume, and on a climb when
        // the pods of a scale-up made now would: a count that falls behind
        // by then needs more pods than the horizon shows.
        let mut rate = f.lasting(pause_s, side);
        if f.end(side).is_none() {
            rate = rate.max(f.at(self.startup_s + self.rebalance_s, side));
        }
        if n < m {
            rate = rate.max(self.held_rate);
        }
        // The headroom is asked of a change, not of the count that runs:
        // kept while it processes the lower band, so that a rate moving
        // within the headroom and the noise makes no action.
        let headroom = if n == m { 0.0 } else { self.headroom };
        let sustains = settled >= rate * (1.0 + headroom);
        let mut candidate = Candidate {
            replicas: n,
            pod_seconds: f64::from(n) * horizon,
            worst_wait_s: f64::INFINITY,
            excess_s: f64::INFINITY,
            pause_s,
            capacity_per_s: settled,
            sustains,
        };
        if !sustains && !roll_all {
            return candidate;
        }
        // What the group processes with only the change under way (its
        // pause taken as a whole for the changes made on top of it).
        let stay = |t: f64| {
            if t < flight.ready_in {
                flight.before
            } else if t < flight.paused_for {
                (self.capacity)(flight.from.min(m)) * (1.0 - flight.share)
            } else {
                running
            }
        };
        // The share of the capacity a class gets: in proportion, except
        // that once the pause is over the paused partitions' backlog, spread
        // over the pods, drains at what the others' traffic leaves.
        let capacity_at = |t: f64, paused: bool, part: f64| {
            if t < window.0 {
                stay(t) * part
            } else if t < window.1 {
                if paused { 0.0 } else { during * part }
            } else if paused {
                (settled - f.at(t, side) * (1.0 - part)).max(settled * part)
            } else {
                settled * part
            }
        };
        // The partitions that pause and those that go on, each with its
        // share of the backlog, the traffic and the capacity.
        let (mut worst_wait_s, mut excess_s) = (0.0_f64, 0.0_f64);
        for (paused, part) in [(true, share), (false, 1.0 - share)] {
            if part <= 1e-9 {
                continue;
            }
            let predicted = waits(
                self.backlog * part,
                horizon,
                pause_s,
                (n < m).then_some(self.backlog_age_s),
                self.objective_s,
                capacity_at(horizon, paused, part),
                |t| (f.at(t, side) * part, capacity_at(t, paused, part)),
            );
            worst_wait_s = worst_wait_s.max(predicted.worst);
            excess_s = excess_s.max(predicted.excess);
        }
        candidate.worst_wait_s = worst_wait_s;
        candidate.excess_s = excess_s.max(0.0);
        candidate
    }
}

/// Where no count meets the objective: the one that comes closest (the
/// shortest longest wait, whatever pause each count's allowance would
/// forgive: a change must not look closer by pausing longer), sustaining
/// the load where one can, the fewer pods on a tie; where no
/// count ever drains the backlog, the one that processes the most (the
/// fewest of those that do, where more pods add nothing): it falls behind
/// slowest.
fn closest(candidates: &[Candidate]) -> usize {
    let any_sustain = candidates.iter().any(|c| c.sustains);
    let pool = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.sustains || !any_sustain);
    let best = pool
        .clone()
        .map(|(_, c)| c.worst_wait_s.round())
        .fold(f64::INFINITY, f64::min);
    let most = pool
        .clone()
        .map(|(_, c)| c.capacity_per_s)
        .fold(0.0, f64::max);
    pool.filter(|(_, c)| {
        if best.is_finite() {
            c.worst_wait_s.round() <= best
        } else {
            c.capacity_per_s >= most * (1.0 - 1e-9)
        }
    })
    .map(|(i, _)| i)
    .next()
    .unwrap_or(0)
}

/// How far a plan's waits exceed the objective, first come first served,
/// with `backlog` waiting now. Messages arriving during the change's
/// `pause` may wait `pause + objective`, and so may the backlog; for a
/// scale-down (`shrinking`, with how long the oldest waiting message has
/// waited) that includes the wait it has had: a scale-down saves pods, not
/// at the expense of messages that already waited;
/// after the pause the backlog must drain within the objective, so that
/// once the pause is over the count is one that would be kept. `flow(t)`
/// gives the arrival rate and the processing capacity at `t`, `after` the
/// capacity past the horizon. The excess is infinite when the backlog
/// never drains.
#[allow(clippy::too_many_arguments)]
fn waits(
    backlog: f64,
    horizon: f64,
    pause: f64,
    shrinking: Option<f64>,
    objective: f64,
    after: f64,
    flow: impl Fn(f64) -> (f64, f64),
) -> Waits {
    let dt = horizon / STEPS as f64;
    let mut arrived = [0.0; STEPS + 1];
    let mut done = [0.0; STEPS + 1];
    arrived[0] = backlog;
    for i in 0..STEPS {
        let (rate, capacity) = flow((i as f64 + 0.5) * dt);
        arrived[i + 1] = arrived[i] + rate * dt;
        done[i + 1] = (done[i] + capacity * dt).min(arrived[i + 1]);
    }
    // Past the horizon the backlog left drains at what the count
    // processes beyond the rate then.
    let left = arrived[STEPS] - done[STEPS];
    let busy = |i: usize| arrived[i] - done[i] > 1e-6 * (1.0 + arrived[i]);
    let drained_at = if busy(STEPS) {
        let spare = after - flow(horizon).0;
        if spare > 0.0 {
            horizon + left / spare
        } else {
            f64::INFINITY
        }
    } else {
        (0..STEPS)
            .rev()
            .find(|&i| busy(i))
            .map_or(0.0, |i| (i + 1) as f64 * dt)
    };
    let mut excess = drained_at - pause.max(0.0) - objective;
    let mut worst = 0.0_f64;
    let mut j = 0;
    for (i, &x) in arrived.iter().enumerate() {
        while j < STEPS && done[j + 1] < x {
            j += 1;
        }
        let leaves = if done[j] >= x {
            j as f64 * dt
        } else if j < STEPS {
            (j as f64 + (x - done[j]) / (done[j + 1] - done[j])) * dt
        } else if after > 0.0 {
            horizon + (x - done[STEPS]) / after
        } else {
            f64::INFINITY
        };
        let at = i as f64 * dt;
        let wait = leaves - at;
        worst = worst.max(wait);
        let waited = match shrinking {
            Some(age) if i == 0 => age,
            _ => 0.0,
        };
        if at < pause {
            excess = excess.max(wait + waited - pause - objective);
        }
    }
    Waits { worst, excess }
}

/// What [`waits`] predicts.
struct Waits {
    worst: f64,
    excess: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(
        capacity: &dyn Fn(u32) -> f64,
        current: u32,
        rate: f64,
        backlog: f64,
    ) -> Planner<'_> {
        Planner {
            current,
            backlog,
            backlog_age_s: 0.0,
            forecast: Forecast {
                rate,
                climb: 0.0,
                ends_in: None,
                ends_late: None,
                base: rate,
                band: 0.0,
            },
            held_rate: 0.0,
            in_flight: InFlight::default(),
            startup_s: 60.0,
            rebalance_s: 60.0,
            rebalance: Rebalance::Eager,
            headroom: 0.1,
            objective_s: 60.0,
            capacity,
            counts: (1..=24).collect(),
        }
    }

    #[test]
    fn a_group_that_keeps_up_predicts_no_wait() {
        let wait = waits(0.0, 100.0, 0.0, None, 60.0, 10.0, |_| (5.0, 10.0)).worst;
        assert!(wait < 1e-9, "{wait}");
    }

    #[test]
    fn a_paused_group_makes_the_first_arrival_wait_the_pause() {
        // Paused 30 s, then twice the rate: the message arriving first
        // waits the pause, and the backlog drains in another 30 s.
        let Waits {
            worst: wait,
            excess,
            ..
        } = waits(0.0, 120.0, 30.0, None, 10.0, 20.0, |t| {
            (10.0, if t < 30.0 { 0.0 } else { 20.0 })
        });
        // The pause's backlog, 300, drains at 20/s beside 10/s arriving:
        // 30 s after the pause, 20 s beyond the objective.
        assert!((excess - 20.0).abs() < 2.0, "{excess}");
        assert!((wait - 30.0).abs() < 3.0, "{wait}");
    }

    #[test]
    fn backlog_drains_at_the_spare_capacity() {
        // 600 waiting, 10/s arriving, 20/s processed: the newest of the
        // backlog leaves after 30 s.
        let wait = waits(600.0, 120.0, 0.0, None, 60.0, 20.0, |_| (10.0, 20.0)).worst;
        assert!((wait - 30.0).abs() < 1.0, "{wait}");
    }

    #[test]
    fn steady_load_keeps_the_count_that_sustains_it() {
        let capacity = |n: u32| 100.0 * f64::from(n);
        let plan = planner(&capacity, 6, 500.0, 0.0).plan();
        assert_eq!(plan.choice().replicas, 6, "{plan:?}");
        assert!(plan.reachable);
    }

    #[test]
    fn a_step_is_met_in_one_step_sized_for_its_pause() {
        let capacity = |n: u32| 100.0 * f64::from(n);
        let plan = planner(&capacity, 2, 500.0, 0.0).plan();
        // 500/s x 1.1 needs 6 pods, but 60 s of start-up at 300/s short and
        // a 60 s eager pause leave 48,000 messages that must drain within
        // 60 s beside the 500/s arriving: 1,300/s.
        assert_eq!(plan.choice().replicas, 13, "{plan:?}");
        assert!(plan.reachable, "{plan:?}");
    }

    #[test]
    fn more_pods_whose_own_pause_would_lengthen_the_wait_are_not_added() {
        let capacity = |n: u32| 100.0 * f64::from(n);
        // 24 pods drain 160,000 in 67 s with nothing arriving, 7 s beyond
        // the objective; 48 would stop every partition for a 60 s rebalance
        // after a 60 s start-up: within the objective beyond that pause,
        // but every message would wait longer than with the 24 that run.
        let mut p = planner(&capacity, 24, 0.0, 160_000.0);
        p.counts = vec![24, 48];
        let plan = p.plan();
        assert_eq!(plan.choice().replicas, 24, "{plan:?}");
        let [kept, more] = &plan.candidates[..] else {
            panic!("both priced: {plan:?}")
        };
        assert!(kept.excess_s > 0.0 && more.excess_s <= 0.0, "{plan:?}");
        assert!(more.worst_wait_s > kept.worst_wait_s, "{plan:?}");
    }

    #[test]
    fn fewer_pods_than_a_scale_up_still_starting_pay_its_pause_not_a_new_one() {
        let capacity = |n: u32| 100.0 * f64::from(n);
        // 0 -> 24 ordered 10 s ago: nothing runs for another 50 s, then an
        // eager 60 s rebalance. 12 of those pods start with the others and
        // pause with them; they are not 12 running pods that would pause
        // 60 s from now.
        let mut p = planner(&capacity, 24, 1_000.0, 10_000.0);
        p.in_flight = InFlight {
            ready_in: 50.0,
            paused_for: 110.0,
            before: 0.0,
            from: 0,
            share: 1.0,
        };
        p.counts = vec![12, 24];
        let plan = p.plan();
        let fewer = plan.candidates[0];
        assert_eq!(fewer.pause_s, 110.0, "{plan:?}");
        assert!(fewer.worst_wait_s >= 110.0, "{plan:?}");
    }

    #[test]
    fn a_count_that_cannot_process_the_rate_is_not_rolled_unless_none_can() {
        let capacity = |n: u32| 100.0 * f64::from(n);
        // 500 msg/s: 1 to 5 pods never drain; they are priced unbounded.
        let plan = planner(&capacity, 2, 500.0, 0.0).plan();
        for c in &plan.candidates {
            assert_eq!(c.sustains, c.worst_wait_s.is_finite(), "{plan}");
        }
        // 5000 msg/s is beyond all 24: each is rolled forward, and the one
        // whose backlog grows slowest is taken.
        let plan = planner(&capacity, 2, 5_000.0, 0.0).plan();
        assert!(
            plan.candidates
                .iter()
                .all(|c| !c.sustains && c.worst_wait_s.is_finite())
        );
        assert_eq!(plan.choice().replicas, 24, "{plan}");
    }

    #[test]
    fn a_scale_down_waits_for_room_to_drain_its_own_pause() {
        let capacity = |n: u32| 100.0 * f64::from(n);
        // 12 pods at 500/s: 6 would sustain it, but an eager pause of 60 s
        // leaves 30,000 that 6 pods (100/s spare) drain in 300 s.
        let plan = planner(&capacity, 12, 500.0, 0.0).plan();
        // 10 pods drain the 30,000 in 60 s beside the 500/s arriving.
        assert_eq!(plan.choice().replicas, 10, "{plan:?}");
    }
}
