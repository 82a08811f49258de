//! `kubernetes:`: how lagrate reads the size of the workloads it scales
//! (triggers that name `scaleTarget`). In a cluster the pod's own service
//! account is used without this section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::fields::{ConfigError, duration, invalid};
use crate::source::kubernetes::KubernetesSettings;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawKubernetes {
    /// Base URL of the API server, https://host:port (default: the
    /// cluster's own, from KUBERNETES_SERVICE_HOST and _PORT).
    api_server: Option<String>,
    /// File holding the bearer token, read again for every request
    /// (default: the pod's service account token).
    token_file: Option<String>,
    /// PEM bundle the API server's certificate is checked against
    /// (default: the pod's service account CA).
    ca_file: Option<String>,
    /// Deadline of each request, shorter than sampling.interval (default
    /// 2s, or 80 % of a shorter interval).
    timeout: Option<String>,
}

impl RawKubernetes {
    /// The API to read scales from: this section over the pod's own
    /// service account; None when neither names an API server.
    pub(super) fn validate(
        raw: Option<&Self>,
        interval: Duration,
    ) -> Result<Option<KubernetesSettings>, ConfigError> {
        let in_cluster = KubernetesSettings::in_cluster();
        let Some(raw) = raw else {
            return Ok(in_cluster.map(|k| KubernetesSettings {
                timeout: k.timeout.min(interval.mul_f64(0.8)),
                ..k
            }));
        };
        let api_server = match (&raw.api_server, &in_cluster) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(k)) => k.api_server.clone(),
            (None, None) => {
                return Err(invalid(
                    "kubernetes.apiServer",
                    "is needed outside a cluster (KUBERNETES_SERVICE_HOST is not set): give https://host:port",
                ));
            }
        };
        let url = reqwest::Url::parse(&api_server)
            .map_err(|e| invalid("kubernetes.apiServer", format!("must be an https URL: {e}")))?;
        if url.scheme() != "https" {
            return Err(invalid(
                "kubernetes.apiServer",
                "must be an https URL: the token is a credential",
            ));
        }
        let file = |given: &Option<String>, default: Option<PathBuf>, field: &str| {
            given
                .as_ref()
                .map(PathBuf::from)
                .or(default)
                .ok_or_else(|| invalid(field, "is needed outside a cluster: give a file path"))
        };
        let timeout = duration(
            "kubernetes.timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(2).min(interval.mul_f64(0.8)),
        )?;
        if timeout >= interval {
            return Err(invalid(
                "kubernetes.timeout",
                format!(
                    "must be shorter than sampling.interval ({}), or reads pile up",
                    humantime::format_duration(interval)
                ),
            ));
        }
        Ok(Some(KubernetesSettings {
            api_server,
            token_file: file(
                &raw.token_file,
                in_cluster.as_ref().map(|k| k.token_file.clone()),
                "kubernetes.tokenFile",
            )?,
            ca_file: file(
                &raw.ca_file,
                in_cluster.as_ref().map(|k| k.ca_file.clone()),
                "kubernetes.caFile",
            )?,
            timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn with(section: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(&format!(
            "clusters:\n  main:\n    bootstrapServers: [\"b:9092\"]\n{section}"
        ))
    }

    #[test]
    fn outside_a_cluster_the_api_is_named_in_full_over_https_or_not_used() {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            return; // in a pod every field has its in-cluster default
        }
        assert_eq!(with("").unwrap().kubernetes, None);
        let missing = with("kubernetes: {}\n").unwrap_err().to_string();
        assert!(missing.starts_with("kubernetes.apiServer:"), "{missing}");
        let plain = with("kubernetes:\n  apiServer: http://k:6443\n  tokenFile: t\n  caFile: c\n")
            .unwrap_err()
            .to_string();
        assert!(plain.contains("https"), "{plain}");
        let no_ca = with("kubernetes:\n  apiServer: https://k:6443/\n  tokenFile: t\n")
            .unwrap_err()
            .to_string();
        assert!(no_ca.starts_with("kubernetes.caFile:"), "{no_ca}");
        let api = with("kubernetes:\n  apiServer: https://k:6443/\n  tokenFile: t\n  caFile: c\n")
            .unwrap()
            .kubernetes
            .unwrap();
        assert_eq!(api.api_server, "https://k:6443");
        assert_eq!(api.timeout, std::time::Duration::from_secs(2));
    }
}
