//! trade-consumer: consumes trade transactions in micro-batches per
//! partition and writes them to a sink, committing a partition's offset only
//! after the batch before it is written (at-least-once, never past an
//! unwritten message). Partition order (so account order) is kept: one
//! thread polls and writes, one batch at a time. On revocation, unwritten
//! batches of revoked partitions are dropped (their new owner re-reads them)
//! and written offsets are committed; on SIGTERM the pending batches are
//! written, committed, and the consumer leaves the group.

// A consumer is all I/O: it reads the clock to time batches.
#![allow(clippy::disallowed_methods)]

mod audit;
mod metrics;
mod sink;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use kafka_settings::{ClusterSettings, KafkaContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use trade_model::Trade;

use audit::AuditLog;
use metrics::Metrics;
use sink::{Record, Sink};

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
    /// Messages that are not valid trades go to this topic (default: only counted and logged).
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

/// Messages read but not yet written, for one partition.
struct Batch {
    records: Vec<Record>,
    /// Invalid messages of the batch, sent to DLQ_TOPIC; each is
    /// acknowledged before the batch's offsets are committed.
    dead_letters: Vec<DeadLetter>,
    /// Offset after the last message (trades and skipped invalid ones).
    next_offset: i64,
    started: Instant,
}

/// An invalid message on its way to the dead-letter topic.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// The send's acknowledgement; None when it could not be queued.
    delivery: Option<DeliveryFuture>,
}

/// What the poll loop and the rebalance callback share.
#[derive(Default)]
struct Progress {
    pending: HashMap<i32, Batch>,
    /// Per partition, the offset after the last written message.
    written: HashMap<i32, i64>,
    /// Per partition, how often it was revoked: a batch taken for writing
    /// before a revocation is not written after it.
    revocations: HashMap<i32, u64>,
}

struct GroupContext {
    kafka: KafkaContext,
    topic: String,
    progress: Arc<Mutex<Progress>>,
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

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut progress = self.progress.lock().expect("progress lock");
        let mut commit = TopicPartitionList::new();
        for element in revoked.elements() {
            let partition = element.partition();
            if let Some(batch) = progress.pending.remove(&partition) {
                tracing::info!(
                    partition,
                    dropped = batch.records.len(),
                    "revoked: unwritten batch dropped, the new owner re-reads it"
                );
            }
            if let Some(&offset) = progress.written.get(&partition) {
                let _ = commit.add_partition_offset(&self.topic, partition, Offset::Offset(offset));
            }
            progress.written.remove(&partition);
            *progress.revocations.entry(partition).or_default() += 1;
        }
        if commit.count() > 0
            && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "commit on revocation failed; the new owner may re-read a written batch");
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
    let mut sink: Box<dyn Sink> = match args.sink {
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
            Box::new(sink::Postgres::connect(url)?)
        }
        SinkKind::Simulated => Box::new(sink::Simulated {
            cost: match args.processing_rate {
                Some(rate) if rate.is_finite() && rate > 0.0 => {
                    sink::Cost::PerMessage(Duration::from_secs_f64(1.0 / rate))
                }
                Some(rate) => {
                    anyhow::bail!(
                        "PROCESSING_RATE must be a number of messages per second > 0, got {rate}"
                    )
                }
                None => sink::Cost::PerBatch(Duration::from_secs_f64(args.batch_processing_time)),
            },
        }),
    };
    let audit = match &args.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path)?)),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let progress = Arc::new(Mutex::new(Progress::default()));
    let mut config: ClientConfig = settings.client_config()?;
    config
        .set("group.id", &args.consumer_group)
        .set("partition.assignment.strategy", &args.assignment_strategy)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    let consumer: BaseConsumer<GroupContext> = config.create_with_context(GroupContext {
        kafka: settings.context(),
        topic: args.topic.clone(),
        progress: progress.clone(),
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

    let batch_size = args.batch_size as usize;
    let timeout = Duration::from_secs_f64(args.batch_timeout_seconds);
    let mut consumer_loop = Loop {
        consumer: &consumer,
        progress: &progress,
        metrics: &metrics,
        sink: sink.as_mut(),
        topic: &args.topic,
        dlq: dlq.as_ref().zip(args.dlq_topic.as_deref()),
        audit: audit.as_deref(),
        stop: &stop,
        invalid_log: InvalidLog::default(),
    };
    // The lag gauge asks the broker for each partition's high watermark:
    // a round trip per partition, on a thread of its own so that the poll
    // loop never waits for it.
    let polling = AtomicBool::new(true);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(|| {
            let mut last = Instant::now();
            while polling.load(Ordering::Relaxed) {
                std::thread::sleep(POLL_TIMEOUT);
                if last.elapsed() >= LAG_UPDATE_INTERVAL {
                    update_lag(&consumer, &progress, &metrics, &args.topic);
                    last = Instant::now();
                }
            }
        });
        let result = poll_until_stopped(&consumer, &mut consumer_loop, &stop, batch_size, timeout);
        polling.store(false, Ordering::Relaxed);
        result
    })?;
    tracing::info!("SIGTERM: writing pending batches, committing, leaving the group");
    consumer_loop.write_due(|_| true)?;
    consumer_loop.commit(CommitMode::Sync);
    if let Some(p) = &dlq {
        let _ = p.flush(Duration::from_secs(10));
    }
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(processed = metrics.processed.get(), "stopped");
    Ok(())
}

/// Polls and writes due batches until SIGTERM.
fn poll_until_stopped(
    consumer: &BaseConsumer<GroupContext>,
    consumer_loop: &mut Loop<'_>,
    stop: &AtomicBool,
    batch_size: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut full = false;
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            match result {
                Ok(message) => full = consumer_loop.route(&message) >= batch_size,
                Err(e) => tracing::warn!(error = %e, "poll error"),
            }
        }
        // Batches are looked at when one fills, or every poll timeout for
        // the ones that timed out: not after every message.
        if full || last_check.elapsed() >= POLL_TIMEOUT {
            consumer_loop.write_due(|batch| {
                batch.records.len() >= batch_size || batch.started.elapsed() >= timeout
            })?;
            last_check = Instant::now();
        }
    }
    Ok(())
}

impl DeadLetter {
    /// Queues the letter; its acknowledgement is awaited before the commit.
    fn send(&mut self, producer: &FutureProducer<KafkaContext>, topic: &str) {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&self.payload);
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

/// How long to wait before retry `attempt` (1, 2, ...): 200 ms more each
/// time, at most 5 s.
fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt.min(25)))
}

/// Sleeps for `duration`, or less if `stop` is set meanwhile.
fn sleep_unless(stop: &AtomicBool, duration: Duration) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(POLL_TIMEOUT.min(until.saturating_duration_since(Instant::now())));
    }
}

/// Lag as this consumer sees it: high watermark minus written offset.
fn update_lag(
    consumer: &BaseConsumer<GroupContext>,
    progress: &Mutex<Progress>,
    metrics: &Metrics,
    topic: &str,
) {
    let written: Vec<(i32, i64)> = {
        let progress = progress.lock().expect("progress lock");
        progress.written.iter().map(|(p, o)| (*p, *o)).collect()
    };
    for (partition, offset) in written {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(1)) {
            metrics.set_lag(partition, (high - offset).max(0));
        }
    }
}

struct Loop<'a> {
    consumer: &'a BaseConsumer<GroupContext>,
    progress: &'a Arc<Mutex<Progress>>,
    metrics: &'a Metrics,
    sink: &'a mut dyn Sink,
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
            Some((at, unlogged)) if at.elapsed() < INVALID_LOG_EVERY => *unlogged += 1,
            entry => {
                let unlogged = entry.map_or(0, |e| e.1);
                tracing::warn!(partition, offset, reason, error = %why, unlogged_since_last = unlogged, "invalid message skipped");
                self.last.insert(partition, (Instant::now(), 0));
            }
        }
    }
}

impl Loop<'_> {
    /// Adds a message to its partition's batch; returns the batch's size.
    fn route<M: Message>(&mut self, message: &M) -> usize {
        let partition = message.partition();
        let offset = message.offset();
        let timestamp = message.timestamp().to_millis();
        let age_ms = timestamp.map_or(0, |ts| (kafka_settings::unix_ms() - ts).max(0));
        if timestamp.is_some() {
            self.metrics.message_age.observe(age_ms as f64 / 1000.0);
        }
        let parsed: Result<Trade, (&'static str, String)> = match message.payload() {
            None => Err(("empty", "empty payload".to_owned())),
            Some(payload) => serde_json::from_slice::<Trade>(payload)
                .map_err(|e| ("not_json", e.to_string()))
                .and_then(|trade| {
                    sink::storable(&trade).map_err(|e| ("not_storable", e))?;
                    Ok(trade)
                }),
        };
        let mut progress = self.progress.lock().expect("progress lock");
        let batch = progress.pending.entry(partition).or_insert_with(|| Batch {
            records: Vec::new(),
            dead_letters: Vec::new(),
            next_offset: offset,
            started: Instant::now(),
        });
        batch.next_offset = offset + 1;
        match parsed {
            Ok(trade) => batch.records.push(Record {
                trade,
                partition,
                offset,
                age_ms,
            }),
            Err((reason, why)) => {
                // Not a trade: counted, logged, dead-lettered; never stops the partition.
                self.metrics.invalid_message(reason);
                self.invalid_log.note(partition, offset, reason, &why);
                if let Some((producer, topic)) = self.dlq {
                    let mut letter = DeadLetter {
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().unwrap_or_default().to_vec(),
                        delivery: None,
                    };
                    letter.send(producer, topic);
                    batch.dead_letters.push(letter);
                }
            }
        }
        batch.records.len()
    }

    /// Writes every pending batch `due` says is ready, in partition order
    /// within each partition, then commits what was written.
    fn write_due(&mut self, due: impl Fn(&Batch) -> bool) -> anyhow::Result<()> {
        let ready: Vec<(i32, Batch, u64)> = {
            let mut progress = self.progress.lock().expect("progress lock");
            let partitions: Vec<i32> = progress
                .pending
                .iter()
                .filter(|(_, b)| due(b))
                .map(|(p, _)| *p)
                .collect();
            partitions
                .into_iter()
                .filter_map(|p| {
                    let revoked = progress.revocations.get(&p).copied().unwrap_or(0);
                    progress.pending.remove(&p).map(|b| (p, b, revoked))
                })
                .collect()
        };
        if ready.is_empty() {
            return Ok(());
        }
        for (partition, mut batch, revoked) in ready {
            // Serve the group between batches: a rebalance waits for every
            // member's poll, and writing a large backlog takes seconds.
            self.serve_group();
            let still_owned = {
                let progress = self.progress.lock().expect("progress lock");
                progress.revocations.get(&partition).copied().unwrap_or(0) == revoked
            };
            if !still_owned {
                tracing::info!(
                    partition,
                    dropped = batch.records.len(),
                    "revoked before its batch was written: dropped, the new owner re-reads it"
                );
                continue;
            }
            let mut attempt = 0u32;
            // A batch is retried until written (skipping it would lose it),
            // or until SIGTERM: then it is left unwritten and uncommitted,
            // with the batches after it, for the partition's next owner.
            let took = loop {
                let started = Instant::now();
                // A batch of invalid messages only has nothing to write.
                if batch.records.is_empty() {
                    break 0.0;
                }
                let Err(e) = self.sink.write(&batch.records) else {
                    break started.elapsed().as_secs_f64();
                };
                attempt += 1;
                if self.stop.load(Ordering::Relaxed) {
                    tracing::warn!(partition, attempt, error = %e, "stopping while a batch write fails: it stays uncommitted for the next owner");
                    self.abandon_pending();
                    return Ok(());
                }
                tracing::error!(partition, attempt, error = %e, "batch write failed; retrying");
                sleep_unless(self.stop, retry_backoff(attempt));
            };
            if !self.dead_letters_acknowledged(partition, &mut batch.dead_letters) {
                tracing::warn!(
                    partition,
                    "stopping before the dead letters were acknowledged: the batch stays uncommitted for the next owner"
                );
                self.abandon_pending();
                return Ok(());
            }
            if let Some(audit) = self.audit {
                // Before the commit: a committed offset is always in the log.
                while let Err(e) = audit.written(&batch.records) {
                    tracing::error!(partition, error = %e, "audit log write failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            // Busy time is the write that succeeded: an outage's retries
            // are not capacity in use.
            self.metrics.batch_seconds.observe(took);
            self.metrics.busy_seconds.inc_by(took);
            self.metrics.processed.inc_by(batch.records.len() as u64);
            let mut progress = self.progress.lock().expect("progress lock");
            progress.written.insert(partition, batch.next_offset);
        }
        self.commit(CommitMode::Async);
        Ok(())
    }

    /// Stopping with a batch unwritten: nothing read after it may be
    /// written (or committed) either, so every pending batch is dropped;
    /// the partitions' next owners re-read from the committed offsets.
    fn abandon_pending(&self) {
        self.progress.lock().expect("progress lock").pending.clear();
    }

    /// One non-blocking poll: runs a pending rebalance's callbacks and
    /// routes the message it may return.
    fn serve_group(&mut self) {
        match self.consumer.poll(Duration::ZERO) {
            Some(Ok(message)) => {
                self.route(&message);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "poll error"),
            None => {}
        }
    }

    /// Waits for every dead letter's acknowledgement, sending again the
    /// ones the broker refused; false when SIGTERM came first.
    fn dead_letters_acknowledged(&self, partition: i32, letters: &mut [DeadLetter]) -> bool {
        let Some((producer, topic)) = self.dlq else {
            return true;
        };
        for letter in letters {
            let mut attempt = 0u32;
            loop {
                let outcome = match letter.delivery.take() {
                    Some(delivery) => match futures::executor::block_on(delivery) {
                        Ok(Ok(_)) => break,
                        Ok(Err((e, _))) => e.to_string(),
                        Err(_) => "the producer dropped the send".to_owned(),
                    },
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

    fn commit(&self, mode: CommitMode) {
        let progress = self.progress.lock().expect("progress lock");
        let mut offsets = TopicPartitionList::new();
        for (&partition, &offset) in &progress.written {
            let _ = offsets.add_partition_offset(self.topic, partition, Offset::Offset(offset));
        }
        drop(progress);
        if offsets.count() > 0
            && let Err(e) = self.consumer.commit(&offsets, mode)
        {
            tracing::warn!(error = %e, "commit failed; will retry with the next batch");
        }
    }
}
