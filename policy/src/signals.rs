//! From raw samples to the policy's [`Observation`]: KEDA's per-partition lag
//! rules ([`LagRules`]), and rates from offset deltas. Pure, like the policy.

pub use crate::lags::{LagRules, OffsetReset, partition_lag};
use crate::point::Point;
use crate::sample::PrometheusReading;
use crate::traffic::{Shape, rate};
use crate::{HotPartition, Observation, RateSource};

/// Rates are measured over at least this span (and at least one interval).
pub const SHORT_RATE_WINDOW_S: f64 = 15.0;
/// The newest intervals' rate replaces the short window's only when it is
/// this much higher: a step, not noise.
pub const STEP_BAND: f64 = 0.25;

/// The observation at `points[i]`, looking back over earlier samples
/// (`shapes`: each sample's traffic shape, aligned with `points`).
pub fn observe(
    rules: &LagRules,
    points: &[Point],
    shapes: &[Shape],
    i: usize,
    window_full: bool,
) -> Observation {
    let now = &points[i];
    let previous = i.checked_sub(1).map(|j| &points[j]);
    let lags = now.lags.lags(rules);
    let rates = previous.map(|prev| Rates::at(points, shapes, i, prev));
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
    let carried = &shapes[i].carried;
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
        partitions: now.partitions,
        partitions_with_lag: lags.partitions_with_lag,
        inbound_rate_per_s,
        rate_source,
        processing_rate_per_s: rates.processing,
        hottest_partition: rates.hottest,
        hottest_share: rates.hottest_share,
        max_partition_lag: lags.max_partition_lag as f64,
        estimated_wait_s: estimated_wait(points, shapes, i),
        idle_gap_s: carried.idle_gap_s,
        quiet_for_s: carried.quiet_since.map(|since| now.t - since),
        busy_for_s: carried.burst.map(|b| now.t - b.since),
        burst_base_per_s: carried.burst.map(|b| b.base_per_s),
        last_burst_s: carried.last_burst_s,
        burst_before_s: carried.burst_before_s,
        learned_rebalance: carried.rebalance,
        learned_rebalance_kind: carried.rebalance_kind,
        learned_startup: carried.startup,
        members: now.members,
        target_replicas: now.target_replicas,
        window_full,
    }
}

/// How long ago the group's committed position at `points[i]` was
/// produced: the time the high watermarks' sum reached the committed
/// offsets' sum, interpolated between the samples around it.
fn estimated_wait(points: &[Point], shapes: &[Shape], i: usize) -> Option<f64> {
    let now = &points[i];
    if !now.lags.all_committed() {
        return None;
    }
    let position = now.committed;
    if position >= shapes[i].produced {
        return Some(0.0);
    }
    // The newest sample at which fewer had been produced than consumed now.
    // Found by halving while the produced counts rise (they fall only when
    // a topic is recreated, and then by a scan).
    let at_or_under = |s: &Shape| s.produced <= position;
    let halved = shapes[..i]
        .partition_point(at_or_under)
        .checked_sub(1)
        .filter(|&k| shapes[k + 1].produced > position);
    let Some(k) = halved.or_else(|| shapes[..i].iter().rposition(at_or_under)) else {
        // Older than the window: at least its span (unknown before a
        // second sample).
        let span = now.t - points[0].t;
        return (span > 0.0).then_some(span);
    };
    let (before, after) = (&shapes[k], &shapes[k + 1]);
    let share = (position - before.produced) / (after.produced - before.produced);
    Some(now.t - (before.t + share * (after.t - before.t)))
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
    /// The rates at `points[i]`, whose previous sample is `prev`.
    fn at(points: &[Point], shapes: &[Shape], i: usize, prev: &Point) -> Self {
        let now = &points[i];
        // Short window: the oldest sample within SHORT_RATE_WINDOW_S, at least
        // the previous one. The rate since the newest sample sees a step first.
        let b = points[..i]
            .iter()
            .rposition(|s| now.t - s.t >= SHORT_RATE_WINDOW_S)
            .unwrap_or(i - 1);
        // Messages produced by sample k (kept with its shape).
        let produced = |k: usize| shapes[k].produced;
        let base = &points[b];
        let dt = now.t - base.t;
        let short = rate(produced(i), produced(b), dt);
        // Noise is measured over a longer span than the mean it blurs: a
        // few intervals cannot tell their own spread.
        let shape = &shapes[i];
        let uncertainty = shape.spread().map(|sigma| sigma / ((i - b) as f64).sqrt());
        // The rate of the newest interval sees a step first; confirmed by
        // the interval before it, one noisy interval cannot move it.
        let newest_alone = rate(produced(i), produced(i - 1), now.t - prev.t);
        let newest = match i.checked_sub(2) {
            Some(j) => newest_alone.min(rate(produced(i - 1), produced(j), prev.t - points[j].t)),
            None => newest_alone,
        };
        let processing = rate(now.committed, base.committed, dt);
        let fastest = now.fastest.as_ref().map(|f| (f, f.rate_per_s));
        // The fastest partition's share of the load sizes every sample; its
        // name is only rendered for the newest (a replay would format and
        // drop the others).
        let hottest_share = fastest
            .filter(|_| short > 0.0)
            .map(|(_, r)| (r / short).min(1.0));
        let newest_sample = i + 1 == points.len();
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
            climb: shape.climb(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sample::part;
    use crate::sample::{OffsetSnapshot, PartitionOffsets, Sample};
    use crate::window::points;

    fn observe_at(rules: &LagRules, samples: &[Arc<Sample>], i: usize) -> Observation {
        let (points, shapes) = points(&samples[..=i]);
        observe(rules, &points, &shapes, i, true)
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
        let first = observe_at(&rules, &samples, 3);
        assert_eq!(
            first.inbound_rate_per_s,
            Some(340.0),
            "one interval: the 15 s window"
        );
        let second = observe_at(&rules, &samples, 4);
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
            observe_at(&rules, &noisy, 3).inbound_rate_per_s,
            Some(1550.0 / 15.0)
        );
    }

    #[test]
    fn the_wait_is_how_long_ago_the_committed_position_was_produced() {
        // 100 msg/s; the group commits 7.5 s behind from t = 20.
        let at = |t: f64| {
            let high = (t * 100.0) as i64;
            let committed = if t < 20.0 { high } else { high - 750 };
            sample(
                t,
                vec![part(0, high, Some(committed))],
                PrometheusReading::NotConfigured,
            )
        };
        let samples: Vec<_> = (0..=8).map(|k| at(f64::from(k) * 5.0)).collect();
        let rules = rules(OffsetReset::Latest);
        assert_eq!(observe_at(&rules, &samples, 3).estimated_wait_s, Some(0.0));
        let wait = observe_at(&rules, &samples, 8).estimated_wait_s.unwrap();
        assert!((wait - 7.5).abs() < 1e-9, "{wait}");
        // Behind by more than the window holds: at least its span.
        let behind = vec![
            sample(
                0.0,
                vec![part(0, 1000, Some(0))],
                PrometheusReading::NotConfigured,
            ),
            sample(
                5.0,
                vec![part(0, 1500, Some(10))],
                PrometheusReading::NotConfigured,
            ),
        ];
        assert_eq!(observe_at(&rules, &behind, 1).estimated_wait_s, Some(5.0));
        // A partition that never committed: unknown.
        let new = vec![sample(
            0.0,
            vec![part(0, 10, None)],
            PrometheusReading::NotConfigured,
        )];
        assert_eq!(observe_at(&rules, &new, 0).estimated_wait_s, None);
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
        let obs = observe_at(&rules(OffsetReset::Latest), &samples, 1);
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
        let obs = observe_at(&rules(OffsetReset::Latest), &samples, 1);
        assert_eq!(
            (obs.inbound_rate_per_s, obs.rate_source),
            (Some(2.0), RateSource::OffsetsPrometheusDown)
        );
    }
}
