//! What one evaluation costs: a key's full window of the default policy,
//! the newest sample decided on (the policy replayed over its epoch, as the
//! server does for every sample), with each strategy side by side.
//!
//!     cargo bench -p lagrate-policy --bench evaluate [-- --rounds 200 --interval 5]
//!
//! Prints microseconds per evaluation and per decision of the replay, for
//! `rules` and `planner`, at several partition counts, and the planner's
//! cost as a multiple of the rules'.

use std::hint::black_box;
use std::time::Instant;

use lagrate_policy::evaluate::{Answers, SampleWindow, window_seconds_for};
use lagrate_policy::lags::{LagRules, OffsetReset};
use lagrate_policy::{Params, PartitionCap, PolicySettings, Strategy};

mod common;
use common::{arg, samples};

fn params(strategy: Strategy) -> Params {
    Params {
        settings: PolicySettings {
            pod_capacity: Some(100.0),
            strategy,
            ..PolicySettings::default()
        },
        lag_threshold: 500.0,
        activation_lag_threshold: 0.0,
        cap: PartitionCap::Partitions,
        rate_aware: true,
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
    let answers = Answers::default();
    println!(
        "one evaluation of a full window ({keep:.0} s at {interval_s:.0} s intervals), {rounds} rounds"
    );
    println!(
        "{:>10} {:>10} {:>14} {:>14} {:>16}",
        "partitions", "strategy", "us/evaluation", "us/decision", "planner/rules"
    );
    for partitions in [6, 24, 64] {
        let mut window = SampleWindow::new(keep);
        for sample in samples(partitions, interval_s, 11).take((keep / interval_s) as usize) {
            window.push(sample);
        }
        let mut rules_us = 0.0;
        for strategy in [Strategy::Rules, Strategy::Planner] {
            let params = params(strategy);
            let evaluation = window.evaluate(&params, &rules, &answers);
            let replayed = evaluation.as_ref().map_or(1, |_| {
                // Decisions in one replay: the samples since its epoch start.
                let epoch = params.settings.history_needed_seconds();
                let newest = window.points().last().map_or(0.0, |p| p.t);
                let start = ((newest - 2.0 * epoch) / epoch).floor() * epoch;
                window.points().iter().filter(|p| p.t >= start).count()
            });
            // A bench measures time: its clock is the measurement.
            #[allow(clippy::disallowed_methods)]
            let started = Instant::now();
            for _ in 0..rounds {
                black_box(window.evaluate(&params, &rules, &answers));
            }
            let us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
            let name = match strategy {
                Strategy::Rules => {
                    rules_us = us;
                    "rules"
                }
                Strategy::Planner => "planner",
            };
            let ratio = if strategy == Strategy::Planner {
                format!("{:.1}x", us / rules_us)
            } else {
                String::new()
            };
            println!(
                "{partitions:>10} {name:>10} {us:>14.1} {:>14.2} {ratio:>16}",
                us / replayed as f64
            );
        }
    }
}
