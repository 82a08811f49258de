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
    let params = Params {
        settings: PolicySettings {
            headroom: 0.1,
            ..rate_aware(100.0).settings
        },
        ..rate_aware(100.0)
    };
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
        reason.contains("+ backlog 7200 / 60s (more than the 10% headroom drains)"),
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
    let params = Params {
        settings: PolicySettings {
            rebalance: Rebalance::Cooperative,
            ..rate_aware(100.0).settings
        },
        ..rate_aware(100.0)
    };
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
