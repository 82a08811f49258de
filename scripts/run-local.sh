#!/usr/bin/env bash
# The main job: `lagrate demo` on this machine. Installs what it needs
# (idempotently: the tansu broker and Prometheus, cached in ~/.cache/lagrate),
# builds the binaries, then runs a tansu broker, Prometheus, lagrate,
# trade-producer on the reference profile compressed to five minutes and
# trade-consumer processes scaled by lagrate, all on 127.0.0.1. Ctrl-C or
# SIGTERM stops everything it started. Flags go to `lagrate demo`, e.g.
#   bash scripts/run-local.sh --compare          # the same run under KEDA's Kafka trigger too
#   bash scripts/run-local.sh --duration 90s     # the whole profile in 90 s
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo build --release --locked --bins
exec ./target/release/lagrate demo "$@"
