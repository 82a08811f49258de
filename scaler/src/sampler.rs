//! One sampler per source key (cluster + group + topics): a task that reads
//! Kafka offsets and the Prometheus rate on the wall-clock grid and keeps a
//! window of samples. Every ScaledObject with that key shares it, so Kafka
//! sees one offset query per key per interval however often KEDA calls.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{next_grid_tick, unix_now};
use crate::evaluate::SampleWindow;
use crate::metrics::{Metrics, ResultLabels, TopicLabels};
use crate::signals::{PrometheusReading, Sample};
use crate::source::prometheus::{PrometheusRate, PrometheusSettings};
use crate::source::{OffsetQuery, OffsetSource, SourceError};

/// Everything that identifies what a sampler reads and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub offsets: OffsetQuery,
    pub prometheus: Option<PrometheusSettings>,
    pub interval: Duration,
    pub window: Duration,
}

/// The samples of one key and the last failure.
#[derive(Debug)]
struct Window {
    samples: SampleWindow,
    last_error: Option<SourceError>,
}

/// A consistent copy of a sampler's window.
#[derive(Debug, Clone)]
pub struct WindowView {
    pub window: SampleWindow,
    /// Increases with every sample attempt.
    pub seq: u64,
    pub last_error: Option<SourceError>,
}

/// A running sampler; dropping the last handle stops its task.
pub struct Sampler {
    pub key: SourceKey,
    window: Arc<RwLock<Window>>,
    seq: watch::Receiver<u64>,
    task: tokio::task::AbortHandle,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sampler {
    /// Starts sampling `source` (and Prometheus, when configured) for `key`.
    pub fn start(
        key: SourceKey,
        source: Arc<dyn OffsetSource>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let window = Arc::new(RwLock::new(Window {
            samples: SampleWindow::new(key.window.as_secs_f64()),
            last_error: None,
        }));
        let (seq_tx, seq) = watch::channel(0u64);
        let prometheus = key
            .prometheus
            .as_ref()
            .map(|p| PrometheusRate::new(&p.url, &p.rate_query, p.timeout));
        let task = tokio::spawn(run(
            key.clone(),
            source,
            prometheus,
            window.clone(),
            seq_tx,
            metrics,
        ));
        Arc::new(Sampler {
            key,
            window,
            seq,
            task: task.abort_handle(),
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

    /// The current window.
    pub fn view(&self) -> WindowView {
        let window = self.window.read().expect("sampler lock poisoned");
        WindowView {
            window: window.samples.clone(),
            seq: *self.seq.borrow(),
            last_error: window.last_error.clone(),
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

async fn run(
    key: SourceKey,
    source: Arc<dyn OffsetSource>,
    prometheus: Option<PrometheusRate>,
    window: Arc<RwLock<Window>>,
    seq: watch::Sender<u64>,
    metrics: Arc<Metrics>,
) {
    let interval = key.interval.as_secs_f64();
    let phase = grid_phase(&key, interval);
    let mut first = true;
    let mut series_seen = HashMap::new();
    loop {
        // The first sample is taken at once so a new ScaledObject gets an
        // answer quickly; it is stamped with the grid instant just passed.
        let now = unix_now();
        let tick = if first {
            first = false;
            next_grid_tick(now - phase, interval) - interval + phase
        } else {
            let tick = next_grid_tick(now - phase, interval) + phase;
            tokio::time::sleep(Duration::from_secs_f64((tick - now).max(0.0))).await;
            tick
        };
        let result = take_sample(
            &source,
            prometheus.as_ref(),
            &mut series_seen,
            &key,
            tick,
            &metrics,
        )
        .await;
        {
            let mut w = window.write().expect("sampler lock poisoned");
            match result {
                Ok(sample) => {
                    w.samples.push(Arc::new(sample));
                    w.last_error = None;
                    metrics
                        .samples
                        .get_or_create(&ResultLabels {
                            result: "ok".into(),
                        })
                        .inc();
                }
                Err(e) => {
                    tracing::warn!(group = %key.offsets.group, error = %e, "sample failed");
                    w.last_error = Some(e);
                    metrics
                        .samples
                        .get_or_create(&ResultLabels {
                            result: "error".into(),
                        })
                        .inc();
                }
            }
        }
        seq.send_modify(|s| *s += 1);
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
        metrics
            .prometheus_series
            .get_or_create(&TopicLabels {
                topic: topic.clone(),
            })
            .set(*count as i64);
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
    source: &Arc<dyn OffsetSource>,
    prometheus: Option<&PrometheusRate>,
    series_seen: &mut HashMap<String, usize>,
    key: &SourceKey,
    tick: f64,
    metrics: &Metrics,
) -> Result<Sample, SourceError> {
    metrics.offset_queries.inc();
    let source = source.clone();
    let offsets = tokio::task::spawn_blocking(move || source.snapshot())
        .await
        .map_err(|e| SourceError::Kafka(format!("offset reader stopped: {e}")))??;
    let prometheus = match prometheus {
        None => PrometheusReading::NotConfigured,
        Some(p) => {
            let mut topics: Vec<&str> = offsets.partitions.iter().map(|p| &*p.topic).collect();
            topics.dedup();
            match p.inbound_rate(&topics).await {
                Ok(answer) => {
                    report_series(&answer.series, series_seen, &key.offsets.group, metrics);
                    answer
                        .rate
                        .map_or(PrometheusReading::Unavailable, PrometheusReading::Rate)
                }
                Err(e) => {
                    tracing::debug!(group = %key.offsets.group, error = %e, "prometheus rate unavailable; using offsets");
                    PrometheusReading::Unavailable
                }
            }
        }
    };
    Ok(Sample {
        t: tick,
        offsets,
        prometheus,
    })
}
