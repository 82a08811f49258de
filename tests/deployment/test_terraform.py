"""infra-tf/: every file parses, checkov passes (each skip justified where it
is made), the MSK IAM grants are exactly the least-privilege list, and the
cluster is configured as documented."""

import re
import unittest

import hcl2

from repo import INFRA, blocks, checkov, default, evaluate, helm_values, strip_quotes, terraform, tf_files, variables

CLUSTER = "${aws_msk_cluster.this.arn}"
TOPIC = "${local.msk_topic_arn}"
DLQ = "${local.msk_dlq_arn}"
GROUP = "${local.msk_group_arn}"

# What each workload may do on MSK, and on which resource. Reads and group
# membership, plus what the product needs (see infra-tf/iam.tf): the
# idempotent producers' WriteDataIdempotently, CreateTopic on the one topic
# each creates (brokers do not auto-create topics), and the consumer's
# writes to its dead-letter topic.
ALLOWED = {
    "scaler": {
        ("kafka-cluster:Connect", CLUSTER),
        ("kafka-cluster:DescribeTopic", TOPIC),
        ("kafka-cluster:DescribeGroup", GROUP),
    },
    "consumer": {
        ("kafka-cluster:Connect", CLUSTER),
        ("kafka-cluster:WriteDataIdempotently", CLUSTER),
        ("kafka-cluster:DescribeTopic", DLQ),
        ("kafka-cluster:WriteData", DLQ),
        ("kafka-cluster:CreateTopic", DLQ),
        ("kafka-cluster:DescribeTopic", TOPIC),
        ("kafka-cluster:ReadData", TOPIC),
        ("kafka-cluster:DescribeGroup", GROUP),
        ("kafka-cluster:AlterGroup", GROUP),
    },
    "producer": {
        ("kafka-cluster:Connect", CLUSTER),
        ("kafka-cluster:WriteDataIdempotently", CLUSTER),
        ("kafka-cluster:DescribeTopic", TOPIC),
        ("kafka-cluster:WriteData", TOPIC),
        ("kafka-cluster:CreateTopic", TOPIC),
    },
}


# IAM role name prefixes terraform-aws-modules/eks (21.x) derives from its
# `name` (the stack's), by the module input that turns each prefix off. AWS
# takes an IAM role name_prefix of at most 38 characters.
EKS_ROLE_NAME_PREFIXES = {
    "iam_role_use_name_prefix": "-cluster-",
    "node_iam_role_use_name_prefix": "-eks-auto-",
}
ROLE_NAME_PREFIX_MAX = 38


def eks_module() -> dict:
    return next(m["eks"] for m in terraform("main.tf")["module"] if "eks" in m)


def grants(document: dict) -> set:
    """(action, resource) pairs an aws_iam_policy_document allows."""
    out = set()
    for statement in document["statement"]:
        if statement.get("effect", "Allow") != "Allow":
            continue
        assert "not_actions" not in statement and "not_resources" not in statement, "NotAction/NotResource widen a grant"
        for action in statement["actions"]:
            for resource in statement["resources"]:
                out.add((action, resource))
    return out


def beyond(document: dict, allowed: set) -> set:
    return grants(document) - allowed


class Parse(unittest.TestCase):
    def test_every_tf_file_parses(self):
        files = tf_files()
        self.assertGreaterEqual(len(files), 8)
        for name in files + ["terraform.tfvars.example"]:
            with self.subTest(file=name), open(INFRA / name) as f:
                self.assertTrue(hcl2.load(f))

    def test_checkov_passes_and_every_skip_says_why(self):
        result = checkov("-d", str(INFRA), "--framework", "terraform")
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-2000:])
        self.assertRegex(result.stdout, r"Failed checks: 0")
        for name in tf_files():
            for line in (INFRA / name).read_text().splitlines():
                if "checkov:skip" in line:
                    self.assertRegex(line, r"#checkov:skip=CKV\w*_\d+:\S.{15,}", f"{name}: {line.strip()}")


class Iam(unittest.TestCase):
    def setUp(self):
        self.documents = blocks("data", "aws_iam_policy_document")
        self.workloads = terraform("iam.tf")["locals"][0]["workloads"]

    def test_each_workload_gets_exactly_its_list(self):
        self.assertEqual(set(self.workloads), set(ALLOWED))
        for workload, spec in self.workloads.items():
            document = spec["policy"].removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
            with self.subTest(workload=workload):
                self.assertEqual(grants(self.documents[document]), ALLOWED[workload])

    def test_a_broader_grant_is_caught(self):
        broad = {"statement": [{"actions": ["kafka-cluster:*"], "resources": ["*"]}]}
        self.assertEqual(beyond(broad, ALLOWED["scaler"]), {("kafka-cluster:*", "*")})
        other_topic = {"statement": [{"actions": ["kafka-cluster:ReadData"], "resources": [TOPIC + "*"]}]}
        self.assertTrue(beyond(other_topic, ALLOWED["consumer"]))

    def test_topic_and_group_arns_name_one_topic_and_one_group(self):
        local = terraform("iam.tf")["locals"][0]
        self.assertRegex(local["msk_topic_arn"], r':topic/"\)\}/\$\{var\.topic\}$')
        self.assertRegex(local["msk_dlq_arn"], r':topic/"\)\}/\$\{var\.topic\}-dlq$')
        self.assertRegex(local["msk_group_arn"], r':group/"\)\}/\$\{var\.consumer_group\}$')
        for name in ("topic", "consumer_group"):
            self.assertNotIn("*", str(default(name)))

    def test_roles_are_assumable_only_by_eks_pod_identity(self):
        trust = self.documents["pod_identity_trust"]["statement"]
        self.assertEqual(len(trust), 1)
        self.assertEqual(trust[0]["principals"][0]["identifiers"], ["pods.eks.amazonaws.com"])
        self.assertEqual(set(trust[0]["actions"]), {"sts:AssumeRole", "sts:TagSession"})

    def test_no_other_file_grants_kafka_actions(self):
        for name in tf_files():
            if name != "iam.tf":
                self.assertNotIn("kafka-cluster:", (INFRA / name).read_text(), name)
        for kind in ("aws_iam_policy", "aws_iam_role_policy_attachment", "aws_iam_user", "aws_iam_access_key"):
            self.assertEqual(blocks("resource", kind), {}, kind)


class Msk(unittest.TestCase):
    def setUp(self):
        self.cluster = blocks("resource", "aws_msk_cluster")["this"]

    def test_brokers_take_iam_over_tls_only(self):
        auth = self.cluster["client_authentication"][0]
        self.assertIs(auth["sasl"][0]["iam"], True)
        self.assertIs(auth["unauthenticated"], False)
        transit = self.cluster["encryption_info"][0]["encryption_in_transit"][0]
        self.assertEqual(transit["client_broker"], "TLS")
        self.assertIs(transit["in_cluster"], True)
        self.assertTrue(self.cluster["encryption_info"][0]["encryption_at_rest_kms_key_arn"])

    def test_open_monitoring_and_broker_logs(self):
        prometheus = self.cluster["open_monitoring"][0]["prometheus"][0]
        self.assertIs(prometheus["jmx_exporter"][0]["enabled_in_broker"], True)
        self.assertIs(prometheus["node_exporter"][0]["enabled_in_broker"], True)
        logs = self.cluster["logging_info"][0]["broker_logs"][0]["cloudwatch_logs"][0]
        self.assertIs(logs["enabled"], True)

    def test_server_properties(self):
        text = blocks("resource", "aws_msk_configuration")["this"]["server_properties"]
        properties = dict(
            line.strip().split("=", 1) for line in text.splitlines() if "=" in line and not line.strip().startswith("<<")
        )
        self.assertEqual(properties["auto.create.topics.enable"], "false")
        self.assertEqual(properties["default.replication.factor"], "3")
        self.assertEqual(properties["min.insync.replicas"], "2")

    def test_brokers_open_kafka_and_exporter_ports_to_the_vpc_only(self):
        group = blocks("resource", "aws_security_group")["msk"]
        self.assertEqual(sorted(rule["from_port"] for rule in group["ingress"]), [9098, 11001, 11002])
        for rule in group["ingress"] + group["egress"]:
            self.assertNotIn("0.0.0.0/0", str(rule["cidr_blocks"]))
        # Every broker is scraped, not only those the bootstrap string lists.
        self.assertEqual(
            terraform("msk.tf")["locals"][0]["msk_broker_hosts"],
            "${sort(flatten(data.aws_msk_broker_nodes.this.node_info_list[*].endpoints))}",
        )
        scrape = (INFRA / "addons.tf").read_text()
        self.assertIn(':11001"', scrape)
        self.assertIn(':11002"', scrape)


class Interface(unittest.TestCase):
    def test_every_variable_is_described_and_validated(self):
        for name, spec in variables().items():
            with self.subTest(variable=name):
                self.assertGreater(len(spec.get("description", "")), 20)
                if not re.match(r"^(\$\{)?(bool|map)", spec["type"]):
                    self.assertIn("validation", spec)

    def test_stack_name_fits_the_eks_modules_iam_role_name_prefixes(self):
        # A longer name passes validation and then fails at plan.
        validation = variables()["name"]["validation"][0]
        pattern = re.fullmatch(r'\$\{can\(regex\("(.+)", var\.name\)\)\}', validation["condition"]).group(1)
        pattern = pattern.replace("\\\\", "\\")  # HCL string escapes
        accepted = [n for n in range(1, 100) if re.fullmatch(pattern, "a" * n)]
        self.assertTrue(re.fullmatch(pattern, default("name")))
        longest = max(accepted)
        eks = eks_module()
        for switch, suffix in EKS_ROLE_NAME_PREFIXES.items():
            if eks.get(switch, True) is not False:
                with self.subTest(prefix=f"<name>{suffix}"):
                    self.assertLessEqual(longest + len(suffix), ROLE_NAME_PREFIX_MAX)
        # The message gives the limit and its reason.
        self.assertIn(f"-{longest} characters", validation["error_message"])
        self.assertIn(str(ROLE_NAME_PREFIX_MAX), validation["error_message"])

    def test_example_sets_declared_variables_and_every_required_one(self):
        with open(INFRA / "terraform.tfvars.example") as f:
            example = {k for k in strip_quotes(hcl2.load(f)) if not k.startswith("__")}
        declared = variables()
        self.assertLessEqual(example, set(declared))
        # The commented-out suggestions name real variables too.
        suggested = re.findall(r"^# (\w+)\s+=", (INFRA / "terraform.tfvars.example").read_text(), re.M)
        self.assertGreater(len(suggested), 5)
        self.assertLessEqual(set(suggested), set(declared))
        required = {name for name, spec in declared.items() if "default" not in spec}
        self.assertLessEqual(required, set(example))

    def test_outputs(self):
        outputs = set()
        for entry in terraform("outputs.tf")["output"]:
            outputs.update(entry)
        self.assertLessEqual({"msk_bootstrap_brokers_iam", "cluster_name", "ecr_repository_urls"}, outputs)

    def test_versions_are_pinned(self):
        settings = terraform("versions.tf")["terraform"][0]
        self.assertEqual(settings["required_version"], ">= 1.6")
        providers = settings["required_providers"][0]
        self.assertRegex(providers["aws"]["version"], r"^~> [56]\.\d+$")
        for name, provider in providers.items():
            if not name.startswith("__"):
                self.assertRegex(provider["version"], r"^~> \d+\.\d+$", name)
        for entry in terraform("main.tf")["module"]:
            for name, module in entry.items():
                with self.subTest(module=name):
                    self.assertRegex(module["version"], r"^\d+\.\d+\.\d+$")
        for name, release in blocks("resource", "helm_release").items():
            with self.subTest(release=name):
                variable = re.fullmatch(r"\$\{var\.(\w+)\}", release["version"]).group(1)
                self.assertRegex(default(variable), r"^\d+\.\d+\.\d+$")

    def test_prometheus_volume_has_a_default_storage_class_before_the_release(self):
        # Auto Mode ships no StorageClass: without one Prometheus's claim
        # stays Pending and the Helm release never becomes ready.
        storage = blocks("resource", "kubernetes_storage_class_v1")["auto_ebs"]
        self.assertEqual(storage["storage_provisioner"], "ebs.csi.eks.amazonaws.com")
        self.assertEqual(storage["metadata"][0]["annotations"]["storageclass.kubernetes.io/is-default-class"], "true")
        self.assertEqual(storage["parameters"]["encrypted"], "true")
        release = blocks("resource", "helm_release")["kube_prometheus_stack"]
        self.assertIn("${kubernetes_storage_class_v1.auto_ebs}", release["depends_on"])

    def test_eks_runs_auto_mode_in_private_subnets(self):
        eks = eks_module()
        self.assertIs(eks["compute_config"]["enabled"], True)
        self.assertIn("general-purpose", eks["compute_config"]["node_pools"])
        self.assertEqual(eks["subnet_ids"], "${module.vpc.private_subnets}")


class Addons(unittest.TestCase):
    def test_helm_waits_for_auto_mode_to_bring_up_nodes(self):
        # Auto Mode starts with no nodes: a release's first pods wait for a
        # node to be launched, then pull their images. Helm's default is 300 s.
        for name, release in blocks("resource", "helm_release").items():
            with self.subTest(release=name):
                self.assertGreaterEqual(evaluate(release.get("timeout", 300)), 1200)

    def test_kube_prometheus_stack_leaves_out_what_eks_does_not_expose(self):
        # EKS runs no scrapeable controller-manager, scheduler or etcd, and
        # Auto Mode no kube-proxy pods: their absent-target alerts would fire
        # for ever.
        values = helm_values("kube_prometheus_stack")
        for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
            with self.subTest(component=component):
                self.assertIs(values[component]["enabled"], False)

    def test_prometheus_volume_is_deleted_with_its_statefulset(self):
        # Otherwise its EBS volume outlives `terraform destroy`.
        spec = helm_values("kube_prometheus_stack")["prometheus"]["prometheusSpec"]
        self.assertIn("volumeClaimTemplate", spec["storageSpec"])
        self.assertEqual(
            spec["persistentVolumeClaimRetentionPolicy"], {"whenDeleted": "Delete", "whenScaled": "Retain"}
        )


if __name__ == "__main__":
    unittest.main()
