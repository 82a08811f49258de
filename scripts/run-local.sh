#!/usr/bin/env bash
# Runs lagrate against a local tansu broker (SQLite engine) with the example
# config: installs what it needs, starts the broker on 127.0.0.1:9092,
# creates the demo topic `trades` (24 partitions), and serves until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${LAGRATE_CACHE:-$HOME/.cache/lagrate}"
bash scripts/install-test-deps.sh
cargo build --release --locked -p lagrate

data="$(mktemp -d)"
broker_url="tcp://127.0.0.1:9092"
(cd "$data" && exec "$CACHE/tansu/bin/tansu" broker --listener-url "$broker_url" \
  --advertised-listener-url "$broker_url" --storage-engine sqlite://tansu.db) >"$data/tansu.log" 2>&1 &
broker_pid=$!
lagrate_pid=""
# Ctrl-C or SIGTERM stops lagrate and the broker and removes the data.
cleanup() {
  [ -n "$lagrate_pid" ] && kill "$lagrate_pid" 2>/dev/null && wait "$lagrate_pid" 2>/dev/null
  kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break
  sleep 0.1
done
"$CACHE/tansu/bin/tansu" topic create trades --partitions 24 --broker "$broker_url" >/dev/null 2>&1 || true

cat <<MSG
tansu broker on 127.0.0.1:9092 (data in $data), topic trades with 24 partitions.
lagrate: gRPC on 127.0.0.1:9091 (KEDA's scalerAddress), HTTP on 127.0.0.1:8080:
  curl -s 127.0.0.1:8080/debug/decisions   # last decision per ScaledObject
  curl -s 127.0.0.1:8080/metrics
MSG
./target/release/lagrate serve --config examples/config.yaml \
  --grpc-listen 127.0.0.1:9091 --http-listen 127.0.0.1:8080 &
lagrate_pid=$!
wait "$lagrate_pid"
