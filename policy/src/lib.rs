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
//! One planner decides ([`Plan`]): every candidate count rolled forward
//! over a short horizon (start-up, rebalance and `waitObjectiveSeconds`) in
//! a fluid model of the group, with each change's own pause, and the fewest
//! pods whose predicted wait stays within the objective chosen. What a pod
//! is priced at depends on the trigger:
//! * rate-aware (a `policy` or `podCapacity`) with a known per-pod capacity
//!   (configured or learned): the inbound rate's forecast and the backlog,
//!   over the partitions' assignment;
//! * lag-only (KEDA's Kafka keys only), and rate-aware until a capacity is
//!   learned: KEDA's rule, a pod carries `lagThreshold` messages (the
//!   answer is `ceil(lag / lagThreshold)`, capped at the partitions), with
//!   the planner's pause and the highest lag of the horizon as hysteresis.
//!
//! Outside the planner, as protection: the restart warm-up, min and max,
//! the largest step down, a lagged partition's floor, the idle window to
//! zero.

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
pub use decision::{Action, Basis, Decision, PartitionLimit, PlanBasis, Reason};
pub use observation::{HotPartition, LearnedPause, Observation, RateSource};
pub use partitions::partition_aware_pods;
pub use pause::adopt;
pub use plan::{Candidate, Plan};
pub use settings::{Params, PartitionCap, PolicySettings, Rebalance};
pub use state::State;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod properties;
