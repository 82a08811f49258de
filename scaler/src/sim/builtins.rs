//! The built-in scenarios of `lagrate simulate --list`.

use super::scenario::{Rebalance, Scenario, Segment, Sine};

/// The built-in scenarios, by name.
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
    let mut noisy = Scenario::with_defaults("noise", 24, vec![Segment::constant(1000.0, 3600.0)]);
    noisy.noise = 0.2;
    noisy.initial_replicas = Some(4);
    // Started at the right size, on a partition boundary: 12 pods of 2
    // partitions serve 1000 msg/s with 10 % headroom and nothing to spare,
    // so the rate's noise alone crosses the boundary.
    let mut boundary = Scenario::with_defaults(
        "noise-boundary",
        24,
        vec![Segment::constant(1000.0, 3600.0)],
    );
    boundary.noise = 0.2;
    boundary.initial_replicas = Some(12);
    boundary.rebalance = Rebalance::Eager;
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
    ]
}
