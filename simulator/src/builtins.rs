//! The built-in scenarios of `lagrate simulate --list`.

use std::path::Path;

use super::scenario::{Rebalance, Scenario, Segment, Sine};

/// The built-in scenarios, by name.
#[allow(clippy::too_many_lines)] // a table: one entry per scenario
pub fn builtin() -> Vec<(&'static str, &'static str, Scenario)> {
    let mut hot = Scenario::with_defaults(
        "hot-partition",
        24,
        vec![
            Segment::constant(200.0, 300.0),
            Segment::constant(1200.0, 1200.0),
        ],
    );
    hot.hot_partition_share = Some(0.2);
    let mut skewed = Scenario::with_defaults(
        "skewed",
        24,
        vec![
            Segment::constant(300.0, 300.0),
            Segment::constant(800.0, 1500.0),
            Segment::constant(300.0, 900.0),
        ],
    );
    skewed.hot_partition_share = Some(0.1);
    // An hour at `rate` msg/s with +-20 % noise drawn every second, started
    // at `start` pods.
    let noise = |name: &str, partitions: u32, rate: f64, start: u32| {
        let mut noisy =
            Scenario::with_defaults(name, partitions, vec![Segment::constant(rate, 3600.0)]);
        noisy.noise = 0.2;
        noisy.initial_replicas = Some(start);
        noisy
    };
    let noisy = noise("noise", 24, 1000.0, 4);
    // Started at the right size, on a partition boundary: 12 pods of 2
    // partitions serve 1000 msg/s with 10 % headroom and nothing to spare,
    // so the rate's noise alone crosses the boundary.
    let mut boundary = noise("noise-boundary", 24, 1000.0, 12);
    boundary.rebalance = Rebalance::Eager;
    // The same noise on 48 partitions: from a third of its size, and at the
    // right 24 pods (2 partitions each, on the boundary).
    let mut noisy_48 = noise("noise-48", 48, 2000.0, 8);
    noisy_48.seed = 7;
    let mut boundary_48 = noise("noise-boundary-48", 48, 2000.0, 24);
    boundary_48.seed = 7;
    boundary_48.rebalance = Rebalance::Eager;
    // Bursts of 1500 msg/s for a minute, idle between: short gaps (2 min)
    // and long ones (15 min).
    let bursts = |name: &str, gap: f64| {
        let mut load = vec![Segment::constant(0.0, 120.0)];
        for _ in 0..5 {
            load.push(Segment::constant(1500.0, 60.0));
            load.push(Segment::constant(0.0, gap));
        }
        Scenario::with_defaults(name, 24, load)
    };
    // A hot partition beyond a pod, then the load falls: its backlog
    // outlasts the peak, and only the pod that owns it drains it.
    let mut hot_falls = Scenario::with_defaults(
        "hot-partition-falls",
        24,
        vec![
            Segment::constant(300.0, 300.0),
            Segment::constant(1200.0, 600.0),
            Segment::constant(300.0, 1800.0),
        ],
    );
    hot_falls.hot_partition_share = Some(0.2);
    // The scaler restarts while the lag falls after a step down, on a
    // broker that reports no member count (tansu): it answers Unavailable
    // until its window is full, and KEDA and the HPA hold.
    let mut restart = Scenario::with_defaults(
        "restart",
        24,
        vec![
            Segment::constant(300.0, 300.0),
            Segment::constant(1800.0, 900.0),
            Segment::constant(600.0, 1200.0),
        ],
    );
    restart.scaler_restarts = vec![1230.0];
    // The hardest restart: the new replica sees neither the group's
    // members nor its workload's scale.
    restart.members_reported = false;
    restart.scale_target_reported = false;
    // Pods that take 150 s to start and a group that rebalances in 20 s,
    // where the policy is configured with 60 s each.
    let mut slow_start = Scenario::with_defaults(
        "slow-start",
        24,
        vec![
            Segment::constant(200.0, 600.0),
            Segment::constant(1500.0, 900.0),
            Segment::constant(400.0, 900.0),
            Segment::constant(1500.0, 900.0),
            Segment::constant(200.0, 900.0),
        ],
    );
    slow_start.startup_seconds = 150.0;
    slow_start.rebalance_seconds = 20.0;
    slow_start.rebalance = Rebalance::Eager;
    let daily = Scenario::with_defaults(
        "daily",
        48,
        vec![Segment {
            rate: None,
            ramp: None,
            sine: Some(Sine {
                base: 2000.0,
                amplitude: 1800.0,
                period_seconds: 86_400.0,
            }),
            seconds: 86_400.0,
        }],
    );
    vec![
        (
            "reference",
            "the reference demo: 24 partitions, 10 -> 1000 -> 5000 -> 0 msg/s (5000 exceeds 24 pods x 100 msg/s)",
            Scenario::with_defaults(
                "reference",
                24,
                vec![
                    Segment::constant(10.0, 300.0),
                    Segment::constant(1000.0, 600.0),
                    Segment::constant(5000.0, 600.0),
                    Segment::constant(0.0, 900.0),
                ],
            ),
        ),
        (
            "steps",
            "feasible steps up and down on 48 partitions: 200 -> 2000 -> 4000 -> 1000 -> 200 msg/s",
            Scenario::with_defaults(
                "steps",
                48,
                vec![
                    Segment::constant(200.0, 600.0),
                    Segment::constant(2000.0, 900.0),
                    Segment::constant(4000.0, 900.0),
                    Segment::constant(1000.0, 900.0),
                    Segment::constant(200.0, 900.0),
                ],
            ),
        ),
        (
            "spike",
            "a 20x spike lasting 90 s on 24 partitions: 100 -> 2000 -> 100 msg/s",
            Scenario::with_defaults(
                "spike",
                24,
                vec![
                    Segment::constant(100.0, 600.0),
                    Segment::constant(2000.0, 90.0),
                    Segment::constant(100.0, 1200.0),
                ],
            ),
        ),
        (
            "daily",
            "a slow daily curve on 48 partitions: 200 to 3800 msg/s over 24 h",
            daily,
        ),
        (
            "flash-crowd",
            "a flash crowd on 48 partitions: 200 msg/s, a 30 s ramp to 4000, 5 min plateau, 10 min decay",
            Scenario::with_defaults(
                "flash-crowd",
                48,
                vec![
                    Segment::constant(200.0, 600.0),
                    Segment::ramp(200.0, 4000.0, 30.0),
                    Segment::constant(4000.0, 300.0),
                    Segment::ramp(4000.0, 200.0, 600.0),
                    Segment::constant(200.0, 600.0),
                ],
            ),
        ),
        (
            "hot-partition",
            "24 partitions at 1200 msg/s, 20 % of it on partition 0 (more than one pod can take)",
            hot,
        ),
        (
            "skewed",
            "24 partitions, 300 -> 800 -> 300 msg/s, 10 % of it on partition 0: its pod must hold few others",
            skewed,
        ),
        (
            "noise",
            "24 partitions at a constant 1000 msg/s with +-20 % noise, starting from 4 replicas",
            noisy,
        ),
        (
            "noise-boundary",
            "the same noise started at the right 12 replicas, where noise alone crosses a partition boundary (eager)",
            boundary,
        ),
        (
            "noise-48",
            "48 partitions at 2000 msg/s with +-20 % noise, starting from 8 replicas",
            noisy_48,
        ),
        (
            "noise-boundary-48",
            "the same on 48 partitions started at the right 24 replicas, on a partition boundary (eager)",
            boundary_48,
        ),
        (
            "bursts-short",
            "24 partitions: five 1-minute bursts of 1500 msg/s, 2 minutes idle between",
            bursts("bursts-short", 120.0),
        ),
        (
            "bursts-long",
            "24 partitions: five 1-minute bursts of 1500 msg/s, 15 minutes idle between",
            bursts("bursts-long", 900.0),
        ),
        (
            "hot-partition-falls",
            "24 partitions, 300 -> 1200 -> 300 msg/s, 20 % on partition 0: its backlog outlasts the peak",
            hot_falls,
        ),
        (
            "slow-start",
            "24 partitions, steps 200 -> 1500 -> 400 -> 1500 -> 200 msg/s; pods start in 150 s and rebalance in 20 s where the policy says 60 s each (eager)",
            slow_start,
        ),
        (
            "restart",
            "24 partitions, 300 -> 1800 -> 600 msg/s; the scaler restarts while the lag falls, with no member count",
            restart,
        ),
    ]
}

/// A built-in scenario by name, or a scenario file.
pub fn find(name_or_path: &str) -> Result<Scenario, String> {
    if let Some((_, _, s)) = builtin().into_iter().find(|(n, _, _)| *n == name_or_path) {
        return Ok(s);
    }
    let path = Path::new(name_or_path);
    if path.exists() {
        return Scenario::load(path);
    }
    let names: Vec<_> = builtin().iter().map(|(n, _, _)| *n).collect();
    Err(format!(
        "{name_or_path:?} is neither a built-in scenario ({}) nor a file",
        names.join(", ")
    ))
}
