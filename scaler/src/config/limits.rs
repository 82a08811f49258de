//! `limits:`: caps on what callers can make lagrate hold.

use serde::Deserialize;

use super::fields::{ConfigError, at_least_one};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawLimits {
    /// Most source keys (cluster, consumer group, topics) sampled at once
    /// (default 1000). A ScaledObject that needs one more is answered
    /// ResourceExhausted naming this limit; the others are unaffected.
    max_source_keys: Option<u64>,
    /// Most ScaledObject triggers served at once (default 5000); beyond
    /// it, ResourceExhausted naming this limit.
    max_entries: Option<u64>,
    /// Kafka offset queries in flight at once, over all source keys
    /// (default 16; read at start). Keys wait their turn in order;
    /// `lagrate_sample_age_seconds` shows how late that makes them.
    kafka_concurrency: Option<u64>,
    /// Most distinct inline `bootstrapServers` lists (clusters a caller
    /// names in trigger metadata) served at once, when
    /// allowInlineBootstrapServers is true (default 10); beyond it,
    /// ResourceExhausted naming this limit.
    max_inline_clusters: Option<u64>,
}

/// Caps on what callers can make lagrate hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_source_keys: u64,
    pub max_entries: u64,
    pub kafka_concurrency: u64,
    pub max_inline_clusters: u64,
}

impl Limits {
    pub(super) fn from_raw(raw: &RawLimits) -> Result<Self, ConfigError> {
        Ok(Limits {
            max_source_keys: at_least_one(
                "limits.maxSourceKeys",
                raw.max_source_keys.unwrap_or(1000),
            )?,
            kafka_concurrency: at_least_one(
                "limits.kafkaConcurrency",
                raw.kafka_concurrency.unwrap_or(16),
            )?,
            max_inline_clusters: at_least_one(
                "limits.maxInlineClusters",
                raw.max_inline_clusters.unwrap_or(10),
            )?,
            max_entries: at_least_one("limits.maxEntries", raw.max_entries.unwrap_or(5000))?,
        })
    }
}
