//! MSK IAM (SASL/OAUTHBEARER): librdkafka holds every request of a client
//! until the application serves that client's token-refresh event, which only
//! `poll()` does. lagrate's cluster clients are never polled for messages,
//! so they must serve it on their own, or nothing is ever sampled on MSK.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use testbed::{Process, eventually, free_port, http_get, offline_aws_credentials};

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

#[test]
fn cluster_client_signs_its_msk_iam_token_without_being_polled_for_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    // No broker listens there: the token is asked for when the client is
    // made, before any connection.
    std::fs::write(
        &config,
        format!(
            "sampling:\n  interval: 1s\n  maxStaleness: 5s\nclusters:\n  msk:\n    bootstrapServers: [\"127.0.0.1:{}\"]\n    auth: {{ mechanism: msk-iam, region: us-east-1 }}\n",
            free_port()
        ),
    )
    .expect("write config");
    let http_port = free_port();
    let mut lagrate = Process::start(
        LAGRATE,
        &[
            "serve",
            "--config",
            config.to_str().expect("utf-8 path"),
            "--grpc-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--http-listen",
            &format!("127.0.0.1:{http_port}"),
        ],
        &[
            offline_aws_credentials(),
            vec![("RUST_LOG", "info".to_owned())],
        ]
        .concat(),
    );
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    // /readyz makes a cluster client (no sample exists yet) and asks it for
    // metadata: not ready, as nothing listens, but its token is signed.
    let (status, _) = eventually(Duration::from_secs(20), "lagrate answers /readyz", || {
        let answer = http_get(http, "/readyz");
        (answer.0 != 0).then_some(answer)
    });
    assert_eq!(status, 503);
    eventually(
        Duration::from_secs(10),
        "the MSK IAM token is signed",
        || {
            lagrate
                .logs()
                .contains("MSK IAM token signed")
                .then_some(())
        },
    );
    lagrate.terminate(Duration::from_secs(10));
}
