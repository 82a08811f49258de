//! How long `lagrate simulate` takes on a one-day scenario at 1 s steps
//! (the built-in `daily`: 48 partitions, 86,400 steps), per autoscaler,
//! as simulated seconds per wall-clock second.
//!
//!     cargo bench -p lagrate-sim --bench simulate_day

#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::time::Instant;

use lagrate_sim::{self as sim, builtins};

fn main() {
    let day = builtins::find("daily").expect("built-in scenario");
    let simulated = day.duration();
    println!("one day (86,400 steps of 1 s), 48 partitions, cooperative rebalancing");
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
