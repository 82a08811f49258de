//! `lagrate simulate` as users run it, and the claims its tables make.

use std::process::Command;

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

/// Runs `lagrate simulate ARGS`, which must succeed; returns its stdout.
fn run_simulate(args: &[&str]) -> Vec<u8> {
    let out = Command::new(LAGRATE)
        .arg("simulate")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn simulate(args: &[&str]) -> serde_json::Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    serde_json::from_slice(&run_simulate(&with_json)).unwrap()
}

/// Runs `lagrate simulate` on a scenario file that must be refused;
/// returns what it said.
fn rejected(file: &std::path::Path) -> String {
    let out = Command::new(LAGRATE)
        .args(["simulate", "--scenario", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{} was accepted", file.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn row<'a>(report: &'a serde_json::Value, policy: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == policy)
        .unwrap()
}

#[test]
fn list_names_every_builtin_scenario_first_on_its_line() {
    let out = Command::new(LAGRATE)
        .args(["simulate", "--list"])
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    for want in [
        "reference",
        "steps",
        "spike",
        "daily",
        "flash-crowd",
        "hot-partition",
        "skewed",
        "noise",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

#[test]
fn json_has_the_documented_shape_and_runs_are_deterministic() {
    let report = simulate(&["--scenario", "spike", "--rebalance", "eager"]);
    assert_eq!(report["scenario"], "spike");
    assert_eq!(report["feasible"], true);
    assert!(report["bound_pod_seconds"].as_f64().unwrap() > 0.0);
    let policies: Vec<_> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        policies,
        [
            "keda-lag",
            "keda-lag-tuned",
            "keda-lag-plus-rate",
            "lagrate",
            "ideal-behind-keda",
            "ideal-reactive",
            "clairvoyant"
        ]
    );
    for key in [
        "policy",
        "pod_seconds",
        "bound_ratio",
        "p50_wait_s",
        "p99_wait_s",
        "max_wait_s",
        "peak_lag",
        "scale_actions",
        "reversals",
        "unprocessed_end",
    ] {
        assert!(report["rows"][0].get(key).is_some(), "row lacks {key}");
    }
    assert_eq!(
        report,
        simulate(&["--scenario", "spike", "--rebalance", "eager"]),
        "same seed, same result"
    );
}

#[test]
fn reference_profile_is_capacity_bound_and_lagrate_leaves_the_smallest_backlog_and_says_why() {
    for mode in ["cooperative", "eager"] {
        let report = simulate(&["--scenario", "reference", "--rebalance", mode]);
        assert_eq!(
            report["feasible"], false,
            "5000 msg/s exceeds 24 pods x 100 msg/s"
        );
        let lagrate = row(&report, "lagrate");
        assert_eq!(lagrate["partition_limit_reported"], true);
        let left = |p: &str| row(&report, p)["unprocessed_end"].as_f64().unwrap();
        for keda in ["keda-lag", "keda-lag-tuned", "keda-lag-plus-rate"] {
            // Within one message: float residue is not a backlog.
            assert!(
                left("lagrate") <= left(keda) + 1.0,
                "{mode}: lagrate left {} vs {keda} {}",
                left("lagrate"),
                left(keda)
            );
        }
    }
}

/// On the feasible built-in load steps, spikes, flash crowds and a skewed
/// topic no KEDA configuration beats lagrate on both cost and waiting, and
/// lagrate stays within 1.15x of the ideal-reactive reference on both.
#[test]
fn lagrate_is_not_dominated_by_keda_and_is_near_ideal_on_feasible_scenarios() {
    for scenario in ["steps", "spike", "flash-crowd", "skewed"] {
        for mode in ["cooperative", "eager"] {
            let report = simulate(&["--scenario", scenario, "--rebalance", mode]);
            let lagrate = row(&report, "lagrate");
            let (pods, p99) = (
                lagrate["pod_seconds"].as_f64().unwrap(),
                lagrate["p99_wait_s"].as_f64().unwrap(),
            );
            for keda in ["keda-lag", "keda-lag-tuned", "keda-lag-plus-rate"] {
                let k = row(&report, keda);
                assert!(
                    !(k["pod_seconds"].as_f64().unwrap() < pods
                        && k["p99_wait_s"].as_f64().unwrap() < p99),
                    "{scenario}/{mode}: {keda} beats lagrate on both"
                );
            }
            let ideal = row(&report, "ideal-reactive");
            assert!(
                pods <= 1.15 * ideal["pod_seconds"].as_f64().unwrap(),
                "{scenario}/{mode}: pod-seconds {pods} vs ideal {}",
                ideal["pod_seconds"]
            );
            assert!(
                p99 <= 1.15 * ideal["p99_wait_s"].as_f64().unwrap().max(1.0),
                "{scenario}/{mode}: p99 {p99} vs ideal {}",
                ideal["p99_wait_s"]
            );
            assert!(
                lagrate["scale_actions"].as_u64().unwrap() <= 2 * 5,
                "{scenario}/{mode}: at most two actions per load step"
            );
        }
    }
}

#[test]
fn a_user_scenario_file_runs_and_bad_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.yaml");
    std::fs::write(
        &file,
        "name: mine\npartitions: 12\npodCapacity: 50\nload:\n  - { rate: 100, seconds: 120 }\n  - { ramp: [100, 500], seconds: 60 }\n  - { rate: 500, seconds: 300 }\n",
    )
    .unwrap();
    let report = simulate(&["--scenario", file.to_str().unwrap()]);
    assert_eq!(report["scenario"], "mine");
    assert_eq!(report["rows"].as_array().unwrap().len(), 7);

    std::fs::write(
        &file,
        "name: bad\nload:\n  - { rate: 100, ramp: [1, 2], seconds: 10 }\n",
    )
    .unwrap();
    let stderr = rejected(&file);
    assert!(
        stderr.contains("load[0] needs exactly one of rate, ramp, sine"),
        "{stderr}"
    );
}

#[test]
fn a_scenarios_policy_is_the_one_simulated_and_checked_like_the_configs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tuned.yaml");
    let scenario = |policy: &str| {
        format!("name: tuned\npartitions: 24\n{policy}load:\n  - {{ rate: 1000, seconds: 600 }}\n")
    };
    let pod_seconds = |policy: &str| {
        std::fs::write(&file, scenario(policy)).unwrap();
        row(
            &simulate(&["--scenario", file.to_str().unwrap()]),
            "lagrate",
        )["pod_seconds"]
            .as_f64()
            .unwrap()
    };
    let default = pod_seconds("");
    let capped = pod_seconds("policy: { maxReplicas: 6 }\n");
    // 1000 msg/s at 100 msg/s per pod: 12 pods of 2 partitions, or the 6
    // the policy allows.
    assert!(
        capped < 0.6 * default,
        "maxReplicas 6 gives {capped} pod-seconds, the default {default}"
    );

    std::fs::write(&file, scenario("policy: { maxScaleDownStep: 0 }\n")).unwrap();
    let stderr = rejected(&file);
    assert!(stderr.contains("policy.maxScaleDownStep"), "{stderr}");
}

#[test]
fn chart_is_written_as_svg() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("spike.svg");
    run_simulate(&["--scenario", "spike", "--chart", chart.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("lagrate") && svg.contains("keda-lag"));
}

/// Noise is not chased: started at the right size, no action; started
/// wrong, at most one reversal (24 and 48 partitions).
#[test]
fn noise_is_not_chased_from_the_right_start_or_a_wrong_one() {
    for mode in ["cooperative", "eager"] {
        let run = |scenario: &str| simulate(&["--scenario", scenario, "--rebalance", mode]);
        for scenario in ["noise", "noise-48"] {
            let report = run(scenario);
            let lagrate = row(&report, "lagrate");
            assert!(
                lagrate["reversals"].as_u64().unwrap() <= 1,
                "{scenario}/{mode}: started wrong, at most one reversal: {lagrate}"
            );
        }
        for scenario in ["noise-boundary", "noise-boundary-48"] {
            let report = run(scenario);
            assert_eq!(
                row(&report, "lagrate")["scale_actions"],
                0,
                "{scenario}/{mode}: started right, no action"
            );
        }
    }
}

/// Noise started wrong on pods that rebalance slower than the policy's
/// prior (79 s against 60): two counts are then both kept (the smaller
/// would make its rebalance's messages wait beyond the objective), and the
/// replay must go on from the count that runs whichever epoch replays it,
/// not flip between the two every epoch.
#[test]
fn noise_started_wrong_on_slow_rebalances_reverses_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("noise-slow-rebalance.yaml");
    std::fs::write(
        &file,
        "name: noise-slow-rebalance\nstartupSeconds: 19\nrebalanceSeconds: 79\npartitions: 24\nnoise: 0.1\nseed: 186\ninitialReplicas: 1\nload:\n  - { rate: 459.3, seconds: 3600 }\n",
    )
    .unwrap();
    let report = simulate(&[
        "--scenario",
        file.to_str().unwrap(),
        "--rebalance",
        "cooperative",
    ]);
    let lagrate = row(&report, "lagrate");
    assert!(
        lagrate["reversals"].as_u64().unwrap() <= 1,
        "at most one reversal in an hour: {lagrate}"
    );
}

/// Bursts are served near ideal, a hot partition costs fewer pods than
/// ideal-reactive at about its wait, a scaler restart costs little.
#[test]
fn bursts_hot_partitions_and_restarts_stay_near_ideal() {
    for mode in ["cooperative", "eager"] {
        for scenario in [
            "bursts-short",
            "bursts-long",
            "restart",
            "hot-partition-falls",
        ] {
            let report = simulate(&["--scenario", scenario, "--rebalance", mode]);
            let (lagrate, ideal) = (row(&report, "lagrate"), row(&report, "ideal-reactive"));
            let ratio =
                |key: &str| lagrate[key].as_f64().unwrap() / ideal[key].as_f64().unwrap().max(1.0);
            let (pods, p99) = (ratio("pod_seconds"), ratio("p99_wait_s"));
            assert!(
                pods <= 1.15,
                "{scenario}/{mode}: pod-seconds {pods:.2}x ideal"
            );
            assert!(p99 <= 1.15, "{scenario}/{mode}: p99 {p99:.2}x ideal");
            if scenario == "hot-partition-falls" {
                assert!(pods < 1.0, "{scenario}/{mode}: fewer pods than ideal");
            }
        }
    }
}

#[test]
fn explain_lists_the_holds_between_the_changes_with_their_reasons() {
    let out = run_simulate(&[
        "--scenario",
        "steps",
        "--rebalance",
        "cooperative",
        "--explain",
    ]);
    let out = String::from_utf8(out).unwrap();
    let explained: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("lagrate decisions"))
        .skip(1)
        .collect();
    let first = |what: &str| {
        explained
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in:\n{out}"))
    };
    // Each step up is met in one scale-up; a scale-down waits for its own
    // pause to end before the next, and one its pause makes too costly is
    // named as such. Each change carries the candidates it priced.
    let up = first("scale up 3 -> 24 in one step");
    let up_again = first("scale up 24 -> 48 in one step");
    let down = first("scale down 48 -> 24");
    let settling = first("hold 24: the last change's pause");
    assert!(up < up_again && up_again < down && down < settling);
    first("would make messages wait beyond the objective");
    assert!(explained[up + 1].contains("candidates over a"), "{out}");
    // A hold is listed when its reason changes, not every sample.
    let decisions = explained.iter().filter(|l| l.contains("s  lag ")).count();
    assert!(decisions < 20, "{decisions} decisions:\n{out}");
}

#[test]
fn a_printed_builtin_runs_as_a_file_to_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["restart", "bursts-short"] {
        let yaml = run_simulate(&["--scenario", name, "--print-scenario"]);
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let builtin = simulate(&["--scenario", name]);
        let from_file = simulate(&["--scenario", file.to_str().unwrap()]);
        assert_eq!(from_file["rows"], builtin["rows"], "{name}");
    }
    // --rebalance is written into the file.
    let yaml = run_simulate(&[
        "--scenario",
        "restart",
        "--rebalance",
        "eager",
        "--print-scenario",
    ]);
    assert!(
        String::from_utf8(yaml)
            .unwrap()
            .contains("rebalance: eager")
    );
}

/// `ideal-behind-keda` is ideal-reactive's knowledge delayed by KEDA's
/// pipeline and nothing else: on one step, whatever its phase against the
/// HPA's 15 s sync, its longest wait is ideal-reactive's plus at most one
/// sync, and where the step just misses a sync it is longer.
#[test]
fn ideal_behind_keda_is_ideal_reactive_delayed_by_at_most_one_hpa_sync() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("step.yaml");
    let mut delays = Vec::new();
    for step_at in [62, 66, 71, 75] {
        std::fs::write(
            &file,
            format!("name: step\npartitions: 8\nstartupSeconds: 8\nrebalanceSeconds: 6\nload:\n  - {{ rate: 100, seconds: {step_at} }}\n  - {{ rate: 700, seconds: 300 }}\n"),
        )
        .unwrap();
        let report = simulate(&["--scenario", file.to_str().unwrap()]);
        let max_wait = |policy: &str| row(&report, policy)["max_wait_s"].as_f64().unwrap();
        let delay = max_wait("ideal-behind-keda") - max_wait("ideal-reactive");
        assert!(
            (0.0..=15.0).contains(&delay),
            "step at {step_at} s: behind KEDA waits {delay} s longer"
        );
        delays.push(delay);
    }
    assert!(
        delays.iter().any(|&d| d >= 5.0),
        "the HPA's sync never delayed it: {delays:?}"
    );
}
