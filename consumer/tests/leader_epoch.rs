//! trade-consumer across a partition leadership move on librdkafka's mock
//! cluster, which keeps leader epochs and refuses a commit whose epoch the
//! partition never had: every trade is written once and committed, the
//! offsets stored with the epochs their messages were fetched under. The
//! same run on a real tansu broker (no epochs, no move).

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testbed::{Process, Tansu, eventually, free_port, http_get, unique};

mod common;

/// Trades `from..to` of one account to partition 0, as trade-producer
/// writes them.
fn produce(bootstrap: &str, topic: &str, (from, to): (u64, u64)) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for seq in from..to {
        let trade = format!(
            r#"{{"trade_id":"t-{seq}","account_id":"ACC1","symbol":"AAPL","side":"BUY","quantity":1,"price":1.0,"timestamp_ms":0,"account_seq":{seq}}}"#
        );
        producer
            .send(
                BaseRecord::to(topic)
                    .key("ACC1")
                    .payload(&trade)
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn consumer(bootstrap: &str, topic: &str, group: &str, port: u16) -> Process {
    common::consumer(
        bootstrap,
        (topic, group),
        port,
        &[("BATCH_SIZE", "50"), ("ON_REFUSED", "stop-partition")],
    )
}

fn wait_processed(port: u16, count: u64) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(60), "every trade processed", || {
        let (_, metrics) = http_get(addr, "/metrics");
        metrics
            .contains(&format!("kafka_messages_processed_total {count}\n"))
            .then_some(())
    });
}

/// Waits until `group` has committed `offset` on partition 0.
fn wait_committed(bootstrap: &str, topic: &str, group: &str, offset: i64) {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("reader");
    eventually(Duration::from_secs(30), "the last offset committed", || {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, 0);
        let list = reader
            .committed_offsets(list, Duration::from_secs(5))
            .ok()?;
        (list.elements()[0].offset() == Offset::Offset(offset)).then_some(())
    });
}

/// Half the trades, then `between` (a leadership move), then the rest:
/// all processed once and committed.
fn run(bootstrap: &str, topic: &str, between: impl FnOnce()) {
    let group = unique("group");
    produce(bootstrap, topic, (0, 200));
    let port = free_port();
    let mut p = consumer(bootstrap, topic, &group, port);
    wait_processed(port, 200);
    between();
    produce(bootstrap, topic, (200, 400));
    wait_processed(port, 400);
    wait_committed(bootstrap, topic, &group, 400);
    assert!(
        p.terminate(Duration::from_secs(20)).success(),
        "{}",
        p.logs()
    );
}

#[test]
fn a_leadership_move_mid_stream_loses_and_repeats_nothing() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let topic = unique("trades");
    mock.create_topic(&topic, 1, 3).expect("topic");
    run(&mock.bootstrap_servers(), &topic, || {
        mock.partition_leader(&topic, 0, Some(3)).expect("leader");
    });

    let broker = Tansu::start();
    let topic = unique("trades");
    broker.create_topic(&topic, 1);
    run(&broker.bootstrap(), &topic, || {});
}
