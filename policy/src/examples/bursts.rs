//! Examples of the policy's behaviour with bursts of traffic between quiet
//! stretches or over a base rate.

use super::*;

#[test]
fn bursts_further_apart_than_the_idle_window_go_to_zero_once_drained() {
    let p = rate_aware(100.0);
    let (_, busy) = decide(&p, &State::default(), &obs(0.0, 300.0, 8), 0.0);
    let quiet = |lag: f64, gap: Option<f64>| Observation {
        idle_gap_s: gap,
        ..obs(lag, 0.0, 8)
    };
    // The gap before this burst outlasted the 300 s idle window: a pod kept
    // warm would idle out before the next one.
    let d = decide(&p, &busy, &quiet(0.0, Some(400.0)), 100.0).0;
    assert_eq!((d.replicas, d.action), (0, Action::IdleGapOutlasts));
    assert!(
        d.reason
            .to_string()
            .contains("idle 400s before this traffic")
    );
    // A shorter gap, or none seen: one pod waits out the idle window.
    for gap in [Some(120.0), None] {
        let d = decide(&p, &busy, &quiet(0.0, gap), 100.0).0;
        assert_eq!((d.replicas, d.action), (1, Action::IdleKeepOne), "{gap:?}");
    }
    // Messages still waiting: not idle.
    assert!(
        decide(&p, &busy, &quiet(500.0, Some(400.0)), 100.0)
            .0
            .replicas
            > 0
    );
}

#[test]
fn a_burst_that_ends_before_new_pods_consume_is_drained_by_the_pods_that_run() {
    // One pod of 100 msg/s on 8 partitions; bursts of 150 msg/s have lasted
    // 60 s. 20 s into this one, 1000 messages wait: it should end in 40 s,
    // before pods started now consume (S + R = 120 s), leaving 1000 + 40 x
    // 50 = 3000, which the pod drains in 30 s: a scale-up would only add
    // its pause.
    let p = rate_aware(100.0);
    let one = running(1);
    let burst = |busy: f64, last: Option<f64>, lag: f64| Observation {
        busy_for_s: Some(busy),
        last_burst_s: last,
        ..obs(lag, 150.0, 8)
    };
    let d = decide(&p, &one, &burst(20.0, Some(60.0), 1000.0), 1000.0).0;
    assert_eq!((d.replicas, d.action), (1, Action::Steady));
    let reason = d.reason.to_string();
    assert!(
        reason.contains("a burst that should end in 40s like the last one"),
        "{reason}"
    );
    // Just past the last one's length it still holds: one burst's length is
    // a rough estimate. With 5000 waiting the pod drains beyond the
    // objective, but new pods would consume only after the burst: holding
    // is still the shorter wait.
    for (busy, lag) in [(70.0, 1000.0), (20.0, 5000.0)] {
        let d = decide(&p, &one, &burst(busy, Some(60.0), lag), 1000.0).0;
        assert_eq!(d.replicas, 1, "{busy} {lag}: {}", d.reason);
    }
    // It scales up when no burst was seen before, when this one has
    // outlasted the last by half, or when the last was longer than new
    // pods take to consume.
    for (busy, last) in [(20.0, None), (100.0, Some(60.0)), (20.0, Some(300.0))] {
        let d = decide(&p, &one, &burst(busy, last, 1000.0), 1000.0).0;
        assert_eq!(d.action, Action::ScaleUp, "{busy} {last:?}: {}", d.reason);
    }
}

#[test]
fn after_a_burst_that_lasted_like_the_one_before_the_drained_group_scales_down_at_once() {
    // 16 pods after a burst of 1500 msg/s that fell 30 s ago, back at 40
    // msg/s (1 pod). A fall within the last horizon is held to the peak, in
    // case it is a dip; a burst that ended after lasting like the one
    // before it is no dip: once its backlog has drained, the group goes to
    // 1. Still draining, or after a first burst, it holds; a fall that has
    // lasted longer than the burst did is no dip either.
    let p = rate_aware(100.0);
    let state = after_peak(16, 1500.0, 30.0);
    let after = |lag: f64, last: f64, before: Option<f64>| {
        let o = Observation {
            last_burst_s: Some(last),
            burst_before_s: before,
            ..obs(lag, 40.0, 16)
        };
        decide(&p, &state, &o, 0.0).0
    };
    for (lag, last, before, replicas) in [
        (0.0, 60.0, Some(55.0), 1),
        (3_000.0, 60.0, Some(55.0), 16),
        (0.0, 60.0, None, 16),
        (0.0, 20.0, Some(55.0), 1),
    ] {
        let d = after(lag, last, before);
        assert_eq!(
            d.replicas, replicas,
            "{lag} {last} {before:?}: {}",
            d.reason
        );
    }
}

#[test]
fn after_the_traffic_stops_the_pods_that_run_drain_what_is_left() {
    // The 15 s rate still shows the burst that just ended (150 msg/s), but
    // no message has arrived for 4 s: one pod drains 3000 messages in 30 s,
    // and 9000 in 90 s, sooner than new pods would consume and drain them.
    let p = rate_aware(100.0);
    let one = running(1);
    let stopped = |lag: f64| Observation {
        quiet_for_s: Some(4.0),
        ..obs(lag, 150.0, 8)
    };
    for lag in [3000.0, 9000.0] {
        let d = decide(&p, &one, &stopped(lag), 1000.0).0;
        assert_eq!((d.replicas, d.action), (1, Action::Steady), "{}", d.reason);
        assert!(
            d.reason.to_string().contains("no message arriving"),
            "{}",
            d.reason
        );
    }
}

#[test]
fn a_scale_up_during_a_burst_is_sized_for_the_burst_going_on() {
    // 64 partitions, no pod running, 1000 msg/s, 7,936 messages waiting 4 s
    // into a burst. Sized for the burst to end (in 90 s, like the last
    // one), it would need a second change when it lasts longer: it is
    // sized for the rate going on and for its own pause, 32 pods (2
    // partitions each), whatever the last burst lasted.
    let p = rate_aware(100.0);
    let none = running(0);
    for last in [Some(94.0), Some(24.0), None, Some(200.0)] {
        let o = Observation {
            busy_for_s: Some(4.0),
            last_burst_s: last,
            ..obs(7_936.0, 1000.0, 64)
        };
        let d = decide(&p, &none, &o, 1000.0).0;
        assert_eq!(
            (d.replicas, d.action),
            (32, Action::ScaleUp),
            "{last:?}: {}",
            d.reason
        );
    }
}
