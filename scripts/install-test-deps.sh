#!/usr/bin/env bash
# Installs what lagrate's tests need, idempotently: Debian's prometheus,
# postgresql, curl and kubectl packages, the tansu Kafka broker (built once
# with cargo into a cache directory, then reused), and the deployment
# validators from PyPI (kubernetes-validate, python-hcl2, checkov) in
# virtualenvs under the same cache directory.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${LAGRATE_CACHE:-$HOME/.cache/lagrate}"
TANSU_VERSION="0.6.0"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in prometheus postgresql curl kubectl; do
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
# One virtualenv per requirements file, rebuilt only when the file changes.
python_env() {
  local requirements="$1" venv="$2"
  local stamp="$venv/.requirements"
  if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
    echo "installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv"
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
  fi
}
python_env tests/deployment/requirements.txt "$CACHE/venv-deploy"
python_env tests/deployment/requirements-checkov.txt "$CACHE/venv-checkov"

echo "test dependencies ready: $tansu, $(command -v prometheus)"
