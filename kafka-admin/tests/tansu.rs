//! Admin calls through one existing client on a real tansu broker: another
//! group's committed offsets, and creating a topic.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use testbed::{Tansu, unique};

#[test]
fn one_client_reads_the_committed_offsets_of_several_groups() {
    let broker = Tansu::start();
    let topic = unique("orders");
    broker.create_topic(&topic, 3);
    broker.produce(&topic, 0..3, 10);
    let (first, second) = (unique("billing"), unique("audit"));
    broker.commit(&first, &topic, &HashMap::from([(0, 4), (1, 7)]));
    broker.commit(&second, &topic, &HashMap::from([(2, 9)]));

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "someone-else")
        .create()
        .unwrap();
    let partitions: Vec<(String, i32)> = (0..3).map(|p| (topic.clone(), p)).collect();
    let timeout = Duration::from_secs(10);
    let in_flight = kafka_admin::InFlight::new();
    let read = |group: &str| {
        kafka_admin::committed_offsets(reader.client(), &in_flight, group, &partitions, timeout)
    };
    let got = read(&first).unwrap();
    assert_eq!(
        got,
        HashMap::from([((topic.clone(), 0), 4), ((topic.clone(), 1), 7)]),
        "partition 2 never committed"
    );
    let got = read(&second).unwrap();
    assert_eq!(got, HashMap::from([((topic.clone(), 2), 9)]));
    let none = read(&unique("new")).unwrap();
    assert!(none.is_empty());
}

#[test]
fn creates_a_topic_once_and_reports_an_existing_one() {
    let broker = Tansu::start();
    let topic = unique("created");
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    assert_eq!(
        kafka_admin::create_topic(client.client(), &topic, 5, -1, timeout),
        Ok(true)
    );
    assert_eq!(broker.high_watermarks(&topic).len(), 5);
    // Asked again, with another partition count: it exists, and keeps its 5.
    assert_eq!(
        kafka_admin::create_topic(client.client(), &topic, 2, -1, timeout),
        Ok(false)
    );
    assert_eq!(broker.high_watermarks(&topic).len(), 5);
    // A request librdkafka refuses comes back as its reason.
    let refused = kafka_admin::create_topic(client.client(), &unique("bad"), -5, -1, timeout);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("num_partitions")),
        "{refused:?}"
    );
}

/// The sequence that can make librdkafka 2.12 release a request twice and
/// abort (`rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt >
/// 0'`): a successful call, the broker stopped, calls that time out while
/// waiting for the group coordinator, the broker restarted, polling on.
/// It runs in a child process of this test binary, so that an abort is a
/// failed assertion here rather than the end of the test run.
#[test]
fn calls_timing_out_on_the_coordinator_across_a_broker_restart_do_not_abort() {
    const INNER: &str = "KAFKA_ADMIN_FAULT_SEQUENCE";
    if std::env::var_os(INNER).is_some() {
        coordinator_fault_sequence();
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "calls_timing_out_on_the_coordinator_across_a_broker_restart_do_not_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1")
        .status()
        .unwrap();
    assert!(status.success(), "the fault sequence ended with {status:?}");
}

fn coordinator_fault_sequence() {
    let mut broker = Tansu::start();
    let topic = unique("orders");
    broker.create_topic(&topic, 2);
    let groups: Vec<String> = (0..8).map(|i| unique(&format!("g{i}"))).collect();
    for group in &groups {
        broker.commit(group, &topic, &HashMap::from([(0, 1)]));
    }
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "lagrate-fault")
        .create()
        .unwrap();
    let partitions: Vec<(String, i32)> = (0..2).map(|p| (topic.clone(), p)).collect();
    let in_flight = kafka_admin::InFlight::new();
    let call = |group: &str, timeout: Duration| {
        kafka_admin::committed_offsets(reader.client(), &in_flight, group, &partitions, timeout)
    };
    for group in &groups {
        call(group, Duration::from_secs(10)).expect("a call while the broker is up");
    }
    broker.stop();
    for group in &groups {
        assert!(
            call(group, Duration::from_secs(1)).is_err(),
            "the broker is down"
        );
    }
    // Most calls time out waiting for the coordinator and stay
    // outstanding (librdkafka may fail some at once instead); a group with
    // one outstanding gets no second request.
    let outstanding = in_flight.len();
    assert!(
        (1..=groups.len()).contains(&outstanding),
        "{outstanding} outstanding for {} groups",
        groups.len()
    );
    let refused = groups
        .iter()
        .filter(|group| {
            call(group, Duration::from_secs(1))
                .unwrap_err()
                .contains("still unanswered")
        })
        .count();
    assert_eq!(refused, outstanding, "one request per group at most");
    broker.restart();
    // Polling on while late coordinator answers arrive, and calling again.
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let mut answered = 0;
    while std::time::Instant::now() < until {
        let _ = reader.poll(Duration::from_millis(100));
        for group in &groups {
            if call(group, Duration::from_secs(1)).is_ok() {
                answered += 1;
            }
        }
    }
    assert!(answered > 0, "calls succeed again after the restart");
    drop(in_flight);
}
