//! trade-consumer: consumes trade transactions in micro-batches per
//! partition and writes them to a sink, storing a partition's offset for
//! the commit only after the batch before it is written (at-least-once,
//! never past an unwritten message). librdkafka commits the stored offsets
//! every second, when partitions are revoked, and on close. Partition
//! order (so account order) is kept: one thread polls and writes, one batch
//! at a time. On revocation, unwritten batches of revoked partitions are
//! dropped (their new owner re-reads them); on SIGTERM the pending batches
//! are written, committed, and the consumer leaves the group.

mod audit;
mod batcher;
mod metrics;
mod sink;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::FutureExt;
use kafka_settings::{ClusterSettings, KafkaContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use trade_model::TradeRef;

use audit::AuditLog;
use batcher::{Batch, Batcher};
use metrics::Metrics;
use sink::Sink;

/// Consumes trade transactions in micro-batches.
#[derive(Parser, Debug)]
#[command(name = "trade-consumer", version, about)]
struct Args {
    /// Kafka bootstrap servers, comma-separated. Auth from the environment:
    /// KAFKA_AUTH (none, scram-sha-512 with KAFKA_SASL_USERNAME and
    /// KAFKA_SASL_PASSWORD[_FILE], msk-iam with AWS_REGION), KAFKA_TLS, KAFKA_CA_FILE.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// Topic to consume.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "trade-tx-v2")]
    topic: String,
    /// Consumer group.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "trade-tx-consumer")]
    consumer_group: String,
    /// How partitions are assigned: cooperative-sticky (only moved partitions
    /// pause in a rebalance), or the eager range or roundrobin (every
    /// partition is revoked and reassigned).
    #[arg(long, env = "PARTITION_ASSIGNMENT_STRATEGY", default_value = "cooperative-sticky", value_parser = ["cooperative-sticky", "range", "roundrobin"])]
    assignment_strategy: String,
    /// Messages per batch (per partition).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// A partial batch is written after this many seconds.
    #[arg(long, env = "BATCH_TIMEOUT_SECONDS", default_value_t = 1.0)]
    batch_timeout_seconds: f64,
    /// Seconds the simulated sink takes per batch, whatever its length (the
    /// reference consumer's model).
    #[arg(long, env = "BATCH_PROCESSING_TIME", default_value_t = 1.0)]
    batch_processing_time: f64,
    /// Messages per second the simulated sink writes: a batch takes its
    /// length divided by this (a sink that costs per message). Replaces
    /// BATCH_PROCESSING_TIME when given.
    #[arg(long, env = "PROCESSING_RATE")]
    processing_rate: Option<f64>,
    /// Where batches go.
    #[arg(long, env = "SINK", value_enum, default_value_t = SinkKind::Simulated)]
    sink: SinkKind,
    /// PostgreSQL URL for SINK=postgres, e.g. postgresql://user@host/db.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Messages that are not valid trades, and trades the sink refuses for
    /// their data, go to this topic with headers naming the error and the
    /// source partition and offset (default: only counted and logged).
    #[arg(long, env = "DLQ_TOPIC")]
    dlq_topic: Option<String>,
    /// Port of /metrics.
    #[arg(long, env = "METRICS_PORT", default_value_t = 8000)]
    metrics_port: u16,
    /// Append every written message's partition, offset and age, and every
    /// assignment change, to this file before committing (for exactly-once
    /// audits such as `lagrate demo`'s).
    #[arg(long, env = "AUDIT_LOG")]
    audit_log: Option<std::path::PathBuf>,
}

/// SINK's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SinkKind {
    /// Sleeps for what a batch costs (BATCH_PROCESSING_TIME or PROCESSING_RATE).
    Simulated,
    /// Inserts into PostgreSQL (DATABASE_URL).
    Postgres,
}

/// Longest wait in poll, and how often partial batches are checked.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the per-partition lag metric is refreshed.
const LAG_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// How often a dead letter's acknowledgement is looked for (SIGTERM is
/// checked as often).
const DELIVERY_CHECK: Duration = Duration::from_millis(20);
/// How long the broker has to acknowledge a dead letter before it is sent
/// again (and the failure logged), instead of librdkafka's 5 minutes.
const DEAD_LETTER_TIMEOUT_MS: &str = "30000";
/// How often librdkafka commits the stored (written) offsets.
const COMMIT_INTERVAL_MS: &str = "1000";

/// An invalid message on its way to the dead-letter topic.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// Why it is not a trade, and where it came from: the letter's headers.
    error: String,
    partition: i32,
    offset: i64,
    /// The send's acknowledgement; None when it could not be queued.
    delivery: Option<DeliveryFuture>,
}

/// A message's letter when DLQ_TOPIC is set (None otherwise: the message
/// is only counted and logged).
type Letter = Option<DeadLetter>;

struct GroupContext {
    kafka: KafkaContext,
    /// Partitions revoked inside a poll, for the poll loop to drop their
    /// batches right after it (the loop owns the batches; a revocation is
    /// signalled, not applied, from the callback).
    revoked: Mutex<Vec<i32>>,
    revocation: AtomicBool,
    audit: Option<Arc<AuditLog>>,
    metrics: Arc<Metrics>,
}

kafka_settings::forward_client_context!(GroupContext, kafka);

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
                if let Some(audit) = &self.audit {
                    audit.rebalanced(true, partitions.len());
                }
            }
            Rebalance::Revoke(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                self.metrics.forget_lag(&partitions);
                if let Some(audit) = &self.audit {
                    audit.rebalanced(false, partitions.len());
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    /// Before partitions go: librdkafka then commits their stored offsets
    /// (the written ones) and waits for that commit before the rebalance
    /// goes on, so their next owner starts right after the last write.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut list = self.revoked.lock().expect("revocation lock");
            list.extend(revoked.elements().iter().map(|e| e.partition()));
            self.revocation.store(true, Ordering::Release);
        }
    }
}

fn main() -> std::process::ExitCode {
    process_lifecycle::main("trade-consumer", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    if !(args.batch_timeout_seconds.is_finite() && args.batch_timeout_seconds > 0.0) {
        anyhow::bail!(
            "BATCH_TIMEOUT_SECONDS must be a number > 0, got {}",
            args.batch_timeout_seconds
        );
    }
    if !(args.batch_processing_time.is_finite() && args.batch_processing_time >= 0.0) {
        anyhow::bail!(
            "BATCH_PROCESSING_TIME must be a number >= 0, got {}",
            args.batch_processing_time
        );
    }
    let settings =
        ClusterSettings::from_env(&args.bootstrap_servers).map_err(anyhow::Error::msg)?;
    let mut sink = match args.sink {
        SinkKind::Postgres => {
            anyhow::ensure!(
                args.batch_size <= sink::MAX_POSTGRES_BATCH,
                "BATCH_SIZE must be at most {} with SINK=postgres (65,535 bind parameters per INSERT), got {}",
                sink::MAX_POSTGRES_BATCH,
                args.batch_size
            );
            let url = args
                .database_url
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is required with SINK=postgres"))?;
            Sink::Postgres(Box::new(sink::Postgres::connect(url)?))
        }
        SinkKind::Simulated => Sink::Simulated(match args.processing_rate {
            Some(rate) if rate.is_finite() && rate > 0.0 => {
                sink::Cost::PerMessage(Duration::from_secs_f64(1.0 / rate))
            }
            Some(rate) => {
                anyhow::bail!(
                    "PROCESSING_RATE must be a number of messages per second > 0, got {rate}"
                )
            }
            None => sink::Cost::PerBatch(Duration::from_secs_f64(args.batch_processing_time)),
        }),
    };
    let audit = match &args.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path)?)),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let mut config: ClientConfig = settings.client_config()?;
    config
        .set("group.id", &args.consumer_group)
        .set("partition.assignment.strategy", &args.assignment_strategy)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    let consumer: BaseConsumer<GroupContext> = config.create_with_context(GroupContext {
        kafka: settings.context(),
        revoked: Mutex::new(Vec::new()),
        revocation: AtomicBool::new(false),
        audit: audit.clone(),
        metrics: metrics.clone(),
    })?;
    // librdkafka asks for the MSK IAM token (OAUTHBEARER) on the queue that
    // poll() serves, and holds every request until it has one: serve it
    // before and between the first requests. Without OAUTHBEARER the poll
    // returns at once (no group is joined before subscribe).
    kafka_settings::ensure_topic(
        consumer.client(),
        &args.topic,
        &args.bootstrap_servers,
        || {
            let _ = consumer.poll(Duration::ZERO);
        },
    )
    .map_err(anyhow::Error::msg)?;
    // A FutureProducer polls itself, so its own token is served too.
    let dlq: Option<FutureProducer<KafkaContext>> = match &args.dlq_topic {
        Some(topic) => {
            let producer: FutureProducer<KafkaContext> = settings
                .client_config()?
                .set("enable.idempotence", "true")
                .set("message.timeout.ms", DEAD_LETTER_TIMEOUT_MS)
                .create_with_context(settings.context())?;
            // Dead letters to a topic that does not exist would expire
            // unseen (MSK creates no topic on first use): refuse to start.
            kafka_settings::ensure_topic_of(
                producer.client(),
                (topic, "DLQ_TOPIC"),
                &args.bootstrap_servers,
                || {},
            )
            .map_err(anyhow::Error::msg)?;
            Some(producer)
        }
        None => None,
    };
    consumer.subscribe(&[&args.topic])?;

    let runtime = tokio::runtime::Runtime::new()?;
    let stop = process_lifecycle::stop_on_sigterm(&runtime);
    let listener = runtime.block_on(tokio::net::TcpListener::bind((
        "0.0.0.0",
        args.metrics_port,
    )))?;
    runtime.spawn(metrics::serve(listener, metrics.clone()));
    tracing::info!(topic = %args.topic, group = %args.consumer_group, sink = ?args.sink, "consuming");

    let mut consumer_loop = Loop {
        consumer: &consumer,
        batcher: Batcher::new(
            args.batch_size as usize,
            Duration::from_secs_f64(args.batch_timeout_seconds),
        ),
        metrics: &metrics,
        sink: &mut sink,
        topic: &args.topic,
        dlq: dlq.as_ref().zip(args.dlq_topic.as_deref()),
        audit: audit.as_deref(),
        stop: &stop,
        invalid_log: InvalidLog::default(),
    };
    consumer_loop.poll_until_stopped();
    tracing::info!("SIGTERM: writing pending batches, committing, leaving the group");
    consumer_loop.write_due(true);
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is the usual case.
        tracing::debug!(error = %e, "final commit");
    }
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(processed = metrics.processed.get(), "stopped");
    Ok(())
}

impl DeadLetter {
    /// Queues the letter; its acknowledgement is awaited before the commit.
    fn send(&mut self, producer: &FutureProducer<KafkaContext>, topic: &str) {
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
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&self.payload)
            .headers(headers);
        if let Some(key) = &self.key {
            record = record.key(key);
        }
        self.delivery = match producer.send_result(record) {
            Ok(delivery) => Some(delivery),
            Err((e, _)) => {
                tracing::warn!(error = %e, "dead letter not queued");
                None
            }
        };
    }
}

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

/// Sleeps for `duration`, or less if `stop` is set meanwhile.
fn sleep_unless(stop: &AtomicBool, duration: Duration) {
    let until = now() + duration;
    while !stop.load(Ordering::Relaxed) && now() < until {
        std::thread::sleep(POLL_TIMEOUT.min(until.saturating_duration_since(now())));
    }
}

struct Loop<'a> {
    consumer: &'a BaseConsumer<GroupContext>,
    batcher: Batcher<Letter>,
    metrics: &'a Metrics,
    sink: &'a mut Sink,
    topic: &'a str,
    dlq: Option<(&'a FutureProducer<KafkaContext>, &'a str)>,
    audit: Option<&'a AuditLog>,
    stop: &'a AtomicBool,
    invalid_log: InvalidLog,
}

/// Invalid messages are logged at most once per partition every
/// INVALID_LOG_EVERY, with how many were skipped unlogged since: a producer
/// sending garbage cannot flood the log.
#[derive(Default)]
struct InvalidLog {
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
    fn poll_until_stopped(&mut self) {
        let mut last_check = now();
        let mut last_lag = now();
        while !self.stop.load(Ordering::Relaxed) {
            let full = self.poll(POLL_TIMEOUT);
            // Batches are looked at when one fills, or every poll timeout for
            // the ones that timed out: not after every message.
            if full || now().duration_since(last_check) >= POLL_TIMEOUT {
                self.write_due(false);
                last_check = now();
            }
            if now().duration_since(last_lag) >= LAG_UPDATE_INTERVAL {
                self.update_lag();
                last_lag = now();
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
    fn route<M: Message>(&mut self, message: &M) -> bool {
        let now = now();
        let at = (message.partition(), message.offset());
        let timestamp = message.timestamp().to_millis();
        let age_ms = timestamp.map_or(0, |ts| (kafka_settings::unix_ms() - ts).max(0));
        if timestamp.is_some() {
            self.metrics.message_age.observe(age_ms as f64 / 1000.0);
        }
        let checked = match message.payload() {
            None => Err(("empty", "empty payload".to_owned())),
            Some(payload) => TradeRef::decode(payload)
                .map_err(|e| ("not_json", e.to_string()))
                .and_then(|trade| sink::storable(&trade).map_err(|e| ("not_storable", e))),
        };
        match checked {
            Ok(()) => self.batcher.push(
                at,
                message.key().unwrap_or_default(),
                message.payload().unwrap_or_default(),
                age_ms,
                now,
            ),
            Err((reason, why)) => {
                // Not a trade: counted, logged, dead-lettered; never stops the partition.
                let letter = self.dead_letter(at, (message.key(), message.payload()), reason, why);
                self.batcher.push_dead_letter(at, letter, now);
                false
            }
        }
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
    fn write_due(&mut self, all: bool) {
        for mut batch in self.batcher.take_due(now(), all) {
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
            let Some((took, rejected)) = self.write(&batch) else {
                tracing::warn!(
                    partition = batch.partition,
                    "stopping while a batch write fails: it stays uncommitted for the next owner"
                );
                self.batcher.abandon();
                return;
            };
            for &(index, ref why) in &rejected {
                let record = &batch.records[index];
                let letter = self.dead_letter(
                    (record.partition, record.offset),
                    (Some(batch.key(record)), Some(batch.payload(record))),
                    "rejected_by_sink",
                    why.clone(),
                );
                batch.dead_letters.push(letter);
            }
            if !self.dead_letters_acknowledged(&mut batch) {
                tracing::warn!(
                    partition = batch.partition,
                    "stopping before the dead letters were acknowledged: the batch stays uncommitted for the next owner"
                );
                self.batcher.abandon();
                return;
            }
            let written = batch.records.len() - rejected.len();
            if let Some(audit) = self.audit {
                let stored = (0..batch.records.len())
                    .filter(|i| !rejected.iter().any(|(r, _)| r == i))
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
            if let Some((partition, offset)) = self.batcher.finish(batch) {
                self.store(partition, offset);
            }
        }
    }

    /// Writes a batch, retrying until it is written (skipping it would lose
    /// it): the seconds the successful write took and the records the sink
    /// refused. None when SIGTERM came first: the batch is then left
    /// unwritten and uncommitted, with the batches after it, for the
    /// partition's next owner.
    fn write(&mut self, batch: &Batch<Letter>) -> Option<(f64, Vec<(usize, String)>)> {
        let mut attempt = 0u32;
        loop {
            let started = now();
            match self.sink.write(batch) {
                Ok(written) => {
                    return Some((
                        now().duration_since(started).as_secs_f64(),
                        written.rejected,
                    ));
                }
                Err(e) => {
                    attempt += 1;
                    if self.stop.load(Ordering::Relaxed) {
                        tracing::warn!(
                            partition = batch.partition,
                            attempt,
                            error = format!("{e:#}"),
                            "batch write failed at SIGTERM"
                        );
                        return None;
                    }
                    tracing::error!(
                        partition = batch.partition,
                        attempt,
                        error = format!("{e:#}"),
                        "batch write failed; retrying"
                    );
                    sleep_unless(self.stop, retry_backoff(attempt));
                }
            }
        }
    }

    /// Stores a written offset; librdkafka commits it.
    fn store(&self, partition: i32, offset: i64) {
        let mut offsets = TopicPartitionList::with_capacity(1);
        let stored = offsets
            .add_partition_offset(self.topic, partition, Offset::Offset(offset))
            .and_then(|()| self.consumer.store_offsets(&offsets));
        if let Err(e) = stored {
            // The partition was revoked without our poll seeing it yet: its
            // new owner reads the batch again.
            tracing::info!(partition, offset, error = %e, "written offset not stored");
        }
    }

    /// Waits for every dead letter's acknowledgement, sending again the
    /// ones the broker refused or that timed out, and serving the group
    /// while it waits; false when SIGTERM came first.
    fn dead_letters_acknowledged(&mut self, batch: &mut Batch<Letter>) -> bool {
        let Some((producer, topic)) = self.dlq else {
            return true;
        };
        let (partition, id) = (batch.partition, batch.id());
        for letter in batch.dead_letters.iter_mut().flatten() {
            let mut attempt = 0u32;
            loop {
                let outcome = match letter.delivery.as_mut().map(FutureExt::now_or_never) {
                    Some(None) => {
                        if self.stop.load(Ordering::Relaxed) {
                            return false;
                        }
                        // A rebalance must not wait on a slow broker: once
                        // the partition is gone, its next owner re-reads
                        // the batch and nothing of it is stored here.
                        self.poll(DELIVERY_CHECK);
                        if !self.batcher.owns(id) {
                            return true;
                        }
                        continue;
                    }
                    Some(Some(Ok(Ok(_)))) => break,
                    Some(Some(Ok(Err((e, _))))) => e.to_string(),
                    Some(Some(Err(_))) => "the producer dropped the send".to_owned(),
                    None => "not queued".to_owned(),
                };
                attempt += 1;
                tracing::error!(partition, attempt, error = %outcome, "dead letter not acknowledged; sending again");
                if self.stop.load(Ordering::Relaxed) {
                    return false;
                }
                sleep_unless(self.stop, retry_backoff(attempt));
                letter.send(producer, topic);
            }
        }
        true
    }
}
