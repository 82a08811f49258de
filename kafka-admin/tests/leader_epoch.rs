//! Leader epochs read from consumed messages and stored with offsets: on
//! librdkafka's mock cluster, which keeps and checks epochs (a commit with
//! an epoch the partition never had is refused), and on a real tansu
//! broker, which sends no epochs: its offsets are committed without one.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use testbed::{Tansu, unique};

fn produce(bootstrap: &str, topic: &str, count: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for k in 0..count {
        let payload = format!("message {k}");
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .payload(&payload)
                    .partition(0),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A consumer of `group` assigned partition 0 of `topic` from the start,
/// storing offsets itself.
fn consumer(bootstrap: &str, topic: &str, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    consumer
}

fn next_message(consumer: &BaseConsumer) -> BorrowedMessage<'_> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no message within 30 s");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            return message;
        }
    }
}

/// Stores the offset after `message` with `epoch` and commits it.
fn store_and_commit(
    consumer: &BaseConsumer,
    topic: &str,
    offset: i64,
    epoch: Option<i32>,
) -> Result<(), rdkafka::error::KafkaError> {
    kafka_admin::store_offset(consumer, (topic, 0), offset, epoch)?;
    consumer.commit_consumer_state(CommitMode::Sync)
}

fn committed(consumer: &BaseConsumer, topic: &str) -> (Offset, Option<i32>) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let list = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    let offset = list.elements()[0].offset();
    (offset, kafka_admin::leader_epochs(&list)[0])
}

#[test]
fn the_epoch_a_message_was_fetched_under_is_committed_with_its_offset() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let topic = unique("epochs");
    mock.create_topic(&topic, 1, 3).expect("topic");
    // Moving the leadership raises the partition's epoch past the first.
    mock.partition_leader(&topic, 0, Some(2)).expect("leader");
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, &topic, 3);
    let group = unique("group");
    let consumer = consumer(&bootstrap, &topic, &group);
    let message = next_message(&consumer);
    let epoch = kafka_admin::leader_epoch(&message);
    let offset = message.offset() + 1;
    drop(message);
    let epoch = epoch.expect("the mock cluster sends leader epochs");
    assert!(epoch >= 1, "epoch {epoch} after a leadership move");
    // An epoch the partition never had is refused: the epoch is sent.
    let refused = store_and_commit(&consumer, &topic, offset, Some(epoch + 1))
        .expect_err("a commit with a future leader epoch");
    assert_eq!(
        refused.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownLeaderEpoch),
        "{refused}"
    );
    store_and_commit(&consumer, &topic, offset, Some(epoch))
        .expect("commit with the message's epoch");
    assert_eq!(committed(&consumer, &topic).0, Offset::Offset(offset));
}

#[test]
fn a_broker_without_epochs_gets_its_offsets_committed_without_one() {
    let broker = Tansu::start();
    let topic = unique("epochs");
    broker.create_topic(&topic, 1);
    produce(&broker.bootstrap(), &topic, 3);
    let group = unique("group");
    let consumer = consumer(&broker.bootstrap(), &topic, &group);
    let message = next_message(&consumer);
    let epoch = kafka_admin::leader_epoch(&message);
    let offset = message.offset() + 1;
    drop(message);
    store_and_commit(&consumer, &topic, offset, epoch).expect("commit");
    let (committed_offset, committed_epoch) = committed(&consumer, &topic);
    assert_eq!(committed_offset, Offset::Offset(offset));
    assert_eq!((epoch, committed_epoch), (None, None));
}
