//! The topic's inbound rate from Prometheus: an instant query built from the
//! configured template, once per topic, summed.

use std::time::Duration;

use serde::Deserialize;

use super::is_valid_topic_name;
use super::{Backend, SourceError};

/// Where the inbound rate comes from when Prometheus is configured (the
/// config file's `prometheus`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrometheusSettings {
    pub url: String,
    /// Template with a `<topic>` placeholder.
    pub rate_query: String,
    pub timeout: Duration,
    /// Largest answer read.
    pub max_response_bytes: usize,
}

/// A Prometheus server and the query template (`<topic>` placeholder).
#[derive(Debug, Clone)]
pub struct PrometheusRate {
    client: reqwest::Client,
    url: String,
    template: String,
    max_response_bytes: usize,
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    data: Option<QueryData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: serde_json::Value,
}

impl PrometheusRate {
    pub fn new(settings: &PrometheusSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .expect("a client without custom TLS settings always builds");
        Self {
            client,
            url: settings.url.trim_end_matches('/').to_owned(),
            template: settings.rate_query.clone(),
            max_response_bytes: settings.max_response_bytes,
        }
    }

    /// The query for one topic. Topic names are checked against Kafka's
    /// legal characters, which cannot close the label string or the selector.
    pub fn query_for(&self, topic: &str) -> Result<String, SourceError> {
        if !is_valid_topic_name(topic) {
            return Err(SourceError::unavailable(
                Backend::Prometheus,
                format!("topic {topic:?} is not a legal Kafka topic name; not sent to PromQL"),
            ));
        }
        Ok(self.template.replace("<topic>", topic))
    }

    /// Sum of the per-topic rates (`None` when Prometheus has no data),
    /// and how many series each topic's answer summed.
    /// The topics are queried concurrently.
    pub async fn inbound_rate(&self, topics: &[&str]) -> Result<InboundRate, SourceError> {
        let queries = topics
            .iter()
            .map(|topic| self.query_for(topic))
            .collect::<Result<Vec<_>, _>>()?;
        let answers =
            futures::future::try_join_all(queries.iter().map(|q| self.instant(q))).await?;
        let mut rate = None;
        let mut series = Vec::with_capacity(topics.len());
        for (topic, answer) in topics.iter().zip(answers) {
            if let Some(r) = answer.value {
                *rate.get_or_insert(0.0) += r;
            }
            series.push((topic.to_string(), answer.series));
        }
        Ok(InboundRate { rate, series })
    }

    /// The answer's body, refused past `max_response_bytes`.
    async fn body(&self, response: reqwest::Response) -> Result<Vec<u8>, SourceError> {
        read_at_most(response, self.max_response_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => SourceError::unavailable(
                    Backend::Prometheus,
                    format!(
                        "answer larger than prometheus.maxResponseBytes ({} bytes)",
                        self.max_response_bytes
                    ),
                ),
                BodyError::Read(e) => {
                    SourceError::unavailable(Backend::Prometheus, format!("{}: {e}", self.url))
                }
            })
    }

    /// The value of a query that is not a rate template (a shadow target's
    /// `actualQuery`): the sum of its series, None when it has no data.
    pub async fn value_of(&self, query: &str) -> Result<Option<f64>, SourceError> {
        Ok(self.instant(query).await?.value)
    }

    async fn instant(&self, query: &str) -> Result<Answer, SourceError> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| SourceError::from_http(Backend::Prometheus, &self.url, &e))?;
        let status = response.status();
        let bytes = self.body(response).await?;
        let body: QueryResponse = serde_json::from_slice(&bytes).map_err(|e| {
            SourceError::from_status(
                Backend::Prometheus,
                status.as_u16(),
                format!("HTTP {status}, unreadable answer: {e}"),
            )
        })?;
        if body.status != "success" {
            return Err(SourceError::unavailable(
                Backend::Prometheus,
                format!("query failed: {}", body.error.unwrap_or(body.status)),
            ));
        }
        let Some(data) = body.data else {
            return Ok(Answer {
                value: None,
                series: 0,
            });
        };
        parse_result(&data.result_type, &data.result)
    }
}

/// The raw answer of a range query (`/api/v1/query_range`) over
/// `[start, end]` (unix seconds) at `step` seconds, read up to 64 MiB.
pub async fn range_query(
    url: &str,
    query: &str,
    (start, end, step): (f64, f64, f64),
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    const MAX_BYTES: usize = 64 << 20;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{}/api/v1/query_range", url.trim_end_matches('/'));
    let response = client
        .get(&endpoint)
        .query(&[
            ("query", query.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ])
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    read_at_most(response, MAX_BYTES).await.map_err(|e| match e {
        BodyError::TooLarge => format!(
            "{endpoint}: answer larger than {MAX_BYTES} bytes; use a longer --step or a shorter --since"
        ),
        BodyError::Read(e) => format!("{endpoint}: {e}"),
    })
}

/// Why a body was not read.
pub(super) enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("answer larger than expected"),
            BodyError::Read(e) => e.fmt(f),
        }
    }
}

/// A response's body, read no further than `max` bytes: a larger one (by
/// its Content-Length, or as it arrives) is refused.
pub(super) async fn read_at_most(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A series above this many messages per second (or negative) is not a
/// rate any topic has: it is ignored, like NaN.
pub const MAX_RATE_PER_S: f64 = 1e9;

/// The inbound rate of a source key's topics, as Prometheus answered.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRate {
    /// Messages per second over all topics; None when no topic had data.
    pub rate: Option<f64>,
    /// Per topic, the number of series its answer held: with a query that
    /// returns one series per broker, a broker missing from the sum shows
    /// here.
    pub series: Vec<(String, usize)>,
}

/// One query's value and the number of series it summed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Answer {
    value: Option<f64>,
    series: usize,
}

/// Sums an instant vector, or reads a scalar; NaN and empty mean no data.
fn parse_result(result_type: &str, result: &serde_json::Value) -> Result<Answer, SourceError> {
    let value_of = |pair: &serde_json::Value| -> Option<f64> {
        pair.get(1)?
            .as_str()?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && (0.0..=MAX_RATE_PER_S).contains(v))
    };
    match result_type {
        "vector" => {
            let series = result.as_array().map(Vec::as_slice).unwrap_or_default();
            let values: Vec<f64> = series
                .iter()
                .filter_map(|s| s.get("value").and_then(value_of))
                .collect();
            Ok(Answer {
                value: (!values.is_empty()).then(|| values.iter().sum()),
                series: values.len(),
            })
        }
        "scalar" => Ok(Answer {
            value: value_of(result),
            series: 1,
        }),
        other => Err(SourceError::unavailable(
            Backend::Prometheus,
            format!("the rate query must return a vector or scalar, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_cannot_inject_promql() {
        let p = PrometheusRate::new(&PrometheusSettings {
            url: "http://127.0.0.1:1".into(),
            rate_query: crate::config::DEFAULT_RATE_QUERY.into(),
            timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
        });
        assert!(p.query_for(r#"x"} or vector(1e9) or {a=""#).is_err());
        assert!(
            p.query_for("trades.v1_EU-west")
                .unwrap()
                .contains(r#"topic="trades.v1_EU-west""#)
        );
    }

    #[test]
    fn vector_results_are_summed_and_empty_is_none() {
        let v: serde_json::Value = serde_json::json!([
            {"metric": {}, "value": [1.0, "2.5"]},
            {"metric": {}, "value": [1.0, "1.5"]}
        ]);
        let value = |t, v: &serde_json::Value| parse_result(t, v).unwrap().value;
        assert_eq!(value("vector", &v), Some(4.0));
        assert_eq!(
            parse_result("vector", &v).unwrap().series,
            2,
            "one per broker"
        );
        assert_eq!(value("vector", &serde_json::json!([])), None);
        assert_eq!(value("scalar", &serde_json::json!([1.0, "NaN"])), None);
        assert_eq!(value("scalar", &serde_json::json!([1.0, "1e308"])), None);
        assert_eq!(value("scalar", &serde_json::json!([1.0, "-5"])), None);
        assert!(parse_result("matrix", &v).is_err());
    }
}
