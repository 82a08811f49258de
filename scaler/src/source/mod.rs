//! Where the signals come from: Kafka offsets and the Prometheus inbound
//! rate. Sources know nothing of KEDA or of the policy.

pub mod fake;
pub mod kafka;
pub mod kubernetes;
pub mod prometheus;

use std::sync::Arc;
use std::time::Duration;

use kafka_settings::ClusterSettings;
use lagrate_policy::sample::OffsetSnapshot;

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

/// The system a source error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Kafka,
    Prometheus,
    Kubernetes,
}

impl Backend {
    /// Metric label of the system.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Kafka => "kafka",
            Backend::Prometheus => "prometheus",
            Backend::Kubernetes => "kubernetes",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a source could not answer: each kind asks for a different fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// Credentials refused, or the identity may not read what was asked
    /// (SASL/IAM, a Kafka ACL, HTTP 401/403).
    #[error(
        "{backend}: not authorized: {message} (check lagrate's credentials and what its identity may read)"
    )]
    Authentication { backend: Backend, message: String },
    /// No answer within the deadline.
    #[error("{backend}: timed out: {message}")]
    Timeout { backend: Backend, message: String },
    /// The consumer group does not exist or its name is refused.
    #[error(
        "kafka: unknown consumer group: {message} (check consumerGroup, and that the group has committed)"
    )]
    UnknownGroup { message: String },
    /// A topic the trigger names does not exist.
    #[error("kafka: unknown topic: {message} (check topic)")]
    UnknownTopic { message: String },
    /// Anything else: a broker or server error, a refused or unreadable
    /// answer, a process shutting down.
    #[error("{backend}: {message}")]
    Unavailable { backend: Backend, message: String },
}

impl SourceError {
    /// Anything else from `backend`.
    pub fn unavailable(backend: Backend, message: impl std::fmt::Display) -> Self {
        SourceError::Unavailable {
            backend,
            message: message.to_string(),
        }
    }

    /// A failed HTTP request to `url`: a timeout, or the server unreachable.
    pub fn from_http(backend: Backend, url: &str, e: &reqwest::Error) -> Self {
        let message = format!("{url}: {e}");
        if e.is_timeout() {
            SourceError::Timeout { backend, message }
        } else {
            SourceError::Unavailable { backend, message }
        }
    }

    /// An HTTP answer that is not a success: 401 and 403 are refused
    /// credentials or permissions, anything else is unavailable.
    pub fn from_status(backend: Backend, status: u16, message: String) -> Self {
        match status {
            401 | 403 => SourceError::Authentication { backend, message },
            _ => SourceError::Unavailable { backend, message },
        }
    }

    /// The system that failed.
    pub fn backend(&self) -> Backend {
        match self {
            SourceError::Authentication { backend, .. }
            | SourceError::Timeout { backend, .. }
            | SourceError::Unavailable { backend, .. } => *backend,
            SourceError::UnknownGroup { .. } | SourceError::UnknownTopic { .. } => Backend::Kafka,
        }
    }

    /// Metric label of the system that failed.
    pub fn label(&self) -> &'static str {
        self.backend().label()
    }

    /// Metric label of what kind of failure it was.
    pub fn kind_label(&self) -> &'static str {
        match self {
            SourceError::Authentication { .. } => "authentication",
            SourceError::Timeout { .. } => "timeout",
            SourceError::UnknownGroup { .. } => "unknown_group",
            SourceError::UnknownTopic { .. } => "unknown_topic",
            SourceError::Unavailable { .. } => "unavailable",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_over_http_are_authentication_and_the_rest_unavailable() {
        let kind = |status| SourceError::from_status(Backend::Prometheus, status, String::new());
        assert_eq!(kind(401).kind_label(), "authentication");
        assert_eq!(kind(403).kind_label(), "authentication");
        assert_eq!(kind(503).kind_label(), "unavailable");
        assert_eq!(kind(403).label(), "prometheus");
    }
}
