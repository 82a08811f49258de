//! What one source key's sample window costs in memory once full, against
//! the samples alone kept in full, at several partition counts: the figure
//! `limits.maxSourceKeys` is set from.
//!
//!     cargo bench -p lagrate-policy --bench window_memory [-- --keys 200 --interval 5]
//!
//! Each key is sampled every --interval seconds (default 5) for the
//! default policy's window (`window_seconds_for`), on one topic whose
//! partitions take noisy traffic, with the group committing an interval
//! behind and changing size every few minutes (so rebalances are being
//! timed, as in a working group); at 24 partitions also for a group that
//! has stopped committing (every partition stuck: a window's costliest
//! state, the one to size limits by). The cost is the growth of resident
//! memory over --keys windows (default 200), divided: what the allocator
//! really asked the kernel for, its own overhead included.

use std::sync::Arc;

use lagrate_policy::PolicySettings;
use lagrate_policy::evaluate::{SampleWindow, window_seconds_for};
use lagrate_policy::sample::Sample;

mod common;
use common::{arg, samples};

/// Resident memory of this process, bytes (Linux).
fn resident() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0
}

fn main() {
    let keys = arg("--keys", 200).max(1) as usize;
    let interval_s = arg("--interval", 5).max(1) as f64;
    let keep = window_seconds_for(&PolicySettings::default(), interval_s);
    // Twice the window: full, and turned over once.
    let count = (2.0 * keep / interval_s) as usize;
    println!(
        "a full window of the default policy: {keep:.0} s at {interval_s:.0} s intervals, {keys} keys"
    );
    println!(
        "{:>10} {:>10} {:>8} {:>12} {:>14} {:>18} {:>12} {:>10}",
        "partitions",
        "group",
        "samples",
        "bytes/key",
        "bytes/sample",
        "in full, /sample",
        "in full/this",
        "keys/64MiB"
    );
    // Everything measured stays allocated until the end: memory freed by
    // one measurement would be reused by the next and hide its growth.
    let mut windows_kept: Vec<Vec<SampleWindow>> = Vec::new();
    let mut samples_kept: Vec<Vec<Vec<Arc<Sample>>>> = Vec::new();
    for (partitions, committing) in [(1, true), (6, true), (24, true), (96, true), (24, false)] {
        let start = resident();
        let windows: Vec<SampleWindow> = (0..keys)
            .map(|k| {
                let mut window = SampleWindow::new(keep);
                for sample in samples(partitions, interval_s, 7 + k as u64, committing).take(count)
                {
                    window.push(sample);
                }
                window
            })
            .collect();
        let per_key = (resident() - start) / keys as f64;
        let kept = windows[0].len();
        // The same samples kept in full, as a window of whole samples
        // would keep them.
        let start = resident();
        let full: Vec<Vec<Arc<Sample>>> = (0..keys)
            .map(|k| {
                samples(partitions, interval_s, 7 + k as u64, committing)
                    .take(kept)
                    .collect()
            })
            .collect();
        let full_per_key = (resident() - start) / keys as f64;
        windows_kept.push(windows);
        samples_kept.push(full);
        println!(
            "{:>10} {:>10} {:>8} {:>12.0} {:>14.0} {:>18.0} {:>11.1}x {:>10.0}",
            partitions,
            if committing { "working" } else { "stopped" },
            kept,
            per_key,
            per_key / kept as f64,
            full_per_key / kept as f64,
            full_per_key / per_key,
            64.0 * 1024.0 * 1024.0 / per_key,
        );
    }
}
