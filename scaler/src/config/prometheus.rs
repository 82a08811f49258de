//! `prometheus:`: where the topics' inbound rate comes from.

use std::time::Duration;

use serde::Deserialize;

use super::fields::{ConfigError, at_least_one, duration, invalid};
use crate::source::prometheus::PrometheusSettings as Prometheus;

/// MSK open monitoring's broker inbound rate, one series per broker;
/// `<topic>` is replaced by each (validated) topic name and lagrate sums the
/// series, counting them (`lagrate_prometheus_series`), so a broker that
/// drops out of the answer is seen rather than silently missing from a sum.
/// The 2 m window spans four of the JMX exporter's 30 s scrapes, so one
/// failed scrape does not drop a broker.
pub const DEFAULT_RATE_QUERY: &str =
    r#"rate(kafka_server_BrokerTopicMetrics_Count{name="MessagesInPerSec",topic="<topic>"}[2m])"#;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawPrometheus {
    /// Base URL of the Prometheus HTTP API, http(s)://host:port.
    url: String,
    /// Inbound-rate query with a `<topic>` placeholder, replaced by each
    /// (validated) topic name; the series of the answer are summed (default:
    /// MSK open monitoring's per-broker MessagesInPerSec rate over 2m).
    rate_query: Option<String>,
    /// Deadline of each query, shorter than sampling.interval (default
    /// 2s, or 80 % of a shorter interval). Queries run beside the Kafka
    /// samples, never delaying them.
    timeout: Option<String>,
    /// Largest answer read from Prometheus, in bytes (default 1048576); a
    /// larger one is an error and the rate comes from offsets.
    max_response_bytes: Option<u64>,
}

impl RawPrometheus {
    /// Checks the section against the sampling interval.
    pub(super) fn validate(&self, interval: Duration) -> Result<Prometheus, ConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| invalid("prometheus.url", format!("must be an http(s) URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("prometheus.url", "must be an http(s) URL"));
        }
        let rate_query = self.rate_query.clone().unwrap_or(DEFAULT_RATE_QUERY.into());
        if !rate_query.contains("<topic>") {
            return Err(invalid(
                "prometheus.rateQuery",
                "must contain the placeholder <topic>",
            ));
        }
        let timeout = duration(
            "prometheus.timeout",
            self.timeout.as_deref(),
            Duration::from_secs(2).min(interval.mul_f64(0.8)),
        )?;
        if timeout >= interval {
            return Err(invalid(
                "prometheus.timeout",
                format!(
                    "must be shorter than sampling.interval ({}), or queries pile up; got {}",
                    humantime::format_duration(interval),
                    humantime::format_duration(timeout)
                ),
            ));
        }
        let max_response_bytes = at_least_one(
            "prometheus.maxResponseBytes",
            self.max_response_bytes.unwrap_or(1 << 20),
        )?;
        Ok(Prometheus {
            url: self.url.trim_end_matches('/').to_owned(),
            rate_query,
            timeout,
            max_response_bytes: usize::try_from(max_response_bytes).unwrap_or(usize::MAX),
        })
    }
}
