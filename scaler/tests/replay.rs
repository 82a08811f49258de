//! `lagrate simulate --from-prometheus` against a real Prometheus holding
//! a known rate history, scraped from an exporter whose counters rise at
//! known rates.
// Each test is a scenario against real processes, read top to bottom.
#![allow(clippy::too_many_lines)]
// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::Prometheus;

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");
const RATE: f64 = 300.0;

/// Serves `replay_messages_total` rising at RATE per second, and
/// `replay_split_total` as two series (two brokers).
fn exporter() -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let count = started.elapsed().as_secs_f64() * RATE;
            let body = format!(
                "# TYPE replay_messages_total counter\nreplay_messages_total {count}\n# TYPE replay_split_total counter\nreplay_split_total{{broker=\"1\"}} {count}\nreplay_split_total{{broker=\"2\"}} {count}\n# TYPE replay_topic_total counter\nreplay_topic_total{{topic=\"trades\"}} {count}\n"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The load rates of a written scenario.
fn rates(path: &std::path::Path) -> Vec<f64> {
    let scenario: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    scenario["load"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rate"].as_f64().unwrap())
        .collect()
}

fn simulate(prometheus: &Prometheus, query: &str, out: &std::path::Path) -> std::process::Output {
    Command::new(LAGRATE)
        .args([
            "simulate",
            "--from-prometheus",
            &prometheus.url(),
            "--query",
            query,
        ])
        .args(["--since", "20s", "--step", "1s", "--partitions", "6"])
        .arg("--write-scenario")
        .arg(out)
        .output()
        .expect("run lagrate simulate")
}

#[test]
fn a_rate_history_is_replayed_within_two_percent_and_bad_queries_say_why() {
    let prometheus = Prometheus::start(&[exporter()]);
    // Twenty seconds of history after Prometheus's first scrapes and the
    // 5 s rate window have filled.
    std::thread::sleep(Duration::from_secs(33));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("replay.yaml");
    let run = simulate(&prometheus, "rate(replay_messages_total[5s])", &out);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("lagrate") && stdout.contains("keda-lag"),
        "{stdout}"
    );
    assert!(stderr.contains("scenario written to"), "{stderr}");
    let within_two_percent = |rates: &[f64]| {
        assert!(rates.len() >= 18, "{} steps", rates.len());
        for rate in rates {
            assert!(
                (rate - RATE).abs() <= 0.02 * RATE,
                "{rate} is not {RATE} ± 2 %: {rates:?}"
            );
        }
    };
    within_two_percent(&rates(&out));
    let scenario: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(scenario["partitions"], 6);

    // A shadow target of a config supplies the URL, the query and the
    // pod capacity.
    let config = dir.path().join("lagrate.yaml");
    std::fs::write(
        &config,
        format!(
            "clusters:\n  main: {{ bootstrapServers: [\"127.0.0.1:9\"] }}\nsampling:\n  interval: 5s\nprometheus:\n  url: {}\n  rateQuery: 'rate(replay_topic_total{{topic=\"<topic>\"}}[5s])'\nshadow:\n  - name: payments\n    consumerGroup: payments-consumer\n    topic: trades\n    metadata: {{ podCapacity: \"40\" }}\n",
            prometheus.url()
        ),
    )
    .unwrap();
    let targeted = dir.path().join("targeted.yaml");
    let run = Command::new(LAGRATE)
        .args(["simulate", "--target", "payments", "--config"])
        .arg(&config)
        .args([
            "--since",
            "20s",
            "--step",
            "1s",
            "--partitions",
            "6",
            "--write-scenario",
        ])
        .arg(&targeted)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    within_two_percent(&rates(&targeted));
    let scenario: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&targeted).unwrap()).unwrap();
    assert_eq!(scenario["podCapacity"], 40.0, "the target's podCapacity");
    // The written scenario runs again offline.
    let again = Command::new(LAGRATE)
        .args(["simulate", "--scenario"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(again.status.success());

    for (query, says) in [
        ("rate(no_such_metric_total[5s])", "no series"),
        ("rate(replay_split_total[5s])", "returned 2 series"),
        (
            "rate(replay_messages_total[5s",
            "Prometheus refused the query",
        ),
    ] {
        let run = simulate(&prometheus, query, &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{query}");
        assert!(stderr.contains(says), "{query}: {stderr}");
    }
}
