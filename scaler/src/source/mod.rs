//! Where the signals come from: Kafka offsets and the Prometheus inbound
//! rate. Sources know nothing of KEDA or of the policy.

pub mod kafka;
pub mod prometheus;

use std::sync::Arc;

/// Offsets of one partition at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Offset the next produced message will get.
    pub high_watermark: i64,
    /// The group's committed offset; None when it has never committed.
    pub committed: Option<i64>,
}

/// Everything read from Kafka for one source key at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetSnapshot {
    /// Sorted by topic, then partition.
    pub partitions: Vec<PartitionOffsets>,
    /// Members of the consumer group, when the broker answers DescribeGroups.
    pub members: Option<u32>,
}

/// Why a source could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("prometheus: {0}")]
    Prometheus(String),
}

/// Reads a consumer group's offsets. Blocking: call it off the async runtime.
pub trait OffsetSource: Send + Sync + 'static {
    fn snapshot(&self) -> Result<OffsetSnapshot, SourceError>;
}
