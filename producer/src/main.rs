//! trade-producer: sends trade transactions to Kafka at an exact target
//! rate (a token bucket on the monotonic clock: no drift, bursts bounded to
//! 20 ms of traffic), following a load profile or a rate set over HTTP.
//!
//! Endpoints on `METRICS_PORT`: `GET /metrics`, `GET /rate`, `POST /rate`
//! (body: a number, or `{"rate": N}`).

// A load generator is all I/O: it reads the clock to pace itself.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use kafka_settings::{ClusterSettings, KafkaContext};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use trade_model::{TradeGenerator, profile};

/// Sends trade transactions (JSON, keyed by account) at a target rate.
#[derive(Parser, Debug)]
#[command(name = "trade-producer", version, about)]
struct Args {
    /// Kafka bootstrap servers, comma-separated. Auth from the environment:
    /// KAFKA_AUTH (none, scram-sha-512 with KAFKA_SASL_USERNAME and
    /// KAFKA_SASL_PASSWORD[_FILE], msk-iam with AWS_REGION), KAFKA_TLS, KAFKA_CA_FILE.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: String,
    /// Topic to send to.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "trade-tx-v2")]
    topic: String,
    /// Target rate in messages per second (when no profile is given).
    #[arg(long = "rate", env = "MESSAGES_PER_SECOND", default_value_t = 10.0)]
    rate: f64,
    /// Load profile: RATE@DURATION steps, e.g. "10@60s,1000@120s,5000@120s,0@60s",
    /// or @FILE with one step per line. The producer exits when it ends.
    #[arg(long, env = "LOAD_PROFILE")]
    profile: Option<String>,
    /// Stop after this many seconds (default: run until SIGTERM).
    #[arg(long, env = "DURATION_SECONDS")]
    duration_seconds: Option<f64>,
    /// Distinct accounts (message keys).
    #[arg(long, env = "ACCOUNTS", default_value_t = 10_000)]
    accounts: u32,
    /// Prefix of trade ids; unique per producer instance (default: host name,
    /// pid and the start time in milliseconds, so that a container restarted
    /// in the same pod, with the same host name and pid, never reuses an id).
    #[arg(long, env = "PRODUCER_ID")]
    producer_id: Option<String>,
    /// Create the topic with this many partitions when it does not exist
    /// (brokers with auto.create.topics.enable=false). Without it a missing
    /// topic is an error.
    #[arg(long, env = "TOPIC_PARTITIONS", value_parser = clap::value_parser!(i32).range(1..))]
    topic_partitions: Option<i32>,
    /// Replication factor of a topic created with TOPIC_PARTITIONS; -1 takes
    /// the brokers' default.replication.factor.
    #[arg(long, env = "TOPIC_REPLICATION_FACTOR", default_value_t = -1, allow_negative_numbers = true)]
    topic_replication_factor: i32,
    /// Messages held unacknowledged before sending waits for the broker
    /// (librdkafka's queue.buffering.max.messages).
    #[arg(long, env = "QUEUE_BUFFERING_MAX_MESSAGES", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    queue_max_messages: u32,
    /// Port of /metrics and /rate.
    #[arg(long, env = "METRICS_PORT", default_value_t = 8001)]
    metrics_port: u16,
}

struct Metrics {
    registry: Registry,
    sent: Counter,
    errors: Counter,
    target_rate: Gauge<f64, AtomicU64>,
    achieved_rate: Gauge<f64, AtomicU64>,
    latency: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("trade_producer");
        let m = Metrics {
            registry: Registry::default(),
            sent: Counter::default(),
            errors: Counter::default(),
            target_rate: Gauge::default(),
            achieved_rate: Gauge::default(),
            latency: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        };
        registry.register(
            "messages_sent",
            "Messages acknowledged by the broker",
            m.sent.clone(),
        );
        registry.register(
            "send_errors",
            "Messages the broker did not acknowledge",
            m.errors.clone(),
        );
        registry.register(
            "target_rate_per_second",
            "Target send rate",
            m.target_rate.clone(),
        );
        registry.register(
            "achieved_rate_per_second",
            "Acknowledged messages over the last second",
            m.achieved_rate.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Send to broker acknowledgement",
            m.latency.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// rdkafka context: MSK IAM tokens from kafka-settings, delivery metrics here.
struct DeliveryContext {
    kafka: KafkaContext,
    metrics: Arc<Metrics>,
}

kafka_settings::forward_client_context!(DeliveryContext, kafka);

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<Instant>) {
        match result {
            Ok(_) => {
                self.metrics.sent.inc();
                self.metrics
                    .latency
                    .observe(sent_at.elapsed().as_secs_f64());
            }
            Err((e, _)) => {
                self.metrics.errors.inc();
                tracing::warn!(error = %e, "delivery failed");
            }
        }
    }
}

/// The rate in force: the profile's, until POST /rate overrides it.
struct RateControl {
    manual: AtomicU64,
    overridden: AtomicBool,
}

impl RateControl {
    fn set(&self, rate: f64) {
        self.manual.store(rate.to_bits(), Ordering::Relaxed);
        self.overridden.store(true, Ordering::Relaxed);
    }
    fn manual(&self) -> Option<f64> {
        self.overridden
            .load(Ordering::Relaxed)
            .then(|| f64::from_bits(self.manual.load(Ordering::Relaxed)))
    }
}

#[derive(Clone)]
struct App {
    metrics: Arc<Metrics>,
    rate: Arc<RateControl>,
}

async fn get_metrics(State(app): State<App>) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &app.metrics.registry)
        .expect("writing to a String");
    out
}

async fn get_rate(State(app): State<App>) -> String {
    format!("{}\n", app.metrics.target_rate.get())
}

async fn post_rate(State(app): State<App>, body: String) -> (StatusCode, String) {
    let body = body.trim();
    let parsed = body.parse::<f64>().ok().or_else(|| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()?
            .get("rate")?
            .as_f64()
    });
    match parsed.filter(|r| r.is_finite() && *r >= 0.0) {
        Some(rate) => {
            app.rate.set(rate);
            tracing::info!(rate, "target rate set");
            (StatusCode::OK, format!("rate set to {rate} msg/s\n"))
        }
        None => (
            StatusCode::BAD_REQUEST,
            format!("rate must be a number >= 0 (or {{\"rate\": N}}), got {body:?}\n"),
        ),
    }
}

fn main() -> std::process::ExitCode {
    process_lifecycle::main("trade-producer", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        anyhow::bail!(
            "MESSAGES_PER_SECOND (--rate) must be a number >= 0, got {}",
            args.rate
        );
    }
    let steps = load_profile(args.profile.as_deref())?;
    let metrics = Arc::new(Metrics::new());
    let producer = connect(&args, metrics.clone())?;
    let rate = Arc::new(RateControl {
        manual: AtomicU64::new(0),
        overridden: AtomicBool::new(false),
    });
    let (runtime, stop, listener) = process_lifecycle::background(args.metrics_port)?;
    let app = App {
        metrics: metrics.clone(),
        rate: rate.clone(),
    };
    runtime.spawn(async move {
        let router = Router::new()
            .route("/metrics", get(get_metrics))
            .route("/rate", get(get_rate).post(post_rate))
            .with_state(app);
        let _ = axum::serve(listener, router).await;
    });
    tracing::info!(topic = %args.topic, rate = args.rate, profile = ?args.profile, "producing");
    let unsent = produce(&args, &producer, (&rate, steps.as_deref()), &metrics, &stop)?;
    tracing::info!("flushing");
    // The trade a full queue refused last is sent too: it was generated.
    if let Some((key, payload)) = unsent {
        send_last(&producer, &args.topic, &key, &payload)?;
    }
    producer.flush(Duration::from_secs(30))?;
    tracing::info!(
        sent = metrics.sent.get(),
        errors = metrics.errors.get(),
        "stopped"
    );
    Ok(())
}

/// LOAD_PROFILE's steps: the text itself, or the file named after `@`.
fn load_profile(profile: Option<&str>) -> anyhow::Result<Option<Vec<profile::Step>>> {
    let Some(p) = profile else {
        return Ok(None);
    };
    let text = match p.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(Path::new(file))
            .map_err(|e| anyhow::anyhow!("LOAD_PROFILE file {file}: {e}"))?,
        None => p.to_owned(),
    };
    Ok(Some(
        profile::parse(&text).map_err(|e| anyhow::anyhow!("LOAD_PROFILE: {e}"))?,
    ))
}

/// The idempotent producer, with the topic created (TOPIC_PARTITIONS) or
/// checked to exist.
fn connect(
    args: &Args,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<BaseProducer<DeliveryContext>>> {
    let settings =
        ClusterSettings::from_env(&args.bootstrap_servers).map_err(anyhow::Error::msg)?;
    let mut config: ClientConfig = settings.client_config()?;
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set(
            "queue.buffering.max.messages",
            args.queue_max_messages.to_string(),
        );
    let producer = kafka_settings::served_producer(
        &config,
        DeliveryContext {
            kafka: settings.context(),
            metrics,
        },
        "deliveries",
    )
    .map_err(|e| anyhow::anyhow!("cannot create the producer: {e}"))?;
    if let Some(partitions) = args.topic_partitions {
        // Through the producer's own client: its thread serves the MSK IAM
        // token, which a separate admin client would never get.
        let created = kafka_admin::create_topic(
            producer.client(),
            &args.topic,
            partitions,
            args.topic_replication_factor,
            Duration::from_secs(30),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot create topic {} (TOPIC_PARTITIONS={partitions}, TOPIC_REPLICATION_FACTOR={}) on {}: {e}",
                args.topic,
                args.topic_replication_factor,
                args.bootstrap_servers
            )
        })?;
        tracing::info!(topic = %args.topic, partitions, created, "topic ensured");
    }
    // The producer's own thread serves librdkafka's events.
    kafka_settings::ensure_topic(
        producer.client(),
        &args.topic,
        &args.bootstrap_servers,
        || {},
    )
    .map_err(anyhow::Error::msg)?;
    Ok(producer)
}

/// How often the send loop runs.
const TICK: Duration = Duration::from_millis(5);

/// Sends trades at the target rate (the manual rate, else the profile's,
/// else MESSAGES_PER_SECOND) until SIGTERM, the profile's end or
/// DURATION_SECONDS; returns the trade a full queue refused last, if any.
fn produce(
    args: &Args,
    producer: &BaseProducer<DeliveryContext>,
    (rate, steps): (&RateControl, Option<&[profile::Step]>),
    metrics: &Metrics,
    stop: &AtomicBool,
) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    const MAX_BURST_S: f64 = 0.02;
    let producer_id = args.producer_id.clone().unwrap_or_else(|| {
        default_producer_id(&hostname(), std::process::id(), kafka_settings::unix_ms())
    });
    let mut trades = TradeGenerator::new(producer_id, args.accounts);
    let started = Instant::now();
    let mut last = started;
    let mut credit = 0.0f64;
    let mut window_start = started;
    let mut window_sent = metrics.sent.get();
    let mut unsent: Option<(String, Vec<u8>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let elapsed = now - started;
        let target = match (rate.manual(), steps) {
            (Some(manual), _) => manual,
            (None, Some(steps)) => match profile::rate_at(steps, elapsed) {
                Some(r) => r,
                None => break,
            },
            (None, None) => args.rate,
        };
        if args
            .duration_seconds
            .is_some_and(|d| elapsed.as_secs_f64() >= d)
        {
            break;
        }
        metrics.target_rate.set(target);
        // Tokens for the time that passed, capped at one batch (20 ms).
        credit = (credit + target * (now - last).as_secs_f64()).min(target * MAX_BURST_S + 1.0);
        last = now;
        while credit >= 1.0 {
            // A trade the full queue refused is sent before any new one: a
            // generated trade is never dropped, so no account_seq is skipped.
            let (key, payload) = match unsent.take() {
                Some(trade) => trade,
                None => {
                    let trade = trades.next_trade(kafka_settings::unix_ms());
                    (trade.account_id.clone(), serde_json::to_vec(&trade)?)
                }
            };
            let record = BaseRecord::with_opaque_to(&args.topic, Box::new(Instant::now()))
                .key(key.as_bytes())
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => credit -= 1.0,
                Err((e, _)) => {
                    // Queue full: the broker is the limit; try next tick.
                    tracing::debug!(error = %e, "send queue full");
                    unsent = Some((key, payload));
                    break;
                }
            }
        }
        if now - window_start >= Duration::from_secs(1) {
            let sent = metrics.sent.get();
            metrics
                .achieved_rate
                .set((sent - window_sent) as f64 / (now - window_start).as_secs_f64());
            window_start = now;
            window_sent = sent;
        }
        std::thread::sleep(TICK.saturating_sub(now.elapsed()));
    }
    Ok(unsent)
}

/// Queues the last trade, waiting up to 30 s for room in the queue.
fn send_last(
    producer: &BaseProducer<DeliveryContext>,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
        .key(key.as_bytes())
        .payload(payload);
    while let Err((e, returned)) = producer.send(record) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the last trade could not be queued within 30 s: {e}"
        );
        record = returned;
        std::thread::sleep(TICK);
    }
    Ok(())
}

/// `host-pid-start`: the start time (milliseconds, base 36) tells apart
/// two runs with the same host name and pid (a container restarted in its
/// pod runs as pid 1 again).
fn default_producer_id(host: &str, pid: u32, started_ms: i64) -> String {
    let mut start = String::new();
    let mut n = started_ms.unsigned_abs();
    loop {
        start.insert(0, char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    format!("{host}-{pid}-{start}")
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "producer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_in_the_same_pod_gets_a_new_trade_id_prefix() {
        // Same pod: same host name, pid 1 again; a later start.
        let first = default_producer_id("trade-tx-producer-5d8f7", 1, 1_764_859_200_000);
        let restarted = default_producer_id("trade-tx-producer-5d8f7", 1, 1_764_859_200_001);
        assert_ne!(first, restarted);
        assert!(first.starts_with("trade-tx-producer-5d8f7-1-"), "{first}");
        let mut a = TradeGenerator::new(first, 10);
        let mut b = TradeGenerator::new(restarted, 10);
        assert_ne!(a.next_trade(0).trade_id, b.next_trade(0).trade_id);
        assert_eq!(default_producer_id("h", 7, 35), "h-7-z");
        assert_eq!(default_producer_id("h", 7, 36), "h-7-10");
    }
}
