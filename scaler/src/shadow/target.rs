//! The config's `shadow:` entries: a consumer group lagrate watches without
//! KEDA calling it, with the KEDA `kafka` trigger settings the team runs
//! today. Each entry is checked on its own: a bad one is rejected naming
//! its field, and the others run.

use std::collections::HashMap;

use crate::config::Config;
use crate::config::shadow::{RawKeda, RawShadow};

/// One shadow target, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowTarget {
    pub name: String,
    /// As a ScaledObject's trigger metadata would carry it.
    pub metadata: HashMap<String, String>,
    pub keda: KedaTrigger,
    /// PromQL giving the group's actual size, for brokers that do not
    /// report members (e.g. `kube_deployment_status_replicas{...}`).
    pub actual_query: Option<String>,
}

/// The KEDA `kafka` trigger and ScaledObject settings run today.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KedaTrigger {
    pub lag_threshold: f64,
    pub min_replica_count: u32,
    pub max_replica_count: u32,
    pub polling_interval: f64,
    pub cooldown_period: f64,
}

impl Default for KedaTrigger {
    /// KEDA's defaults.
    fn default() -> Self {
        KedaTrigger {
            lag_threshold: 10.0,
            min_replica_count: 0,
            max_replica_count: 100,
            polling_interval: 30.0,
            cooldown_period: 300.0,
        }
    }
}

/// Checks every entry of the config's `shadow:` list; returns the good ones
/// and, for each bad one, an error naming `shadow[i]` and the field.
pub fn parse_all(config: &Config) -> (Vec<ShadowTarget>, Vec<String>) {
    let mut targets: Vec<ShadowTarget> = Vec::new();
    let mut rejected = Vec::new();
    for (i, value) in config.shadow.iter().enumerate() {
        match parse_one(value, config) {
            Ok(t) if targets.iter().any(|other| other.name == t.name) => {
                rejected.push(format!("shadow[{i}].name: {:?} is used twice", t.name));
            }
            Ok(t) => targets.push(t),
            Err((field, message)) => rejected.push(format!("shadow[{i}]{field}: {message}")),
        }
    }
    (targets, rejected)
}

fn parse_one(value: &serde_json::Value, config: &Config) -> Result<ShadowTarget, (String, String)> {
    let raw: RawShadow =
        serde_json::from_value(value.clone()).map_err(|e| (String::new(), e.to_string()))?;
    let field = |name: &str| format!(".{name}");
    if raw.name.trim().is_empty() || raw.name.len() > 100 {
        return Err((field("name"), "must be 1 to 100 characters".into()));
    }
    let keda = keda_trigger(&raw.keda).map_err(|(name, message)| (field(name), message))?;
    let mut metadata: HashMap<String, String> = raw.metadata.into_iter().collect();
    metadata.insert("consumerGroup".into(), raw.consumer_group);
    for (key, value) in [
        ("cluster", raw.cluster),
        ("topic", raw.topic),
        ("policy", raw.policy),
    ] {
        if let Some(value) = value {
            metadata.insert(key.into(), value);
        }
    }
    if !metadata.contains_key("cluster")
        && let [(only, _)] = config.clusters.iter().collect::<Vec<_>>().as_slice()
    {
        metadata.insert("cluster".into(), (*only).clone());
    }
    // Checked as a ScaledObject's trigger would be: the same names, limits
    // and policies.
    crate::trigger::parse(&metadata, config).map_err(|e| {
        let key = match e.key.as_str() {
            "consumerGroup" | "cluster" | "topic" | "policy" => e.key.clone(),
            other => format!("metadata.{other}"),
        };
        (field(&key), e.message)
    })?;
    if raw.actual_query.is_some() && config.prometheus.is_none() {
        return Err((
            field("actualQuery"),
            "needs the config's prometheus section".into(),
        ));
    }
    Ok(ShadowTarget {
        name: raw.name,
        metadata,
        keda,
        actual_query: raw.actual_query,
    })
}

/// The `keda:` settings of an entry, KEDA's defaults for those left out;
/// an error names the field.
fn keda_trigger(keda: &RawKeda) -> Result<KedaTrigger, (&'static str, String)> {
    let defaults = KedaTrigger::default();
    let trigger = KedaTrigger {
        lag_threshold: keda.lag_threshold.unwrap_or(defaults.lag_threshold),
        min_replica_count: keda.min_replica_count.unwrap_or(defaults.min_replica_count),
        max_replica_count: keda.max_replica_count.unwrap_or(defaults.max_replica_count),
        polling_interval: keda.polling_interval.unwrap_or(defaults.polling_interval),
        cooldown_period: keda.cooldown_period.unwrap_or(defaults.cooldown_period),
    };
    for (name, v) in [
        ("keda.lagThreshold", trigger.lag_threshold),
        ("keda.pollingInterval", trigger.polling_interval),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err((name, format!("must be a number > 0, got {v}")));
        }
    }
    if !(trigger.cooldown_period.is_finite() && trigger.cooldown_period >= 0.0) {
        return Err((
            "keda.cooldownPeriod",
            format!("must be a number >= 0, got {}", trigger.cooldown_period),
        ));
    }
    if trigger.max_replica_count == 0 || trigger.max_replica_count < trigger.min_replica_count {
        return Err((
            "keda.maxReplicaCount",
            format!(
                "must be at least 1 and at least minReplicaCount ({})",
                trigger.min_replica_count
            ),
        ));
    }
    Ok(trigger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_is_checked_on_its_own_and_a_bad_one_is_named() {
        let config = Config::parse(
            r#"
clusters:
  main: { bootstrapServers: ["127.0.0.1:9092"] }
shadow:
  - name: payments
    consumerGroup: payments-consumer
    topic: payments
    keda: { lagThreshold: 10000, maxReplicaCount: 24 }
  - name: typo
    consumerGroup: g
    keda: { lagTreshold: 5 }
  - name: payments
    consumerGroup: other
  - name: bad-group
    consumerGroup: "a\u0000b"
  - name: inverted
    consumerGroup: g
    keda: { minReplicaCount: 5, maxReplicaCount: 2 }
"#,
        )
        .expect("a bad shadow entry does not reject the file");
        let (targets, rejected) = parse_all(&config);
        assert_eq!(targets.len(), 1);
        let payments = &targets[0];
        assert_eq!(payments.metadata["cluster"], "main", "the only cluster");
        assert_eq!(payments.keda.lag_threshold, 10000.0);
        assert_eq!(payments.keda.polling_interval, 30.0, "KEDA's default");
        assert_eq!(rejected.len(), 4, "{rejected:?}");
        assert!(
            rejected[0].starts_with("shadow[1]") && rejected[0].contains("lagTreshold"),
            "{rejected:?}"
        );
        assert!(
            rejected[1].starts_with("shadow[2].name") && rejected[1].contains("twice"),
            "{rejected:?}"
        );
        assert!(
            rejected[2].starts_with("shadow[3].consumerGroup"),
            "{rejected:?}"
        );
        assert!(
            rejected[3].starts_with("shadow[4].keda.maxReplicaCount"),
            "{rejected:?}"
        );
    }
}
