//! trade-producer's rate, measured by what the broker received.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::Duration;

use testbed::{Process, Tansu, free_port, http_get, unique};

const PRODUCER: &str = env!("CARGO_BIN_EXE_trade-producer");

fn env(broker: &Tansu, topic: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", topic.to_owned()),
        ("METRICS_PORT", port.to_string()),
    ]
}

fn received(broker: &Tansu, topic: &str) -> f64 {
    broker.high_watermarks(topic).iter().sum::<i64>() as f64
}

#[test]
fn constant_rate_and_profile_steps_are_held_within_two_percent() {
    let broker = Tansu::start();
    let topic = unique("rate");
    broker.create_topic(&topic, 4);
    let mut p = Process::start(
        PRODUCER,
        &["--rate", "500", "--duration-seconds", "6"],
        &env(&broker, &topic, free_port()),
    );
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.logs());
    let got = received(&broker, &topic);
    assert!(
        (got - 3000.0).abs() <= 60.0,
        "500 msg/s for 6 s: broker received {got}"
    );

    let topic = unique("profile");
    broker.create_topic(&topic, 4);
    let mut p = Process::start(
        PRODUCER,
        &["--profile", "200@2s,1000@2s,0@1s"],
        &env(&broker, &topic, free_port()),
    );
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.logs());
    let got = received(&broker, &topic);
    assert!(
        (got - 2400.0).abs() <= 48.0,
        "200 x 2 s + 1000 x 2 s: broker received {got}"
    );
}

#[test]
fn rate_changes_over_http_while_running() {
    let broker = Tansu::start();
    let topic = unique("live");
    broker.create_topic(&topic, 4);
    let port = free_port();
    let mut p = Process::start(PRODUCER, &["--rate", "100"], &env(&broker, &topic, port));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    testbed::eventually(Duration::from_secs(10), "the producer's HTTP port", || {
        (http_get(addr, "/rate").0 == 200).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-d",
            r#"{"rate": 1000}"#,
            &format!("http://{addr}/rate"),
        ])
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&status.stdout).contains("1000"));
    std::thread::sleep(Duration::from_millis(500));
    let before = received(&broker, &topic);
    std::thread::sleep(Duration::from_secs(3));
    let after = received(&broker, &topic);
    let rate = (after - before) / 3.0;
    assert!(
        (rate - 1000.0).abs() <= 100.0,
        "after POST /rate 1000: {rate} msg/s"
    );
    let bad = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "lots",
            &format!("http://{addr}/rate"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "400");
    let (_, metrics) = http_get(addr, "/metrics");
    assert!(
        metrics.contains("trade_producer_messages_sent_total"),
        "{metrics}"
    );
    assert!(
        p.terminate(Duration::from_secs(30)).success(),
        "clean flush on SIGTERM"
    );
}

#[test]
fn unreachable_broker_and_missing_topic_fail_with_a_clear_error() {
    let mut p = Process::start(
        PRODUCER,
        &["--rate", "10"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1".into()),
            ("KAFKA_TOPIC", "t".into()),
            ("METRICS_PORT", free_port().to_string()),
        ],
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    assert!(
        p.logs()
            .contains("cannot reach Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS)"),
        "{}",
        p.logs()
    );

    let broker = Tansu::start();
    let mut p = Process::start(
        PRODUCER,
        &["--rate", "10"],
        &env(&broker, "no-such-topic", free_port()),
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    assert!(
        p.logs()
            .contains("topic no-such-topic (KAFKA_TOPIC) does not exist"),
        "{}",
        p.logs()
    );

    let mut p = Process::start(
        PRODUCER,
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("MESSAGES_PER_SECOND", "lots".into()),
        ],
    );
    assert!(!p.wait(Duration::from_secs(10)).success());
    assert!(
        p.logs().contains("MESSAGES_PER_SECOND") || p.logs().contains("--rate"),
        "{}",
        p.logs()
    );
}

#[test]
fn creates_a_missing_topic_with_topic_partitions_and_leaves_an_existing_one_alone() {
    let broker = Tansu::start();
    let topic = unique("created");
    let mut env = env(&broker, &topic, free_port());
    env.push(("TOPIC_PARTITIONS", "6".to_owned()));
    let mut p = Process::start(
        PRODUCER,
        &["--rate", "200", "--duration-seconds", "2"],
        &env,
    );
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.logs());
    let watermarks = broker.high_watermarks(&topic);
    assert_eq!(watermarks.len(), 6, "partitions of the created topic");
    assert!(watermarks.iter().sum::<i64>() > 0, "{}", p.logs());

    // Asked again with another count, the topic keeps its 6 partitions and
    // the producer goes on sending to it.
    let existing = env
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == "TOPIC_PARTITIONS" {
                    "3".to_owned()
                } else {
                    v.clone()
                },
            )
        })
        .collect::<Vec<_>>();
    let before: i64 = watermarks.iter().sum();
    let mut p = Process::start(
        PRODUCER,
        &[
            "--rate",
            "200",
            "--duration-seconds",
            "1",
            "--metrics-port",
            &free_port().to_string(),
        ],
        &existing,
    );
    assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.logs());
    let watermarks = broker.high_watermarks(&topic);
    assert_eq!(watermarks.len(), 6);
    assert!(watermarks.iter().sum::<i64>() > before);

    // Without TOPIC_PARTITIONS a missing topic stays an error naming it.
    let missing = unique("missing");
    let mut p = Process::start(
        PRODUCER,
        &["--duration-seconds", "1"],
        &self::env(&broker, &missing, free_port()),
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    assert!(
        p.logs()
            .contains(&format!("topic {missing} (KAFKA_TOPIC) does not exist")),
        "{}",
        p.logs()
    );
}

#[test]
fn a_full_send_queue_delays_trades_but_skips_no_account_seq() {
    let broker = Tansu::start();
    let topic = unique("queue-full");
    broker.create_topic(&topic, 2);
    // A queue of 5 messages at 20,000 msg/s fills many times a second.
    let mut env = env(&broker, &topic, free_port());
    env.push(("QUEUE_BUFFERING_MAX_MESSAGES", "5".into()));
    env.push(("ACCOUNTS", "50".into()));
    let mut p = Process::start(
        PRODUCER,
        &["--rate", "20000", "--duration-seconds", "3"],
        &env,
    );
    assert!(p.wait(Duration::from_secs(60)).success(), "{}", p.logs());
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    for payload in broker.payloads(&topic) {
        let trade: trade_model::Trade = serde_json::from_slice(&payload).unwrap();
        seqs.entry(trade.account_id)
            .or_default()
            .push(trade.account_seq);
    }
    assert!(!seqs.is_empty());
    for (account, mut got) in seqs {
        got.sort_unstable();
        let want: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(got, want, "account {account}: sequence numbers skipped");
    }
}
