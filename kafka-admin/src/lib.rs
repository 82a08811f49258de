//! Kafka admin calls made through a client that already exists and is
//! already polled: committed offsets of any consumer group, creating a
//! topic, the high watermark a consumer last fetched, and leader epochs
//! read from messages and stored with offsets. The only unsafe
//! code of the workspace: rust-rdkafka has no safe wrapper for these calls
//! on an existing client.
//!
//! Why not rust-rdkafka's `AdminClient`: it is a client of its own that never
//! serves librdkafka's OAUTHBEARER token-refresh event, so with MSK IAM it
//! cannot authenticate; and a client per call would cost threads and memory.
//! The client passed here must be polled (a `ThreadedProducer`, or a
//! consumer whose owner polls it) so that its token is served.

mod create_topic;
mod group_offsets;
mod in_flight;
mod leader_epoch;
mod watermarks;

pub use create_topic::create_topic;
pub use group_offsets::committed_offsets;
pub use in_flight::InFlight;
pub use leader_epoch::{leader_epoch, leader_epochs, store_offset};
pub use watermarks::cached_high_watermark;
