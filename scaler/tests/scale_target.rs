//! `scaleTarget`: a scaler replica that has just started, on a broker that
//! reports no member count (tansu), holds the scaled workload's size read
//! from the Kubernetes API instead of answering Unavailable, then answers
//! the policy's need. No API server runs here: a small HTTPS server with a
//! test CA answers the one call lagrate makes (GET the `scale`
//! subresource, bearer token checked).

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lagrate_proto::GetMetricsRequest;
use lagrate_proto::external_scaler_client::ExternalScalerClient;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use testbed::{Lagrate, Tansu, eventually, scaled_object, unique};

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

/// The workload's scale, as the API server answers it.
const SCALE_PATH: &str = "/apis/apps/v1/namespaces/test/deployments/trade-consumer/scale";

/// What the stand-in API server holds and counts.
#[derive(Default)]
struct ApiState {
    replicas: AtomicU32,
    token: Mutex<String>,
    served: AtomicU32,
    refused: AtomicU32,
    stop: AtomicBool,
}

/// An HTTPS server on 127.0.0.1 answering GET `SCALE_PATH` with a Scale
/// object to callers that present the current bearer token; writes its
/// CA to `ca_file`.
fn scale_api(state: Arc<ApiState>, ca_file: &Path) -> SocketAddr {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(ca_file, ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        while !state.stop.load(Ordering::Relaxed) {
            let Ok((tcp, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            tcp.set_nonblocking(false).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let tls = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut stream = rustls::StreamOwned::new(tls, tcp);
            let _ = answer(&state, &mut stream);
        }
    });
    addr
}

/// Reads one request from `stream` and answers it.
fn answer<S: Read + Write>(state: &ApiState, stream: &mut S) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            let token = state.token.lock().unwrap();
            authorized = value.trim() == format!("Bearer {token}");
        }
    }
    drop(reader);
    let (status, body) = if request_line != format!("GET {SCALE_PATH} HTTP/1.1\r\n") {
        (
            "404 Not Found",
            String::from("{\"kind\":\"Status\",\"code\":404}"),
        )
    } else if !authorized {
        state.refused.fetch_add(1, Ordering::Relaxed);
        (
            "401 Unauthorized",
            String::from("{\"kind\":\"Status\",\"code\":401}"),
        )
    } else {
        state.served.fetch_add(1, Ordering::Relaxed);
        let replicas = state.replicas.load(Ordering::Relaxed);
        (
            "200 OK",
            format!(
                "{{\"kind\":\"Scale\",\"apiVersion\":\"autoscaling/v1\",\"spec\":{{\"replicas\":{replicas}}},\"status\":{{\"replicas\":{replicas}}}}}"
            ),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Writes `text` to `path` in one step, as a projected volume swaps its files.
fn replace(path: &Path, text: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_starting_replica_holds_the_workloads_scale_until_its_window_fills_then_answers_its_need()
{
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, token_file) = (dir.path().join("ca.crt"), dir.path().join("token"));
    let api = Arc::new(ApiState::default());
    api.replicas.store(20, Ordering::Relaxed);
    *api.token.lock().unwrap() = "first".into();
    replace(&token_file, "first\n");
    let addr = scale_api(api.clone(), &ca_file);

    // Lag 1200 on 12 partitions at lagThreshold 100: the need is 12 while
    // the HPA runs 20 (the other replica's answer before the lag fell).
    let broker = Tansu::start();
    let (topic, group) = (unique("orders"), unique("workers"));
    broker.create_topic(&topic, 12);
    broker.commit(&group, &topic, &(0..12).map(|p| (p, 0)).collect());
    broker.produce(&topic, 0..12, 100);
    // The deployed warm-up (Unavailable while the group's size is unknown).
    let config = format!(
        "sampling:\n  interval: 1s\n  maxStaleness: 4s\n  kafkaTimeout: 2s\nclusters:\n  local:\n    bootstrapServers: [\"{}\"]\n    auth: {{ mechanism: none }}\npolicies:\n  default:\n    startupSeconds: 1\n    rebalanceSeconds: 1\n    waitObjectiveSeconds: 1\nkubernetes:\n  apiServer: https://localhost:{}\n  tokenFile: {}\n  caFile: {}\n",
        broker.bootstrap(),
        addr.port(),
        token_file.display(),
        ca_file.display()
    );
    let lagrate = Lagrate::start(LAGRATE, &config);
    let object = scaled_object(
        "books",
        &[
            ("cluster", "local"),
            ("consumerGroup", &group),
            ("topic", &topic),
            ("lagThreshold", "100"),
            ("scaleTarget", "deployment/trade-consumer"),
        ],
    );
    let mut client = ExternalScalerClient::connect(lagrate.grpc_url())
        .await
        .unwrap();
    let request = GetMetricsRequest {
        scaled_object_ref: Some(object),
        metric_name: "lagrate-books".into(),
    };

    // From the first sample that carries the scale, through the first
    // history and the stabilization window (3 s each), the answer is the
    // workload's 20, never lower; then the need, 12.
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(20) && answers.last() != Some(&12) {
        match client.get_metrics(request.clone()).await {
            Ok(response) => answers.push(response.into_inner().metric_values[0].metric_value),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(
                    answers.is_empty(),
                    "Unavailable after answering: {status:?} after {answers:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let held = answers.iter().take_while(|&&a| a == 20).count();
    assert!(
        held >= 10,
        "holds the workload's 20 through its first history: {answers:?}"
    );
    assert_eq!(answers.last(), Some(&12), "then the need: {answers:?}");
    assert!(
        answers.windows(2).all(|w| w[1] <= w[0]),
        "only falls while the lag holds: {answers:?}"
    );
    let (status, body) = lagrate.http_get("/debug/decisions");
    assert_eq!(status, 200);
    let decisions: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        decisions["test/books"]["evaluation"]["observation"]["targetReplicas"], 20,
        "{decisions}"
    );

    // A rotated token is read again: calls with it are served.
    replace(&token_file, "second\n");
    *api.token.lock().unwrap() = "second".into();
    let served = api.served.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "served with the rotated token",
        || (api.served.load(Ordering::Relaxed) >= served + 2).then_some(()),
    );
    api.stop.store(true, Ordering::Relaxed);
}
