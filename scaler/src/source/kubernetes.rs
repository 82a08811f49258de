//! The size of the workload a trigger scales, from the Kubernetes API:
//! `spec.replicas` of the `scale` subresource of the Deployment or
//! StatefulSet the trigger names (`scaleTarget`). Where the broker reports
//! no member count, a scaler replica that has just started holds at least
//! that size while its window fills, instead of answering Unavailable.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Backend, SourceError};

/// How to reach the Kubernetes API (the config file's `kubernetes`, or the
/// pod's own service account when lagrate runs in a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubernetesSettings {
    /// Base URL of the API server, https://host:port.
    pub api_server: String,
    /// Bearer token, read again for every request (projected tokens rotate).
    pub token_file: PathBuf,
    /// CA bundle the API server's certificate is checked against.
    pub ca_file: PathBuf,
    /// Deadline of each request.
    pub timeout: Duration,
}

/// Where the service account's token and CA are mounted in a pod.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl KubernetesSettings {
    /// The pod's own service account, when lagrate runs in a cluster
    /// (`KUBERNETES_SERVICE_HOST` is set); None elsewhere.
    pub fn in_cluster() -> Option<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        // An IPv6 service address needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Some(Self::service_account(format!("https://{host}:{port}")))
    }

    /// `api_server`, with the pod's service account token and CA.
    pub fn service_account(api_server: String) -> Self {
        Self {
            api_server,
            token_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("token"),
            ca_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt"),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The kinds of workload whose scale lagrate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
}

/// The workload a trigger names with `scaleTarget`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub kind: TargetKind,
    pub name: String,
}

/// That workload in the ScaledObject's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScaleTarget {
    pub namespace: String,
    pub workload: Workload,
}

/// What a sampler reads the scale of, and where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScaleQuery {
    pub target: ScaleTarget,
    pub api: KubernetesSettings,
}

/// Longest Kubernetes object name (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// Whether `name` is a legal Kubernetes object name (DNS subdomain):
/// lower-case alphanumerics, `-` and `.`, starting and ending alphanumeric.
/// Every name that reaches a URL path passed this.
pub fn is_object_name(name: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    name.len() <= MAX_NAME_LEN
        && edge(name.as_bytes().first())
        && edge(name.as_bytes().last())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl Workload {
    /// Parses a trigger's `scaleTarget`: `NAME` or `deployment/NAME` (a
    /// Deployment) or `statefulset/NAME`. The error says what is allowed.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let (kind, name) = match value.split_once('/') {
            None => (TargetKind::Deployment, value),
            Some((kind, name)) => match kind.to_ascii_lowercase().as_str() {
                "deployment" | "deployments" => (TargetKind::Deployment, name),
                "statefulset" | "statefulsets" => (TargetKind::StatefulSet, name),
                _ => {
                    return Err(format!(
                        "scaleTarget kind must be deployment or statefulset, got {kind:?}"
                    ));
                }
            },
        };
        if !is_object_name(name) {
            return Err(format!(
                "scaleTarget must be NAME, deployment/NAME or statefulset/NAME with a Kubernetes object name (lower-case letters, digits, '-' and '.'), got {name:?}"
            ));
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
}

impl ScaleTarget {
    /// The scale subresource's path on the API server.
    pub fn path(&self) -> String {
        let resource = match self.workload.kind {
            TargetKind::Deployment => "deployments",
            TargetKind::StatefulSet => "statefulsets",
        };
        format!(
            "/apis/apps/v1/namespaces/{}/{resource}/{}/scale",
            self.namespace, self.workload.name
        )
    }
}

#[derive(Deserialize)]
struct Scale {
    spec: ScaleSpec,
}

#[derive(Deserialize)]
struct ScaleSpec {
    /// Absent when zero (the API omits empty fields).
    #[serde(default)]
    replicas: u32,
}

/// Largest scale answer read: a Scale object is a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads one target's scale.
#[derive(Debug, Clone)]
pub struct ScaleReader {
    client: reqwest::Client,
    url: String,
    token_file: PathBuf,
}

fn error(what: impl std::fmt::Display) -> SourceError {
    SourceError::unavailable(Backend::Kubernetes, what)
}

impl ScaleReader {
    /// A reader of the query's scale; fails when the CA bundle cannot be read.
    pub fn new(query: &ScaleQuery) -> Result<Self, SourceError> {
        let settings = &query.api;
        let ca = std::fs::read(&settings.ca_file).map_err(|e| {
            error(format!(
                "cannot read the API server's CA {}: {e}",
                settings.ca_file.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&ca).map_err(|e| {
            error(format!(
                "{} is not a PEM CA bundle: {e}",
                settings.ca_file.display()
            ))
        })?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .tls_certs_only(certs)
            .build()
            .map_err(|e| error(format!("cannot build the API client: {e}")))?;
        Ok(Self {
            client,
            url: format!(
                "{}{}",
                settings.api_server.trim_end_matches('/'),
                query.target.path()
            ),
            token_file: settings.token_file.clone(),
        })
    }

    /// The target's `spec.replicas`: the size the HPA last set.
    pub async fn replicas(&self) -> Result<u32, SourceError> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            error(format!(
                "cannot read the service account token {}: {e}",
                self.token_file.display()
            ))
        })?;
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| SourceError::from_http(Backend::Kubernetes, &self.url, &e))?;
        let status = response.status();
        let body = super::prometheus::read_at_most(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| error(format!("{}: {e}", self.url)))?;
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 => " (the token was refused)",
                403 => " (lagrate's service account needs get on the target's scale subresource)",
                404 => " (no such workload: check scaleTarget and the ScaledObject's namespace)",
                _ => "",
            };
            return Err(SourceError::from_status(
                Backend::Kubernetes,
                status.as_u16(),
                format!("{}: HTTP {status}{hint}", self.url),
            ));
        }
        let scale: Scale = serde_json::from_slice(&body)
            .map_err(|e| error(format!("{}: not a Scale object: {e}", self.url)))?;
        Ok(scale.spec.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_target_is_a_name_or_a_kind_and_a_name_in_the_scaled_objects_namespace() {
        let target = |value: &str| ScaleTarget {
            namespace: "trading".into(),
            workload: Workload::parse(value).unwrap(),
        };
        assert_eq!(
            target("trade-tx-consumer").path(),
            "/apis/apps/v1/namespaces/trading/deployments/trade-tx-consumer/scale"
        );
        assert_eq!(
            target("StatefulSet/sink-0.v2").path(),
            "/apis/apps/v1/namespaces/trading/statefulsets/sink-0.v2/scale"
        );
        for bad in [
            "",
            "Trade",
            "a/../../b",
            "job/x",
            "x?y",
            "-x",
            "deployment/",
        ] {
            let err = Workload::parse(bad).unwrap_err();
            assert!(err.contains("scaleTarget"), "{bad}: {err}");
        }
    }
}
