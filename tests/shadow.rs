//! Shadow mode against real processes: trade-producer loads a real tansu
//! broker, a real Prometheus scrapes the producer, and `lagrate serve`
//! watches the group as a shadow target without KEDA calling it.
// Each test is a scenario against real processes, read top to bottom.
#![allow(clippy::too_many_lines)]
// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use lagrate::shadow::{KedaTrigger, keda_of, keda_step};
use testbed::{
    Lagrate, Process, Prometheus, Tansu, eventually, free_port, unique, workspace_binary,
};

fn shadow_json(lagrate: &Lagrate) -> serde_json::Value {
    let (status, body) = lagrate.http_get("/debug/shadow");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn a_shadow_target_shows_lagrate_beside_keda_from_the_same_samples() {
    let broker = Tansu::start();
    let topic = unique("payments");
    let group = unique("payments-consumer");
    broker.create_topic(&topic, 6);
    broker.commit(
        &group,
        &topic,
        &(0..6).map(|p| (p, 0)).collect::<HashMap<_, _>>(),
    );
    let producer_port = free_port();
    let _producer = Process::start(
        workspace_binary("trade-producer").to_str().expect("path"),
        &["--rate", "200"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topic.clone()),
            ("METRICS_PORT", producer_port.to_string()),
        ],
    );
    // One consumer of ~100 msg/s in the group: the load needs two.
    let consumer_port = free_port();
    let _consumer = Process::start(
        workspace_binary("trade-consumer").to_str().expect("path"),
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topic.clone()),
            ("CONSUMER_GROUP", group.clone()),
            ("DLQ_TOPIC", format!("{topic}-dlq")),
            ("BATCH_PROCESSING_TIME", "1".into()),
            ("METRICS_PORT", consumer_port.to_string()),
        ],
    );
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let prometheus = Prometheus::start(&[local(producer_port), local(consumer_port)]);
    let config = format!(
        r#"sampling:
  interval: 1s
  maxStaleness: 10s
clusters:
  local:
    bootstrapServers: ["{bootstrap}"]
prometheus:
  url: {prometheus}
  rateQuery: 'sum(rate(trade_producer_messages_sent_total{{topic="<topic>"}}[5s]))'
  timeout: 800ms
shadow:
  - name: payments
    consumerGroup: {group}
    topic: {topic}
    metadata: {{ podCapacity: "100" }}
    actualQuery: count(kafka_consumer_busy_seconds_total)
    keda: {{ lagThreshold: 100, pollingInterval: 2, cooldownPeriod: 10, maxReplicaCount: 6 }}
  - name: broken
    consumerGroup: {group}
    keda: {{ lagThreshold: -5 }}
"#,
        bootstrap = broker.bootstrap(),
        prometheus = prometheus.url(),
    );
    let lagrate = Lagrate::start(workspace_binary("lagrate").to_str().expect("path"), &config);

    // One pod for 200 msg/s: lag grows, lagrate and KEDA's trigger both
    // want more pods than the one running.
    let shadow = eventually(Duration::from_secs(60), "a dozen shadow samples", || {
        let json = shadow_json(&lagrate);
        let history = json["targets"]["payments"]["history"].as_array()?;
        let sized = history.last()?["replicas"]["actual"] == 1;
        (history.len() >= 12 && sized).then_some(json)
    });
    let rejected = shadow["rejected"].as_array().expect("rejected list");
    assert_eq!(rejected.len(), 1, "{shadow}");
    assert!(
        rejected[0]
            .as_str()
            .unwrap()
            .starts_with("shadow[1].keda.lagThreshold"),
        "{rejected:?}"
    );
    let payments = &shadow["targets"]["payments"];
    assert!(payments["error"].is_null(), "{payments}");
    let latest = &payments["latest"];
    assert!(latest["lag"].as_f64().unwrap() > 0.0, "{latest}");
    assert!(
        latest["replicas"]["lagrate"].as_u64().unwrap() >= 2,
        "{latest}"
    );
    assert!(
        latest["replicas"]["keda"].as_u64().unwrap() >= 1,
        "{latest}"
    );
    // tansu does not answer DescribeGroups: the size comes from actualQuery.
    assert_eq!(latest["replicas"]["actual"], 1, "{latest}");
    assert!(
        payments["podSeconds"]["keda"].as_f64().unwrap() > 0.0,
        "{payments}"
    );

    // The KEDA series is the simulator's KEDA and HPA on the same samples.
    let trigger = KedaTrigger {
        lag_threshold: 100.0,
        min_replica_count: 0,
        max_replica_count: 6,
        polling_interval: 2.0,
        cooldown_period: 10.0,
    };
    let history = payments["history"].as_array().unwrap();
    let mut keda = keda_of(&trigger);
    // KEDA starts from the group's size at the first sample.
    let mut current = history[0]["replicas"]["actual"].as_u64().unwrap_or(0) as u32;
    for point in history {
        let t = point["t"].as_f64().unwrap();
        let lag = point["lag"].as_f64().unwrap();
        let partitions = point["partitions"].as_u64().unwrap() as u32;
        current = keda_step(&mut keda, &trigger, (t, current), (lag, partitions));
        assert_eq!(
            u64::from(current),
            point["replicas"]["keda"].as_u64().unwrap(),
            "at {t}: {point}"
        );
    }

    let (_, metrics) = lagrate.http_get("/metrics");
    for series in [
        r#"lagrate_shadow_replicas{target="payments",source="lagrate"}"#,
        r#"lagrate_shadow_replicas{target="payments",source="keda"}"#,
        r#"lagrate_shadow_replicas{target="payments",source="actual"} 1"#,
        r#"lagrate_shadow_pod_seconds_total{target="payments",source="keda"}"#,
        r#"lagrate_shadow_estimated_wait_seconds{target="payments",source="lagrate"}"#,
        "lagrate_shadow_rejected_entries 1",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }

    // A reload that drops the target drops its series; the config is live.
    lagrate.write_config(&config.replace("name: payments", "name: refunds"));
    eventually(Duration::from_secs(20), "the renamed target", || {
        let json = shadow_json(&lagrate);
        (json["targets"].get("payments").is_none()
            && json["targets"]["refunds"]["history"].as_array()?.len() >= 2)
            .then_some(())
    });
    let (_, metrics) = lagrate.http_get("/metrics");
    assert!(!metrics.contains(r#"target="payments""#), "{metrics}");
}
