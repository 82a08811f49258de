# Amazon MSK, provisioned: one broker per AZ (or more), IAM authentication on
# 9098 only, TLS between clients and brokers and between brokers, storage
# encrypted with a key of this stack, open monitoring for Prometheus (JMX
# exporter on 11001, node exporter on 11002) and broker logs in CloudWatch.

resource "aws_cloudwatch_log_group" "msk" {
  name              = "/aws/msk/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.stack.arn
}

resource "aws_security_group" "msk" {
  name        = "${var.name}-msk"
  description = "MSK brokers: Kafka over IAM and the Prometheus exporters, from the VPC only"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description = "Kafka clients, SASL/IAM over TLS"
    from_port   = 9098
    to_port     = 9098
    protocol    = "tcp"
    cidr_blocks = module.vpc.private_subnets_cidr_blocks
  }

  ingress {
    description = "Prometheus scraping the JMX exporter"
    from_port   = 11001
    to_port     = 11001
    protocol    = "tcp"
    cidr_blocks = module.vpc.private_subnets_cidr_blocks
  }

  ingress {
    description = "Prometheus scraping the node exporter"
    from_port   = 11002
    to_port     = 11002
    protocol    = "tcp"
    cidr_blocks = module.vpc.private_subnets_cidr_blocks
  }

  egress {
    description = "Brokers answer inside the VPC only"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name}-kafka"
  kafka_versions = [var.kafka_version]
  description    = "lagrate: topics are created on purpose, three copies, two must acknowledge"

  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    num.partitions=${var.topic_partitions}
    unclean.leader.election.enable=false
    offsets.topic.replication.factor=3
    transaction.state.log.replication.factor=3
    transaction.state.log.min.isr=2
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = 3 * var.msk_brokers_per_az

  broker_node_group_info {
    instance_type   = var.msk_instance_type
    client_subnets  = module.vpc.private_subnets
    security_groups = [aws_security_group.msk.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.msk_volume_size_gb
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  client_authentication {
    sasl {
      iam = true
    }
    unauthenticated = false
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.stack.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk.name
      }
    }
  }
}

# Every broker, for the Prometheus scrape targets: the bootstrap string may
# list only some of them, and an unscraped broker's messages would be missing
# from the inbound rate lagrate reads.
data "aws_msk_broker_nodes" "this" {
  cluster_arn = aws_msk_cluster.this.arn
}

locals {
  msk_broker_hosts = sort(flatten(data.aws_msk_broker_nodes.this.node_info_list[*].endpoints))
}
