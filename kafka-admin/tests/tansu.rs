//! Reading another group's committed offsets through one shared client, on
//! a real tansu broker.

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
