//! What every section's checks share: the error naming the field, and the
//! rules for durations and counts.

use std::time::Duration;

/// Errors in the configuration file; each names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_norway::Error,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl ConfigError {
    /// The field the error is about, as `section.key`.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Longest duration any setting takes: a week of samples is far past any
/// useful window and far below what overflows.
const MAX_DURATION: Duration = Duration::from_secs(604_800);

/// Shortest sampling interval.
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(super) fn duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let parsed = humantime::parse_duration(text.trim()).map_err(|_| {
        invalid(
            field,
            format!("must be a duration such as 5s, 1m or 500ms, got {text:?}"),
        )
    })?;
    if parsed.is_zero() {
        return Err(invalid(field, "must be longer than zero"));
    }
    if parsed > MAX_DURATION {
        return Err(invalid(field, format!("must be at most 7d, got {text:?}")));
    }
    Ok(parsed)
}

pub(super) fn at_least_one(field: &str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(invalid(field, "must be at least 1"));
    }
    Ok(value)
}
