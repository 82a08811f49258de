//! Invariants of the policy, over arbitrary parameters and observations.

use super::{Action, Observation, Params, PartitionCap, PolicySettings, State, decide};
use proptest::prelude::*;

fn any_params() -> impl Strategy<Value = Params> {
    (
        any::<bool>(),
        prop::option::of(1.0f64..500.0),
        1.0f64..2000.0,
        0u32..3,
        1u32..200,
        prop_oneof![
            Just(PartitionCap::Partitions),
            Just(PartitionCap::PartitionsWithLag),
            Just(PartitionCap::None)
        ],
        (0.0f64..1.0, 5.0f64..300.0, 0.1f64..=1.0),
    )
        .prop_map(
            |(
                rate_aware,
                pod_capacity,
                lag_threshold,
                min,
                max_extra,
                cap,
                (headroom, drain, step),
            )| Params {
                settings: PolicySettings {
                    headroom,
                    drain_seconds: drain,
                    max_scale_down_step: step,
                    pod_capacity,
                    min_replicas: min,
                    max_replicas: min + max_extra,
                    ..PolicySettings::default()
                },
                lag_threshold,
                activation_lag_threshold: 0.0,
                cap,
                rate_aware: rate_aware || pod_capacity.is_some(),
            },
        )
}

fn observation(lag: f64, rate: f64, partitions: u32, window_full: bool) -> Observation {
    Observation {
        partitions_with_lag: if lag > 0.0 { partitions } else { 0 },
        processing_rate_per_s: Some(rate),
        window_full,
        ..Observation::steady(lag, rate, partitions)
    }
}

/// (lag, rate) pairs, one per 5 s sample.
fn load() -> impl Strategy<Value = Vec<(f64, f64)>> {
    prop::collection::vec((0.0f64..100_000.0, 0.0f64..10_000.0), 1..40)
}

/// Runs a sequence; returns the state after it and the answers.
fn run(
    params: &Params,
    partitions: u32,
    steps: &[(f64, f64)],
    window_full: bool,
) -> (State, Vec<u32>) {
    let mut state = State::default();
    let mut answers = Vec::new();
    for (i, &(lag, rate)) in steps.iter().enumerate() {
        let (d, next) = decide(
            params,
            &state,
            &observation(lag, rate, partitions, window_full),
            i as f64 * 5.0,
        );
        answers.push(d.replicas);
        state = next;
    }
    (state, answers)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn answers_stay_within_min_max_and_the_partition_cap(p in any_params(), partitions in 1u32..64, steps in load()) {
        let (_, answers) = run(&p, partitions, &steps, true);
        let s = &p.settings;
        for r in answers {
            prop_assert!(r <= s.max_replicas, "{r} > maxReplicas {}", s.max_replicas);
            prop_assert!(r == 0 || r >= s.min_replicas.min(s.max_replicas));
            if p.cap != PartitionCap::None {
                prop_assert!(r <= partitions.max(s.min_replicas), "{r} pods for {partitions} partitions");
            }
        }
    }

    /// More lag or more rate never buys fewer pods unless the fewer are
    /// predicted no worse: they meet the objective (the counts above are
    /// not priced), or their longest wait rounds no longer than that of
    /// the count the lighter load took (ties go to fewer pods).
    #[test]
    fn more_lag_or_more_rate_never_means_fewer_pods_that_do_worse(
        p in any_params(), partitions in 1u32..64, prefix in load(),
        lag in 0.0f64..100_000.0, more_lag in 0.0f64..100_000.0,
        rate in 0.0f64..10_000.0, more_rate in 0.0f64..10_000.0,
    ) {
        let (state, _) = run(&p, partitions, &prefix, true);
        let now = prefix.len() as f64 * 5.0;
        // The group's processing rate is what it is; only lag and λ vary.
        let obs = |lag, inbound| Observation { inbound_rate_per_s: Some(inbound), steady_rate_per_s: Some(inbound), ..observation(lag, rate, partitions, true) };
        for from in [&state, &State::default()] {
            let lighter = decide(&p, from, &obs(lag, rate), now).0;
            for (l, r) in [(lag + more_lag, rate), (lag, rate + more_rate), (lag + more_lag, rate + more_rate)] {
                let heavier = decide(&p, from, &obs(l, r), now).0;
                if heavier.replicas >= lighter.replicas {
                    continue;
                }
                let plan = heavier.plan.as_ref().unwrap();
                let chosen = plan.choice();
                let kept = plan.candidates.iter().find(|c| c.replicas == lighter.replicas);
                prop_assert!(
                    chosen.meets() || kept.is_none_or(|k| chosen.worst_wait_s.round() <= k.worst_wait_s.round()),
                    "{} pods at lag {lag} rate {rate}, {} at lag {l} rate {r}: {}\n{plan}",
                    lighter.replicas, heavier.replicas, heavier.reason
                );
            }
        }
    }

    #[test]
    fn no_second_scale_up_inside_the_settle_window_while_backlog_is_within_the_projection(
        p in any_params(), partitions in 1u32..64,
        lag in 1_000.0f64..100_000.0, rate in 1.0f64..5_000.0,
        later in prop::collection::vec((0.0f64..=1.0, 0.0f64..=1.0), 1..20),
    ) {
        let start = State { replicas: Some(1), ..State::default() };
        let (first, state) = decide(&p, &start, &observation(lag, rate, partitions, true), 0.0);
        prop_assume!(first.action == Action::ScaleUp);
        let settle = p.settings.startup_seconds + p.settings.rebalance_seconds;
        let mut state = state;
        for (i, (lag_share, rate_share)) in later.into_iter().enumerate() {
            let t = (i as f64 + 1.0) * settle / 21.0;
            // Backlog anywhere up to the projection, rate no higher than seen.
            let obs = observation(state.projected_backlog * lag_share, rate * rate_share, partitions, true);
            let (d, next) = decide(&p, &state, &obs, t);
            prop_assert!(d.replicas <= first.replicas, "scaled up again at {t}s: {}", d.reason);
            state = next;
        }
    }

    #[test]
    fn a_cold_start_never_scales_down(p in any_params(), partitions in 1u32..64, steps in load()) {
        let (_, answers) = run(&p, partitions, &steps, false);
        for pair in answers.windows(2) {
            prop_assert!(pair[1] >= pair[0], "scaled down {} -> {} before a full window", pair[0], pair[1]);
        }
    }

    /// Under constant input the answer never scales up again while the
    /// pause of its last scale-up runs (start-up and rebalance: the backlog
    /// then is what the change projected), and never scales down then up.
    /// (Learning the per-pod capacity may add a step: that is new knowledge.)
    #[test]
    fn constant_input_never_scales_up_within_a_pause_nor_after_a_scale_down(p in any_params(), partitions in 1u32..64, lag in 0.0f64..100_000.0, rate in 0.0f64..10_000.0, start in 0u32..100) {
        prop_assume!(p.settings.pod_capacity.is_some() || !p.rate_aware);
        let pause = p.settings.startup_seconds + p.settings.rebalance_seconds;
        let mut state = State { replicas: Some(start), ..State::default() };
        let mut answers = vec![start];
        let mut last_up: Option<f64> = None;
        for i in 0..200 {
            let t = f64::from(i) * 5.0;
            let (d, next) = decide(&p, &state, &observation(lag, rate, partitions, true), t);
            if d.replicas > *answers.last().unwrap() {
                prop_assert!(last_up.is_none_or(|up| t >= up + pause), "scaled up again {t}s after {last_up:?}: {answers:?}");
                last_up = Some(t);
            }
            answers.push(d.replicas);
            state = next;
        }
        let moves: Vec<i32> = answers.windows(2).filter(|w| w[1] != w[0]).map(|w| if w[1] > w[0] { 1 } else { -1 }).collect();
        let first_down = moves.iter().position(|m| *m < 0);
        prop_assert!(first_down.is_none_or(|d| moves[d..].iter().all(|m| *m < 0)), "down then up: {answers:?}");
    }
}
