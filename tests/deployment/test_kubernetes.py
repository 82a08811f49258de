"""k8s/: every overlay renders, validates against the Kubernetes schema and
KEDA's CRD, and wires together (KEDA reaches lagrate, Prometheus finds every
metrics port, Pod Identity finds every service account)."""

import copy
import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import unittest

import jsonschema
import kubernetes_validate
import yaml

from repo import (
    K8S,
    ROOT,
    KUBERNETES_VERSION,
    OVERLAYS,
    blocks,
    checkov_kubernetes,
    container,
    default,
    ecr_images,
    env,
    env_from_config_maps,
    find,
    helm_values,
    one,
    render,
    rendered,
    terraform,
)

CRD_FILE = K8S / "crds" / "keda-v2.20.2-scaledobjects.yaml"
TRIGGER_AUTHENTICATION_CRD = K8S / "crds" / "keda-v2.20.2-triggerauthentications.yaml"
SERVICE_MONITOR_CRD = K8S / "crds" / "prometheus-operator-v0.86.2-servicemonitors.yaml"
CERT_MANAGER_CRDS = {
    kind: K8S / "crds" / f"cert-manager-v1.21.1-{kind.lower()}s.yaml"
    for kind in ("Certificate", "Issuer", "ClusterIssuer")
}


def strict(schema):
    """A CRD schema that rejects unknown fields: the API server would silently
    prune them, so a misspelt field would be lost without a word."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def crd(path):
    return next(d for d in yaml.safe_load_all(path.read_text()) if d)


@functools.cache
def crd_schema(path, version):
    served = next(v for v in crd(path)["spec"]["versions"] if v["name"] == version)
    return strict(served["schema"]["openAPIV3Schema"])


# Kinds the Kubernetes schema does not know, and the CRD that defines each.
CRDS = {
    "ScaledObject": (CRD_FILE, "v1alpha1"),
    "TriggerAuthentication": (TRIGGER_AUTHENTICATION_CRD, "v1alpha1"),
    "ServiceMonitor": (SERVICE_MONITOR_CRD, "v1"),
    **{kind: (path, "v1") for kind, path in CERT_MANAGER_CRDS.items()},
}


def validate(doc):
    if doc["kind"] in CRDS:
        path, version = CRDS[doc["kind"]]
        definition = crd(path)["spec"]
        if doc["apiVersion"] != f"{definition['group']}/{version}" or doc["kind"] != definition["names"]["kind"]:
            raise jsonschema.ValidationError(f"{doc['apiVersion']} {doc['kind']} is not what {path.name} defines")
        if definition["scope"] == "Namespaced" and not doc["metadata"].get("namespace"):
            raise jsonschema.ValidationError(f"{doc['kind']} {doc['metadata']['name']} has no namespace")
        if definition["scope"] == "Cluster" and "namespace" in doc["metadata"]:
            raise jsonschema.ValidationError(f"{doc['kind']} {doc['metadata']['name']} is cluster-scoped")
        jsonschema.validate(doc, crd_schema(path, version))
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


class Overlays(unittest.TestCase):
    def test_every_overlay_validates_against_the_kubernetes_and_keda_schemas(self):
        for overlay in ("base",) + OVERLAYS:
            for doc in rendered(overlay):
                with self.subTest(overlay=overlay, kind=doc["kind"], name=doc["metadata"]["name"]):
                    validate(doc)

    def test_checkov_passes_on_every_overlay_and_every_skip_says_why(self):
        for overlay in OVERLAYS:
            with self.subTest(overlay=overlay):
                result = checkov_kubernetes(rendered(overlay))
                self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-2000:])
                self.assertRegex(result.stdout, r"Failed checks: 0")
                for doc in rendered(overlay):
                    for key, value in doc["metadata"].get("annotations", {}).items():
                        if key.startswith("checkov.io/skip"):
                            self.assertRegex(value, r"^CKV\w*_\d+=\S.{15,}", f"{doc['metadata']['name']}: {value}")

    def test_no_overlay_holds_a_kube_system_object(self):
        # `kubectl delete -k` deletes whatever an overlay renders: a
        # cluster-wide setting in kube-system (Auto Mode's network policy
        # switch) would go with the app. infra-tf/ owns those.
        for overlay in ("base",) + OVERLAYS:
            for doc in rendered(overlay):
                with self.subTest(overlay=overlay, kind=doc["kind"], name=doc["metadata"]["name"]):
                    self.assertNotEqual(doc["metadata"].get("namespace"), "kube-system")
                    self.assertNotEqual((doc["kind"], doc["metadata"]["name"]), ("Namespace", "kube-system"))

    def test_a_misspelt_scaled_object_field_is_rejected(self):
        scaled = copy.deepcopy(one(rendered("aws"), "ScaledObject", "trade-tx-consumer"))
        scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
        with self.assertRaises(jsonschema.ValidationError):
            validate(scaled)
        scaled = copy.deepcopy(one(rendered("aws"), "ScaledObject", "trade-tx-consumer"))
        scaled["spec"]["fallback"]["replicas"] = "six"
        with self.assertRaises(jsonschema.ValidationError):
            validate(scaled)

    def test_a_misspelt_service_monitor_field_is_rejected(self):
        monitor = copy.deepcopy(one(rendered("aws"), "ServiceMonitor", "lagrate"))
        monitor["spec"]["endpoints"][0]["intervall"] = "15s"
        with self.assertRaises(jsonschema.ValidationError):
            validate(monitor)

    def test_service_monitor_crd_is_the_one_kube_prometheus_stack_bundles(self):
        header = SERVICE_MONITOR_CRD.read_text().splitlines()[:3]
        self.assertIn(f"kube-prometheus-stack {default('kube_prometheus_stack_chart_version')}", " ".join(header))

    def test_a_misspelt_deployment_field_is_rejected(self):
        deployment = copy.deepcopy(one(rendered("aws"), "Deployment", "lagrate"))
        deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
        with self.assertRaises(kubernetes_validate.ValidationError):
            validate(deployment)

    def test_crd_version_is_the_keda_chart_version(self):
        version = re.search(r"keda-v([0-9.]+)-", CRD_FILE.name).group(1)
        self.assertEqual(version, default("keda_chart_version"))
        self.assertIn(f"KEDA v{version}", CRD_FILE.read_text().splitlines()[0])


class Wiring(unittest.TestCase):
    def test_keda_reaches_lagrate_grpc_port(self):
        for overlay in OVERLAYS:
            docs = rendered(overlay)
            scaled = one(docs, "ScaledObject", "trade-tx-consumer")
            address = scaled["spec"]["triggers"][0]["metadata"]["scalerAddress"]
            host, port = address.rsplit(":", 1)
            name, namespace = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", host).groups()
            service = next(
                s for s in find(docs, "Service", name) if s["metadata"]["namespace"] == namespace
            )
            service_port = next(p for p in service["spec"]["ports"] if p["port"] == int(port))
            deployment = one(docs, "Deployment", "lagrate")
            ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
            self.assertEqual(ports[service_port["targetPort"]], 9090, overlay)
            self.assertIn("--grpc-listen=0.0.0.0:9090", container(deployment)["args"])
            self.assertEqual(
                service["spec"]["selector"],
                deployment["spec"]["template"]["metadata"]["labels"] | service["spec"]["selector"],
            )

    def test_only_keda_may_call_grpc_and_only_prometheus_may_scrape(self):
        docs = rendered("aws")
        policy = one(docs, "NetworkPolicy", "lagrate")
        self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
        allowed = {}
        for rule in policy["spec"]["ingress"]:
            namespaces = [
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for peer in rule["from"]
            ]
            for port in rule["ports"]:
                allowed.setdefault(port["port"], []).extend(namespaces)
        helm = blocks("resource", "helm_release")
        self.assertEqual(allowed, {9090: [helm["keda"]["namespace"]], 8080: [helm["kube_prometheus_stack"]["namespace"]]})
        # Numbered, and the numbers are the container's gRPC and HTTP ports.
        ports = {p["name"]: p["containerPort"] for p in container(one(docs, "Deployment", "lagrate"))["ports"]}
        self.assertEqual((ports["grpc"], ports["http"]), (9090, 8080))
        # Every peer is a namespace selector: no ipBlock, no pod selector in
        # another namespace that would widen the rule.
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                self.assertEqual(set(peer), {"namespaceSelector"})
        # ...and EKS Auto Mode is told to enforce it, by infra-tf/ with the
        # cluster (the switch holds for every workload of the cluster).
        switch = blocks("resource", "kubernetes_config_map_v1")["network_policy_controller"]
        metadata = switch["metadata"][0]
        self.assertEqual((metadata["namespace"], metadata["name"]), ("kube-system", "amazon-vpc-cni"))
        self.assertEqual(switch["data"], {"enable-network-policy-controller": "true"})
        self.assertIn("${module.eks}", switch["depends_on"])

    def test_every_network_policy_names_ports_by_number_the_pods_listen_on(self):
        for overlay in OVERLAYS:
            docs = rendered(overlay)
            for policy in find(docs, "NetworkPolicy"):
                selector = policy["spec"]["podSelector"]["matchLabels"]
                listening = {
                    p["containerPort"]
                    for d in find(docs, "Deployment")
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                    for p in container(d).get("ports", [])
                }
                for rule in policy["spec"].get("ingress", []):
                    for port in rule.get("ports", []):
                        with self.subTest(overlay=overlay, policy=policy["metadata"]["name"], port=port["port"]):
                            self.assertIsInstance(port["port"], int)
                            self.assertIn(port["port"], listening)

    def test_the_configured_limits_fit_lagrates_memory_limit(self):
        # Measured (k8s/overlays/*/lagrate-config.yaml says how): the start,
        # a source key of 24 partitions at a full window, a trigger entry.
        start_mb, per_key_mb, per_entry_mb = 15.0, 0.036, 0.003
        for overlay in OVERLAYS:
            docs = rendered(overlay)
            limit = container(one(docs, "Deployment", "lagrate"))["resources"]["limits"]["memory"]
            self.assertTrue(limit.endswith("Mi"), limit)
            config = yaml.safe_load(one(docs, "ConfigMap", "lagrate-config")["data"]["config.yaml"])
            limits = config.get("limits", {})
            with self.subTest(overlay=overlay):
                # Left out, the built-in defaults (1,000 keys, 5,000 entries) apply.
                keys, entries = limits.get("maxSourceKeys", 1000), limits.get("maxEntries", 5000)
                needed_mb = start_mb + keys * per_key_mb + entries * per_entry_mb
                self.assertLessEqual(needed_mb, int(limit[:-2]) * 1.048576, (keys, entries, limit))

    def test_lagrate_runs_two_hardened_replicas_probed_on_healthz_and_readyz(self):
        docs = rendered("aws")
        deployment = one(docs, "Deployment", "lagrate")
        self.assertEqual(deployment["spec"]["replicas"], 2)
        c = container(deployment)
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        mount = c["volumeMounts"][0]
        self.assertNotIn("subPath", mount, "a subPath mount never sees ConfigMap updates")
        self.assertTrue(c["args"][1].startswith(f"--config={mount['mountPath']}/"))
        pdb = one(docs, "PodDisruptionBudget", "lagrate")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"])

    def test_every_pod_is_non_root_read_only_and_bounded(self):
        for overlay in OVERLAYS:
            for deployment in find(rendered(overlay), "Deployment"):
                with self.subTest(overlay=overlay, deployment=deployment["metadata"]["name"]):
                    pod = deployment["spec"]["template"]["spec"]
                    self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                    self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
                    for c in pod["containers"]:
                        sc = c["securityContext"]
                        self.assertTrue(sc["readOnlyRootFilesystem"])
                        self.assertFalse(sc["allowPrivilegeEscalation"])
                        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                        self.assertIn("memory", c["resources"]["limits"])
                        self.assertIn("cpu", c["resources"]["requests"])

    def test_service_monitors_find_metrics_ports(self):
        docs = rendered("aws")
        monitors = find(docs, "ServiceMonitor")
        self.assertEqual(
            {m["metadata"]["name"] for m in monitors},
            {"lagrate", "trade-tx-consumer", "trade-tx-producer"},
        )
        for monitor in monitors:
            namespace = monitor["metadata"]["namespace"]
            selector = monitor["spec"]["selector"]["matchLabels"]
            services = [
                s
                for s in find(docs, "Service")
                if s["metadata"]["namespace"] == namespace
                and selector.items() <= s["metadata"].get("labels", {}).items()
            ]
            self.assertEqual(len(services), 1, monitor["metadata"]["name"])
            service = services[0]
            for endpoint in monitor["spec"]["endpoints"]:
                port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
                pods = [
                    d
                    for d in find(docs, "Deployment")
                    if d["metadata"]["namespace"] == namespace
                    and service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
                ]
                self.assertEqual(len(pods), 1)
                names = {p["name"] for p in container(pods[0])["ports"]}
                self.assertIn(port["targetPort"], names)

    def test_pod_identity_binds_the_service_accounts_the_pods_use(self):
        docs = rendered("aws")
        workloads = terraform("iam.tf")["locals"][0]["workloads"]
        namespace_var = {
            "${var.lagrate_namespace}": default("lagrate_namespace"),
            "${var.app_namespace}": default("app_namespace"),
        }
        bound = {(namespace_var[w["namespace"]], w["service_account"]) for w in workloads.values()}
        used = {
            (d["metadata"]["namespace"], d["spec"]["template"]["spec"]["serviceAccountName"])
            for d in find(docs, "Deployment")
        }
        self.assertEqual(bound, used)
        for namespace, account in used:
            self.assertTrue(
                [a for a in find(docs, "ServiceAccount", account) if a["metadata"]["namespace"] == namespace]
            )

    def test_grafana_loads_the_dashboard(self):
        docs = rendered("aws")
        dashboard = one(docs, "ConfigMap", "lagrate-dashboard")
        sidecar = blocks("resource", "helm_release")["kube_prometheus_stack"]
        addons = (K8S.parent / "infra-tf" / "addons.tf").read_text()
        self.assertRegex(addons, r'label\s*=\s*"grafana_dashboard"')
        self.assertRegex(addons, r'labelValue\s*=\s*"1"')
        self.assertEqual(dashboard["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(dashboard["metadata"]["namespace"], sidecar["namespace"])
        model = json.loads(dashboard["data"]["lagrate.json"])
        self.assertEqual(model["uid"], "lagrate-msk-keda")
        self.assertGreaterEqual(len(model["panels"]), 7)
        # Every $variable a query uses is defined (or one of Grafana's own).
        defined = {v["name"] for v in model["templating"]["list"]}
        for panel in model["panels"]:
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
            for target in panel["targets"]:
                for name in re.findall(r"\$(\w+)", target["expr"]):
                    self.assertTrue(name in defined or name.startswith("__"), f"{panel['title']}: ${name}")
        # Panels do not overlap on the grid.
        cells = set()
        for panel in model["panels"]:
            g = panel["gridPos"]
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            self.assertFalse(cells & area, panel["title"])
            self.assertLessEqual(g["x"] + g["w"], 24, panel["title"])
            cells |= area

    def test_dashboard_reads_msk_lag_of_the_scaled_group_only(self):
        # MSK reports SumOffsetLag per group and topic: a selector without
        # the group adds up every group that reads the topic.
        docs = rendered("aws")
        model = json.loads(one(docs, "ConfigMap", "lagrate-dashboard")["data"]["lagrate.json"])
        defaults = {v["name"]: v["current"]["value"] for v in model["templating"]["list"]}
        metadata = one(docs, "ScaledObject", "trade-tx-consumer")["spec"]["triggers"][0]["metadata"]
        queries = [
            (panel["title"], target["expr"])
            for panel in model["panels"]
            for target in panel["targets"]
            if "kafka_consumer_group_ConsumerLagMetrics_Value" in target["expr"]
        ]
        self.assertTrue(queries)
        for title, expr in queries:
            for selector in re.findall(r"kafka_consumer_group_ConsumerLagMetrics_Value(\{[^}]*\})?", expr):
                with self.subTest(panel=title, expr=expr):
                    labels = dict(re.findall(r'(\w+)="([^"]*)"', selector))
                    value = {k: re.sub(r"\$(\w+)", lambda m: defaults[m.group(1)], v) for k, v in labels.items()}
                    self.assertEqual(value.get("groupId"), metadata["consumerGroup"])
                    self.assertEqual(value.get("topic"), metadata["topic"])


class ScaledConsumer(unittest.TestCase):
    def setUp(self):
        self.docs = rendered("aws")
        self.scaled = one(self.docs, "ScaledObject", "trade-tx-consumer")
        self.consumer = one(self.docs, "Deployment", "trade-tx-consumer")
        self.producer = one(self.docs, "Deployment", "trade-tx-producer")

    def test_hpa_behaviour_passes_lagrate_answer_through(self):
        spec = self.scaled["spec"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        for direction in ("scaleUp", "scaleDown"):
            self.assertEqual(behavior[direction]["stabilizationWindowSeconds"], 0, direction)
            self.assertIn({"type": "Percent", "value": 1000 if direction == "scaleUp" else 100, "periodSeconds": 15}, behavior[direction]["policies"])
        self.assertEqual(spec["minReplicaCount"], 0)
        self.assertGreaterEqual(spec["fallback"]["replicas"], 1)
        self.assertEqual(spec["scaleTargetRef"]["name"], self.consumer["metadata"]["name"])
        trigger = spec["triggers"][0]
        self.assertEqual(trigger["type"], "external")
        self.assertIn("# type: external-push", (K8S / "base" / "trading" / "consumer-scaledobject.yaml").read_text())

    def test_hpa_tolerance_is_zero_both_ways_in_every_overlay(self):
        # lagrate's dead band replaces the HPA's 10 % tolerance both ways, as
        # `lagrate simulate` models it.
        for overlay in OVERLAYS:
            for scaled in find(rendered(overlay), "ScaledObject"):
                behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
                for direction in ("scaleUp", "scaleDown"):
                    with self.subTest(overlay=overlay, scaled_object=scaled["metadata"]["name"], direction=direction):
                        self.assertEqual(behavior[direction]["tolerance"], "0")

    def test_replicas_topic_and_group_agree_across_scaler_workload_and_terraform(self):
        metadata = self.scaled["spec"]["triggers"][0]["metadata"]
        partitions = int(env(self.producer)["TOPIC_PARTITIONS"])
        self.assertEqual(partitions, default("topic_partitions"))
        self.assertEqual(self.scaled["spec"]["maxReplicaCount"], partitions)
        connection = env_from_config_maps(self.docs, self.consumer)
        self.assertEqual(metadata["topic"], connection["KAFKA_TOPIC"])
        self.assertEqual(metadata["topic"], default("topic"))
        self.assertEqual(metadata["consumerGroup"], env(self.consumer)["CONSUMER_GROUP"])
        self.assertEqual(metadata["consumerGroup"], default("consumer_group"))
        self.assertEqual(env_from_config_maps(self.docs, self.producer)["KAFKA_TOPIC"], metadata["topic"])

    def test_grace_period_covers_a_batch_per_partition(self):
        # On SIGTERM one pod may hold every partition and writes each pending
        # batch in turn before it commits and leaves.
        e = env(self.consumer)
        partitions = int(env(self.producer)["TOPIC_PARTITIONS"])
        needed = partitions * float(e["BATCH_PROCESSING_TIME"]) + float(e["BATCH_TIMEOUT_SECONDS"])
        grace = self.consumer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        self.assertGreater(grace, needed)

    def test_lagrate_may_read_the_scale_of_the_workload_it_scales_and_nothing_else(self):
        # scaleTarget names the ScaledObject's own target; lagrate's service
        # account may get that Deployment's scale subresource, no more, and
        # its pod mounts the token where lagrate looks for it.
        target = self.scaled["spec"]["scaleTargetRef"]["name"]
        namespace = self.scaled["metadata"]["namespace"]
        self.assertEqual(self.scaled["spec"]["triggers"][0]["metadata"]["scaleTarget"], f"deployment/{target}")
        binding = one(self.docs, "RoleBinding", "lagrate-scale-reader")
        self.assertEqual(binding["metadata"]["namespace"], namespace)
        lagrate = one(self.docs, "Deployment", "lagrate")
        account = lagrate["spec"]["template"]["spec"]["serviceAccountName"]
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": account, "namespace": lagrate["metadata"]["namespace"]}])
        role = one(self.docs, "Role", binding["roleRef"]["name"])
        self.assertEqual(role["metadata"]["namespace"], namespace)
        self.assertEqual(role["rules"], [{"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": [target], "verbs": ["get"]}])
        bindings = [d for d in find(self.docs, "RoleBinding") + find(self.docs, "ClusterRoleBinding") if any(s.get("name") == account for s in d.get("subjects", []))]
        self.assertEqual([b["metadata"]["name"] for b in bindings], ["lagrate-scale-reader"])
        pod = lagrate["spec"]["template"]["spec"]
        self.assertFalse(pod["automountServiceAccountToken"])
        mount = next(m for m in container(lagrate)["volumeMounts"] if m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
        sources = next(v for v in pod["volumes"] if v["name"] == mount["name"])["projected"]["sources"]
        self.assertEqual(sorted(k for source in sources for k in source), ["configMap", "serviceAccountToken"])

    def test_consumer_replicas_are_left_to_keda(self):
        self.assertNotIn("replicas", self.consumer["spec"])

    def test_aws_overlay_speaks_msk_iam_and_pulls_from_ecr(self):
        connection = env_from_config_maps(self.docs, self.consumer)
        self.assertEqual(connection["KAFKA_AUTH"], "msk-iam")
        self.assertTrue(connection["AWS_REGION"])
        for broker in connection["KAFKA_BOOTSTRAP_SERVERS"].split(","):
            self.assertTrue(broker.endswith(":9098"), broker)
        config = yaml.safe_load(one(self.docs, "ConfigMap", "lagrate-config")["data"]["config.yaml"])
        cluster = config["clusters"][self.scaled["spec"]["triggers"][0]["metadata"]["cluster"]]
        self.assertEqual(cluster["auth"]["mechanism"], "msk-iam")
        self.assertEqual(cluster["bootstrapServers"], connection["KAFKA_BOOTSTRAP_SERVERS"].split(","))
        self.assertIn("prometheus", config)
        ecr = ecr_images()
        self.assertEqual(len(ecr), 3)
        for deployment in find(self.docs, "Deployment"):
            image = container(deployment)["image"]
            repo = image.split("/", 1)[1].rsplit(":", 1)[0]
            prefix, name = repo.split("/", 1)
            self.assertEqual(prefix, default("name"), image)
            self.assertIn(name, ecr, image)
            self.assertRegex(image, r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/")

    def test_local_overlay_runs_its_own_broker_without_prometheus(self):
        docs = rendered("local")
        self.assertEqual(find(docs, "ServiceMonitor"), [])
        broker = one(docs, "Deployment", "kafka")
        self.assertIn("sqlite://", str(env(broker)["STORAGE_ENGINE"]))
        config = yaml.safe_load(one(docs, "ConfigMap", "lagrate-config")["data"]["config.yaml"])
        self.assertNotIn("prometheus", config)
        connection = env_from_config_maps(docs, one(docs, "Deployment", "trade-tx-consumer"))
        self.assertEqual(config["clusters"]["main"]["bootstrapServers"], [connection["KAFKA_BOOTSTRAP_SERVERS"]])
        self.assertEqual(env(broker)["ADVERTISED_LISTENER_URL"], "tcp://" + connection["KAFKA_BOOTSTRAP_SERVERS"])


def seconds(duration: str) -> int:
    """A Prometheus duration of one unit (30s, 2m, 1h) in seconds."""
    number, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()
    return int(number) * {"s": 1, "m": 60, "h": 3600}[unit]


class InboundRateQuery(unittest.TestCase):
    """lagrate's inbound rate is rate() over the brokers' JMX exporter counter.
    With two samples in the window, one failed scrape of a broker drops it
    from the sum: every window shipped spans at least four scrapes."""

    def test_every_shipped_window_spans_four_scrapes_of_the_jmx_exporter(self):
        scrapes = helm_values("kube_prometheus_stack")["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]
        (jmx,) = [job for job in scrapes if ":11001" in str(job["static_configs"])]
        interval = seconds(jmx["scrape_interval"])
        queries = []
        for overlay in OVERLAYS:
            config = yaml.safe_load(one(rendered(overlay), "ConfigMap", "lagrate-config")["data"]["config.yaml"])
            if "prometheus" in config:
                # Set in the overlay, not left to lagrate's built-in default.
                queries.append((overlay, config["prometheus"].get("rateQuery")))
        self.assertIn("aws", [where for where, _ in queries])
        example = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
        if (example.get("prometheus") or {}).get("rateQuery"):
            queries.append(("examples/config.yaml", example["prometheus"]["rateQuery"]))
        for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
            for line in page.read_text().splitlines():
                if match := re.match(r"\s*#?\s*rateQuery:\s*(\S.*)$", line):
                    queries.append((page.name, yaml.safe_load(match.group(1))))
        for where, query in queries:
            with self.subTest(where=where, query=query):
                self.assertIsNotNone(query, "left to lagrate's built-in query")
                self.assertIn("kafka_server_BrokerTopicMetrics_Count", query)
                windows = re.findall(r"\[(\w+)\]", query)
                self.assertTrue(windows)
                for window in windows:
                    self.assertGreaterEqual(seconds(window), 4 * interval)


class ConfigureAwsOverlay(unittest.TestCase):
    """scripts/configure-aws-overlay.sh writes the overlay from terraform's
    outputs (given here through the environment)."""

    PLACEHOLDERS = {
        "MSK_BOOTSTRAP_BROKERS": ",".join(
            f"b-{i}.lagrate.abc123.c2.kafka.us-east-1.amazonaws.com:9098" for i in (1, 2, 3)
        ),
        "MSK_REGION": "us-east-1",
        "ECR_REGISTRY": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lagrate",
        "KAFKA_TOPIC": default("topic"),
        "TOPIC_PARTITIONS": str(default("topic_partitions")),
        "CONSUMER_GROUP": default("consumer_group"),
    }

    def run_script(self, overlay, values, tag):
        return subprocess.run(
            ["bash", str(ROOT / "scripts" / "configure-aws-overlay.sh"), tag],
            env={**os.environ, **values, "OVERLAY_DIR": str(overlay)},
            capture_output=True,
            text=True,
        )

    def copy_overlay(self, tmp):
        overlay = pathlib.Path(tmp) / "k8s" / "overlays" / "aws"
        shutil.copytree(K8S / "base", pathlib.Path(tmp) / "k8s" / "base")
        shutil.copytree(K8S / "overlays" / "aws", overlay)
        return overlay

    def test_checked_in_overlay_is_what_the_script_writes(self):
        with tempfile.TemporaryDirectory() as tmp:
            overlay = self.copy_overlay(tmp)
            result = self.run_script(overlay, self.PLACEHOLDERS, "0.1.0")
            self.assertEqual(result.returncode, 0, result.stderr)
            for name in (
                "msk.env",
                "lagrate-config.yaml",
                "kustomization.yaml",
                "workload-patch.yaml",
                "scaledobject-patch.yaml",
            ):
                self.assertEqual(
                    (overlay / name).read_text(), (K8S / "overlays" / "aws" / name).read_text(), name
                )

    def test_the_shell_region_is_ignored_and_a_region_the_brokers_are_not_in_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            overlay = self.copy_overlay(tmp)
            # CloudShell's AWS_REGION is not the stack's: not read.
            result = self.run_script(overlay, {**self.PLACEHOLDERS, "AWS_REGION": "ap-south-1"}, "0.1.0")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("AWS_REGION=us-east-1", (overlay / "msk.env").read_text())
            wrong = self.run_script(overlay, {**self.PLACEHOLDERS, "MSK_REGION": "eu-west-1"}, "0.1.0")
            self.assertEqual(wrong.returncode, 2)
            self.assertIn("not in region eu-west-1", wrong.stderr)

    def test_another_topic_partitions_and_group_reach_every_workload_and_the_scaled_object(self):
        # terraform.tfvars set topic, topic_partitions and consumer_group: the
        # IAM grants follow them, and so must every name the pods use.
        values = {
            **self.PLACEHOLDERS,
            "KAFKA_TOPIC": "payments-v3",
            "TOPIC_PARTITIONS": "48",
            "CONSUMER_GROUP": "payments-settlement",
        }
        with tempfile.TemporaryDirectory() as tmp:
            overlay = self.copy_overlay(tmp)
            result = self.run_script(overlay, values, "0.1.0")
            self.assertEqual(result.returncode, 0, result.stderr)
            docs = render(overlay)
            for doc in docs:
                validate(doc)
            consumer = one(docs, "Deployment", "trade-tx-consumer")
            producer = one(docs, "Deployment", "trade-tx-producer")
            for workload in (consumer, producer):
                self.assertEqual(env_from_config_maps(docs, workload)["KAFKA_TOPIC"], "payments-v3")
            self.assertEqual(env(consumer)["CONSUMER_GROUP"], "payments-settlement")
            self.assertEqual(env(consumer)["DLQ_TOPIC"], "payments-v3-dlq")
            self.assertEqual(env(producer)["TOPIC_PARTITIONS"], "48")
            scaled = one(docs, "ScaledObject", "trade-tx-consumer")
            self.assertEqual(scaled["spec"]["maxReplicaCount"], 48)
            metadata = scaled["spec"]["triggers"][0]["metadata"]
            self.assertEqual((metadata["topic"], metadata["consumerGroup"]), ("payments-v3", "payments-settlement"))
            # Names Kafka (or the dead-letter suffix) would refuse stop the script.
            for bad in ({"KAFKA_TOPIC": "pay ments"}, {"CONSUMER_GROUP": "pay/ments"}, {"TOPIC_PARTITIONS": "0"}):
                refused = self.run_script(overlay, {**values, **bad}, "0.1.0")
                self.assertEqual(refused.returncode, 2, bad)

    def test_new_outputs_reach_every_pod_and_lagrate(self):
        values = {
            **self.PLACEHOLDERS,
            "MSK_BOOTSTRAP_BROKERS": "b-1.prod.x9.c3.kafka.eu-west-1.amazonaws.com:9098,b-2.prod.x9.c3.kafka.eu-west-1.amazonaws.com:9098",
            "MSK_REGION": "eu-west-1",
            "ECR_REGISTRY": "210987654321.dkr.ecr.eu-west-1.amazonaws.com/prod",
        }
        with tempfile.TemporaryDirectory() as tmp:
            overlay = self.copy_overlay(tmp)
            (overlay / "lagrate-config.yaml").write_text(
                (overlay / "lagrate-config.yaml").read_text().replace("headroom: 0.1", "headroom: 0.3")
            )
            for _ in range(2):  # rerunnable
                result = self.run_script(overlay, values, "2026.11.23-1")
                self.assertEqual(result.returncode, 0, result.stderr)
            docs = render(overlay)
            for doc in docs:
                validate(doc)
            images = {container(d)["image"] for d in find(docs, "Deployment")}
            self.assertEqual(
                images,
                {f"210987654321.dkr.ecr.eu-west-1.amazonaws.com/prod/{i}:2026.11.23-1" for i in ("lagrate", "trade-tx-consumer", "trade-tx-producer")},
            )
            connection = env_from_config_maps(docs, one(docs, "Deployment", "trade-tx-consumer"))
            self.assertEqual(connection["KAFKA_BOOTSTRAP_SERVERS"], values["MSK_BOOTSTRAP_BROKERS"])
            self.assertEqual(connection["AWS_REGION"], "eu-west-1")
            config = yaml.safe_load(one(docs, "ConfigMap", "lagrate-config")["data"]["config.yaml"])
            self.assertEqual(config["clusters"]["main"]["bootstrapServers"], values["MSK_BOOTSTRAP_BROKERS"].split(","))
            self.assertEqual(config["clusters"]["main"]["auth"]["region"], "eu-west-1")
            self.assertEqual(config["policies"]["default"]["headroom"], 0.3, "the operator's policy is kept")

    def test_plaintext_brokers_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            overlay = self.copy_overlay(tmp)
            values = {**self.PLACEHOLDERS, "MSK_BOOTSTRAP_BROKERS": "b-1.x.kafka.us-east-1.amazonaws.com:9092"}
            result = self.run_script(overlay, values, "0.1.0")
            self.assertEqual(result.returncode, 2)
            self.assertIn("port 9098", result.stderr)


if __name__ == "__main__":
    unittest.main()
