//! The raw shape of the `shadow:` entries. The config keeps them as they
//! were written; shadow mode checks each one (see `crate::shadow::target`),
//! so that a bad entry is rejected on its own and the others run.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawShadow {
    /// Names the target in metrics and /debug/shadow.
    pub name: String,
    /// A configured cluster (default: the only one configured).
    pub cluster: Option<String>,
    pub consumer_group: String,
    /// Topic, or comma-separated topics (default: all the group commits to).
    pub topic: Option<String>,
    /// A named policy of `policies` (default `default`).
    pub policy: Option<String>,
    /// Further trigger metadata, as on a ScaledObject (policy overrides
    /// such as `podCapacity: "100"`).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The KEDA kafka trigger run today; KEDA's and the HPA's defaults when
    /// omitted.
    #[serde(default)]
    pub keda: RawKeda,
    /// PromQL whose value is the group's actual size (needs `prometheus`),
    /// e.g. kube-state-metrics' `kube_deployment_status_replicas{...}`;
    /// default: the member count the broker reports.
    pub actual_query: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawKeda {
    pub lag_threshold: Option<f64>,
    pub min_replica_count: Option<u32>,
    pub max_replica_count: Option<u32>,
    /// Seconds.
    pub polling_interval: Option<f64>,
    /// Seconds.
    pub cooldown_period: Option<f64>,
}
