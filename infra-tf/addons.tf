# In-cluster add-ons: KEDA (which calls lagrate) and kube-prometheus-stack
# (Prometheus, which lagrate queries for the inbound rate, and Grafana, which
# shows the dashboard in k8s/). Both run on Auto Mode's "system" node pool.
# Also the cluster-wide switch that makes Auto Mode enforce NetworkPolicies.

locals {
  system_pool = {
    tolerations  = [{ key = "CriticalAddonsOnly", operator = "Exists" }]
    nodeSelector = { "karpenter.sh/nodepool" = "system" }
  }

  # The brokers' open-monitoring exporters, scraped by Prometheus. The rate
  # lagrate queries is kafka_server_BrokerTopicMetrics_Count from the JMX
  # exporter; its [2m] window holds four 30 s scrapes, so a failed scrape of
  # one broker still leaves that broker in the sum.
  msk_scrape_configs = [
    {
      job_name        = "msk-jmx"
      scrape_interval = "30s"
      static_configs  = [{ targets = [for host in local.msk_broker_hosts : "${host}:11001"] }]
    },
    {
      job_name        = "msk-node"
      scrape_interval = "30s"
      static_configs  = [{ targets = [for host in local.msk_broker_hosts : "${host}:11002"] }]
    },
  ]

  # How long terraform waits for a release's pods to become ready. Auto Mode
  # starts with no nodes: the first pods wait for a node to be launched and to
  # join (a few minutes), then pull their images, and Prometheus's volume is
  # created only once its pod has a node. Helm's default of 5 minutes is too
  # short for that on a new cluster.
  helm_timeout = 1200
}

# Auto Mode provisions EBS volumes through its own CSI driver but ships no
# StorageClass: without this default one, Prometheus's volume claim (and so
# the Helm release) would wait forever.
resource "kubernetes_storage_class_v1" "auto_ebs" {
  metadata {
    name = "auto-ebs-gp3"
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = "true"
    }
  }
  storage_provisioner    = "ebs.csi.eks.amazonaws.com"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
  }

  depends_on = [module.eks]
}

# Auto Mode enforces NetworkPolicies (lagrate's admits only KEDA to its gRPC
# port and Prometheus to its metrics port) once this ConfigMap turns its
# network policy controller on. The switch holds for every workload of the
# cluster, so it lives here with the cluster, not in k8s/, where
# `kubectl delete -k` would turn it off for everyone.
resource "kubernetes_config_map_v1" "network_policy_controller" {
  metadata {
    name      = "amazon-vpc-cni"
    namespace = "kube-system"
  }
  data = {
    "enable-network-policy-controller" = "true"
  }

  depends_on = [module.eks]
}

resource "helm_release" "kube_prometheus_stack" {
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_chart_version
  namespace        = "monitoring"
  create_namespace = true
  timeout          = local.helm_timeout

  values = [yamlencode({
    prometheusOperator = local.system_pool
    alertmanager       = { alertmanagerSpec = local.system_pool }
    kube-state-metrics = local.system_pool
    # EKS keeps the control plane out of reach (no controller-manager,
    # scheduler or etcd endpoint to scrape) and Auto Mode runs no kube-proxy
    # pods: their targets would stay absent and their alerts fire forever.
    kubeControllerManager = { enabled = false }
    kubeScheduler         = { enabled = false }
    kubeEtcd              = { enabled = false }
    kubeProxy             = { enabled = false }
    prometheus = {
      prometheusSpec = merge(local.system_pool, {
        # Pick up every ServiceMonitor (lagrate's, the workloads', KEDA's),
        # not only those labelled for this release.
        serviceMonitorSelectorNilUsesHelmValues = false
        podMonitorSelectorNilUsesHelmValues     = false
        ruleSelectorNilUsesHelmValues           = false
        additionalScrapeConfigs                 = local.msk_scrape_configs
        retention                               = "15d"
        # The volume goes with the Prometheus StatefulSet (helm uninstall,
        # terraform destroy) instead of outliving the cluster as an EBS
        # volume nobody pays attention to; scaling down keeps it.
        persistentVolumeClaimRetentionPolicy = { whenDeleted = "Delete", whenScaled = "Retain" }
        storageSpec = {
          volumeClaimTemplate = {
            spec = {
              accessModes = ["ReadWriteOnce"]
              resources   = { requests = { storage = "50Gi" } }
            }
          }
        }
      })
    }
    grafana = merge(local.system_pool, {
      # Dashboards arrive as ConfigMaps labelled grafana_dashboard=1 in any
      # namespace (k8s/ ships lagrate's).
      sidecar = {
        dashboards = {
          enabled         = true
          label           = "grafana_dashboard"
          labelValue      = "1"
          searchNamespace = "ALL"
        }
      }
    })
  })]

  depends_on = [kubernetes_storage_class_v1.auto_ebs]
}

resource "helm_release" "keda" {
  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_chart_version
  namespace        = "keda"
  create_namespace = true
  timeout          = local.helm_timeout

  values = [yamlencode(merge(local.system_pool, {
    prometheus = {
      operator = {
        enabled        = true
        serviceMonitor = { enabled = true }
      }
      metricServer = {
        enabled        = true
        serviceMonitor = { enabled = true }
      }
    }
  }))]

  # KEDA's ServiceMonitors need the Prometheus operator's CRDs.
  depends_on = [helm_release.kube_prometheus_stack]
}
