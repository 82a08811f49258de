//! How long the group pauses, timed from the samples: a rebalance from a
//! member-count change until every partition that was behind commits again,
//! a start-up from the workload's spec rising until the members join.

use crate::LearnedPause;
use crate::rebalance::Rebalance;
use crate::sample::Sample;

/// Longest a pause is timed: a partition still not committing, or a pod
/// still not in the group, after this long is not waiting for a rebalance
/// or a start-up (it is gone or stuck), and the observation is dropped.
const PAUSE_WATCH_S: f64 = 600.0;

/// Partitions that must have had messages to process after a
/// member-count change for their pauses to tell the assignor: with fewer,
/// one partition's timing would decide it.
const MIN_BUSY_FOR_KIND: u32 = 4;

/// A scale-up being timed: from the rise of the workload's spec until the
/// group has as many members.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct StartupWatch {
    /// Midpoint of the sample interval in which the spec rose.
    since: f64,
    /// The replicas it rose to.
    want: u32,
}

/// Times start-ups (`(watch, learned)` as of the sample `before`, `sample`
/// the next): from the workload's spec rising above the members to the
/// members reaching it. Needs both the spec (`scaleTarget`) and member
/// counts.
pub(super) fn time_startup(
    before: &Sample,
    (mut watch, mut learned): (Option<StartupWatch>, Option<LearnedPause>),
    sample: &Sample,
) -> (Option<StartupWatch>, Option<LearnedPause>) {
    let mid = (before.t + sample.t) / 2.0;
    let members = sample.offsets.members;
    if let Some(w) = watch {
        if members.is_some_and(|m| m >= w.want) {
            learned = Some(LearnedPause::with(learned, mid - w.since));
            watch = None;
        } else if members.is_none()
            || sample.target_replicas.is_none_or(|t| t < w.want)
            || sample.t - w.since > PAUSE_WATCH_S
        {
            // Scaled back before the pods joined, or no longer seen.
            watch = None;
        }
    }
    if let (Some(was), Some(now), Some(m)) =
        (before.target_replicas, sample.target_replicas, members)
        && now > was
        && now > m
    {
        watch = Some(StartupWatch {
            since: mid,
            want: now,
        });
    }
    (watch, learned)
}

/// A rebalance being timed: from the change of the group's member count
/// until every partition that was behind then has committed again.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RebalanceWatch {
    /// Midpoint of the sample interval in which the count changed.
    since: f64,
    /// Per partition (in the sample's order), the committed offset at the
    /// change while it has not committed since; None when not behind then.
    waiting: Vec<Option<i64>>,
    /// The longest a partition went without committing so far.
    longest: f64,
    /// The members before and after the change.
    from: u32,
    to: u32,
    /// Per partition, its committed offset at the change, until the next
    /// sample shows which partitions paused; empty when the change came
    /// while an earlier rebalance's partitions were still paused (which
    /// partitions pause then says nothing of this change).
    at_change: Vec<Option<i64>>,
    /// Partitions that had messages to process by the next sample.
    busy: u32,
    /// Of those, the ones that committed nothing: they paused (all of
    /// them under eager rebalancing, only the moved ones under
    /// cooperative).
    paused: u32,
}

impl RebalanceWatch {
    /// What the pauses showed of the assignor: eager when more partitions
    /// paused than halfway from the share a cooperative one moves to all
    /// of them. None when the change was from no members (nothing moved).
    fn kind(&self) -> Option<Rebalance> {
        if self.from == 0 || self.busy < MIN_BUSY_FOR_KIND {
            return None;
        }
        let cooperative = Rebalance::Cooperative.paused_share(self.from, self.to);
        let paused = f64::from(self.paused) / f64::from(self.busy);
        Some(if paused > (1.0 + cooperative) / 2.0 {
            Rebalance::Eager
        } else {
            Rebalance::Cooperative
        })
    }
}

/// Rebalances timed so far: how long they paused, and the assignor the
/// latest one showed.
pub(super) type Timed = (Option<LearnedPause>, Option<Rebalance>);

/// Times rebalances (`(watch, timed)` as of the sample `before`, `sample`
/// the next).
pub(super) fn time_rebalance(
    before: &Sample,
    (mut watch, (mut learned, mut kind)): (Option<RebalanceWatch>, Timed),
    sample: &Sample,
) -> (Option<RebalanceWatch>, Timed) {
    let mid = (before.t + sample.t) / 2.0;
    if let Some(w) = watch.as_mut() {
        for (p, at_change) in sample.offsets.partitions.iter().zip(&w.at_change) {
            if let Some(c) = *at_change
                && p.high_watermark > c
            {
                w.busy += 1;
                w.paused += u32::from(p.committed.is_none_or(|now| now <= c));
            }
        }
        w.at_change = Vec::new();
        for (p, slot) in sample.offsets.partitions.iter().zip(w.waiting.iter_mut()) {
            if let Some(at_change) = *slot
                && p.committed.is_some_and(|c| c > at_change)
            {
                w.longest = w.longest.max(mid - w.since);
                *slot = None;
            }
        }
        if w.waiting.iter().all(Option::is_none) {
            learned = Some(LearnedPause::with(learned, w.longest));
            kind = w.kind().or(kind);
            watch = None;
        } else if sample.t - w.since > PAUSE_WATCH_S {
            watch = None;
        }
    }
    if let (Some(was), Some(now)) = (before.offsets.members, sample.offsets.members)
        && was != now
    {
        let overlapping = watch.is_some();
        let waiting: Vec<Option<i64>> = sample
            .offsets
            .partitions
            .iter()
            .map(|p| p.committed.filter(|&c| p.high_watermark > c))
            .collect();
        // A change to no members leaves nothing to commit: nothing to time.
        watch = (now > 0 && waiting.iter().any(Option::is_some)).then_some(RebalanceWatch {
            since: mid,
            waiting,
            longest: 0.0,
            from: was,
            to: now,
            at_change: if overlapping {
                Vec::new()
            } else {
                sample
                    .offsets
                    .partitions
                    .iter()
                    .map(|p| p.committed)
                    .collect()
            },
            busy: 0,
            paused: 0,
        });
    }
    (watch, (learned, kind))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::shapes;
    use super::super::tests::produced_at;
    use crate::rebalance::Rebalance;
    use crate::sample::{OffsetSnapshot, PartitionOffsets};
    use crate::sample::{PrometheusReading, Sample};

    #[test]
    fn a_rebalance_is_timed_from_the_count_change_to_the_last_paused_partition_committing() {
        // Two partitions at 10 msg/s each, committed one interval behind.
        // The group grows from 2 to 3 members at t = 100 s; partition 1
        // then commits nothing for 30 s (it moved), partition 0 goes on.
        // At 300 s the group shrinks to 2 and partition 1 pauses 50 s.
        let paused = |t: f64| (100.0..130.0).contains(&t) || (300.0..350.0).contains(&t);
        let mut committed = [0_i64; 2];
        let samples: Vec<Arc<Sample>> = (0..250)
            .map(|k| {
                let t = f64::from(k * 2);
                let high = (t * 10.0) as i64;
                committed[0] = (high - 20).max(0);
                if !paused(t) {
                    committed[1] = (high - 20).max(0);
                }
                let members = if (100.0..300.0).contains(&t) { 3 } else { 2 };
                Arc::new(Sample {
                    t,
                    offsets: OffsetSnapshot {
                        partitions: (0..2)
                            .map(|p| PartitionOffsets {
                                topic: Arc::from("t"),
                                partition: p,
                                high_watermark: high,
                                committed: Some(committed[p as usize]),
                            })
                            .collect(),
                        members: Some(members),
                    },
                    prometheus: PrometheusReading::NotConfigured,
                    target_replicas: None,
                })
            })
            .collect();
        let shapes = shapes(&samples);
        let at = |t: f64| shapes[(t / 2.0) as usize].carried.rebalance;
        assert_eq!(at(120.0), None, "still paused");
        let first = at(200.0).expect("the first pause");
        assert_eq!(first.observations, 1);
        assert!((first.seconds - 31.0).abs() <= 1.0, "{first:?}");
        // The second pause weighs half beside the first.
        let both = at(400.0).expect("two pauses");
        assert_eq!(both.observations, 2);
        assert!((both.seconds - 41.0).abs() <= 1.0, "{both:?}");
        // Without member counts nothing is timed.
        let unreported: Vec<Arc<Sample>> = samples
            .iter()
            .map(|s| {
                let mut s = Sample::clone(s);
                s.offsets.members = None;
                Arc::new(s)
            })
            .collect();
        assert_eq!(
            crate::traffic::shapes(&unreported)
                .pop()
                .unwrap()
                .carried
                .rebalance,
            None
        );
    }

    /// 8 partitions at 10 msg/s each, committed every interval; the group
    /// grows from 2 to 4 members at t = 100 s and `paused` partitions stop
    /// committing for 20 s.
    fn grown_with(paused: usize) -> Vec<Arc<Sample>> {
        (0..100)
            .map(|k| {
                let t = f64::from(k * 2);
                let high = (t * 10.0) as i64;
                let stalled = (100.0..120.0).contains(&t);
                Arc::new(Sample {
                    t,
                    offsets: OffsetSnapshot {
                        partitions: (0..8)
                            .map(|p| PartitionOffsets {
                                topic: Arc::from("t"),
                                partition: p,
                                high_watermark: high,
                                committed: Some(if stalled && (p as usize) < paused {
                                    990
                                } else {
                                    high - 10
                                }),
                            })
                            .collect(),
                        members: Some(if t < 100.0 { 2 } else { 4 }),
                    },
                    prometheus: PrometheusReading::NotConfigured,
                    target_replicas: None,
                })
            })
            .collect()
    }

    #[test]
    fn which_partitions_pause_at_a_member_change_tells_the_assignor() {
        let kind = |paused| {
            shapes(&grown_with(paused))
                .pop()
                .unwrap()
                .carried
                .rebalance_kind
        };
        // 2 -> 4 members: cooperative moves half the partitions.
        assert_eq!(kind(8), Some(Rebalance::Eager), "every partition paused");
        assert_eq!(
            kind(4),
            Some(Rebalance::Cooperative),
            "the moved half paused"
        );
        assert_eq!(kind(7), Some(Rebalance::Eager), "more than halfway to all");
        assert_eq!(kind(5), Some(Rebalance::Cooperative));
    }

    #[test]
    fn a_start_up_is_timed_from_the_spec_rising_to_the_members_joining() {
        // The spec goes 2 -> 6 at t = 100 s and its pods join at 190 s;
        // 6 -> 10 at 300 s, joining at 330 s; 10 -> 14 at 500 s, scaled
        // back to 10 at 520 s before any joined (not a start-up).
        let spec_and_members = |t: f64| match t {
            t if t < 100.0 => (2, 2),
            t if t < 190.0 => (6, 2),
            t if t < 300.0 => (6, 6),
            t if t < 330.0 => (10, 6),
            t if (500.0..520.0).contains(&t) => (14, 10),
            _ => (10, 10),
        };
        let samples: Vec<Arc<Sample>> = produced_at(700, |_| 10.0)
            .into_iter()
            .map(|s| {
                let (spec, members) = spec_and_members(s.t);
                let mut s = Sample::clone(&s);
                s.offsets.members = Some(members);
                s.target_replicas = Some(spec);
                Arc::new(s)
            })
            .collect();
        let shapes = shapes(&samples);
        let at = |t: f64| shapes[(t / 2.0) as usize].carried.startup;
        assert_eq!(at(150.0), None, "still starting");
        let first = at(200.0).expect("the first start-up");
        assert_eq!(first.observations, 1);
        assert!((first.seconds - 90.0).abs() <= 2.0, "{first:?}");
        let both = at(400.0).expect("two start-ups");
        assert_eq!(both.observations, 2);
        assert!((both.seconds - 60.0).abs() <= 2.0, "{both:?}");
        assert_eq!(at(690.0), Some(both), "a scale-up taken back is not timed");
        // Without the spec (no scaleTarget) nothing is timed.
        let unreported: Vec<Arc<Sample>> = samples
            .iter()
            .map(|s| {
                let mut s = Sample::clone(s);
                s.target_replicas = None;
                Arc::new(s)
            })
            .collect();
        assert_eq!(
            crate::traffic::shapes(&unreported)
                .pop()
                .unwrap()
                .carried
                .startup,
            None
        );
    }
}
