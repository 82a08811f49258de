//! trade-consumer: consumes trade transactions in micro-batches per
//! partition and writes them to a sink, storing a partition's offset for
//! the commit only after the batch before it is written (at-least-once,
//! never past an unwritten message). librdkafka commits the stored offsets
//! every second, when partitions are revoked, and on close. Partition
//! order (so account order) is kept: one thread polls and writes, one batch
//! at a time. On revocation, unwritten batches of revoked partitions are
//! dropped (their new owner re-reads them); on SIGTERM the pending batches
//! are written, committed, and the consumer leaves the group.

mod args;
mod audit;
mod batcher;
mod consume;
mod dead_letter;
mod group;
mod metrics;
mod sink;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kafka_settings::ClusterSettings;
use rdkafka::consumer::{CommitMode, Consumer};

use args::Args;
use audit::AuditLog;
use batcher::Batcher;
use consume::{Held, InvalidLog, Loop, Wall};
use metrics::Metrics;

fn main() -> std::process::ExitCode {
    process_lifecycle::main("trade-consumer", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    args.check()?;
    let settings =
        ClusterSettings::from_env(&args.bootstrap_servers).map_err(anyhow::Error::msg)?;
    let mut sink = args.sink()?;
    let audit = match &args.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path)?)),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let consumer = group::join(&args, &settings, audit.clone(), metrics.clone())?;
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
    let dlq = match &args.dlq_topic {
        Some(topic) => Some(dead_letter::producer(
            &settings,
            topic,
            &args.bootstrap_servers,
        )?),
        None => None,
    };
    consumer.subscribe(&[&args.topic])?;

    let (runtime, stop, listener) = process_lifecycle::background(args.metrics_port)?;
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
        on_refused: args.on_refused,
        audit: audit.as_deref(),
        stop: &stop,
        invalid_log: InvalidLog::default(),
        held: Held::default(),
        wall: Wall::read(),
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
