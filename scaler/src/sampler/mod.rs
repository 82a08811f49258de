//! One sampler per source key (cluster + group + topics): a task that reads
//! Kafka offsets on the wall-clock grid and keeps a window of samples, and
//! beside it a task that reads the topics' inbound rate from Prometheus on
//! the same grid. A sample carries the newest rate reading: a slow or hung
//! Prometheus never makes a Kafka sample late. Where a trigger names its
//! `scaleTarget`, a third task reads that workload's scale from the
//! Kubernetes API the same way. Every ScaledObject with that
//! key shares it, so Kafka sees one offset query per key per interval
//! however often KEDA calls, and all keys share a cap on Kafka calls in
//! flight (`limits.kafkaConcurrency`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

mod source_key;

pub use source_key::{SourceKey, source_key};

use crate::clock::{next_grid_tick, unix_now};
use crate::metrics::Metrics;
use crate::source::kubernetes::{ScaleQuery, ScaleReader};
use crate::source::prometheus::PrometheusRate;
use crate::source::{Backend, OffsetSource, SourceError};
use lagrate_policy::evaluate::SampleWindow;
use lagrate_policy::sample::{PrometheusReading, Sample};

/// The samples of one key and the last failure.
#[derive(Debug)]
struct Window {
    samples: SampleWindow,
    last_error: Option<SourceError>,
    /// Sample attempts that failed in a row.
    failures: u32,
}

/// After this many failed samples in a row a key backs off: it is sampled
/// every 2nd, then 4th, then every BACKOFF_MAX_TICKS-th grid instant until
/// a sample succeeds, so a key that cannot be read costs its cluster less.
const BACKOFF_AFTER: u32 = 3;
const BACKOFF_MAX_TICKS: u32 = 6;

/// Grid instants to skip before the next attempt after `failures` failed
/// samples in a row.
fn ticks_to_skip(failures: u32) -> u32 {
    if failures < BACKOFF_AFTER {
        return 0;
    }
    let exponent = (failures - BACKOFF_AFTER + 1).min(8);
    (1u32 << exponent).min(BACKOFF_MAX_TICKS) - 1
}

/// How a key's sampling is going, for /debug/decisions.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Grid instants skipped between attempts while failing.
    pub backoff_intervals: u32,
}

/// What the Kafka task of a key learns from the others: the Prometheus
/// task reads the rate of the topics the last offsets named, and the
/// newest rate and scale readings go with the next sample.
#[derive(Debug, Default)]
struct RateShare {
    topics: Vec<Arc<str>>,
    /// The grid instant of the reading, and the reading.
    reading: Option<(f64, PrometheusReading)>,
    /// The grid instant of the last good scale reading, and the replicas.
    scale: Option<(f64, u32)>,
}

/// A rate or scale reading older than this many intervals is not used.
const RATE_READING_INTERVALS: f64 = 2.0;

/// A running sampler; dropping the last handle stops its tasks.
pub struct Sampler {
    pub key: SourceKey,
    window: Arc<RwLock<Window>>,
    seq: watch::Receiver<u64>,
    tasks: Vec<tokio::task::AbortHandle>,
    metrics: Arc<Metrics>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.metrics.remove_group(&self.key.offsets.group);
    }
}

impl Sampler {
    /// Starts sampling `source` (and Prometheus, when configured) for
    /// `key`; a Kafka call waits for one of `kafka_slots`.
    pub fn start(
        key: SourceKey,
        source: Arc<dyn OffsetSource>,
        kafka_slots: Arc<Semaphore>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let window = Arc::new(RwLock::new(Window {
            samples: SampleWindow::new(key.window.as_secs_f64()),
            last_error: None,
            failures: 0,
        }));
        let (seq_tx, seq) = watch::channel(0u64);
        let share = Arc::new(Mutex::new(RateShare::default()));
        let mut tasks = Vec::new();
        if let Some(settings) = &key.prometheus {
            let rate = PrometheusRate::new(settings);
            let task = tokio::spawn(read_rates(
                key.clone(),
                rate,
                share.clone(),
                metrics.clone(),
            ));
            tasks.push(task.abort_handle());
        }
        if let Some(query) = &key.scale {
            let task = tokio::spawn(read_scale(
                key.clone(),
                query.clone(),
                share.clone(),
                metrics.clone(),
            ));
            tasks.push(task.abort_handle());
        }
        let sampling = Sampling {
            source,
            kafka_slots,
            share,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(run(key.clone(), sampling, window.clone(), seq_tx));
        tasks.push(task.abort_handle());
        Arc::new(Sampler {
            key,
            window,
            seq,
            tasks,
            metrics,
        })
    }

    /// Notified after every sample attempt (successful or not).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seq.clone()
    }

    /// Increases with every sample attempt.
    pub fn seq(&self) -> u64 {
        *self.seq.borrow()
    }

    /// `read` of the current window, under the window's read lock (a
    /// sample joining waits for it: keep it short, and never await in it).
    /// No copy of the window is made.
    pub fn read<R>(&self, read: impl FnOnce(&SampleWindow, Option<&SourceError>, u64) -> R) -> R {
        let window = self.window.read().expect("sampler lock poisoned");
        read(
            &window.samples,
            window.last_error.as_ref(),
            *self.seq.borrow(),
        )
    }

    /// Failures in a row and the last error, without copying the window.
    pub fn health(&self) -> Health {
        let window = self.window.read().expect("sampler lock poisoned");
        Health {
            consecutive_failures: window.failures,
            last_error: window.last_error.as_ref().map(ToString::to_string),
            backoff_intervals: ticks_to_skip(window.failures),
        }
    }

    /// Time of the newest good sample, without copying the window.
    pub fn newest_sample_time(&self) -> Option<f64> {
        let window = self.window.read().expect("sampler lock poisoned");
        window.samples.newest().map(|s| s.t)
    }

    /// Waits until the first sample attempt has finished, up to `timeout`.
    pub async fn first_attempt(&self, timeout: Duration) {
        let mut rx = self.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|seq| *seq > 0)).await;
    }
}

/// Where in the interval a key is sampled: a function of the key alone, so
/// every scaler replica samples a key at the same instants, while different
/// keys spread over the interval instead of hitting the brokers at once.
fn grid_phase(key: &SourceKey, interval_s: f64) -> f64 {
    use std::hash::{Hash, Hasher};
    // FNV-1a over the identifying strings: stable across processes and builds.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    key.offsets.cluster.bootstrap_servers.hash(&mut h);
    key.offsets.group.hash(&mut h);
    key.offsets.topics.hash(&mut h);
    (h.finish() % 1000) as f64 / 1000.0 * interval_s
}

/// The grid instants of a key, from the one just passed: the first sample
/// is taken at once, so a new ScaledObject gets an answer quickly.
struct Grid {
    interval: f64,
    phase: f64,
    first: bool,
}

impl Grid {
    fn new(key: &SourceKey) -> Self {
        let interval = key.interval.as_secs_f64();
        Grid {
            interval,
            phase: grid_phase(key, interval),
            first: true,
        }
    }

    /// Waits for the next grid instant and returns it, and whether it was
    /// waited for (the first is the instant just passed, taken at once).
    async fn next(&mut self) -> (f64, bool) {
        let now = unix_now();
        if std::mem::take(&mut self.first) {
            let passed = next_grid_tick(now - self.phase, self.interval) - self.interval;
            return (passed + self.phase, false);
        }
        let tick = next_grid_tick(now - self.phase, self.interval) + self.phase;
        tokio::time::sleep(Duration::from_secs_f64((tick - now).max(0.0))).await;
        (tick, true)
    }
}

/// What the Kafka task of a key works with.
struct Sampling {
    source: Arc<dyn OffsetSource>,
    kafka_slots: Arc<Semaphore>,
    share: Arc<Mutex<RateShare>>,
    metrics: Arc<Metrics>,
}

#[tracing::instrument(name = "sample", skip_all, fields(group = %key.offsets.group, topics = ?key.offsets.topics))]
async fn run(
    key: SourceKey,
    sampling: Sampling,
    window: Arc<RwLock<Window>>,
    seq: watch::Sender<u64>,
) {
    let mut grid = Grid::new(&key);
    let metrics = &sampling.metrics;
    let mut skip = 0;
    loop {
        let (tick, scheduled) = grid.next().await;
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let result = take_sample(&sampling, &key, tick).await;
        if scheduled {
            metrics.observe_sample_age((unix_now() - tick).max(0.0));
        }
        {
            let mut w = window.write().expect("sampler lock poisoned");
            match result {
                Ok(sample) => {
                    w.samples.push(Arc::new(sample));
                    w.last_error = None;
                    w.failures = 0;
                    metrics.record_sample(&key.offsets.group, None, 0);
                }
                Err(e) => {
                    w.failures += 1;
                    skip = ticks_to_skip(w.failures);
                    tracing::warn!(group = %key.offsets.group, error = %e, failures_in_a_row = w.failures, skipping_intervals = skip, "sample failed");
                    metrics.record_sample(&key.offsets.group, Some(&e), w.failures);
                    w.last_error = Some(e);
                }
            }
        }
        seq.send_modify(|s| *s += 1);
    }
}

/// Reads the inbound rate of the topics the Kafka task last saw, on the
/// same grid, into the share.
#[tracing::instrument(name = "inbound_rate", skip_all, fields(group = %key.offsets.group, topics = ?key.offsets.topics))]
async fn read_rates(
    key: SourceKey,
    rate: PrometheusRate,
    share: Arc<Mutex<RateShare>>,
    metrics: Arc<Metrics>,
) {
    let mut grid = Grid::new(&key);
    let mut series_seen = HashMap::new();
    loop {
        let (tick, _) = grid.next().await;
        let topics = share.lock().expect("rate lock poisoned").topics.clone();
        if topics.is_empty() {
            continue;
        }
        let names: Vec<&str> = topics.iter().map(|t| &**t).collect();
        let reading = match rate.inbound_rate(&names).await {
            Ok(answer) => {
                report_series(
                    &answer.series,
                    &mut series_seen,
                    &key.offsets.group,
                    &metrics,
                );
                answer
                    .rate
                    .map_or(PrometheusReading::Unavailable, PrometheusReading::Rate)
            }
            Err(e) => {
                tracing::debug!(group = %key.offsets.group, error = %e, "prometheus rate unavailable; using offsets");
                metrics.record_source_error(&e);
                PrometheusReading::Unavailable
            }
        };
        share.lock().expect("rate lock poisoned").reading = Some((tick, reading));
    }
}

/// Reads the scaled workload's size on the grid into the share. A failure
/// is logged when it starts and when it ends, not at every interval.
#[tracing::instrument(name = "scale", skip_all, fields(group = %key.offsets.group, topics = ?key.offsets.topics))]
async fn read_scale(
    key: SourceKey,
    query: ScaleQuery,
    share: Arc<Mutex<RateShare>>,
    metrics: Arc<Metrics>,
) {
    let group = &key.offsets.group;
    let target = query.target.path();
    let reader = match ScaleReader::new(&query) {
        Ok(reader) => reader,
        Err(e) => {
            tracing::warn!(group, target, error = %e, "cannot read the scale target: a starting replica answers Unavailable until its window fills");
            return;
        }
    };
    let mut grid = Grid::new(&key);
    let mut failing = false;
    loop {
        let (tick, _) = grid.next().await;
        match reader.replicas().await {
            Ok(replicas) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(
                        group,
                        target,
                        replicas,
                        "the scale target is readable again"
                    );
                }
                share.lock().expect("rate lock poisoned").scale = Some((tick, replicas));
            }
            Err(e) => {
                metrics.record_source_error(&e);
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(group, target, error = %e, "cannot read the scale target");
                }
            }
        }
    }
}

/// Exports how many series each topic's rate summed, and warns when that
/// number changes: a broker that stops reporting makes the sum too low.
fn report_series(
    series: &[(String, usize)],
    seen: &mut HashMap<String, usize>,
    group: &str,
    metrics: &Metrics,
) {
    for (topic, count) in series {
        metrics.set_prometheus_series(topic, *count);
        match seen.insert(topic.clone(), *count) {
            Some(before) if before != *count => tracing::warn!(
                group,
                topic,
                before,
                now = count,
                "the inbound-rate query returned a different number of series (a broker joined or dropped out of the sum)"
            ),
            _ => {}
        }
    }
}

async fn take_sample(
    sampling: &Sampling,
    key: &SourceKey,
    tick: f64,
) -> Result<Sample, SourceError> {
    let offsets = {
        // Fair: keys get the Kafka slots in the order they asked.
        let _slot = sampling
            .kafka_slots
            .acquire()
            .await
            .map_err(|_| SourceError::unavailable(Backend::Kafka, "shutting down"))?;
        sampling.metrics.count_offset_query();
        let source = sampling.source.clone();
        tokio::task::spawn_blocking(move || source.snapshot())
            .await
            .map_err(|e| {
                SourceError::unavailable(Backend::Kafka, format!("offset reader stopped: {e}"))
            })??
    };
    let mut share = sampling.share.lock().expect("rate lock poisoned");
    let max_age = RATE_READING_INTERVALS * key.interval.as_secs_f64();
    let prometheus = if key.prometheus.is_none() {
        PrometheusReading::NotConfigured
    } else {
        let mut topics: Vec<Arc<str>> =
            offsets.partitions.iter().map(|p| p.topic.clone()).collect();
        topics.dedup();
        share.topics = topics;
        match &share.reading {
            Some((at, reading)) if tick - at <= max_age => *reading,
            _ => PrometheusReading::Unavailable,
        }
    };
    let target_replicas = share
        .scale
        .filter(|(at, _)| tick - at <= max_age)
        .map(|(_, replicas)| replicas);
    Ok(Sample {
        t: tick,
        offsets,
        prometheus,
        target_replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_key_backs_off_to_every_sixth_instant_and_not_before_three_failures() {
        let skips: Vec<u32> = (0..8).map(ticks_to_skip).collect();
        assert_eq!(skips, [0, 0, 0, 1, 3, 5, 5, 5]);
        assert_eq!(ticks_to_skip(u32::MAX), BACKOFF_MAX_TICKS - 1);
    }
}
