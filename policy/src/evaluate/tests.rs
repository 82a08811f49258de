//! The replay: windows, restarts, and where a replay starts.

use std::sync::Arc;

use super::*;
use crate::sample::PrometheusReading;
use crate::sample::{OffsetSnapshot, PartitionOffsets, Sample};

/// A sample of one partition: its high watermark `produced`, the group's
/// `committed` offset, and the group's size as the broker (`members`) and
/// the workload's scale (`target_replicas`) show it.
fn one_partition(
    t: f64,
    produced: i64,
    committed: i64,
    members: Option<u32>,
    target_replicas: Option<u32>,
) -> Arc<Sample> {
    Arc::new(Sample {
        t,
        offsets: OffsetSnapshot {
            partitions: vec![PartitionOffsets {
                topic: Arc::from("t"),
                partition: 0,
                high_watermark: produced,
                committed: Some(committed),
            }],
            members,
        },
        prometheus: PrometheusReading::NotConfigured,
        target_replicas,
    })
}

/// 10 msg/s, kept up with.
fn sample(t: f64) -> Arc<Sample> {
    let offset = (t * 10.0) as i64;
    one_partition(t, offset, offset, None, None)
}

#[test]
fn the_window_keeps_what_the_policy_looks_back_on_and_a_restart_empties_it() {
    let settings = PolicySettings::default();
    let keep = window_seconds_for(&settings, 5.0);
    assert_eq!(
        keep, 925.0,
        "3 x the 300 s stabilization or idle window + the 15 s rate window + 2 intervals"
    );
    let mut w = SampleWindow::new(keep);
    for i in 0..300 {
        w.push(sample(f64::from(i) * 5.0));
    }
    let oldest = w.points()[0].t;
    assert_eq!((oldest, w.newest().unwrap().t), (570.0, 1495.0));
    assert_eq!(w.started_at(), Some(0.0));
    w.clear();
    assert!(w.is_empty() && w.newest().is_none() && w.started_at().is_none());
    w.push(sample(500.0));
    assert_eq!(w.started_at(), Some(500.0));
}

/// Short windows (start-up 1 s, rebalance 1 s, wait objective 4 s: a 6 s
/// horizon; idle 4 s), 100 msg/s per pod, no partition cap.
fn short_windows() -> (Params, LagRules) {
    let settings = PolicySettings {
        pod_capacity: Some(100.0),
        idle_seconds: 4.0,
        drain_seconds: 4.0,
        startup_seconds: 1.0,
        rebalance_seconds: 1.0,
        ..PolicySettings::default()
    };
    let params = Params {
        settings,
        lag_threshold: 500.0,
        activation_lag_threshold: 0.0,
        cap: crate::PartitionCap::None,
        rate_aware: true,
    };
    let rules = LagRules {
        offset_reset: crate::signals::OffsetReset::Latest,
        scale_to_zero_on_invalid_offset: false,
        exclude_persistent_lag: false,
    };
    (params, rules)
}

/// One partition: 400 msg/s for 60 s, then nothing; the group commits
/// 100 msg/s until it has caught up, so the lag falls from t = 60 s.
fn burst_then_draining(t: u32, members: Option<u32>) -> Arc<Sample> {
    burst_seen(t, members, None)
}

/// [`burst_then_draining`], its group's size seen as `members` and as
/// its workload's `target_replicas`.
fn burst_seen(t: u32, members: Option<u32>, target_replicas: Option<u32>) -> Arc<Sample> {
    let produced = 400 * i64::from(t.min(60));
    let committed = (100 * i64::from(t)).min(produced);
    one_partition(f64::from(t), produced, committed, members, target_replicas)
}

/// How a scaler replica sees the group's size.
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// The broker reports its members.
    Members,
    /// The trigger names its workload, whose scale is read.
    Workload,
    Nothing,
}

/// Two replicas on the same samples; the second restarts at t = 80 s
/// while the lag falls. The group follows the first replica's answers
/// a sample later, seen as `seen` says.
/// Returns, per second after the restart, (first's answer, second's
/// answer or None when Unavailable).
fn restart_while_the_lag_falls(seen_as: Seen) -> Vec<(u32, Option<u32>)> {
    let (params, rules) = short_windows();
    let keep = window_seconds_for(&params.settings, 1.0);
    let (mut running, mut restarted) = (SampleWindow::new(keep), SampleWindow::new(keep));
    let (mut running_answers, mut restarted_answers) = (Answers::default(), Answers::default());
    let mut group = None;
    let mut seen = Vec::new();
    for t in 0..240 {
        let sample = match seen_as {
            Seen::Members => burst_seen(t, group, None),
            Seen::Workload => burst_seen(t, None, group),
            Seen::Nothing => burst_seen(t, None, None),
        };
        running.push(sample.clone());
        let a = running.evaluate(&params, &rules, &running_answers).unwrap();
        running_answers.record(a.sample_time, a.decision.replicas, a.answerable(), keep);
        group = Some(a.decision.replicas);
        if t < 80 {
            continue;
        }
        restarted.push(sample);
        let b = restarted
            .evaluate(&params, &rules, &restarted_answers)
            .unwrap();
        restarted_answers.record(b.sample_time, b.decision.replicas, b.answerable(), keep);
        assert!(a.answerable(), "the running replica answers at {t}");
        seen.push((
            a.decision.replicas,
            b.answerable().then_some(b.decision.replicas),
        ));
    }
    seen
}

#[test]
fn a_restarted_replica_that_sees_the_group_is_never_below_it_then_answers_as_the_other() {
    for seen_as in [Seen::Members, Seen::Workload] {
        let seen = restart_while_the_lag_falls(seen_as);
        // It never answers lower than the other; after its first history
        // and the stabilization window that follows (6 s each), the same.
        for (i, &(a, b)) in seen.iter().enumerate() {
            let b = b.unwrap_or_else(|| panic!("{seen_as:?}: the group's size answers at once"));
            if i < 12 {
                assert!(b >= a, "{seen_as:?}, {i} s after the restart: {b} vs {a}");
            } else {
                assert_eq!(b, a, "{seen_as:?}, {i} s after the restart");
            }
        }
    }
}

#[test]
fn a_restarted_replica_without_a_member_count_is_unavailable_through_its_first_history() {
    let seen = restart_while_the_lag_falls(Seen::Nothing);
    let unavailable = seen.iter().take_while(|(_, b)| b.is_none()).count();
    assert_eq!(unavailable, 6, "the policy's history (6 s)");
    assert!(seen[6..].iter().all(|(_, b)| b.is_some()));
}

#[test]
fn a_restarted_replica_that_sees_the_group_never_answers_below_it() {
    let (params, rules) = short_windows();
    let mut restarted = SampleWindow::new(window_seconds_for(&params.settings, 1.0));
    let mut held = 0;
    for t in 80..120 {
        // The group grows on the other replica's answer while this one
        // starts, its own need falling with the lag.
        let members = if t < 83 { 40 } else { 60 };
        restarted.push(burst_then_draining(t, Some(members)));
        let e = restarted
            .evaluate(&params, &rules, &Answers::default())
            .unwrap();
        assert!(e.answerable(), "the member count answers for the window");
        if e.observation.window_full {
            continue;
        }
        assert!(e.decision.replicas >= members, "t = {t}: {}", e.decision);
        if e.decision.action == Action::WarmingUp {
            held += 1;
            assert!(
                e.decision.reason.to_string().contains("the group's size"),
                "{}",
                e.decision.reason
            );
        }
    }
    assert!(
        held > 0,
        "the group grew past this replica's answer while warming up"
    );
}

#[test]
fn after_the_load_stops_the_answer_only_falls_whichever_epoch_replays_it() {
    // A step to 400 msg/s that a keeping-up group consumes, then
    // nothing; windows of a few seconds, so that epochs turn over while
    // the short rate window still holds the step. No member count.
    let (mut params, rules) = short_windows();
    params.cap = crate::PartitionCap::Partitions;
    let mut w = SampleWindow::new(window_seconds_for(&params.settings, 1.0));
    let mut offset = 0i64;
    let mut answers = Vec::new();
    for t in 0..70 {
        offset += match t {
            0..10 => 10,
            10..40 => 400,
            _ => 0,
        };
        w.push(one_partition(f64::from(t), offset, offset, None, None));
        answers.push(
            w.evaluate(&params, &rules, &Answers::default())
                .unwrap()
                .decision
                .replicas,
        );
    }
    let after = &answers[40..];
    assert!(
        after.windows(2).all(|p| p[1] <= p[0]),
        "the answer rose after the load stopped: {after:?}"
    );
    assert_eq!(*after.last().unwrap(), 0, "idle at the end: {after:?}");
}

#[test]
fn a_resumed_replay_decides_every_sample_as_the_whole_replay_does() {
    {
        for seen_as in [Seen::Members, Seen::Workload, Seen::Nothing] {
            let (params, rules) = short_windows();
            let keep = window_seconds_for(&params.settings, 1.0);
            let mut window = SampleWindow::new(keep);
            let answers = &mut Answers::default();
            let mut group = None;
            let mut resumed = 0;
            // Several epochs, the group following the answers a sample late.
            for t in 0..400 {
                window.push(match seen_as {
                    Seen::Members => burst_seen(t % 200, group, None),
                    Seen::Workload => burst_seen(t % 200, None, group),
                    Seen::Nothing => burst_seen(t % 200, None, None),
                });
                let whole = window.evaluate(&params, &rules, &answers.without_resume());
                let had = answers.resume.borrow().clone();
                let served = window.evaluate(&params, &rules, answers).unwrap();
                assert_eq!(Some(&served), whole.as_ref(), "{seen_as:?}, t = {t}");
                resumed += usize::from(had.is_some_and(|r| r.at + 1.0 == f64::from(t)));
                answers.record(
                    served.sample_time,
                    served.decision.replicas,
                    served.answerable(),
                    keep,
                );
                group = Some(served.decision.replicas);
            }
            // Between the epochs' starts (every few seconds with these
            // short windows) the replay went on from the one before.
            assert!(resumed >= 150, "{seen_as:?}: {resumed} resumed");
        }
    }
}
