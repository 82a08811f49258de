#!/usr/bin/env bash
# Installs the test dependencies, then runs every test: the deployment,
# layering and documentation checks (offline), the workspace's tests against
# real processes (tansu, Prometheus, PostgreSQL, lagrate), the policy crate's
# doctest, and every benchmark at a small size.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# The test runner, cargo-nextest: the machine's, or one installed once into
# the cache when cargo has none.
CACHE="${LAGRATE_CACHE:-$HOME/.cache/lagrate}"
export PATH="$CACHE/cargo-nextest/bin:$PATH"
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest into $CACHE/cargo-nextest (a few minutes, once)"
  cargo install cargo-nextest --locked --root "$CACHE/cargo-nextest"
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Both suites run even when the first fails, so one run reports everything.
status=0
"$CACHE/venv-deploy/bin/python" -m unittest discover -s tests/deployment -v || status=$?
cargo nextest run --workspace --locked --no-fail-fast || status=$?
# The policy crate's README example is a doctest (nextest does not run doctests).
cargo test --doc --locked -p lagrate-policy || status=$?
# Every benchmark once at a small size (a smoke run, unoptimized: the
# figures mean nothing here), so that none can rot unseen.
cargo test --locked -p lagrate --bench getmetrics -- --seconds 1 --keys 2 --clients 2 --interval 1 || status=$?
cargo test --locked -p lagrate --bench sampling_keys -- --max-keys 4 --interval 1 --grow-seconds 2 || status=$?
cargo test --locked -p lagrate --bench sampling_keys -- --max-keys 2 --interval 1 --history 1 || status=$?
cargo test --locked -p lagrate-sim --bench simulate_day -- --hours 1 || status=$?
cargo test --locked -p lagrate-policy --bench window_memory -- --keys 2 || status=$?
cargo test --locked -p lagrate-policy --bench evaluate -- --rounds 1 || status=$?
BENCH_PYTHON="$CACHE/venv-bench/bin/python" cargo test --locked -p trade-consumer --bench throughput -- --messages 2000 || status=$?
cargo test --locked -p trade-producer --bench accuracy -- --seconds 2 || status=$?
cargo test --locked -p trade-model --bench decode -- --rounds 1 || status=$?
exit "$status"
