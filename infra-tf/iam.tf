# Least privilege for the three workloads, each through an EKS Pod Identity
# association (no node role, no long-lived keys). MSK IAM actions are scoped to
# this cluster, the one topic and the one consumer group:
#
#   scaler    Connect; DescribeTopic; DescribeGroup            (reads offsets only)
#   consumer  Connect, WriteDataIdempotently; DescribeTopic, ReadData;
#             DescribeGroup, AlterGroup; on the dead-letter topic
#             DescribeTopic, WriteData, CreateTopic
#   producer  Connect, WriteDataIdempotently; DescribeTopic, WriteData, CreateTopic
#
# WriteDataIdempotently: the producer and the consumer's dead-letter producer
# are idempotent (no duplicates on retry), which MSK authorizes on the
# cluster. CreateTopic on one topic each: the producer creates the trade
# topic with TOPIC_PARTITIONS partitions, the consumer its dead-letter topic
# (DLQ_TOPIC, "<topic>-dlq"), when missing, because the brokers do not
# auto-create topics. The consumer refuses to start without a dead-letter
# topic: a message it cannot store is committed only once it is there.

locals {
  # arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID → topic/NAME/UUID/TOPIC,
  # group/NAME/UUID/GROUP: MSK's resource ARNs for IAM.
  msk_topic_arn = "${replace(aws_msk_cluster.this.arn, ":cluster/", ":topic/")}/${var.topic}"
  msk_dlq_arn   = "${replace(aws_msk_cluster.this.arn, ":cluster/", ":topic/")}/${var.topic}-dlq"
  msk_group_arn = "${replace(aws_msk_cluster.this.arn, ":cluster/", ":group/")}/${var.consumer_group}"

  workloads = {
    scaler = {
      namespace       = var.lagrate_namespace
      service_account = "lagrate"
      policy          = data.aws_iam_policy_document.scaler.json
    }
    consumer = {
      namespace       = var.app_namespace
      service_account = "trade-tx-consumer"
      policy          = data.aws_iam_policy_document.consumer.json
    }
    producer = {
      namespace       = var.app_namespace
      service_account = "trade-tx-producer"
      policy          = data.aws_iam_policy_document.producer.json
    }
  }
}

data "aws_iam_policy_document" "scaler" {
  statement {
    sid       = "Connect"
    actions   = ["kafka-cluster:Connect"]
    resources = [aws_msk_cluster.this.arn]
  }
  statement {
    sid       = "HighWatermarks"
    actions   = ["kafka-cluster:DescribeTopic"]
    resources = [local.msk_topic_arn]
  }
  statement {
    sid       = "CommittedOffsets"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = [local.msk_group_arn]
  }
}

data "aws_iam_policy_document" "consumer" {
  statement {
    sid       = "ConnectIdempotent"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    resources = [aws_msk_cluster.this.arn]
  }
  statement {
    sid       = "DeadLetters"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData", "kafka-cluster:CreateTopic"]
    resources = [local.msk_dlq_arn]
  }
  statement {
    sid       = "ReadTopic"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [local.msk_topic_arn]
  }
  statement {
    sid       = "JoinGroupAndCommit"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = [local.msk_group_arn]
  }
}

data "aws_iam_policy_document" "producer" {
  statement {
    sid       = "ConnectIdempotent"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"]
    resources = [aws_msk_cluster.this.arn]
  }
  statement {
    sid       = "WriteTopic"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData", "kafka-cluster:CreateTopic"]
    resources = [local.msk_topic_arn]
  }
}

data "aws_iam_policy_document" "pod_identity_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "workload" {
  for_each = local.workloads

  name               = "${var.name}-${each.key}"
  description        = "${var.name}: ${each.key} (${each.value.namespace}/${each.value.service_account}) on MSK"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_trust.json
}

resource "aws_iam_role_policy" "workload" {
  for_each = local.workloads

  name   = "msk-${each.key}"
  role   = aws_iam_role.workload[each.key].id
  policy = each.value.policy
}

resource "aws_eks_pod_identity_association" "workload" {
  for_each = local.workloads

  cluster_name    = module.eks.cluster_name
  namespace       = each.value.namespace
  service_account = each.value.service_account
  role_arn        = aws_iam_role.workload[each.key].arn
}
