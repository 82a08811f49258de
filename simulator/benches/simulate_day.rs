//! How long `lagrate simulate` takes on a one-day scenario at 1 s steps
//! (the built-in `daily`: 48 partitions, 86,400 steps), per autoscaler,
//! as simulated seconds per wall-clock second.
//!
//!     cargo bench -p lagrate-sim --bench simulate_day [-- --hours 24]

#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::time::Instant;

use lagrate_sim::{self as sim, builtins};

/// `--hours H` (default 24): the first H hours of the day, for a quick run.
fn hours() -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--hours")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(24.0)
}

fn main() {
    let mut day = builtins::find("daily").expect("built-in scenario");
    // The first `hours` of the day's load.
    let mut left = hours() * 3600.0;
    for segment in &mut day.load {
        segment.seconds = segment.seconds.min(left);
        left -= segment.seconds;
    }
    day.load.retain(|segment| segment.seconds > 0.0);
    let simulated = day.duration();
    println!(
        "{simulated:.0} steps of 1 s of the daily curve, 48 partitions, cooperative rebalancing"
    );
    println!(
        "{:<20} {:>10} {:>22}",
        "autoscaler", "wall s", "simulated s per wall s"
    );
    let mut total = 0.0;
    for mut autoscaler in sim::autoscalers(&day) {
        let started = Instant::now();
        let (row, _) = sim::run_one(&day, day.rebalance, autoscaler.as_mut());
        let wall = started.elapsed().as_secs_f64();
        total += wall;
        println!(
            "{:<20} {:>10.2} {:>22.0}",
            row.policy,
            wall,
            simulated / wall
        );
    }
    println!(
        "{:<20} {:>10.2} {:>22.0}",
        "all six",
        total,
        simulated / total
    );
}
