//! What the policy benches share: their arguments and the samples of one
//! source key under noisy traffic.

use std::sync::Arc;

use lagrate_policy::sample::{OffsetSnapshot, PartitionOffsets, PrometheusReading, Sample};

/// The number after `name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift), for the traffic's noise.
pub struct Noise(u64);

impl Noise {
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The samples of one key, one at a time: `partitions` partitions at
/// about 40 msg/s each (+-20 %), the group of 4 to 8 members changing size
/// every 5 minutes and, when `committing`, committed one interval behind;
/// otherwise nothing is committed after the first sample (a group that
/// has stopped: every partition stuck).
pub fn samples(
    partitions: usize,
    interval_s: f64,
    seed: u64,
    committing: bool,
) -> impl Iterator<Item = Arc<Sample>> {
    let topic: Arc<str> = Arc::from("trade-tx-v2");
    let mut noise = Noise(seed | 1);
    let mut high = vec![0_i64; partitions];
    (0..).map(move |k| {
        let t = 1.7e9 + f64::from(k) * interval_s;
        let committed: Vec<i64> = if committing || k == 0 {
            high.clone()
        } else {
            vec![0; partitions]
        };
        for h in &mut high {
            *h += (interval_s * 40.0 * (0.8 + 0.4 * noise.next())) as i64;
        }
        Arc::new(Sample {
            t,
            offsets: OffsetSnapshot {
                partitions: (0..partitions)
                    .map(|p| PartitionOffsets {
                        topic: topic.clone(),
                        partition: p as i32,
                        high_watermark: high[p],
                        committed: Some(committed[p]),
                    })
                    .collect(),
                members: Some(4 + ((t / 300.0) as u32 % 5)),
            },
            prometheus: PrometheusReading::NotConfigured,
            target_replicas: None,
        })
    })
}
