provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

# Helm and the Kubernetes provider talk to the cluster this configuration
# creates, with a token from the AWS CLI (no kubeconfig needed on the machine
# that runs terraform).
locals {
  cluster_token_command = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec                   = local.cluster_token_command
  }
}

provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
  exec {
    api_version = local.cluster_token_command.api_version
    command     = local.cluster_token_command.command
    args        = local.cluster_token_command.args
  }
}
