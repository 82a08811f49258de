//! Trigger metadata (ScaledObjectRef.scalerMetadata) parsed into a
//! [`TriggerSpec`]. Keys and defaults follow KEDA's `kafka` scaler; lagrate
//! adds `cluster`, `policy`, `scaleTarget` and policy overrides. KEDA's own keys for the
//! external trigger are accepted and ignored, and `xFromEnv` means `x`.

use std::collections::{BTreeMap, HashMap};

mod overrides;
#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::source::is_valid_topic_name;
use crate::source::kubernetes::Workload;
use lagrate_policy::signals::{LagRules, OffsetReset};
use lagrate_policy::{Params, PartitionCap, PolicySettings};

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

/// Bad trigger metadata: the key, and a message that names it and says
/// what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TriggerError {
    pub key: String,
    pub message: String,
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
    /// The workload whose scale a starting replica holds (`scaleTarget`),
    /// in the ScaledObject's namespace.
    pub scale_target: Option<Workload>,
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

fn cluster_names(config: &Config) -> String {
    config
        .clusters
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest consumer group id accepted (Kafka's topic-name bound, rounded).
pub const MAX_GROUP_LEN: usize = 255;

/// Characters of a caller's value an error message quotes.
const QUOTED_CHARS: usize = 100;

/// A caller's value as an error quotes it: at most `QUOTED_CHARS`
/// characters, so a huge value cannot make a huge message or log line.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &value[..cut], value.len()),
    }
}

fn err(key: &str, message: String) -> TriggerError {
    TriggerError {
        key: quoted(key).trim_matches('"').to_owned(),
        message,
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, TriggerError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(
            key,
            format!("{key} must be true or false, got {}", quoted(value)),
        )),
    }
}

fn parse_number(key: &str, value: &str, allow_zero: bool) -> Result<f64, TriggerError> {
    let number = value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match number {
        Some(v) if v > 0.0 || (allow_zero && v == 0.0) => Ok(v),
        _ => Err(err(
            key,
            format!(
                "{key} must be a number {} 0, got {}",
                if allow_zero { ">=" } else { ">" },
                quoted(value)
            ),
        )),
    }
}

/// The metadata by the names lagrate reads (`xFromEnv` as `x`), refusing
/// a key given twice, an unknown key, KEDA's Kafka auth keys, and a key
/// lagrate reads given empty.
fn known_keys(metadata: &HashMap<String, String>) -> Result<BTreeMap<&str, &str>, TriggerError> {
    // `xFromEnv` carries the value KEDA resolved from the pod: it means `x`.
    let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in metadata {
        let name = key.strip_suffix("FromEnv").unwrap_or(key);
        if keys.insert(name, value.as_str()).is_some() {
            return Err(err(
                name,
                format!("{name} is given twice (as {name} and {name}FromEnv); give one"),
            ));
        }
    }
    for key in keys.keys() {
        let known = KEDA_EXTERNAL_KEYS.contains(key)
            || KAFKA_KEYS.contains(key)
            || overrides::is_policy_field(key)
            || matches!(*key, "cluster" | "policy" | "scaleTarget");
        if KAFKA_AUTH_KEYS.contains(key) {
            return Err(err(
                key,
                format!(
                    "{}: authentication is set per cluster in the scaler config (clusters.NAME.auth); name the cluster with `cluster`",
                    quoted(key).trim_matches('"')
                ),
            ));
        }
        if !known {
            return Err(err(
                key,
                format!(
                    "unknown key {}; allowed: {}, cluster, policy, scaleTarget, {}",
                    quoted(key).trim_matches('"'),
                    KAFKA_KEYS.join(", "),
                    overrides::policy_fields().join(", ")
                ),
            ));
        }
    }
    // A key lagrate reads, given empty, is a mistake (often a FromEnv
    // variable missing from the pod), not the key left out.
    if let Some((key, _)) = keys
        .iter()
        .find(|(key, value)| value.trim().is_empty() && !KEDA_EXTERNAL_KEYS.contains(key))
    {
        return Err(err(
            key,
            format!("{key} is empty: give a value, or leave the key out for its default"),
        ));
    }
    Ok(keys)
}

/// The cluster a trigger names: `cluster`, or inline `bootstrapServers` as
/// the config allows, or the config's only cluster.
fn cluster_of(
    cluster: Option<&str>,
    bootstrap_servers: Option<&str>,
    config: &Config,
) -> Result<ClusterRef, TriggerError> {
    Ok(match (cluster, bootstrap_servers) {
        (Some(_), Some(_)) => {
            return Err(err(
                "cluster",
                "cluster and bootstrapServers are both given; give one (cluster is preferred)"
                    .into(),
            ));
        }
        (Some(name), None) => {
            if !config.clusters.contains_key(name) {
                return Err(err(
                    "cluster",
                    format!(
                        "cluster {} is not in the scaler config; configured: {}",
                        quoted(name),
                        cluster_names(config)
                    ),
                ));
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
                        return Err(err("bootstrapServers", 
                            "bootstrapServers: inline brokers are not allowed by the scaler config (allowInlineBootstrapServers); name a configured cluster with `cluster`".into(),
                        ));
                    }
                }
            } else {
                kafka_settings::ClusterSettings::plaintext(list.clone())
                    .validate()
                    .map_err(|e| err("bootstrapServers", e.to_string()))?;
                ClusterRef::Inline(list)
            }
        }
        (None, None) if config.clusters.len() == 1 => {
            ClusterRef::Named(config.clusters.keys().next().cloned().unwrap_or_default())
        }
        (None, None) => {
            return Err(err(
                "cluster",
                format!("cluster is required: one of {}", cluster_names(config)),
            ));
        }
    })
}

/// `consumerGroup`: required, at most MAX_GROUP_LEN bytes, no control
/// characters.
fn group_of(value: Option<&str>) -> Result<String, TriggerError> {
    let group = value
        .ok_or_else(|| err("consumerGroup", "consumerGroup is required".into()))?
        .to_owned();
    if group.len() > MAX_GROUP_LEN || group.chars().any(char::is_control) {
        return Err(err(
            "consumerGroup",
            format!(
                "consumerGroup must be at most {MAX_GROUP_LEN} bytes without control characters, got {}",
                quoted(&group)
            ),
        ));
    }
    Ok(group)
}

/// `topic`: one legal Kafka topic name or a comma-separated list; None for
/// every topic the group commits to.
fn topics_of(value: Option<&str>) -> Result<Option<Vec<String>>, TriggerError> {
    Ok(match value {
        None => None,
        Some(list) => {
            let topics: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
            if let Some(bad) = topics.iter().find(|t| !is_valid_topic_name(t)) {
                return Err(err(
                    "topic",
                    format!(
                        "topic {} is not a legal Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)",
                        quoted(bad)
                    ),
                ));
            }
            Some(topics)
        }
    })
}

/// The named policy (`policy`, else `default`) with the trigger's overrides
/// of its fields.
fn policy_of(
    keys: &BTreeMap<&str, &str>,
    config: &Config,
) -> Result<(String, PolicySettings), TriggerError> {
    let get = |key: &str| keys.get(key).map(|v| v.trim());
    let policy_name = get("policy").unwrap_or("default").to_owned();
    let named = config.policies.get(&policy_name).cloned().ok_or_else(|| {
        err(
            "policy",
            format!(
                "policy {} is not in the scaler config; configured: {}",
                quoted(&policy_name),
                config
                    .policies
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let given: Vec<(&str, &str)> = keys
        .iter()
        .filter(|(key, _)| overrides::is_policy_field(key))
        .filter_map(|(key, _)| Some((*key, get(key)?)))
        .collect();
    let settings = overrides::apply(named, &given)?;
    Ok((policy_name, settings))
}

/// Parses trigger metadata against the current config.
pub fn parse(
    metadata: &HashMap<String, String>,
    config: &Config,
) -> Result<TriggerSpec, TriggerError> {
    let keys = known_keys(metadata)?;
    let get = |key: &str| keys.get(key).map(|v| v.trim());

    let cluster = cluster_of(get("cluster"), get("bootstrapServers"), config)?;

    let group = group_of(get("consumerGroup"))?;
    let topics = topics_of(get("topic"))?;

    let lag_threshold =
        get("lagThreshold").map_or(Ok(10.0), |v| parse_number("lagThreshold", v, false))?;
    let activation_lag_threshold = get("activationLagThreshold")
        .map_or(Ok(0.0), |v| parse_number("activationLagThreshold", v, true))?;
    let offset_reset = match get("offsetResetPolicy") {
        None | Some("latest") => OffsetReset::Latest,
        Some("earliest") => OffsetReset::Earliest,
        Some(other) => {
            return Err(err(
                "offsetResetPolicy",
                format!(
                    "offsetResetPolicy must be latest or earliest, got {}",
                    quoted(other)
                ),
            ));
        }
    };
    let flag = |key: &str| get(key).map_or(Ok(false), |v| parse_bool(key, v));
    let allow_idle = flag("allowIdleConsumers")?;
    let limit_to_lagging = flag("limitToPartitionsWithLag")?;
    if allow_idle && limit_to_lagging {
        return Err(err("allowIdleConsumers", 
            "allowIdleConsumers and limitToPartitionsWithLag cannot both be true: one lifts the partition cap, the other tightens it".into(),
        ));
    }
    let lag_rules = LagRules {
        offset_reset,
        scale_to_zero_on_invalid_offset: flag("scaleToZeroOnInvalidOffset")?,
        exclude_persistent_lag: flag("excludePersistentLag")?,
    };

    let scale_target = match get("scaleTarget") {
        None => None,
        Some(_) if config.kubernetes.is_none() => {
            return Err(err(
                "scaleTarget",
                "scaleTarget needs the Kubernetes API: lagrate runs outside a cluster and its config has no kubernetes section".into(),
            ));
        }
        Some(value) => Some(Workload::parse(value).map_err(|e| err("scaleTarget", e))?),
    };

    let (policy_name, settings) = policy_of(&keys, config)?;
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
        scale_target,
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
