//! The poll loop: messages into per-partition batches, due batches into
//! the sink, written offsets stored for librdkafka to commit; refused
//! messages dead-lettered; revoked partitions' batches dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use trade_model::TradeRef;

use crate::args::OnRefused;
use crate::audit::AuditLog;
use crate::batcher::{At, Batch, Batcher};
use crate::dead_letter::{DeadLetter, Letter, LetterProducer};
use crate::group::GroupContext;
use crate::metrics::Metrics;
use crate::sink::{self, Sink};

/// Longest wait in poll, and how often partial batches are checked.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the per-partition lag metric is refreshed.
const LAG_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// How often a dead letter's acknowledgement is looked for (SIGTERM is
/// checked as often).
const DELIVERY_CHECK: Duration = Duration::from_millis(20);
/// Sends of one dead letter before its partition stops: with the 30 s
/// delivery timeout and the backoff between them, about five minutes.
const DEAD_LETTER_ATTEMPTS: u32 = 10;
/// Failed writes of one batch before /healthz fails: with the backoff
/// between them (200 ms more each time, at most 5 s), about two minutes.
const WRITE_ATTEMPTS_HEALTHY: u32 = 40;

/// The consumer's clock: batches time out, writes are timed, retries wait.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// How long to wait before retry `attempt` (1, 2, ...): 200 ms more each
/// time, at most 5 s.
fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt.min(25)))
}

pub struct Loop<'a> {
    pub consumer: &'a BaseConsumer<GroupContext>,
    pub batcher: Batcher<Letter>,
    pub metrics: &'a Metrics,
    pub sink: &'a mut Sink,
    pub topic: &'a str,
    pub dlq: Option<(&'a LetterProducer, &'a str)>,
    pub on_refused: OnRefused,
    pub audit: Option<&'a AuditLog>,
    pub stop: &'a AtomicBool,
    pub invalid_log: InvalidLog,
    pub held: Held,
    pub wall: Wall,
}

/// Unix time without a clock read per message: the wall clock as read at
/// an instant, and the monotonic time since (read again every poll
/// timeout, so it drifts by microseconds at most).
#[derive(Clone, Copy)]
pub struct Wall {
    at: Instant,
    unix_ms: i64,
}

impl Wall {
    pub fn read() -> Self {
        Wall {
            at: now(),
            unix_ms: kafka_settings::unix_ms(),
        }
    }

    fn unix_ms(&self, at: Instant) -> i64 {
        self.unix_ms + at.saturating_duration_since(self.at).as_millis() as i64
    }
}

/// Partitions paused because their next batch filled while batches were
/// being written: nothing more of them is read until it is taken, so no
/// batch outgrows BATCH_SIZE and memory stays bounded however long a write
/// or a dead letter's acknowledgement takes.
#[derive(Default)]
pub struct Held {
    /// Inside `write_due`: a full batch cannot be taken at once.
    writing: bool,
    partitions: Vec<i32>,
}

/// Invalid messages are logged at most once per partition every
/// INVALID_LOG_EVERY, with how many were skipped unlogged since: a producer
/// sending garbage cannot flood the log.
#[derive(Default)]
pub struct InvalidLog {
    /// Per partition: when one was last logged, and how many since.
    last: HashMap<i32, (Instant, u64)>,
}

const INVALID_LOG_EVERY: Duration = Duration::from_secs(10);

impl InvalidLog {
    fn note(&mut self, partition: i32, offset: i64, reason: &str, why: &str) {
        match self.last.get_mut(&partition) {
            Some((at, unlogged)) if now().duration_since(*at) < INVALID_LOG_EVERY => *unlogged += 1,
            entry => {
                let unlogged = entry.map_or(0, |e| e.1);
                tracing::warn!(partition, offset, reason, error = %why, unlogged_since_last = unlogged, "invalid message skipped");
                self.last.insert(partition, (now(), 0));
            }
        }
    }
}

impl Loop<'_> {
    /// Polls and writes due batches until SIGTERM.
    pub fn poll_until_stopped(&mut self) {
        let mut last_check = now();
        let mut last_lag = last_check;
        while !self.stop.load(Ordering::Relaxed) {
            let full = self.poll(POLL_TIMEOUT);
            // Batches are looked at when one fills, or every poll timeout for
            // the ones that timed out: not after every message.
            let at = now();
            if full || at.duration_since(last_check) >= POLL_TIMEOUT {
                self.write_due(false);
                self.wall = Wall::read();
                last_check = self.wall.at;
            }
            if at.duration_since(last_lag) >= LAG_UPDATE_INTERVAL {
                self.update_lag();
                last_lag = at;
            }
        }
    }

    /// One poll: runs a pending rebalance's callbacks, drops the revoked
    /// partitions' batches, and routes the message it may return. True
    /// when that message filled its batch.
    fn poll(&mut self, timeout: Duration) -> bool {
        let polled = self.consumer.poll(timeout);
        let context = self.consumer.context();
        if context.revocation.swap(false, Ordering::Acquire) {
            let revoked = std::mem::take(&mut *context.revoked.lock().expect("revocation lock"));
            // Paused partitions stay paused in librdkafka: resumed here, a
            // partition assigned again later is read again.
            self.resume(&revoked);
            for partition in revoked {
                let dropped = self.batcher.revoke(partition);
                if dropped > 0 {
                    tracing::info!(
                        partition,
                        dropped,
                        "revoked: unwritten batch dropped, the new owner re-reads it"
                    );
                }
            }
            self.metrics
                .stopped_partitions
                .set(self.batcher.stopped() as i64);
        }
        match polled {
            Some(Ok(message)) => self.route(&message),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "poll error");
                false
            }
            None => false,
        }
    }

    /// Lag as this consumer sees it: the high watermark librdkafka last
    /// fetched (no round trip) minus the written offset.
    fn update_lag(&self) {
        for (partition, written) in self.batcher.written() {
            if let Some(high) =
                kafka_admin::cached_high_watermark(self.consumer.client(), self.topic, partition)
            {
                self.metrics.set_lag(partition, (high - written).max(0));
            }
        }
    }

    /// Adds a message to its partition's batch; true when the batch is full.
    fn route(&mut self, message: &BorrowedMessage<'_>) -> bool {
        let now = now();
        let at = (message.partition(), message.offset());
        let read_at = At {
            partition: at.0,
            offset: at.1,
            leader_epoch: kafka_admin::leader_epoch(message),
        };
        let timestamp = message.timestamp().to_millis();
        let age_ms = timestamp.map_or(0, |ts| (self.wall.unix_ms(now) - ts).max(0));
        if timestamp.is_some() {
            self.metrics.message_age.observe(age_ms as f64 / 1000.0);
        }
        let checked = match message.payload() {
            None => Err(("empty", "empty payload".to_owned())),
            Some(payload) => TradeRef::decode(payload)
                .map_err(|e| ("not_json", e.to_string()))
                .and_then(|trade| match sink::storable(&trade) {
                    Ok(()) => Ok((payload, trade)),
                    Err(e) => Err(("not_storable", e)),
                }),
        };
        let full = match checked {
            Ok((payload, trade)) => self.batcher.push(
                read_at,
                (message.key().unwrap_or_default(), payload),
                &trade,
                age_ms,
                now,
            ),
            Err((reason, why)) if self.on_refused == OnRefused::StopPartition => {
                self.stop_partition(at, reason, &why);
                false
            }
            Err((reason, why)) => {
                // Not a trade: counted, logged, dead-lettered, then committed.
                let letter = self.dead_letter(at, (message.key(), message.payload()), reason, why);
                self.batcher.push_dead_letter(read_at, letter, now)
            }
        };
        if full && self.held.writing {
            self.hold(at.0);
        }
        full
    }

    /// Pauses a partition whose batch is full while others are written.
    fn hold(&mut self, partition: i32) {
        if self.held.partitions.contains(&partition) {
            return;
        }
        match self.consumer.pause(&self.list([partition])) {
            Ok(()) => self.held.partitions.push(partition),
            Err(e) => tracing::warn!(partition, error = %e, "full partition not paused"),
        }
    }

    /// Resumes the held partitions (their batches have been taken).
    fn release(&mut self) {
        if self.held.partitions.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held.partitions);
        let list = self.list(held.into_iter().filter(|&p| !self.batcher.is_stopped(p)));
        if let Err(e) = self.consumer.resume(&list) {
            tracing::warn!(error = %e, "held partitions not resumed");
        }
    }

    /// Stops a partition at a message that cannot be stored: what came
    /// before it is still written and committed, nothing from it on, and
    /// librdkafka stops fetching the partition. It stays stopped until it
    /// is revoked (its next owner stops at the same message).
    fn stop_partition(&mut self, (partition, offset): (i32, i64), reason: &'static str, why: &str) {
        self.metrics.invalid_message(reason);
        self.batcher.stop(partition, offset);
        if let Err(e) = self.consumer.pause(&self.list([partition])) {
            tracing::warn!(partition, error = %e, "stopped partition not paused: its messages are read and dropped");
        }
        self.metrics
            .stopped_partitions
            .set(self.batcher.stopped() as i64);
        tracing::error!(
            partition,
            offset,
            reason,
            error = %why,
            "partition stopped at a message that cannot be stored; it stays uncommitted until the cause is removed"
        );
    }

    /// Resumes the stopped or held ones of `partitions`.
    fn resume(&mut self, partitions: &[i32]) {
        let held = self.held.partitions.len();
        self.held.partitions.retain(|p| !partitions.contains(p));
        if self.batcher.stopped() == 0 && held == self.held.partitions.len() {
            return;
        }
        let _ = self.consumer.resume(&self.list(partitions.iter().copied()));
    }

    /// `partitions` of the topic, for librdkafka's pause and resume.
    fn list(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(self.topic, partition);
        }
        list
    }

    /// Counts and logs a message that will not be stored, and sends it to
    /// DLQ_TOPIC if set.
    fn dead_letter(
        &mut self,
        (partition, offset): (i32, i64),
        (key, payload): (Option<&[u8]>, Option<&[u8]>),
        reason: &'static str,
        error: String,
    ) -> Letter {
        self.metrics.invalid_message(reason);
        self.invalid_log.note(partition, offset, reason, &error);
        let (producer, topic) = self.dlq?;
        let mut letter = DeadLetter {
            key: key.map(<[u8]>::to_vec),
            payload: payload.unwrap_or_default().to_vec(),
            error: format!("{reason}: {error}"),
            partition,
            offset,
            delivery: None,
        };
        letter.send(producer, topic);
        Some(letter)
    }

    /// Writes the due batches (all of them when `all`), each after the one
    /// before it of its partition, and stores the written offsets.
    pub fn write_due(&mut self, all: bool) {
        self.held.writing = true;
        // Batches that fill meanwhile are taken too, before the partitions
        // held for them read on.
        loop {
            let due = self.batcher.take_due(now(), all);
            if due.is_empty() || !self.write_batches(due) {
                break;
            }
        }
        self.held.writing = false;
        self.release();
    }

    /// Writes `batches` in turn; false when stopping leaves them unwritten.
    fn write_batches(&mut self, batches: Vec<Batch<Letter>>) -> bool {
        for mut batch in batches {
            self.metrics.batch_messages.observe(batch.len() as f64);
            // Serve the group between batches: a rebalance waits for every
            // member's poll, and writing a large backlog takes seconds.
            self.poll(Duration::ZERO);
            if !self.batcher.owns(batch.id()) {
                tracing::info!(
                    partition = batch.partition,
                    dropped = batch.records.len(),
                    "revoked before its batch was written: dropped, the new owner re-reads it"
                );
                continue;
            }
            let (took, written) = match self.write(&batch) {
                Write::Done(took, written) => (took, written),
                Write::Revoked => continue,
                Write::Stopping => {
                    tracing::warn!(
                        partition = batch.partition,
                        "stopping while a batch write fails: it stays uncommitted for the next owner"
                    );
                    self.batcher.abandon();
                    return false;
                }
            };
            self.metrics.duplicates.inc_by(written.duplicates as u64);
            let mut refused = written.refused;
            match self.on_refused {
                OnRefused::StopPartition => self.stop_at_first_refused(&mut batch, &mut refused),
                OnRefused::DeadLetter => self.dead_letter_refused(&mut batch, &refused),
            }
            match self.dead_letters_acknowledged(&mut batch) {
                Acknowledged::All => {}
                Acknowledged::Stopping => {
                    tracing::warn!(
                        partition = batch.partition,
                        "stopping before the dead letters were acknowledged: the batch stays uncommitted for the next owner"
                    );
                    self.batcher.abandon();
                    return false;
                }
                Acknowledged::Undeliverable { offset, error } => {
                    refused.retain(|r| batch.records[r.index].offset < offset);
                    cut(&mut batch, offset);
                    let cause = format!(
                        "the dead letter of partition {} offset {offset} was not acknowledged after {DEAD_LETTER_ATTEMPTS} sends: {error}",
                        batch.partition
                    );
                    self.stop_partition(
                        (batch.partition, offset),
                        "dead_letter_undeliverable",
                        &cause,
                    );
                    self.metrics.fail_health("dead letters", cause);
                }
            }
            if !self.batcher.owns(batch.id()) {
                // Revoked while its dead letters were waited for: its next
                // owner writes, counts and audits it.
                continue;
            }
            self.finish(batch, &refused, took);
        }
        true
    }

    /// Under ON_REFUSED=stop-partition: the batch ends before the first row
    /// the sink refused, and its partition stops there (the rows written
    /// after it are read again by the next owner, as duplicates).
    fn stop_at_first_refused(
        &mut self,
        batch: &mut Batch<Letter>,
        refused: &mut Vec<sink::Refused>,
    ) {
        let Some(first) = refused.first() else { return };
        let offset = batch.records[first.index].offset;
        let (reason, why) = (first.reason, first.error.clone());
        refused.clear();
        cut(batch, offset);
        self.stop_partition((batch.partition, offset), reason, &why);
    }

    /// Under ON_REFUSED=dead-letter: each row the sink refused goes to
    /// DLQ_TOPIC with its batch.
    fn dead_letter_refused(&mut self, batch: &mut Batch<Letter>, refused: &[sink::Refused]) {
        for r in refused {
            let record = &batch.records[r.index];
            let letter = self.dead_letter(
                (record.partition, record.offset),
                // The batch keeps a missing key as an empty one: a
                // letter has no key where the message had none.
                (
                    Some(batch.key(record)).filter(|k| !k.is_empty()),
                    Some(batch.payload(record)),
                ),
                r.reason,
                r.error.clone(),
            );
            batch.dead_letters.push(letter);
        }
    }

    /// A written batch's bookkeeping: the audit log, the metrics, and its
    /// offset stored for the commit.
    fn finish(&mut self, batch: Batch<Letter>, refused: &[sink::Refused], took: f64) {
        let written = batch.records.len() - refused.len();
        if let Some(audit) = self.audit {
            let stored = (0..batch.records.len())
                .filter(|i| !refused.iter().any(|r| r.index == *i))
                .map(|i| &batch.records[i]);
            // Before the commit: a committed offset is always in the log.
            while let Err(e) = audit.written(stored.clone()) {
                tracing::error!(partition = batch.partition, error = %e, "audit log write failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Busy time is the write that succeeded: an outage's retries
        // are not capacity in use.
        self.metrics.batch_seconds.observe(took);
        self.metrics.busy_seconds.inc_by(took);
        self.metrics.processed.inc_by(written as u64);
        let leader_epoch = batch.leader_epoch;
        if let Some((partition, offset)) = self.batcher.finish(batch) {
            self.store(partition, offset, leader_epoch);
        }
    }

    /// Writes a batch, retrying until it is written (skipping it would lose
    /// it), serving the group between attempts: a rebalance or a new
    /// member never waits for the sink to come back. Stopping or a
    /// revocation leaves the batch unwritten and uncommitted, with the
    /// batches after it, for the partition's next owner.
    fn write(&mut self, batch: &Batch<Letter>) -> Write {
        let mut attempt = 0u32;
        loop {
            let started = now();
            let error = match self.sink.write(batch) {
                Ok(written) => {
                    if attempt >= WRITE_ATTEMPTS_HEALTHY {
                        self.metrics.restore_health("writes");
                    }
                    return Write::Done(now().duration_since(started).as_secs_f64(), written);
                }
                Err(e) => format!("{e:#}"),
            };
            attempt += 1;
            self.metrics.write_failures.inc();
            if self.stop.load(Ordering::Relaxed) {
                tracing::warn!(
                    partition = batch.partition,
                    attempt,
                    error,
                    "batch write failed at SIGTERM"
                );
                return Write::Stopping;
            }
            tracing::error!(
                partition = batch.partition,
                attempt,
                error,
                "batch write failed; retrying"
            );
            if attempt == WRITE_ATTEMPTS_HEALTHY {
                // Retrying has not helped: a new process might (a stale
                // connection pool, a DNS change); Kubernetes restarts it.
                self.metrics.fail_health(
                    "writes",
                    format!("batch writes failing after {attempt} attempts: {error}"),
                );
            }
            self.serve_for(retry_backoff(attempt));
            if !self.batcher.owns(batch.id()) {
                tracing::info!(
                    partition = batch.partition,
                    "revoked while its batch write was retried: dropped, the new owner re-reads it"
                );
                return Write::Revoked;
            }
        }
    }

    /// Polls for `duration`, or less if SIGTERM comes meanwhile.
    fn serve_for(&mut self, duration: Duration) {
        let until = now() + duration;
        while !self.stop.load(Ordering::Relaxed) && now() < until {
            self.poll(POLL_TIMEOUT.min(until.saturating_duration_since(now())));
        }
    }

    /// Stores a written offset with the leader epoch of the message
    /// before it; librdkafka commits it.
    fn store(&self, partition: i32, offset: i64, leader_epoch: Option<i32>) {
        let stored =
            kafka_admin::store_offset(self.consumer, (self.topic, partition), offset, leader_epoch);
        if let Err(e) = stored {
            // The partition was revoked without our poll seeing it yet: its
            // new owner reads the batch again.
            tracing::info!(partition, offset, error = %e, "written offset not stored");
        }
    }

    /// Waits for every dead letter's acknowledgement, sending again the
    /// ones the broker refused or that timed out, and serving the group
    /// while it waits.
    fn dead_letters_acknowledged(&mut self, batch: &mut Batch<Letter>) -> Acknowledged {
        let Some((producer, topic)) = self.dlq else {
            return Acknowledged::All;
        };
        let (partition, id) = (batch.partition, batch.id());
        for letter in batch.dead_letters.iter_mut().flatten() {
            let mut attempt = 0u32;
            loop {
                let outcome = match letter.delivery.as_mut().map(FutureExt::now_or_never) {
                    Some(None) => {
                        if self.stop.load(Ordering::Relaxed) {
                            return Acknowledged::Stopping;
                        }
                        // A rebalance must not wait on a slow broker: once
                        // the partition is gone, its next owner re-reads
                        // the batch and nothing of it is stored here.
                        self.poll(DELIVERY_CHECK);
                        if !self.batcher.owns(id) {
                            return Acknowledged::All;
                        }
                        continue;
                    }
                    Some(Some(Ok(Ok(())))) => break,
                    Some(Some(Ok(Err(e)))) => e,
                    Some(Some(Err(_))) => "the producer dropped the send".to_owned(),
                    None => "not queued".to_owned(),
                };
                attempt += 1;
                if attempt >= DEAD_LETTER_ATTEMPTS {
                    return Acknowledged::Undeliverable {
                        offset: letter.offset,
                        error: outcome,
                    };
                }
                tracing::error!(partition, attempt, error = %outcome, "dead letter not acknowledged; sending again");
                if self.stop.load(Ordering::Relaxed) {
                    return Acknowledged::Stopping;
                }
                self.serve_for(retry_backoff(attempt));
                if !self.batcher.owns(id) {
                    return Acknowledged::All;
                }
                letter.send(producer, topic);
            }
        }
        Acknowledged::All
    }
}

/// What became of a batch's write.
enum Write {
    /// Written: the seconds the successful write took, and what the sink
    /// refused.
    Done(f64, sink::Written),
    /// The partition went to another member meanwhile.
    Revoked,
    /// SIGTERM came first.
    Stopping,
}

/// What became of a batch's dead letters.
enum Acknowledged {
    /// Each is in DLQ_TOPIC (or the partition was revoked meanwhile).
    All,
    /// SIGTERM came first.
    Stopping,
    /// The one of the message at `offset` could not be delivered.
    Undeliverable { offset: i64, error: String },
}

/// Ends `batch` before `offset`: the records from it on are not committed
/// (the next owner reads them again).
fn cut(batch: &mut Batch<Letter>, offset: i64) {
    batch.records.retain(|r| r.offset < offset);
    batch
        .dead_letters
        .retain(|l| l.as_ref().is_none_or(|l| l.offset < offset));
    batch.next_offset = offset;
}
