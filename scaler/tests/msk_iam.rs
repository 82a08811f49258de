//! MSK IAM (SASL/OAUTHBEARER): librdkafka holds every request of a client
//! until the application serves that client's token-refresh event, which only
//! `poll()` does. lagrate's cluster clients are never polled for messages,
//! so they must serve it on their own, or nothing is ever sampled on MSK.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use testbed::{Lagrate, eventually, free_port, offline_aws_credentials};

const LAGRATE: &str = env!("CARGO_BIN_EXE_lagrate");

#[test]
fn cluster_client_signs_its_msk_iam_token_without_being_polled_for_messages() {
    // No broker listens there: the token is asked for when the client is
    // made, before any connection.
    let lagrate = Lagrate::start_with_env(
        LAGRATE,
        &format!(
            "sampling:\n  interval: 1s\n  maxStaleness: 5s\nclusters:\n  msk:\n    bootstrapServers: [\"127.0.0.1:{}\"]\n    auth: {{ mechanism: msk-iam, region: us-east-1 }}\n",
            free_port()
        ),
        offline_aws_credentials(),
    );
    // /readyz makes a cluster client (no sample exists yet) and asks it for
    // metadata: not ready, as nothing listens, but its token is signed.
    assert_eq!(lagrate.http_get("/readyz").0, 503);
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
    // Later probes reuse that client: no new client, no new token.
    for _ in 0..3 {
        assert_eq!(lagrate.http_get("/readyz").0, 503);
    }
    assert_eq!(
        lagrate.logs().matches("MSK IAM token signed").count(),
        1,
        "{}",
        lagrate.logs()
    );
}
