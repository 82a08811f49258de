//! The policy's answer and its explanation, kept as numbers and rendered
//! only when displayed.

use std::fmt;

use serde::Serialize;

use super::observation::{HotPartition, RateSource};
use super::plan::Plan;

/// Why the answer is what it is; `label()` names it for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Initial,
    ScaleUp,
    ScaleDown,
    Steady,
    /// A change's pause (start-up and rebalance) still runs: no scale-down
    /// before it ends, and no second scale-up while the backlog stays
    /// within what the change projected.
    Settling,
    /// A scaler that has just started holds the count until its window
    /// covers what a scale-down depends on.
    ColdStart,
    /// A smaller count would do, were a change free; its rebalance would
    /// make messages wait beyond the objective.
    PauseTooCostly,
    /// A scaler that has just started holds the group's observed size until
    /// its window covers what the answer depends on.
    WarmingUp,
    IdleKeepOne,
    Idle,
    /// Idle, and the gap before the last traffic outlasted the idle window:
    /// a pod kept warm would idle out before the next burst.
    IdleGapOutlasts,
}

impl Action {
    /// Whether the answer stays where it is although the need differs.
    pub fn is_hold(self) -> bool {
        !matches!(
            self,
            Action::Initial
                | Action::ScaleUp
                | Action::ScaleDown
                | Action::Steady
                | Action::Idle
                | Action::IdleGapOutlasts
        )
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Action::Initial => "initial",
            Action::ScaleUp => "scale-up",
            Action::ScaleDown => "scale-down",
            Action::Steady => "steady",
            Action::Settling => "settling",
            Action::ColdStart => "cold-start",
            Action::PauseTooCostly => "pause-too-costly",
            Action::WarmingUp => "warming-up",
            Action::IdleKeepOne => "idle-keep-one",
            Action::Idle => "idle",
            Action::IdleGapOutlasts => "idle-gap-outlasts",
        }
    }
}

/// More pods are needed than partitions allow: the fix is more partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLimit {
    pub pods_needed: u32,
    pub partitions: u32,
}

/// The answer for one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Desired replicas: the metric value KEDA receives.
    pub replicas: u32,
    /// The fewest pods that sustain the load, were a change free.
    pub need: u32,
    /// KEDA activation (IsActive).
    pub active: bool,
    pub action: Action,
    /// The action and the numbers behind it; displays as a sentence.
    #[serde(serialize_with = "as_text")]
    pub reason: Reason,
    pub partition_limit: Option<PartitionLimit>,
    pub hot_partition: Option<HotPartition>,
    /// Per-pod capacity used (configured or learned), msg/s.
    pub capacity_per_s: Option<f64>,
    /// Rebalance pause planned with (configured, or learned from offsets).
    pub rebalance_seconds: f64,
    /// Start-up time planned with (configured, or timed from the
    /// workload's spec to the members joining).
    pub startup_seconds: f64,
    /// The candidates a rate-sized decision priced, and the one it chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// What the count was priced on.
#[derive(Debug, Clone, PartialEq)]
pub enum Basis {
    /// KEDA's rule: a pod carries `lagThreshold` messages (lag-only
    /// triggers, and rate-aware ones until a capacity is known).
    Lag {
        lag: f64,
        lag_threshold: f64,
        /// The highest lag of the last horizon: what a smaller count must
        /// carry.
        highest_lag: f64,
        horizon_seconds: f64,
    },
    /// The rate and the backlog (see [`Plan`]).
    Plan(PlanBasis),
}

/// What the planner saw and predicted for the count it chose.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanBasis {
    pub rate_per_s: f64,
    /// Half-width of the noise band the counts are held against.
    pub band_per_s: f64,
    pub source: RateSource,
    pub climb_per_s2: Option<f64>,
    /// The burst under way should end in this many seconds.
    pub burst_ends_in: Option<f64>,
    /// No message arrives: the forecast is no traffic.
    pub quiet: bool,
    pub lag: f64,
    pub capacity_per_s: f64,
    pub objective_seconds: f64,
    /// The chosen count's predicted longest wait, and its own pause.
    pub worst_wait_s: f64,
    pub pause_s: f64,
    /// Whether the chosen count meets the objective.
    pub reachable: bool,
    pub startup_seconds: f64,
    pub rebalance_seconds: f64,
}

impl fmt::Display for PlanBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PlanBasis {
            rate_per_s,
            band_per_s,
            source,
            climb_per_s2,
            burst_ends_in,
            quiet,
            lag,
            capacity_per_s,
            objective_seconds,
            worst_wait_s,
            pause_s,
            reachable,
            startup_seconds,
            rebalance_seconds,
        } = self;
        if *quiet {
            write!(f, "no message arriving")?;
        } else {
            write!(f, "rate {rate_per_s:.1}/s")?;
            if *band_per_s >= 0.05 {
                write!(f, " ±{band_per_s:.1}")?;
            }
            write!(f, " from {}", source.label())?;
            if let Some(climb) = climb_per_s2 {
                write!(f, " climbing {climb:.2}/s per second")?;
            }
            if let Some(ends) = burst_ends_in {
                write!(
                    f,
                    ", a burst that should end in {ends:.0}s like the last one"
                )?;
            }
        }
        write!(f, ", lag {lag:.0}, {capacity_per_s:.1}/s per pod: ")?;
        let wait = if worst_wait_s.is_finite() {
            format!("{worst_wait_s:.0}s")
        } else {
            "without bound".to_owned()
        };
        if *pause_s >= 0.5 {
            write!(f, "longest wait {wait} with its {pause_s:.0}s pause, ")?;
        } else {
            write!(f, "longest wait {wait}, ")?;
        }
        if *reachable {
            write!(f, "within the {objective_seconds:.0}s objective")?;
            if *pause_s >= 0.5 {
                write!(f, " beyond it")?;
            }
        } else {
            write!(
                f,
                "the {objective_seconds:.0}s objective is out of reach (start-up {startup_seconds:.0}s, rebalance {rebalance_seconds:.0}s); the closest count"
            )?;
        }
        Ok(())
    }
}

/// Why a decision is what it is. Kept as numbers and rendered only when
/// displayed: the server replays many decisions and shows one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub action: Action,
    pub from: u32,
    pub to: u32,
    pub basis: Basis,
    pub partition_limit: Option<PartitionLimit>,
    /// Seconds into (or left of) the window the action refers to.
    pub elapsed_seconds: f64,
    /// Length of that window (a change's pause, the idle window, the warm-up).
    pub window: f64,
    /// The count a scale-down held for its pause would have gone to.
    pub paused_target: Option<u32>,
    /// How long the next message to consume has waited, as estimated from
    /// the offsets (`Observation::estimated_wait_s`).
    pub estimated_wait_s: Option<f64>,
}

fn as_text<S: serde::Serializer>(reason: &Reason, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(reason)
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::Plan(plan) => plan.fmt(f),
            Basis::Lag {
                lag,
                lag_threshold,
                highest_lag,
                horizon_seconds,
            } => {
                write!(f, "lag {lag:.0} / lagThreshold {lag_threshold}")?;
                if highest_lag.round() > lag.round() {
                    write!(
                        f,
                        "; the highest of the last {horizon_seconds:.0}s, {highest_lag:.0}, is what a smaller count must carry"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Reason {
            from,
            to,
            basis,
            window,
            elapsed_seconds,
            ..
        } = self;
        match self.action {
            Action::Initial => write!(f, "initial: {to} ({basis})")?,
            Action::ScaleUp => write!(f, "scale up {from} -> {to} in one step ({basis})")?,
            Action::ScaleDown => write!(f, "scale down {from} -> {to} ({basis})")?,
            Action::Steady => write!(f, "steady at {to} ({basis})")?,
            Action::Settling => write!(
                f,
                "hold {to}: the last change's pause (start-up and rebalance) ends in {elapsed_seconds:.0}s; no scale-down before, and no second scale-up while the backlog is within what it projected ({basis})"
            )?,
            Action::ColdStart => write!(
                f,
                "hold {to}: no scale-down before a full window of samples ({basis})"
            )?,
            Action::PauseTooCostly => write!(
                f,
                "hold {to}: {} pods would do were a change free, but their rebalance would make messages wait beyond the objective ({basis})",
                self.paused_target.unwrap_or(*to)
            )?,
            Action::WarmingUp => write!(
                f,
                "hold {to}, the group's size: this scaler started {elapsed_seconds:.0}s ago and its window does not yet cover the {window:.0}s the answer depends on ({basis})"
            )?,
            Action::IdleKeepOne => write!(
                f,
                "hold {to}: idle for {elapsed_seconds:.0}s of {window:.0}s before scaling to zero"
            )?,
            Action::Idle => write!(f, "idle for {elapsed_seconds:.0}s: scale to zero")?,
            Action::IdleGapOutlasts => write!(
                f,
                "idle: scale to zero now; the topic was idle {elapsed_seconds:.0}s before this traffic, longer than the {window:.0}s idle window, so a pod kept warm would idle out before the next burst"
            )?,
        }
        self.fmt_notes(f)
    }
}

impl Reason {
    /// What follows every reason: the partitions' limit, the wait so far.
    fn fmt_notes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(limit) = self.partition_limit {
            write!(
                f,
                "; needs {} pods but the topic has {} partitions: add partitions",
                limit.pods_needed, limit.partitions
            )?;
        }
        if let Some(wait) = self.estimated_wait_s.filter(|w| *w >= 1.0) {
            write!(f, "; the next message has waited ~{wait:.0}s")?;
        }
        Ok(())
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.replicas, self.reason)
    }
}
