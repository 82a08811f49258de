"""k8s/components/tls: each overlay with the component turned on renders,
validates against the Kubernetes schema and the KEDA and cert-manager CRDs,
passes checkov, and wires mutual TLS together: lagrate serves the files of a
mounted cert-manager Secret, KEDA's trigger presents the client certificate
of another one from the same CA, and the server certificate names the
address KEDA calls."""

import copy
import os
import pathlib
import re
import subprocess
import tempfile
import unittest

import jsonschema
import yaml

from repo import (
    K8S,
    OVERLAYS,
    ROOT,
    add_components,
    checkov_kubernetes,
    container,
    copy_k8s,
    default,
    find,
    one,
    render,
    rendered,
    rendered_with,
)
from test_kubernetes import CERT_MANAGER_CRDS, CRD_FILE, TRIGGER_AUTHENTICATION_CRD, validate

COMPONENT = "tls"
# The TLS flags of `lagrate serve` and the key of a cert-manager Secret each
# file must be.
FLAGS = {"--tls-cert": "tls.crt", "--tls-key": "tls.key", "--tls-client-ca": "ca.crt"}
# KEDA's external scaler (kedacore/keda pkg/scalers/external_scaler.go,
# externalScalerMetadata: `keda:"name=..., order=authParams"`) and the key of
# a cert-manager Secret each one must come from.
KEDA_AUTH_PARAMS = {"caCert": "ca.crt", "tlsClientCert": "tls.crt", "tlsClientKey": "tls.key"}


def tls(overlay: str) -> tuple:
    return rendered_with(overlay, COMPONENT)


def flag_values(args: list) -> dict:
    """`--flag=value` and `--flag value` arguments, by flag."""
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            out[flag] = value
        elif arg.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[arg] = args[i + 1]
            i += 1
        i += 1
    return out


def issuer(docs, certificate: dict) -> dict:
    ref = certificate["spec"]["issuerRef"]
    kind = ref.get("kind", "Issuer")
    namespace = None if kind == "ClusterIssuer" else certificate["metadata"]["namespace"]
    return one(docs, kind, ref["name"], namespace)


def certificate_for_secret(docs, namespace: str, secret: str) -> dict:
    """The cert-manager Certificate that writes Secret NAMESPACE/SECRET."""
    found = [
        c
        for c in find(docs, "Certificate")
        if c["metadata"]["namespace"] == namespace and c["spec"]["secretName"] == secret
    ]
    assert len(found) == 1, f"expected one Certificate writing Secret {namespace}/{secret}, found {len(found)}"
    return found[0]


class TlsComponent(unittest.TestCase):
    def test_every_overlay_with_tls_validates_against_the_kubernetes_keda_and_cert_manager_schemas(self):
        for overlay in OVERLAYS:
            docs = tls(overlay)
            kinds = [d["kind"] for d in docs]
            self.assertEqual(kinds.count("Certificate"), 3, overlay)  # CA, server, KEDA's client
            for kind in ("Issuer", "ClusterIssuer", "TriggerAuthentication"):
                self.assertEqual(kinds.count(kind), 1, f"{overlay}: {kind}")
            for doc in docs:
                with self.subTest(overlay=overlay, kind=doc["kind"], name=doc["metadata"]["name"]):
                    validate(doc)
                    self.assertNotEqual(doc["metadata"].get("namespace"), "kube-system")

    def test_a_misspelt_certificate_or_trigger_authentication_field_is_rejected(self):
        docs = tls("aws")
        certificate = copy.deepcopy(one(docs, "Certificate", "lagrate-tls", "lagrate"))
        certificate["spec"]["dnsName"] = certificate["spec"].pop("dnsNames")
        with self.assertRaises(jsonschema.ValidationError):
            validate(certificate)
        certificate = copy.deepcopy(one(docs, "Certificate", "lagrate-tls", "lagrate"))
        certificate["spec"]["usages"] = ["server-auth"]  # not one of cert-manager's usages
        with self.assertRaises(jsonschema.ValidationError):
            validate(certificate)
        ca = copy.deepcopy(one(docs, "ClusterIssuer", "lagrate-ca"))
        ca["metadata"]["namespace"] = "lagrate"
        with self.assertRaises(jsonschema.ValidationError):
            validate(ca)
        auth = copy.deepcopy(one(docs, "TriggerAuthentication", "lagrate-tls", "trading"))
        auth["spec"]["secretTargetRef"][0]["secret"] = auth["spec"]["secretTargetRef"][0].pop("name")
        with self.assertRaises(jsonschema.ValidationError):
            validate(auth)

    def test_crds_are_the_versions_they_say(self):
        version = re.search(r"keda-v([0-9.]+)-", TRIGGER_AUTHENTICATION_CRD.name).group(1)
        self.assertEqual(version, default("keda_chart_version"))
        self.assertEqual(version, re.search(r"keda-v([0-9.]+)-", CRD_FILE.name).group(1))
        self.assertIn(f"KEDA v{version}", TRIGGER_AUTHENTICATION_CRD.read_text().splitlines()[0])
        for kind, path in CERT_MANAGER_CRDS.items():
            version = re.search(r"cert-manager-v([0-9.]+)-", path.name).group(1)
            self.assertIn(f"cert-manager {kind} CRD, cert-manager v{version}", path.read_text().splitlines()[0])

    def test_checkov_passes_on_every_overlay_with_tls(self):
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                result = checkov_kubernetes(tls(overlay))
                self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-2000:])
                self.assertRegex(result.stdout, r"Failed checks: 0")

    def test_the_component_patches_lagrate_and_the_scaled_object_and_leaves_the_rest(self):
        for overlay in OVERLAYS:
            plain, docs = rendered(overlay), tls(overlay)
            key = lambda d: (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
            plain_by_key = {key(d): d for d in plain}
            added = {key(d) for d in docs} - set(plain_by_key)
            self.assertEqual(
                {kind for kind, _, _ in added},
                {"Certificate", "Issuer", "ClusterIssuer", "TriggerAuthentication"},
                overlay,
            )
            self.assertLessEqual(set(plain_by_key), {key(d) for d in docs}, overlay)
            for doc in docs:
                if key(doc) in plain_by_key and key(doc) not in {
                    ("Deployment", "lagrate", "lagrate"),
                    ("ScaledObject", "trading", "trade-tx-consumer"),
                }:
                    self.assertEqual(doc, plain_by_key[key(doc)], f"{overlay}: {key(doc)}")
            before, after = container(one(plain, "Deployment", "lagrate")), container(one(docs, "Deployment", "lagrate"))
            # The base's args kept, in order, the TLS flags appended.
            self.assertEqual(after["args"][: len(before["args"])], before["args"], overlay)
            self.assertEqual(set(flag_values(after["args"][len(before["args"]):])), set(FLAGS), overlay)
            # HTTP (probes, /metrics) stays plaintext and probed as before.
            for probe in ("livenessProbe", "readinessProbe"):
                self.assertEqual(after[probe], before[probe], f"{overlay}: {probe}")
                self.assertEqual(after[probe]["httpGet"].get("scheme", "HTTP"), "HTTP")
            self.assertEqual(after["ports"], before["ports"], overlay)
            self.assertEqual(after["volumeMounts"][: len(before["volumeMounts"])], before["volumeMounts"], overlay)

    def test_the_scaled_object_alone_waits_for_the_second_stage(self):
        """`kubectl apply -k OVERLAY -l 'lagrate.io/tls-stage!=keda'` applies
        everything but the ScaledObject that would call lagrate over TLS."""
        for overlay in OVERLAYS:
            staged = [
                (d["kind"], d["metadata"]["name"])
                for d in tls(overlay)
                if d["metadata"].get("labels", {}).get("lagrate.io/tls-stage") == "keda"
            ]
            self.assertEqual(staged, [("ScaledObject", "trade-tx-consumer")], overlay)
            scaled = one(tls(overlay), "ScaledObject", "trade-tx-consumer")
            self.assertEqual(scaled["spec"]["triggers"][0]["metadata"]["enableTLS"], "true")

    def test_lagrate_serves_the_files_of_the_mounted_server_certificate_secret(self):
        for overlay in OVERLAYS:
            docs = tls(overlay)
            deployment = one(docs, "Deployment", "lagrate")
            namespace = deployment["metadata"]["namespace"]
            pod = deployment["spec"]["template"]["spec"]
            c = container(deployment)
            flags = flag_values(c["args"])
            volumes = {v["name"]: v for v in pod["volumes"]}
            secrets = set()
            for flag, key in FLAGS.items():
                with self.subTest(overlay=overlay, flag=flag):
                    path = pathlib.PurePosixPath(flags[flag])
                    self.assertTrue(path.is_absolute(), path)
                    self.assertEqual(path.name, key)
                    (mount,) = [m for m in c["volumeMounts"] if pathlib.PurePosixPath(m["mountPath"]) == path.parent]
                    # A subPath mount never sees a renewed Secret.
                    self.assertNotIn("subPath", mount)
                    self.assertTrue(mount.get("readOnly"))
                    secret = volumes[mount["name"]]["secret"]
                    if "items" in secret:
                        self.assertIn(key, [i["path"] for i in secret["items"] if i["key"] == i["path"]])
                    self.assertFalse(secret.get("optional", False))
                    secrets.add(secret["secretName"])
                    # Readable by lagrate (the file's group is the pod's
                    # fsGroup), not by others.
                    mode = secret.get("defaultMode", 0o644)
                    self.assertEqual(mode & 0o007, 0, oct(mode))
                    self.assertTrue(mode & 0o040, oct(mode))
                    self.assertEqual(pod["securityContext"]["fsGroup"], pod["securityContext"]["runAsGroup"])
            self.assertEqual(len(secrets), 1, f"{overlay}: one Secret holds the three files")
            certificate = certificate_for_secret(docs, namespace, secrets.pop())
            self.assertIn("server auth", certificate["spec"]["usages"])
            # cert-manager writes ca.crt for a CA issuer: the CA that signed
            # the certificate, which lagrate requires of its clients.
            self.assertIn("ca", issuer(docs, certificate)["spec"])

    def test_server_certificate_names_the_address_keda_calls(self):
        for overlay in OVERLAYS:
            docs = tls(overlay)
            address = one(docs, "ScaledObject", "trade-tx-consumer")["spec"]["triggers"][0]["metadata"]["scalerAddress"]
            host, _ = address.rsplit(":", 1)
            deployment = one(docs, "Deployment", "lagrate")
            directory = str(pathlib.PurePosixPath(flag_values(container(deployment)["args"])["--tls-cert"]).parent)
            mount = next(m for m in container(deployment)["volumeMounts"] if m["mountPath"] == directory)
            volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
            certificate = certificate_for_secret(docs, deployment["metadata"]["namespace"], volume["secret"]["secretName"])
            self.assertIn(host, certificate["spec"]["dnsNames"], overlay)
            # ...and every other name of the Service within the cluster.
            name, namespace = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", host).groups()
            one(docs, "Service", name, namespace)
            self.assertLessEqual(
                {f"{name}.{namespace}.svc", f"{name}.{namespace}"}, set(certificate["spec"]["dnsNames"]), overlay
            )

    def test_keda_calls_with_tls_and_the_client_certificate_of_the_same_ca(self):
        for overlay in OVERLAYS:
            docs = tls(overlay)
            scaled = one(docs, "ScaledObject", "trade-tx-consumer")
            namespace = scaled["metadata"]["namespace"]
            trigger = scaled["spec"]["triggers"][0]
            self.assertEqual(trigger["metadata"]["enableTLS"], "true", overlay)
            self.assertNotIn("unsafeSsl", trigger["metadata"])
            ref = trigger["authenticationRef"]
            self.assertEqual(ref.get("kind", "TriggerAuthentication"), "TriggerAuthentication")
            # A TriggerAuthentication and the Secrets it reads are in the
            # ScaledObject's namespace.
            auth = one(docs, "TriggerAuthentication", ref["name"], namespace)
            refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
            self.assertEqual({p: r["key"] for p, r in refs.items()}, KEDA_AUTH_PARAMS, overlay)
            (secret,) = {r["name"] for r in refs.values()}
            client = certificate_for_secret(docs, namespace, secret)
            self.assertIn("client auth", client["spec"]["usages"])
            self.assertNotIn("server auth", client["spec"]["usages"])
            deployment = one(docs, "Deployment", "lagrate")
            server_secret = next(
                v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v
            )
            server = certificate_for_secret(docs, deployment["metadata"]["namespace"], server_secret)
            # One CA: its ca.crt verifies lagrate for KEDA and KEDA for lagrate.
            self.assertEqual(issuer(docs, client), issuer(docs, server), overlay)

    def test_the_ca_is_bootstrapped_by_a_self_signed_issuer_in_cert_managers_namespace(self):
        docs = tls("aws")
        ca_issuer = one(docs, "ClusterIssuer", "lagrate-ca")
        # A ClusterIssuer's CA Secret is read from cert-manager's cluster
        # resource namespace (its own, cert-manager, by default).
        ca = certificate_for_secret(docs, "cert-manager", ca_issuer["spec"]["ca"]["secretName"])
        self.assertTrue(ca["spec"]["isCA"])
        self.assertEqual(issuer(docs, ca)["spec"], {"selfSigned": {}})
        for certificate in find(docs, "Certificate"):
            if certificate is not ca:
                self.assertEqual(issuer(docs, certificate), ca_issuer, certificate["metadata"]["name"])
                self.assertFalse(certificate["spec"].get("isCA", False))
                self.assertEqual(certificate["spec"]["privateKey"]["rotationPolicy"], "Always")

    def test_configure_aws_overlay_keeps_the_component(self):
        with tempfile.TemporaryDirectory() as tmp:
            overlay = copy_k8s(tmp) / "overlays" / "aws"
            add_components(overlay, COMPONENT)
            values = {
                "MSK_BOOTSTRAP_BROKERS": "b-1.prod.x9.c3.kafka.eu-west-1.amazonaws.com:9098",
                "MSK_REGION": "eu-west-1",
                "ECR_REGISTRY": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/prod",
                "KAFKA_TOPIC": "trade-tx-v2",
                "TOPIC_PARTITIONS": "24",
                "CONSUMER_GROUP": "trade-tx-consumer",
            }
            result = subprocess.run(
                ["bash", str(ROOT / "scripts" / "configure-aws-overlay.sh"), "1.2.3"],
                env={**os.environ, **values, "OVERLAY_DIR": str(overlay)},
                capture_output=True,
                text=True,
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            docs = render(overlay)
            deployment = one(docs, "Deployment", "lagrate")
            self.assertEqual(container(deployment)["image"], values["ECR_REGISTRY"] + "/lagrate:1.2.3")
            self.assertLessEqual(set(FLAGS), set(flag_values(container(deployment)["args"])))
            self.assertEqual(len(find(docs, "TriggerAuthentication")), 1)


if __name__ == "__main__":
    unittest.main()
