//! trade-producer and trade-consumer on a real tansu broker and a real
//! PostgreSQL: crashes, joins and graceful leaves lose nothing and
//! duplicate nothing, and each account's trades stay in order.

// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use testbed::{Postgres, Process, Tansu, eventually, free_port, http_get, unique};

mod common;

use common::CONSUMER;

fn producer_bin() -> String {
    // Built by the workspace next to this crate's binary.
    std::path::Path::new(CONSUMER)
        .with_file_name("trade-producer")
        .to_string_lossy()
        .into_owned()
}

fn consumer(broker: &Tansu, topic: &str, group: &str, db: &Postgres) -> Process {
    consumer_on(broker, topic, group, db, free_port())
}

/// [`consumer`] with /metrics on `port`.
fn consumer_on(broker: &Tansu, topic: &str, group: &str, db: &Postgres, port: u16) -> Process {
    let (dlq, url) = (format!("{topic}-dlq"), db.url());
    common::consumer(
        &broker.bootstrap(),
        (topic, group),
        port,
        &[
            ("DLQ_TOPIC", &dlq),
            ("BATCH_SIZE", "50"),
            ("BATCH_TIMEOUT_SECONDS", "0.3"),
            ("SINK", "postgres"),
            ("DATABASE_URL", &url),
        ],
    )
}

/// trade-producer at `rate` msg/s for `seconds` over `accounts` accounts.
fn producer(broker: &Tansu, topic: &str, (rate, seconds): (&str, &str), accounts: &str) -> Process {
    Process::start(
        &producer_bin(),
        &[
            "--rate",
            rate,
            "--duration-seconds",
            seconds,
            "--accounts",
            accounts,
        ],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", topic.to_owned()),
            ("METRICS_PORT", free_port().to_string()),
        ],
    )
}

/// Waits until a consumer logs a non-empty assignment.
fn wait_assigned(consumer: &Process) {
    testbed::eventually(Duration::from_secs(60), "a partition assignment", || {
        consumer
            .logs()
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.contains("partitions=[]"))
            .then_some(())
    });
}

/// Waits until the table holds exactly `produced` distinct trades, then
/// checks that, per account, rows were first written in sequence order.
fn assert_stored_once_in_account_order(db: &Postgres, produced: i64, consumers: &[&Process]) {
    let mut client = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored: i64 = client
            .query_one("SELECT count(*) FROM trades", &[])
            .unwrap()
            .get(0);
        if stored == produced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} of {produced} trades stored\n{}",
            consumers
                .iter()
                .map(|c| c.logs())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let distinct: i64 = client
        .query_one("SELECT count(DISTINCT trade_id) FROM trades", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        distinct, produced,
        "exactly the produced trades, no duplicates"
    );
    // Per account, in the order rows were first written, sequence numbers rise.
    let rows = client
        .query(
            "SELECT account_id, account_seq FROM trades ORDER BY insert_seq",
            &[],
        )
        .unwrap();
    let mut last: HashMap<String, i64> = HashMap::new();
    for row in rows {
        let (account, seq): (String, i64) = (row.get(0), row.get(1));
        let previous = last.insert(account.clone(), seq).unwrap_or(0);
        assert_eq!(
            seq,
            previous + 1,
            "account {account}: {seq} written after {previous}"
        );
    }
}

#[test]
fn a_postgres_outage_under_load_is_ridden_out_and_sigterm_is_honoured_while_retrying() {
    let broker = Tansu::start();
    let mut db = Postgres::start();
    let topic = unique("trades");
    let group = unique("settlement");
    broker.create_topic(&topic, 4);
    let a_port = free_port();
    let mut a = consumer_on(&broker, &topic, &group, &db, a_port);
    wait_assigned(&a);
    let mut b = consumer(&broker, &topic, &group, &db);
    wait_assigned(&b);
    let mut producer = producer(&broker, &topic, ("300", "45"), "100");
    std::thread::sleep(Duration::from_secs(5));
    // Down for 30 s under load: the consumers retry, and one asked to
    // stop meanwhile leaves within its grace period, its failing batch
    // uncommitted for the other.
    db.stop();
    std::thread::sleep(Duration::from_secs(5));
    let stopping = Instant::now();
    let status = b.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "SIGTERM while retrying: {status:?}\n{}",
        b.logs()
    );
    assert!(stopping.elapsed() < Duration::from_secs(10));
    // The group is served while the writes fail: the remaining member takes
    // over the partitions of the one that left before the database is back.
    let assignments = |p: &Process| p.logs().matches("partitions assigned").count();
    eventually(
        Duration::from_secs(15),
        "a rebalance during the outage",
        || (assignments(&a) >= 2).then_some(()),
    );
    // A member KEDA adds during the outage is given partitions at once,
    // not when the database is back.
    let joining = Instant::now();
    let mut c = consumer(&broker, &topic, &group, &db);
    wait_assigned(&c);
    assert!(
        joining.elapsed() < Duration::from_secs(20),
        "a member joining during the outage waited {:?} for partitions\n{}",
        joining.elapsed(),
        c.logs()
    );
    std::thread::sleep(Duration::from_secs(5));
    db.restart();
    assert!(
        producer.wait(Duration::from_secs(90)).success(),
        "{}",
        producer.logs()
    );
    let produced: i64 = broker.high_watermarks(&topic).iter().sum();
    assert!(produced > 10_000, "only {produced} trades produced");
    assert_stored_once_in_account_order(&db, produced, &[&a, &c]);
    assert!(
        a.logs().contains("reconnected to PostgreSQL"),
        "{}",
        a.logs()
    );
    // Served through the outage, yet no batch outgrew BATCH_SIZE (50):
    // the partitions whose next batch filled were paused.
    let (_, m) = http_get(
        std::net::SocketAddr::from(([127, 0, 0, 1], a_port)),
        "/metrics",
    );
    let value = |prefix: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let batches = value("kafka_consumer_batch_messages_count");
    assert!(batches > 0.0, "{m}");
    assert_eq!(
        value("kafka_consumer_batch_messages_bucket{le=\"50.0\"}"),
        batches,
        "{m}"
    );
    assert!(a.terminate(Duration::from_secs(20)).success());
    assert!(c.terminate(Duration::from_secs(20)).success());
}

#[test]
fn a_hung_database_holds_no_write_past_sigterm_and_loses_nothing() {
    let broker = Tansu::start();
    let db = Postgres::start();
    let topic = unique("trades");
    let group = unique("settlement");
    broker.create_topic(&topic, 4);
    let mut a = consumer(&broker, &topic, &group, &db);
    wait_assigned(&a);
    let mut producer = producer(&broker, &topic, ("200", "20"), "50");
    std::thread::sleep(Duration::from_secs(4));
    // The database hangs mid-load: it neither answers nor closes, so no
    // error ever ends the write in hand.
    db.freeze();
    std::thread::sleep(Duration::from_secs(4));
    let stopping = Instant::now();
    a.terminate(Duration::from_secs(30));
    let took = stopping.elapsed();
    db.thaw();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?} with the database hung\n{}",
        a.logs()
    );
    // What it had not stored it had not committed: once its session has
    // expired (10 s), a new member takes the partitions and every trade is
    // stored exactly once.
    std::thread::sleep(Duration::from_secs(12));
    let b = consumer(&broker, &topic, &group, &db);
    assert!(
        producer.wait(Duration::from_secs(60)).success(),
        "{}",
        producer.logs()
    );
    let produced: i64 = broker.high_watermarks(&topic).iter().sum();
    assert!(produced > 2_000, "only {produced} trades produced");
    assert_stored_once_in_account_order(&db, produced, &[&a, &b]);
}

#[test]
fn crash_join_and_leave_lose_nothing_duplicate_nothing_and_keep_account_order() {
    let broker = Tansu::start();
    let db = Postgres::start();
    let topic = unique("trades");
    let group = unique("settlement");
    broker.create_topic(&topic, 6);

    // Start one member at a time and let each settle into the group first.
    let mut a = consumer(&broker, &topic, &group, &db);
    wait_assigned(&a);
    let mut b = consumer(&broker, &topic, &group, &db);
    wait_assigned(&b);
    let mut producer = producer(&broker, &topic, ("800", "8"), "200");
    std::thread::sleep(Duration::from_secs(2));
    b.kill(); // a crash mid-stream: its unwritten and uncommitted batches are re-read
    std::thread::sleep(Duration::from_secs(1));
    let mut b = consumer(&broker, &topic, &group, &db);
    std::thread::sleep(Duration::from_secs(1));
    let mut c = consumer(&broker, &topic, &group, &db);
    std::thread::sleep(Duration::from_secs(2));
    let status = a.terminate(Duration::from_secs(20));
    assert!(status.success(), "graceful leave: {status:?}\n{}", a.logs());
    assert!(
        producer.wait(Duration::from_secs(60)).success(),
        "{}",
        producer.logs()
    );
    let produced: i64 = broker.high_watermarks(&topic).iter().sum();
    assert!(produced > 5000, "only {produced} trades produced");

    assert_stored_once_in_account_order(&db, produced, &[&b, &c, &a]);
    assert!(c.terminate(Duration::from_secs(20)).success());
    assert!(b.terminate(Duration::from_secs(20)).success());
}
