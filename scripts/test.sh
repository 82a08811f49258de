#!/usr/bin/env bash
# Installs the test dependencies, then runs every test of the workspace
# against real processes (tansu, Prometheus, PostgreSQL, lagrate).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
