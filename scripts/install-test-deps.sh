#!/usr/bin/env bash
# Installs what lagrate's tests need, idempotently: Debian's prometheus,
# postgresql and curl packages, and the tansu Kafka broker (built once with
# cargo into a cache directory, then reused).
set -euo pipefail

CACHE="${LAGRATE_CACHE:-$HOME/.cache/lagrate}"
TANSU_VERSION="0.6.0"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in prometheus postgresql curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tansu="$CACHE/tansu/bin/tansu"
if ! [ -x "$tansu" ] || ! "$tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "building tansu $TANSU_VERSION into $CACHE/tansu (about 10 minutes, once)"
  mkdir -p "$CACHE"
  cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$CACHE/tansu"
fi
echo "test dependencies ready: $tansu, $(command -v prometheus)"
