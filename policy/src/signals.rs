//! From raw samples to the policy's [`Observation`]: KEDA's per-partition lag
//! rules ([`LagRules`]), and rates from offset deltas. Pure, like the policy.

use std::sync::Arc;

use crate::sample::{OffsetSnapshot, PartitionOffsets, PrometheusReading, Sample};
use crate::traffic::{Shape, rate};
use crate::{HotPartition, Observation, RateSource};

/// How a partition without a committed offset counts (KEDA's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OffsetReset {
    /// Lag 1 (0 with `scaleToZeroOnInvalidOffset`).
    Latest,
    /// Its whole log.
    Earliest,
}

/// KEDA's per-partition lag rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LagRules {
    pub offset_reset: OffsetReset,
    pub scale_to_zero_on_invalid_offset: bool,
    pub exclude_persistent_lag: bool,
}

/// Rates are measured over at least this span (and at least one interval).
pub const SHORT_RATE_WINDOW_S: f64 = 15.0;
/// The newest intervals' rate replaces the short window's only when it is
/// this much higher: a step, not noise.
pub const STEP_BAND: f64 = 0.25;

/// Lag of one partition for scaling and for activation, KEDA's way.
pub fn partition_lag(
    rules: &LagRules,
    now: &PartitionOffsets,
    previous: Option<&PartitionOffsets>,
) -> (i64, i64) {
    match now.committed {
        None => match rules.offset_reset {
            OffsetReset::Latest => {
                let lag = i64::from(!rules.scale_to_zero_on_invalid_offset);
                (lag, lag)
            }
            OffsetReset::Earliest => (now.high_watermark, now.high_watermark),
        },
        Some(committed) => {
            let lag = (now.high_watermark - committed).max(0);
            // A consumer stuck on a partition: its lag does not scale, it
            // only keeps the group active.
            let stuck = previous.is_some_and(|p| p.committed == Some(committed));
            if rules.exclude_persistent_lag && stuck && lag > 0 {
                (0, lag)
            } else {
                (lag, lag)
            }
        }
    }
}

fn find<'a>(
    snapshot: &'a OffsetSnapshot,
    index: usize,
    like: &PartitionOffsets,
) -> Option<&'a PartitionOffsets> {
    match snapshot.partitions.get(index) {
        Some(p) if p.partition == like.partition && p.topic == like.topic => Some(p),
        _ => snapshot
            .partitions
            .iter()
            .find(|p| p.partition == like.partition && p.topic == like.topic),
    }
}

/// The observation at `samples[i]`, looking back over earlier samples
/// (`shapes`: each sample's traffic shape, aligned with `samples`).
pub fn observe(
    rules: &LagRules,
    samples: &[Arc<Sample>],
    shapes: &[Shape],
    i: usize,
    window_full: bool,
) -> Observation {
    let now = &samples[i];
    let previous = i.checked_sub(1).map(|j| &*samples[j]);
    let lags = Lags::of(rules, now, previous);
    let rates = previous.map(|prev| Rates::at(samples, shapes, i, prev));
    let offsets_rate = rates.as_ref().map(|r| r.fast);
    let (inbound_rate_per_s, rate_source) = match (now.prometheus, offsets_rate) {
        (PrometheusReading::Rate(prom), Some(offsets)) if offsets > prom => {
            (Some(offsets), RateSource::OffsetsAhead)
        }
        (PrometheusReading::Rate(prom), _) => (Some(prom), RateSource::Prometheus),
        (PrometheusReading::NotConfigured, r) => (r, RateSource::Offsets),
        (PrometheusReading::Unavailable, r) => (r, RateSource::OffsetsPrometheusDown),
    };
    let steady_rate_per_s = match rate_source {
        RateSource::Prometheus => inbound_rate_per_s,
        _ => rates.as_ref().map(|r| r.short),
    };
    let shape = &shapes[i];
    let rates = rates.unwrap_or_default();
    Observation {
        steady_rate_per_s,
        // Prometheus sees a step at once; only offsets confirm it late.
        unconfirmed_step_per_s: rates
            .unconfirmed
            .filter(|_| rate_source != RateSource::Prometheus),
        rate_uncertainty_per_s: rates.uncertainty,
        rate_climb_per_s2: rates.climb,
        lag: lags.lag as f64,
        activation_lag: lags.activation_lag as f64,
        partitions: now.offsets.partitions.len() as u32,
        partitions_with_lag: lags.partitions_with_lag,
        inbound_rate_per_s,
        rate_source,
        processing_rate_per_s: rates.processing,
        hottest_partition: rates.hottest,
        hottest_share: rates.hottest_share,
        max_partition_lag: lags.max_partition_lag as f64,
        idle_gap_s: shape.idle_gap_s,
        quiet_for_s: shape.quiet_since.map(|since| now.t - since),
        busy_for_s: shape.burst.map(|b| now.t - b.since),
        burst_base_per_s: shape.burst.map(|b| b.base_per_s),
        last_burst_s: shape.last_burst_s,
        burst_before_s: shape.burst_before_s,
        learned_rebalance: shape.rebalance,
        learned_startup: shape.startup,
        members: now.offsets.members,
        target_replicas: now.target_replicas,
        window_full,
    }
}

/// The lag of one sample, KEDA's way, summed over its partitions.
struct Lags {
    lag: i64,
    activation_lag: i64,
    partitions_with_lag: u32,
    max_partition_lag: i64,
}

impl Lags {
    fn of(rules: &LagRules, now: &Sample, previous: Option<&Sample>) -> Self {
        let mut lags = Lags {
            lag: 0,
            activation_lag: 0,
            partitions_with_lag: 0,
            max_partition_lag: 0,
        };
        for (k, p) in now.offsets.partitions.iter().enumerate() {
            let before = previous.and_then(|s| find(&s.offsets, k, p));
            let (scaling, activation) = partition_lag(rules, p, before);
            lags.lag += scaling;
            lags.max_partition_lag = lags.max_partition_lag.max(scaling);
            lags.activation_lag += activation;
            lags.partitions_with_lag += u32::from(scaling > 0);
        }
        lags
    }
}

/// The rates at one sample, from offset deltas.
#[derive(Default)]
struct Rates {
    /// The short window's rate, or the newest intervals' beyond the step band.
    fast: f64,
    /// The short window's rate.
    short: f64,
    /// The newest interval alone, when it shows a step the others do not yet.
    unconfirmed: Option<f64>,
    /// Committed offsets per second over the short window.
    processing: Option<f64>,
    hottest: Option<HotPartition>,
    hottest_share: Option<f64>,
    uncertainty: Option<f64>,
    climb: Option<f64>,
}

impl Rates {
    /// The rates at `samples[i]`, whose previous sample is `prev`.
    fn at(samples: &[Arc<Sample>], shapes: &[Shape], i: usize, prev: &Sample) -> Self {
        let now = &samples[i];
        // Short window: the oldest sample within SHORT_RATE_WINDOW_S, at least
        // the previous one. The rate since the newest sample sees a step first.
        let b = samples[..i]
            .iter()
            .rposition(|s| now.t - s.t >= SHORT_RATE_WINDOW_S)
            .unwrap_or(i - 1);
        // Messages produced by sample k (kept with its shape).
        let produced = |k: usize| shapes[k].produced;
        let base = &samples[b];
        let dt = now.t - base.t;
        let short = rate(produced(i), produced(b), dt);
        // Noise is measured over a longer span than the mean it blurs: a
        // few intervals cannot tell their own spread.
        let shape = &shapes[i];
        let uncertainty = shape.spread.map(|sigma| sigma / ((i - b) as f64).sqrt());
        // The rate of the newest interval sees a step first; confirmed by
        // the interval before it, one noisy interval cannot move it.
        let newest_alone = rate(produced(i), produced(i - 1), now.t - prev.t);
        let newest = match i.checked_sub(2) {
            Some(j) => newest_alone.min(rate(produced(i - 1), produced(j), prev.t - samples[j].t)),
            None => newest_alone,
        };
        let processing = rate(committed(now), committed(base), dt);
        let fastest = fastest_partition(now, base, dt);
        // The fastest partition's share of the load sizes every sample; its
        // name is only rendered for the newest (a replay would format and
        // drop the others).
        let hottest_share = fastest
            .filter(|_| short > 0.0)
            .map(|(_, r)| (r / short).min(1.0));
        let newest_sample = i + 1 == samples.len();
        let hottest = fastest
            .filter(|_| newest_sample)
            .map(|(p, r)| HotPartition {
                partition: format!("{}/{}", p.topic, p.partition),
                rate_per_s: r,
            });
        // Inside the noise band the short window is the better estimate; a
        // step beyond it is taken from the newest intervals at once.
        let fast = if newest > short * (1.0 + STEP_BAND) {
            newest
        } else {
            short
        };
        Rates {
            fast,
            short,
            unconfirmed: (newest_alone > fast * (1.0 + STEP_BAND)).then_some(newest_alone),
            processing: Some(processing),
            hottest,
            hottest_share,
            uncertainty,
            climb: shape.climb,
        }
    }
}

/// The sum of a sample's committed offsets.
fn committed(sample: &Sample) -> f64 {
    sample
        .offsets
        .partitions
        .iter()
        .filter_map(|p| p.committed)
        .map(|c| c as f64)
        .sum()
}

/// The partition whose high watermark rose fastest from `base` to `now`,
/// with its rate.
fn fastest_partition<'a>(
    now: &'a Sample,
    base: &Sample,
    dt: f64,
) -> Option<(&'a PartitionOffsets, f64)> {
    now.offsets
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(k, p)| {
            let b = find(&base.offsets, k, p)?;
            Some((
                p,
                rate(p.high_watermark as f64, b.high_watermark as f64, dt),
            ))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::shapes;

    fn part(partition: i32, high: i64, committed: Option<i64>) -> PartitionOffsets {
        PartitionOffsets {
            topic: Arc::from("t"),
            partition,
            high_watermark: high,
            committed,
        }
    }

    fn rules(offset_reset: OffsetReset) -> LagRules {
        LagRules {
            offset_reset,
            scale_to_zero_on_invalid_offset: false,
            exclude_persistent_lag: false,
        }
    }

    fn sample(
        t: f64,
        partitions: Vec<PartitionOffsets>,
        prometheus: PrometheusReading,
    ) -> Arc<Sample> {
        Arc::new(Sample {
            t,
            offsets: OffsetSnapshot {
                partitions,
                members: None,
            },
            prometheus,
            target_replicas: None,
        })
    }

    #[test]
    fn uncommitted_partition_counts_one_under_latest_and_whole_log_under_earliest() {
        let p = part(0, 500, None);
        assert_eq!(partition_lag(&rules(OffsetReset::Latest), &p, None), (1, 1));
        assert_eq!(
            partition_lag(&rules(OffsetReset::Earliest), &p, None),
            (500, 500)
        );
        let zero = LagRules {
            scale_to_zero_on_invalid_offset: true,
            ..rules(OffsetReset::Latest)
        };
        assert_eq!(partition_lag(&zero, &p, None), (0, 0));
    }

    #[test]
    fn persistent_lag_keeps_activation_but_not_scaling() {
        let r = LagRules {
            exclude_persistent_lag: true,
            ..rules(OffsetReset::Latest)
        };
        let before = part(0, 100, Some(40));
        assert_eq!(
            partition_lag(&r, &part(0, 120, Some(40)), Some(&before)),
            (0, 80)
        );
        assert_eq!(
            partition_lag(&r, &part(0, 120, Some(60)), Some(&before)),
            (60, 60)
        );
        assert_eq!(partition_lag(&r, &part(0, 120, Some(40)), None), (80, 80));
    }

    #[test]
    fn a_step_is_seen_in_two_intervals_and_noise_is_not() {
        let at = |t: f64, high: i64, committed: i64| {
            sample(
                t,
                vec![part(0, high, Some(committed))],
                PrometheusReading::NotConfigured,
            )
        };
        // 10 msg/s, then 1000 msg/s from t = 10.
        let samples = vec![
            at(0.0, 0, 0),
            at(5.0, 50, 50),
            at(10.0, 100, 100),
            at(15.0, 5100, 150),
            at(20.0, 10100, 200),
        ];
        let rules = rules(OffsetReset::Latest);
        let first = observe(&rules, &samples, &shapes(&samples), 3, true);
        assert_eq!(
            first.inbound_rate_per_s,
            Some(340.0),
            "one interval: the 15 s window"
        );
        let second = observe(&rules, &samples, &shapes(&samples), 4, true);
        assert_eq!(
            second.inbound_rate_per_s,
            Some(1000.0),
            "confirmed by a second interval"
        );
        assert_eq!(second.steady_rate_per_s, Some(670.0), "the 15 s window");
        assert_eq!(second.processing_rate_per_s, Some(10.0));
        assert_eq!(second.lag, 9900.0);
        assert_eq!(second.rate_source, RateSource::Offsets);
        // +-10 % noise around 100 msg/s stays the 15 s average.
        let noisy = vec![
            at(0.0, 0, 0),
            at(5.0, 550, 0),
            at(10.0, 1000, 0),
            at(15.0, 1550, 0),
        ];
        assert_eq!(
            observe(&rules, &noisy, &shapes(&noisy), 3, true).inbound_rate_per_s,
            Some(1550.0 / 15.0)
        );
    }

    #[test]
    fn prometheus_rate_is_used_unless_offsets_are_ahead() {
        let samples = vec![
            sample(0.0, vec![part(0, 0, Some(0))], PrometheusReading::Rate(7.0)),
            sample(
                5.0,
                vec![part(0, 10, Some(10))],
                PrometheusReading::Rate(7.0),
            ),
        ];
        let obs = observe(
            &rules(OffsetReset::Latest),
            &samples,
            &shapes(&samples),
            1,
            true,
        );
        assert_eq!(
            (obs.inbound_rate_per_s, obs.rate_source),
            (Some(7.0), RateSource::Prometheus)
        );
        let samples = vec![
            sample(
                0.0,
                vec![part(0, 0, Some(0))],
                PrometheusReading::Unavailable,
            ),
            sample(
                5.0,
                vec![part(0, 10, Some(10))],
                PrometheusReading::Unavailable,
            ),
        ];
        let obs = observe(
            &rules(OffsetReset::Latest),
            &samples,
            &shapes(&samples),
            1,
            true,
        );
        assert_eq!(
            (obs.inbound_rate_per_s, obs.rate_source),
            (Some(2.0), RateSource::OffsetsPrometheusDown)
        );
    }
}
