//! Trigger metadata (ScaledObjectRef.scalerMetadata) parsed into a
//! [`TriggerSpec`]. Keys and defaults follow KEDA's `kafka` scaler; lagrate
//! adds `cluster`, `policy` and policy overrides. KEDA's own keys for the
//! external trigger are accepted and ignored, and `xFromEnv` means `x`.

use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::policy::{OVERRIDE_KEYS, Params, PartitionCap};

/// Keys KEDA puts in every external trigger's metadata.
const KEDA_EXTERNAL_KEYS: &[&str] = &[
    "scalerAddress",
    "enableTLS",
    "unsafeSsl",
    "tlsCertFile",
    "caCert",
    "tlsClientCert",
    "tlsClientKey",
];

/// KEDA Kafka scaler keys lagrate reads.
const KAFKA_KEYS: &[&str] = &[
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "scaleToZeroOnInvalidOffset",
];

/// KEDA Kafka keys for authentication: in lagrate, auth belongs to the cluster.
const KAFKA_AUTH_KEYS: &[&str] = &[
    "sasl",
    "tls",
    "username",
    "password",
    "ca",
    "cert",
    "key",
    "keyPassword",
    "awsRegion",
];

/// Bad trigger metadata; the message names the key and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TriggerError(pub String);

/// How a partition without a committed offset counts (KEDA's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OffsetReset {
    /// Lag 1 (0 with `scaleToZeroOnInvalidOffset`).
    Latest,
    /// Its whole log.
    Earliest,
}

/// KEDA's per-partition lag rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LagRules {
    pub offset_reset: OffsetReset,
    pub scale_to_zero_on_invalid_offset: bool,
    pub exclude_persistent_lag: bool,
}

/// Which cluster a trigger reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClusterRef {
    /// A cluster named in the config.
    Named(String),
    /// Inline `bootstrapServers` (only when the config allows them).
    Inline(Vec<String>),
}

/// A parsed trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    pub cluster: ClusterRef,
    pub group: String,
    /// None: every topic the group has committed offsets for.
    pub topics: Option<Vec<String>>,
    pub lag_rules: LagRules,
    pub policy_name: String,
    pub params: Params,
}

impl TriggerSpec {
    /// The metric name given in GetMetricSpec and expected in GetMetrics.
    pub fn metric_name(&self) -> String {
        let group: String = self
            .group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        format!("lagrate-{group}")
    }
}

/// Kafka's legal topic names: 1..=249 of `[A-Za-z0-9._-]`.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn cluster_names(config: &Config) -> String {
    config
        .clusters
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

fn err(message: String) -> TriggerError {
    TriggerError(message)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, TriggerError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(format!("{key} must be true or false, got {value:?}"))),
    }
}

fn parse_number(key: &str, value: &str, allow_zero: bool) -> Result<f64, TriggerError> {
    let number = value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match number {
        Some(v) if v > 0.0 || (allow_zero && v == 0.0) => Ok(v),
        _ => Err(err(format!(
            "{key} must be a number {} 0, got {value:?}",
            if allow_zero { ">=" } else { ">" }
        ))),
    }
}

/// Parses trigger metadata against the current config.
pub fn parse(
    metadata: &HashMap<String, String>,
    config: &Config,
) -> Result<TriggerSpec, TriggerError> {
    // `xFromEnv` carries the value KEDA resolved from the pod: it means `x`.
    let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in metadata {
        let name = key.strip_suffix("FromEnv").unwrap_or(key);
        if keys.insert(name, value.as_str()).is_some() {
            return Err(err(format!(
                "{name} is given twice (as {name} and {name}FromEnv); give one"
            )));
        }
    }
    for key in keys.keys() {
        let known = KEDA_EXTERNAL_KEYS.contains(key)
            || KAFKA_KEYS.contains(key)
            || OVERRIDE_KEYS.contains(key)
            || matches!(*key, "cluster" | "policy");
        if KAFKA_AUTH_KEYS.contains(key) {
            return Err(err(format!(
                "{key}: authentication is set per cluster in the scaler config (clusters.NAME.auth); name the cluster with `cluster`"
            )));
        }
        if !known {
            return Err(err(format!(
                "unknown key {key}; allowed: {}, cluster, policy, {}",
                KAFKA_KEYS.join(", "),
                OVERRIDE_KEYS.join(", ")
            )));
        }
    }
    let get = |key: &str| keys.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

    let cluster = match (get("cluster"), get("bootstrapServers")) {
        (Some(_), Some(_)) => {
            return Err(err(
                "cluster and bootstrapServers are both given; give one (cluster is preferred)"
                    .into(),
            ));
        }
        (Some(name), None) => {
            if !config.clusters.contains_key(name) {
                return Err(err(format!(
                    "cluster {name:?} is not in the scaler config; configured: {}",
                    cluster_names(config)
                )));
            }
            ClusterRef::Named(name.to_owned())
        }
        (None, Some(servers)) => {
            let list: Vec<String> = servers.split(',').map(|s| s.trim().to_owned()).collect();
            if !config.allow_inline_bootstrap_servers {
                // The same servers as a configured cluster are fine.
                match config
                    .clusters
                    .iter()
                    .find(|(_, c)| c.bootstrap_servers == list)
                {
                    Some((name, _)) => ClusterRef::Named(name.clone()),
                    None => {
                        return Err(err(
                            "bootstrapServers: inline brokers are not allowed by the scaler config (allowInlineBootstrapServers); name a configured cluster with `cluster`".into(),
                        ));
                    }
                }
            } else {
                kafka_settings::ClusterSettings::plaintext(list.clone())
                    .validate()
                    .map_err(|e| err(e.to_string()))?;
                ClusterRef::Inline(list)
            }
        }
        (None, None) if config.clusters.len() == 1 => {
            ClusterRef::Named(config.clusters.keys().next().cloned().unwrap_or_default())
        }
        (None, None) => {
            return Err(err(format!(
                "cluster is required: one of {}",
                cluster_names(config)
            )));
        }
    };

    let group = get("consumerGroup")
        .ok_or_else(|| err("consumerGroup is required".into()))?
        .to_owned();
    let topics = match get("topic") {
        None => None,
        Some(list) => {
            let topics: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
            if let Some(bad) = topics.iter().find(|t| !is_valid_topic_name(t)) {
                return Err(err(format!(
                    "topic {bad:?} is not a legal Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"
                )));
            }
            Some(topics)
        }
    };

    let lag_threshold =
        get("lagThreshold").map_or(Ok(10.0), |v| parse_number("lagThreshold", v, false))?;
    let activation_lag_threshold = get("activationLagThreshold")
        .map_or(Ok(0.0), |v| parse_number("activationLagThreshold", v, true))?;
    let offset_reset = match get("offsetResetPolicy") {
        None | Some("latest") => OffsetReset::Latest,
        Some("earliest") => OffsetReset::Earliest,
        Some(other) => {
            return Err(err(format!(
                "offsetResetPolicy must be latest or earliest, got {other:?}"
            )));
        }
    };
    let flag = |key: &str| get(key).map_or(Ok(false), |v| parse_bool(key, v));
    let allow_idle = flag("allowIdleConsumers")?;
    let limit_to_lagging = flag("limitToPartitionsWithLag")?;
    if allow_idle && limit_to_lagging {
        return Err(err(
            "allowIdleConsumers and limitToPartitionsWithLag cannot both be true: one lifts the partition cap, the other tightens it".into(),
        ));
    }
    let lag_rules = LagRules {
        offset_reset,
        scale_to_zero_on_invalid_offset: flag("scaleToZeroOnInvalidOffset")?,
        exclude_persistent_lag: flag("excludePersistentLag")?,
    };

    let policy_name = get("policy").unwrap_or("default").to_owned();
    let mut settings = config.policies.get(&policy_name).cloned().ok_or_else(|| {
        err(format!(
            "policy {policy_name:?} is not in the scaler config; configured: {}",
            config
                .policies
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    for key in OVERRIDE_KEYS {
        if let Some(value) = get(key) {
            settings.set(key, value).map_err(err)?;
        }
    }
    let rate_aware = get("policy").is_some() || settings.pod_capacity.is_some();
    let cap = if allow_idle {
        PartitionCap::None
    } else if limit_to_lagging {
        PartitionCap::PartitionsWithLag
    } else {
        PartitionCap::Partitions
    };
    Ok(TriggerSpec {
        cluster,
        group,
        topics,
        lag_rules,
        policy_name,
        params: Params {
            settings,
            lag_threshold,
            activation_lag_threshold,
            cap,
            rate_aware,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            "clusters:\n  local:\n    bootstrapServers: [\"127.0.0.1:9092\"]\n  other:\n    bootstrapServers: [\"10.0.0.1:9092\"]\npolicies:\n  fast:\n    settleSeconds: 30\n",
        )
        .unwrap()
    }

    fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_err(pairs: &[(&str, &str)]) -> String {
        parse(&meta(pairs), &config()).unwrap_err().0
    }

    #[test]
    fn keda_defaults_apply() {
        let spec = parse(
            &meta(&[("cluster", "local"), ("consumerGroup", "g")]),
            &config(),
        )
        .unwrap();
        assert_eq!(spec.params.lag_threshold, 10.0);
        assert_eq!(spec.params.activation_lag_threshold, 0.0);
        assert_eq!(spec.lag_rules.offset_reset, OffsetReset::Latest);
        assert_eq!(spec.params.cap, PartitionCap::Partitions);
        assert!(!spec.params.rate_aware);
        assert_eq!(spec.topics, None);
    }

    #[test]
    fn keda_external_keys_are_accepted_and_from_env_means_the_key() {
        let spec = parse(
            &meta(&[
                ("scalerAddress", "lagrate.keda:9090"),
                ("enableTLS", "false"),
                ("unsafeSsl", "false"),
                ("cluster", "local"),
                ("consumerGroupFromEnv", "orders"),
                ("lagThresholdFromEnv", "250"),
            ]),
            &config(),
        )
        .unwrap();
        assert_eq!(spec.group, "orders");
        assert_eq!(spec.params.lag_threshold, 250.0);
    }

    #[test]
    fn errors_name_the_key_and_what_is_allowed() {
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("lagThreshold", "abc")
            ])
            .contains("lagThreshold must be a number > 0, got \"abc\"")
        );
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("offsetResetPolicy", "oldest")
            ])
            .contains("latest or earliest")
        );
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("lagTreshold", "5")
            ])
            .contains("unknown key lagTreshold")
        );
        assert!(parse_err(&[("cluster", "nope"), ("consumerGroup", "g")]).contains("local, other"));
        assert!(parse_err(&[("cluster", "local")]).contains("consumerGroup is required"));
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("policy", "slow")
            ])
            .contains("default, fast")
        );
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("podCapacity", "-3")
            ])
            .contains("podCapacity")
        );
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("topic", "a\"b")
            ])
            .contains("legal Kafka topic")
        );
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("sasl", "plaintext")
            ])
            .contains("clusters.NAME.auth")
        );
    }

    #[test]
    fn contradictions_are_rejected() {
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("allowIdleConsumers", "true"),
                ("limitToPartitionsWithLag", "true")
            ])
            .contains("cannot both be true")
        );
        assert!(
            parse_err(&[
                ("cluster", "local"),
                ("bootstrapServers", "h:1"),
                ("consumerGroup", "g")
            ])
            .contains("both given")
        );
        assert!(
            parse_err(&[
                ("consumerGroup", "g"),
                ("minReplicas", "5"),
                ("maxReplicas", "2"),
                ("cluster", "local")
            ])
            .contains("maxReplicas")
        );
    }

    #[test]
    fn inline_brokers_only_when_allowed_or_configured() {
        assert!(
            parse_err(&[("bootstrapServers", "evil:9092"), ("consumerGroup", "g")])
                .contains("not allowed")
        );
        let spec = parse(
            &meta(&[
                ("bootstrapServers", "127.0.0.1:9092"),
                ("consumerGroup", "g"),
            ]),
            &config(),
        )
        .unwrap();
        assert_eq!(spec.cluster, ClusterRef::Named("local".into()));
    }

    #[test]
    fn policy_and_overrides_make_it_rate_aware() {
        let spec = parse(
            &meta(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("policy", "fast"),
                ("drainSeconds", "30"),
            ]),
            &config(),
        )
        .unwrap();
        assert!(spec.params.rate_aware);
        assert_eq!(spec.params.settings.settle_seconds, 30.0);
        assert_eq!(spec.params.settings.drain_seconds, 30.0);
        let spec = parse(
            &meta(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("podCapacity", "100"),
            ]),
            &config(),
        )
        .unwrap();
        assert!(spec.params.rate_aware);
    }
}
