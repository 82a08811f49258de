//! How many source keys (consumer groups) one `lagrate serve` samples on
//! time: a real release server against a real tansu broker, with 250, 500,
//! 1,000 and 2,000 keys (up to --max-keys) registered in steps through
//! GetMetricSpec, each sampled every --interval seconds (default 5).
//!
//!     cargo bench -p lagrate --bench sampling_keys [-- --max-keys 2000 --interval 5 --partitions 6 --objects-per-key 1 --history 30]
//!
//! With `--history S` the policy looks back S seconds, so windows fill
//! during the run: their memory is measured full, then projected onto the
//! default 16 min window sampled every 5 s (192 samples) by the measured
//! cost of a sample. A longer `--interval` lets a broker that cannot
//! answer 400 offset queries a second still fill 2,000 keys' windows.
//!
//! Per step: samples landed per second against the keys / interval they
//! should, the share landing within one second of their grid instant and
//! within the interval (`lagrate_sample_age_seconds`), resident memory and
//! its growth per key, and threads. The last line names the most keys at
//! which sampling held (≥ 95 % of the samples due, ≥ 99 % within the
//! interval).
// The benchmark is one measured run, read top to bottom.
#![allow(clippy::too_many_lines)]
#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::time::Duration;

use lagrate_proto::external_scaler_client::ExternalScalerClient;
use testbed::{Lagrate, Tansu, bench_arg, scaled_object, unique};

/// Samples in the default policy's 16 min window at the default 5 s
/// interval: what the projections are made onto.
const DEFAULT_WINDOW_SAMPLES: f64 = 16.0 * 60.0 / 5.0;

/// Cumulative `lagrate_sample_age_seconds` buckets and samples taken.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    within_1s: f64,
    within_interval: f64,
    all: f64,
    samples: f64,
}

fn counts(lagrate: &Lagrate, interval_s: u64) -> Counts {
    let (_, text) = lagrate.http_get("/metrics");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    };
    Counts {
        within_1s: value("lagrate_sample_age_seconds_bucket{le=\"1.0\"}"),
        within_interval: value(&format!(
            "lagrate_sample_age_seconds_bucket{{le=\"{}.0\"}}",
            interval_s
        )),
        all: value("lagrate_sample_age_seconds_count"),
        samples: value("lagrate_samples_total"),
    }
}

fn threads(lagrate: &Lagrate) -> u64 {
    let Some(pid) = lagrate.pid() else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn main() {
    let max_keys = bench_arg("--max-keys", 2000) as usize;
    let interval_s = bench_arg("--interval", 5);
    let partitions = bench_arg("--partitions", 6) as i32;
    let objects_per_key = bench_arg("--objects-per-key", 1) as usize;
    // --history S: a policy whose windows look back S seconds, so the
    // windows fill during the run and a full one is measured, not projected.
    let history_s = bench_arg("--history", 0);
    let broker = Tansu::start();
    let topic = unique("bench");
    broker.create_topic(&topic, partitions);
    let policy = if history_s > 0 {
        format!(
            "policies:\n  default:\n    startupSeconds: 0\n    rebalanceSeconds: 0\n    waitObjectiveSeconds: {history_s}\n    idleSeconds: {history_s}\n"
        )
    } else {
        String::new()
    };
    let config = format!(
        "sampling:\n  interval: {interval_s}s\n  maxStaleness: 600s\n  kafkaTimeout: 10s\nclusters:\n  local:\n    bootstrapServers: [\"{}\"]\nlimits:\n  maxSourceKeys: 100000\n  maxEntries: 100000\n{policy}",
        broker.bootstrap()
    );
    // Logging as in production (tests log every decision at debug).
    let lagrate = Lagrate::start_with_env(
        env!("CARGO_BIN_EXE_lagrate"),
        &config,
        vec![("RUST_LOG", "info".into())],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime
        .block_on(ExternalScalerClient::connect(lagrate.grpc_url()))
        .expect("connect");
    std::thread::sleep(Duration::from_secs(1));
    let base_rss = lagrate.rss_bytes().unwrap_or(0) as f64;
    let prefix = unique("group");
    println!(
        "one lagrate serve (release), {partitions} partitions per key, {objects_per_key} ScaledObject(s) per key, sampled every {interval_s} s on a tansu broker; base RSS {:.1} MB\n",
        base_rss / 1e6
    );
    println!(
        "{:>6} {:>11} {:>9} {:>10} {:>12} {:>8} {:>8} {:>8}",
        "keys", "samples/s", "due/s", "within 1s", "within intvl", "RSS MB", "KB/key", "threads"
    );
    let mut steps: Vec<usize> = [250, 500, 1000, 2000, 4000, 8000]
        .into_iter()
        .filter(|&n| n <= max_keys)
        .collect();
    if steps.is_empty() {
        steps.push(max_keys); // a smoke run
    }
    let mut registered = 0;
    let mut held = 0;
    for keys in steps {
        runtime.block_on(async {
            for start in (registered..keys).step_by(64) {
                let calls = (start..keys.min(start + 64))
                    .flat_map(|i| (0..objects_per_key).map(move |o| (i, o)))
                    .map(|(i, o)| {
                        let mut client = client.clone();
                        let object = scaled_object(
                            &format!("consumer-{i}-{o}"),
                            &[
                                ("cluster", "local"),
                                ("consumerGroup", &format!("{prefix}-{i}")),
                                ("topic", &topic),
                            ],
                        );
                        async move { client.get_metric_spec(object).await }
                    });
                for answer in futures::future::join_all(calls).await {
                    answer.expect("GetMetricSpec");
                }
            }
        });
        registered = keys;
        // Let the new keys settle into their grid phases, then measure.
        std::thread::sleep(Duration::from_secs(2 * interval_s));
        let before = counts(&lagrate, interval_s);
        let measured = 3 * interval_s;
        std::thread::sleep(Duration::from_secs(measured));
        let after = counts(&lagrate, interval_s);
        let landed = after.all - before.all;
        let per_s = (after.samples - before.samples) / measured as f64;
        let due = keys as f64 / interval_s as f64;
        let share = |n: f64| 100.0 * n / landed.max(1.0);
        let within_interval = share(after.within_interval - before.within_interval);
        let rss = lagrate.rss_bytes().unwrap_or(0) as f64;
        println!(
            "{:>6} {:>11.1} {:>9.1} {:>9.1}% {:>11.1}% {:>8.1} {:>8.1} {:>8}",
            keys,
            per_s,
            due,
            share(after.within_1s - before.within_1s),
            within_interval,
            rss / 1e6,
            (rss - base_rss) / 1e3 / keys as f64,
            threads(&lagrate)
        );
        if per_s >= 0.95 * due && within_interval >= 99.0 {
            held = keys;
        }
    }
    println!("\n{interval_s} s sampling held up to {held} keys on this machine");

    if history_s > 0 {
        full_windows(
            &lagrate,
            interval_s,
            history_s,
            registered,
            objects_per_key,
            base_rss,
        );
        return;
    }
    // Windows keep filling until they span sampling.window: the memory a
    // sample adds, measured over a minute at the last step, times the
    // samples of a full window, is what a key costs in the long run.
    let grow_s = bench_arg("--grow-seconds", 60);
    let (rss_0, samples_0) = (
        lagrate.rss_bytes().unwrap_or(0) as f64,
        counts(&lagrate, interval_s).samples,
    );
    std::thread::sleep(Duration::from_secs(grow_s));
    let (rss_1, samples_1) = (
        lagrate.rss_bytes().unwrap_or(0) as f64,
        counts(&lagrate, interval_s).samples,
    );
    let per_sample = (rss_1 - rss_0) / (samples_1 - samples_0).max(1.0);
    let window_samples = DEFAULT_WINDOW_SAMPLES;
    let per_key = per_sample * window_samples + (rss_0 - base_rss) / registered as f64;
    println!(
        "a sample of {partitions} partitions adds {per_sample:.0} B ({:.0} B per partition) (over {grow_s} s at {registered} keys); with the default 16 min window sampled every 5 s ({window_samples:.0} samples) a key with {objects_per_key} ScaledObject(s) costs ~{:.0} KB, so 128 Mi holds ~{:.0} keys beside the {:.0} MB base",
        per_sample / f64::from(partitions),
        per_key / 1e3,
        (128.0 * 1024.0 * 1024.0 - base_rss) / per_key,
        base_rss / 1e6
    );
    println!(
        "{registered} keys ({} ScaledObjects) at full windows: ~{:.0} MB resident",
        registered * objects_per_key,
        (base_rss + per_key * registered as f64) / 1e6
    );
}

/// Waits for every window to fill (the policy's windows look back
/// `history_s`: three histories, the 15 s rate window and two intervals),
/// then prints what a key costs at a full window, per sample and per
/// partition, and projects it onto the default policy's 16 min window.
fn full_windows(
    lagrate: &Lagrate,
    interval_s: u64,
    history_s: u64,
    keys: usize,
    objects_per_key: usize,
    base_rss: f64,
) {
    let window_s = 3 * history_s + 15 + 2 * interval_s;
    let young = lagrate.rss_bytes().unwrap_or(0) as f64;
    let young_samples = counts(lagrate, interval_s).samples;
    // Full, then turned over once: what a window holds in its steady state.
    std::thread::sleep(Duration::from_secs(2 * window_s + 2 * interval_s));
    let full = lagrate.rss_bytes().unwrap_or(0) as f64;
    let per_key_samples = (window_s / interval_s) as f64;
    // Samples a young window held (all taken so far, spread over the keys).
    let held_young = (young_samples / keys as f64).min(per_key_samples);
    let per_sample = (full - young) / keys as f64 / (per_key_samples - held_young).max(1.0);
    let default_samples = DEFAULT_WINDOW_SAMPLES;
    let per_key_full = (full - base_rss) / keys as f64;
    let per_key_default = per_key_full + (default_samples - per_key_samples) * per_sample;
    println!(
        "full windows of {per_key_samples:.0} samples ({window_s} s) at {keys} keys, {objects_per_key} ScaledObject(s) each: RSS {:.1} MB, {:.1} KB per key, a sample {per_sample:.0} B",
        full / 1e6,
        per_key_full / 1e3
    );
    println!(
        "with the default 16 min window sampled every 5 s ({default_samples:.0} samples): ~{:.0} KB per key, {keys} keys ~{:.0} MB resident; 128 Mi holds ~{:.0} keys",
        per_key_default / 1e3,
        (base_rss + per_key_default * keys as f64) / 1e6,
        (128.0 * 1024.0 * 1024.0 - base_rss) / per_key_default
    );
}
