# The network and the Kubernetes cluster: a VPC over three availability zones
# (private subnets for the nodes and the brokers, public ones only for the NAT
# gateway and load balancers) and EKS in Auto Mode, which provisions nodes,
# runs the Pod Identity agent and scales compute with the pods KEDA asks for.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:only the first three zone names are used (slice below), and a zone AWS adds later sorts after them
  # Zones where the EKS control plane cannot run (AWS's published list); the
  # names that map to them differ per account.
  exclude_zone_ids = ["use1-az3", "usw1-az2", "cac1-az3"]

  # Local and Wavelength zones cannot host MSK brokers.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_caller_identity" "current" {}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, 3)

  tags = merge(var.tags, {
    Project = "lagrate"
    Stack   = var.name
  })
}

module "vpc" {
  #checkov:skip=CKV_TF_1:pinned to an exact registry release; the registry serves a version's content unchanged
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.0"

  name = var.name
  cidr = var.vpc_cidr
  azs  = local.azs

  # /20 private subnets (4,096 addresses each: Auto Mode gives every pod a VPC
  # address) and /24 public subnets for the NAT gateway and load balancers.
  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, i + 48)]

  enable_nat_gateway = true
  # One NAT gateway per AZ keeps a zone's pods reaching AWS APIs when another
  # zone fails; set single_nat_gateway for a cheaper test stack.
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  public_subnet_tags  = { "kubernetes.io/role/elb" = 1 }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = 1 }
}

module "eks" {
  #checkov:skip=CKV_TF_1:pinned to an exact registry release; the registry serves a version's content unchanged
  source  = "terraform-aws-modules/eks/aws"
  version = "21.19.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # terraform (Helm) and kubectl reach the API from the operator's network
  # only; nodes use the private endpoint.
  endpoint_public_access       = true
  endpoint_public_access_cidrs = var.cluster_endpoint_public_access_cidrs
  endpoint_private_access      = true

  enable_cluster_creator_admin_permissions = true

  # Auto Mode: "general-purpose" runs the workloads, "system" the add-ons
  # (KEDA, Prometheus), which tolerate its CriticalAddonsOnly taint.
  compute_config = {
    enabled    = true
    node_pools = ["general-purpose", "system"]
  }

  enabled_log_types = ["api", "audit", "authenticator"]
}
