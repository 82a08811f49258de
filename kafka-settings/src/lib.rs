//! How lagrate's services connect to Kafka (Amazon MSK or any broker).
//!
//! [`ClusterSettings`] holds bootstrap servers, TLS and authentication, is
//! read from the scaler's config file (serde, camelCase) or built by the
//! workloads from their environment, and turns into an rdkafka
//! [`ClientConfig`] with [`ClusterSettings::client_config`]. Every client is
//! created with [`KafkaContext`], which answers librdkafka's OAUTHBEARER
//! refresh callback with Amazon MSK IAM tokens when `auth` is `msk-iam`.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::ConsumerContext;
use serde::Deserialize;

/// Errors in settings; each names the field and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("bootstrapServers must list at least one host:port")]
    NoBootstrapServers,
    #[error("bootstrapServers entry {0:?} is not host:port")]
    BadBootstrapServer(String),
    #[error("auth.passwordEnv names {0}, which is not set in the environment")]
    MissingPasswordEnv(String),
    #[error("auth.passwordFile {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Connection settings of one Kafka cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSettings {
    /// `host:port` of one or more brokers.
    pub bootstrap_servers: Vec<String>,
    /// TLS to the brokers. Implied by `scram-sha-512` and `msk-iam`.
    #[serde(default)]
    pub tls: Tls,
    /// How the client authenticates.
    #[serde(default)]
    pub auth: Auth,
}

/// TLS settings; the system trust store is used unless `caFile` is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub enabled: bool,
    /// PEM file of the CA that signed the brokers' certificates.
    pub ca_file: Option<PathBuf>,
}

/// Authentication mechanism: `none`, `scram-sha-512` or `msk-iam`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mechanism", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Auth {
    /// Plaintext (or TLS without client authentication).
    #[default]
    None,
    /// SASL/SCRAM-SHA-512 over TLS. The password never sits in the config
    /// file: it is read from an environment variable or a mounted file.
    #[serde(
        rename = "scram-sha-512",
        alias = "scram-sha512",
        rename_all = "camelCase"
    )]
    ScramSha512 {
        username: String,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
    },
    /// Amazon MSK IAM: SASL/OAUTHBEARER over TLS with tokens signed by the
    /// AWS default credential chain (Pod Identity on EKS).
    #[serde(rename_all = "camelCase")]
    MskIam { region: String },
}

impl ClusterSettings {
    /// Settings for plaintext brokers at `bootstrap_servers`.
    pub fn plaintext(bootstrap_servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into_iter().map(Into::into).collect(),
            tls: Tls::default(),
            auth: Auth::None,
        }
    }

    /// Settings of a workload from its environment: `bootstrap` plus
    /// `KAFKA_AUTH` (`none`, `scram-sha-512`, `msk-iam`), `KAFKA_SASL_USERNAME`,
    /// `KAFKA_SASL_PASSWORD` (or `KAFKA_SASL_PASSWORD_FILE`), `AWS_REGION`,
    /// `KAFKA_TLS` (`true` for TLS without SASL) and `KAFKA_CA_FILE`.
    pub fn from_env(bootstrap: &str) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let auth = match var("KAFKA_AUTH").as_deref().unwrap_or("none") {
            "none" => Auth::None,
            "scram-sha-512" => Auth::ScramSha512 {
                username: var("KAFKA_SASL_USERNAME")
                    .ok_or("KAFKA_SASL_USERNAME is required with KAFKA_AUTH=scram-sha-512")?,
                password_env: Some("KAFKA_SASL_PASSWORD".into()),
                password_file: var("KAFKA_SASL_PASSWORD_FILE").map(PathBuf::from),
            },
            "msk-iam" => Auth::MskIam {
                region: var("AWS_REGION")
                    .ok_or("AWS_REGION is required with KAFKA_AUTH=msk-iam")?,
            },
            other => {
                return Err(format!(
                    "KAFKA_AUTH must be none, scram-sha-512 or msk-iam, got {other:?}"
                ));
            }
        };
        let tls = Tls {
            enabled: match var("KAFKA_TLS").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(format!("KAFKA_TLS must be true or false, got {other:?}"));
                }
            },
            ca_file: var("KAFKA_CA_FILE").map(PathBuf::from),
        };
        let settings = ClusterSettings {
            bootstrap_servers: bootstrap
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            tls,
            auth,
        };
        settings
            .validate()
            .map_err(|e| format!("KAFKA_BOOTSTRAP_SERVERS: {e}"))?;
        Ok(settings)
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.bootstrap_servers.is_empty() {
            return Err(SettingsError::NoBootstrapServers);
        }
        for server in &self.bootstrap_servers {
            let port_ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(SettingsError::BadBootstrapServer(server.clone()));
            }
        }
        if let Auth::ScramSha512 { .. } = &self.auth {
            self.scram_password()?;
        }
        Ok(())
    }

    /// An rdkafka config with connection, TLS and SASL settings applied.
    /// Callers add their role's settings (group id, acks, ...) on top.
    pub fn client_config(&self) -> Result<ClientConfig, SettingsError> {
        self.validate()?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers.join(","));
        let tls = self.tls.enabled || !matches!(self.auth, Auth::None);
        let protocol = match (&self.auth, tls) {
            (Auth::None, false) => "plaintext",
            (Auth::None, true) => "ssl",
            (_, _) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(ca) = &self.tls.ca_file {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        match &self.auth {
            Auth::None => {}
            Auth::ScramSha512 { username, .. } => {
                config
                    .set("sasl.mechanism", "SCRAM-SHA-512")
                    .set("sasl.username", username)
                    .set("sasl.password", self.scram_password()?);
            }
            Auth::MskIam { .. } => {
                config.set("sasl.mechanism", "OAUTHBEARER");
            }
        }
        Ok(config)
    }

    /// The context every client of this cluster is created with.
    pub fn context(&self) -> KafkaContext {
        KafkaContext {
            msk_region: match &self.auth {
                Auth::MskIam { region } => Some(region.clone()),
                _ => None,
            },
        }
    }

    fn scram_password(&self) -> Result<String, SettingsError> {
        let Auth::ScramSha512 {
            password_env,
            password_file,
            ..
        } = &self.auth
        else {
            return Ok(String::new());
        };
        if let Some(path) = password_file {
            return std::fs::read_to_string(path)
                .map(|s| s.trim_end().to_owned())
                .map_err(|source| SettingsError::PasswordFile {
                    path: path.clone(),
                    source,
                });
        }
        let var = password_env.as_deref().unwrap_or("KAFKA_SASL_PASSWORD");
        std::env::var(var).map_err(|_| SettingsError::MissingPasswordEnv(var.to_owned()))
    }
}

/// How long `ensure_topic` keeps asking before it gives up.
const ENSURE_TOPIC_DEADLINE: Duration = Duration::from_secs(10);

/// Fails fast with a message naming the environment variable when the
/// brokers cannot be reached or `topic` does not exist. Between attempts it
/// calls `serve_events`: a client that nobody polls yet (a consumer before
/// its loop) must serve librdkafka's events there, or with MSK IAM a token
/// that failed to sign at first is never signed again.
pub fn ensure_topic<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    bootstrap: &str,
    serve_events: impl FnMut(),
) -> Result<(), String> {
    ensure_topic_of(client, (topic, "KAFKA_TOPIC"), bootstrap, serve_events)
}

/// [`ensure_topic`] for a topic another variable names (e.g. DLQ_TOPIC).
pub fn ensure_topic_of<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    (topic, variable): (&str, &str),
    bootstrap: &str,
    mut serve_events: impl FnMut(),
) -> Result<(), String> {
    serve_events();
    tracing::info!(bootstrap, topic, "checking that the topic exists");
    let attempts = 5;
    let mut last_error = None;
    for _ in 0..attempts {
        match client.fetch_metadata(Some(topic), ENSURE_TOPIC_DEADLINE / attempts) {
            Ok(metadata) => {
                let found = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
                if !found {
                    return Err(format!(
                        "topic {topic} ({variable}) does not exist on {bootstrap}; create it first"
                    ));
                }
                return Ok(());
            }
            Err(e) => {
                last_error = Some(e);
                serve_events();
            }
        }
    }
    Err(format!(
        "cannot reach Kafka at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS): {}",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// rdkafka client context: logs through `tracing` and, for MSK IAM, signs
/// OAUTHBEARER tokens. librdkafka asks for a new token before the old one
/// expires (at 80% of its lifetime), so tokens are refreshed in time.
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    msk_region: Option<String>,
}

/// Lifetime MSK accepts for a signed token; the signer reports the exact
/// expiry, this is the fallback if it does not.
const MSK_TOKEN_LIFETIME: Duration = Duration::from_secs(900);

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(region) = self.msk_region.clone() else {
            return Err("OAUTHBEARER is only supported with auth.mechanism msk-iam".into());
        };
        // librdkafka may call this from a thread that is inside a Tokio
        // runtime (a consumer's poll); sign on a thread of our own.
        let signed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(aws_msk_iam_sasl_signer::generate_auth_token(
                    aws_types::region::Region::new(region),
                ))
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .join()
        .map_err(|_| "MSK IAM token signer panicked")?;
        let (token, expiry_ms) = signed.inspect_err(|e| {
            tracing::warn!(error = %e, "MSK IAM token signing failed; check the pod's AWS credentials (EKS Pod Identity)");
        })?;
        let lifetime_ms = if expiry_ms > 0 {
            expiry_ms
        } else {
            unix_ms() + MSK_TOKEN_LIFETIME.as_millis() as i64
        };
        // Once per token (about every 12 minutes): shows the refresh is served.
        tracing::info!(expires_at_ms = lifetime_ms, "MSK IAM token signed");
        Ok(OAuthToken {
            token,
            principal_name: "msk-iam".to_owned(),
            lifetime_ms,
        })
    }
}

impl ConsumerContext for KafkaContext {}

/// Implements rdkafka's `ClientContext` for a service's own context type by
/// handing OAUTHBEARER token requests (MSK IAM) to its [`KafkaContext`]
/// field, so every client of every service signs tokens the same way:
/// `kafka_settings::forward_client_context!(GroupContext, kafka);`
#[macro_export]
macro_rules! forward_client_context {
    ($context:ty, $field:ident) => {
        impl ::rdkafka::client::ClientContext for $context {
            const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

            fn generate_oauth_token(
                &self,
                config: Option<&str>,
            ) -> Result<::rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
                ::rdkafka::client::ClientContext::generate_oauth_token(&self.$field, config)
            }
        }
    };
}

/// A producer whose events (delivery reports, MSK IAM token refreshes)
/// are served by a thread of its own, blocked until one comes. rdkafka's
/// `ThreadedProducer` and `FutureProducer` poll in 100 ms slices whose last
/// millisecond spins (the remaining time is rounded down to 0 ms): 1 % of
/// a core in every pod, idle or not. The producer lives as long as the
/// process; `flush` it before exiting.
pub fn served_producer<C>(
    config: &rdkafka::ClientConfig,
    context: C,
    thread_name: &str,
) -> Result<
    std::sync::Arc<rdkafka::producer::BaseProducer<C>>,
    Box<dyn std::error::Error + Send + Sync>,
>
where
    C: rdkafka::producer::ProducerContext + 'static,
{
    let producer: std::sync::Arc<rdkafka::producer::BaseProducer<C>> =
        std::sync::Arc::new(config.create_with_context(context)?);
    let served = std::sync::Arc::clone(&producer);
    std::thread::Builder::new()
        .name(thread_name.to_owned())
        // Never returns: a Timeout::Never poll serves events until exit.
        .spawn(move || served.poll(rdkafka::util::Timeout::Never))?;
    Ok(producer)
}

/// Milliseconds since the Unix epoch: token expiries, trade timestamps and
/// message ages are wall-clock time.
#[allow(clippy::disallowed_methods)] // the I/O boundary of the services' wall clock
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msk_iam_uses_sasl_ssl_oauthbearer() {
        let settings = ClusterSettings {
            auth: Auth::MskIam {
                region: "eu-west-1".into(),
            },
            ..ClusterSettings::plaintext(["b-1.msk:9098"])
        };
        let config = settings.client_config().unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(settings.context().msk_region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn scram_reads_password_from_file_not_config() {
        let dir = std::env::temp_dir().join(format!("kafka-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let settings = ClusterSettings {
            auth: Auth::ScramSha512 {
                username: "svc".into(),
                password_env: None,
                password_file: Some(file),
            },
            ..ClusterSettings::plaintext(["b-1:9096"])
        };
        let config = settings.client_config().unwrap();
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
    }

    #[test]
    fn bad_bootstrap_server_is_named() {
        let err = ClusterSettings::plaintext(["localhost"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("\"localhost\""), "{err}");
        assert!(matches!(
            ClusterSettings::plaintext(Vec::<String>::new()).validate(),
            Err(SettingsError::NoBootstrapServers)
        ));
    }

    #[test]
    fn auth_parses_from_yaml_shape() {
        let auth: Auth = serde_json_like(r#"{"mechanism":"none"}"#);
        assert_eq!(auth, Auth::None);
        let auth: Auth = serde_json_like(r#"{"mechanism":"msk-iam","region":"us-east-1"}"#);
        assert_eq!(
            auth,
            Auth::MskIam {
                region: "us-east-1".into()
            }
        );
    }

    fn serde_json_like<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).unwrap()
    }
}
