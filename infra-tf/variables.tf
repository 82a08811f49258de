variable "name" {
  description = "Name of the stack: prefixes the VPC, the EKS and MSK clusters, IAM roles and ECR repositories."
  type        = string
  default     = "lagrate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,26}[a-z0-9]$", var.name))
    error_message = "name must be 3-28 characters: lower-case letters, digits and '-', starting with a letter. It becomes part of MSK, EKS and IAM names, and the EKS module makes IAM role name prefixes \"<name>-cluster-\" and \"<name>-eks-auto-\" of it, which AWS caps at 38 characters."
  }
}

variable "region" {
  description = "AWS region to deploy into (needs at least three availability zones)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1 or eu-west-2."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; three /20 private and three /24 public subnets are carved from it."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "vpc_cidr must be an IPv4 CIDR of size /16 or larger, such as 10.0.0.0/16."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for the whole VPC (cheaper, but a zone outage cuts the others' egress) instead of one per availability zone."
  type        = bool
  default     = false
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version. 1.35+ lets the HPA behaviour set tolerance: 0 (HPAConfigurableTolerance), which the ScaledObject in k8s/ uses."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.(3[3-9]|[4-9][0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be 1.33 or newer, written as MAJOR.MINOR (e.g. 1.35)."
  }
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API from outside the VPC (where terraform, Helm and kubectl run)."
  type        = list(string)

  validation {
    condition     = length(var.cluster_endpoint_public_access_cidrs) > 0 && alltrue([for c in var.cluster_endpoint_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "cluster_endpoint_public_access_cidrs must list at least one IPv4 CIDR, e.g. [\"203.0.113.10/32\"]."
  }
}

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster, as MSK names it."
  type        = string
  default     = "3.9.x"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.([0-9]+|x)(\\.kraft)?$", var.kafka_version))
    error_message = "kafka_version must be an MSK version string such as 3.9.x, 3.6.0 or 4.0.x.kraft."
  }
}

variable "msk_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"

  validation {
    condition     = startswith(var.msk_instance_type, "kafka.")
    error_message = "msk_instance_type must be an MSK broker type such as kafka.m7g.large or kafka.m5.large."
  }
}

variable "msk_brokers_per_az" {
  description = "Brokers in each of the three availability zones (MSK needs a multiple of the zone count)."
  type        = number
  default     = 1

  validation {
    condition     = var.msk_brokers_per_az >= 1 && var.msk_brokers_per_az <= 10 && floor(var.msk_brokers_per_az) == var.msk_brokers_per_az
    error_message = "msk_brokers_per_az must be a whole number from 1 to 10."
  }
}

variable "msk_volume_size_gb" {
  description = "EBS storage per broker, in GiB."
  type        = number
  default     = 100

  validation {
    condition     = var.msk_volume_size_gb >= 1 && var.msk_volume_size_gb <= 16384
    error_message = "msk_volume_size_gb must be between 1 and 16384 GiB."
  }
}

variable "topic" {
  description = "The trade topic: the producer writes it, the consumer reads it, lagrate scales on it. IAM grants are scoped to it."
  type        = string
  default     = "trade-tx-v2"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.topic))
    error_message = "topic must be 1-249 characters of Kafka's legal set [A-Za-z0-9._-]."
  }
}

variable "topic_partitions" {
  description = "Partitions of the trade topic (and the brokers' num.partitions): the most consumer pods that can share the work."
  type        = number
  default     = 24

  validation {
    condition     = var.topic_partitions >= 1 && var.topic_partitions <= 1000 && floor(var.topic_partitions) == var.topic_partitions
    error_message = "topic_partitions must be a whole number from 1 to 1000."
  }
}

variable "consumer_group" {
  description = "Consumer group of the trade consumer; IAM grants are scoped to it."
  type        = string
  default     = "trade-tx-consumer"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,249}$", var.consumer_group))
    error_message = "consumer_group must be 1-249 characters of [A-Za-z0-9._-]."
  }
}

variable "lagrate_namespace" {
  description = "Kubernetes namespace of lagrate (must match k8s/)."
  type        = string
  default     = "lagrate"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.lagrate_namespace))
    error_message = "lagrate_namespace must be a DNS-1123 label (lower-case letters, digits, '-')."
  }
}

variable "app_namespace" {
  description = "Kubernetes namespace of the trade consumer and producer (must match k8s/)."
  type        = string
  default     = "trading"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.app_namespace))
    error_message = "app_namespace must be a DNS-1123 label (lower-case letters, digits, '-')."
  }
}

variable "log_retention_days" {
  description = "Retention of the MSK broker logs in CloudWatch, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "keda_chart_version" {
  description = "Version of KEDA's Helm chart (k8s/crds/ holds the ScaledObject CRD of the same version)."
  type        = string
  default     = "2.20.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.keda_chart_version))
    error_message = "keda_chart_version must be an exact chart version such as 1.2.3: a range would let a new chart in unreviewed."
  }
}

variable "kube_prometheus_stack_chart_version" {
  description = "Version of the kube-prometheus-stack Helm chart."
  type        = string
  default     = "79.10.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.kube_prometheus_stack_chart_version))
    error_message = "kube_prometheus_stack_chart_version must be an exact chart version such as 1.2.3: a range would let a new chart in unreviewed."
  }
}

variable "ecr_keep_images" {
  description = "Images kept per ECR repository; older ones expire."
  type        = number
  default     = 30

  validation {
    condition     = var.ecr_keep_images >= 1
    error_message = "ecr_keep_images must be at least 1."
  }
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete ECR repositories that still hold images."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
