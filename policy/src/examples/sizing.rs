//! Examples of how a count is sized: KEDA's lag rule, partition-aware
//! counts, what the partitions cannot give, a hot partition, a climb, a
//! backlog more pods would not drain sooner, and which count a scale-down
//! that prices its own pause goes to.

use super::*;

#[test]
fn first_answer_is_kedas_ceil_lag_over_threshold_capped_at_partitions() {
    let first = |lag, partitions| {
        decide(
            &lag_only(100.0),
            &State::default(),
            &obs(lag, 0.0, partitions),
            0.0,
        )
        .0
    };
    assert_eq!(first(1000.0, 24).replicas, 10);
    assert_eq!(first(1001.0, 24).replicas, 11);
    let capped = first(10_000.0, 24);
    assert_eq!(capped.replicas, 24);
    assert_eq!(
        capped.partition_limit,
        Some(PartitionLimit {
            pods_needed: 100,
            partitions: 24
        })
    );
    assert_eq!(first(0.0, 24).replicas, 0);
}

#[test]
fn partition_aware_need_is_the_smallest_count_whose_busiest_pod_keeps_up() {
    // 24 partitions, 1000 msg/s, 100 per pod: 10 pods would leave some pod
    // 3 partitions (125 msg/s); 12 pods give each 2 (83 msg/s). (From no
    // pod, the answer adds what the start-up's backlog takes.)
    let d = decide(
        &rate_aware(100.0),
        &State::default(),
        &obs(0.0, 1000.0, 24),
        0.0,
    )
    .0;
    assert_eq!(d.need, 12, "{}", d.reason);
    let kept = decide(&rate_aware(100.0), &running(12), &obs(0.0, 1000.0, 24), 0.0).0;
    assert_eq!((kept.replicas, kept.action), (12, Action::Steady));
}

#[test]
fn a_backlog_that_needs_more_pods_than_partitions_is_no_partition_warning() {
    // 1500 msg/s on 24 partitions is 62.5 msg/s each, which 24 pods of 100
    // serve; a burst's backlog makes the need exceed 24 for a while.
    let d = decide(
        &rate_aware(100.0),
        &State::default(),
        &obs(100_000.0, 1500.0, 24),
        0.0,
    )
    .0;
    assert_eq!(d.replicas, 24);
    assert_eq!(d.partition_limit, None, "{}", d.reason);
    assert!(
        !d.reason.to_string().contains("add partitions"),
        "{}",
        d.reason
    );
}

#[test]
fn load_beyond_the_partitions_is_reported_not_answered_with_more_pods() {
    let d = decide(
        &rate_aware(100.0),
        &State::default(),
        &obs(0.0, 5000.0, 24),
        0.0,
    )
    .0;
    assert_eq!(d.replicas, 24);
    assert_eq!(
        d.partition_limit,
        Some(PartitionLimit {
            pods_needed: 50,
            partitions: 24
        })
    );
    assert!(
        d.reason
            .to_string()
            .contains("needs 50 pods but the topic has 24 partitions"),
        "{}",
        d.reason
    );
}

#[test]
fn hot_partition_is_named() {
    let mut o = obs(0.0, 300.0, 8);
    o.hottest_partition = Some(HotPartition {
        partition: "trades/3".into(),
        rate_per_s: 250.0,
    });
    let d = decide(&rate_aware(100.0), &State::default(), &o, 0.0).0;
    assert_eq!(
        d.hot_partition.map(|h| h.partition),
        Some("trades/3".to_owned())
    );
}

#[test]
fn on_a_steady_climb_a_scale_up_is_sized_for_the_rate_when_its_pods_consume() {
    // 8 pods of 100 msg/s on 48 partitions at 700 msg/s: enough now. Rising
    // by 2 msg/s every second it will be 940 msg/s when pods started now
    // consume (S + R = 120 s).
    let p = rate_aware(100.0);
    let eight = running(8);
    let level = decide(&p, &eight, &obs(0.0, 700.0, 48), 1000.0).0;
    assert_eq!((level.replicas, level.action), (8, Action::Steady));
    let climbing = Observation {
        rate_climb_per_s2: Some(2.0),
        ..obs(0.0, 700.0, 48)
    };
    let d = decide(&p, &eight, &climbing, 1000.0).0;
    assert_eq!(d.action, Action::ScaleUp);
    assert!(d.replicas >= 10, "940 msg/s needs 10 pods: {}", d.replicas);
    let reason = d.reason.to_string();
    let climbing = "rate 700.0/s from offsets climbing 2.00/s per second";
    assert!(reason.contains(climbing), "{reason}");
}

#[test]
fn a_backlog_more_pods_would_not_drain_sooner_keeps_the_pods_that_run() {
    // 16 partitions at 700 msg/s, 100 msg/s per pod, 10 % headroom: 8 pods
    // of 2 partitions serve 800 msg/s. 3,000 waiting messages drain at the
    // 100 msg/s spare in 30 s: within the objective. 7,200 take 72 s,
    // beyond it, but every count above 8 pauses the group for start-up
    // and rebalance first, and makes messages wait longer: the 8 that run
    // are the closest, and the reason says the objective is out of reach.
    let params = with_headroom(100.0, 0.1);
    let eight = |lag: f64| decide(&params, &running(8), &obs(lag, 700.0, 16), 0.0).0;
    let drained = eight(3_000.0);
    assert_eq!((drained.replicas, drained.action), (8, Action::Steady));
    assert!(
        drained
            .reason
            .to_string()
            .contains("within the 60s objective"),
        "{}",
        drained.reason
    );
    let beyond = eight(7_200.0);
    assert_eq!((beyond.replicas, beyond.action), (8, Action::Steady));
    let reason = beyond.reason.to_string();
    assert!(reason.contains("objective is out of reach"), "{reason}");
}

#[test]
fn a_cooperative_scale_down_goes_to_the_first_count_that_drains_its_own_pause() {
    // 24 pods on 24 partitions at 300 msg/s, 15 % of it on the hottest
    // partition, cooperative rebalancing, R = drainSeconds = 60 s. The rate
    // needs 5 pods, but going to 5 pauses 19 of 24 partitions (14,250
    // messages): the hottest partition's pod could then hold no other, 24.
    // Going to 8 pauses 16 (12,000): it needs 12. Going to 12 pauses 12
    // (9,000) and 12 pods drain it: 12 it is, not a hold at 24.
    let params = cooperative(&rate_aware(100.0));
    let lower = State {
        replicas: Some(24),
        ..State::default()
    };
    let skewed = Observation {
        hottest_share: Some(0.15),
        ..obs(0.0, 300.0, 24)
    };
    let d = decide(&params, &lower, &skewed, 1000.0).0;
    assert_eq!(
        (d.replicas, d.action),
        (12, Action::ScaleDown),
        "{}",
        d.reason
    );
    // Under eager rebalancing every partition pauses (18,000 messages):
    // no count below 24 drains that in time.
    let eager = decide(&rate_aware(100.0), &lower, &skewed, 1000.0).0;
    assert_eq!((eager.replicas, eager.action), (24, Action::PauseTooCostly));
}

#[test]
fn a_climb_the_running_pods_serve_until_new_pods_consume_needs_no_more_pods() {
    // 3 pods on 6 partitions (100 msg/s each, 300 in all) at 240 msg/s,
    // 10 % headroom (264). Climbing 0.15 msg/s per second, the rate is 258
    // when pods started now would consume (S + R = 120 s): the headroom
    // covers it. At 0.28 (274) the 3 pods still serve it: the headroom
    // is not added on top of the climb. At 0.6 (312) they do not, and the
    // next count that processes more is 6.
    let params = with_headroom(100.0, 0.1);
    let three = running(3);
    let climbing = |per_s2: f64| {
        let o = Observation {
            rate_climb_per_s2: Some(per_s2),
            ..obs(0.0, 240.0, 6)
        };
        decide(&params, &three, &o, 1000.0).0
    };
    let covered = climbing(0.15);
    assert_eq!((covered.replicas, covered.action), (3, Action::Steady));
    let served = climbing(0.28);
    assert_eq!((served.replicas, served.action), (3, Action::Steady));
    let reason = served.reason.to_string();
    assert!(
        reason.contains("rate 240.0/s from offsets climbing 0.28/s"),
        "{reason}"
    );
    let beyond = climbing(0.6);
    assert_eq!((beyond.replicas, beyond.action), (6, Action::ScaleUp));
}
