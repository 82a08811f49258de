//! The scaler's error type, its gRPC status code and its metric labels.

use crate::source::SourceError;
use crate::trigger::TriggerError;

/// Why a KEDA call could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScalerError {
    /// Bad trigger metadata: KEDA shows this on the ScaledObject.
    #[error(transparent)]
    BadMetadata(#[from] TriggerError),
    /// The source of a key could not be set up.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The first sample of a key has not succeeded yet.
    #[error("no sample of group {group} yet: {}", cause_text(.cause, "first sample pending"))]
    NoSample {
        group: String,
        cause: Option<SourceError>,
    },
    /// The newest sample is older than `maxStaleness`: KEDA applies its fallback.
    #[error("newest sample of group {group} is {age_s:.0}s old (maxStaleness {max_staleness_s:.0}s): {}", cause_text(.cause, "sampling stalled"))]
    Stale {
        group: String,
        age_s: f64,
        max_staleness_s: f64,
        cause: Option<SourceError>,
    },
    /// This replica started recently and the broker reports no member
    /// count: an answer from a part of the window could be lower than what
    /// the group runs and what another replica holds.
    #[error(
        "this lagrate replica has not yet sampled group {group} for as long as its answer depends on, and the broker reports no member count; it answers Unavailable (KEDA and the HPA hold) until then. Allow DescribeGroups on the group to answer at once with at least the group's size"
    )]
    WarmingUp { group: String },
    /// A configured limit is reached: this trigger is refused, the ones
    /// already served are not affected.
    #[error(
        "{limit} ({value}) is reached: raise it in the config, or remove ScaledObjects that are no longer used"
    )]
    Limit { limit: &'static str, value: u64 },
}

fn cause_text(cause: &Option<SourceError>, otherwise: &str) -> String {
    cause
        .as_ref()
        .map_or_else(|| otherwise.to_owned(), ToString::to_string)
}

impl ScalerError {
    /// Metric label of the gRPC status code.
    pub fn code_label(&self) -> &'static str {
        match self {
            ScalerError::BadMetadata(_) => "invalid_argument",
            ScalerError::Limit { .. } => "resource_exhausted",
            _ => "unavailable",
        }
    }

    /// Metric label of what failed: bad metadata, Kafka, Prometheus, a first
    /// sample still pending, or sampling that stalled without an error.
    pub fn reason_label(&self) -> &'static str {
        match self {
            ScalerError::BadMetadata(_) => "bad_metadata",
            ScalerError::Source(e) => e.label(),
            ScalerError::NoSample { cause: Some(e), .. }
            | ScalerError::Stale { cause: Some(e), .. } => e.label(),
            ScalerError::NoSample { cause: None, .. } => "no_sample",
            ScalerError::Stale { cause: None, .. } => "stale",
            ScalerError::Limit { .. } => "limit",
            ScalerError::WarmingUp { .. } => "warming_up",
        }
    }
}

impl From<ScalerError> for tonic::Status {
    fn from(e: ScalerError) -> Self {
        match e {
            ScalerError::BadMetadata(_) => tonic::Status::invalid_argument(e.to_string()),
            ScalerError::Limit { .. } => tonic::Status::resource_exhausted(e.to_string()),
            _ => tonic::Status::unavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_tell_metadata_kafka_prometheus_and_staleness_apart() {
        let bad = ScalerError::from(TriggerError {
            key: "lagThreshold".into(),
            message: "lagThreshold must be a number > 0".into(),
        });
        assert_eq!(
            (bad.code_label(), bad.reason_label()),
            ("invalid_argument", "bad_metadata")
        );
        assert_eq!(
            tonic::Status::from(bad).code(),
            tonic::Code::InvalidArgument
        );
        let stale = |cause| ScalerError::Stale {
            group: "g".into(),
            age_s: 90.0,
            max_staleness_s: 60.0,
            cause,
        };
        let kafka = stale(Some(SourceError::unavailable(
            crate::source::Backend::Kafka,
            "Broker transport failure",
        )));
        assert_eq!(
            (kafka.code_label(), kafka.reason_label()),
            ("unavailable", "kafka")
        );
        assert!(
            kafka
                .to_string()
                .contains("90s old (maxStaleness 60s): kafka: Broker")
        );
        assert_eq!(stale(None).reason_label(), "stale");
        let prometheus = ScalerError::Source(SourceError::unavailable(
            crate::source::Backend::Prometheus,
            "down",
        ));
        assert_eq!(prometheus.reason_label(), "prometheus");
        assert_eq!(
            tonic::Status::from(prometheus).code(),
            tonic::Code::Unavailable
        );
    }
}
