//! Per-partition micro-batches, and which offset may be committed when.
//!
//! The batcher is pure: time is an argument, and nothing here talks to
//! Kafka or a sink. The poll loop pushes every message, takes the batches
//! that are due, writes them, and reports each written batch with
//! [`Batcher::finish`], which answers the offset to store for the commit.
//! The promise it keeps: a stored offset never passes a message that was
//! not written (or dead-lettered), even across revocations; a batch taken
//! before its partition was revoked is never stored after.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use trade_model::TradeRef;

/// Where a message was read: its partition and offset, and the leader
/// epoch it was fetched under (None: the broker gave none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: Option<i32>,
}

impl From<(i32, i64)> for At {
    fn from((partition, offset): (i32, i64)) -> Self {
        At {
            partition,
            offset,
            leader_epoch: None,
        }
    }
}

/// One message of a batch: where it came from, and its payload's bytes in
/// the batch's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Age of the message when consumed, milliseconds.
    pub age_ms: i64,
    key: Range<usize>,
    payload: Range<usize>,
    /// The trade, decoded once when it was read: the sink writes these
    /// values without parsing the payload again.
    pub trade: Values,
}

/// A trade's values; its text fields are ranges of the batch's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    /// trade_id, account_id, symbol, side.
    text: [Range<usize>; 4],
    pub quantity: u32,
    pub price: f64,
    pub timestamp_ms: i64,
    pub account_seq: u64,
}

/// The messages of one partition read since its last batch was taken.
/// Payloads and keys are copied into one buffer sized for a full batch, so
/// routing a message allocates nothing in the steady state.
#[derive(Debug)]
pub struct Batch<L> {
    pub partition: i32,
    generation: u64,
    pub records: Vec<Record>,
    bytes: Vec<u8>,
    /// The trades' text fields, unescaped.
    text: String,
    /// Messages that are not trades, on their way to the dead-letter topic.
    pub dead_letters: Vec<L>,
    /// The offset after the last message (trade or dead letter).
    pub next_offset: i64,
    /// The leader epoch the last message was fetched under: stored with
    /// `next_offset`, so the committed position carries it.
    pub leader_epoch: Option<i32>,
    started: Instant,
}

/// Which partition, and which assignment of it, a batch was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchId {
    partition: i32,
    generation: u64,
}

impl<L> Batch<L> {
    pub fn id(&self) -> BatchId {
        BatchId {
            partition: self.partition,
            generation: self.generation,
        }
    }

    pub fn payload(&self, record: &Record) -> &[u8] {
        &self.bytes[record.payload.clone()]
    }

    pub fn key(&self, record: &Record) -> &[u8] {
        &self.bytes[record.key.clone()]
    }

    /// A record's trade_id, account_id, symbol and side.
    pub fn text(&self, record: &Record) -> [&str; 4] {
        record.trade.text.clone().map(|range| &self.text[range])
    }

    /// Messages in the batch: trades and dead letters.
    pub fn len(&self) -> usize {
        self.records.len() + self.dead_letters.len()
    }
}

/// A partition's state.
#[derive(Debug)]
struct Slot<L> {
    /// Batches read and not yet taken, oldest first: every one but the
    /// last is full, so no batch ever holds more than BATCH_SIZE messages
    /// (the poll loop pauses a partition whose batch fills while others
    /// are written, so at most a fetch's worth queues behind it).
    pending: VecDeque<Batch<L>>,
    /// Bumped on every revocation: a batch of an older generation is stale.
    generation: u64,
    /// A batch of this partition is being written: the next one waits, so
    /// batches of a partition finish in order.
    in_flight: bool,
    /// The offset after the last written message, while owned.
    written: Option<i64>,
    /// Stopped at this offset: nothing from it on is taken or committed
    /// until the partition is revoked.
    stopped: Option<i64>,
}

impl<L> Default for Slot<L> {
    fn default() -> Self {
        Slot {
            pending: VecDeque::new(),
            generation: 0,
            in_flight: false,
            written: None,
            stopped: None,
        }
    }
}

#[derive(Debug)]
pub struct Batcher<L> {
    batch_size: usize,
    timeout: Duration,
    /// Indexed by partition number (Kafka numbers partitions 0..N).
    slots: Vec<Slot<L>>,
}

/// Bytes reserved per message in a new batch's buffer (a trade's JSON is
/// about 200).
const BYTES_PER_MESSAGE: usize = 256;
/// Bytes of text fields reserved per message (a trade's are about 60).
const TEXT_PER_MESSAGE: usize = 80;

impl<L> Batcher<L> {
    pub fn new(batch_size: usize, timeout: Duration) -> Self {
        Batcher {
            batch_size: batch_size.max(1),
            timeout,
            slots: Vec::new(),
        }
    }

    fn slot(&mut self, partition: i32) -> &mut Slot<L> {
        let index = usize::try_from(partition).expect("Kafka partition numbers are >= 0");
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, Slot::default);
        }
        &mut self.slots[index]
    }

    fn pending(&mut self, at: At, now: Instant) -> &mut Batch<L> {
        let (partition, offset) = (at.partition, at.offset);
        let batch_size = self.batch_size;
        let slot = self.slot(partition);
        if slot.pending.back().is_none_or(|b| b.len() >= batch_size) {
            slot.pending.push_back(Batch {
                partition,
                generation: slot.generation,
                records: Vec::with_capacity(batch_size),
                bytes: Vec::with_capacity(batch_size * BYTES_PER_MESSAGE),
                text: String::with_capacity(batch_size * TEXT_PER_MESSAGE),
                dead_letters: Vec::new(),
                next_offset: offset,
                leader_epoch: None,
                started: now,
            });
        }
        let batch = slot.pending.back_mut().expect("a batch with room");
        batch.next_offset = offset + 1;
        batch.leader_epoch = at.leader_epoch;
        batch
    }

    /// Adds a trade; true when its batch is full. A stopped partition's
    /// messages are dropped.
    pub fn push(
        &mut self,
        at: impl Into<At>,
        (key, payload): (&[u8], &[u8]),
        trade: &TradeRef<'_>,
        age_ms: i64,
        now: Instant,
    ) -> bool {
        let at = at.into();
        let (partition, offset) = (at.partition, at.offset);
        self.add(at, now, |batch| {
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(key);
            batch.bytes.extend_from_slice(payload);
            let split = start + key.len();
            let text = [
                &trade.trade_id,
                &trade.account_id,
                &trade.symbol,
                &trade.side,
            ]
            .map(|field| {
                let from = batch.text.len();
                batch.text.push_str(field);
                from..batch.text.len()
            });
            batch.records.push(Record {
                partition,
                offset,
                age_ms,
                key: start..split,
                payload: split..batch.bytes.len(),
                trade: Values {
                    text,
                    quantity: trade.quantity,
                    price: trade.price,
                    timestamp_ms: trade.timestamp_ms,
                    account_seq: trade.account_seq,
                },
            });
        })
    }

    /// Adds a message that is not a trade: it is committed with its batch,
    /// once its dead letter is acknowledged.
    /// True when its batch is full: dead letters count toward BATCH_SIZE.
    pub fn push_dead_letter(&mut self, at: impl Into<At>, letter: L, now: Instant) -> bool {
        self.add(at.into(), now, |batch| batch.dead_letters.push(letter))
    }

    /// Adds the message at `offset` to its partition's batch with `put`,
    /// unless the partition is stopped; true when the batch is full.
    fn add(&mut self, at: At, now: Instant, put: impl FnOnce(&mut Batch<L>)) -> bool {
        if self.is_stopped(at.partition) {
            return false;
        }
        let batch_size = self.batch_size;
        let batch = self.pending(at, now);
        put(batch);
        batch.len() >= batch_size
    }

    /// Stops `partition` at `offset`: the messages read before it are
    /// still written and committed, none from it on. A pending batch read
    /// after it (the offset lies in a batch already taken) is dropped.
    pub fn stop(&mut self, partition: i32, offset: i64) {
        let slot = self.slot(partition);
        slot.stopped = Some(offset);
        slot.pending.retain(|b| b.next_offset <= offset);
    }

    pub fn is_stopped(&self, partition: i32) -> bool {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.slots.get(i))
            .is_some_and(|slot| slot.stopped.is_some())
    }

    /// How many partitions are stopped.
    pub fn stopped(&self) -> usize {
        self.slots.iter().filter(|s| s.stopped.is_some()).count()
    }

    /// Takes the batches that are full, or older than the timeout, or all
    /// of them when `all`; a partition with a batch still being written
    /// waits for it.
    pub fn take_due(&mut self, now: Instant, all: bool) -> Vec<Batch<L>> {
        let (batch_size, timeout) = (self.batch_size, self.timeout);
        let mut due = Vec::new();
        for slot in &mut self.slots {
            let ready = slot.pending.front().is_some_and(|b| {
                all || b.len() >= batch_size || now.duration_since(b.started) >= timeout
            });
            if ready && !slot.in_flight {
                slot.in_flight = true;
                due.extend(slot.pending.pop_front());
            }
        }
        due
    }

    /// Whether the batch's partition is still ours, as when it was read.
    pub fn owns(&self, batch: BatchId) -> bool {
        usize::try_from(batch.partition)
            .ok()
            .and_then(|i| self.slots.get(i))
            .is_some_and(|slot| slot.generation == batch.generation)
    }

    /// A taken batch was written (and its dead letters acknowledged): the
    /// offset to store for the commit, or None when the partition was
    /// revoked meanwhile (its new owner reads the batch again).
    pub fn finish(&mut self, batch: Batch<L>) -> Option<(i32, i64)> {
        if !self.owns(batch.id()) {
            return None;
        }
        let slot = self.slot(batch.partition);
        slot.in_flight = false;
        slot.written = Some(batch.next_offset);
        Some((batch.partition, batch.next_offset))
    }

    /// The partition was revoked: its unwritten messages are dropped (the
    /// new owner reads them from the committed offset) and a batch taken
    /// before is stale. Returns how many trades were dropped.
    pub fn revoke(&mut self, partition: i32) -> usize {
        let slot = self.slot(partition);
        slot.generation += 1;
        slot.in_flight = false;
        slot.written = None;
        slot.stopped = None;
        slot.pending.drain(..).map(|b| b.records.len()).sum()
    }

    /// Stopping with a batch unwritten: every pending and taken batch is
    /// dropped, since nothing read after an unwritten message may be
    /// committed.
    pub fn abandon(&mut self) {
        for slot in &mut self.slots {
            slot.generation += 1;
            slot.in_flight = false;
            slot.pending.clear();
        }
    }

    /// Per owned partition, the offset after its last written message.
    pub fn written(&self) -> Vec<(i32, i64)> {
        (0..)
            .zip(&self.slots)
            .filter_map(|(p, slot)| slot.written.map(|o| (p, o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    const PARTITIONS: i32 = 3;

    fn sample() -> TradeRef<'static> {
        TradeRef {
            trade_id: "t-1".into(),
            account_id: "ACC-7".into(),
            // Unescaped from JSON: owned, not borrowed from the payload.
            symbol: std::borrow::Cow::Owned("A\"B".to_owned()),
            side: "BUY".into(),
            quantity: 3,
            price: 101.5,
            timestamp_ms: 1_700_000_000_000,
            account_seq: 9,
        }
    }

    /// Tests pass time in; this only anchors it.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_batch_is_due_when_full_or_timed_out_and_keeps_its_bytes() {
        let start = t0();
        let mut b: Batcher<()> = Batcher::new(2, Duration::from_secs(1));
        assert!(!b.push((0, 5), (b"k", b"{one}"), &sample(), 7, start));
        assert!(b.take_due(start, false).is_empty());
        assert!(b.push((0, 6), (b"", b"{two}"), &sample(), 8, start));
        b.push((1, 9), (b"k1", b"{three}"), &sample(), 0, start);
        let due = b.take_due(start, false);
        assert_eq!(due.len(), 1, "only the full batch");
        let batch = &due[0];
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.payload(&batch.records[0]), b"{one}");
        assert_eq!(batch.key(&batch.records[0]), b"k");
        assert_eq!(batch.payload(&batch.records[1]), b"{two}");
        assert_eq!(
            batch.text(&batch.records[1]),
            ["t-1", "ACC-7", "A\"B", "BUY"]
        );
        assert_eq!(
            (
                batch.records[1].trade.quantity,
                batch.records[1].trade.price
            ),
            (3, 101.5)
        );
        assert_eq!(batch.next_offset, 7);
        let late = b.take_due(start + Duration::from_secs(1), false);
        assert_eq!(late.len(), 1, "the partial batch after its timeout");
        assert_eq!(late[0].partition, 1);
    }

    #[test]
    fn a_batch_taken_before_a_revocation_is_never_stored() {
        let start = t0();
        let mut b: Batcher<()> = Batcher::new(1, Duration::from_secs(1));
        b.push((2, 0), (b"", b"x"), &sample(), 0, start);
        let taken = b.take_due(start, false).pop().unwrap();
        assert_eq!(b.revoke(2), 0);
        assert!(!b.owns(taken.id()));
        assert_eq!(b.finish(taken), None);
        assert!(b.written().is_empty());
    }

    #[test]
    fn a_stopped_partition_commits_what_came_before_and_nothing_after() {
        let start = t0();
        let mut b: Batcher<()> = Batcher::new(10, Duration::from_secs(1));
        b.push((0, 0), (b"", b"a"), &sample(), 0, start);
        b.push((0, 1), (b"", b"b"), &sample(), 0, start);
        b.push((1, 0), (b"", b"other"), &sample(), 0, start);
        // Offset 2 cannot be stored: 0 and 1 still are, 3 never.
        b.stop(0, 2);
        assert!(!b.push((0, 3), (b"", b"d"), &sample(), 0, start));
        b.push_dead_letter((0, 4), (), start);
        assert_eq!(b.stopped(), 1);
        let mut due = b.take_due(start, true);
        due.sort_by_key(|batch| batch.partition);
        assert_eq!(due[0].records.len(), 2);
        assert!(due[0].dead_letters.is_empty());
        assert_eq!(b.finish(due.remove(0)), Some((0, 2)));
        // Stopped inside a batch already taken: the batch read after it goes.
        b.push((1, 1), (b"", b"later"), &sample(), 0, start);
        b.stop(1, 0);
        assert_eq!(
            b.take_due(start, true).len(),
            0,
            "partition 1's later batch is dropped"
        );
        // Its next owner starts over; so does this consumer, reassigned.
        b.revoke(0);
        b.revoke(1);
        assert_eq!(b.stopped(), 0);
        assert!(!b.push((0, 2), (b"", b"c"), &sample(), 0, start));
        assert_eq!(b.take_due(start, true).len(), 1);
    }

    #[test]
    fn a_partition_waits_for_its_batch_in_flight() {
        let start = t0();
        let mut b: Batcher<()> = Batcher::new(1, Duration::from_secs(1));
        b.push((0, 0), (b"", b"x"), &sample(), 0, start);
        let first = b.take_due(start, false).pop().unwrap();
        b.push((0, 1), (b"", b"y"), &sample(), 0, start);
        assert!(b.take_due(start, true).is_empty(), "the second batch waits");
        assert_eq!(b.finish(first), Some((0, 1)));
        let second = b.take_due(start, false).pop().unwrap();
        assert_eq!(b.finish(second), Some((0, 2)));
        assert_eq!(b.written(), vec![(0, 2)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A message on a partition: a trade or not.
        Read(i32, bool),
        /// Time passes and due batches are taken (all of them if true).
        Take(bool),
        /// The n-th batch in flight is written.
        Write(usize),
        /// The n-th batch in flight fails until stop: everything is dropped.
        Stop(usize),
        Revoke(i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..PARTITIONS, any::<bool>()).prop_map(|(p, t)| Op::Read(p, t)),
            2 => any::<bool>().prop_map(Op::Take),
            3 => (0..4usize).prop_map(Op::Write),
            1 => (0..4usize).prop_map(Op::Stop),
            1 => (0..PARTITIONS).prop_map(Op::Revoke),
        ]
    }

    proptest! {
        /// Whatever the interleaving of reads, writes, revocations and
        /// stops, every stored offset covers only written messages, a
        /// partition's stored offset never moves back within an assignment,
        /// and no batch taken holds more than BATCH_SIZE messages.
        #[test]
        fn a_stored_offset_never_passes_an_unwritten_message(ops in prop::collection::vec(op(), 1..200)) {
            let start = t0();
            let mut b: Batcher<i64> = Batcher::new(3, Duration::from_secs(1));
            let mut now = start;
            // The model: per partition, the committed offset (where a new
            // owner resumes), the next offset to read, what was written.
            let mut committed: HashMap<i32, i64> = HashMap::new();
            let mut next: HashMap<i32, i64> = HashMap::new();
            let mut written: HashMap<i32, BTreeSet<i64>> = HashMap::new();
            let mut in_flight: Vec<Batch<i64>> = Vec::new();
            for op in ops {
                match op {
                    Op::Read(p, trade) => {
                        let o = *next.entry(p).or_insert_with(|| committed.get(&p).copied().unwrap_or(0));
                        next.insert(p, o + 1);
                        if trade {
                            b.push((p, o), (b"", b"t"), &sample(), 0, now);
                        } else {
                            b.push_dead_letter((p, o), o, now);
                        }
                    }
                    Op::Take(all) => {
                        now += Duration::from_millis(600);
                        let due = b.take_due(now, all);
                        for batch in &due {
                            // Reads go on while batches wait to be taken
                            // (nothing here pauses a partition).
                            prop_assert!(batch.len() <= 3, "a batch of {} over BATCH_SIZE 3", batch.len());
                            prop_assert!(batch.len() > 0);
                        }
                        in_flight.extend(due);
                    }
                    Op::Write(i) if i < in_flight.len() => {
                        let batch = in_flight.remove(i);
                        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset)
                            .chain(batch.dead_letters.iter().copied()).collect();
                        let owned = b.owns(batch.id());
                        let p = batch.partition;
                        if let Some((sp, stored)) = b.finish(batch) {
                            prop_assert!(owned);
                            prop_assert_eq!(sp, p);
                            written.entry(p).or_default().extend(offsets);
                            let from = committed.get(&p).copied().unwrap_or(0);
                            prop_assert!(stored >= from, "stored offset moved back");
                            for o in from..stored {
                                prop_assert!(written[&p].contains(&o), "offset {} of partition {} stored unwritten", o, p);
                            }
                            committed.insert(p, stored);
                        }
                    }
                    Op::Stop(i) if i < in_flight.len() => {
                        b.abandon();
                        in_flight.clear();
                        // A new consumer resumes every partition from the commit.
                        next.clear();
                        written.clear();
                    }
                    Op::Write(_) | Op::Stop(_) => {}
                    Op::Revoke(p) => {
                        b.revoke(p);
                        next.remove(&p);
                        written.remove(&p);
                    }
                }
            }
        }
    }
}
