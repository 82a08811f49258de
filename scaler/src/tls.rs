//! TLS for KEDA's calls (`enableTLS` on the trigger): the server certificate
//! and key from files, re-read when they change on disk (cert-manager
//! rotates them in a mounted Secret) without a restart, and with a client
//! CA, mutual TLS: a caller without a certificate that CA signed is refused
//! during the handshake.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::listener::Connection;

/// A handshake that has not finished in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate, key and (for mTLS) the client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads the certificate chain and its key, checking that they match.
fn certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| invalid(&files.key, format!("not a PEM private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        invalid(
            &files.key,
            format!("does not fit {}: {e}", files.cert.display()),
        )
    })?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The server certificate, re-read when the certificate or key file
/// changes. A rotation caught half-written keeps the previous pair until
/// both files fit again.
#[derive(Debug)]
struct RotatingCert {
    files: TlsFiles,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl RotatingCert {
    fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = (modified(&files.cert), modified(&files.key));
        let key = certified_key(&files)?;
        Ok(Self {
            current: Mutex::new((stamps.0, stamps.1, key)),
            files,
        })
    }

    fn get(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().expect("certificate lock poisoned");
        let stamps = (modified(&self.files.cert), modified(&self.files.key));
        if (stamps.0, stamps.1) != (current.0, current.1) {
            match certified_key(&self.files) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    *current = (stamps.0, stamps.1, key);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded; serving the previous one");
                }
            }
        }
        current.2.clone()
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The TLS settings of the gRPC listener: HTTP/2 only, the rotating
/// certificate, and a required client certificate when a CA is given.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(ca, format!("not a CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| invalid(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(RotatingCert::load(files.clone())?));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The connections of `listener` after their TLS handshake, for tonic.
/// A failed or slow handshake (no client certificate, wrong CA, a silent
/// client) drops that connection only.
pub fn incoming(
    connections: impl futures::Stream<Item = std::io::Result<Connection>> + Send + 'static,
    config: ServerConfig,
) -> ReceiverStream<Result<TlsStream<Connection>, std::io::Error>> {
    use futures::StreamExt;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut connections = std::pin::pin!(connections);
        loop {
            let tcp = tokio::select! {
                accepted = connections.next() => match accepted {
                    Some(Ok(connection)) => connection,
                    // Failed accepts are paused on and retried upstream.
                    Some(Err(_)) => continue,
                    None => return,
                },
                _ = tx.closed() => return,
            };
            let peer = tcp.peer().ok();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(?peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
