//! The scaler's error type and its one mapping to gRPC status codes.

use crate::trigger::TriggerError;

/// Why a KEDA call could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScalerError {
    /// Bad trigger metadata: KEDA shows this on the ScaledObject.
    #[error("{0}")]
    InvalidArgument(String),
    /// No fresh enough sample: KEDA applies its fallback.
    #[error("{0}")]
    Unavailable(String),
}

impl ScalerError {
    /// Metric label of the variant.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ScalerError::InvalidArgument(_) => "invalid_argument",
            ScalerError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<TriggerError> for ScalerError {
    fn from(e: TriggerError) -> Self {
        ScalerError::InvalidArgument(e.0)
    }
}

impl From<ScalerError> for tonic::Status {
    fn from(e: ScalerError) -> Self {
        match e {
            ScalerError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            ScalerError::Unavailable(m) => tonic::Status::unavailable(m),
        }
    }
}
