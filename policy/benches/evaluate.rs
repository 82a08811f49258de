//! What one evaluation costs: a key's full window of the default policy,
//! the newest sample decided on, for a rate-aware trigger (the rate priced
//! over the partitions) and a lag-only one (KEDA's rule) side by side. Two
//! figures: the whole replay over its epoch (what a replica pays for its
//! first evaluation, and once per epoch as the replay's start moves on),
//! and the evaluation as the server pays it on every sample (the window
//! one sample longer, the trigger's last replay resumed before its newest
//! sample): mean and worst over `--rounds` samples.
//!
//!     cargo bench -p lagrate-policy --bench evaluate [-- --rounds 200 --interval 5]
//!
//! Prints microseconds per evaluation at several partition counts, and the
//! cost per sample as a share of the 50 us budget (2,000 keys sampled
//! every 5 s in a fifth of one core).

use std::hint::black_box;
use std::time::Instant;

use lagrate_policy::evaluate::{Answers, SampleWindow, window_seconds_for};
use lagrate_policy::lags::{LagRules, OffsetReset};
use lagrate_policy::{Params, PartitionCap, PolicySettings};

mod common;
use common::{arg, samples};

/// Microseconds one key may take per sample.
const BUDGET_US: f64 = 50.0;

/// A rate-aware trigger at 100 msg/s per pod, or a lag-only one.
fn params(rate_aware: bool) -> Params {
    Params {
        settings: PolicySettings {
            pod_capacity: rate_aware.then_some(100.0),
            ..PolicySettings::default()
        },
        lag_threshold: 500.0,
        activation_lag_threshold: 0.0,
        cap: PartitionCap::Partitions,
        rate_aware,
    }
}

fn main() {
    let rounds = arg("--rounds", 200).max(1) as usize;
    let interval_s = arg("--interval", 5).max(1) as f64;
    let keep = window_seconds_for(&PolicySettings::default(), interval_s);
    let rules = LagRules {
        offset_reset: OffsetReset::Latest,
        scale_to_zero_on_invalid_offset: false,
        exclude_persistent_lag: false,
    };
    println!(
        "one evaluation of a full window ({keep:.0} s at {interval_s:.0} s intervals), {rounds} rounds"
    );
    println!(
        "{:>10} {:>10} {:>14} {:>14} {:>14} {:>16}",
        "partitions", "trigger", "us/replay", "us/sample", "us/sample max", "of 50 us"
    );
    for partitions in [6, 24, 64] {
        let full = (keep / interval_s) as usize;
        for rate_aware in [true, false] {
            let params = params(rate_aware);
            let mut stream = samples(partitions, interval_s, 11, true);
            let mut window = SampleWindow::new(keep);
            for sample in stream.by_ref().take(full) {
                window.push(sample);
            }
            let replay_us = timed_us(rounds, || {
                black_box(window.evaluate(&params, &rules, &Answers::default()));
            });
            // As served: one sample joins, the trigger evaluates it.
            let answers = Answers::default();
            let (mut total_us, mut worst_us) = (0.0, 0.0_f64);
            for sample in stream.by_ref().take(rounds) {
                window.push(sample);
                let us = timed_us(1, || {
                    black_box(window.evaluate(&params, &rules, &answers));
                });
                total_us += us;
                worst_us = worst_us.max(us);
            }
            let per_sample_us = total_us / rounds as f64;
            let name = if rate_aware { "rate" } else { "lag-only" };
            let ratio = format!("{:.2}x", per_sample_us / BUDGET_US);
            println!(
                "{partitions:>10} {name:>10} {replay_us:>14.1} {per_sample_us:>14.1} {worst_us:>14.1} {ratio:>16}"
            );
        }
    }
}

/// Microseconds per call of `f` over `rounds` calls.
fn timed_us(rounds: usize, mut f: impl FnMut()) -> f64 {
    // A bench measures time: its clock is the measurement.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    for _ in 0..rounds {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / rounds as f64
}
