//! What the consumer's integration tests share: starting trade-consumer.

use testbed::Process;

pub const CONSUMER: &str = env!("CARGO_BIN_EXE_trade-consumer");

/// trade-consumer reading `topic` as `group` from `bootstrap` on the
/// simulated sink (writes take no time), partial batches written after
/// 0.2 s, /metrics on `port`, with `settings` on top (the later of two
/// values of a variable wins).
pub fn consumer(
    bootstrap: &str,
    (topic, group): (&str, &str),
    port: u16,
    settings: &[(&'static str, &str)],
) -> Process {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
        ("KAFKA_TOPIC", topic.to_owned()),
        ("CONSUMER_GROUP", group.to_owned()),
        ("BATCH_PROCESSING_TIME", "0".into()),
        ("BATCH_TIMEOUT_SECONDS", "0.2".into()),
        ("METRICS_PORT", port.to_string()),
    ];
    env.extend(settings.iter().map(|&(k, v)| (k, v.to_owned())));
    Process::start(CONSUMER, &[], &env)
}
