//! The configs k8s/ ships are ones lagrate accepts: every overlay's scaler
//! config passes `lagrate config check`, and the consumer's ScaledObject
//! trigger parses against each of them the way KEDA's calls would; and the
//! simulator's lagrate runs behind the HPA the ScaledObject configures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use lagrate::config::Config;
use lagrate::source::kubernetes::{KubernetesSettings, TargetKind, Workload};
use lagrate::trigger::{self, ClusterRef};
use lagrate_sim::autoscalers::LAGRATE_HPA_TOLERANCE;
use lagrate_sim::hpa::{Behavior, Limit, Rules, Select};

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

fn k8s(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s")
        .join(path)
}

const OVERLAY_CONFIGS: [&str; 2] = [
    "overlays/aws/lagrate-config.yaml",
    "overlays/local/lagrate-config.yaml",
];

#[test]
fn every_overlay_config_passes_config_check() {
    for path in OVERLAY_CONFIGS.iter().chain(&["base/lagrate/config.yaml"]) {
        let out = Command::new(LAGRATE)
            .args(["config", "check"])
            .arg(k8s(path))
            .output()
            .expect("run lagrate");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn consumer_scaled_object_trigger_parses_against_every_overlay_config() {
    let text = std::fs::read_to_string(k8s("base/trading/consumer-scaledobject.yaml"))
        .expect("ScaledObject");
    let scaled: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"].as_str(), Some("external"));
    let metadata: HashMap<String, String> =
        serde_norway::from_value(trigger["metadata"].clone()).expect("string metadata");
    let max_replicas = scaled["spec"]["maxReplicaCount"]
        .as_u64()
        .expect("maxReplicaCount");

    for path in OVERLAY_CONFIGS {
        let mut config = Config::load(&k8s(path)).expect("config");
        // In the pod the Kubernetes API is the cluster's own, from its
        // service account.
        config.kubernetes = Some(KubernetesSettings::service_account(
            "https://10.100.0.1:443".into(),
        ));
        let spec = trigger::parse(&metadata, &config)
            .unwrap_or_else(|e| panic!("{path}: the ScaledObject's trigger is rejected: {e:?}"));
        assert_eq!(spec.cluster, ClusterRef::Named("main".into()), "{path}");
        assert_eq!(spec.group, "trade-tx-consumer");
        assert_eq!(spec.topics, Some(vec!["trade-tx-v2".to_owned()]));
        assert_eq!(
            spec.scale_target,
            Some(Workload {
                kind: TargetKind::Deployment,
                name: "trade-tx-consumer".into()
            }),
            "the ScaledObject's scaleTargetRef"
        );
        assert!(
            spec.params.rate_aware,
            "policy + podCapacity: rate-aware sizing"
        );
        assert_eq!(spec.params.settings.pod_capacity, Some(100.0));
        assert!(
            u64::from(spec.params.settings.max_replicas) >= max_replicas,
            "{path}: lagrate's maxReplicas must not undercut the ScaledObject's maxReplicaCount"
        );
    }
}

/// One direction of the ScaledObject's HPA behavior, as the simulator models it.
fn rules(direction: &serde_norway::Value) -> (Rules, f64) {
    let policies = direction["policies"]
        .as_sequence()
        .expect("policies")
        .iter()
        .map(|p| {
            let value = p["value"].as_u64().expect("policy value");
            let limit = match p["type"].as_str() {
                Some("Pods") => Limit::Pods(value as u32),
                Some("Percent") => Limit::Percent(value as f64),
                other => panic!("policy type {other:?}"),
            };
            (limit, p["periodSeconds"].as_f64().expect("periodSeconds"))
        })
        .collect();
    let select = match direction["selectPolicy"].as_str() {
        Some("Max") | None => Select::Max,
        Some("Min") => Select::Min,
        other => panic!("selectPolicy {other:?}"),
    };
    let tolerance: f64 = direction["tolerance"]
        .as_str()
        .expect("tolerance, a quantity string")
        .parse()
        .expect("a number");
    (
        Rules {
            stabilization_seconds: direction["stabilizationWindowSeconds"]
                .as_f64()
                .expect("stabilizationWindowSeconds"),
            policies,
            select,
        },
        tolerance,
    )
}

#[test]
fn the_simulators_lagrate_hpa_is_the_one_the_scaled_object_configures() {
    let text = std::fs::read_to_string(k8s("base/trading/consumer-scaledobject.yaml"))
        .expect("ScaledObject");
    let scaled: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let behavior = &scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    let (up, up_tolerance) = rules(&behavior["scaleUp"]);
    let (down, down_tolerance) = rules(&behavior["scaleDown"]);
    assert_eq!(Behavior { up, down }, Behavior::pass_through());
    assert_eq!(
        (up_tolerance, down_tolerance),
        (LAGRATE_HPA_TOLERANCE, LAGRATE_HPA_TOLERANCE)
    );
}
