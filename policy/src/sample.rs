//! What one sample of a source key holds: the offsets read from Kafka, what
//! Prometheus said, and the workload's scale. The samplers produce these;
//! everything above reads them.

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

/// What Prometheus said at a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PrometheusReading {
    NotConfigured,
    Rate(f64),
    /// Down, failing, or no series for the topic.
    Unavailable,
}

/// One sample of a source key, taken on the wall-clock grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix seconds of the grid instant.
    pub t: f64,
    pub offsets: OffsetSnapshot,
    pub prometheus: PrometheusReading,
    /// `spec.replicas` of the scaled workload (Kubernetes API), when the
    /// trigger names its `scaleTarget`.
    pub target_replicas: Option<u32>,
}

/// A partition of topic `t`, for tests.
#[cfg(test)]
pub(crate) fn part(partition: i32, high: i64, committed: Option<i64>) -> PartitionOffsets {
    PartitionOffsets {
        topic: Arc::from("t"),
        partition,
        high_watermark: high,
        committed,
    }
}
