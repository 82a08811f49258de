//! Any YAML value in any config field gives a valid config or an error that
//! names the field, never a panic: in `Config::parse` (startup and
//! `config check`) and in a reload, which keeps the last good config and
//! goes on watching.

use std::sync::Arc;

use lagrate::config::{Config, ConfigError};
use lagrate::metrics::Metrics;
use lagrate::registry::Registry;
use lagrate::source::fake::FakeFactory;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Values a hand-written (or truncated, or pasted) config may hold.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<f64>().prop_map(|v| json!(v)),
        any::<i64>().prop_map(|v| json!(v)),
        any::<u64>().prop_map(|v| json!(v)),
        (
            any::<u64>(),
            prop_oneof![
                Just("ns"),
                Just("ms"),
                Just("s"),
                Just("m"),
                Just("h"),
                Just("d"),
                Just("y")
            ]
        )
            .prop_map(|(n, unit)| json!(format!("{n}{unit}"))),
        Just(json!("1e300")),
        Just(json!("-1")),
        Just(json!("")),
        Just(json!(null)),
        any::<bool>().prop_map(|v| json!(v)),
        "[ -~]{0,12}".prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const POLICY_FIELDS: &[&str] = &[
    "headroom",
    "drainSeconds",
    "settleSeconds",
    "scaleDownStabilizationSeconds",
    "maxScaleDownStep",
    "waitObjectiveSeconds",
    "idleSeconds",
    "startupSeconds",
    "rebalanceSeconds",
    "podCapacity",
    "minReplicas",
    "maxReplicas",
];

/// A config with a working cluster, and one field set to `value`.
fn config_with(field: usize, value: Value) -> String {
    let mut config = json!({
        "clusters": { "main": { "bootstrapServers": ["127.0.0.1:9092"] } },
        "prometheus": { "url": "http://127.0.0.1:9090" },
        "policies": { "fast": {} },
    });
    let sampling = [
        "interval",
        "maxStaleness",
        "window",
        "idleExpiry",
        "kafkaTimeout",
    ];
    let prometheus = ["url", "rateQuery", "timeout"];
    let n = sampling.len() + prometheus.len() + POLICY_FIELDS.len();
    match field % (n + 3) {
        i if i < sampling.len() => config["sampling"] = json!({ sampling[i]: value }),
        i if i < sampling.len() + prometheus.len() => {
            config["prometheus"][prometheus[i - sampling.len()]] = value
        }
        i if i < n => {
            config["policies"]["fast"][POLICY_FIELDS[i - sampling.len() - prometheus.len()]] = value
        }
        i if i == n => config["clusters"]["main"]["bootstrapServers"] = value,
        i if i == n + 1 => config["clusters"]["main"]["auth"] = value,
        _ => config["allowInlineBootstrapServers"] = value,
    }
    serde_norway::to_string(&config).expect("YAML")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_value_in_any_field_is_a_config_or_an_error_naming_the_field(field in 0usize..64, v in value()) {
        let text = config_with(field, v);
        let parsed = std::panic::catch_unwind(|| Config::parse(&text));
        prop_assert!(parsed.is_ok(), "panicked on:\n{text}");
        match parsed.unwrap() {
            Ok(config) => prop_assert!(config.sampling.window >= config.sampling.interval),
            Err(ConfigError::Invalid { field, message }) => {
                prop_assert!(!field.is_empty() && !message.is_empty(), "{text}");
            }
            Err(ConfigError::Parse { source, .. }) => {
                prop_assert!(!source.to_string().is_empty());
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn a_reload_of_any_file_keeps_a_good_config_and_the_watch(field in 0usize..64, v in value()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let good = config_with(0, json!("5s"));
        let registry = Registry::new(
            Config::parse(&good).unwrap(),
            Arc::new(FakeFactory::default()),
            Arc::new(Metrics::new()),
        );
        let text = config_with(field, v);
        std::fs::write(&path, &text).unwrap();
        lagrate::reload::apply(&path, &registry);
        let valid = Config::parse(&text).is_ok();
        let exported = registry.encode_metrics();
        let valid_line = format!("lagrate_config_valid {}\n", i64::from(valid));
        prop_assert!(exported.contains(&valid_line), "{}", exported);
        if !valid {
            prop_assert_eq!(registry.config(), Config::parse(&good).unwrap(), "the last good config stays");
            prop_assert!(exported.contains("lagrate_config_reload_errors_total 1\n"), "{}", exported);
        }
        // The next good file is applied.
        std::fs::write(&path, config_with(0, json!("7s"))).unwrap();
        lagrate::reload::apply(&path, &registry);
        prop_assert_eq!(registry.config().sampling.interval, std::time::Duration::from_secs(7));
    }
}
