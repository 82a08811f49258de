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

use serde::Serialize;

use crate::{Action, Decision, Observation, Params, PolicySettings, State, adopt, decide};
mod answers;

pub use answers::Answers;
use answers::Resume;

pub use crate::window::SampleWindow;

use crate::point::Point;
use crate::signals::{LagRules, SHORT_RATE_WINDOW_S, observe};
use crate::traffic::Shape;

/// See `sampling.warmUp`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum WarmUp {
    #[default]
    Unavailable,
    Answer,
}

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

impl SampleWindow {
    /// The evaluation of the newest sample; None while the window is empty.
    pub fn evaluate(
        &self,
        params: &Params,
        rules: &LagRules,
        answers: &Answers,
    ) -> Option<Evaluation> {
        self.read(|points, shapes| {
            evaluate(
                params,
                rules,
                points,
                shapes,
                self.started_at().unwrap_or(f64::NEG_INFINITY),
                answers,
            )
        })
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

    /// Whether the server gives this evaluation to KEDA: when it is
    /// answerable, or when the config says a warming-up replica answers
    /// anyway.
    pub fn given(&self, warm_up: WarmUp) -> bool {
        self.answerable() || warm_up == WarmUp::Answer
    }
}

/// Replays the policy over `points` (oldest first; `shapes` aligned with
/// them) from the start of the newest sample's epoch, from a fresh state
/// seeded with the group's observed size (or from where the trigger's last
/// replay from that start stood, which is the same), and returns the
/// evaluation of the newest sample; None when there is no sample. A
/// sample counts as having a full window behind it once `started_at` lies
/// the policy's cold-start history before it.
pub fn evaluate(
    params: &Params,
    rules: &LagRules,
    samples: &[Point],
    shapes: &[Shape],
    started_at: f64,
    answers: &Answers,
) -> Option<Evaluation> {
    let history = params.settings.cold_start_seconds();
    let epoch = params.settings.history_needed_seconds().max(1.0);
    let start = ((samples.last()?.t - 2.0 * epoch) / epoch).floor() * epoch;
    let from = samples.iter().position(|s| s.t >= start).unwrap_or(0);
    let replay = Replay {
        params,
        rules,
        samples,
        shapes,
        started_at,
        answers,
    };
    // The replay goes on from the count that runs, not from what it would
    // have decided: where, in its warm-up history, the group (or the
    // answer it was given) is seen to change in a way this replay did not
    // ask for, and wherever it stops short of this replay's own change
    // once that change's pause is over, it goes on from there. Otherwise
    // two counts that are both kept (the smaller would cost its rebalance)
    // would each be the answer of every other epoch, and the group would
    // flip between them.
    let warm_up_end = start + epoch;
    let mut last = None;
    // Every observation looks back over the whole window, not just the
    // replay: a sample's rates are the same whichever epoch replays it, so
    // a replay that starts later does not see a truncated rate window. The
    // window's oldest sample only anchors the rates of the next: decided
    // on alone it would have no rate, and the replay would begin with a
    // scale-up from nothing that no group ever saw.
    let first = from.max(usize::from(samples.len() > 1));
    // Where the last replay from the same start stood at a sample still in
    // the window, the samples before it are decided as they were.
    let resumed = answers.resume(started_at, start).and_then(|r| {
        let k = samples.binary_search_by(|s| s.t.total_cmp(&r.at)).ok()?;
        (k >= first).then_some((k, r))
    });
    let (first, mut state, mut size_before) = match resumed {
        Some((k, r)) => (k, r.state, r.size_before),
        None => (
            first,
            replay.seeded(from, start),
            replay.size(&samples[from]),
        ),
    };
    for i in first..samples.len() {
        let sample = &samples[i];
        if i + 1 == samples.len() {
            answers.keep_resume(Resume {
                started_at,
                start,
                at: sample.t,
                state: state.clone(),
                size_before,
            });
        }
        let window_full = sample.t - started_at >= history;
        let observation = observe(rules, samples, shapes, i, window_full);
        let (decision, mut next) = decide(params, &state, &observation, sample.t);
        let size_now = replay.size(sample);
        if let (Some(m), Some(before)) = (size_now, size_before) {
            if sample.t < warm_up_end && !moving_toward(before, m, next.replicas.unwrap_or(m)) {
                next = adopt(params, &next, &observation, sample.t, m);
            } else if stalled(&next, sample.t, m) {
                // The group stopped short of this replay's change, and its
                // start-up and rebalance are over: it follows an answer
                // this replay did not give. Go on from the count that runs.
                next.replicas = Some(m);
                next.changed_at = None;
            }
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

/// What a replay reads: the window's points and shapes (aligned, oldest
/// first), when this process began sampling, and what the trigger answered.
struct Replay<'a> {
    params: &'a Params,
    rules: &'a LagRules,
    samples: &'a [Point],
    shapes: &'a [Shape],
    started_at: f64,
    answers: &'a Answers,
}

impl Replay<'_> {
    /// The group's size at `sample`: its member count, or the workload's
    /// scale, or else what this trigger answered for it. What the window
    /// cannot remember, the group's size still shows.
    fn size(&self, sample: &Point) -> Option<u32> {
        (sample.members)
            .or(sample.target_replicas)
            .or_else(|| self.answers.at(sample.t))
    }

    /// The state a replay from `samples[from]` (its epoch starting at
    /// `start`) begins in: the group as observed there, and a change of
    /// its size shortly before the start, whose rebalance backlog is still
    /// draining: the replay expects it, as the replay that made the change
    /// did, instead of taking it for new demand.
    fn seeded(&self, from: usize, start: f64) -> State {
        let (samples, params) = (self.samples, self.params);
        let state = State {
            replicas: self.size(&samples[from]),
            ..State::default()
        };
        let recent = start - (params.settings.startup_seconds + params.settings.rebalance_seconds);
        let Some(j) = (1..from)
            .rev()
            .take_while(|&j| samples[j].t >= recent)
            .find(|&j| self.size(&samples[j]) != self.size(&samples[j - 1]))
        else {
            return state;
        };
        let (Some(before), Some(after)) = (self.size(&samples[j - 1]), self.size(&samples[j]))
        else {
            return state;
        };
        let history = params.settings.cold_start_seconds();
        let window_full = samples[j].t - self.started_at >= history;
        let seen = observe(self.rules, samples, self.shapes, j, window_full);
        let changed = State {
            replicas: Some(before),
            ..State::default()
        };
        State {
            replicas: state.replicas,
            ..adopt(params, &changed, &seen, samples[j].t, after)
        }
    }
}

/// Whether the group, at `size`, still differs from the replay's own last
/// change (in `state`) once that change's pause is over at `t`.
fn stalled(state: &State, t: f64, size: u32) -> bool {
    state.changed_at.is_some() && t >= state.pause_until && state.replicas != Some(size)
}

/// Whether a group going from `before` to `now` members moves toward (or
/// reaches) `answer`: the replay's own change being carried out.
fn moving_toward(before: u32, now: u32, answer: u32) -> bool {
    now == before || (before < now && now <= answer) || (before > now && now >= answer)
}

#[cfg(test)]
mod tests;
