//! The registry and the gRPC service against scripted sources: what KEDA
//! sees when metadata is bad, when Kafka stops answering, when many
//! ScaledObjects share a source, and when a ScaledObject goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lagrate::config::Config;
use lagrate::metrics::Metrics;
use lagrate::registry::Registry;
use lagrate::service::ScalerService;
use lagrate::source::fake::FakeFactory;
use lagrate_proto::external_scaler_server::ExternalScaler;
use lagrate_proto::{GetMetricsRequest, ScaledObjectRef};
use tokio::sync::watch;
use tonic::{Code, Request};

/// Samples every second, stale after two, idle after `idle_expiry`.
fn config(idle_expiry: &str) -> Config {
    Config::parse(&format!(
        "clusters:\n  main:\n    bootstrapServers: [\"127.0.0.1:9\"]\nsampling:\n  interval: 1s\n  maxStaleness: 2s\n  idleExpiry: {idle_expiry}\n  warmUp: answer\n"
    ))
    .expect("config parses")
}

struct Setup {
    factory: Arc<FakeFactory>,
    registry: Arc<Registry>,
    service: ScalerService,
    _stop: watch::Sender<bool>,
}

fn setup() -> Setup {
    setup_with(config("10m"))
}

fn setup_with(config: Config) -> Setup {
    let factory = Arc::new(FakeFactory::default());
    let registry = Arc::new(Registry::new(
        config,
        factory.clone(),
        Arc::new(Metrics::new()),
    ));
    let (stop, stopped) = watch::channel(false);
    let service = ScalerService::new(registry.clone(), stopped);
    Setup {
        factory,
        registry,
        service,
        _stop: stop,
    }
}

fn object(name: &str, pairs: &[(&str, &str)]) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.into(),
        namespace: "trading".into(),
        scaler_metadata: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    }
}

fn metrics_request(o: &ScaledObjectRef) -> Request<GetMetricsRequest> {
    Request::new(GetMetricsRequest {
        scaled_object_ref: Some(o.clone()),
        metric_name: String::new(),
    })
}

#[tokio::test]
async fn bad_metadata_is_invalid_argument_naming_the_key_and_counted_as_such() {
    let s = setup();
    let bad = object(
        "orders",
        &[("consumerGroup", "g"), ("lagThreshold", "lots")],
    );
    let status = s
        .service
        .get_metric_spec(Request::new(bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("lagThreshold"),
        "{}",
        status.message()
    );
    assert_eq!(
        s.factory.made(),
        0,
        "no source for a trigger that did not parse"
    );
    let text = s.registry.encode_metrics();
    assert!(
        text.contains(r#"lagrate_requests_total{method="GetMetricSpec",code="invalid_argument",reason="bad_metadata"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn beyond_max_source_keys_a_new_group_is_resource_exhausted_and_the_others_are_served() {
    let mut config = config("10m");
    config.limits.max_source_keys = 2;
    let s = setup_with(config);
    for group in ["payments", "refunds", "fees"] {
        s.factory.group(group).set("trades", &[(100, 100)]);
    }
    for (name, group) in [("a", "payments"), ("b", "refunds")] {
        let o = object(name, &[("consumerGroup", group), ("topic", "trades")]);
        s.service.get_metrics(metrics_request(&o)).await.unwrap();
    }
    let third = object("c", &[("consumerGroup", "fees"), ("topic", "trades")]);
    let status = s
        .service
        .get_metric_spec(Request::new(third))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limits.maxSourceKeys (2)"),
        "{}",
        status.message()
    );
    assert_eq!(s.factory.made(), 2, "no source made beyond the limit");
    // Another ScaledObject on a key already sampled needs no new key.
    let shared = object("d", &[("consumerGroup", "payments"), ("topic", "trades")]);
    s.service
        .get_metrics(metrics_request(&shared))
        .await
        .unwrap();
    let text = s.registry.encode_metrics();
    assert!(
        text.contains(r#"lagrate_requests_total{method="GetMetricSpec",code="resource_exhausted",reason="limit"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn beyond_max_entries_a_new_scaled_object_is_resource_exhausted() {
    let mut config = config("10m");
    config.limits.max_entries = 1;
    let s = setup_with(config);
    s.factory.group("payments").set("trades", &[(100, 100)]);
    let first = object("a", &[("consumerGroup", "payments"), ("topic", "trades")]);
    s.service
        .get_metrics(metrics_request(&first))
        .await
        .unwrap();
    let second = object("b", &[("consumerGroup", "payments"), ("topic", "trades")]);
    let status = s
        .service
        .get_metrics(metrics_request(&second))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limits.maxEntries (1)"),
        "{}",
        status.message()
    );
    // The first is still answered.
    s.service
        .get_metrics(metrics_request(&first))
        .await
        .unwrap();
}

#[tokio::test]
async fn scaled_objects_on_one_source_key_share_one_sampler() {
    let s = setup();
    s.factory.group("payments").set("trades", &[(100, 100)]);
    s.factory.group("refunds").set("trades", &[(100, 100)]);
    for name in ["a", "b", "c", "d", "e"] {
        let o = object(name, &[("consumerGroup", "payments"), ("topic", "trades")]);
        s.service.get_metrics(metrics_request(&o)).await.unwrap();
    }
    assert_eq!(
        s.factory.made(),
        1,
        "five ScaledObjects, one group: one sampler"
    );
    let o = object("f", &[("consumerGroup", "refunds"), ("topic", "trades")]);
    s.service.get_metrics(metrics_request(&o)).await.unwrap();
    assert_eq!(s.factory.made(), 2);
}

#[tokio::test]
async fn a_stale_window_is_unavailable_and_says_why() {
    let s = setup();
    let source = s.factory.group("payments");
    source.set("trades", &[(100, 90), (50, 50)]);
    let o = object(
        "orders",
        &[("consumerGroup", "payments"), ("lagThreshold", "5")],
    );
    let answer = s.service.get_metrics(metrics_request(&o)).await.unwrap();
    assert_eq!(
        answer.get_ref().metric_values[0].metric_value,
        2,
        "lag 10 / 5"
    );
    source.fail("Broker transport failure");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let status = s
        .service
        .get_metrics(metrics_request(&o))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("maxStaleness 2s")
            && status.message().contains("Broker transport failure"),
        "{}",
        status.message()
    );
    let text = s.registry.encode_metrics();
    assert!(
        text.contains(
            r#"lagrate_requests_total{method="GetMetrics",code="unavailable",reason="kafka"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"lagrate_source_errors_total{source="kafka",kind="unavailable"}"#),
        "failed samples by source and kind: {text}"
    );
    let evaluations = text
        .lines()
        .find_map(|l| l.strip_prefix("lagrate_evaluation_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(evaluations >= 1, "the evaluation was timed: {text}");
}

#[tokio::test]
async fn stream_is_active_pushes_activation_then_ends_with_the_status_when_stale() {
    use futures::StreamExt;
    let s = setup();
    let source = s.factory.group("payments");
    source.set("trades", &[(100, 100)]);
    let o = object("orders", &[("consumerGroup", "payments")]);
    let mut stream = s
        .service
        .stream_is_active(Request::new(o))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.expect("an answer").expect("ok");
    assert!(!first.result, "no lag: inactive");
    source.set("trades", &[(500, 100)]);
    let pushed = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("pushed within a few samples")
        .expect("an answer")
        .expect("ok");
    assert!(pushed.result, "lag appeared: active");
    source.fail("Broker transport failure");
    let ended = tokio::time::timeout(Duration::from_secs(6), stream.next())
        .await
        .expect("ends once stale")
        .expect("a last message");
    let status = ended.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("maxStaleness"),
        "{}",
        status.message()
    );
    assert!(stream.next().await.is_none(), "then the stream ends");
}

#[tokio::test]
async fn an_idle_scaled_object_expires_after_idle_expiry_and_its_sampler_stops() {
    let s = setup_with(config("1s"));
    s.registry.expire_on_a_timer();
    let source = s.factory.group("payments");
    source.set("trades", &[(100, 100)]);
    let o = object("orders", &[("consumerGroup", "payments")]);
    s.service.get_metrics(metrics_request(&o)).await.unwrap();
    assert_eq!(s.registry.expire_idle().await, (1, 1));
    // Calls keep it alive past idleExpiry.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.service.get_metrics(metrics_request(&o)).await.unwrap();
    }
    assert_eq!(s.registry.expire_idle().await, (1, 1), "in use: kept");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reads = source.reads();
    assert_eq!(
        s.registry.expire_idle().await,
        (0, 0),
        "idle for 2.5 s of a 1 s idleExpiry"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(source.reads(), reads, "an expired key is no longer sampled");
}

#[tokio::test]
async fn kafka_calls_are_capped_over_all_keys_and_how_late_sampling_runs_is_exported() {
    let mut config = config("10m");
    config.limits.kafka_concurrency = 2;
    let s = setup_with(config);
    let groups = ["g1", "g2", "g3", "g4", "g5", "g6"];
    for group in groups {
        let source = s.factory.group(group);
        source.set("trades", &[(100, 100)]);
        source.slow(Duration::from_millis(300));
    }
    let calls = groups.iter().map(|group| {
        let o = object(group, &[("consumerGroup", group), ("topic", "trades")]);
        let service = &s.service;
        async move { service.get_metrics(metrics_request(&o)).await.map(|_| ()) }
    });
    for answer in futures::future::join_all(calls).await {
        answer.expect("every key answered, in turn");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        s.factory.most_reads_at_once(),
        2,
        "six keys, two Kafka calls at once"
    );
    let text = s.registry.encode_metrics();
    let bucket = |le: &str| -> u64 {
        let line = format!("lagrate_sample_age_seconds_bucket{{le=\"{le}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    let (on_time, all) = (bucket("0.25"), bucket("+Inf"));
    assert!(all >= 6, "{text}");
    assert!(
        on_time < all,
        "keys that waited for a Kafka slot are counted late: {on_time} of {all} within 0.25 s"
    );
}

#[tokio::test]
async fn beyond_max_inline_clusters_a_new_cluster_is_resource_exhausted() {
    let mut config = Config::parse(
        "allowInlineBootstrapServers: true\nsampling:\n  interval: 1s\n  warmUp: answer\nlimits:\n  maxInlineClusters: 1\n",
    )
    .expect("config parses");
    config.limits.max_source_keys = 10;
    let s = setup_with(config);
    s.factory.group("payments").set("trades", &[(100, 100)]);
    s.factory.group("refunds").set("trades", &[(100, 100)]);
    let on = |name: &str, group: &str, servers: &str| {
        object(
            name,
            &[
                ("bootstrapServers", servers),
                ("consumerGroup", group),
                ("topic", "trades"),
            ],
        )
    };
    let first = on("a", "payments", "10.0.0.1:9092");
    s.service
        .get_metrics(metrics_request(&first))
        .await
        .unwrap();
    // Another group on the same inline cluster needs no new client.
    let same = on("b", "refunds", "10.0.0.1:9092");
    s.service.get_metrics(metrics_request(&same)).await.unwrap();
    let other = on("c", "payments", "10.0.0.2:9092");
    let status = s
        .service
        .get_metrics(metrics_request(&other))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limits.maxInlineClusters (1)"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_config_reload_keeps_the_windows_of_keys_that_still_exist() {
    let s = setup();
    s.factory.group("payments").set("trades", &[(100, 100)]);
    let metadata: HashMap<String, String> = [("consumerGroup", "payments"), ("topic", "trades")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let entry = s
        .registry
        .entry("trading", "orders", &metadata)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let before = entry.sampler().read(|window, _, _| window.len());
    assert!(before >= 3, "{before} samples");
    // An edit that touches no sampling setting: a new policy.
    let mut edited = config("10m");
    edited.policies.insert("calm".into(), Default::default());
    assert_ne!(edited, s.registry.config());
    s.registry.reload(edited);
    let after = s
        .registry
        .entry("trading", "orders", &metadata)
        .await
        .unwrap();
    assert!(
        after.sampler().read(|window, _, _| window.len()) >= before,
        "the window survives the reload"
    );
    assert_eq!(s.factory.made(), 1, "the same sampler, not a new one");
    let answer = s
        .service
        .get_metrics(metrics_request(&object(
            "orders",
            &[("consumerGroup", "payments"), ("topic", "trades")],
        )))
        .await
        .unwrap();
    assert_eq!(answer.get_ref().metric_values[0].metric_value, 0);
}

#[tokio::test]
async fn two_lagrate_triggers_on_one_scaled_object_keep_separate_series_and_decisions() {
    let s = setup();
    s.factory.group("payments").set("trades", &[(200, 100); 4]);
    s.factory.group("refunds").set("trades", &[(100, 100); 4]);
    let payments = object(
        "desk",
        &[
            ("consumerGroup", "payments"),
            ("topic", "trades"),
            ("lagThreshold", "100"),
        ],
    );
    let refunds = object(
        "desk",
        &[
            ("consumerGroup", "refunds"),
            ("topic", "trades"),
            ("lagThreshold", "100"),
        ],
    );
    for o in [&payments, &refunds] {
        s.service.get_metrics(metrics_request(o)).await.unwrap();
    }
    let text = s.registry.encode_metrics();
    for (group, desired) in [("payments", 4), ("refunds", 0)] {
        let series = format!(
            "lagrate_desired_replicas{{scaled_object=\"trading/desk\",consumer_group=\"{group}\",topic=\"trades\"}} {desired}"
        );
        assert!(text.contains(&series), "{series} not in\n{text}");
    }
    // Caught up: the next message has not waited. Behind, from one sample:
    // unknown, so no series.
    let wait = |group: &str| {
        format!(
            "lagrate_estimated_wait_seconds{{scaled_object=\"trading/desk\",consumer_group=\"{group}\",topic=\"trades\"}}"
        )
    };
    assert!(text.contains(&format!("{} 0.0", wait("refunds"))), "{text}");
    assert!(!text.contains(&wait("payments")), "{text}");
    let decisions = s.registry.decisions();
    assert_eq!(
        decisions.keys().collect::<Vec<_>>(),
        [
            "trading/desk (payments/trades)",
            "trading/desk (refunds/trades)"
        ]
    );
    assert_eq!(decisions["trading/desk (payments/trades)"]["desired"], 4);
}

#[tokio::test]
async fn an_open_stream_keeps_its_key_alive_so_a_later_caller_shares_the_sampler() {
    use futures::StreamExt;
    // Samples (and so stream wake-ups) every second, idle after two.
    let s = setup_with(config("2s"));
    s.registry.expire_on_a_timer();
    s.factory.group("payments").set("trades", &[(100, 100)]);
    let streamed = object(
        "streamed",
        &[("consumerGroup", "payments"), ("topic", "trades")],
    );
    let mut stream = s
        .service
        .stream_is_active(Request::new(streamed))
        .await
        .unwrap()
        .into_inner();
    stream.next().await.expect("an answer").expect("ok");
    // Only the stream, for two and a half idleExpiry periods.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        s.registry.expire_idle().await,
        (1, 1),
        "the stream keeps it"
    );
    let polled = object(
        "polled",
        &[("consumerGroup", "payments"), ("topic", "trades")],
    );
    s.service
        .get_metrics(metrics_request(&polled))
        .await
        .unwrap();
    assert_eq!(s.factory.made(), 1, "one sampler per key, not a second");
    assert_eq!(s.registry.expire_idle().await, (2, 1));
}

#[tokio::test]
async fn a_key_that_keeps_failing_backs_off_is_reported_and_leaves_the_others_alone() {
    let s = setup();
    let bad = s.factory.group("broken");
    let good = s.factory.group("payments");
    bad.set("trades", &[(100, 100)]);
    good.set("trades", &[(100, 100)]);
    let broken = object(
        "broken",
        &[("consumerGroup", "broken"), ("topic", "trades")],
    );
    let fine = object(
        "fine",
        &[("consumerGroup", "payments"), ("topic", "trades")],
    );
    for o in [&broken, &fine] {
        s.service.get_metrics(metrics_request(o)).await.unwrap();
    }
    bad.fail("GROUP_AUTHORIZATION_FAILED");
    let (bad_before, good_before) = (bad.reads(), good.reads());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (bad_reads, good_reads) = (bad.reads() - bad_before, good.reads() - good_before);
    assert!(
        good_reads >= 9,
        "the healthy key sampled every second: {good_reads}"
    );
    assert!(
        bad_reads <= 6,
        "the failing key backs off (3 failures, then every 2nd, 4th, 6th second): {bad_reads} reads in 10 s"
    );
    s.service.get_metrics(metrics_request(&fine)).await.unwrap();
    let text = s.registry.encode_metrics();
    assert!(
        text.contains(r#"lagrate_source_failures{consumer_group="payments"} 0"#),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with(r#"lagrate_source_failures{consumer_group="broken"} "#)
                && !l.ends_with(" 0")
        ),
        "{text}"
    );
    let decisions = s.registry.decisions();
    let sampling = &decisions["trading/broken"]["sampling"];
    assert!(
        sampling["consecutiveFailures"].as_u64().unwrap() >= 3,
        "{sampling}"
    );
    assert!(
        sampling["lastError"]
            .as_str()
            .unwrap()
            .contains("GROUP_AUTHORIZATION_FAILED"),
        "{sampling}"
    );
    assert_eq!(
        decisions["trading/fine"]["sampling"]["consecutiveFailures"],
        0
    );
}
