//! Examples of how the answer moves from one need to the next: the peak
//! a scale-down is held to, the idle window, the projection of a change's
//! own pause, ramps, the price of a scale-down's pause, and the rebalance
//! pause timed from the offsets.

use super::*;

#[test]
fn a_scale_down_waits_for_the_peak_to_leave_the_horizon_then_steps_within_the_bound() {
    let mut p = rate_aware(100.0);
    p.settings.max_scale_down_step = 0.75;
    // No rebalance pause: this example is about the peak held. The
    // horizon is start-up and the objective: 120 s.
    p.settings.rebalance_seconds = 0.0;
    let mut state = after_peak(24, 2000.0, 0.0);
    let mut answers = Vec::new();
    let mut t = 5.0;
    while t <= 400.0 {
        let (d, next) = decide(&p, &state, &obs(0.0, 400.0, 48), t);
        answers.push((t, d.replicas));
        state = next;
        t += 5.0;
    }
    let at = |time: f64| answers.iter().find(|(t, _)| *t == time).unwrap().1;
    // 2000 msg/s was seen 120 s ago: a dip would be back by now.
    assert_eq!(
        at(120.0),
        24,
        "held while the peak is in the horizon: {answers:?}"
    );
    assert_eq!(at(125.0), 6, "24 -> max(need 4, 24 x 0.25): {answers:?}");
    assert_eq!(at(130.0), 4, "{answers:?}");
    assert_eq!(at(400.0), 4, "{answers:?}");
}

#[test]
fn idle_topic_keeps_one_pod_for_the_idle_window_then_goes_to_zero() {
    let p = rate_aware(100.0);
    let (_, mut state) = decide(&p, &State::default(), &obs(0.0, 300.0, 8), 0.0);
    let mut seen = Vec::new();
    for i in 1..=80 {
        let t = 200.0 + f64::from(i) * 5.0;
        let (d, next) = decide(&p, &state, &obs(0.0, 0.0, 8), t);
        seen.push((t, d.replicas));
        state = next;
    }
    assert_eq!(seen[0].1, 1, "one pod stays at once");
    let zero_at = seen.iter().find(|(_, r)| *r == 0).map(|(t, _)| *t).unwrap();
    assert!(
        (505.0..=510.0).contains(&zero_at),
        "zero after 300 s idle, at {zero_at}"
    );
}

#[test]
fn backlog_from_the_groups_own_pause_does_not_trigger_a_second_scale_up() {
    let p = rate_aware(100.0);
    let (up, state) = decide(&p, &running(2), &obs(0.0, 1000.0, 96), 0.0);
    // Sized once for 1000 msg/s and for the backlog of its own pause:
    // S x (1000 - 200) + R x 1000 = 108000 messages, drained in 60 s.
    assert_eq!(up.replicas, 32, "{}", up.reason);
    // During start-up and rebalance nothing is consumed: backlog builds.
    let mut state = state;
    for i in 1..24 {
        let t = f64::from(i) * 5.0;
        let (d, next) = decide(&p, &state, &obs(1000.0 * t, 1000.0, 96), t);
        assert_eq!(d.replicas, 32, "at {t}s: {}", d.reason);
        state = next;
    }
}

#[test]
fn a_pause_the_group_drained_sooner_than_planned_hides_no_new_backlog() {
    // 32 partitions, cooperative. A change projected 26,000 messages whose
    // pause ended at 400 s, draining at 44 msg/s as planned; the group
    // drained them sooner: the lag is 0 at 544 s, when 2 pods at 56 msg/s
    // go to 1. That change pauses 16 of the 32 partitions (1,680 messages);
    // the 24,000 still planned are gone, and must not hide the next rise.
    let p = cooperative(&rate_aware(100.0));
    let drained_sooner = State {
        projected_backlog: 26_000.0,
        pause_until: 400.0,
        projected_drain_per_s: 44.0,
        ..running(2)
    };
    let (down, next) = decide(&p, &drained_sooner, &obs(0.0, 56.0, 32), 544.0);
    assert_eq!(
        (down.replicas, down.action),
        (1, Action::ScaleDown),
        "{}",
        down.reason
    );
    assert!((next.projected_backlog - 1_680.0).abs() < 1.0, "{next:?}");
    // Later, a burst's 4,064 waiting messages count in full.
    let rise = decide(&p, &next, &obs(4_064.0, 752.0, 32), 876.0).0;
    assert_eq!(rise.action, Action::ScaleUp, "{}", rise.reason);
}

#[test]
fn on_a_ramp_the_count_processes_the_rate_new_pods_would_meet() {
    let mut p = rate_aware(100.0);
    // A group that rebalances without pausing: this example is about the
    // ramp (the pause's price has its own).
    p.settings.rebalance_seconds = 0.0;
    let startup = p.settings.startup_seconds;
    let mut state = running(24);
    // A ramp from 400 to 1000 msg/s over 10 minutes on 48 partitions, 1
    // msg/s per second: every answer processes the rate pods started now
    // would meet, and it never falls while the load climbs.
    let mut t = 0.0;
    let mut last = None;
    while t < 600.0 {
        let o = Observation {
            rate_climb_per_s2: Some(1.0),
            ..obs(0.0, 400.0 + t, 48)
        };
        let (d, next) = decide(&p, &state, &o, t);
        let pods = d.replicas;
        let ahead = 400.0 + t + startup;
        assert!(
            100.0 * 48.0 / f64::from(48_u32.div_ceil(pods)) >= ahead.min(1000.0),
            "{pods} pods fall behind {ahead} msg/s at {t}s: {}",
            d.reason
        );
        if let Some(last) = last
            && t > 0.0
        {
            assert!(pods >= last, "scaled down on a ramp at {t}s: {}", d.reason);
        }
        last = Some(pods);
        state = next;
        t += 5.0;
    }
    // Levelled off at 1000 msg/s x 1.0 on 48 partitions: 12 pods.
    let (d, _) = decide(&p, &state, &obs(0.0, 1000.0, 48), t);
    assert_eq!(d.replicas, 12, "{}", d.reason);
}

#[test]
fn a_scale_down_held_for_its_pause_goes_once_the_load_falls_to_where_it_is_affordable() {
    // 24 pods on 24 partitions at 1000 msg/s, 100 msg/s per pod, R = 60 s,
    // objective 60 s. 12 pods (2 partitions each) serve the rate, but an
    // eager rebalance pauses every partition for 60 s: 60,000 messages that
    // 12 pods, 200 msg/s beyond the rate, need 300 s to drain.
    let params = rate_aware(100.0);
    let mut state = running(24);
    let mut last = None;
    for i in 0..120 {
        let (d, next) = decide(&params, &state, &obs(0.0, 1000.0, 24), f64::from(i) * 5.0);
        state = next;
        last = Some(d);
    }
    let held = last.unwrap();
    assert_eq!((held.replicas, held.action), (24, Action::PauseTooCostly));
    let text = held.reason.to_string();
    assert!(
        text.contains("12 pods would do were a change free"),
        "{text}"
    );
    // At 390 msg/s the 23,400 paused messages drain beside the rate within
    // the objective on 12 pods: the scale-down goes at once, no window.
    let (down, _) = decide(&params, &state, &obs(0.0, 390.0, 24), 600.0);
    assert_eq!(
        (down.replicas, down.action),
        (12, Action::ScaleDown),
        "{}",
        down.reason
    );
}

#[test]
fn a_rebalance_pause_timed_from_offsets_is_planned_with_beside_the_configured_one() {
    // 24 pods on 24 partitions at 800 msg/s, eager. 12 pods (2 partitions
    // each, 400 msg/s spare) serve the rate; the configured 60 s pause
    // leaves 48,000 messages: 120 s to drain, held. The offsets have shown
    // pauses of 20 s: with the 60 s prior as one more observation, one of
    // them plans 40 s (32,000 messages, 80 s: still held), nine plan 24 s
    // (19,200, 48 s: 12 pods go).
    let params = rate_aware(100.0);
    let held = State {
        replicas: Some(24),
        ..State::default()
    };
    let timed = |observations| Observation {
        learned_rebalance: Some(LearnedPause {
            seconds: 20.0,
            observations,
        }),
        ..obs(0.0, 800.0, 24)
    };
    let configured = decide(&params, &held, &obs(0.0, 800.0, 24), 600.0).0;
    assert_eq!(configured.action, Action::PauseTooCostly);
    assert_eq!(configured.rebalance_seconds, 60.0);
    let one = decide(&params, &held, &timed(1), 600.0).0;
    assert_eq!(
        (one.action, one.rebalance_seconds),
        (Action::PauseTooCostly, 40.0)
    );
    let nine = decide(&params, &held, &timed(9), 600.0).0;
    assert_eq!((nine.replicas, nine.action), (12, Action::ScaleDown));
    // The prior is one observation among them: pods that rebalance in 3 s
    // where 60 s is configured are planned with 3 s once enough pauses
    // have been timed, not held at some fraction of the prior.
    let fast = |observations| LearnedPause {
        seconds: 3.0,
        observations,
    };
    assert_eq!(fast(1).with_prior(60.0), 31.5);
    assert!((fast(99).with_prior(60.0) - 3.57).abs() < 1e-9);
}

#[test]
fn the_paused_share_is_every_partition_when_eager_and_the_moved_ones_when_cooperative() {
    assert_eq!(Rebalance::Eager.paused_share(24, 23), 1.0);
    assert_eq!(Rebalance::Cooperative.paused_share(24, 12), 0.5);
    assert_eq!(Rebalance::Cooperative.paused_share(12, 24), 0.5);
    assert_eq!(Rebalance::Cooperative.paused_share(0, 6), 1.0);
    assert_eq!(Rebalance::Cooperative.paused_share(0, 0), 0.0);
}

#[test]
fn a_scale_down_delays_the_most_lagged_partition_by_at_most_drain_seconds() {
    // 24 partitions at 300 msg/s, 15 % of it (45 msg/s) on the hottest and
    // 11.1 msg/s on each other, 100 msg/s per pod, drainSeconds 60, 24
    // pods, no rebalance pause. The lagged partition's pod serves its
    // other partitions first: alone it drains at 55 msg/s, beside k - 1
    // others at 55 - 11.1 (k - 1).
    let mut params = rate_aware(100.0);
    params.settings.rebalance_seconds = 0.0;
    let twenty_four = State {
        replicas: Some(24),
        ..State::default()
    };
    let with_lag = |partition_lag: f64| Observation {
        hottest_share: Some(0.15),
        max_partition_lag: partition_lag,
        ..obs(0.0, 300.0, 24)
    };
    let answer =
        |partition_lag: f64| decide(&params, &twenty_four, &with_lag(partition_lag), 1000.0).0;
    let by_rate = answer(0.0).replicas;
    assert!(by_rate <= 5, "the rate alone: {by_rate}");
    // 6,000 waiting: 109 s alone, so at most 169 s: 35.5 msg/s, which a pod
    // with one other partition still gives it: 12 pods.
    assert_eq!(answer(6_000.0).replicas, 12);
    // 30,000 waiting: 545 s alone, at most 605 s: 49.6 msg/s, only a pod of
    // its own gives that: all 24 stay.
    let held = answer(30_000.0);
    assert_eq!(held.replicas, 24, "{}", held.reason);
}

#[test]
fn a_lag_only_trigger_carries_the_highest_lag_of_the_horizon_then_steps_to_kedas_count() {
    // lagThreshold 100 on 24 partitions: a lag of 2,000 needs 20 pods, at
    // once and in one step. The lag falls to 500 (5 pods): a smaller count
    // must carry the highest lag of the last horizon (start-up, rebalance
    // and the objective: 180 s), which may be back before new pods could
    // drain it; then the answer goes to KEDA's count in one step.
    let p = lag_only(100.0);
    let (up, mut state) = decide(&p, &running(1), &obs(2_000.0, 0.0, 24), 0.0);
    assert_eq!(
        (up.replicas, up.action),
        (20, Action::ScaleUp),
        "{}",
        up.reason
    );
    let mut answers = Vec::new();
    for t in (5..=400).step_by(5) {
        let (d, next) = decide(&p, &state, &obs(500.0, 0.0, 24), f64::from(t));
        if t == 100 {
            let reason = d.reason.to_string();
            assert!(
                reason.contains("lag 500 / lagThreshold 100; the highest of the last 180s, 2000"),
                "{reason}"
            );
        }
        answers.push((t, d.replicas));
        state = next;
    }
    let held = answers.iter().take_while(|(_, r)| *r == 20).count();
    assert_eq!(
        answers[held - 1].0,
        180,
        "held through the horizon: {answers:?}"
    );
    assert!(answers[held..].iter().all(|(_, r)| *r == 5), "{answers:?}");
}
