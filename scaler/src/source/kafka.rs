//! Offsets from Kafka with rdkafka: high watermarks (one ListOffsets for all
//! partitions), the group's committed offsets (one OffsetFetch) and, when
//! the broker answers DescribeGroups, the member count. One client per
//! cluster serves every group on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_settings::{ClusterSettings, KafkaContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::clock::unix_now;

use super::{Backend, OffsetQuery, OffsetSource, SourceError, SourceFactory};
use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets};

/// After DescribeGroups fails on a cluster, it is not asked again for this long.
const MEMBERS_RETRY: Duration = Duration::from_secs(600);

/// The client of one cluster, shared by the samplers of all its groups. It
/// has no `group.id`: it never joins a group, nor looks one up for itself
/// (which MSK IAM would refuse without a grant on that group).
pub struct ClusterClient {
    /// Declared before `consumer`: dropped first, as it must be.
    in_flight: kafka_admin::InFlight,
    consumer: Arc<BaseConsumer<KafkaContext>>,
    /// Unix time before which DescribeGroups is not tried again.
    describe_groups_retry_at: Mutex<f64>,
}

/// How long one poll of the event thread waits; also how long a dropped
/// client may outlive its `ClusterClient`.
const EVENT_POLL: Duration = Duration::from_millis(250);

impl ClusterClient {
    pub fn new(cluster: &ClusterSettings) -> Result<Self, SourceError> {
        let mut config = cluster
            .client_config()
            .map_err(|e| SourceError::unavailable(Backend::Kafka, e))?;
        config.set("client.id", "lagrate").set("log_level", "3");
        let consumer = Arc::new(config.create_with_context(cluster.context()).map_err(|e| {
            SourceError::unavailable(Backend::Kafka, format!("cannot create client: {e}"))
        })?);
        serve_events(Arc::downgrade(&consumer))?;
        Ok(Self {
            in_flight: kafka_admin::InFlight::new(),
            consumer,
            describe_groups_retry_at: Mutex::new(0.0),
        })
    }

    /// Whether the cluster answers a metadata request within `timeout`.
    pub fn reachable(&self, timeout: Duration) -> bool {
        self.consumer.fetch_metadata(None, timeout).is_ok()
    }
}

/// librdkafka hands the application its events on the client's main queue,
/// which only `poll()` serves: the OAUTHBEARER token refresh (MSK IAM: the
/// first token, then one before each expires; until then every request
/// waits) and log lines. This client is never polled for messages, so a
/// thread of its own polls it until the client is dropped.
fn serve_events(consumer: Weak<BaseConsumer<KafkaContext>>) -> Result<(), SourceError> {
    std::thread::Builder::new()
        .name("lagrate-kafka-events".into())
        .spawn(move || {
            while let Some(consumer) = consumer.upgrade() {
                // Errors reach the samplers through their own requests.
                let _ = consumer.poll(EVENT_POLL);
            }
        })
        .map(|_| ())
        .map_err(|e| {
            SourceError::unavailable(
                Backend::Kafka,
                format!("cannot start the Kafka event thread: {e}"),
            )
        })
}

/// One group on one cluster.
pub struct KafkaOffsets {
    client: Arc<ClusterClient>,
    group: String,
    /// None: every topic the group has committed offsets for.
    topics: Option<Vec<String>>,
    timeout: Duration,
}

impl KafkaOffsets {
    /// Reads `group` through the cluster's shared client.
    pub fn new(
        client: Arc<ClusterClient>,
        group: &str,
        topics: Option<Vec<String>>,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        Ok(Self {
            client,
            group: group.to_owned(),
            topics,
            timeout,
        })
    }

    fn partitions_of(&self, topic: Option<&str>) -> Result<Vec<(String, i32)>, SourceError> {
        let metadata = self
            .client
            .consumer
            .fetch_metadata(topic, self.timeout)
            .map_err(|e| from_kafka(&e, "metadata"))?;
        let mut out = Vec::new();
        for t in metadata.topics() {
            if topic.is_none() && t.name().starts_with("__") {
                continue;
            }
            if let Some(err) = t.error() {
                let code = RDKafkaErrorCode::from(err);
                return Err(classify(Some(code), format!("topic {}: {code}", t.name())));
            }
            out.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
        }
        Ok(out)
    }

    fn members(&self) -> Option<u32> {
        let retry_at = &self.client.describe_groups_retry_at;
        if unix_now() < *retry_at.lock().expect("retry lock poisoned") {
            return None;
        }
        match self
            .client
            .consumer
            .fetch_group_list(Some(&self.group), self.timeout.min(Duration::from_secs(1)))
        {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == self.group)
                .map(|g| g.members().len() as u32),
            Err(e) => {
                // A broker without DescribeGroups would stall the shared
                // connection on every sample: ask again much later.
                tracing::info!(group = %self.group, error = %e, "DescribeGroups unavailable; member count unknown");
                *retry_at.lock().expect("retry lock poisoned") =
                    unix_now() + MEMBERS_RETRY.as_secs_f64();
                None
            }
        }
    }
}

/// A librdkafka error of a request, by kind.
fn from_kafka(e: &KafkaError, what: &str) -> SourceError {
    classify(e.rdkafka_error_code(), format!("{what}: {e}"))
}

/// The error code in the text of a failed admin request (librdkafka's own
/// description of the code, or the deadline passing without an answer).
fn admin_error_code(text: &str) -> Option<RDKafkaErrorCode> {
    let text = text.to_ascii_lowercase();
    if text.contains("no answer") || text.contains("timed out") {
        Some(RDKafkaErrorCode::OperationTimedOut)
    } else if text.contains("authoriz") || text.contains("authentic") {
        Some(RDKafkaErrorCode::GroupAuthorizationFailed)
    } else if text.contains("group id not found") || text.contains("invalid group id") {
        Some(RDKafkaErrorCode::GroupIdNotFound)
    } else if text.contains("unknown topic") {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    } else {
        None
    }
}

/// Sorts a Kafka error code into the kinds that call for different fixes.
fn classify(code: Option<RDKafkaErrorCode>, message: String) -> SourceError {
    use RDKafkaErrorCode as C;
    let backend = Backend::Kafka;
    match code {
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed,
        ) => SourceError::Authentication { backend, message },
        Some(C::OperationTimedOut | C::RequestTimedOut | C::MessageTimedOut) => {
            SourceError::Timeout { backend, message }
        }
        Some(C::GroupIdNotFound | C::InvalidGroupId) => SourceError::UnknownGroup { message },
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            SourceError::UnknownTopic { message }
        }
        _ => SourceError::Unavailable { backend, message },
    }
}

impl OffsetSource for KafkaOffsets {
    fn snapshot(&self) -> Result<OffsetSnapshot, SourceError> {
        let mut partitions = match &self.topics {
            Some(topics) => {
                let mut all = Vec::new();
                for topic in topics {
                    all.extend(self.partitions_of(Some(topic))?);
                }
                all
            }
            None => self.partitions_of(None)?,
        };
        partitions.sort();

        let committed = kafka_admin::committed_offsets(
            self.client.consumer.client(),
            &self.client.in_flight,
            &self.group,
            &partitions,
            self.timeout,
        )
        .map_err(|e| {
            classify(
                admin_error_code(&e),
                format!("committed offsets of group {}: {e}", self.group),
            )
        })?;
        // ListOffsets with timestamp -1 (Offset::End) answers the high
        // watermarks of every partition in one request per broker.
        let mut latest = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in &partitions {
            latest
                .add_partition_offset(topic, *partition, Offset::End)
                .map_err(|e| from_kafka(&e, "high watermarks"))?;
        }
        let high = self
            .client
            .consumer
            .offsets_for_times(latest, self.timeout)
            .map_err(|e| from_kafka(&e, "high watermarks"))?;

        let mut topic_names: Vec<Arc<str>> = Vec::new();
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition) in &partitions {
            let high_watermark = match high.find_partition(topic, *partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                other => {
                    return Err(SourceError::unavailable(
                        Backend::Kafka,
                        format!("no high watermark for {topic}/{partition}: {other:?}"),
                    ));
                }
            };
            let committed = committed.get(&(topic.clone(), *partition)).copied();
            let name = match topic_names.last() {
                Some(last) if **last == **topic => last.clone(),
                _ => {
                    let name: Arc<str> = Arc::from(topic.as_str());
                    topic_names.push(name.clone());
                    name
                }
            };
            out.push(PartitionOffsets {
                topic: name,
                partition: *partition,
                high_watermark,
                committed,
            });
        }
        if self.topics.is_none() {
            // Only the topics the group has committed offsets for.
            let with_commits: std::collections::BTreeSet<Arc<str>> = out
                .iter()
                .filter(|p| p.committed.is_some())
                .map(|p| p.topic.clone())
                .collect();
            out.retain(|p| with_commits.contains(&p.topic));
        }
        Ok(OffsetSnapshot {
            partitions: out,
            members: self.members(),
        })
    }
}

/// The real factory: rdkafka, one client per cluster shared by its groups.
#[derive(Default)]
pub struct KafkaFactory {
    clients: Mutex<HashMap<ClusterSettings, Weak<ClusterClient>>>,
    /// Clients the readiness probe made, kept so that each probe does not
    /// make (and, with MSK IAM, sign a token for) a new one; the samplers
    /// share them once they start.
    probed: Mutex<HashMap<ClusterSettings, Arc<ClusterClient>>>,
}

impl KafkaFactory {
    /// The cluster's shared client, made on first use.
    fn client(&self, cluster: &ClusterSettings) -> Result<Arc<ClusterClient>, SourceError> {
        let mut clients = self.clients.lock().expect("client map lock poisoned");
        clients.retain(|_, c| c.strong_count() > 0);
        if let Some(client) = clients.get(cluster).and_then(Weak::upgrade) {
            return Ok(client);
        }
        let client = Arc::new(ClusterClient::new(cluster)?);
        clients.insert(cluster.clone(), Arc::downgrade(&client));
        Ok(client)
    }
}

impl SourceFactory for KafkaFactory {
    fn offsets(&self, query: &OffsetQuery) -> Result<Arc<dyn OffsetSource>, SourceError> {
        Ok(Arc::new(KafkaOffsets::new(
            self.client(&query.cluster)?,
            &query.group,
            query.topics.clone(),
            query.timeout,
        )?))
    }

    fn cluster_reachable(&self, cluster: &ClusterSettings, timeout: Duration) -> bool {
        let Ok(client) = self.client(cluster) else {
            return false;
        };
        self.probed
            .lock()
            .expect("probe map lock poisoned")
            .insert(cluster.clone(), client.clone());
        client.reachable(timeout)
    }
}

#[cfg(test)]
mod error_kinds {
    use super::*;

    #[test]
    fn kafka_error_codes_sort_into_the_kinds_that_need_different_fixes() {
        let kind = |code| classify(Some(code), String::new()).kind_label();
        assert_eq!(
            kind(RDKafkaErrorCode::SaslAuthenticationFailed),
            "authentication"
        );
        assert_eq!(
            kind(RDKafkaErrorCode::GroupAuthorizationFailed),
            "authentication"
        );
        assert_eq!(kind(RDKafkaErrorCode::OperationTimedOut), "timeout");
        assert_eq!(kind(RDKafkaErrorCode::GroupIdNotFound), "unknown_group");
        assert_eq!(
            kind(RDKafkaErrorCode::UnknownTopicOrPartition),
            "unknown_topic"
        );
        assert_eq!(
            kind(RDKafkaErrorCode::BrokerTransportFailure),
            "unavailable"
        );
        assert_eq!(classify(None, String::new()).kind_label(), "unavailable");
    }

    #[test]
    fn an_admin_request_error_is_read_from_librdkafka_s_description() {
        let kind = |text: &str| classify(admin_error_code(text), text.into()).kind_label();
        assert_eq!(
            kind("no answer to ListConsumerGroupOffsets within 3s"),
            "timeout"
        );
        assert_eq!(kind("Broker: Group authorization failed"), "authentication");
        assert_eq!(kind("Broker: Group id not found"), "unknown_group");
        assert_eq!(kind("Broker: Unknown topic or partition"), "unknown_topic");
        assert_eq!(kind("Local: Broker transport failure"), "unavailable");
        let e = classify(
            admin_error_code("Broker: Group authorization failed"),
            "x".into(),
        );
        assert_eq!(e.label(), "kafka");
        assert!(e.to_string().contains("not authorized"), "{e}");
    }
}
