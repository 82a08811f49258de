//! Examples of how a need is sized: what the headroom covers, and which
//! count a scale-down that prices its own pause goes to.

use super::*;

#[test]
fn a_backlog_the_headroom_drains_within_drain_seconds_needs_no_more_pods() {
    // 16 partitions at 700 msg/s, 100 msg/s per pod, 10 % headroom: 8 pods
    // of 2 partitions serve 800 msg/s, 770 with the headroom. 3,000
    // waiting messages take 50 msg/s for 60 s, which the headroom (70
    // msg/s) gives: still 8. Only backlog beyond it needs more pods: 7,200
    // take 120 msg/s, and the next count that processes more is 16.
    let params = with_headroom(100.0, 0.1);
    let first = |lag: f64| decide(&params, &State::default(), &obs(lag, 700.0, 16), 0.0).0;
    let drained = first(3_000.0);
    assert_eq!(drained.replicas, 8);
    let reason = drained.reason.to_string();
    assert!(
        reason.contains("x 1.10 (the headroom drains backlog 3000 within 60s)"),
        "{reason}"
    );
    assert_eq!(first(0.0).replicas, 8);
    let beyond = first(7_200.0);
    assert_eq!(beyond.replicas, 16);
    let reason = beyond.reason.to_string();
    assert!(
        reason.contains("+ backlog 7200 / 60s (more than 700.0/s x 1.10)"),
        "{reason}"
    );
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
        lower_since: Some(0.0),
        rate_when_lower: 300.0,
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
    let reason = covered.reason.to_string();
    assert!(reason.contains("240.0/s now x 1.10 covers it"), "{reason}");
    let served = climbing(0.28);
    assert_eq!((served.replicas, served.action), (3, Action::Steady));
    let reason = served.reason.to_string();
    assert!(
        reason.contains("rate 273.6/s from offsets climbing 0.28/s"),
        "{reason}"
    );
    assert!(reason.contains("(more than 240.0/s x 1.10)"), "{reason}");
    let beyond = climbing(0.6);
    assert_eq!((beyond.replicas, beyond.action), (6, Action::ScaleUp));
}
