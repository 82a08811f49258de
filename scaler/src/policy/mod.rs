//! The scaling policy: observations in, desired replicas out.
//!
//! Pure: no I/O, no clock reads, no randomness. `now` is an argument, and
//! everything the policy remembers is in [`State`], returned with each
//! [`Decision`]. The server and the simulator reach it through one door,
//! [`crate::evaluate`], which replays it over a window of samples.
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

mod decide;
mod decision;
mod observation;
pub mod partitions;
mod pause;
mod settings;
mod sizing;

pub use decide::State;
pub(crate) use decide::decide;
pub use decision::{Action, Basis, Climb, Decision, PartitionLimit, Reason};
pub use observation::{HotPartition, LearnedPause, Observation, RateSource};
pub use partitions::partition_aware_pods;
pub(crate) use pause::adopt;
pub use settings::{Params, PartitionCap, PolicySettings, Rebalance};

#[cfg(test)]
mod examples;
#[cfg(test)]
mod properties;
