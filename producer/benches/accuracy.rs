//! How exactly trade-producer holds its target rate: 60 s at 1,000 and at
//! 5,000 msg/s against a tansu broker, counted by the broker's high
//! watermarks. Prints target, received, achieved rate and error.
//!
//!     cargo bench -p trade-producer --bench accuracy [-- --seconds 60]

#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::time::{Duration, Instant};

use testbed::{Process, Tansu, free_port, unique};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(60.0);
    let broker = Tansu::start();
    println!(
        "{:>12} {:>10} {:>12} {:>14} {:>9}",
        "target msg/s", "seconds", "received", "achieved msg/s", "error %"
    );
    for rate in [1000.0, 5000.0] {
        let topic = unique("accuracy");
        broker.create_topic(&topic, 6);
        let started = Instant::now();
        let mut producer = Process::start(
            env!("CARGO_BIN_EXE_trade-producer"),
            &[
                "--rate",
                &rate.to_string(),
                "--duration-seconds",
                &seconds.to_string(),
            ],
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
                ("KAFKA_TOPIC", topic.clone()),
                ("METRICS_PORT", free_port().to_string()),
            ],
        );
        assert!(
            producer
                .wait(Duration::from_secs_f64(seconds + 60.0))
                .success(),
            "{}",
            producer.logs()
        );
        let _ = started;
        let received: i64 = broker.high_watermarks(&topic).iter().sum();
        let expected = rate * seconds;
        println!(
            "{:>12.0} {:>10.0} {:>12} {:>14.1} {:>9.2}",
            rate,
            seconds,
            received,
            received as f64 / seconds,
            (received as f64 - expected) / expected * 100.0
        );
    }
}
