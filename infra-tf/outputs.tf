output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "configure_kubectl" {
  description = "Command that points kubectl at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "msk_bootstrap_brokers_iam" {
  description = "MSK bootstrap brokers for SASL/IAM over TLS (port 9098): KAFKA_BOOTSTRAP_SERVERS and lagrate's cluster bootstrapServers."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "msk_cluster_arn" {
  description = "MSK cluster ARN."
  value       = aws_msk_cluster.this.arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL per image (lagrate, trade-tx-consumer, trade-tx-producer)."
  value       = { for image, repo in aws_ecr_repository.image : image => repo.repository_url }
}

output "pod_identity_roles" {
  description = "IAM role per workload, with the namespace/service account it is bound to."
  value = {
    for key, workload in local.workloads : key => {
      role_arn        = aws_iam_role.workload[key].arn
      service_account = "${workload.namespace}/${workload.service_account}"
    }
  }
}

output "region" {
  description = "AWS region."
  value       = var.region
}

output "topic" {
  description = "The trade topic (scripts/configure-aws-overlay.sh carries it into k8s/overlays/aws)."
  value       = var.topic
}

output "topic_partitions" {
  description = "Partitions of the trade topic: the producer creates it with these, lagrate's ScaledObject caps replicas at them."
  value       = var.topic_partitions
}

output "consumer_group" {
  description = "The trade consumer's group, which its IAM grants are scoped to."
  value       = var.consumer_group
}
