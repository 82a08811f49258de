//! Trigger metadata parsing: KEDA's defaults, its keys, and errors that
//! name the key.

use super::*;
use lagrate_policy::signals::OffsetReset;

fn config() -> Config {
    Config::parse(
        "clusters:\n  local:\n    bootstrapServers: [\"127.0.0.1:9092\"]\n  other:\n    bootstrapServers: [\"10.0.0.1:9092\"]\npolicies:\n  fast:\n    idleSeconds: 30\n",
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
    parse(&meta(pairs), &config()).unwrap_err().to_string()
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
    assert_eq!(spec.params.settings.idle_seconds, 30.0);
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

#[test]
fn oversized_or_control_character_names_and_empty_values_are_rejected_and_quoted_briefly() {
    let huge = "g".repeat(32_768);
    let e = parse_err(&[("cluster", "local"), ("consumerGroup", &huge)]);
    assert!(e.contains("at most 255 bytes"), "{e}");
    assert!(
        e.len() < 400,
        "the message quotes 100 characters, not 32 KB: {} bytes",
        e.len()
    );
    assert!(e.contains("(32768 bytes)"), "{e}");
    let e = parse_err(&[("cluster", "local"), ("consumerGroup", "pay\0ments")]);
    assert!(e.contains("control characters"), "{e}");
    assert!(
        parse(
            &meta(&[("cluster", "local"), ("consumerGroup", &"g".repeat(255))]),
            &config()
        )
        .is_ok()
    );
    for key in ["lagThreshold", "cluster", "topic"] {
        let e = parse_err(&[("cluster", "local"), ("consumerGroup", "g"), (key, " ")]);
        assert!(e.contains(&format!("{key} is empty")), "{e}");
    }
    let e = parse_err(&[
        ("cluster", "local"),
        ("consumerGroup", "g"),
        ("lagThreshold", &huge),
    ]);
    assert!(e.len() < 400, "{} bytes", e.len());
    let e = parse_err(&[
        ("cluster", "local"),
        ("consumerGroup", "g"),
        (huge.as_str(), "1"),
    ]);
    assert!(
        e.len() < 1000,
        "an unknown key is quoted briefly too: {} bytes",
        e.len()
    );
}

#[test]
fn a_scale_target_needs_the_kubernetes_api_and_a_workload_name() {
    let mut config = config();
    config.kubernetes = None;
    let target = |value: &str, config: &Config| {
        parse(
            &meta(&[
                ("cluster", "local"),
                ("consumerGroup", "g"),
                ("scaleTarget", value),
            ]),
            config,
        )
    };
    let outside = target("trade-consumer", &config).unwrap_err();
    assert_eq!(outside.key, "scaleTarget");
    assert!(outside.message.contains("kubernetes section"), "{outside}");
    config.kubernetes = Some(crate::source::kubernetes::KubernetesSettings {
        api_server: "https://k:6443".into(),
        token_file: "t".into(),
        ca_file: "c".into(),
        timeout: std::time::Duration::from_secs(2),
    });
    let spec = target("statefulset/sink", &config).unwrap();
    assert_eq!(
        spec.scale_target.map(|w| (w.kind, w.name)),
        Some((
            crate::source::kubernetes::TargetKind::StatefulSet,
            "sink".to_owned()
        ))
    );
    let bad = target("cronjob/x", &config).unwrap_err();
    assert!(bad.message.contains("deployment or statefulset"), "{bad}");
}
