//! Consumer efficiency: trade-consumer against the reference consumer's
//! design in Python (confluent-kafka, `python_consumer.py`), side by side on
//! the same tansu broker in the same run, at 6 and at 24 partitions. Both
//! decode every trade as JSON, batch 100 messages per partition and commit
//! after each write: first to a no-op sink, then to the same PostgreSQL
//! server (trade-consumer's one INSERT per batch; the reference's psycopg
//! `executemany` per batch and a transaction commit). CPU (user + system,
//! every thread) is counted from each consumer's first processed message
//! to its last, so start-up and the group join are left out of both; the
//! server's CPU is the database's cost, which any design pays, and is not
//! counted. Prints messages/s, CPU seconds, messages per CPU-second, and
//! the ratios of each sink.
//!
//!     python3 -m venv /tmp/bench && /tmp/bench/bin/pip install confluent-kafka 'psycopg[binary]'
//!     BENCH_PYTHON=/tmp/bench/bin/python cargo bench -p trade-consumer --bench throughput [-- --messages 200000]

#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use testbed::{Process, Tansu, bench_arg, free_port, http_get, unique};
use trade_model::TradeGenerator;

const PARTITION_COUNTS: [i32; 2] = [6, 24];
const LIMIT: Duration = Duration::from_secs(900);

/// CPU seconds (user + system) of a process so far, from /proc; None once
/// it has exited.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ
}

/// One consumer's run: wall time and CPU from its first processed message.
#[derive(Clone)]
struct Row {
    name: &'static str,
    seconds: f64,
    cpu: f64,
}

/// Samples `pid`: from when `started()` first says so (checked every
/// 20 ms) until `finished()` does (every 100 ms, so that asking costs the
/// consumer little), returning that span's wall and CPU time.
fn measure(
    pid: u32,
    mut started: impl FnMut() -> bool,
    mut finished: impl FnMut() -> bool,
    logs: &dyn Fn() -> String,
) -> (f64, f64) {
    let deadline = Instant::now() + LIMIT;
    let mut first: Option<(Instant, f64)> = None;
    let mut last_cpu = 0.0;
    loop {
        assert!(
            Instant::now() < deadline,
            "consumer did not finish:\n{}",
            logs()
        );
        if let Some(cpu) = cpu_seconds(pid) {
            last_cpu = cpu;
        }
        if first.is_none() && started() {
            first = Some((Instant::now(), last_cpu));
        }
        if let Some((at, cpu0)) = first
            && finished()
        {
            return (at.elapsed().as_secs_f64(), last_cpu - cpu0);
        }
        std::thread::sleep(Duration::from_millis(if first.is_some() {
            100
        } else {
            20
        }));
    }
}

fn produce(broker: &Tansu, topic: &str, messages: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    // Ids unique to the topic: the PostgreSQL row stores every run's trades.
    let mut trades = TradeGenerator::new(topic, 10_000);
    for _ in 0..messages {
        let t = trades.next_trade(0);
        let payload = serde_json::to_vec(&t).expect("json");
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .key(t.account_id.as_bytes())
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// trade-consumer on `topic`, writing to the no-op sink or, given a
/// database, to PostgreSQL (the production path).
fn rust_row(
    broker: &Tansu,
    topic: &str,
    messages: u64,
    database: Option<&testbed::Postgres>,
) -> Row {
    let port = free_port();
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC", topic.to_owned()),
        ("CONSUMER_GROUP", unique("rust")),
        ("DLQ_TOPIC", format!("{topic}-dlq")),
        ("BATCH_PROCESSING_TIME", "0".into()),
        ("BATCH_TIMEOUT_SECONDS", "0.5".into()),
        ("METRICS_PORT", port.to_string()),
    ];
    if let Some(db) = database {
        env.extend([("SINK", "postgres".into()), ("DATABASE_URL", db.url())]);
    }
    let mut rust = Process::start(env!("CARGO_BIN_EXE_trade-consumer"), &[], &env);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let processed = || {
        let (_, m) = http_get(addr, "/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix("kafka_messages_processed_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (seconds, cpu) = measure(
        rust.pid().expect("running"),
        || processed() > 0,
        || processed() >= messages,
        &|| rust.logs(),
    );
    let _ = rust.terminate(Duration::from_secs(20));
    Row {
        name: if database.is_some() {
            "trade-consumer, PostgreSQL"
        } else {
            "trade-consumer (Rust)"
        },
        seconds,
        cpu,
    }
}

/// The reference design on `topic`, writing to the no-op sink or, given
/// a database, to a table of its own there.
fn python_row(
    python: &str,
    broker: &Tansu,
    topic: &str,
    messages: u64,
    database: Option<&testbed::Postgres>,
) -> Row {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_consumer.py");
    let mut args = vec![
        script.to_owned(),
        broker.bootstrap(),
        topic.to_owned(),
        unique("python"),
        messages.to_string(),
        "100".to_owned(),
    ];
    if let Some(db) = database {
        args.extend([db.url(), unique("reference_trades").replace('-', "_")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut py = Process::start(python, &args, &[]);
    let pid = py.pid().expect("running");
    let logs = || py.logs();
    let (seconds, cpu) = measure(
        pid,
        || logs().contains("first processed"),
        || logs().contains("all processed"),
        &logs,
    );
    assert!(py.wait(Duration::from_secs(60)).success(), "{}", py.logs());
    Row {
        name: if database.is_some() {
            "reference, PostgreSQL"
        } else {
            "reference design (Python)"
        },
        seconds,
        cpu,
    }
}

/// Whether `python` can import every module of `modules`.
fn python_has(python: &str, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let messages = bench_arg("--messages", 200_000);
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_python = python_has(&python, "confluent_kafka");
    let has_psycopg = has_python && python_has(&python, "psycopg");
    if !has_python {
        println!("(Python rows skipped: no confluent_kafka in {python}; set BENCH_PYTHON)");
    } else if !has_psycopg {
        println!("(Python PostgreSQL row skipped: no psycopg in {python})");
    }
    println!(
        "{messages} trades per run on a tansu broker; batches of 100; CPU from the first processed message\n"
    );
    println!(
        "{:>10}  {:<26} {:>8} {:>11} {:>7} {:>15}",
        "partitions", "consumer", "seconds", "messages/s", "CPU s", "messages/CPU-s"
    );
    let broker = Tansu::start();
    let database = testbed::Postgres::start();
    let mut ratios = Vec::new();
    for partitions in PARTITION_COUNTS {
        let topic = unique("bench-trades");
        broker.create_topic(&topic, partitions);
        produce(&broker, &topic, messages);
        // Per sink: trade-consumer, and the reference design if it runs.
        let mut pairs = vec![(rust_row(&broker, &topic, messages, None), None)];
        if has_python {
            pairs[0].1 = Some(python_row(&python, &broker, &topic, messages, None));
        }
        // The production path: every trade inserted.
        let rust = rust_row(&broker, &topic, messages, Some(&database));
        let python =
            has_psycopg.then(|| python_row(&python, &broker, &topic, messages, Some(&database)));
        pairs.push((rust, python));
        for r in pairs
            .iter()
            .flat_map(|(rust, python)| std::iter::once(rust).chain(python))
        {
            println!(
                "{:>10}  {:<26} {:>8.2} {:>11.0} {:>7.2} {:>15.0}",
                partitions,
                r.name,
                r.seconds,
                messages as f64 / r.seconds,
                r.cpu,
                messages as f64 / r.cpu.max(0.01)
            );
        }
        for (rust, python) in pairs {
            if let Some(python) = python {
                ratios.push((partitions, python, rust));
            }
        }
    }
    println!();
    for (partitions, python, rust) in ratios {
        println!(
            "{partitions:>2} partitions: {} / {} {:.1}x messages/s, {:.1}x messages per CPU-second",
            rust.name,
            python.name,
            python.seconds / rust.seconds,
            python.cpu / rust.cpu.max(0.01)
        );
    }
}
