//! Scripted offset sources, for tests of the registry and the service
//! without a broker: each group's answer is set by the test, and every
//! read and every source made is counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Backend, OffsetQuery, OffsetSource, SourceError, SourceFactory};
use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets};

/// One group's scripted offsets.
#[derive(Debug)]
pub struct FakeOffsets {
    answer: Mutex<Result<OffsetSnapshot, SourceError>>,
    reads: AtomicU64,
    /// How long a read takes.
    delay: Mutex<std::time::Duration>,
    in_flight: Arc<InFlight>,
}

/// Reads in progress over all the groups of a factory, and the most seen.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicU64,
    most: AtomicU64,
}

impl FakeOffsets {
    fn new(in_flight: Arc<InFlight>) -> Self {
        Self {
            answer: Mutex::new(Ok(OffsetSnapshot::default())),
            reads: AtomicU64::new(0),
            delay: Mutex::new(std::time::Duration::ZERO),
            in_flight,
        }
    }

    /// From now on, each read takes `delay` (a slow cluster).
    pub fn slow(&self, delay: std::time::Duration) {
        *self.delay.lock().expect("fake lock poisoned") = delay;
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
        *self.answer.lock().expect("fake lock poisoned") =
            Err(SourceError::unavailable(Backend::Kafka, message));
    }

    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

impl OffsetSource for FakeOffsets {
    fn snapshot(&self) -> Result<OffsetSnapshot, SourceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.most.fetch_max(now, Ordering::SeqCst);
        let delay = *self.delay.lock().expect("fake lock poisoned");
        std::thread::sleep(delay);
        self.in_flight.now.fetch_sub(1, Ordering::SeqCst);
        self.answer.lock().expect("fake lock poisoned").clone()
    }
}

/// Makes one [`FakeOffsets`] per consumer group, shared by every query of it.
#[derive(Debug, Default)]
pub struct FakeFactory {
    groups: Mutex<HashMap<String, Arc<FakeOffsets>>>,
    made: AtomicU64,
    in_flight: Arc<InFlight>,
}

impl FakeFactory {
    /// The scripted source of `group` (made on first use).
    pub fn group(&self, group: &str) -> Arc<FakeOffsets> {
        self.groups
            .lock()
            .expect("fake lock poisoned")
            .entry(group.to_owned())
            .or_insert_with(|| Arc::new(FakeOffsets::new(self.in_flight.clone())))
            .clone()
    }

    /// The most reads in progress at once so far, over all groups.
    pub fn most_reads_at_once(&self) -> u64 {
        self.in_flight.most.load(Ordering::SeqCst)
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
