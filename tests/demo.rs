//! `lagrate demo`, the README's run command, end to end on a short profile:
//! real consumers scaled by lagrate on a real broker, every message
//! processed once, the simulator's prediction close to what happened, and
//! nothing left running afterwards, also when the demo is stopped halfway.
// Each test is a scenario against real processes, read top to bottom.
#![allow(clippy::too_many_lines)]
// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::workspace_binary;

/// 10 msg/s, a step to 600 msg/s (6 consumers' worth at 100 msg/s each,
/// 8 with headroom), then nothing: 70 s in all.
const PROFILE: &str = "10@15s,600@35s,0@20s";

/// `lagrate demo` with its temp files under `tmp` (so that its processes
/// can be found by their working directory) and its outputs in `tmp/out`.
fn demo(tmp: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(workspace_binary("lagrate"));
    command
        .args(["demo", "--profile", PROFILE, "--partitions", "12", "--out"])
        .arg(tmp.join("out"))
        .args(extra)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null());
    command
}

/// Processes whose working directory lies under `dir`: the demo runs each
/// of its children in its temp directory there.
fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(dir) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

fn series(run: &serde_json::Value, path: &[&str]) -> Vec<f64> {
    let mut v = run;
    for key in path {
        v = &v[*key];
    }
    v.as_array()
        .unwrap_or_else(|| panic!("{path:?} is not an array"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn lagrate_scales_real_consumers_up_and_down_and_every_message_is_processed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), &["--json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let run = &report["lagrate"];
    for key in [
        "produced",
        "processed",
        "duplicates",
        "lost",
        "pod_seconds",
        "p99_wait_s",
        "peak_lag",
        "scale_actions",
        "start_replicas",
        "max_replicas",
        "final_replicas",
    ] {
        assert!(run[key].is_number(), "lagrate.{key} missing: {run}");
    }

    // lagrate's own estimate of the wait, from the offsets alone, beside the
    // wait the consumers measured.
    let (estimated, measured) = (
        run["estimated_p99_wait_s"].as_f64(),
        run["p99_wait_s"].as_f64().unwrap_or_default(),
    );
    // Sampled every 2 s against every message's own wait: within half of
    // it, or 5 s (7.1 s measured, 6.2 s estimated on this machine).
    assert!(
        estimated.is_some_and(|e| (e - measured).abs() <= (0.5 * measured).max(5.0)),
        "p99 wait measured {measured:.1}s, estimated {estimated:?}: {run}"
    );

    // Exactly once: every offset in the topic written by one consumer, once.
    let produced = run["produced"].as_u64().unwrap();
    assert!(
        produced > 15_000,
        "the profile sends ~21,000 messages, got {produced}"
    );
    assert_eq!(run["processed"].as_u64(), Some(produced), "{run}");
    assert_eq!(run["duplicates"].as_u64(), Some(0), "{run}");
    assert_eq!(run["lost"].as_u64(), Some(0), "{run}");
    assert_eq!(run["unprocessed"].as_u64(), Some(0), "{run}");

    // Up during the step, down after it.
    let t = series(run, &["timeline", "t"]);
    let desired = series(run, &["desired"]);
    let lag = series(run, &["timeline", "lag"]);
    let start = run["start_replicas"].as_f64().unwrap();
    let during = |from: f64, to: f64| {
        t.iter()
            .zip(&desired)
            .filter(|(t, _)| **t >= from && **t < to)
            .map(|(_, d)| *d)
            .fold(0.0, f64::max)
    };
    let peak = during(15.0, 50.0);
    assert!(
        peak >= start + 4.0,
        "600 msg/s needs 6+ consumers; desired peaked at {peak} (from {start})"
    );
    let last = *desired.last().unwrap();
    assert!(
        last < peak,
        "replicas did not fall after the step: {desired:?}"
    );

    // No scale-down while lag was rising (over the 3 s before it).
    for i in 3..desired.len() {
        if desired[i] < desired[i - 1] {
            let rising = lag[i] > lag[i - 3] * 1.1 + 100.0;
            assert!(
                !rising,
                "scaled down {} -> {} at {:.0}s while lag rose {} -> {}",
                desired[i - 1],
                desired[i],
                t[i],
                lag[i - 3],
                lag[i]
            );
        }
    }

    // The simulator, on the scenario the demo measured, predicts the run.
    let real = run["pod_seconds"].as_f64().unwrap();
    let predicted = report["prediction"]["pod_seconds"].as_f64().unwrap();
    assert!(
        (real / predicted - 1.0).abs() <= 0.3,
        "real {real:.0} pod-seconds vs predicted {predicted:.0}:\n{stderr}"
    );
    assert!(Path::new(report["chart"].as_str().unwrap()).exists());
    let scenario = report["scenario"].as_str().unwrap();
    let simulate = Command::new(workspace_binary("lagrate"))
        .args(["simulate", "--scenario", scenario, "--json"])
        .output()
        .unwrap();
    assert!(
        simulate.status.success(),
        "the written scenario does not simulate: {}",
        String::from_utf8_lossy(&simulate.stderr)
    );

    assert_eq!(processes_under(tmp.path()), Vec::<String>::new());
}

#[test]
fn sigterm_halfway_stops_every_process_the_demo_started() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = demo(tmp.path(), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Halfway through the step: consumers scaled up, load running.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let running = processes_under(tmp.path());
        if running
            .iter()
            .filter(|p| p.contains("trade-consumer"))
            .count()
            >= 3
            && running.iter().any(|p| p.contains("trade-producer"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo never ran 3 consumers and the producer: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not exit within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(143), "exit status after SIGTERM");
    assert_eq!(processes_under(tmp.path()), Vec::<String>::new());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("lagrate-demo-"))
        .collect();
    assert!(left.is_empty(), "temp directory left behind: {left:?}");
}
