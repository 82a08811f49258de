//! Scripted offset sources, for tests of the registry and the service
//! without a broker: each group's answer is set by the test, and every
//! read and every source made is counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{
    OffsetQuery, OffsetSnapshot, OffsetSource, PartitionOffsets, SourceError, SourceFactory,
};

/// One group's scripted offsets.
#[derive(Debug)]
pub struct FakeOffsets {
    answer: Mutex<Result<OffsetSnapshot, SourceError>>,
    reads: AtomicU64,
}

impl FakeOffsets {
    fn new() -> Self {
        Self {
            answer: Mutex::new(Ok(OffsetSnapshot::default())),
            reads: AtomicU64::new(0),
        }
    }

    /// From now on, reads see `partitions` of `topic` as `(high watermark, committed)`.
    pub fn set(&self, topic: &str, partitions: &[(i64, i64)]) {
        let topic: Arc<str> = Arc::from(topic);
        let snapshot = OffsetSnapshot {
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(p, &(high, committed))| PartitionOffsets {
                    topic: topic.clone(),
                    partition: p as i32,
                    high_watermark: high,
                    committed: Some(committed),
                })
                .collect(),
            members: None,
        };
        *self.answer.lock().expect("fake lock poisoned") = Ok(snapshot);
    }

    /// From now on, reads fail as Kafka would with `message`.
    pub fn fail(&self, message: &str) {
        *self.answer.lock().expect("fake lock poisoned") = Err(SourceError::Kafka(message.into()));
    }

    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl OffsetSource for FakeOffsets {
    fn snapshot(&self) -> Result<OffsetSnapshot, SourceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.answer.lock().expect("fake lock poisoned").clone()
    }
}

/// Makes one [`FakeOffsets`] per consumer group, shared by every query of it.
#[derive(Debug, Default)]
pub struct FakeFactory {
    groups: Mutex<HashMap<String, Arc<FakeOffsets>>>,
    made: AtomicU64,
}

impl FakeFactory {
    /// The scripted source of `group` (made on first use).
    pub fn group(&self, group: &str) -> Arc<FakeOffsets> {
        self.groups
            .lock()
            .expect("fake lock poisoned")
            .entry(group.to_owned())
            .or_insert_with(|| Arc::new(FakeOffsets::new()))
            .clone()
    }

    /// Sources made: one per sampler started.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::SeqCst)
    }
}

impl SourceFactory for FakeFactory {
    fn offsets(&self, query: &OffsetQuery) -> Result<Arc<dyn OffsetSource>, SourceError> {
        self.made.fetch_add(1, Ordering::SeqCst);
        Ok(self.group(&query.group))
    }
}
