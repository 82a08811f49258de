//! lagrate's scaling policy: samples of a consumer group in, desired
//! replicas out, with the reason.
//!
//! Pure: no I/O, no clock reads, no randomness. `now` is an argument, and
//! everything the policy remembers is in [`State`], returned with each
//! [`Decision`]. The server and the simulator reach it through one door,
//! [`evaluate`], which replays it over a window of [`sample`]s through
//! [`signals`] (KEDA's lag rules, rates from offset deltas) and [`traffic`]
//! (the shape of the load and the group's pauses).
//!
//! Two ways of sizing, chosen by the trigger:
//! * lag-only (KEDA's Kafka keys only): `ceil(lag / lagThreshold)`, capped at
//!   the partitions, exactly what KEDA's Kafka scaler makes the HPA do;
//! * rate-aware (a `policy` or `podCapacity`): the smallest partition-aware
//!   pod count that serves `max(λ·(1+headroom), λ + backlog/drainSeconds)`
//!   at `c` messages per second per pod (the headroom drains backlog too).
//!
//! Both then go through the same hysteresis: one step up to the need, a
//! settle window through start-up and rebalance in which backlog inside the
//! projection is not new demand, scale-down only after the need stayed lower
//! for the stabilization window, a dead band, no scale-down from a cold
//! start, and scale to zero only after an idle window.
//!
//! With `strategy: planner`, a rate-sized decision instead prices every
//! candidate count over a short horizon ([`Plan`]): a fluid model of the
//! group with each change's own pause, the fewest pods whose predicted wait
//! stays within `waitObjectiveSeconds`.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod evaluate;
pub mod lags;
pub mod point;
pub mod sample;
pub mod signals;
pub mod traffic;
pub mod window;

mod decide;
mod decision;
mod observation;
mod packed;
pub mod partitions;
mod pause;
mod plan;
mod rebalance;
mod settings;
mod sizing;
mod state;
mod thresholds;

pub use decide::{activated, decide};
pub use decision::{Action, Basis, Climb, Decision, PartitionLimit, PlanBasis, Reason};
pub use observation::{HotPartition, LearnedPause, Observation, RateSource};
pub use partitions::partition_aware_pods;
pub use pause::adopt;
pub use plan::{Candidate, Plan};
pub use settings::{Params, PartitionCap, PolicySettings, Rebalance, Strategy};
pub use state::State;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod properties;
