//! The consumer's settings: flags, each with its environment variable,
//! checked before anything connects; and the sink they choose.

use std::time::Duration;

use clap::Parser;

use crate::sink::{self, Sink};

/// Consumes trade transactions in micro-batches.
#[derive(Parser, Debug)]
#[command(name = "trade-consumer", version, about)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated. Auth from the environment:
    /// KAFKA_AUTH (none, scram-sha-512 with KAFKA_SASL_USERNAME and
    /// KAFKA_SASL_PASSWORD[_FILE], msk-iam with AWS_REGION), KAFKA_TLS, KAFKA_CA_FILE.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// Topic to consume.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "trade-tx-v2")]
    pub topic: String,
    /// Consumer group.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "trade-tx-consumer")]
    pub consumer_group: String,
    /// How partitions are assigned: cooperative-sticky (only moved partitions
    /// pause in a rebalance), or the eager range or roundrobin (every
    /// partition is revoked and reassigned).
    #[arg(long, env = "PARTITION_ASSIGNMENT_STRATEGY", default_value = "cooperative-sticky", value_parser = ["cooperative-sticky", "range", "roundrobin"])]
    pub assignment_strategy: String,
    /// Messages per batch (per partition).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// A partial batch is written after this many seconds.
    #[arg(long, env = "BATCH_TIMEOUT_SECONDS", default_value_t = 1.0)]
    pub batch_timeout_seconds: f64,
    /// Seconds the simulated sink takes per batch, whatever its length (the
    /// reference consumer's model).
    #[arg(long, env = "BATCH_PROCESSING_TIME", default_value_t = 1.0)]
    pub batch_processing_time: f64,
    /// Messages per second the simulated sink writes: a batch takes its
    /// length divided by this (a sink that costs per message). Replaces
    /// BATCH_PROCESSING_TIME when given.
    #[arg(long, env = "PROCESSING_RATE")]
    pub processing_rate: Option<f64>,
    /// Where batches go.
    #[arg(long, env = "SINK", value_enum, default_value_t = SinkKind::Simulated)]
    pub sink: SinkKind,
    /// PostgreSQL URL for SINK=postgres, e.g. postgresql://user@host/db.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Messages that are not valid trades, and trades the sink refuses for
    /// their data, go to this topic with headers naming the error and the
    /// source partition and offset; created with one partition when
    /// missing. Required with ON_REFUSED=dead-letter: a refused message is
    /// committed only once it is stored here.
    #[arg(long, env = "DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// What a message that cannot be stored does: go to DLQ_TOPIC
    /// (dead-letter), or stop its partition at that message, uncommitted,
    /// until an operator removes the cause (stop-partition; the
    /// consumer_stopped_partitions gauge counts them).
    #[arg(long, env = "ON_REFUSED", value_enum, default_value_t = OnRefused::DeadLetter)]
    pub on_refused: OnRefused,
    /// Port of /metrics.
    #[arg(long, env = "METRICS_PORT", default_value_t = 8000)]
    pub metrics_port: u16,
    /// Append every written message's partition, offset and age, and every
    /// assignment change, to this file before committing (for exactly-once
    /// audits such as `lagrate demo`'s).
    #[arg(long, env = "AUDIT_LOG")]
    pub audit_log: Option<std::path::PathBuf>,
}

/// ON_REFUSED's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRefused {
    /// To DLQ_TOPIC, then committed.
    DeadLetter,
    /// The partition stops at the message, which stays uncommitted.
    StopPartition,
}

/// SINK's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// Sleeps for what a batch costs (BATCH_PROCESSING_TIME or PROCESSING_RATE).
    Simulated,
    /// Inserts into PostgreSQL (DATABASE_URL).
    Postgres,
}

impl Args {
    /// Refuses values no run can use, naming the variable.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(self.batch_timeout_seconds.is_finite() && self.batch_timeout_seconds > 0.0) {
            anyhow::bail!(
                "BATCH_TIMEOUT_SECONDS must be a number > 0, got {}",
                self.batch_timeout_seconds
            );
        }
        if !(self.batch_processing_time.is_finite() && self.batch_processing_time >= 0.0) {
            anyhow::bail!(
                "BATCH_PROCESSING_TIME must be a number >= 0, got {}",
                self.batch_processing_time
            );
        }
        if self.on_refused == OnRefused::DeadLetter && self.dlq_topic.is_none() {
            anyhow::bail!(
                "DLQ_TOPIC is required: a message that is not a trade, or that the sink refuses, \
                 is committed only once it is stored there. Set DLQ_TOPIC to a topic (created \
                 if missing), or ON_REFUSED=stop-partition to stop the partition at such a \
                 message instead"
            );
        }
        Ok(())
    }

    /// The sink SINK names, connected.
    pub fn sink(&self) -> anyhow::Result<Sink> {
        Ok(match self.sink {
            SinkKind::Postgres => {
                let url = self.database_url.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("DATABASE_URL is required with SINK=postgres")
                })?;
                Sink::Postgres(Box::new(sink::Postgres::connect(url)?))
            }
            SinkKind::Simulated => Sink::Simulated(match self.processing_rate {
                Some(rate) if rate.is_finite() && rate > 0.0 => {
                    sink::Cost::PerMessage(Duration::from_secs_f64(1.0 / rate))
                }
                Some(rate) => {
                    anyhow::bail!(
                        "PROCESSING_RATE must be a number of messages per second > 0, got {rate}"
                    )
                }
                None => sink::Cost::PerBatch(Duration::from_secs_f64(self.batch_processing_time)),
            }),
        })
    }
}
