"""What the deployment tests read: the rendered kustomize overlays, the
Terraform files parsed with python-hcl2, and the Dockerfile."""

import functools
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import hcl2
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
INFRA = ROOT / "infra-tf"
OVERLAYS = ("aws", "local")
KUBERNETES_VERSION = "1.35.0"
# Installed by scripts/install-test-deps.sh: checkov in a virtualenv of its
# own, kubectl 1.35 (kustomize v5).
CACHE = pathlib.Path(os.environ.get("LAGRATE_CACHE", pathlib.Path.home() / ".cache" / "lagrate"))
CHECKOV = CACHE / "venv-checkov" / "bin" / "checkov"
KUBECTL = CACHE / "kubectl" / "kubectl"


def checkov(*args: str) -> subprocess.CompletedProcess:
    """Runs checkov offline (no download of guidelines) and returns its run."""
    return subprocess.run(
        [str(CHECKOV), *args, "--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
    )


def checkov_kubernetes(docs) -> subprocess.CompletedProcess:
    """checkov's Kubernetes checks on rendered documents."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "rendered.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return checkov("-f", str(path), "--framework", "kubernetes")


def render(path: pathlib.Path) -> tuple:
    """The documents `kubectl kustomize` renders for a kustomization folder."""
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@functools.cache
def rendered(overlay: str) -> tuple:
    """`render` of one of k8s/'s overlays (or "base"), once per run."""
    return render(K8S / "base" if overlay == "base" else K8S / "overlays" / overlay)


def copy_k8s(tmp) -> pathlib.Path:
    """k8s/'s base, components and overlays copied to TMP/k8s (not crds/)."""
    k8s = pathlib.Path(tmp) / "k8s"
    for part in ("base", "components", "overlays"):
        shutil.copytree(K8S / part, k8s / part)
    return k8s


def add_components(overlay: pathlib.Path, *components: str) -> None:
    """Turns components on in an overlay the way docs/operations.md says: a
    `components:` list of ../../components/NAME in its kustomization.yaml."""
    path = overlay / "kustomization.yaml"
    text = path.read_text()
    assert not re.search(r"^components:", text, re.M), f"{path} already lists components"
    path.write_text(text + "\ncomponents:\n" + "".join(f"  - ../../components/{c}\n" for c in components))


@functools.cache
def rendered_with(overlay: str, *components: str) -> tuple:
    """`render` of one of k8s/'s overlays with components of k8s/components/
    turned on (in a copy; the checked-in overlay is left as it is)."""
    with tempfile.TemporaryDirectory() as tmp:
        k8s = copy_k8s(tmp)
        add_components(k8s / "overlays" / overlay, *components)
        return render(k8s / "overlays" / overlay)


def find(docs, kind: str, name: str | None = None) -> list:
    return [
        d
        for d in docs
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs, kind: str, name: str, namespace: str | None = None) -> dict:
    found = [
        d
        for d in find(docs, kind, name)
        if namespace is None or d["metadata"].get("namespace") == namespace
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def unquote(value):
    """python-hcl2 keeps the quotes of string literals: "\\"x\\"" -> "x"."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def strip_quotes(value):
    """`unquote` applied through nested lists and dicts (keys too)."""
    if isinstance(value, dict):
        return {unquote(k): strip_quotes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_quotes(v) for v in value]
    return unquote(value)


@functools.cache
def terraform(name: str) -> dict:
    """One .tf file of infra-tf/, parsed, quotes stripped."""
    with open(INFRA / name) as f:
        return strip_quotes(hcl2.load(f))


def tf_files() -> list:
    return sorted(p.name for p in INFRA.glob("*.tf"))


def blocks(kind: str, type_: str) -> dict:
    """Every `kind "type_" "name" {}` block across infra-tf/, by name."""
    out = {}
    for name in tf_files():
        for entry in terraform(name).get(kind, []):
            for name_, body in entry.get(type_, {}).items():
                out[name_] = body
    return out


@functools.cache
def tf_locals() -> dict:
    """Every `locals {}` value across infra-tf/, by name."""
    out = {}
    for name in tf_files():
        for entry in terraform(name).get("locals", []):
            out.update({k: v for k, v in entry.items() if not k.startswith("__")})
    return out


def expression(text: str):
    """One HCL expression, parsed the way python-hcl2 parses an attribute."""
    return strip_quotes(hcl2.loads(f"x = {text}\n"))["x"]


def arguments(text: str) -> list | None:
    """The top-level arguments of `f(...)` given the text after `f(`, or None
    when the call's closing parenthesis is not the text's last character."""
    args, depth, start, quoted = [], 0, 0, False
    for i, c in enumerate(text):
        if quoted:
            quoted = c != '"' or text[i - 1] == "\\"
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in "}])":
            if depth == 0:
                return args + [text[start:i].strip()] if c == ")" and i == len(text) - 1 else None
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    return None


def evaluate(value):
    """A value python-hcl2 left as expression text ("${...}"), read as far as
    the tests need: object and list literals, local.NAME, yamlencode(x) and
    merge() of objects. Anything else stays as its text."""
    if isinstance(value, dict):
        return {k: evaluate(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [evaluate(v) for v in value]
    if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return value
    inner = value[2:-1]
    if local := re.fullmatch(r"local\.(\w+)", inner):
        return evaluate(tf_locals()[local.group(1)])
    if inner[:1] in "{[":
        parsed = expression(inner)  # a `for` expression stays text
        return value if isinstance(parsed, str) else evaluate(parsed)
    call = re.match(r"(yamlencode|merge)\(", inner)
    args = call and arguments(inner[call.end():])
    if args:
        args = [evaluate(expression(a)) for a in args]
        if call.group(1) == "yamlencode" and len(args) == 1:
            return args[0]
        if call.group(1) == "merge" and all(isinstance(a, dict) for a in args):
            return functools.reduce(lambda a, b: a | b, args, {})
    return value


def helm_values(release: str) -> dict:
    """The chart values a helm_release of infra-tf/ passes (its one
    yamlencode()d document), `evaluate`d."""
    (values,) = blocks("resource", "helm_release")[release]["values"]
    return evaluate(values)


def variables() -> dict:
    out = {}
    for entry in terraform("variables.tf")["variable"]:
        out.update({k: v for k, v in entry.items() if not k.startswith("__")})
    return out


def default(variable: str):
    return variables()[variable]["default"]


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment: dict) -> dict:
    return {e["name"]: e.get("value") for e in container(deployment).get("env", [])}


def env_from_config_maps(docs, deployment: dict) -> dict:
    """The variables a Deployment's container gets from its envFrom ConfigMaps."""
    namespace = deployment["metadata"]["namespace"]
    out = {}
    for source in container(deployment).get("envFrom", []):
        name = source["configMapRef"]["name"]
        maps = [
            d
            for d in find(docs, "ConfigMap", name)
            if d["metadata"]["namespace"] == namespace
        ]
        assert maps, f"{deployment['metadata']['name']} reads ConfigMap {name}, which is not rendered"
        out.update(maps[0]["data"])
    return out


def ecr_images() -> set:
    """The image names infra-tf/ecr.tf makes repositories for."""
    expression = terraform("ecr.tf")["locals"][0]["images"]  # ${toset([...])}
    return set(re.findall(r'"([a-z0-9-]+)"', expression))
