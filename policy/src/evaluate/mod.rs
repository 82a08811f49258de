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
        evaluate(
            params,
            rules,
            self.points(),
            self.shapes(),
            self.started_at().unwrap_or(f64::NEG_INFINITY),
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

    /// Whether the server gives this evaluation to KEDA: when it is
    /// answerable, or when the config says a warming-up replica answers
    /// anyway.
    pub fn given(&self, warm_up: WarmUp) -> bool {
        self.answerable() || warm_up == WarmUp::Answer
    }
}

/// Replays the policy over `points` (oldest first; `shapes` aligned with
/// them) from the start of the newest sample's epoch, from a fresh state
/// seeded with the group's observed size, and returns the evaluation of
/// the newest sample; None when there is no sample. A sample counts as
/// having a full window behind it once `started_at` lies the policy's
/// cold-start history before it.
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
    // The replay starts from the group as observed at its first sample
    // (its member count, or else what this trigger answered for it): what
    // the window cannot remember, the group's size still shows.
    let size = |sample: &Point| {
        (sample.members)
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
mod tests;
