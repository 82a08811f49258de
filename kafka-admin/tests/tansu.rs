//! Admin calls through one existing client on a real tansu broker: another
//! group's committed offsets, and creating a topic.

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
    let got =
        kafka_admin::committed_offsets(reader.client(), &first, &partitions, timeout).unwrap();
    assert_eq!(
        got,
        HashMap::from([((topic.clone(), 0), 4), ((topic.clone(), 1), 7)]),
        "partition 2 never committed"
    );
    let got =
        kafka_admin::committed_offsets(reader.client(), &second, &partitions, timeout).unwrap();
    assert_eq!(got, HashMap::from([((topic.clone(), 2), 9)]));
    let none =
        kafka_admin::committed_offsets(reader.client(), &unique("new"), &partitions, timeout)
            .unwrap();
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
