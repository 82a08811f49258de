//! The one path from samples to a decision, shared by the server and the
//! simulator: a window of samples in, the policy replayed over it from a
//! fresh [`State`], the evaluation of the newest sample out. Because the
//! state is rebuilt from the window every time, a decision is a function of
//! the samples alone: two scaler replicas with the same window answer the
//! same, and a replica that restarts answers as a new one would.
//!
//! The replay starts on a grid of epochs one policy history long (settle,
//! stabilization, idle), not at the window's oldest sample: evaluations
//! within an epoch replay from the same instant, so each extends the one
//! before it, and the answer moves only when the load does. A replay that
//! began at a sliding start would forget, one sample at a time, the very
//! scale-up it is settling after, and answer differently every sample. The
//! start lies two to three histories back: the first history warms the
//! replay up from the group's observed size, so that when the start moves
//! on by an epoch the new replay has caught up with the old one's state
//! (its settle windows and the backlog its changes projected) before the
//! newest sample's own history begins. Rates look back over the whole
//! window, so they are the same whichever replay computes them. The window
//! keeps three histories and the rate window before them.
//!
//! Pure: no I/O, no clock reads.

use std::sync::Arc;

use serde::Serialize;

use crate::answers::Answers;
use crate::policy::{Action, Decision, Observation, Params, PolicySettings, State, adopt, decide};
use crate::signals::{LagRules, SHORT_RATE_WINDOW_S, Sample, observe};
use crate::traffic::Shape;

/// History a sampler keeps for policies whose longest look-back is
/// `longest_history_s`: three of them (the replay starts a warm-up history
/// and at most one epoch before the newest sample's own history), the rate
/// window before the replay's first sample, and two sample intervals, so
/// the replay's start and its first rates are always inside the window.
pub fn window_seconds(longest_history_s: f64, interval_s: f64) -> f64 {
    3.0 * longest_history_s + SHORT_RATE_WINDOW_S + 2.0 * interval_s
}

/// The window a sampler keeps for one policy (what the server keeps when
/// this is the config's only policy).
pub fn window_seconds_for(settings: &PolicySettings, interval_s: f64) -> f64 {
    window_seconds(settings.history_needed_seconds(), interval_s)
}

/// The samples of one source key, oldest first, and when this process began
/// keeping them. Samples older than `keep_seconds` before the newest drop out.
#[derive(Debug, Clone)]
pub struct SampleWindow {
    samples: Vec<Arc<Sample>>,
    /// Each sample's traffic shape, computed once as it joins.
    shapes: Vec<Shape>,
    started_at: Option<f64>,
    keep_seconds: f64,
}

impl SampleWindow {
    pub fn new(keep_seconds: f64) -> Self {
        Self {
            samples: Vec::new(),
            shapes: Vec::new(),
            started_at: None,
            keep_seconds,
        }
    }

    /// Adds the newest sample and forgets what fell out of the window.
    pub fn push(&mut self, sample: Arc<Sample>) {
        let t = sample.t;
        self.started_at.get_or_insert(t);
        let shape = Shape::next(&self.samples, &self.shapes, &sample);
        self.samples.push(sample);
        self.shapes.push(shape);
        let oldest = t - self.keep_seconds;
        let expired = self.samples.iter().take_while(|s| s.t < oldest).count();
        self.samples.drain(..expired);
        self.shapes.drain(..expired);
    }

    /// Forgets everything, as a scaler replica that has just started.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.shapes.clear();
        self.started_at = None;
    }

    pub fn samples(&self) -> &[Arc<Sample>] {
        &self.samples
    }

    /// History kept, seconds before the newest sample.
    pub fn keep_seconds(&self) -> f64 {
        self.keep_seconds
    }

    /// Time of this process's first sample of the key.
    pub fn started_at(&self) -> Option<f64> {
        self.started_at
    }

    pub fn newest(&self) -> Option<&Arc<Sample>> {
        self.samples.last()
    }

    /// The evaluation of the newest sample; None while the window is empty.
    pub fn evaluate(
        &self,
        params: &Params,
        rules: &LagRules,
        answers: &Answers,
    ) -> Option<Evaluation> {
        evaluate(
            params,
            rules,
            &self.samples,
            &self.shapes,
            self.started_at.unwrap_or(f64::NEG_INFINITY),
            answers,
        )
    }
}

/// What the policy made of the newest sample of a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// Unix seconds (simulated seconds in the simulator) of the sample decided on.
    pub sample_time: f64,
    pub observation: Observation,
    pub decision: Decision,
    pub state: State,
}

impl Evaluation {
    /// Whether the answer may go to KEDA: once this process has sampled the
    /// key for the policy's history (`window_full`), or before that when it
    /// sees the group's size, from its members or the scaled workload's
    /// spec (its answer is then at least that size). A
    /// replica that has just started and knows neither could answer lower
    /// than the group runs and another replica holds, and that would scale
    /// the group down: the server answers Unavailable, and KEDA and the
    /// HPA hold.
    pub fn answerable(&self) -> bool {
        self.observation.window_full || self.observation.group_size().is_some()
    }
}

/// Replays the policy over `samples` (oldest first; `shapes` aligned with
/// them) from the start of the newest sample's epoch, from a fresh state
/// seeded with the group's observed size, and returns the evaluation of
/// the newest sample; None when there is no sample. A sample counts as
/// having a full window behind it once `started_at` lies the policy's
/// cold-start history before it.
pub fn evaluate(
    params: &Params,
    rules: &LagRules,
    samples: &[Arc<Sample>],
    shapes: &[Shape],
    started_at: f64,
    answers: &Answers,
) -> Option<Evaluation> {
    let history = params.settings.cold_start_seconds();
    let epoch = params.settings.history_needed_seconds().max(1.0);
    let start = ((samples.last()?.t - 2.0 * epoch) / epoch).floor() * epoch;
    let from = samples.iter().position(|s| s.t >= start).unwrap_or(0);
    // The replay starts from the group as observed at its first sample
    // (its member count, or else what this trigger answered for it): what
    // the window cannot remember, the group's size still shows.
    let size = |sample: &Sample| {
        (sample.offsets.members)
            .or(sample.target_replicas)
            .or_else(|| answers.at(sample.t))
    };
    let mut state = State {
        replicas: size(&samples[from]),
        ..State::default()
    };
    // A change of the group's size shortly before the replay starts left a
    // rebalance whose backlog is still draining: the replay expects it, as
    // the replay that made the change did, instead of taking it for new
    // demand.
    let recent = start - params.settings.settle_seconds;
    if let Some(j) = (1..from)
        .rev()
        .take_while(|&j| samples[j].t >= recent)
        .find(|&j| size(&samples[j]) != size(&samples[j - 1]))
        && let (Some(before), Some(after)) = (size(&samples[j - 1]), size(&samples[j]))
    {
        let window_full = samples[j].t - started_at >= history;
        let seen = observe(rules, samples, shapes, j, window_full);
        let changed = State {
            replicas: Some(before),
            ..State::default()
        };
        state = State {
            replicas: size(&samples[from]),
            ..adopt(params, &changed, &seen, samples[j].t, after)
        };
    }
    // The warm-up history replays what the load did, not what an earlier
    // replay decided: where the group (or the answer it was given) is seen
    // to change in a way this replay did not ask for, it goes on from
    // there.
    let warm_up_end = start + epoch;
    let mut size_before = size(&samples[from]);
    let mut last = None;
    // Every observation looks back over the whole window, not just the
    // replay: a sample's rates are the same whichever epoch replays it, so
    // a replay that starts later does not see a truncated rate window. The
    // window's oldest sample only anchors the rates of the next: decided
    // on alone it would have no rate, and the replay would begin with a
    // scale-up from nothing that no group ever saw.
    let first = from.max(usize::from(samples.len() > 1));
    for i in first..samples.len() {
        let sample = &samples[i];
        let window_full = sample.t - started_at >= history;
        let observation = observe(rules, samples, shapes, i, window_full);
        let (decision, mut next) = decide(params, &state, &observation, sample.t);
        let size_now = size(sample);
        if sample.t < warm_up_end
            && let (Some(m), Some(before)) = (size_now, size_before)
            && !moving_toward(before, m, next.replicas.unwrap_or(m))
        {
            next = adopt(params, &next, &observation, sample.t, m);
        }
        size_before = size_now;
        state = next;
        last = Some((sample.t, observation, decision));
    }
    let (sample_time, observation, mut decision) = last?;
    // Through its first history a replica that sees the group holds at
    // least its size; after that its replay, seeded with the group's size
    // like every replay, only differs from a long-running one's by what
    // the windows it has seen hold, and the group's size is what it acts
    // on (held longer, the group following its own answer would never
    // shrink).
    if !observation.window_full
        && let Some(members) = observation.group_size()
        && members > decision.replicas
    {
        decision.replicas = members;
        decision.action = Action::WarmingUp;
        decision.reason.action = Action::WarmingUp;
        decision.reason.to = members;
        decision.reason.elapsed_seconds = sample_time - started_at;
        decision.reason.window = history;
    }
    Some(Evaluation {
        sample_time,
        observation,
        decision,
        state,
    })
}

/// Whether a group going from `before` to `now` members moves toward (or
/// reaches) `answer`: the replay's own change being carried out.
fn moving_toward(before: u32, now: u32, answer: u32) -> bool {
    now == before || (before < now && now <= answer) || (before > now && now >= answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::PrometheusReading;
    use crate::source::{OffsetSnapshot, PartitionOffsets};

    fn sample(t: f64) -> Arc<Sample> {
        Arc::new(Sample {
            t,
            offsets: OffsetSnapshot {
                partitions: vec![PartitionOffsets {
                    topic: Arc::from("t"),
                    partition: 0,
                    high_watermark: (t * 10.0) as i64,
                    committed: Some((t * 10.0) as i64),
                }],
                members: None,
            },
            prometheus: PrometheusReading::NotConfigured,
            target_replicas: None,
        })
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
        let oldest = w.samples()[0].t;
        assert_eq!((oldest, w.newest().unwrap().t), (570.0, 1495.0));
        assert_eq!(w.started_at(), Some(0.0));
        w.clear();
        assert!(w.samples().is_empty() && w.started_at().is_none());
        w.push(sample(500.0));
        assert_eq!(w.started_at(), Some(500.0));
    }

    /// Short windows (settle 3 s, stabilization 6 s, idle 4 s), 100 msg/s
    /// per pod, no partition cap.
    fn short_windows() -> (Params, LagRules) {
        let settings = PolicySettings {
            pod_capacity: Some(100.0),
            settle_seconds: 3.0,
            scale_down_stabilization_seconds: 6.0,
            idle_seconds: 4.0,
            drain_seconds: 6.0,
            startup_seconds: 2.0,
            rebalance_seconds: 3.0,
            ..PolicySettings::default()
        };
        let params = Params {
            settings,
            lag_threshold: 500.0,
            activation_lag_threshold: 0.0,
            cap: crate::policy::PartitionCap::None,
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
        Arc::new(Sample {
            t: f64::from(t),
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
        let (mut params, rules) = short_windows();
        // A dead band holds whichever count each replica's replay began
        // from: with one, two replicas may differ by less than the band
        // (README, known limits).
        params.settings.dead_band = 0.0;
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
            running_answers.record(&a, a.answerable(), keep);
            group = Some(a.decision.replicas);
            if t < 80 {
                continue;
            }
            restarted.push(sample);
            let b = restarted
                .evaluate(&params, &rules, &restarted_answers)
                .unwrap();
            restarted_answers.record(&b, b.answerable(), keep);
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
                let b =
                    b.unwrap_or_else(|| panic!("{seen_as:?}: the group's size answers at once"));
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
        // Afterwards each replica goes on from its own answers: while the
        // lag keeps falling they may be a step apart, and they meet when it
        // settles (README, known limits).
        for &(a, b) in &seen[6..] {
            let b = b.unwrap();
            assert!(b.abs_diff(a) <= 2, "{b} vs {a}");
        }
        let (a, b) = *seen.last().unwrap();
        assert_eq!(Some(a), b, "agree once the lag has drained");
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
        params.cap = crate::policy::PartitionCap::Partitions;
        let mut w = SampleWindow::new(window_seconds_for(&params.settings, 1.0));
        let mut offset = 0i64;
        let mut answers = Vec::new();
        for t in 0..70 {
            offset += match t {
                0..10 => 10,
                10..40 => 400,
                _ => 0,
            };
            w.push(Arc::new(Sample {
                t: f64::from(t),
                offsets: OffsetSnapshot {
                    partitions: vec![PartitionOffsets {
                        topic: Arc::from("t"),
                        partition: 0,
                        high_watermark: offset,
                        committed: Some(offset),
                    }],
                    members: None,
                },
                prometheus: PrometheusReading::NotConfigured,
                target_replicas: None,
            }));
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

    /// 400 msg/s on one partition. The group shrinks from 8 to 5 pods at
    /// t = 5 s and pauses for its 8 s rebalance; the 3,200 messages that
    /// wait then drain at the 100 msg/s 5 pods have to spare.
    fn after_a_scale_down(t: u32) -> Arc<Sample> {
        let produced = 400 * i64::from(t);
        let committed = match t {
            0..=5 => produced,
            6..=13 => 2_000,
            _ => (2_000 + 500 * i64::from(t - 13)).min(produced),
        };
        Arc::new(Sample {
            t: f64::from(t),
            offsets: OffsetSnapshot {
                partitions: vec![PartitionOffsets {
                    topic: Arc::from("t"),
                    partition: 0,
                    high_watermark: produced,
                    committed: Some(committed),
                }],
                members: Some(if t < 5 { 8 } else { 5 }),
            },
            prometheus: PrometheusReading::NotConfigured,
            target_replicas: None,
        })
    }

    #[test]
    fn a_replay_that_starts_after_a_change_expects_its_pause_backlog() {
        // Short windows (the stabilization's 6 s is the replay's epoch),
        // R = 8 s. From t = 18 s the replay
        // starts at t = 6 s, one second after the scale-down: the backlog
        // of its pause is what that change expected, not new demand (taken
        // for demand, 2,400 waiting at t = 11 s would need 800 msg/s).
        let (mut params, rules) = short_windows();
        params.settings.rebalance_seconds = 8.0;
        let mut window = SampleWindow::new(window_seconds_for(&params.settings, 1.0));
        for t in 0..24 {
            window.push(after_a_scale_down(t));
            let e = window.evaluate(&params, &rules, &Answers::default());
            let e = e.unwrap();
            if t >= 12 {
                assert_eq!(e.decision.replicas, 5, "t = {t}: {}", e.decision);
            }
        }
    }
}
