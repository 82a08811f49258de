//! One run: a fresh topic and group, the initial consumers, the producer
//! on the profile, and the control loop until the profile has ended and
//! the backlog is processed; then the audit.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::audit::{self, PartitionEnd, Tally};
use super::children::{Proc, free_port};
use super::control::{Control, scaled_object};
use super::interrupt::Interrupt;
use super::pool::{Pool, Startups};
use super::settings::DemoSettings;
use super::stack::{Stack, Target};
use super::view::{Status, View};
use crate::source::kafka::KafkaFactory;
use crate::source::{OffsetQuery, SourceFactory};
use lagrate_policy::sample::OffsetSnapshot;
use lagrate_policy::signals::partition_lag;
use lagrate_sim::autoscalers::{Lagrate as SimLagrate, kafka_trigger_keda, lagrate_keda};
use lagrate_sim::report::Trace;
use trade_model::profile;

/// Which autoscaler drives the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Lagrate,
    Keda,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Lagrate => "lagrate",
            Mode::Keda => "keda",
        }
    }
}

/// One row of the summary (and of `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// produced, processed, duplicates, lost, unprocessed, p99_wait_s.
    #[serde(flatten)]
    pub tally: Tally,
    /// Consumer processes alive, integrated over the profile, seconds.
    pub pod_seconds: f64,
    /// The same until the run's end: the profile and the drain after it.
    pub pod_seconds_total: f64,
    pub peak_lag: f64,
    /// Changes of the replica count the HPA set.
    pub scale_actions: u32,
    pub start_replicas: u32,
    pub max_replicas: u32,
    pub final_replicas: u32,
    /// Seconds after the profile's end until the backlog was processed
    /// (the run's end).
    pub drain_s: f64,
    /// The run, once a second: t, inbound_rate, processing_rate, pods
    /// (consumer processes alive), lag.
    pub timeline: Trace,
    /// The replicas the HPA had set, at each `timeline.t`.
    pub desired: Vec<u32>,
}

/// What a run measured for the prediction.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Processed msg/s per consumer over 5 s in which the consumers did
    /// not change and each had at least 5 s of work queued.
    pub saturated_per_pod: Vec<f64>,
    pub startups: Startups,
    pub join_s: Vec<f64>,
}

pub struct Binaries {
    pub producer: PathBuf,
    pub consumer: PathBuf,
}

/// Consumers that may exit on their own (and be replaced) before the run
/// is abandoned.
const MAX_CRASHES: u32 = 5;

/// Tick of the control loop, seconds.
const TICK_S: f64 = 0.5;

pub async fn run(
    mode: Mode,
    stack: &mut Stack,
    settings: &DemoSettings,
    bins: &Binaries,
    stop: &Interrupt,
) -> anyhow::Result<Option<(RunRow, Observed)>> {
    let topic = format!("trades-{}", mode.name());
    let group = format!("trade-consumer-{}", mode.name());
    stack.create_topic(&topic, settings.partitions).await?;
    let scenario = settings.scenario(settings.consumer_capacity, 2.0, 3.0);
    let mut control = match mode {
        Mode::Lagrate => {
            Control::lagrate(
                lagrate_keda(&scenario),
                stack.grpc_port,
                scaled_object(&group, &group, &topic),
            )
            .await?
        }
        Mode::Keda => {
            let mut keda_scenario = scenario.clone();
            keda_scenario.keda = settings.keda(300.0);
            Control::kafka_lag(
                kafka_trigger_keda(&keda_scenario, settings.keda_behavior()),
                settings.keda_lag_threshold(),
                settings.partitions,
            )
        }
    };
    let offsets = KafkaFactory::default().offsets(&OffsetQuery {
        cluster: stack.cluster(),
        group: group.clone(),
        topics: Some(vec![topic.clone()]),
        timeout: Duration::from_secs(5),
    })?;
    let snapshot = || {
        let offsets = offsets.clone();
        async move {
            tokio::task::spawn_blocking(move || offsets.snapshot())
                .await
                .ok()
                .and_then(Result::ok)
        }
    };

    let mut pool = Pool::new(
        bins.consumer.clone(),
        &stack.dir,
        &stack.broker,
        (&topic, &group),
        settings.consumer_capacity,
        settings.rebalance,
    );
    let start_replicas = settings.start_replicas();
    pool.scale_to(start_replicas)?;
    let mut view = View::new(mode.name(), settings.duration_s());
    view.say(&format!(
        "{}: {} partitions, {} consumer(s) of ~{} msg/s joining",
        mode.name(),
        settings.partitions,
        start_replicas,
        settings.consumer_capacity
    ));
    // The group has its partitions before the load starts.
    let joined = Instant::now();
    while !pool.audit_logs.iter().any(|l| audit::assigned(l)) {
        if stop.is_set() {
            pool.stop_all().await;
            return Ok(None);
        }
        anyhow::ensure!(
            joined.elapsed() < Duration::from_secs(60),
            "the first consumer got no partitions within 60 s"
        );
        reap(&mut pool, &view).await?;
        pool.scale_to(start_replicas)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let producer_port = free_port()?;
    let mut producer = Proc::spawn(
        "trade-producer",
        &bins.producer,
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", stack.broker.clone()),
            ("KAFKA_TOPIC", topic.clone()),
            ("LOAD_PROFILE", profile::format(&settings.steps)),
            ("METRICS_PORT", producer_port.to_string()),
            ("PRODUCER_ID", format!("demo-{}", mode.name())),
            ("RUST_LOG", "info".into()),
        ],
        &stack.dir,
        stack.dir.join(format!("{topic}-producer.log")),
    )?;
    let producer_target = Target {
        port: producer_port,
        job: "trade-producer",
        topic: topic.clone(),
    };
    let mut scraped = Vec::new();

    let duration = settings.duration_s();
    let drain_limit = duration.max(120.0);
    let rules = SimLagrate::lag_rules();
    let t0 = Instant::now();
    let mut status = Status::default();
    let mut row = RunRow {
        tally: Tally::default(),
        pod_seconds: 0.0,
        pod_seconds_total: 0.0,
        peak_lag: 0.0,
        scale_actions: 0,
        start_replicas,
        max_replicas: start_replicas,
        final_replicas: start_replicas,
        drain_s: 0.0,
        timeline: Trace::new(mode.name()),
        desired: Vec::new(),
    };
    let mut observed = Observed {
        saturated_per_pod: Vec::new(),
        startups: Startups::default(),
        join_s: Vec::new(),
    };
    // (t, produced, committed, pods alive, backlog) over the last seconds.
    let mut history: VecDeque<(f64, f64, f64, u32, f64)> = VecDeque::new();
    let mut previous: Option<OffsetSnapshot> = None;
    let mut replicas = start_replicas;
    let mut next_trace_t = 0.0;
    let mut next_reason_t = 0.0;
    let mut producer_done = false;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(TICK_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if stop.is_set() {
            view.finish();
            pool.stop_all().await;
            producer.stop(Duration::from_secs(5)).await;
            return Ok(None);
        }
        let t = t0.elapsed().as_secs_f64();
        producer_done = producer_done || producer.exited();
        let Some(now) = snapshot().await else {
            continue;
        };
        let backlog: f64 = now
            .partitions
            .iter()
            .map(|p| (p.high_watermark - p.committed.unwrap_or(0)).max(0) as f64)
            .sum();
        // What KEDA's Kafka trigger reads, with its rules for partitions
        // that have no commit yet.
        let keda_lag: f64 = now
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let before = previous.as_ref().and_then(|s| s.partitions.get(i));
                partition_lag(&rules, p, before).0 as f64
            })
            .sum();
        let produced: f64 = now.partitions.iter().map(|p| p.high_watermark as f64).sum();
        let committed: f64 = now
            .partitions
            .iter()
            .map(|p| p.committed.unwrap_or(0) as f64)
            .sum();
        previous = Some(now);

        let desired = control.tick(t, replicas, keda_lag).await;
        if desired != replicas {
            row.scale_actions += 1;
            replicas = desired;
        }
        pool.scale_to(replicas)?;
        reap(&mut pool, &view).await?;
        let mut targets = pool.targets();
        if !producer_done {
            targets.push(producer_target.clone());
        }
        if targets.iter().map(|t| t.port).ne(scraped.iter().copied()) {
            stack.scrape(&targets)?;
            scraped = targets.iter().map(|t| t.port).collect();
        }

        let alive = pool.alive();
        row.pod_seconds_total += f64::from(alive) * TICK_S;
        if t <= duration {
            row.pod_seconds += f64::from(alive) * TICK_S;
            row.peak_lag = row.peak_lag.max(backlog);
            row.max_replicas = row.max_replicas.max(replicas);
        }
        history.push_back((t, produced, committed, alive, backlog));
        while history.front().is_some_and(|h| t - h.0 > 5.0) {
            history.pop_front();
        }
        let (inbound, processed) = rates(&history, 2.0);
        let full = history.front().is_some_and(|h| t - h.0 >= 4.5);
        let saturated = history
            .iter()
            .all(|h| h.3 == alive && h.4 >= f64::from(alive) * settings.consumer_capacity * 5.0);
        if full && saturated && alive > 0 {
            observed
                .saturated_per_pod
                .push(rates(&history, 5.0).1 / f64::from(alive));
        }

        if t >= next_reason_t {
            next_reason_t = t + 2.0;
            pool.scrape().await;
            status.reason = match mode {
                Mode::Lagrate => lagrate_reason(stack.http_port, &group).await,
                Mode::Keda => format!(
                    "lag {keda_lag:.0} / lagThreshold {}",
                    settings.keda_lag_threshold()
                ),
            };
        }
        status.t = t;
        status.inbound_per_s = inbound;
        status.processed_per_s = processed;
        status.lag = backlog;
        status.desired = replicas;
        status.running = alive;
        view.update(&status);
        if t >= next_trace_t {
            next_trace_t += 1.0;
            row.timeline.push(t, inbound, processed, alive, backlog);
            row.desired.push(replicas);
        }
        if t >= duration && producer_done && backlog == 0.0 {
            row.drain_s = t - duration;
            break;
        }
        if t >= duration + drain_limit {
            view.say(&format!(
                "{}: {backlog:.0} messages still unprocessed {drain_limit:.0} s after the profile ended; stopping",
                mode.name()
            ));
            row.drain_s = t - duration;
            break;
        }
    }
    view.finish();
    row.final_replicas = replicas;
    pool.stop_all().await;
    producer.stop(Duration::from_secs(5)).await;

    let end = snapshot()
        .await
        .ok_or_else(|| anyhow::anyhow!("cannot read the topic's offsets at the end"))?;
    let ends: HashMap<i32, PartitionEnd> = end
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition,
                PartitionEnd {
                    high_watermark: p.high_watermark,
                    committed: p.committed,
                },
            )
        })
        .collect();
    row.tally = audit::tally(&pool.audit_logs, &ends)?;
    observed.join_s = audit::join_seconds(&pool.startups);
    observed.startups = pool.startups.clone();
    Ok(Some((row, observed)))
}

/// Reaps exited consumers; one that exited on its own is shown (and
/// replaced by the next `scale_to`, as a Deployment would), up to
/// MAX_CRASHES in a run.
async fn reap(pool: &mut Pool, view: &View) -> anyhow::Result<()> {
    for crash in pool.poll().await {
        view.say(&crash);
    }
    anyhow::ensure!(
        pool.crashes <= MAX_CRASHES,
        "{} consumers exited on their own; see the messages above",
        pool.crashes
    );
    Ok(())
}

/// (inbound, processed) msg/s over the last `window_s` of history.
fn rates(history: &VecDeque<(f64, f64, f64, u32, f64)>, window_s: f64) -> (f64, f64) {
    let Some(last) = history.back() else {
        return (0.0, 0.0);
    };
    let first = history
        .iter()
        .find(|h| last.0 - h.0 <= window_s)
        .unwrap_or(last);
    let dt = last.0 - first.0;
    if dt <= 0.0 {
        return (0.0, 0.0);
    }
    (
        ((last.1 - first.1) / dt).max(0.0),
        ((last.2 - first.2) / dt).max(0.0),
    )
}

/// lagrate's last reason for the demo's ScaledObject (`/debug/decisions`).
async fn lagrate_reason(http_port: u16, name: &str) -> String {
    let url = format!("http://127.0.0.1:{http_port}/debug/decisions");
    let Ok(response) = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return "lagrate unreachable".into();
    };
    let Ok(decisions) = response.json::<HashMap<String, serde_json::Value>>().await else {
        return String::new();
    };
    decisions
        .get(&format!("demo/{name}"))
        .and_then(|d| d["reason"].as_str())
        .unwrap_or("waiting for the first sample")
        .to_owned()
}
