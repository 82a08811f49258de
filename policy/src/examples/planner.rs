//! Examples of the planner (`strategy: planner`): the count it keeps in
//! noise, the one step it takes for a step of the load, the scale-down its
//! own pause makes too slow, and what a looser wait objective buys.

use super::*;

/// [`with_headroom`]: the planner with a known capacity.
fn planner(pod_capacity: f64, headroom: f64) -> Params {
    with_headroom(pod_capacity, headroom)
}

/// A steady observation whose rate is known to ±`error` (one standard
/// error of the estimate).
fn noisy(lag: f64, rate: f64, error: f64, partitions: u32) -> Observation {
    Observation {
        rate_uncertainty_per_s: Some(error),
        ..obs(lag, rate, partitions)
    }
}

#[test]
fn noise_within_the_band_moves_nothing() {
    // 24 partitions, 100 msg/s per pod: 12 pods of 2 partitions serve
    // 1000 msg/s with 20 % to spare. The rate wanders ±12 % around it.
    let params = planner(100.0, 0.1);
    let mut state = running(12);
    for (i, wobble) in [0.0, 0.12, -0.1, 0.08, -0.12, 0.05, 0.11, -0.07]
        .iter()
        .cycle()
        .take(120)
        .enumerate()
    {
        let now = 5.0 * i as f64;
        let (d, next) = decide(
            &params,
            &state,
            &noisy(0.0, 1000.0 * (1.0 + wobble), 30.0, 24),
            now,
        );
        assert_eq!(d.replicas, 12, "at {now}s: {}", d.reason);
        state = next;
    }
}

#[test]
fn a_step_is_met_in_one_scale_up_and_held_while_its_pause_runs() {
    // 300 -> 1800 msg/s on 24 partitions: only 24 pods serve it.
    let params = planner(100.0, 0.1);
    let (d, next) = decide(&params, &running(4), &obs(2000.0, 1800.0, 24), 0.0);
    assert_eq!(
        (d.action, d.replicas),
        (Action::ScaleUp, 24),
        "{}",
        d.reason
    );
    let plan = d
        .plan
        .as_ref()
        .expect("a planned decision carries its plan");
    assert_eq!(plan.choice().replicas, 24);
    assert!(
        plan.candidates.iter().any(|c| c.replicas == 4),
        "the current count is priced: {plan}"
    );
    // The backlog its own pause makes is what the plan expected.
    let (d, _) = decide(&params, &next, &obs(60_000.0, 1800.0, 24), 30.0);
    assert_eq!(d.replicas, 24, "{}", d.reason);
}

#[test]
fn a_scale_down_its_own_pause_makes_too_slow_holds_and_says_why() {
    // 800 msg/s on 24 pods. 12 pods (1200 msg/s) would process it, but an
    // eager 60 s pause leaves 48,000 messages that drain at 400/s: 120 s,
    // twice the objective.
    let params = planner(100.0, 0.1);
    let (d, _) = decide(&params, &running(24), &obs(0.0, 800.0, 24), 0.0);
    assert_eq!(
        (d.action, d.replicas, d.reason.paused_target),
        (Action::PauseTooCostly, 24, Some(12)),
        "{}",
        d.reason
    );
    let text = d.reason.to_string();
    assert!(
        text.contains("12 pods would do were a change free"),
        "{text}"
    );
    // Under cooperative rebalancing half the partitions pause, and their
    // backlog drains beside the others' traffic: 12 pods are taken.
    let (d, _) = decide(
        &cooperative(&params),
        &running(24),
        &obs(0.0, 800.0, 24),
        0.0,
    );
    assert_eq!(
        (d.action, d.replicas),
        (Action::ScaleDown, 12),
        "{}",
        d.reason
    );
}

#[test]
fn a_looser_objective_never_takes_more_pods() {
    // A step from 4 pods to 1500 msg/s with a backlog: the tighter the
    // objective, the more pods drain the backlog in time.
    let mut pods = Vec::new();
    for objective in [15.0, 60.0, 300.0] {
        let mut params = planner(100.0, 0.1);
        params.settings.max_replicas = 64;
        params.settings.wait_objective_seconds = Some(objective);
        let (d, _) = decide(&params, &running(4), &obs(30_000.0, 700.0, 64), 0.0);
        pods.push(d.replicas);
    }
    assert!(pods.windows(2).all(|w| w[0] >= w[1]), "{pods:?}");
    assert!(
        pods[0] > pods[2],
        "the objective changes the answer: {pods:?}"
    );
}

#[test]
fn out_of_reach_the_count_that_processes_most_is_taken() {
    // One partition carries 40 % of 600 msg/s: 240 msg/s, beyond any pod.
    // No count drains; the fewest pods that process the most are taken.
    let params = planner(100.0, 0.1);
    let o = Observation {
        hottest_share: Some(0.4),
        ..obs(50_000.0, 600.0, 16)
    };
    let (d, _) = decide(&params, &running(2), &o, 0.0);
    let plan = d.plan.as_ref().unwrap();
    assert!(!plan.reachable, "{plan}");
    let most = plan
        .candidates
        .iter()
        .map(|c| c.capacity_per_s)
        .fold(0.0, f64::max);
    assert!(plan.choice().capacity_per_s >= 0.99 * most, "{plan}");
    assert!(d.replicas > 2, "{}", d.reason);
    assert!(
        d.reason.to_string().contains("out of reach"),
        "{}",
        d.reason
    );
}

#[test]
fn a_second_scale_up_before_the_first_ones_pods_run_counts_from_the_pods_that_run() {
    // 0 -> n for what looked like 300 msg/s; 2 s later the rate reads
    // 2400 msg/s and the plan asks for more. None of the n runs yet: the
    // change is counted from 0, and what runs until the new pods are ready
    // is nothing.
    let params = planner(100.0, 0.1);
    let (d, first) = decide(&params, &running(0), &obs(300.0, 300.0, 48), 0.0);
    assert_eq!(d.action, Action::ScaleUp, "{}", d.reason);
    let (d, second) = decide(&params, &first, &obs(6000.0, 2400.0, 48), 2.0);
    assert_eq!(d.action, Action::ScaleUp, "{}", d.reason);
    assert!(d.replicas > first.replicas.unwrap(), "{}", d.reason);
    assert_eq!(second.changed_from, 0, "{second:?}");
    assert_eq!(second.ready_at, 2.0 + params.settings.startup_seconds);
}

/// A burst under way for `busy` seconds, the last one having lasted
/// `last`, falling back to `base` msg/s.
fn in_burst(lag: f64, rate: f64, busy: f64, last: f64, base: f64) -> Observation {
    Observation {
        busy_for_s: Some(busy),
        last_burst_s: Some(last),
        burst_before_s: Some(last),
        burst_base_per_s: Some(base),
        ..obs(lag, rate, 24)
    }
}

#[test]
fn a_scale_up_is_sized_for_a_burst_that_goes_on_but_a_burst_ending_first_makes_none() {
    let params = planner(100.0, 0.1);
    // 1000 msg/s, 10 s into a burst whose last one lasted 40 s: expected
    // to end 30 s from now, long before new pods consume, but it may not.
    // The pods ordered are those that serve it if it goes on.
    let (d, _) = decide(
        &params,
        &running(2),
        &in_burst(10_000.0, 1_000.0, 10.0, 40.0, 0.0),
        0.0,
    );
    assert_eq!(d.action, Action::ScaleUp, "{}", d.reason);
    assert!(d.replicas >= 12, "{}", d.reason);
    // 2000 msg/s over 16 pods' 1600 msg/s, ending in 5 s like the last
    // burst: the pods that run drain what it leaves within seconds, long
    // before a new pod would start. No pod is added.
    let (d, _) = decide(
        &params,
        &running(16),
        &in_burst(3_000.0, 2_000.0, 55.0, 60.0, 0.0),
        0.0,
    );
    assert!(d.replicas <= 16, "{}", d.reason);
}

#[test]
fn a_burst_that_ended_like_the_one_before_it_is_no_peak_to_hold() {
    // 12 pods served a 1000 msg/s burst that ended 10 s ago, as long as
    // the one before it; 20 msg/s remain and nothing waits. A dip within
    // a load would hold the peak for the horizon; a burst that ended as
    // expected lets the pods go at once.
    let params = planner(100.0, 0.1);
    let state = after_peak(12, 1_000.0, 10.0);
    let ended = Observation {
        last_burst_s: Some(60.0),
        burst_before_s: Some(60.0),
        ..obs(0.0, 20.0, 24)
    };
    let (d, _) = decide(&params, &state, &ended, 0.0);
    assert_eq!(d.action, Action::ScaleDown, "{}", d.reason);
    // The same fall with no burst seen before it holds the peak.
    let (d, _) = decide(&params, &state, &obs(0.0, 20.0, 24), 0.0);
    assert_eq!(d.replicas, 12, "{}", d.reason);
}

#[test]
fn a_scale_down_does_not_make_messages_that_already_waited_wait_its_pause_too() {
    // 24 pods, 300 msg/s, 3,000 waiting under cooperative rebalancing:
    // fewer pods would drain it beside the rate. With the oldest message 2 s
    // old (batches in flight) the pods go; with it 100 s old (the end of a
    // drain), a rebalance would stop it again, and they stay.
    let params = cooperative(&planner(100.0, 0.1));
    let waited = |age: f64| Observation {
        estimated_wait_s: Some(age),
        ..obs(3_000.0, 300.0, 24)
    };
    let (d, _) = decide(&params, &running(24), &waited(2.0), 0.0);
    assert_eq!(d.action, Action::ScaleDown, "{}", d.reason);
    let (d, _) = decide(&params, &running(24), &waited(100.0), 0.0);
    assert_eq!(d.replicas, 24, "{}", d.reason);
}

#[test]
fn a_fall_that_outlasts_the_burst_before_it_is_no_dip() {
    // 24 pods served a 90 s spike of 2000 msg/s; 100 msg/s remain and
    // nothing waits. 100 s after it, the fall has lasted longer than the
    // spike did: the pods go. A fall after a load that was no burst is
    // held for the plan's horizon.
    let params = planner(100.0, 0.1);
    let state = after_peak(24, 2_000.0, 100.0);
    let after_spike = Observation {
        last_burst_s: Some(90.0),
        ..obs(0.0, 100.0, 24)
    };
    let (d, _) = decide(&params, &state, &after_spike, 0.0);
    assert_eq!(d.action, Action::ScaleDown, "{}", d.reason);
    let (d, _) = decide(&params, &state, &obs(0.0, 100.0, 24), 0.0);
    assert_eq!(d.replicas, 24, "{}", d.reason);
}

#[test]
fn a_count_above_a_lowered_max_is_brought_down_to_it() {
    // 12 pods serve 1000 msg/s; the policy's max is now 6.
    let mut params = planner(100.0, 0.1);
    params.settings.max_replicas = 6;
    let (d, _) = decide(&params, &running(12), &obs(0.0, 1_000.0, 24), 0.0);
    assert_eq!(
        (d.action, d.replicas),
        (Action::ScaleDown, 6),
        "{}",
        d.reason
    );
}
