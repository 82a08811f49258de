//! Which sampler a trigger reads: the cluster, group and topics of its
//! offsets, the Prometheus and Kubernetes sources it needs, and the
//! sampling settings, under the config in force. Triggers with equal keys
//! share one sampler.

use crate::config::Config;
use crate::error::ScalerError;
use std::time::Duration;

use crate::source::OffsetQuery;
use crate::source::kubernetes::{ScaleQuery, ScaleTarget, is_object_name};
use crate::source::prometheus::PrometheusSettings;
use crate::trigger::{ClusterRef, TriggerError, TriggerSpec};

/// Everything that identifies what a sampler reads and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub offsets: OffsetQuery,
    pub prometheus: Option<PrometheusSettings>,
    /// The scaled workload's size, from the Kubernetes API.
    pub scale: Option<ScaleQuery>,
    pub interval: Duration,
    pub window: Duration,
}

/// The sampler key of a trigger of a ScaledObject in `namespace` under
/// `config`.
pub fn source_key(
    spec: &TriggerSpec,
    config: &Config,
    namespace: &str,
) -> Result<SourceKey, ScalerError> {
    let cluster = match &spec.cluster {
        ClusterRef::Named(name) => {
            config
                .clusters
                .get(name)
                .cloned()
                .ok_or_else(|| TriggerError {
                    key: "cluster".into(),
                    message: format!("cluster {name:?} is not configured"),
                })?
        }
        ClusterRef::Inline(servers) => kafka_settings::ClusterSettings::plaintext(servers.clone()),
    };
    let mut topics = spec.topics.clone();
    if let Some(t) = topics.as_mut() {
        t.sort();
        t.dedup();
    }
    Ok(SourceKey {
        offsets: OffsetQuery {
            cluster,
            group: spec.group.clone(),
            topics,
            timeout: config.sampling.kafka_timeout,
        },
        prometheus: config.prometheus.clone(),
        scale: scale_query(spec, config, namespace)?,
        interval: config.sampling.interval,
        window: config.sampling.window,
    })
}

/// Where the trigger's `scaleTarget` is read, in the ScaledObject's
/// namespace; None without one.
fn scale_query(
    spec: &TriggerSpec,
    config: &Config,
    namespace: &str,
) -> Result<Option<ScaleQuery>, ScalerError> {
    let (Some(workload), Some(api)) = (&spec.scale_target, &config.kubernetes) else {
        return Ok(None);
    };
    if !is_object_name(namespace) {
        return Err(TriggerError {
            key: "scaleTarget".into(),
            message: format!(
                "the ScaledObject's namespace {} is not a Kubernetes namespace name",
                crate::trigger::quoted(namespace)
            ),
        }
        .into());
    }
    Ok(Some(ScaleQuery {
        target: ScaleTarget {
            namespace: namespace.to_owned(),
            workload: workload.clone(),
        },
        api: api.clone(),
    }))
}
