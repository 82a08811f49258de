#!/usr/bin/env bash
# Installs the test dependencies, then runs every test: the deployment
# validations (k8s/, infra-tf/, Dockerfile; offline) and the workspace's tests
# against real processes (tansu, Prometheus, PostgreSQL, lagrate).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Both suites run even when the first fails, so one run reports everything.
status=0
"${LAGRATE_CACHE:-$HOME/.cache/lagrate}/venv-deploy/bin/python" -m unittest discover -s tests/deployment -v || status=$?
cargo nextest run --workspace --locked --no-fail-fast || status=$?
# The policy crate's README example is a doctest (nextest does not run doctests).
cargo test --doc --locked -p lagrate-policy || status=$?
exit "$status"
