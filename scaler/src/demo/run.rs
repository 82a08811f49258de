//! One run: a fresh topic and group, the initial consumers, the producer
//! on the profile, and the control loop until the profile has ended and
//! the backlog is processed; then the audit.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
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
use crate::source::{OffsetQuery, OffsetSource, SourceFactory};
use lagrate_policy::sample::OffsetSnapshot;
use lagrate_policy::signals::{LagRules, partition_lag};
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
    /// lagrate's own estimates of the wait (`lagrate_estimated_wait_seconds`,
    /// from the offsets), read every 2 s: p99 over the run; None for KEDA's
    /// run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_p99_wait_s: Option<f64>,
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
    let mut control = control_for(mode, stack, settings, (&topic, &group)).await?;
    let offsets = KafkaFactory::default().offsets(&OffsetQuery {
        cluster: stack.cluster(),
        group: group.clone(),
        topics: Some(vec![topic.clone()]),
        timeout: Duration::from_secs(5),
    })?;

    let mut pool = Pool::new(
        bins.consumer.clone(),
        &stack.dir,
        &stack.broker,
        (&topic, &group),
        settings.consumer_capacity,
        settings.rebalance,
    );
    let start_replicas = settings.start_replicas();
    let mut view = View::new(mode.name(), settings.duration_s());
    if !first_assignment(&mut pool, (&view, mode.name()), stop, settings).await? {
        pool.stop_all().await;
        return Ok(None);
    }
    let (mut producer, producer_target) = start_producer(mode, stack, settings, bins, &topic)?;
    let mut scraped = Vec::new();

    let rules = SimLagrate::lag_rules();
    let t0 = Instant::now();
    let mut progress = Progress::new(mode, start_replicas);
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
        let Some(now) = snapshot(&offsets).await else {
            continue;
        };
        let counts = Counts::of(&now, progress.previous.as_ref(), &rules);
        progress.previous = Some(now);

        let desired = control.tick(t, progress.replicas, counts.keda_lag).await;
        progress.set_replicas(desired);
        pool.scale_to(progress.replicas)?;
        reap(&mut pool, &view).await?;
        let producing = (!producer_done).then_some(&producer_target);
        rescrape(stack, &pool, producing, &mut scraped)?;
        progress.account(t, pool.alive(), &counts, settings);
        if t >= progress.next_reason_t {
            progress.next_reason_t = t + 2.0;
            pool.scrape().await;
            progress.explain(reason(mode, stack, settings, &group, &counts).await);
        }
        view.update(&progress.status);
        if progress.ended(
            t,
            producer_done,
            counts.backlog,
            (&view, mode.name()),
            settings,
        ) {
            break;
        }
    }
    view.finish();
    pool.stop_all().await;
    producer.stop(Duration::from_secs(5)).await;
    let end = snapshot(&offsets)
        .await
        .ok_or_else(|| anyhow::anyhow!("cannot read the topic's offsets at the end"))?;
    Ok(Some(progress.finish(&pool, &end)?))
}

/// The topic's offsets now; None when the broker does not answer.
async fn snapshot(offsets: &Arc<dyn OffsetSource>) -> Option<OffsetSnapshot> {
    let offsets = offsets.clone();
    tokio::task::spawn_blocking(move || offsets.snapshot())
        .await
        .ok()
        .and_then(Result::ok)
}

/// Points Prometheus at the live consumers, and at the producer while it
/// runs, when they changed since `scraped`.
fn rescrape(
    stack: &Stack,
    pool: &Pool,
    producer: Option<&Target>,
    scraped: &mut Vec<u16>,
) -> anyhow::Result<()> {
    let mut targets = pool.targets();
    targets.extend(producer.cloned());
    if targets.iter().map(|t| t.port).ne(scraped.iter().copied()) {
        stack.scrape(&targets)?;
        *scraped = targets.iter().map(|t| t.port).collect();
    }
    Ok(())
}

/// Why the autoscaler of the run holds its size: lagrate's last reason
/// and its estimate of the wait, or the lag against KEDA's lagThreshold.
async fn reason(
    mode: Mode,
    stack: &Stack,
    settings: &DemoSettings,
    group: &str,
    counts: &Counts,
) -> (String, Option<f64>) {
    match mode {
        Mode::Lagrate => lagrate_reason(stack.http_port, group).await,
        Mode::Keda => (
            format!(
                "lag {:.0} / lagThreshold {}",
                counts.keda_lag,
                settings.keda_lag_threshold()
            ),
            None,
        ),
    }
}

/// The stand-in for KEDA and the HPA of a run: lagrate's external-push
/// trigger, or KEDA's Kafka trigger.
async fn control_for(
    mode: Mode,
    stack: &Stack,
    settings: &DemoSettings,
    (topic, group): (&str, &str),
) -> anyhow::Result<Control> {
    let scenario = settings.scenario(settings.consumer_capacity, 2.0, 3.0);
    Ok(match mode {
        Mode::Lagrate => {
            Control::lagrate(
                lagrate_keda(&scenario),
                stack.grpc_port,
                scaled_object(group, group, topic),
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
    })
}

/// Starts the initial consumers and waits until the group has its
/// partitions, before the load starts; false when interrupted.
async fn first_assignment(
    pool: &mut Pool,
    (view, name): (&View, &str),
    stop: &Interrupt,
    settings: &DemoSettings,
) -> anyhow::Result<bool> {
    let start_replicas = settings.start_replicas();
    pool.scale_to(start_replicas)?;
    view.say(&format!(
        "{}: {} partitions, {} consumer(s) of ~{} msg/s joining",
        name, settings.partitions, start_replicas, settings.consumer_capacity
    ));
    let joined = Instant::now();
    while !pool.audit_logs.iter().any(|l| audit::assigned(l)) {
        if stop.is_set() {
            return Ok(false);
        }
        anyhow::ensure!(
            joined.elapsed() < Duration::from_secs(60),
            "the first consumer got no partitions within 60 s"
        );
        reap(pool, view).await?;
        pool.scale_to(start_replicas)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(true)
}

/// The producer on the profile, and its metrics endpoint to scrape.
fn start_producer(
    mode: Mode,
    stack: &Stack,
    settings: &DemoSettings,
    bins: &Binaries,
    topic: &str,
) -> anyhow::Result<(Proc, Target)> {
    let port = free_port()?;
    let producer = Proc::spawn(
        "trade-producer",
        &bins.producer,
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", stack.broker.clone()),
            ("KAFKA_TOPIC", topic.to_owned()),
            ("LOAD_PROFILE", profile::format(&settings.steps)),
            ("METRICS_PORT", port.to_string()),
            ("PRODUCER_ID", format!("demo-{}", mode.name())),
            ("RUST_LOG", "info".into()),
        ],
        &stack.dir,
        stack.dir.join(format!("{topic}-producer.log")),
    )?;
    let target = Target {
        port,
        job: "trade-producer",
        topic: topic.to_owned(),
    };
    Ok((producer, target))
}

/// What one offset snapshot of the topic says.
struct Counts {
    /// Messages not yet committed.
    backlog: f64,
    /// What KEDA's Kafka trigger reads, with its rules for partitions that
    /// have no commit yet.
    keda_lag: f64,
    produced: f64,
    committed: f64,
}

impl Counts {
    fn of(now: &OffsetSnapshot, previous: Option<&OffsetSnapshot>, rules: &LagRules) -> Self {
        let parts = &now.partitions;
        Counts {
            backlog: parts
                .iter()
                .map(|p| (p.high_watermark - p.committed.unwrap_or(0)).max(0) as f64)
                .sum(),
            keda_lag: parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let before = previous.and_then(|s| s.partitions.get(i));
                    partition_lag(rules, p, before).0 as f64
                })
                .sum(),
            produced: parts.iter().map(|p| p.high_watermark as f64).sum(),
            committed: parts.iter().map(|p| p.committed.unwrap_or(0) as f64).sum(),
        }
    }
}

/// What a run has measured so far.
struct Progress {
    row: RunRow,
    observed: Observed,
    /// (t, produced, committed, pods alive, backlog) over the last seconds.
    history: VecDeque<(f64, f64, f64, u32, f64)>,
    previous: Option<OffsetSnapshot>,
    replicas: u32,
    status: Status,
    next_trace_t: f64,
    next_reason_t: f64,
    /// lagrate's wait estimates read so far.
    estimates: Vec<f64>,
}

impl Progress {
    fn new(mode: Mode, start_replicas: u32) -> Self {
        Progress {
            row: RunRow {
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
                estimated_p99_wait_s: None,
            },
            observed: Observed {
                saturated_per_pod: Vec::new(),
                startups: Startups::default(),
                join_s: Vec::new(),
            },
            history: VecDeque::new(),
            previous: None,
            replicas: start_replicas,
            status: Status::default(),
            next_trace_t: 0.0,
            next_reason_t: 0.0,
            estimates: Vec::new(),
        }
    }

    /// The replicas the HPA set now; a change is a scale action.
    fn set_replicas(&mut self, desired: u32) {
        if desired != self.replicas {
            self.row.scale_actions += 1;
            self.replicas = desired;
        }
    }

    /// One tick at `t` with `alive` consumers: pod-seconds, peaks, rates,
    /// saturated throughput per pod, the status line and the timeline.
    fn account(&mut self, t: f64, alive: u32, counts: &Counts, settings: &DemoSettings) {
        let row = &mut self.row;
        row.pod_seconds_total += f64::from(alive) * TICK_S;
        if t <= settings.duration_s() {
            row.pod_seconds += f64::from(alive) * TICK_S;
            row.peak_lag = row.peak_lag.max(counts.backlog);
            row.max_replicas = row.max_replicas.max(self.replicas);
        }
        let history = &mut self.history;
        history.push_back((t, counts.produced, counts.committed, alive, counts.backlog));
        while history.front().is_some_and(|h| t - h.0 > 5.0) {
            history.pop_front();
        }
        let (inbound, processed) = rates(history, 2.0);
        let full = history.front().is_some_and(|h| t - h.0 >= 4.5);
        let capacity = settings.consumer_capacity;
        let saturated = history
            .iter()
            .all(|h| h.3 == alive && h.4 >= f64::from(alive) * capacity * 5.0);
        if full && saturated && alive > 0 {
            self.observed
                .saturated_per_pod
                .push(rates(history, 5.0).1 / f64::from(alive));
        }
        let status = &mut self.status;
        status.t = t;
        status.inbound_per_s = inbound;
        status.processed_per_s = processed;
        status.lag = counts.backlog;
        status.desired = self.replicas;
        status.running = alive;
        if t >= self.next_trace_t {
            self.next_trace_t += 1.0;
            row.timeline
                .push(t, inbound, processed, alive, counts.backlog);
            row.desired.push(self.replicas);
        }
    }

    /// Whether the run ends at `t`: the profile has ended and its backlog
    /// is processed, or it is still there after the drain limit.
    fn ended(
        &mut self,
        t: f64,
        producer_done: bool,
        backlog: f64,
        (view, name): (&View, &str),
        settings: &DemoSettings,
    ) -> bool {
        let duration = settings.duration_s();
        let drain_limit = duration.max(120.0);
        let drained = t >= duration && producer_done && backlog == 0.0;
        let given_up = t >= duration + drain_limit;
        if given_up && !drained {
            view.say(&format!(
                "{name}: {backlog:.0} messages still unprocessed {drain_limit:.0} s after the profile ended; stopping"
            ));
        }
        if drained || given_up {
            self.row.drain_s = t - duration;
        }
        drained || given_up
    }

    /// The run's row and what it measured, audited against the topic's
    /// offsets at the end.
    /// Shows the autoscaler's reason, and keeps lagrate's wait estimate.
    fn explain(&mut self, (reason, estimate): (String, Option<f64>)) {
        self.status.reason = reason;
        self.estimates.extend(estimate);
    }

    fn finish(mut self, pool: &Pool, end: &OffsetSnapshot) -> anyhow::Result<(RunRow, Observed)> {
        self.row.final_replicas = self.replicas;
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
        self.row.tally = audit::tally(&pool.audit_logs, &ends)?;
        if !self.estimates.is_empty() {
            self.estimates.sort_by(f64::total_cmp);
            let index = ((self.estimates.len() - 1) as f64 * 0.99).round() as usize;
            self.row.estimated_p99_wait_s = Some(self.estimates[index]);
        }
        self.observed.join_s = audit::join_seconds(&pool.startups);
        self.observed.startups = pool.startups.clone();
        Ok((self.row, self.observed))
    }
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

/// lagrate's last reason for the demo's ScaledObject and its estimate of
/// the wait (`/debug/decisions`).
async fn lagrate_reason(http_port: u16, name: &str) -> (String, Option<f64>) {
    let url = format!("http://127.0.0.1:{http_port}/debug/decisions");
    let Ok(response) = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return ("lagrate unreachable".into(), None);
    };
    let Ok(decisions) = response.json::<HashMap<String, serde_json::Value>>().await else {
        return (String::new(), None);
    };
    let decision = decisions.get(&format!("demo/{name}"));
    let reason = decision
        .and_then(|d| d["reason"].as_str())
        .unwrap_or("waiting for the first sample")
        .to_owned();
    let estimate = decision.and_then(|d| d["evaluation"]["observation"]["estimatedWaitS"].as_f64());
    (reason, estimate)
}
