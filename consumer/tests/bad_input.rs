//! trade-consumer facing bad input: clear errors at start; messages that
//! cannot be stored go to the dead-letter topic, or stop their partition
//! uncommitted when ON_REFUSED=stop-partition: never committed and lost.
// Each test is a scenario against real processes, read top to bottom.
#![allow(clippy::too_many_lines)]
// Tests wait on real processes: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use testbed::{Process, Tansu, eventually, free_port, http_get, unique};

mod common;

use common::CONSUMER;

#[test]
fn unreachable_broker_missing_topic_and_bad_values_name_the_variable() {
    let mut p = Process::start(
        CONSUMER,
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1".into()),
            ("DLQ_TOPIC", "dead-letters".into()),
            ("METRICS_PORT", free_port().to_string()),
        ],
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    assert!(
        p.logs().contains("(KAFKA_BOOTSTRAP_SERVERS)"),
        "{}",
        p.logs()
    );

    let broker = Tansu::start();
    let mut p = Process::start(
        CONSUMER,
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_TOPIC", "absent".into()),
            ("DLQ_TOPIC", "dead-letters".into()),
            ("METRICS_PORT", free_port().to_string()),
        ],
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    assert!(
        p.logs()
            .contains("topic absent (KAFKA_TOPIC) does not exist"),
        "{}",
        p.logs()
    );

    for (var, value) in [
        ("BATCH_SIZE", "abc"),
        ("BATCH_SIZE", "0"),
        ("SINK", "s3"),
        ("BATCH_TIMEOUT_SECONDS", "-1"),
    ] {
        let mut p = Process::start(
            CONSUMER,
            &[],
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
                ("DLQ_TOPIC", "dead-letters".into()),
                (var, value.into()),
            ],
        );
        assert!(
            !p.wait(Duration::from_secs(30)).success(),
            "{var}={value} accepted"
        );
        let logs = p.logs();
        let flag = format!("--{}", var.to_lowercase().replace('_', "-"));
        assert!(
            logs.contains(var) || logs.contains(&flag),
            "{var}={value}: {logs}"
        );
    }
    let mut p = Process::start(
        CONSUMER,
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("DLQ_TOPIC", "dead-letters".into()),
            ("SINK", "postgres".into()),
        ],
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    assert!(
        p.logs()
            .contains("DATABASE_URL is required with SINK=postgres"),
        "{}",
        p.logs()
    );
    // Without a dead-letter topic a refused message would be committed and
    // kept nowhere: refused at start, naming both ways out.
    let mut p = Process::start(
        CONSUMER,
        &[],
        &[("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())],
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    let logs = p.logs();
    assert!(
        logs.contains("DLQ_TOPIC is required") && logs.contains("ON_REFUSED=stop-partition"),
        "{logs}"
    );
}

/// A trade's JSON for account ACC1, as trade-producer writes it.
fn trade(seq: u64, symbol: &str, quantity: u64, timestamp_ms: i64) -> String {
    format!(
        r#"{{"trade_id":"t-{seq}","account_id":"ACC1","symbol":"{symbol}","side":"BUY","quantity":{quantity},"price":1.0,"timestamp_ms":{timestamp_ms},"account_seq":{seq}}}"#
    )
}

/// The trade ids in the table, in account_seq order.
fn stored_trade_ids(sql: &mut postgres::Client) -> Vec<String> {
    sql.query("SELECT trade_id FROM trades ORDER BY account_seq", &[])
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A broker with a one-partition topic of trades and its dead-letter
/// topic, and a PostgreSQL server.
fn broker_and_database() -> (Tansu, testbed::Postgres, String, String) {
    let broker = Tansu::start();
    let db = testbed::Postgres::start();
    let topic = unique("trades");
    let dlq = unique("trades-dlq");
    broker.create_topic(&topic, 1);
    broker.create_topic(&dlq, 1);
    (broker, db, topic, dlq)
}

/// trade-consumer writing `topic` to PostgreSQL, dead letters to `dlq`,
/// /metrics on `port`.
fn postgres_consumer(topics: (&Tansu, &str, &str), db: &testbed::Postgres, port: u16) -> Process {
    postgres_consumer_with(topics, db, port, &[])
}

/// [`postgres_consumer`] with `settings` on top of its own.
fn postgres_consumer_with(
    (broker, topic, dlq): (&Tansu, &str, &str),
    db: &testbed::Postgres,
    port: u16,
    settings: &[(&'static str, &str)],
) -> Process {
    let url = db.url();
    let mut env = vec![
        ("SINK", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("BATCH_TIMEOUT_SECONDS", "0.3"),
        ("DLQ_TOPIC", dlq),
    ];
    env.extend_from_slice(settings);
    common::consumer(&broker.bootstrap(), (topic, &unique("g")), port, &env)
}

/// [`postgres_consumer`] once it has created its table (it does so before
/// /metrics answers), and a connection to the database.
fn consumer_with_table(
    topics: (&Tansu, &str, &str),
    db: &testbed::Postgres,
    port: u16,
) -> (Process, postgres::Client) {
    let p = postgres_consumer(topics, db, port);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(30), "the consumer up", || {
        std::net::TcpStream::connect(addr).ok()
    });
    let sql = postgres::Client::connect(&db.url(), postgres::NoTls).expect("connect");
    (p, sql)
}

/// Waits until the consumer on `port` has stopped its one partition after
/// processing `processed` trades; answers /healthz's status and body.
fn wait_stopped(port: u16, processed: u32) -> (u16, String) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(60), "the partition stopped", || {
        let (_, m) = http_get(addr, "/metrics");
        (m.contains("kafka_consumer_stopped_partitions 1")
            && m.contains(&format!("kafka_messages_processed_total {processed}")))
        .then_some(m)
    });
    http_get(addr, "/healthz")
}

/// The consumer on `port` wrote the 2 valid trades, counted `count` invalid
/// messages under `reason`, dead-lettered each, and logged one line.
fn assert_dead_lettered(
    p: &Process,
    port: u16,
    (broker, dlq): (&Tansu, &str),
    (reason, count): (&str, i64),
) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(30), "both trades written", || {
        let (_, m) = http_get(addr, "/metrics");
        m.contains("kafka_messages_processed_total 2").then_some(())
    });
    let (_, m) = http_get(addr, "/metrics");
    let counted = format!(r#"kafka_consumer_invalid_messages_total{{reason="{reason}"}} {count}"#);
    assert!(m.contains(&counted), "{counted} not in:\n{m}");
    eventually(Duration::from_secs(10), "the dead letters", || {
        (broker.high_watermarks(dlq) == [count]).then_some(())
    });
    let logs = p.logs();
    assert_eq!(logs.matches("invalid message skipped").count(), 1, "{logs}");
}

#[test]
fn a_message_that_is_not_a_trade_is_counted_dead_lettered_and_skipped() {
    let broker = Tansu::start();
    let topic = unique("trades");
    // Not created here: the consumer creates a missing DLQ_TOPIC.
    let dlq = unique("trades-dlq");
    broker.create_topic(&topic, 1);
    let (first, second) = (trade(1, "AAPL", 1, 0), trade(2, "AAPL", 1, 0));
    // 500 malformed messages between two trades: all dead-lettered, one
    // log line.
    let mut payloads: Vec<&[u8]> = vec![first.as_bytes()];
    payloads.extend(std::iter::repeat_n(b"not json {".as_slice(), 500));
    payloads.push(second.as_bytes());
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    let port = free_port();
    let mut p = common::consumer(
        &broker.bootstrap(),
        (&topic, &unique("g")),
        port,
        &[("DLQ_TOPIC", &dlq)],
    );
    assert_dead_lettered(&p, port, (&broker, &dlq), ("not_json", 500));
    assert!(p.terminate(Duration::from_secs(20)).success());
}

#[test]
fn valid_json_postgres_cannot_store_is_dead_lettered_not_retried_forever() {
    let (broker, db, topic, dlq) = broker_and_database();
    let messages = [
        trade(1, "AAPL", 1, 0),
        trade(2, r"AA\u0000PL", 1, 0),
        trade(3, "AAPL", 3_000_000_000, 0),
        trade(4, "AAPL", 1, 100_000_000_000_000_000),
        trade(5, "AAPL", 1, 0),
    ];
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    let port = free_port();
    let mut p = postgres_consumer((&broker, &topic, &dlq), &db, port);
    assert_dead_lettered(&p, port, (&broker, &dlq), ("not_storable", 3));
    // One line per partition per 10 s: the first (the NUL) is logged.
    let logs = p.logs();
    assert!(logs.contains("NUL"), "{logs}");
    let letters = broker.messages(&dlq);
    let error = letters[0].header("error").unwrap_or_default();
    assert!(
        error.starts_with("not_storable: symbol contains a NUL"),
        "{error}"
    );
    assert_eq!(letters[0].header("source.offset"), Some("1"));
    assert!(!logs.contains("batch write failed"), "{logs}");
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// A database that answers with an error (here: no such database) stops
/// the consumer at start, naming DATABASE_URL; one that does not answer
/// (an outage) does not: the consumer starts, joins its group, and its
/// writes retry until the database is back.
#[test]
fn a_database_that_refuses_stops_the_start_one_that_does_not_answer_does_not() {
    let (broker, db, topic, dlq) = broker_and_database();
    let url = db.url();
    let (server, _) = url.rsplit_once('/').expect("a database name");
    let missing = format!("{server}/no_such_database");
    let port = free_port();
    let mut p = postgres_consumer_with(
        (&broker, &topic, &dlq),
        &db,
        port,
        &[("DATABASE_URL", &missing)],
    );
    assert!(!p.wait(Duration::from_secs(30)).success());
    let logs = p.logs();
    assert!(
        logs.contains("DATABASE_URL") && logs.contains("no_such_database"),
        "{logs}"
    );
    let nobody = format!("postgresql://postgres@127.0.0.1:{}/postgres", free_port());
    let port = free_port();
    let mut p = postgres_consumer_with(
        (&broker, &topic, &dlq),
        &db,
        port,
        &[("DATABASE_URL", &nobody)],
    );
    broker.produce_raw(&topic, Some("ACC1"), &[trade(1, "AAPL", 1, 0).as_bytes()]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(30), "a write retried", || {
        let (_, m) = http_get(addr, "/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix("kafka_consumer_write_failures_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|&failures| failures >= 1.0)
    });
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// A trade the table refuses for its data (here a CHECK constraint a DBA
/// added; SQLSTATE 23514) is dead-lettered with the database's error, and
/// the rest of its batch is written: the partition never stalls on it.
#[test]
fn a_row_the_database_refuses_is_dead_lettered_and_the_rest_of_its_batch_written() {
    let (broker, db, topic, dlq) = broker_and_database();
    let port = free_port();
    let (mut p, mut sql) = consumer_with_table((&broker, &topic, &dlq), &db, port);
    sql.batch_execute("ALTER TABLE trades ADD CONSTRAINT positive_quantity CHECK (quantity > 0)")
        .expect("constraint");
    let messages = [
        trade(1, "AAPL", 5, 0),
        trade(2, "AAPL", 0, 0),
        trade(3, "AAPL", 7, 0),
    ];
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    assert_dead_lettered(&p, port, (&broker, &dlq), ("rejected_by_sink", 1));
    assert_eq!(stored_trade_ids(&mut sql), ["t-1", "t-3"]);
    let letters = broker.messages(&dlq);
    assert_eq!(letters[0].payload, messages[1].as_bytes());
    assert_eq!(
        letters[0].key.as_deref(),
        Some(&b"ACC1"[..]),
        "the message's key"
    );
    assert_eq!(letters[0].header("source.partition"), Some("0"));
    assert_eq!(letters[0].header("source.offset"), Some("1"));
    let error = letters[0].header("error").unwrap_or_default();
    assert!(error.contains("positive_quantity"), "{error}");
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// A trigger's exception (SQLSTATE P0001, no data class) about one row
/// dead-letters that row and writes the rest; the same exception for every
/// row (a halt on all trades) is the database's doing: nothing is
/// dead-lettered, the batch waits until the database takes it again.
#[test]
fn a_row_a_trigger_refuses_is_dead_lettered_but_a_halt_on_every_row_is_waited_out() {
    let (broker, db, topic, dlq) = broker_and_database();
    let port = free_port();
    let (mut p, mut sql) = consumer_with_table((&broker, &topic, &dlq), &db, port);
    sql.batch_execute(
        "CREATE FUNCTION suspended() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.symbol = 'BAD' OR EXISTS (SELECT 1 FROM pg_class WHERE relname = 'halt') THEN
             RAISE EXCEPTION 'symbol % is suspended', NEW.symbol;
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER suspended BEFORE INSERT ON trades FOR EACH ROW EXECUTE FUNCTION suspended();",
    )
    .expect("trigger");
    let messages = [
        trade(1, "AAPL", 5, 0),
        trade(2, "BAD", 5, 0),
        trade(3, "AAPL", 7, 0),
    ];
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    assert_dead_lettered(&p, port, (&broker, &dlq), ("rejected_by_sink", 1));
    let error = broker.messages(&dlq)[0]
        .header("error")
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("symbol BAD is suspended"), "{error}");
    // Every trade halted: refused alike, none dead-lettered.
    sql.batch_execute("CREATE TABLE halt ()").expect("halt");
    let halted = [trade(4, "AAPL", 1, 0), trade(5, "MSFT", 1, 0)];
    let payloads: Vec<&[u8]> = halted.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    eventually(Duration::from_secs(30), "the halted batch retried", || {
        (p.logs().matches("PostgreSQL refused the batch").count() >= 3).then_some(())
    });
    assert_eq!(
        broker.high_watermarks(&dlq),
        [1],
        "nothing more dead-lettered"
    );
    assert_eq!(stored_trade_ids(&mut sql), ["t-1", "t-3"]);
    sql.batch_execute("DROP TABLE halt").expect("resume");
    eventually(Duration::from_secs(30), "the halted batch written", || {
        (stored_trade_ids(&mut sql) == ["t-1", "t-3", "t-4", "t-5"]).then_some(())
    });
    assert_eq!(broker.high_watermarks(&dlq), [1]);
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// A trade id too long for the table's primary-key index (SQLSTATE 54000,
/// program limit exceeded) is refused like bad data: dead-lettered, the
/// rest of its batch written, the partition not retried forever.
#[test]
fn a_trade_id_too_long_for_the_index_is_dead_lettered_not_retried_forever() {
    let (broker, db, topic, dlq) = broker_and_database();
    // 3,000 characters that do not compress below a btree entry's limit.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let long_id: String = (0..3000)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from_digit(((x >> 33) % 36) as u32, 36).unwrap_or('0')
        })
        .collect();
    let messages = [
        trade(1, "AAPL", 5, 0),
        trade(2, "AAPL", 6, 0).replace("\"t-2\"", &format!("\"{long_id}\"")),
        trade(3, "AAPL", 7, 0),
    ];
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, None, &payloads); // keyless
    let port = free_port();
    let mut p = postgres_consumer((&broker, &topic, &dlq), &db, port);
    assert_dead_lettered(&p, port, (&broker, &dlq), ("rejected_by_sink", 1));
    let mut sql = postgres::Client::connect(&db.url(), postgres::NoTls).expect("connect");
    assert_eq!(stored_trade_ids(&mut sql), ["t-1", "t-3"]);
    let letters = broker.messages(&dlq);
    assert_eq!(letters[0].key, None, "no key where the message had none");
    assert_eq!(letters[0].header("source.offset"), Some("1"));
    let error = letters[0].header("error").unwrap_or_default();
    assert!(error.starts_with("rejected_by_sink"), "{error}");
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// ON_REFUSED=stop-partition: the partition stops at the first message
/// that cannot be stored; what came before it is written and committed,
/// nothing from it on, and a consumer that takes the partition over stops
/// at the same message.
#[test]
fn stop_partition_keeps_a_refused_message_and_all_after_it_uncommitted() {
    let broker = Tansu::start();
    let topic = unique("trades");
    broker.create_topic(&topic, 1);
    let (first, third) = (trade(1, "AAPL", 1, 0), trade(3, "AAPL", 1, 0));
    let payloads: Vec<&[u8]> = vec![first.as_bytes(), b"not json {", third.as_bytes()];
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    let group = unique("g");
    let start = |port: u16| {
        common::consumer(
            &broker.bootstrap(),
            (&topic, &group),
            port,
            &[("ON_REFUSED", "stop-partition")],
        )
    };
    // A restart cannot fix the message: health stays ok.
    let stopped = |port: u16, processed: u32| assert_eq!(wait_stopped(port, processed).0, 200);
    let port = free_port();
    let mut p = start(port);
    stopped(port, 1);
    let logs = p.logs();
    assert!(logs.contains("partition stopped"), "{logs}");
    assert!(p.terminate(Duration::from_secs(20)).success());
    // Committed up to the refused message: the next owner stops on it at once.
    let port = free_port();
    let mut p = start(port);
    stopped(port, 0);
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// A dead letter the broker can never take (here over the dead-letter
/// producer's 1 MB message limit) is sent a bounded number of times, then
/// its partition stops at it, visibly (the metric, /healthz, a log line):
/// the trade before it is written and committed, nothing from it on, so
/// the next owner stops at the same message.
#[test]
fn a_dead_letter_that_cannot_be_delivered_stops_its_partition_uncommitted() {
    let broker = Tansu::start();
    let topic = unique("trades");
    let dlq = unique("trades-dlq");
    broker.create_topic(&topic, 1);
    broker.create_topic(&dlq, 1);
    let (first, third) = (trade(1, "AAPL", 1, 0), trade(3, "AAPL", 1, 0));
    let huge = vec![b'x'; 1_500_000];
    broker.produce_raw(
        &topic,
        Some("ACC1"),
        &[first.as_bytes(), &huge, third.as_bytes()],
    );
    let group = unique("g");
    let start = |port: u16| {
        common::consumer(
            &broker.bootstrap(),
            (&topic, &group),
            port,
            &[("DLQ_TOPIC", &dlq)],
        )
    };
    let stopped = |p: &Process, port: u16, processed: u32| {
        // Ten sends, 0.2 s more apart each time: about 9 s.
        let (status, body) = wait_stopped(port, processed);
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("not acknowledged after 10 sends"), "{body}");
        let logs = p.logs();
        assert!(logs.contains("partition stopped"), "{logs}");
    };
    let port = free_port();
    let mut p = start(port);
    stopped(&p, port, 1);
    assert!(p.terminate(Duration::from_secs(20)).success());
    assert_eq!(broker.high_watermarks(&dlq), [0], "no letter was taken");
    // Committed up to the undeliverable letter's message, not past it.
    let port = free_port();
    let mut p = start(port);
    stopped(&p, port, 0);
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// Every row the insert skips for its trade_id is accounted for: the same
/// trade read again is a counted duplicate, another trade reusing the id is
/// dead-lettered as a conflict, never committed and lost.
#[test]
fn a_reused_trade_id_is_a_conflict_and_a_trade_read_again_a_duplicate() {
    let (broker, db, topic, dlq) = broker_and_database();
    let reused = trade(1, "MSFT", 9, 0);
    let messages = [
        trade(1, "AAPL", 5, 0),
        trade(1, "AAPL", 5, 0),
        reused.clone(),
    ];
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    let port = free_port();
    let mut p = postgres_consumer((&broker, &topic, &dlq), &db, port);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(
        Duration::from_secs(30),
        "the conflict dead-lettered",
        || (broker.high_watermarks(&dlq) == [1]).then_some(()),
    );
    let (_, m) = http_get(addr, "/metrics");
    assert!(m.contains("kafka_consumer_duplicate_trades_total 1"), "{m}");
    assert!(
        m.contains(r#"kafka_consumer_invalid_messages_total{reason="conflict"} 1"#),
        "{m}"
    );
    let letters = broker.messages(&dlq);
    assert_eq!(letters[0].payload, reused.as_bytes());
    assert_eq!(letters[0].header("source.offset"), Some("2"));
    let error = letters[0].header("error").unwrap_or_default();
    assert!(error.starts_with("conflict: trade_id \"t-1\""), "{error}");
    let mut sql = postgres::Client::connect(&db.url(), postgres::NoTls).expect("connect");
    let symbol: String = sql
        .query_one("SELECT symbol FROM trades WHERE trade_id = 't-1'", &[])
        .expect("the first trade stored")
        .get(0);
    assert_eq!(symbol, "AAPL");
    assert!(p.terminate(Duration::from_secs(20)).success());
}

/// A batch is one INSERT whatever its size: its rows go as one array per
/// column, not ten bind parameters each (65,535 at most: 6,553 rows).
#[test]
fn a_batch_of_eight_thousand_trades_is_one_insert() {
    let (broker, db, topic, dlq) = broker_and_database();
    let messages: Vec<String> = (1..=8000).map(|seq| trade(seq, "AAPL", 1, 0)).collect();
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.as_bytes()).collect();
    broker.produce_raw(&topic, Some("ACC1"), &payloads);
    let port = free_port();
    let mut p = postgres_consumer_with(
        (&broker, &topic, &dlq),
        &db,
        port,
        &[("BATCH_SIZE", "8000"), ("BATCH_TIMEOUT_SECONDS", "20")],
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(30), "8000 trades written", || {
        let (_, m) = http_get(addr, "/metrics");
        m.contains("kafka_messages_processed_total 8000")
            .then_some(m)
    });
    let (_, m) = http_get(addr, "/metrics");
    assert!(m.contains("kafka_consumer_batch_messages_count 1"), "{m}");
    let mut sql = postgres::Client::connect(&db.url(), postgres::NoTls).expect("connect");
    let ids = stored_trade_ids(&mut sql);
    assert_eq!(ids.len(), 8000);
    assert_eq!((ids[0].as_str(), ids[7999].as_str()), ("t-1", "t-8000"));
    assert!(
        p.terminate(Duration::from_secs(20)).success(),
        "{}",
        p.logs()
    );
}

/// With MSK IAM, librdkafka holds every request until the application serves
/// its token-refresh event; the consumer serves it before its first request,
/// so the token is signed even though the brokers are never reached.
#[test]
fn msk_iam_token_is_signed_before_the_first_request() {
    let mut env = testbed::offline_aws_credentials();
    env.extend([
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("KAFKA_AUTH", "msk-iam".to_owned()),
        ("DLQ_TOPIC", "dead-letters".to_owned()),
        ("METRICS_PORT", free_port().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ]);
    let mut p = Process::start(CONSUMER, &[], &env);
    assert!(!p.wait(Duration::from_secs(30)).success());
    let logs = p.logs();
    let signed = logs.find("MSK IAM token signed");
    let first_request = logs.find("checking that the topic exists");
    assert!(
        matches!((signed, first_request), (Some(s), Some(r)) if s < r),
        "the token must be signed before the first request waits on it:\n{logs}"
    );
    assert!(logs.contains("(KAFKA_BOOTSTRAP_SERVERS)"), "{logs}");
}
