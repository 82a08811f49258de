//! Messages that will not be stored, on their way to DLQ_TOPIC: the letter,
//! its headers, and the producer that sends it.

use std::sync::Arc;

use futures::channel::oneshot;
use kafka_settings::{ClusterSettings, KafkaContext};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

/// How long the broker has to acknowledge a dead letter before it is sent
/// again (and the failure logged), instead of librdkafka's 5 minutes.
const DEAD_LETTER_TIMEOUT_MS: &str = "30000";
/// How long creating a missing DLQ_TOPIC may take.
const CREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An invalid message on its way to the dead-letter topic.
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Why it is not a trade, and where it came from: the letter's headers.
    pub error: String,
    pub partition: i32,
    pub offset: i64,
    /// The send's acknowledgement; None when it could not be queued.
    pub delivery: Option<Delivery>,
}

/// A letter's acknowledgement by the broker, or why it was not taken.
pub type Delivery = oneshot::Receiver<Result<(), String>>;

/// The dead-letter producer's context: MSK IAM tokens as every client
/// signs them, and each delivery report handed to its letter.
pub struct LetterContext {
    kafka: KafkaContext,
}

kafka_settings::forward_client_context!(LetterContext, kafka);

impl ProducerContext for LetterContext {
    type DeliveryOpaque = Box<oneshot::Sender<Result<(), String>>>;

    fn delivery(&self, report: &DeliveryResult<'_>, letter: Self::DeliveryOpaque) {
        // The letter may be gone (its partition revoked): nobody waits.
        let _ = letter.send(report.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string()));
    }
}

/// Sends dead letters; a thread of its own serves delivery reports and
/// token refreshes ([`kafka_settings::served_producer`]).
pub type LetterProducer = Arc<BaseProducer<LetterContext>>;

/// A message's letter when DLQ_TOPIC is set (None otherwise: the message
/// is only counted and logged).
pub type Letter = Option<DeadLetter>;

impl DeadLetter {
    /// Queues the letter; its acknowledgement is awaited before the commit.
    pub fn send(&mut self, producer: &LetterProducer, topic: &str) {
        let (partition, offset) = (self.partition.to_string(), self.offset.to_string());
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "error",
                value: Some(self.error.as_str()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_str()),
            });
        let (acknowledged, delivery) = oneshot::channel();
        let mut record = BaseRecord::<[u8], [u8], _>::with_opaque_to(topic, Box::new(acknowledged))
            .payload(&self.payload)
            .headers(headers);
        if let Some(key) = &self.key {
            record = record.key(key);
        }
        self.delivery = match producer.send(record) {
            Ok(()) => Some(delivery),
            Err((e, _)) => {
                tracing::warn!(error = %e, "dead letter not queued");
                None
            }
        };
    }
}

/// The producer of dead letters to `topic` (DLQ_TOPIC), once the topic
/// exists: created here with one partition (and the brokers' replication)
/// when missing, since letters to a missing topic would expire unseen (MSK
/// creates no topic on first use). Its thread serves its MSK IAM token
/// from the start.
pub fn producer(
    settings: &ClusterSettings,
    topic: &str,
    bootstrap_servers: &str,
) -> anyhow::Result<LetterProducer> {
    let producer: LetterProducer = kafka_settings::served_producer(
        settings
            .client_config()?
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", DEAD_LETTER_TIMEOUT_MS),
        LetterContext {
            kafka: settings.context(),
        },
        "dead letters",
    )
    .map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {e}"))?;
    match kafka_admin::create_topic(producer.client(), topic, 1, -1, CREATE_TIMEOUT) {
        Ok(created) => tracing::info!(topic, created, "dead-letter topic ensured"),
        // Not allowed to create, or unreachable: whether it exists says
        // which, next.
        Err(e) => tracing::warn!(topic, error = %e, "dead-letter topic not created"),
    }
    kafka_settings::ensure_topic_of(
        producer.client(),
        (topic, "DLQ_TOPIC"),
        bootstrap_servers,
        || {},
    )
    .map_err(anyhow::Error::msg)?;
    Ok(producer)
}
