//! Leader epochs (KIP-320): the epoch a message was fetched under, stored
//! with its offset so that the committed position carries it. A consumer
//! that resumes from a committed offset with its epoch lets the broker
//! tell whether the log was truncated past it (an unclean leader
//! election), instead of silently reading from wherever the offset now
//! points. rust-rdkafka exposes neither end.

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

/// The leader epoch `message` was fetched under; None when the broker
/// sent none (protocols before KIP-320, or a broker that does not keep
/// epochs).
pub fn leader_epoch(message: &BorrowedMessage<'_>) -> Option<i32> {
    // SAFETY: the message is live for the call (borrowed); librdkafka
    // reads one field of it and keeps no pointer.
    #[allow(unsafe_code)]
    let epoch = unsafe { rd::rd_kafka_message_leader_epoch(message.ptr()) };
    (epoch >= 0).then_some(epoch)
}

/// Stores `offset` (the next one to read) of `topic`/`partition` for the
/// consumer's next commit, with the leader epoch of the message before it.
pub fn store_offset<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    (topic, partition): (&str, i32),
    offset: i64,
    leader_epoch: Option<i32>,
) -> KafkaResult<()> {
    let mut list = TopicPartitionList::with_capacity(1);
    list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    if let Some(epoch) = leader_epoch {
        // SAFETY: the list is live and owned here, and holds exactly the
        // one element just added; librdkafka copies the value.
        #[allow(unsafe_code)]
        unsafe {
            rd::rd_kafka_topic_partition_set_leader_epoch((*list.ptr()).elems, epoch);
        }
    }
    consumer.store_offsets(&list)
}

/// The leader epoch stored with each element of `list` (as a committed
/// offsets answer gives them), in the list's order; None where none is.
pub fn leader_epochs(list: &TopicPartitionList) -> Vec<Option<i32>> {
    let raw = list.ptr();
    // SAFETY: the list is live and borrowed for the call; `cnt` elements
    // start at `elems`; librdkafka reads one field of each.
    #[allow(unsafe_code)]
    unsafe {
        let count = usize::try_from((*raw).cnt).unwrap_or(0);
        (0..count)
            .map(|k| rd::rd_kafka_topic_partition_get_leader_epoch((*raw).elems.add(k)))
            .map(|epoch| (epoch >= 0).then_some(epoch))
            .collect()
    }
}
