//! GetMetrics under load: many concurrent KEDA-like clients over 1,000
//! ScaledObjects that share 50 source keys, against a real `lagrate serve`
//! (release build) sampling a real tansu broker.
//!
//!     cargo bench -p lagrate --bench getmetrics [-- --seconds 10 --clients 64 --objects 1000 --keys 50]
//!
//! Prints requests/s, p50/p99 latency, the server's resident memory and the
//! Kafka offset queries per source key per sample interval, with targets.
//! Two phases: closed loop (64 clients back to back: the most the server
//! answers) and open loop at 5,000 calls/s evenly spaced (the latency KEDA
//! sees, timed from each call's scheduled instant), with the p99 of the
//! time the server's handler itself spent (`lagrate_request_duration_seconds`)
//! beside the client's. On a machine whose cores the clients and the broker
//! share with the server, the difference is time spent waiting for a core.
// The benchmark is one measured run, read top to bottom.
#![allow(clippy::too_many_lines)]
#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lagrate_proto::GetMetricsRequest;
use lagrate_proto::external_scaler_client::ExternalScalerClient;
use testbed::{Lagrate, Tansu, bench_arg, scaled_object, unique};

const PARTITIONS: i32 = 24;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let seconds = bench_arg("--seconds", 10);
    let clients = bench_arg("--clients", 64) as usize;
    let source_keys = bench_arg("--keys", 50) as usize;
    let interval_s = bench_arg("--interval", 5) as f64;
    let object_count = bench_arg("--objects", 1000) as usize;
    let broker = Tansu::start();
    let topic = unique("bench");
    broker.create_topic(&topic, PARTITIONS);
    broker.produce(&topic, 0..PARTITIONS, 20);
    let groups: Vec<String> = (0..source_keys)
        .map(|i| format!("{}-{i}", unique("group")))
        .collect();
    for g in &groups {
        broker.commit(
            g,
            &topic,
            &(0..PARTITIONS).map(|p| (p, 5)).collect::<HashMap<_, _>>(),
        );
    }
    // tansu reports no member count: one replica answers from its first
    // sample (warmUp: answer), as a steady server does.
    let config = format!(
        "sampling:\n  interval: {interval_s}s\n  maxStaleness: 300s\n  kafkaTimeout: 10s\n  warmUp: answer\nclusters:\n  local:\n    bootstrapServers: [\"{}\"]\nlimits:\n  maxEntries: 100000\n",
        broker.bootstrap()
    );
    // Logging as in production (tests log every decision at debug).
    let lagrate = Lagrate::start_with_env(
        env!("CARGO_BIN_EXE_lagrate"),
        &config,
        vec![("RUST_LOG", "info".into())],
    );
    let objects: Arc<Vec<_>> = Arc::new(
        (0..object_count)
            .map(|i| {
                let threshold = (10 + i % 7).to_string();
                scaled_object(
                    &format!("consumer-{i}"),
                    &[
                        ("cluster", "local"),
                        ("consumerGroup", &groups[i % source_keys]),
                        ("topic", &topic),
                        ("lagThreshold", &threshold),
                    ],
                )
            })
            .collect(),
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let channels = runtime.block_on(connect(&lagrate, 8));
    // Warm up: every ScaledObject once (entries created, first samples taken).
    runtime.block_on(async {
        for (i, o) in objects.iter().enumerate() {
            let mut c = channels[i % channels.len()].clone();
            c.get_metrics(request(o)).await.expect("warm-up GetMetrics");
        }
    });
    let queries_before = lagrate
        .metric_value("lagrate_offset_queries_total")
        .unwrap_or(0.0);
    let started = Instant::now();
    // Phase 1: closed loop, as fast as the clients can go (both cores busy).
    let saturated = runtime.block_on(saturate(&channels, &objects, clients, seconds));
    // Phase 2: open loop at the target rate, for the latency KEDA would see.
    let handled = |l: &Lagrate| {
        Buckets::read(
            l,
            "lagrate_request_duration_seconds",
            "method=\"GetMetrics\"",
        )
    };
    let handled_before = handled(&lagrate);
    let paced = runtime.block_on(paced(&channels, &objects, TARGET_RPS, seconds));
    let handled_paced = handled(&lagrate).since(&handled_before);
    let elapsed = started.elapsed();
    let queries = lagrate
        .metric_value("lagrate_offset_queries_total")
        .unwrap_or(0.0)
        - queries_before;
    let rss_mb = lagrate.rss_bytes().unwrap_or(0) as f64 / 1_048_576.0;
    let evaluations = Buckets::read(&lagrate, "lagrate_evaluation_seconds", "");

    let per_key = queries / source_keys as f64 / (elapsed.as_secs_f64() / interval_s);
    println!(
        "GetMetrics: {object_count} ScaledObjects over {source_keys} source keys, sampling every {interval_s}s, {seconds}s per phase"
    );
    println!(
        "{:<44} {:>12} {:>10} {:>4}",
        "figure", "measured", "target", "ok"
    );
    let row = |name: &str, measured: String, target: &str, ok: bool| {
        println!(
            "{name:<44} {measured:>12} {target:>10} {:>4}",
            if ok { "yes" } else { "NO" }
        );
    };
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    row(
        &format!("saturated: requests/s ({clients} clients)"),
        format!("{:.0}", saturated.rps),
        ">= 5000",
        saturated.rps >= TARGET_RPS,
    );
    row("saturated: p50 latency", ms(saturated.p50), "", true);
    row("saturated: p99 latency", ms(saturated.p99), "", true);
    row(
        &format!("paced at {TARGET_RPS:.0}/s: achieved requests/s"),
        format!("{:.0}", paced.rps),
        "",
        true,
    );
    row(
        &format!("paced at {TARGET_RPS:.0}/s: p50 latency"),
        ms(paced.p50),
        "",
        true,
    );
    row(
        &format!("paced at {TARGET_RPS:.0}/s: p99 latency"),
        ms(paced.p99),
        "<= 1 ms",
        paced.p99 <= Duration::from_millis(1),
    );
    row(
        &format!("paced at {TARGET_RPS:.0}/s: p99 in the handler (bucket)"),
        handled_paced
            .p99_bound_s()
            .map_or_else(|| "-".into(), |s| ms(Duration::from_secs_f64(s))),
        "",
        true,
    );
    row(
        "server RSS after both phases",
        format!("{rss_mb:.1} MB"),
        "<= 30 MB",
        rss_mb <= 30.0,
    );
    row(
        &format!(
            "evaluations: {} ({:.0}/s), mean",
            evaluations.count,
            evaluations.count / elapsed.as_secs_f64()
        ),
        ms(Duration::from_secs_f64(evaluations.mean_s())),
        "",
        true,
    );
    row(
        "evaluations: p99 (histogram bucket)",
        evaluations
            .p99_bound_s()
            .map_or_else(|| "-".into(), |s| ms(Duration::from_secs_f64(s))),
        "",
        true,
    );
    row(
        "offset queries per source key per interval",
        format!("{per_key:.2}"),
        "1",
        (per_key - 1.0).abs() < 0.15,
    );
}

const TARGET_RPS: f64 = 5000.0;

/// A histogram as the server exports it: `name`'s series whose labels
/// hold `labels` (as written between the braces, `""` for all).
struct Buckets {
    count: f64,
    sum_s: f64,
    /// Cumulative (upper bound seconds, count) per bucket.
    buckets: Vec<(f64, f64)>,
}

impl Buckets {
    fn read(lagrate: &Lagrate, name: &str, labels: &str) -> Self {
        let (_, text) = lagrate.http_get("/metrics");
        let value = |line: &str| line.split_whitespace().last()?.parse::<f64>().ok();
        let mut h = Buckets {
            count: 0.0,
            sum_s: 0.0,
            buckets: Vec::new(),
        };
        for line in text.lines().filter(|l| l.contains(labels)) {
            if line.starts_with(&format!("{name}_count")) {
                h.count = value(line).unwrap_or(0.0);
            } else if line.starts_with(&format!("{name}_sum")) {
                h.sum_s = value(line).unwrap_or(0.0);
            } else if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{")) {
                let bound = rest
                    .split("le=\"")
                    .nth(1)
                    .and_then(|b| b.split('"').next())
                    .and_then(|b| b.parse().ok());
                if let (Some(bound), Some(n)) = (bound, value(line)) {
                    h.buckets.push((bound, n));
                }
            }
        }
        h
    }

    /// What was observed between `earlier` and this reading.
    fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets {
            count: self.count - earlier.count,
            sum_s: self.sum_s - earlier.sum_s,
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(&(bound, n), &(_, before))| (bound, n - before))
                .collect(),
        }
    }

    fn mean_s(&self) -> f64 {
        if self.count > 0.0 {
            self.sum_s / self.count
        } else {
            0.0
        }
    }

    /// The upper bound of the bucket that holds the 99th percentile.
    fn p99_bound_s(&self) -> Option<f64> {
        let want = 0.99 * self.count;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= want && want > 0.0)
            .map(|(bound, _)| *bound)
    }
}

struct Phase {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `workers` tasks call GetMetrics round-robin over the objects for
/// `seconds`, each sending its next call as the last one returns: the
/// most the server answers.
async fn saturate(
    channels: &[ExternalScalerClient<tonic::transport::Channel>],
    objects: &Arc<Vec<lagrate_proto::ScaledObjectRef>>,
    workers: usize,
    seconds: u64,
) -> Phase {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut client = channels[worker % channels.len()].clone();
        let objects = objects.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker * 7919;
            while Instant::now() < deadline {
                let sent = Instant::now();
                client
                    .get_metrics(request(&objects[i % objects.len()]))
                    .await
                    .expect("GetMetrics");
                latencies.push(sent.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    Phase::of(all, started.elapsed())
}

/// GetMetrics at `rate` calls/s for `seconds`, evenly spaced, as many
/// independent KEDA pollers would send them: a thread of its own keeps the
/// schedule (tokio's timer has a 1 ms grain, which would send the calls in
/// lockstep bursts) and each call runs as its own task, so a slow answer
/// never delays the next call. Latency runs from the scheduled instant, so
/// a call the client itself sent late counts its lateness too.
async fn paced(
    channels: &[ExternalScalerClient<tonic::transport::Channel>],
    objects: &Arc<Vec<lagrate_proto::ScaledObjectRef>>,
    rate: f64,
    seconds: u64,
) -> Phase {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let calls = (rate * seconds as f64) as u32;
    let period = Duration::from_secs_f64(1.0 / rate);
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        for k in 0..calls {
            let due = start + period * k;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send(due).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut calls_made = tokio::task::JoinSet::new();
    let mut i = 0;
    while let Some(due) = rx.recv().await {
        let mut client = channels[i % channels.len()].clone();
        let object = objects[(i * 7919) % objects.len()].clone();
        calls_made.spawn(async move {
            client
                .get_metrics(request(&object))
                .await
                .expect("GetMetrics");
            due.elapsed()
        });
        i += 1;
    }
    pacer.join().expect("pacer thread");
    let latencies = calls_made.join_all().await;
    Phase::of(latencies, started.elapsed())
}

impl Phase {
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        Phase {
            rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
        }
    }
}

fn request(o: &lagrate_proto::ScaledObjectRef) -> GetMetricsRequest {
    GetMetricsRequest {
        scaled_object_ref: Some(o.clone()),
        metric_name: "lagrate-bench".into(),
    }
}

async fn connect(
    lagrate: &Lagrate,
    n: usize,
) -> Vec<ExternalScalerClient<tonic::transport::Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            ExternalScalerClient::connect(lagrate.grpc_url())
                .await
                .expect("connect"),
        );
    }
    out
}
