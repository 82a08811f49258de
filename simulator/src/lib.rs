//! The offline twin: a deterministic discrete-time simulation of a topic,
//! its consumer group, KEDA and the HPA, running the very same policy code
//! as the server, to compare autoscalers side by side on one load profile.

pub mod autoscalers;
pub mod builtins;
pub mod chart;
pub mod hpa;
pub mod keda;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod world;

use autoscalers::{Autoscaler, IdealReactive, KedaTriggers, Lagrate, Truth};
use report::{Report, Row, Trace, WaitEstimate};
use scenario::{Rebalance, Scenario, pods_needed};
use world::World;

/// Deterministic noise (SplitMix64): the same seed gives the same run on
/// every machine and crate version.
struct Noise(u64);

impl Noise {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The autoscalers of one run, in report order.
pub fn autoscalers(s: &Scenario) -> Vec<Box<dyn Autoscaler>> {
    vec![
        Box::new(KedaTriggers::new("keda-lag", s, 10_000.0, None)),
        Box::new(KedaTriggers::new("keda-lag-tuned", s, 500.0, None)),
        Box::new(KedaTriggers::new(
            "keda-lag-plus-rate",
            s,
            500.0,
            Some(s.pod_capacity),
        )),
        Box::new(Lagrate::new(s)),
        Box::new(IdealReactive::behind_keda(s)),
        Box::new(IdealReactive::new()),
        Box::new(IdealReactive::clairvoyant(s)),
    ]
}

/// Runs one autoscaler through the scenario.
pub fn run_one(s: &Scenario, mode: Rebalance, autoscaler: &mut dyn Autoscaler) -> (Row, Trace) {
    let mut world = World::new(s, mode);
    let mut noise = Noise(s.seed);
    let dt = s.step_seconds;
    let steps = (s.duration() / dt).round() as usize;
    let p = s.partitions as usize;
    let shares = s.partition_shares();
    let truth = Truth { scenario: s };
    let mut trace = Trace::new(autoscaler.name());
    let mut row = Row::new(autoscaler.name());
    let mut replicas = s.replicas_at_start();
    let mut last_direction = 0i32;
    let mut arrivals = vec![0.0; p];
    let step_times = s.load_steps();
    let mut converge: Vec<Option<f64>> = vec![None; step_times.len()];
    let mut limited_seen = false;
    for i in 0..steps {
        let t = i as f64 * dt;
        let desired = autoscaler.tick(t, replicas, &world, &truth);
        if desired != replicas {
            let direction = if desired > replicas { 1 } else { -1 };
            if last_direction != 0 && direction != last_direction {
                row.reversals += 1;
            }
            last_direction = direction;
            row.scale_actions += 1;
            replicas = desired;
            world.set_replicas(replicas, t);
        }
        let factor = if s.noise > 0.0 {
            1.0 + s.noise * (2.0 * noise.next_unit() - 1.0)
        } else {
            1.0
        };
        let rate = s.rate_at(t) * factor;
        for (a, share) in arrivals.iter_mut().zip(&shares) {
            *a = rate * share * dt;
        }
        world.step(t, dt, &arrivals);
        let lag = world.lag();
        row.pod_seconds += f64::from(world.pods()) * dt;
        row.peak_lag = row.peak_lag.max(lag);
        if let Some(d) = autoscaler.last_decision()
            && d.partition_limit.is_some()
        {
            limited_seen = true;
        }
        // Converged: lag back to what a group keeping up shows.
        for (k, &start) in step_times.iter().enumerate() {
            let end = step_times.get(k + 1).copied().unwrap_or(f64::INFINITY);
            if t >= start && t < end {
                let steady = 2.0 * rate * s.batch_seconds + f64::from(s.partitions);
                if lag <= steady {
                    converge[k].get_or_insert(t - start);
                } else {
                    converge[k] = None;
                }
            }
        }
        if i % 10 == 0 {
            trace.push(t, rate, world.processing_rate, world.pods(), lag);
        }
    }
    world.finish(s.duration());
    // + 0.0 turns a float's -0 into 0 for the table.
    row.unprocessed_end = world.queued() + 0.0;
    row.p50_wait_s = world.waits.quantile(0.50);
    row.p99_wait_s = world.waits.quantile(0.99);
    row.max_wait_s = world.waits.max_s;
    row.converge_s = converge;
    row.partition_limit_reported = limited_seen;
    row.changes = autoscaler.changes().to_vec();
    row.wait_estimate = WaitEstimate::of(autoscaler.wait_estimates());
    (row, trace)
}

/// Pod-seconds of the smallest partition-aware pod count that keeps up
/// with the noise-free load at every instant, ignoring every delay.
pub fn bound_pod_seconds(s: &Scenario) -> f64 {
    let dt = s.step_seconds;
    let steps = (s.duration() / dt).round() as usize;
    (0..steps)
        .map(|i| {
            f64::from(pods_needed(
                s.rate_at(i as f64 * dt),
                s.partitions,
                s.pod_capacity,
                s.hottest_share(),
            )) * dt
        })
        .sum()
}

/// Runs every autoscaler on the scenario.
pub fn run(s: &Scenario, rebalance: Option<Rebalance>) -> Report {
    let mode = rebalance.unwrap_or(s.rebalance);
    // Every autoscaler, lagrate's config included, is set up for the mode run.
    let s = &Scenario {
        rebalance: mode,
        ..s.clone()
    };
    let bound = bound_pod_seconds(s);
    let mut rows = Vec::new();
    let mut traces = Vec::new();
    for mut a in autoscalers(s) {
        let (mut row, trace) = run_one(s, mode, a.as_mut());
        row.bound_ratio = if bound > 0.0 {
            row.pod_seconds / bound
        } else {
            0.0
        };
        rows.push(row);
        traces.push(trace);
    }
    Report {
        scenario: s.name.clone(),
        rebalance: mode,
        feasible: s.feasible(),
        bound_pod_seconds: bound,
        rows,
        traces,
    }
}
