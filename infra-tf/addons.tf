# In-cluster add-ons: KEDA (which calls lagrate) and kube-prometheus-stack
# (Prometheus, which lagrate queries for the inbound rate, and Grafana, which
# shows the dashboard in k8s/). Both run on Auto Mode's "system" node pool.

locals {
  system_pool = {
    tolerations  = [{ key = "CriticalAddonsOnly", operator = "Exists" }]
    nodeSelector = { "karpenter.sh/nodepool" = "system" }
  }

  # The brokers' open-monitoring exporters, scraped by Prometheus. The rate
  # lagrate queries is kafka_server_BrokerTopicMetrics_Count from the JMX
  # exporter; 30 s keeps at least two points in its [1m] window.
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

resource "helm_release" "kube_prometheus_stack" {
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_chart_version
  namespace        = "monitoring"
  create_namespace = true

  values = [yamlencode({
    prometheusOperator = local.system_pool
    alertmanager       = { alertmanagerSpec = local.system_pool }
    kube-state-metrics = local.system_pool
    prometheus = {
      prometheusSpec = merge(local.system_pool, {
        # Pick up every ServiceMonitor (lagrate's, the workloads', KEDA's),
        # not only those labelled for this release.
        serviceMonitorSelectorNilUsesHelmValues = false
        podMonitorSelectorNilUsesHelmValues     = false
        ruleSelectorNilUsesHelmValues           = false
        additionalScrapeConfigs                 = local.msk_scrape_configs
        retention                               = "15d"
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
