//! TLS for KEDA's calls, with a real TLS client: with a client CA a caller
//! without a certificate is refused and one with a certificate is served,
//! plaintext is refused, and a rotated server certificate is served without
//! a restart.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use lagrate_proto::external_scaler_client::ExternalScalerClient;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use testbed::{Lagrate, eventually, free_port, scaled_object};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

/// A CA: its PEM certificate and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate for `names`, signed by `ca`: (cert PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `text` to `path` in one step, as a Secret volume swaps its files.
fn replace(path: &Path, text: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

async fn call(
    lagrate: &Lagrate,
    trust: &Ca,
    identity: Option<&(String, String)>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&trust.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let url = lagrate.grpc_url().replace("http://", "https://");
    let channel: Channel = Endpoint::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let object = scaled_object("orders", &[("consumerGroup", "payments")]);
    ExternalScalerClient::new(channel)
        .get_metric_spec(object)
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_refuses_callers_without_a_certificate_and_serves_a_rotated_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, next_ca) = (ca("server"), ca("clients"), ca("rotated"));
    let server = leaf(&server_ca, &["localhost", "127.0.0.1"]);
    let keda = leaf(&client_ca, &["keda-operator"]);
    let (cert, key, clients) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    );
    replace(&cert, &server.0);
    replace(&key, &server.1);
    replace(&clients, &client_ca.pem);
    let path = |p: &Path| p.display().to_string();
    let lagrate = Lagrate::start_with_env(
        LAGRATE,
        &format!(
            "clusters:\n  main:\n    bootstrapServers: [\"127.0.0.1:{}\"]\n",
            free_port()
        ),
        vec![
            ("LAGRATE_TLS_CERT", path(&cert)),
            ("LAGRATE_TLS_KEY", path(&key)),
            ("LAGRATE_TLS_CLIENT_CA", path(&clients)),
        ],
    );

    call(&lagrate, &server_ca, Some(&keda))
        .await
        .expect("a caller with a client certificate is served");
    let refused = call(&lagrate, &server_ca, None).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let stranger = leaf(&next_ca, &["stranger"]);
    assert!(
        call(&lagrate, &server_ca, Some(&stranger)).await.is_err(),
        "a client certificate from another CA is refused"
    );
    let mut plain = ExternalScalerClient::connect(lagrate.grpc_url()).await;
    if let Ok(client) = plain.as_mut() {
        let object = scaled_object("orders", &[("consumerGroup", "payments")]);
        assert!(
            client.get_metric_spec(object).await.is_err(),
            "plaintext is refused"
        );
    }

    // cert-manager renews: new files under the same names, no restart.
    let rotated = leaf(&next_ca, &["localhost", "127.0.0.1"]);
    replace(&key, &rotated.1);
    replace(&cert, &rotated.0);
    let pid = lagrate.pid();
    eventually(
        Duration::from_secs(10),
        "the rotated certificate served",
        || {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(call(&lagrate, &next_ca, Some(&keda)))
            })
            .ok()
        },
    );
    assert_eq!(lagrate.pid(), pid, "served by the same process");
    assert!(
        call(&lagrate, &server_ca, Some(&keda)).await.is_err(),
        "the old certificate is no longer served"
    );
}

#[test]
fn tls_files_that_do_not_fit_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server");
    let (cert, _) = leaf(&server_ca, &["localhost"]);
    let (_, other_key) = leaf(&server_ca, &["localhost"]);
    std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), other_key).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "clusters:\n  main:\n    bootstrapServers: [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(LAGRATE)
        .current_dir(dir.path())
        .args([
            "serve",
            "--config=config.yaml",
            "--tls-cert=tls.crt",
            "--tls-key=tls.key",
        ])
        .arg(format!("--grpc-listen=127.0.0.1:{}", free_port()))
        .arg(format!("--http-listen=127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("tls.key") && stderr.contains("does not fit"),
        "{stderr}"
    );
}
