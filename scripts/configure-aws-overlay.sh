#!/usr/bin/env bash
# Points k8s/overlays/aws at the stack infra-tf created: MSK's IAM bootstrap
# brokers and region (msk.env, lagrate-config.yaml), the ECR images
# (kustomization.yaml), and the topic, its partitions and the consumer group
# the IAM grants are scoped to (msk.env, workload-patch.yaml,
# scaledobject-patch.yaml). Values come from `terraform output`, or from the
# environment for each one given: MSK_BOOTSTRAP_BROKERS, MSK_REGION,
# ECR_REGISTRY (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME), KAFKA_TOPIC,
# TOPIC_PARTITIONS and CONSUMER_GROUP. The shell's own
# AWS_REGION is not read (CloudShell sets it to wherever it runs): the
# region is Terraform's, and must be the one in the brokers' host names,
# or MSK IAM tokens would be signed for the wrong region.
#
#   scripts/configure-aws-overlay.sh IMAGE_TAG
#
# Rerunnable: it rewrites the same files each time.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:?usage: $0 IMAGE_TAG (the tag the images were pushed with)}"
overlay="${OVERLAY_DIR:-k8s/overlays/aws}"

output() { terraform -chdir=infra-tf output -raw "$1"; }
brokers="${MSK_BOOTSTRAP_BROKERS:-$(output msk_bootstrap_brokers_iam)}"
region="${MSK_REGION:-$(output region)}"
topic="${KAFKA_TOPIC:-$(output topic)}"
partitions="${TOPIC_PARTITIONS:-$(output topic_partitions)}"
group="${CONSUMER_GROUP:-$(output consumer_group)}"
if [ -z "${ECR_REGISTRY:-}" ]; then
  # ecr_repository_urls.lagrate is REGISTRY/NAME/lagrate.
  ECR_REGISTRY="$(terraform -chdir=infra-tf output -json ecr_repository_urls | sed -E 's#.*"lagrate": *"([^"]+)/lagrate".*#\1#')"
fi

case "$brokers" in
  *:9098*) ;;
  *) echo "MSK_BOOTSTRAP_BROKERS must be the SASL/IAM brokers (port 9098), got: $brokers" >&2; exit 2 ;;
esac
# b-1.NAME.ID.c2.kafka.REGION.amazonaws.com:9098: every broker in the region.
for broker in ${brokers//,/ }; do
  case "$broker" in
    *".kafka.$region.amazonaws.com:"*) ;;
    *) echo "broker $broker is not in region $region (Terraform's output region, or MSK_REGION): MSK IAM tokens are signed for the brokers' region" >&2; exit 2 ;;
  esac
done
case "$tag" in
  *[!A-Za-z0-9_.-]*|"") echo "IMAGE_TAG must be a Docker tag ([A-Za-z0-9_.-]), got: $tag" >&2; exit 2 ;;
esac
for name in topic group; do
  value="${!name}"
  if ! [[ "$value" =~ ^[A-Za-z0-9._-]{1,245}$ ]]; then
    echo "the $name must be 1-245 characters of Kafka's [A-Za-z0-9._-] (the dead-letter topic adds -dlq), got: $value" >&2
    exit 2
  fi
done
if ! [[ "$partitions" =~ ^[1-9][0-9]{0,3}$ ]] || [ "$partitions" -gt 1000 ]; then
  echo "TOPIC_PARTITIONS must be a whole number from 1 to 1000, got: $partitions" >&2
  exit 2
fi

cat > "$overlay/msk.env" <<ENV
KAFKA_BOOTSTRAP_SERVERS=$brokers
KAFKA_AUTH=msk-iam
AWS_REGION=$region
KAFKA_TOPIC=$topic
ENV

# The names the IAM grants are scoped to, and the partitions the producer
# creates the topic with and the ScaledObject caps replicas at.
cat > "$overlay/workload-patch.yaml" <<YAML
# Written by scripts/configure-aws-overlay.sh from terraform output.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: trade-tx-consumer
  namespace: trading
spec:
  template:
    spec:
      containers:
        - name: consumer
          env:
            - name: CONSUMER_GROUP
              value: $group
            - name: DLQ_TOPIC
              value: $topic-dlq
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: trade-tx-producer
  namespace: trading
spec:
  template:
    spec:
      containers:
        - name: producer
          env:
            - name: TOPIC_PARTITIONS
              value: "$partitions"
YAML
cat > "$overlay/scaledobject-patch.yaml" <<YAML
# Written by scripts/configure-aws-overlay.sh from terraform output.
- op: replace
  path: /spec/maxReplicaCount
  value: $partitions
- op: replace
  path: /spec/triggers/0/metadata/consumerGroup
  value: $group
- op: replace
  path: /spec/triggers/0/metadata/topic
  value: $topic
YAML

{
  cat <<'YAML'
# lagrate on EKS: MSK with IAM auth (the pod's Pod Identity role), the inbound
# rate from the brokers' JMX exporter through kube-prometheus-stack.
# Written by scripts/configure-aws-overlay.sh; edit the policy here freely.
sampling:
  interval: 5s
  maxStaleness: 60s
clusters:
  main:
    bootstrapServers:
YAML
  tr ',' '\n' <<<"$brokers" | sed 's/^/      - /'
  cat <<YAML
    auth: { mechanism: msk-iam, region: $region }
prometheus:
  url: http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090
  # [2m] spans four of Prometheus's 30 s scrapes of the brokers' JMX exporter
  # (infra-tf/addons.tf): a failed scrape does not drop a broker from the sum.
  rateQuery: 'rate(kafka_server_BrokerTopicMetrics_Count{name="MessagesInPerSec",topic="<topic>"}[2m])'
limits:
  # The pod's 128Mi (k8s/base/lagrate/deployment.yaml) must hold every key
  # and entry at full windows: ~15 MB at start; per source key of 24
  # partitions ~36 KB (its full window ~20 KB, working or stopped:
  # cargo bench -p lagrate-policy --bench window_memory; its sampler and
  # newest samples ~15 KB, the sampling_keys bench); ~3 KB per ScaledObject
  # trigger (the getmetrics bench at 10,000 objects; /metrics is streamed,
  # not built whole): 15 + 2,000 x 0.036 + 10,000 x 0.003 = ~117 MB.
  # Measured: 2,000 keys with 5 triggers each at 395 s windows, 76.7 MB
  # (cargo bench -p lagrate --bench sampling_keys -- --max-keys 2000
  # --interval 10 --partitions 24 --objects-per-key 5 --history 120).
  # Beyond these a new ScaledObject gets ResourceExhausted naming the
  # limit, rather than both replicas being OOM-killed together. Raise them
  # with the memory limit.
  maxSourceKeys: 2000
  maxEntries: 10000
YAML
  # Keep the policies already in the file (tuned by the operator).
  if [ -f "$overlay/lagrate-config.yaml" ] && grep -q '^policies:' "$overlay/lagrate-config.yaml"; then
    sed -n '/^policies:/,$p' "$overlay/lagrate-config.yaml"
  else
    printf 'policies:\n  default: {}\n'
  fi
} > "$overlay/lagrate-config.yaml.new"
mv "$overlay/lagrate-config.yaml.new" "$overlay/lagrate-config.yaml"

sed -i -E \
  -e "s#^(    newName: ).*/(lagrate|trade-tx-consumer|trade-tx-producer)\$#\\1$ECR_REGISTRY/\\2#" \
  -e "s#^(    newTag: ).*#\\1$tag#" \
  "$overlay/kustomization.yaml"

echo "k8s/overlays/aws now points at $brokers ($region), topic $topic ($partitions partitions), group $group, images $ECR_REGISTRY/*:$tag"
