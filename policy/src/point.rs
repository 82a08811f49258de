//! What a window keeps of one sample once it has joined: the sums, lags and
//! rates its replays read, computed once from the offsets of it and the
//! samples just before it. The per-partition offsets themselves are kept
//! only for the newest samples (see [`crate::window`]): a replay over a
//! window of hundreds of samples reads each sample's aggregates, never its
//! partitions, so a key costs about the same at 6 partitions as at 240.

use std::sync::Arc;

use crate::lags::{LagParts, find};
use crate::sample::{PrometheusReading, Sample};
use crate::traffic::rate;

/// One sample as its replays read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Unix seconds of the grid instant.
    pub t: f64,
    pub members: Option<u32>,
    pub target_replicas: Option<u32>,
    pub prometheus: PrometheusReading,
    pub partitions: u32,
    /// The sum of the committed offsets.
    pub(crate) committed: f64,
    pub(crate) lags: LagParts,
    /// The partition whose high watermark rose fastest over the short rate
    /// window ending at this sample, with that rate; None for a window's
    /// first sample.
    pub(crate) fastest: Option<Fastest>,
}

/// A partition and its inbound rate (msg/s).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fastest {
    pub topic: Arc<str>,
    pub partition: i32,
    pub rate_per_s: f64,
}

impl Point {
    /// The point of `sample`, joining after `previous` (the sample before
    /// it) with `base` the start of its short rate window.
    pub(crate) fn of(sample: &Sample, previous: Option<&Sample>, base: Option<&Sample>) -> Self {
        let offsets = &sample.offsets;
        Point {
            t: sample.t,
            members: offsets.members,
            target_replicas: sample.target_replicas,
            prometheus: sample.prometheus,
            partitions: offsets.partitions.len() as u32,
            committed: offsets
                .partitions
                .iter()
                .filter_map(|p| p.committed)
                .map(|c| c as f64)
                .sum(),
            lags: LagParts::of(offsets, previous.map(|p| &p.offsets)),
            fastest: base.and_then(|b| fastest_partition(sample, b)),
        }
    }
}

/// The partition whose high watermark rose fastest from `base` to `now`,
/// with its rate.
fn fastest_partition(now: &Sample, base: &Sample) -> Option<Fastest> {
    let dt = now.t - base.t;
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
        .map(|(p, rate_per_s)| Fastest {
            topic: p.topic.clone(),
            partition: p.partition,
            rate_per_s,
        })
}
