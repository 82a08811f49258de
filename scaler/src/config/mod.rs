//! The scaler's configuration file (mounted from a ConfigMap), parsed with
//! `deny_unknown_fields` and validated once into typed values.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kafka_settings::ClusterSettings;
use serde::Deserialize;

use lagrate_policy::PolicySettings;
use lagrate_policy::evaluate::WarmUp;

mod fields;
mod kubernetes;
mod limits;
mod prometheus;
pub mod shadow;

pub use fields::ConfigError;
use fields::{MIN_INTERVAL, duration, invalid};
use kubernetes::RawKubernetes;
pub use limits::Limits;
use limits::RawLimits;
pub use prometheus::DEFAULT_RATE_QUERY;
use prometheus::RawPrometheus;

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "lagrate config")]
struct RawConfig {
    /// How sources are sampled.
    #[serde(default)]
    sampling: RawSampling,
    /// Kafka clusters by name, as ScaledObjects name them with `cluster`.
    #[serde(default)]
    clusters: BTreeMap<String, ClusterSettings>,
    /// Whether ScaledObjects may name brokers inline with `bootstrapServers`
    /// instead of a configured `cluster`. Off: a tenant cannot point the
    /// scaler at arbitrary hosts.
    #[serde(default)]
    allow_inline_bootstrap_servers: bool,
    /// Where the topics' inbound rate comes from; without it, from offsets.
    prometheus: Option<RawPrometheus>,
    /// How to read the size of the workloads triggers name with
    /// `scaleTarget`; in a cluster, the pod's service account by default.
    kubernetes: Option<RawKubernetes>,
    /// Named policies (`policy` in trigger metadata); `default` is built in.
    #[serde(default)]
    policies: BTreeMap<String, PolicySettings>,
    /// Caps on what callers can make lagrate hold.
    #[serde(default)]
    limits: RawLimits,
    /// Consumer groups lagrate watches without KEDA calling it, beside the
    /// KEDA `kafka` trigger they run today: what lagrate would answer, what
    /// that trigger and the HPA would set, and the group's actual size
    /// (metrics `lagrate_shadow_*`, `/debug/shadow`). Each entry: `name`,
    /// `consumerGroup`, optional `cluster`, `topic`, `policy`, `metadata`
    /// (trigger metadata such as policy overrides) and `keda`
    /// (`lagThreshold`, `minReplicaCount`, `maxReplicaCount`,
    /// `pollingInterval`, `cooldownPeriod`; KEDA's defaults when omitted).
    /// A bad entry is rejected naming its field; the others run.
    #[serde(default)]
    #[schemars(with = "Vec<shadow::RawShadow>")]
    shadow: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSampling {
    /// Period of the wall-clock grid every source key is sampled on, a
    /// duration such as 5s (default 5s, at most 7d).
    interval: Option<String>,
    /// Past this age of the newest good sample GetMetrics is Unavailable and
    /// KEDA's fallback applies (default 60s; at least the interval).
    max_staleness: Option<String>,
    /// History kept per source key; raised to what the policies need (three
    /// of their longest windows, the 15 s rate window and two intervals).
    window: Option<String>,
    /// A ScaledObject or source key nobody asked about for this long is
    /// dropped and no longer sampled (default 10m).
    idle_expiry: Option<String>,
    /// Deadline of each Kafka request (default 3s).
    kafka_timeout: Option<String>,
    /// What a replica that has just started answers while its window does
    /// not yet cover the policy's history and the broker reports no member
    /// count: `unavailable` (default: KEDA and the HPA hold; never a guess
    /// below what runs) or `answer` (its own need from the first sample:
    /// only for a single replica whose restarts may scale the group down).
    warm_up: Option<WarmUp>,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sampling: Sampling,
    pub clusters: BTreeMap<String, ClusterSettings>,
    pub allow_inline_bootstrap_servers: bool,
    pub prometheus: Option<Prometheus>,
    /// Where the scale of `scaleTarget` workloads is read; None outside a
    /// cluster without a `kubernetes` section.
    pub kubernetes: Option<crate::source::kubernetes::KubernetesSettings>,
    /// Named policies; `default` always exists (built-in values unless the
    /// file sets it).
    pub policies: BTreeMap<String, PolicySettings>,
    pub limits: Limits,
    /// The `shadow:` entries as written; shadow mode checks each one.
    pub shadow: Vec<serde_json::Value>,
}

/// How sources are sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Period of the wall-clock grid every source key is sampled on.
    pub interval: Duration,
    /// Past this age of the newest good sample, GetMetrics is Unavailable.
    pub max_staleness: Duration,
    /// History kept per source key; decisions are a function of it.
    pub window: Duration,
    /// A source key nobody asked about for this long stops being sampled.
    pub idle_expiry: Duration,
    /// Deadline of each Kafka request.
    pub kafka_timeout: Duration,
    /// What a replica answers before its window covers the policy's history
    /// when the group's size is unknown.
    pub warm_up: WarmUp,
}

pub use crate::source::prometheus::PrometheusSettings as Prometheus;

/// The JSON Schema of the config file, generated from the types that parse
/// it (for editors, and `lagrate config schema`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).expect("a schema is JSON")
}

/// What the schema says of a field named as errors name it
/// (`policies.fast.headroom`, `sampling.interval`): its description.
pub fn describe_field(path: &str) -> Option<String> {
    use serde_json::Value;
    let schema = json_schema();
    // The node a field's schema stands for: through `$ref`, and through the
    // `anyOf [T, null]` of an optional section.
    let inner = |node: &Value| -> Value {
        let mut node = node.clone();
        loop {
            if let Some(name) = node["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                node = schema["$defs"][name].clone();
            } else if let Some(some) = node["anyOf"]
                .as_array()
                .and_then(|a| a.iter().find(|v| v["type"] != "null"))
            {
                node = some.clone();
            } else {
                return node;
            }
        }
    };
    let mut node = schema.clone();
    for segment in path.split('.') {
        let here = inner(&node);
        node = match here["properties"].get(segment) {
            Some(field) => field.clone(),
            // An entry of a map (`clusters.NAME`, `policies.NAME`).
            None => here.get("additionalProperties")?.clone(),
        };
    }
    let described = |n: &Value| n["description"].as_str().map(str::to_owned);
    let text = described(&node).or_else(|| described(&inner(&node)))?;
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl RawConfig {
    /// The named policies, `default` always among them, each checked.
    fn policies(&self) -> Result<BTreeMap<String, PolicySettings>, ConfigError> {
        let mut policies = self.policies.clone();
        policies.entry("default".into()).or_default();
        for (name, policy) in &policies {
            policy
                .validate()
                .map_err(|(key, message)| invalid(format!("policies.{name}.{key}"), message))?;
        }
        Ok(policies)
    }
}

impl RawSampling {
    /// `sampling.interval`, and `sampling.maxStaleness` (at least one
    /// interval).
    fn interval_and_staleness(&self) -> Result<(Duration, Duration), ConfigError> {
        let interval = duration(
            "sampling.interval",
            self.interval.as_deref(),
            Duration::from_secs(5),
        )?;
        if interval < MIN_INTERVAL {
            return Err(invalid(
                "sampling.interval",
                "must be at least 100ms: each interval queries every group's offsets",
            ));
        }
        let max_staleness = duration(
            "sampling.maxStaleness",
            self.max_staleness.as_deref(),
            Duration::from_secs(60),
        )?;
        if max_staleness < interval {
            return Err(invalid(
                "sampling.maxStaleness",
                "must be at least sampling.interval, or every answer would be stale",
            ));
        }
        Ok((interval, max_staleness))
    }

    /// `sampling.window`, raised to the history the longest window of any
    /// policy looks back on.
    fn window(
        &self,
        policies: &BTreeMap<String, PolicySettings>,
        interval: Duration,
    ) -> Result<Duration, ConfigError> {
        let longest_policy_window = policies
            .values()
            .map(PolicySettings::history_needed_seconds)
            .fold(0.0, f64::max);
        let needed = Duration::from_secs_f64(lagrate_policy::evaluate::window_seconds(
            longest_policy_window,
            interval.as_secs_f64(),
        ));
        Ok(duration("sampling.window", self.window.as_deref(), needed)?.max(needed))
    }

    /// The whole section, with the values checked before.
    fn finish(
        &self,
        interval: Duration,
        max_staleness: Duration,
        window: Duration,
    ) -> Result<Sampling, ConfigError> {
        Ok(Sampling {
            interval,
            max_staleness,
            window,
            idle_expiry: duration(
                "sampling.idleExpiry",
                self.idle_expiry.as_deref(),
                Duration::from_secs(600),
            )?,
            kafka_timeout: duration(
                "sampling.kafkaTimeout",
                self.kafka_timeout.as_deref(),
                Duration::from_secs(3),
            )?,
            warm_up: self.warm_up.unwrap_or_default(),
        })
    }
}

impl Config {
    /// Policy keys that are accepted but no longer have an effect, as
    /// `policies.NAME.key`.
    pub fn unused_keys(&self) -> Vec<String> {
        self.policies
            .iter()
            .flat_map(|(name, policy)| {
                (policy.unused_keys().into_iter()).map(move |key| format!("policies.{name}.{key}"))
            })
            .collect()
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            return Err(invalid(
                "config",
                "the file is empty: it needs at least `clusters` (or allowInlineBootstrapServers: true)",
            ));
        }
        let raw: RawConfig = serde_norway::from_str(text).map_err(|source| ConfigError::Parse {
            path: "config".into(),
            source,
        })?;
        let (interval, max_staleness) = raw.sampling.interval_and_staleness()?;
        for (name, cluster) in &raw.clusters {
            cluster
                .validate()
                .map_err(|e| invalid(format!("clusters.{name}"), e.to_string()))?;
        }
        let policies = raw.policies()?;
        let window = raw.sampling.window(&policies, interval)?;
        let prometheus = raw
            .prometheus
            .as_ref()
            .map(|p| p.validate(interval))
            .transpose()?;
        let kubernetes = RawKubernetes::validate(raw.kubernetes.as_ref(), interval)?;
        if raw.clusters.is_empty() && !raw.allow_inline_bootstrap_servers {
            return Err(invalid(
                "clusters",
                "name at least one cluster, or set allowInlineBootstrapServers: true; without either no ScaledObject can be served",
            ));
        }
        Ok(Config {
            sampling: raw.sampling.finish(interval, max_staleness, window)?,
            shadow: raw.shadow,
            clusters: raw.clusters,
            allow_inline_bootstrap_servers: raw.allow_inline_bootstrap_servers,
            prometheus,
            kubernetes,
            policies,
            limits: Limits::from_raw(&raw.limits)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example shipped in examples/; it must load as is.
    const EXAMPLE: &str = include_str!("../../../examples/config.yaml");

    #[test]
    fn scram_as_documented_parses() {
        // Parsed as SCRAM: what is left to check is the password's source.
        let e = Config::parse(
            "clusters:\n  msk:\n    bootstrapServers: [\"b-1:9096\"]\n    tls: { enabled: true }\n    auth: { mechanism: scram-sha-512, username: lagrate, passwordEnv: LAGRATE_TEST_UNSET_PASSWORD }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("clusters.msk") && e.contains("LAGRATE_TEST_UNSET_PASSWORD"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_file_or_one_without_clusters_is_invalid() {
        for text in ["", "\n# nothing here\n", "sampling:\n  interval: 5s\n"] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains("clusters"), "{text:?}: {e}");
        }
    }

    #[test]
    fn values_too_large_to_represent_are_errors_naming_the_field() {
        let with = |extra: &str| {
            Config::parse(&format!(
                "clusters:\n  a:\n    bootstrapServers: [\"h:1\"]\n{extra}"
            ))
        };
        let e = with("sampling:\n  interval: 400000000000y\n").unwrap_err();
        assert!(e.to_string().contains("sampling.interval"), "{e}");
        let e =
            with("sampling:\n  interval: 2s\nprometheus:\n  url: http://p:9090\n  timeout: 2s\n")
                .unwrap_err();
        assert!(
            e.to_string().contains("prometheus.timeout")
                && e.to_string().contains("shorter than sampling.interval"),
            "{e}"
        );
        let fitted =
            with("sampling:\n  interval: 1s\nprometheus:\n  url: http://p:9090\n").unwrap();
        assert_eq!(
            fitted.prometheus.unwrap().timeout,
            Duration::from_millis(800),
            "the default deadline fits a short interval"
        );
        let e = with("sampling:\n  interval: 1ns\n").unwrap_err();
        assert!(e.to_string().contains("at least 100ms"), "{e}");
        let e = with("policies:\n  default:\n    idleSeconds: 1e300\n").unwrap_err();
        assert!(
            e.to_string().contains("policies.default.idleSeconds"),
            "{e}"
        );
    }

    #[test]
    fn the_schema_describes_the_fields_errors_name() {
        let about = |path| describe_field(path).unwrap_or_else(|| panic!("{path} undescribed"));
        assert!(about("policies.fast.maxScaleDownStep").contains("fraction"));
        assert!(about("sampling.interval").contains("grid"));
        assert!(about("clusters.main.bootstrapServers").contains("broker"));
        assert!(about("prometheus.rateQuery").contains("<topic>"));
        assert_eq!(describe_field("sampling.nonsense"), None);
    }

    #[test]
    fn readme_example_loads() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.sampling.interval, Duration::from_secs(5));
        assert_eq!(config.sampling.max_staleness, Duration::from_secs(60));
        assert_eq!(
            config.clusters["local"].bootstrap_servers,
            ["127.0.0.1:9092"]
        );
        assert_eq!(
            config.prometheus.as_ref().unwrap().rate_query,
            DEFAULT_RATE_QUERY
        );
        let default = &config.policies["default"];
        assert_eq!(default.wait_objective(), 60.0);
        assert!(
            config.unused_keys().is_empty(),
            "{:?}",
            config.unused_keys()
        );
        assert!(config.sampling.window >= Duration::from_secs(300));
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let err = Config::parse("sampling:\n  intervall: 5s\n").unwrap_err();
        assert!(err.to_string().contains("intervall"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_field() {
        let err = Config::parse("sampling:\n  interval: often\n").unwrap_err();
        assert!(err.to_string().contains("sampling.interval"), "{err}");
    }

    #[test]
    fn bad_policy_value_names_policy_and_key() {
        let err = Config::parse("policies:\n  fast:\n    headroom: -1\n").unwrap_err();
        assert!(err.to_string().contains("policies.fast.headroom"), "{err}");
    }

    #[test]
    fn rate_query_needs_topic_placeholder() {
        let err =
            Config::parse("prometheus:\n  url: http://p:9090\n  rateQuery: up\n").unwrap_err();
        assert!(err.to_string().contains("prometheus.rateQuery"), "{err}");
    }
}
