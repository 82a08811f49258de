//! `lagrate serve` against a real tansu broker (and a real Prometheus),
//! called over gRPC the way KEDA calls it.
// Each test is a scenario against real processes, read top to bottom.
#![allow(clippy::too_many_lines)]
// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lagrate_proto::external_scaler_client::ExternalScalerClient;
use lagrate_proto::{GetMetricsRequest, ScaledObjectRef};
use testbed::{Lagrate, Prometheus, Tansu, eventually, scaled_object, unique};
use tonic::transport::Channel;

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

/// One replica that answers from its first sample (`warmUp: answer`); the
/// two-replica test takes the deployed default.
fn config(bootstrap: &str, extra: &str) -> String {
    format!(
        "sampling:\n  interval: 1s\n  maxStaleness: 4s\n  kafkaTimeout: 2s\n  warmUp: answer\nclusters:\n  local:\n    bootstrapServers: [\"{bootstrap}\"]\n    auth: {{ mechanism: none }}\n{extra}"
    )
}

async fn client(lagrate: &Lagrate) -> ExternalScalerClient<Channel> {
    ExternalScalerClient::connect(lagrate.grpc_url())
        .await
        .expect("connect to lagrate")
}

async fn metric(
    client: &mut ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
) -> Result<f64, tonic::Status> {
    let response = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(object.clone()),
            metric_name: "lagrate-test".into(),
        })
        .await?
        .into_inner();
    let value = &response.metric_values[0];
    assert_eq!(
        value.metric_value as f64, value.metric_value_float,
        "integer and float fields agree"
    );
    assert_eq!(
        value.metric_name, "lagrate-test",
        "the metric name KEDA asked for comes back"
    );
    Ok(value.metric_value_float)
}

/// Polls GetMetrics until it returns `want` (samples arrive every second).
async fn metric_becomes(
    client: &mut ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
    want: f64,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        match metric(client, object).await {
            Ok(v) if v == want => return,
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("GetMetrics did not become {want}; last answer {last:?}");
}

/// A topic with `partitions` partitions, each committed at offset 0 by `group`.
fn committed_topic(broker: &Tansu, partitions: i32) -> (String, String) {
    let topic = unique("orders");
    let group = unique("workers");
    broker.create_topic(&topic, partitions);
    broker.commit(&group, &topic, &(0..partitions).map(|p| (p, 0)).collect());
    (topic, group)
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_over_threshold_matches_keda_and_caps_at_partitions() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 24);
    broker.produce(&topic, 0..24, 40);
    broker.produce(&topic, [0], 40); // lag 1000
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let object = scaled_object(
        "orders",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
            ("lagThreshold", "100"),
        ],
    );

    let spec = client
        .get_metric_spec(object.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(
        spec.metric_specs[0].target_size_float, 1.0,
        "AverageValue target 1: value = replicas"
    );
    assert_eq!(spec.metric_specs[0].target_size, 1);

    assert_eq!(
        metric(&mut client, &object).await.unwrap(),
        10.0,
        "ceil(1000 / 100)"
    );
    assert!(is_active(&mut client, &object).await.unwrap());

    broker.produce(&topic, 0..24, 375); // lag 10000: 100 pods by lag, 24 partitions
    metric_becomes(&mut client, &object, 24.0).await;

    // A group first seen at lag 10000: KEDA would ask for 100 pods when idle
    // consumers are allowed.
    let other_group = unique("auditors");
    broker.commit(&other_group, &topic, &(0..24).map(|p| (p, 0)).collect());
    let idle_ok = scaled_object(
        "audit",
        &[
            ("cluster", "local"),
            ("consumerGroup", &other_group),
            ("topic", &topic),
            ("lagThreshold", "100"),
            ("allowIdleConsumers", "true"),
        ],
    );
    assert_eq!(
        metric(&mut client, &idle_ok).await.unwrap(),
        100.0,
        "allowIdleConsumers lifts the cap"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_partitions_follow_offset_reset_policy() {
    let broker = Tansu::start();
    let topic = unique("payments");
    let group = unique("settlement");
    broker.create_topic(&topic, 4);
    broker.produce(&topic, 0..4, 50);
    broker.commit(&group, &topic, &HashMap::from([(0, 50)]));
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let base = [
        ("cluster", "local"),
        ("consumerGroup", group.as_str()),
        ("topic", topic.as_str()),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all: Vec<(&str, &str)> = base.to_vec();
        all.extend_from_slice(extra);
        scaled_object("settlement", &all)
    };

    // latest: each uncommitted partition counts lag 1.
    assert_eq!(
        metric(&mut client, &with(&[("lagThreshold", "1")]))
            .await
            .unwrap(),
        3.0
    );
    // ... or 0 with scaleToZeroOnInvalidOffset, and then nothing activates.
    let zero = with(&[
        ("lagThreshold", "1"),
        ("scaleToZeroOnInvalidOffset", "true"),
    ]);
    assert_eq!(metric(&mut client, &zero).await.unwrap(), 0.0);
    assert!(!is_active(&mut client, &zero).await.unwrap());
    // earliest: their whole log, 150 messages.
    let earliest = with(&[
        ("lagThreshold", "10"),
        ("offsetResetPolicy", "earliest"),
        ("allowIdleConsumers", "true"),
    ]);
    assert_eq!(metric(&mut client, &earliest).await.unwrap(), 15.0);
    let capped = with(&[("lagThreshold", "10"), ("offsetResetPolicy", "earliest")]);
    assert_eq!(
        metric(&mut client, &capped).await.unwrap(),
        4.0,
        "capped at 4 partitions"
    );
    let lagging = with(&[
        ("lagThreshold", "10"),
        ("offsetResetPolicy", "earliest"),
        ("limitToPartitionsWithLag", "true"),
    ]);
    assert_eq!(
        metric(&mut client, &lagging).await.unwrap(),
        3.0,
        "capped at the 3 partitions with lag"
    );
}

/// IsActive's answer for `object`.
async fn is_active(
    client: &mut ExternalScalerClient<Channel>,
    object: &ScaledObjectRef,
) -> Result<bool, tonic::Status> {
    Ok(client.is_active(object.clone()).await?.into_inner().result)
}

/// The next StreamIsActive push, within 10 s.
async fn next_push(
    stream: &mut tonic::Streaming<lagrate_proto::IsActiveResponse>,
) -> lagrate_proto::IsActiveResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no push within 10s")
        .expect("the stream answers")
        .expect("the stream is open")
}

/// A ScaledObject on `group` and `topic` activated by a lag above 5.
fn ledger(group: &str, topic: &str) -> ScaledObjectRef {
    scaled_object(
        "ledger",
        &[
            ("cluster", "local"),
            ("consumerGroup", group),
            ("topic", topic),
            ("activationLagThreshold", "5"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn activation_is_pushed_when_lag_appears_on_an_idle_group() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 3);
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let object = ledger(&group, &topic);
    assert!(!is_active(&mut client, &object).await.unwrap());
    let mut stream = client
        .stream_is_active(object.clone())
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(
        !first.result,
        "the stream opens with the current activation"
    );

    broker.produce(&topic, [1], 5); // at the threshold: still idle
    broker.produce(&topic, [2], 1);
    let produced = Instant::now();
    let pushed = next_push(&mut stream).await;
    assert!(pushed.result);
    // One sample interval (1s) plus the sample itself.
    assert!(
        produced.elapsed() < Duration::from_secs(3),
        "pushed after {:?}",
        produced.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warming_up_replica_activates_from_its_first_sample_but_withholds_its_metric() {
    // tansu reports no member count and the trigger names no scaleTarget:
    // with the deployed default (warmUp: unavailable) GetMetrics waits for
    // the window, but activation needs one sample.
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 3);
    let deployed = config(&broker.bootstrap(), "").replace("  warmUp: answer\n", "");
    let lagrate = Lagrate::start(LAGRATE, &deployed);
    let mut client = client(&lagrate).await;
    let object = ledger(&group, &topic);
    // No work yet: a starting replica cannot tell idle from a window it
    // has not seen, and says so rather than guessing inactive.
    let idle = is_active(&mut client, &object).await.unwrap_err();
    assert_eq!(idle.code(), tonic::Code::Unavailable, "{idle:?}");
    let mut stream = client
        .stream_is_active(object.clone())
        .await
        .unwrap()
        .into_inner();

    broker.produce(&topic, [0], 20);
    let produced = Instant::now();
    let pushed = next_push(&mut stream).await;
    assert!(pushed.result, "activated by the lag of one sample");
    assert!(
        produced.elapsed() < Duration::from_secs(3),
        "one sample interval (1s) and the sample itself; pushed after {:?}",
        produced.elapsed()
    );
    assert!(is_active(&mut client, &object).await.unwrap());
    let withheld = metric(&mut client, &object).await.unwrap_err();
    assert_eq!(withheld.code(), tonic::Code::Unavailable);
    assert!(
        withheld.message().contains("has not yet sampled"),
        "{}",
        withheld.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_metadata_is_invalid_argument_naming_the_key() {
    let broker = Tansu::start();
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("consumerGroup", "g"), ("lagThreshold", "abc")],
            "lagThreshold must be a number > 0, got \"abc\"",
        ),
        (
            &[("consumerGroup", "g"), ("lagThreshold", "0")],
            "lagThreshold",
        ),
        (
            &[("consumerGroup", "g"), ("offsetResetPolicy", "newest")],
            "offsetResetPolicy must be latest or earliest",
        ),
        (
            &[("consumerGroup", "g"), ("allowIdleConsumers", "yes")],
            "allowIdleConsumers must be true or false",
        ),
        (
            &[("consumerGroup", "g"), ("colour", "blue")],
            "unknown key colour",
        ),
        (&[("lagThreshold", "5")], "consumerGroup is required"),
        (
            &[("consumerGroup", "g"), ("cluster", "prod")],
            "cluster \"prod\" is not in the scaler config",
        ),
        (
            &[
                ("consumerGroup", "g"),
                ("bootstrapServers", "10.1.1.1:9092"),
            ],
            "bootstrapServers",
        ),
        (
            &[
                ("consumerGroup", "g"),
                ("allowIdleConsumers", "true"),
                ("limitToPartitionsWithLag", "true"),
            ],
            "cannot both be true",
        ),
        (
            &[("consumerGroup", "g"), ("topic", "a\"} or vector(1)")],
            "not a legal Kafka topic name",
        ),
        (
            &[("consumerGroup", "g"), ("policy", "turbo")],
            "policy \"turbo\"",
        ),
    ];
    for (metadata, message) in cases {
        let object = scaled_object("bad", metadata);
        let status = metric(&mut client, &object).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{metadata:?}: {status:?}"
        );
        assert!(
            status.message().contains(message),
            "{metadata:?}: {:?} lacks {message:?}",
            status.message()
        );
        let status = client.get_metric_spec(object.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let status = is_active(&mut client, &object).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}

/// Serves MSK open monitoring's inbound counter for `topic`, rising at
/// `rate_per_s`, for Prometheus to scrape.
fn fake_msk_exporter(topic: String, rate_per_s: f64) -> (SocketAddr, Arc<AtomicBool>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let count = started.elapsed().as_secs_f64() * rate_per_s;
            let body = format!(
                "# TYPE kafka_server_BrokerTopicMetrics_Count counter\nkafka_server_BrokerTopicMetrics_Count{{name=\"MessagesInPerSec\",topic=\"{topic}\"}} {count}\n"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, stop)
}

fn decision_of(lagrate: &Lagrate, object: &str) -> Option<serde_json::Value> {
    let (status, body) = lagrate.http_get("/debug/decisions");
    if status != 200 {
        return None;
    }
    let all: serde_json::Value = serde_json::from_str(&body).ok()?;
    all.get(object).cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_rate_is_used_and_offsets_take_over_when_it_stops() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 6);
    // Two brokers, 300 msg/s each.
    let (broker_1, stop_broker_1) = fake_msk_exporter(topic.clone(), 300.0);
    let (broker_2, _stop_broker_2) = fake_msk_exporter(topic.clone(), 300.0);
    let prometheus = Prometheus::start(&[broker_1, broker_2]);
    let lagrate = Lagrate::start(
        LAGRATE,
        &config(
            &broker.bootstrap(),
            &format!(
                "prometheus:\n  url: {}\n  timeout: 900ms\n  rateQuery: '{}'\n",
                prometheus.url(),
                // MSK's series with a short window, so the test need not wait a minute.
                r#"rate(kafka_server_BrokerTopicMetrics_Count{name="MessagesInPerSec",topic="<topic>"}[5s])"#
            ),
        ),
    );
    let mut client = client(&lagrate).await;
    let object = scaled_object(
        "trades",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
            ("podCapacity", "100"),
            ("headroom", "0"),
        ],
    );
    // 600 msg/s at 100 per pod: several pods, seen only through Prometheus.
    // The topic itself gets a trickle (about 20 msg/s): traffic, but far
    // below what Prometheus reports.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        broker.produce(&topic, 0..6, 1);
        let value = metric(&mut client, &object).await.unwrap();
        let d = decision_of(&lagrate, "test/trades").unwrap();
        let source = d["evaluation"]["observation"]["rateSource"]
            .as_str()
            .unwrap()
            .to_owned();
        // One series per broker, once both brokers have been scraped twice.
        let series =
            lagrate.metric_value(&format!("lagrate_prometheus_series{{topic=\"{topic}\"}}"));
        if value >= 3.0 && source == "prometheus" && series == Some(2.0) {
            // Only Prometheus can have said so.
            let rate = d["evaluation"]["observation"]["inboundRatePerS"]
                .as_f64()
                .unwrap();
            assert!((100.0..=700.0).contains(&rate), "rate {rate}");
            assert!(
                d["reason"].as_str().unwrap().contains("from prometheus"),
                "{d}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus rate never used: {value} {d}\n{}",
            lagrate.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A broker stops answering its scrapes: the sum misses it, and lagrate says so.
    stop_broker_1.store(true, Ordering::Relaxed);
    eventually(Duration::from_secs(20), "one series fewer", || {
        (lagrate.metric_value(&format!("lagrate_prometheus_series{{topic=\"{topic}\"}}"))
            == Some(1.0))
        .then_some(())
    });
    assert!(
        lagrate
            .logs()
            .contains("the inbound-rate query returned a different number of series"),
        "{}",
        lagrate.logs()
    );

    drop(prometheus);
    broker.produce(&topic, 0..6, 10);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            metric(&mut client, &object).await.is_ok(),
            "still answering without Prometheus"
        );
        let d = decision_of(&lagrate, "test/trades").unwrap();
        if d["evaluation"]["observation"]["rateSource"] == "offsets-prometheus-down" {
            assert!(
                d["reason"]
                    .as_str()
                    .unwrap()
                    .contains("offsets (prometheus unavailable)"),
                "{d}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "offsets never took over: {d}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, metrics) = lagrate.http_get("/metrics");
    assert!(
        metrics.contains(&format!(
            "lagrate_rate_from_offsets{{scaled_object=\"test/trades\",consumer_group=\"{group}\",topic=\"{topic}\"}} 1"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_serves_last_decision_then_unavailable_then_recovers() {
    let mut broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 4);
    broker.produce(&topic, 0..4, 100);
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let object = scaled_object(
        "risk",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
            ("lagThreshold", "100"),
        ],
    );
    assert_eq!(metric(&mut client, &object).await.unwrap(), 4.0);

    broker.stop();
    let stopped = Instant::now();
    // Fresher than maxStaleness (4s): the last decision.
    assert_eq!(metric(&mut client, &object).await.unwrap(), 4.0);
    let status = loop {
        match metric(&mut client, &object).await {
            Ok(v) => assert_eq!(v, 4.0),
            Err(status) => break status,
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "never became Unavailable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("maxStaleness"),
        "{}",
        status.message()
    );
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "stale only after maxStaleness"
    );

    broker.restart();
    metric_becomes(&mut client, &object, 4.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_reload_applies_valid_changes_and_keeps_last_good_on_errors() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 8);
    broker.produce(&topic, 0..8, 50); // lag 400
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let object = scaled_object(
        "fx",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
            ("policy", "burst"),
            ("lagThreshold", "100"),
        ],
    );
    let status = metric(&mut client, &object).await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "policy burst is not configured yet"
    );

    // A valid change: the policy appears (rate-aware, 50 msg/s per pod,
    // backlog drained within 6 s of the pods consuming: one pod takes 8 s
    // over the 400 waiting, two take 4 s).
    let with_policy = config(
        &broker.bootstrap(),
        "policies:\n  burst:\n    podCapacity: 50\n    drainSeconds: 6\n    headroom: 0\n",
    );
    lagrate.write_config(&with_policy);
    metric_becomes(&mut client, &object, 2.0).await;
    let (_, metrics) = lagrate.http_get("/metrics");
    assert!(
        metrics.contains("lagrate_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );

    // A broken change is rejected; the last good config stays.
    lagrate.write_config("sampling:\n  interval: sometimes\n");
    eventually(Duration::from_secs(10), "the rejection metric", || {
        let (_, metrics) = lagrate.http_get("/metrics");
        metrics.contains("lagrate_config_valid 0").then_some(())
    });
    assert_eq!(metric(&mut client, &object).await.unwrap(), 2.0);
    assert!(
        lagrate.logs().contains("config rejected"),
        "the log says why"
    );
    assert!(
        lagrate.logs().contains("sampling.interval"),
        "the log names the field"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_queried_alternately_agree_while_lag_falls_and_after_a_restart() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 12);
    broker.produce(&topic, 0..12, 100); // lag 1200
    let policy = "policies:\n  default:\n    startupSeconds: 1\n    rebalanceSeconds: 1\n    waitObjectiveSeconds: 1\n    maxScaleDownStep: 1\n";
    // Two replicas as deployed: the default warm-up (Unavailable while a
    // replica cannot see the group's size).
    let deployed = config(&broker.bootstrap(), policy).replace("  warmUp: answer\n", "");
    let a = Lagrate::start(LAGRATE, &deployed);
    let mut b = a.replica();
    let object = scaled_object(
        "books",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
            ("lagThreshold", "100"),
        ],
    );

    /// Queries a, then b, `rounds` times; returns a's answers and how many
    /// of b's were Unavailable (a replica that has just started and sees no
    /// member count may say so; it may not guess).
    async fn alternate(
        a: &Lagrate,
        b: &Lagrate,
        object: &ScaledObjectRef,
        rounds: usize,
    ) -> (Vec<f64>, usize) {
        let mut ca = client(a).await;
        let mut cb = client(b).await;
        let mut seen = Vec::new();
        // Two replicas read the broker at the same grid instants, but a read
        // delayed past a commit can see it one sample earlier than the
        // other: they may differ for at most one sample interval (1 s),
        // never longer.
        let mut disagreeing_since: Option<Instant> = None;
        let mut unavailable = 0;
        for _ in 0..rounds {
            let va = metric(&mut ca, object).await.unwrap();
            let vb = match metric(&mut cb, object).await {
                Ok(v) => v,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    assert!(
                        status.message().contains("has not yet sampled"),
                        "{status:?}"
                    );
                    unavailable += 1;
                    va
                }
                Err(status) => panic!("replica b failed: {status:?}"),
            };
            if va == vb {
                disagreeing_since = None;
            } else {
                let since = *disagreeing_since.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < Duration::from_millis(1500),
                    "replicas disagree for over a sample interval: a {va}, b {vb}"
                );
            }
            seen.push(va);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert!(
            disagreeing_since.is_none(),
            "replicas still disagree at the end"
        );
        (seen, unavailable)
    }

    // Both replicas start together; the first call starts their sampling.
    // Their first history (3 s) has no answer, then they answer alike.
    for replica in [&a, &b] {
        let _ = metric(&mut client(replica).await, &object).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Let both fill a window, then let the lag fall in steps. After each
    // step both see the same samples; they must answer alike throughout,
    // including while the scale-down waits out its stabilization window.
    let mut answers = Vec::new();
    let mut unavailable_after_restart = 0;
    for consumed in [300, 600, 900] {
        // One replica restarts while the lag falls: it answers Unavailable
        // through its first history (3 s), never a guess, then what the
        // other answers.
        if consumed == 900 {
            b.restart();
        }
        broker.commit(
            &group,
            &topic,
            &(0..12).map(|p| (p, consumed as i64 / 12)).collect(),
        );
        if consumed < 900 {
            tokio::time::sleep(Duration::from_millis(2200)).await;
        }
        let (seen, unavailable) = alternate(&a, &b, &object, 30).await;
        if consumed == 900 {
            unavailable_after_restart = unavailable;
        } else {
            assert_eq!(unavailable, 0, "both have a full window");
        }
        answers.extend(seen);
    }
    assert_eq!(answers.first(), Some(&12.0), "held during stabilization");
    assert_eq!(
        answers.last(),
        Some(&3.0),
        "scaled down to ceil(300 / 100) in the end: {answers:?}"
    );

    assert!(
        (1..25).contains(&unavailable_after_restart),
        "{unavailable_after_restart} of 30 answers Unavailable after the restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_scaled_objects_on_one_source_key_share_one_offset_query_per_interval() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 4);
    let lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    let mut client = client(&lagrate).await;
    let objects: Vec<_> = (0..5)
        .map(|i| {
            scaled_object(
                &format!("consumer-{i}"),
                &[
                    ("cluster", "local"),
                    ("consumerGroup", &group),
                    ("topic", &topic),
                    ("lagThreshold", &format!("{}", 10 + i)),
                ],
            )
        })
        .collect();
    for o in &objects {
        metric(&mut client, o).await.unwrap();
    }
    let queries = || -> f64 {
        let (_, m) = lagrate.http_get("/metrics");
        m.lines()
            .find(|l| l.starts_with("lagrate_offset_queries_total"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap()
    };
    let before = queries();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(4) {
        for o in &objects {
            metric(&mut client, o).await.unwrap();
            calls += 1;
        }
    }
    let during = queries() - before;
    assert!(calls > 50, "only {calls} calls");
    assert!(
        (3.0..=6.0).contains(&during),
        "{during} offset queries in 4s at a 1s interval for {calls} calls"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_endpoints_and_graceful_shutdown() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 2);
    let mut lagrate = Lagrate::start(LAGRATE, &config(&broker.bootstrap(), ""));
    assert_eq!(lagrate.http_get("/healthz").0, 200);
    assert_eq!(
        lagrate.http_get("/readyz").0,
        200,
        "the configured cluster answers"
    );
    let mut client = client(&lagrate).await;
    let object = scaled_object(
        "desk",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
        ],
    );
    metric(&mut client, &object).await.unwrap();
    let d = decision_of(&lagrate, "test/desk").expect("decision listed");
    assert!(
        d["reason"].as_str().unwrap().contains("lagThreshold"),
        "{d}"
    );
    assert_eq!(d["desired"], 0);
    let (_, metrics) = lagrate.http_get("/metrics");
    assert!(
        metrics.contains(&format!(
            "lagrate_desired_replicas{{scaled_object=\"test/desk\",consumer_group=\"{group}\",topic=\"{topic}\"}} 0"
        )),
        "{metrics}"
    );

    // An open stream must not hold up shutdown.
    let _stream = client.stream_is_active(object).await.unwrap();
    let started = Instant::now();
    let status = lagrate.terminate();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let idle = Lagrate::start(LAGRATE, &config("127.0.0.1:1", ""));
    assert_eq!(idle.http_get("/readyz").0, 503, "no source reachable");
}

/// A caller that connects and says nothing, or sends half a request, holds
/// neither a listener nor shutdown: beyond LAGRATE_MAX_CONNECTIONS callers
/// wait their turn, and SIGTERM ends lagrate within LAGRATE_DRAIN_TIMEOUT
/// whatever the open connections do.
#[test]
fn silent_and_half_open_connections_neither_exhaust_nor_block_shutdown() {
    use std::io::Write;
    let mut lagrate = Lagrate::start_with_env(
        LAGRATE,
        &config("127.0.0.1:1", ""),
        vec![
            ("LAGRATE_MAX_CONNECTIONS", "2".into()),
            ("LAGRATE_DRAIN_TIMEOUT", "2s".into()),
        ],
    );
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], lagrate.http_port));
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], lagrate.grpc_port));
    let silent_grpc = std::net::TcpStream::connect(grpc).unwrap();
    let mut half = std::net::TcpStream::connect(http).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: lagrate\r\n")
        .unwrap();
    let silent_http = std::net::TcpStream::connect(http).unwrap();
    // Two connections are open on the HTTP listener: a third caller waits.
    let waiting = std::thread::spawn(move || testbed::http_get(http, "/healthz").0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !waiting.is_finished(),
        "a third connection is served only when one closes"
    );
    drop(silent_http);
    assert_eq!(waiting.join().unwrap(), 200, "served once a place is free");

    let started = Instant::now();
    let status = lagrate.terminate();
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?} with a silent and a half-open connection"
    );
    assert!(
        lagrate.logs().contains("drain deadline"),
        "{}",
        lagrate.logs()
    );
    drop((silent_grpc, half));
}

/// A stand-in for a Prometheus server that misbehaves: it accepts queries
/// and then never answers (`hang`), or answers with a body of `huge` bytes.
fn misbehaving_prometheus(huge: Option<usize>) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match huge {
                None => held.push(stream),
                Some(size) => {
                    let padding = " ".repeat(size);
                    let body = format!(
                        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"100"]}}]}}{padding}}}"#
                    );
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}"
                    );
                }
            }
        }
    });
    addr
}

/// Samples of lagrate's /metrics landing within 0.5 s of their grid
/// instant, and all of them.
fn samples_on_time(lagrate: &Lagrate) -> (u64, u64) {
    let (_, text) = lagrate.http_get("/metrics");
    let bucket = |le: &str| -> u64 {
        let line = format!("lagrate_sample_age_seconds_bucket{{le=\"{le}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (bucket("0.5"), bucket("+Inf"))
}

/// A Prometheus that hangs, or answers far too much, costs the rate only:
/// Kafka samples land on time, every GetMetrics is answered from fresh
/// offsets, and the rate comes from offsets.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_or_oversized_prometheus_never_delays_kafka_samples() {
    let broker = Tansu::start();
    let (topic, group) = committed_topic(&broker, 2);
    for (case, prometheus) in [
        ("hung", misbehaving_prometheus(None)),
        ("oversized", misbehaving_prometheus(Some(4 << 20))),
    ] {
        let lagrate = Lagrate::start(
            LAGRATE,
            &config(
                &broker.bootstrap(),
                &format!("prometheus:\n  url: http://{prometheus}\n  timeout: 900ms\n"),
            ),
        );
        let mut client = client(&lagrate).await;
        let object = scaled_object(
            "desk",
            &[
                ("cluster", "local"),
                ("consumerGroup", &group),
                ("topic", &topic),
            ],
        );
        for _ in 0..12 {
            metric(&mut client, &object)
                .await
                .unwrap_or_else(|e| panic!("{case}: GetMetrics failed: {e}"));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let (on_time, all) = samples_on_time(&lagrate);
        assert!(all >= 4, "{case}: {all} samples");
        assert_eq!(on_time, all, "{case}: samples late because of Prometheus");
        let d = decision_of(&lagrate, "test/desk").expect("decision listed");
        assert_eq!(
            d["evaluation"]["observation"]["rateSource"], "offsets-prometheus-down",
            "{case}: {d}"
        );
        let rss = lagrate.rss_bytes().unwrap_or(0);
        assert!(rss < 64 << 20, "{case}: RSS {rss} bytes");
    }
}

/// A caller that connects and sends nothing is disconnected after 10 s, so
/// silent connections cannot hold every place under the cap.
#[test]
fn a_silent_caller_is_disconnected() {
    use std::io::Read;
    let lagrate = Lagrate::start(LAGRATE, &config("127.0.0.1:1", ""));
    let started = Instant::now();
    let silent: Vec<(u16, std::net::TcpStream)> = [lagrate.grpc_port, lagrate.http_port]
        .into_iter()
        .map(|port| {
            let s = std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            (port, s)
        })
        .collect();
    for (port, stream) in silent {
        // gRPC's server speaks first (its HTTP/2 settings): read to the end.
        let mut received = Vec::new();
        let read = (&stream).read_to_end(&mut received);
        let waited = started.elapsed();
        assert!(
            read.is_ok() && (Duration::from_secs(9)..Duration::from_secs(15)).contains(&waited),
            "port {port}: {read:?} after {waited:?}"
        );
    }
}

/// Out of file descriptors, lagrate pauses between failed accepts instead
/// of spinning on them (which starved the samplers), and serves again once
/// connections close.
#[test]
fn out_of_file_descriptors_accept_failures_do_not_spin() {
    let lagrate = Lagrate::start_with_open_files(LAGRATE, &config("127.0.0.1:1", ""), 64);
    let http = SocketAddr::from(([127, 0, 0, 1], lagrate.http_port));
    let pid = lagrate.pid().expect("running");
    let cpu_seconds = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    // Far more connections than the server has descriptors left.
    let held: Vec<std::net::TcpStream> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(http).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_seconds();
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds() - before;
    assert!(
        used < 0.5,
        "{used:.2} CPU seconds in 3 s with descriptors exhausted ({} connections held)",
        held.len()
    );
    assert!(
        lagrate.logs().contains("accept failed; pausing"),
        "{}",
        lagrate.logs()
    );
    drop(held);
    eventually(Duration::from_secs(10), "served again", || {
        (testbed::http_get(http, "/healthz").0 == 200).then_some(())
    });
}
