//! Where the signals come from: Kafka offsets and the Prometheus inbound
//! rate. Sources know nothing of KEDA or of the policy.

pub mod fake;
pub mod kafka;
pub mod kubernetes;
pub mod prometheus;

use std::sync::Arc;
use std::time::Duration;

use kafka_settings::ClusterSettings;

/// Kafka's legal topic names: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`.
/// Every topic name that reaches a query (Kafka or PromQL) passed this.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// What to read offsets of: one consumer group on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetQuery {
    pub cluster: ClusterSettings,
    pub group: String,
    /// None: every topic the group has committed offsets for.
    pub topics: Option<Vec<String>>,
    /// Deadline of each Kafka request.
    pub timeout: Duration,
}

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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("prometheus: {0}")]
    Prometheus(String),
    #[error("kubernetes: {0}")]
    Kubernetes(String),
}

impl SourceError {
    /// Metric label of the source that failed.
    pub fn label(&self) -> &'static str {
        match self {
            SourceError::Kafka(_) => "kafka",
            SourceError::Prometheus(_) => "prometheus",
            SourceError::Kubernetes(_) => "kubernetes",
        }
    }
}

/// Reads a consumer group's offsets. Blocking: call it off the async runtime.
pub trait OffsetSource: Send + Sync + 'static {
    fn snapshot(&self) -> Result<OffsetSnapshot, SourceError>;
}

/// Makes the offset reader of a query: Kafka in production
/// ([`kafka::KafkaFactory`]), scripted in tests ([`fake::FakeFactory`]).
pub trait SourceFactory: Send + Sync + 'static {
    fn offsets(&self, query: &OffsetQuery) -> Result<Arc<dyn OffsetSource>, SourceError>;

    /// Whether `cluster` answers within `timeout` (readiness before the
    /// first sample). Sources that cannot tell say no.
    fn cluster_reachable(&self, _cluster: &ClusterSettings, _timeout: Duration) -> bool {
        false
    }
}
