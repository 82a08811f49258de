//! The `lagrate` command line, run as a user would.

use std::process::Command;

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

#[test]
fn config_check_accepts_the_example_and_rejects_a_broken_file_with_the_reason() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config.yaml");
    let ok = Command::new(LAGRATE)
        .args(["config", "check", example])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "policies:\n  default:\n    maxScaleDownStep: 2\n").unwrap();
    let bad = Command::new(LAGRATE)
        .args(["config", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("policies.default.maxScaleDownStep"),
        "{stderr}"
    );
    assert!(stderr.contains("(0, 1]"), "{stderr}");
    assert!(
        stderr.contains("Largest fraction of the current replicas removed in one step"),
        "the schema's description of the field: {stderr}"
    );
}

#[test]
fn config_check_names_the_keys_that_no_longer_have_an_effect() {
    // A config written for the earlier rule chain still loads; the check
    // says which of its keys no longer do anything.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yaml");
    std::fs::write(
        &old,
        "clusters:\n  local:\n    bootstrapServers: [\"127.0.0.1:9092\"]\npolicies:\n  default:\n    settleSeconds: 120\n    deadBand: 0.1\n    drainSeconds: 60\n",
    )
    .unwrap();
    let checked = Command::new(LAGRATE)
        .args(["config", "check"])
        .arg(&old)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{stderr}");
    for key in [
        "policies.default.settleSeconds",
        "policies.default.deadBand",
    ] {
        assert!(
            stderr.contains(&format!("{key} no longer has an effect")),
            "{key}: {stderr}"
        );
    }
    assert!(!stderr.contains("drainSeconds"), "{stderr}");
}

/// The JSON Schema published for editors is the one the binary generates.
#[test]
fn published_config_schema_is_the_one_the_binary_generates() {
    let out = Command::new(LAGRATE)
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let published: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/config.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        generated, published,
        "docs/config.schema.json is stale: lagrate config schema > docs/config.schema.json"
    );
    let top: Vec<&String> = generated["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        top,
        [
            "allowInlineBootstrapServers",
            "clusters",
            "kubernetes",
            "limits",
            "policies",
            "prometheus",
            "sampling",
            "shadow"
        ]
    );
}

#[test]
fn serve_help_explains_every_flag() {
    let help = Command::new(LAGRATE)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--grpc-listen",
        "--http-listen",
        "0.0.0.0:9090",
        "0.0.0.0:8080",
        "/debug/decisions",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}:\n{text}");
    }
}

#[test]
fn serve_with_a_missing_config_fails_with_the_path() {
    let out = Command::new(LAGRATE)
        .args([
            "serve",
            "--config",
            "/nonexistent/lagrate.yaml",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lagrate.yaml"));
}

#[test]
fn config_check_accepts_the_readme_minimal_config_and_fails_naming_a_rejected_shadow_entry() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("## A minimal config")
        .nth(1)
        .expect("README has a minimal config section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block in that section");
    let dir = tempfile::tempdir().unwrap();
    let minimal = dir.path().join("minimal.yaml");
    std::fs::write(&minimal, yaml).unwrap();
    let ok = Command::new(LAGRATE)
        .args(["config", "check"])
        .arg(&minimal)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "the README's config: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // A shadow entry serve would reject is named, and fails the check.
    let with_shadow = dir.path().join("shadow.yaml");
    let entry = "shadow:\n  - name: payments\n    consumerGroup: payments\n    keda: { lagThreshold: -5 }\n";
    std::fs::write(&with_shadow, format!("{yaml}{entry}")).unwrap();
    let checked = Command::new(LAGRATE)
        .args(["config", "check"])
        .arg(&with_shadow)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "{stderr}");
    assert!(
        stderr.contains("shadow[0].keda.lagThreshold"),
        "the rejected entry and its field: {stderr}"
    );
}
