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
    // 50 = 3000, which the pod drains in 30 s.
    let p = rate_aware(100.0);
    let one = running(1);
    let burst = |busy: f64, last: Option<f64>| Observation {
        busy_for_s: Some(busy),
        last_burst_s: last,
        ..obs(1000.0, 150.0, 8)
    };
    let d = decide(&p, &one, &burst(20.0, Some(60.0)), 1000.0).0;
    assert_eq!((d.replicas, d.action), (1, Action::BurstEndsFirst));
    let reason = d.reason.to_string();
    assert!(
        reason.contains("this burst has run 20s and the last one lasted 60s"),
        "{reason}"
    );
    // Just past the last one's length it still holds: one burst's length is
    // a rough estimate.
    let d = decide(&p, &one, &burst(70.0, Some(60.0)), 1000.0).0;
    assert_eq!(d.action, Action::BurstEndsFirst);
    // It scales up when no burst was seen before, when this one has
    // outlasted the last by half, when the last was longer than new pods take to
    // consume, or when the pod could not drain what is left in time.
    for (busy, last, lag) in [
        (20.0, None, 1000.0),
        (100.0, Some(60.0), 1000.0),
        (20.0, Some(300.0), 1000.0),
        (20.0, Some(60.0), 5000.0),
    ] {
        let o = Observation {
            lag,
            ..burst(busy, last)
        };
        let d = decide(&p, &one, &o, 1000.0).0;
        assert_eq!(d.action, Action::ScaleUp, "{busy} {last:?} {lag}");
    }
}

#[test]
fn a_burst_over_a_base_rate_is_drained_beside_the_rate_it_falls_back_to() {
    // As above, but the topic carries a base rate the burst rose from: it
    // leaves the same 3000 messages, and after it the pod drains them with
    // what the base leaves it. At 40 msg/s that is 60 msg/s, 3600 within
    // drainSeconds: it holds. At 60 msg/s, 2400: it scales up.
    let p = rate_aware(100.0);
    let one = running(1);
    let burst = |base: f64| Observation {
        busy_for_s: Some(20.0),
        last_burst_s: Some(60.0),
        burst_base_per_s: Some(base),
        ..obs(1000.0, 150.0, 8)
    };
    let d = decide(&p, &one, &burst(40.0), 1000.0).0;
    assert_eq!((d.replicas, d.action), (1, Action::BurstEndsFirst));
    let d = decide(&p, &one, &burst(60.0), 1000.0).0;
    assert_eq!(d.action, Action::ScaleUp, "{}", d.reason);
}

#[test]
fn after_a_burst_that_lasted_like_the_one_before_the_drained_group_scales_down_at_once() {
    // 16 pods after a burst, back at 40 msg/s (1 pod), the need lower for
    // 30 s. A fall to a sixteenth waits 300 s / 16 = 19 s, and at least a
    // fifth of the window (60 s) in case it is a dip. A burst that ended
    // after lasting like the one before it is no dip: once its backlog has
    // drained, the group goes to 1. Still draining, after a first burst,
    // or after one unlike the last, it waits.
    let p = rate_aware(100.0);
    let lower = State {
        lower_since: Some(970.0),
        rate_when_lower: 40.0,
        ..running(16)
    };
    let after = |lag: f64, last: f64, before: Option<f64>| {
        let o = Observation {
            last_burst_s: Some(last),
            burst_before_s: before,
            ..obs(lag, 40.0, 16)
        };
        decide(&p, &lower, &o, 1000.0).0
    };
    let d = after(0.0, 60.0, Some(55.0));
    assert_eq!(
        (d.replicas, d.action),
        (1, Action::ScaleDown),
        "{}",
        d.reason
    );
    for (lag, last, before) in [
        (3_000.0, 60.0, Some(55.0)),
        (0.0, 60.0, None),
        (0.0, 20.0, Some(55.0)),
    ] {
        let d = after(lag, last, before);
        assert_eq!(d.action, Action::Stabilizing, "{lag} {last} {before:?}");
    }
}

#[test]
fn after_the_traffic_stops_the_pods_that_run_drain_what_they_can_in_time() {
    // The 15 s rate still shows the burst that just ended (150 msg/s), but
    // no message has arrived for 4 s: one pod drains 3000 messages in 30 s,
    // sooner than new pods would consume. 9000 would take it 90 s.
    let p = rate_aware(100.0);
    let one = running(1);
    let stopped = |lag: f64| Observation {
        quiet_for_s: Some(4.0),
        ..obs(lag, 150.0, 8)
    };
    let d = decide(&p, &one, &stopped(3000.0), 1000.0).0;
    assert_eq!((d.replicas, d.action), (1, Action::TrafficStopped));
    assert!(
        d.reason
            .to_string()
            .contains("no message has arrived for 4s"),
        "{}",
        d.reason
    );
    let d = decide(&p, &one, &stopped(9000.0), 1000.0).0;
    assert_eq!(d.action, Action::ScaleUp);
}

#[test]
fn a_burst_that_ends_before_new_pods_consume_is_not_sized_for_their_pause() {
    // 64 partitions, no pod running, 1000 msg/s, 7,936 messages waiting
    // 4 s into a burst. The rate needs 13 pods (5 partitions each). Sized
    // for a pause of S + R = 120 s of the rate too, it takes 32. A burst
    // that lasted 94 s last time should end in 90 s, before pods started
    // now consume: it leaves 97,936 messages, 1,632 msg/s for
    // drainSeconds: 22 pods (3 partitions each). One that lasted 24 s
    // leaves 27,936: the rate's 13 it is.
    let p = rate_aware(100.0);
    let none = running(0);
    let burst = |last: Option<f64>| {
        let o = Observation {
            busy_for_s: Some(4.0),
            last_burst_s: last,
            ..obs(7_936.0, 1000.0, 64)
        };
        decide(&p, &none, &o, 1000.0).0
    };
    let long = burst(Some(94.0));
    assert_eq!((long.replicas, long.action), (22, Action::ScaleUp));
    let reason = long.reason.to_string();
    assert!(
        reason.contains("should end in 90s, before new pods consume"),
        "{reason}"
    );
    assert_eq!(burst(Some(24.0)).replicas, 13);
    // No burst seen before, or one that lasts past when new pods consume:
    // sized for the rate and the pause.
    for last in [None, Some(200.0)] {
        let d = burst(last);
        assert_eq!(d.replicas, 32, "{last:?}: {}", d.reason);
    }
}
