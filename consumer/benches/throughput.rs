//! Consumer throughput with the no-op sink (JSON decoded, batches of 100,
//! a commit per batch), trade-consumer against the reference consumer's
//! design in Python (confluent-kafka, `python_consumer.py`), on the same
//! tansu broker in the same run. Prints messages/s, CPU seconds, messages
//! per CPU-second, and the ratios.
//!
//!     pip install confluent-kafka   # for the Python row
//!     cargo bench -p trade-consumer --bench throughput [-- --messages 200000]

#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use testbed::{Process, Tansu, bench_arg, free_port, http_get, unique};
use trade_model::TradeGenerator;

const PARTITIONS: i32 = 6;

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ
}

struct Row {
    name: &'static str,
    seconds: f64,
    cpu: f64,
    messages: u64,
}

fn main() {
    let messages = bench_arg("--messages", 200_000);
    let broker = Tansu::start();
    let topic = unique("bench-trades");
    broker.create_topic(&topic, PARTITIONS);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut trades = TradeGenerator::new("bench", 10_000);
    for _ in 0..messages {
        let t = trades.next_trade(0);
        let payload = serde_json::to_vec(&t).expect("json");
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(&topic)
                    .key(t.account_id.as_bytes())
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    println!(
        "{messages} trades on {PARTITIONS} partitions of a tansu broker; batches of 100, no-op sink, commit per batch"
    );

    let mut rows = Vec::new();
    // trade-consumer
    let port = free_port();
    let started = Instant::now();
    let mut rust = Process::start(
        env!("CARGO_BIN_EXE_trade-consumer"),
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topic.clone()),
            ("CONSUMER_GROUP", unique("rust")),
            ("BATCH_PROCESSING_TIME", "0".into()),
            ("BATCH_TIMEOUT_SECONDS", "0.5".into()),
            ("METRICS_PORT", port.to_string()),
        ],
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let pid = rust.pid().expect("running");
    let want = format!("kafka_messages_processed_total {messages}\n");
    loop {
        let (_, m) = http_get(addr, "/metrics");
        if m.contains(&want) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "trade-consumer did not finish:\n{}",
            rust.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rows.push(Row {
        name: "trade-consumer (Rust)",
        seconds: started.elapsed().as_secs_f64(),
        cpu: cpu_seconds(pid),
        messages,
    });
    let _ = rust.terminate(Duration::from_secs(20));

    // The reference design in Python.
    let has_python = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if has_python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_consumer.py");
        let started = Instant::now();
        let mut py = Process::start(
            "python3",
            &[
                script,
                &broker.bootstrap(),
                &topic,
                &unique("python"),
                &messages.to_string(),
                "100",
            ],
            &[],
        );
        let pid = py.pid().expect("running");
        let mut cpu = 0.0;
        // Sample CPU until it exits (the /proc entry goes with it).
        let status = loop {
            cpu = cpu_seconds(pid).max(cpu);
            if let Some(status) = py.try_wait() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1200),
                "python consumer did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{}", py.logs());
        rows.push(Row {
            name: "reference design (Python)",
            seconds: started.elapsed().as_secs_f64(),
            cpu,
            messages,
        });
    } else {
        println!("(Python row skipped: pip install confluent-kafka)");
    }

    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>16}",
        "consumer", "seconds", "messages/s", "CPU s", "messages/CPU-s"
    );
    for r in &rows {
        println!(
            "{:<28} {:>10.2} {:>12.0} {:>10.2} {:>16.0}",
            r.name,
            r.seconds,
            r.messages as f64 / r.seconds,
            r.cpu,
            r.messages as f64 / r.cpu.max(0.01)
        );
    }
    if let [rust, python] = &rows[..] {
        println!(
            "ratio Rust / Python: {:.1}x messages/s, {:.1}x messages per CPU-second",
            python.seconds / rust.seconds,
            python.cpu / rust.cpu.max(0.01)
        );
    }
}
