//! Where batches are written: a simulated write that takes
//! BATCH_PROCESSING_TIME (as the reference consumer), or PostgreSQL.

use std::time::Duration;

use trade_model::TradeRef;

use crate::batcher::{Batch, Record};

/// PostgreSQL's timestamptz range (4714 BC to 294276 AD), in Unix ms.
const TIMESTAMP_MS: std::ops::RangeInclusive<i64> = -210_866_803_200_000..=9_224_318_015_999_999;

/// Whether a decoded trade can be stored as it is: a trade that a sink
/// would refuse on every retry (valid JSON, yet not storable) is an invalid
/// message, dead-lettered like malformed JSON, never a stalled partition.
pub fn storable(t: &TradeRef<'_>) -> Result<(), String> {
    for (field, text) in [
        ("trade_id", &t.trade_id),
        ("account_id", &t.account_id),
        ("symbol", &t.symbol),
        ("side", &t.side),
    ] {
        if text.contains('\0') {
            return Err(format!("{field} contains a NUL character"));
        }
    }
    if i32::try_from(t.quantity).is_err() {
        return Err(format!("quantity {} exceeds {}", t.quantity, i32::MAX));
    }
    if i64::try_from(t.account_seq).is_err() {
        return Err(format!(
            "account_seq {} exceeds {}",
            t.account_seq,
            i64::MAX
        ));
    }
    if !t.price.is_finite() {
        return Err(format!("price {} is not a finite number", t.price));
    }
    if !TIMESTAMP_MS.contains(&t.timestamp_ms) {
        return Err(format!(
            "timestamp_ms {} is outside 4714 BC..294276 AD",
            t.timestamp_ms
        ));
    }
    Ok(())
}

/// What a write did with a batch, once it returned Ok: every record is
/// durable (written now, or stored before exactly as read) except the ones
/// refused, which go to the dead-letter topic.
#[derive(Debug, Default)]
pub struct Written {
    /// In the order of the batch.
    pub refused: Vec<Refused>,
    /// Records already stored exactly as read: a batch read again.
    pub duplicates: usize,
}

/// A record the sink did not store.
#[derive(Debug)]
pub struct Refused {
    /// Its index in the batch.
    pub index: usize,
    /// `rejected_by_sink` (the database refused its data) or `conflict`
    /// (its trade_id is stored with other values).
    pub reason: &'static str,
    pub error: String,
}

/// Where batches go. A write returns only once the batch is durable; an
/// error means nothing is known to be written and the batch is retried.
pub enum Sink {
    Simulated(Cost),
    Postgres(Box<Postgres>),
}

impl Sink {
    pub fn write<L>(&mut self, batch: &Batch<L>) -> anyhow::Result<Written> {
        if batch.records.is_empty() {
            return Ok(Written::default());
        }
        match self {
            Sink::Simulated(cost) => {
                let took = match *cost {
                    Cost::PerBatch(t) => t,
                    Cost::PerMessage(t) => t * batch.records.len() as u32,
                };
                if !took.is_zero() {
                    std::thread::sleep(took);
                }
                Ok(Written::default())
            }
            Sink::Postgres(pg) => pg.write(batch),
        }
    }
}

/// What a simulated write costs.
pub enum Cost {
    /// The same time for every batch (the reference consumer).
    PerBatch(Duration),
    /// This much per message.
    PerMessage(Duration),
}

/// One INSERT per batch into `trades`, idempotent on `trade_id`, so a
/// batch replayed after a crash writes no duplicates. Every row the insert
/// skips for its trade_id is accounted for: stored before exactly as read,
/// it is a counted duplicate; stored with other values (another trade
/// reusing the id), it is refused as a `conflict`. A connection the server
/// closed (a restart, a failover) is opened again by the next write. A
/// batch refused for other than a transient cause ([`Failure`]) is written
/// row by row, and only the rows refused for themselves are rejected.
pub struct Postgres {
    url: String,
    client: Option<postgres::Client>,
    /// INSERT, prepared once per connection.
    insert: Option<postgres::Statement>,
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS trades (
    trade_id        text PRIMARY KEY,
    account_id      text NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL,
    quantity        integer NOT NULL,
    price           double precision NOT NULL,
    trade_time      timestamptz NOT NULL,
    account_seq     bigint NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    insert_seq      bigserial,
    processed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
)";

/// A batch's rows as one array per column, so one statement serves every
/// batch length and binds ten parameters, not ten per row. It answers the
/// trade_ids it wrote only when it skipped some (fewer written than
/// given): a batch written whole, the common case, returns no rows.
const INSERT: &str = "WITH written AS (
    INSERT INTO trades (trade_id, account_id, symbol, side, quantity, price, trade_time, account_seq, kafka_partition, kafka_offset)
    SELECT trade_id, account_id, symbol, side, quantity, price, to_timestamp(trade_ms / 1000), account_seq, kafka_partition, kafka_offset
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::float8[], $7::float8[], $8::int8[], $9::int4[], $10::int8[])
        AS batch (trade_id, account_id, symbol, side, quantity, price, trade_ms, account_seq, kafka_partition, kafka_offset)
    ON CONFLICT (trade_id) DO NOTHING
    RETURNING trade_id
)
SELECT trade_id FROM written WHERE (SELECT count(*) FROM written) < cardinality($1::text[])";

/// Whether a trade is stored exactly as a row would write it.
const STORED_AS: &str = "SELECT 1 FROM trades WHERE trade_id = $1 AND account_id = $2 AND symbol = $3 AND side = $4 AND quantity = $5 AND price = $6 AND trade_time = to_timestamp($7::double precision / 1000) AND account_seq = $8";

/// One row's values, borrowed from the batch.
struct Row<'a> {
    trade_id: &'a str,
    account_id: &'a str,
    symbol: &'a str,
    side: &'a str,
    quantity: i32,
    price: f64,
    timestamp_ms: f64,
    account_seq: i64,
    partition: i32,
    offset: i64,
}

impl<'a> Row<'a> {
    fn new<L>(batch: &'a Batch<L>, record: &Record) -> Self {
        let [trade_id, account_id, symbol, side] = batch.text(record);
        let trade = &record.trade;
        Row {
            trade_id,
            account_id,
            symbol,
            side,
            // In range: `storable` checked every record when it was read.
            quantity: trade.quantity as i32,
            price: trade.price,
            timestamp_ms: trade.timestamp_ms as f64,
            account_seq: trade.account_seq as i64,
            partition: record.partition,
            offset: record.offset,
        }
    }

    /// STORED_AS's parameters: the values a trade is stored with.
    fn values(&self) -> [&(dyn postgres::types::ToSql + Sync); 8] {
        [
            &self.trade_id,
            &self.account_id,
            &self.symbol,
            &self.side,
            &self.quantity,
            &self.price,
            &self.timestamp_ms,
            &self.account_seq,
        ]
    }
}

/// The INSERT's ten parameters: each column of `rows` as an array.
#[derive(Default)]
struct Columns<'a> {
    trade_id: Vec<&'a str>,
    account_id: Vec<&'a str>,
    symbol: Vec<&'a str>,
    side: Vec<&'a str>,
    quantity: Vec<i32>,
    price: Vec<f64>,
    timestamp_ms: Vec<f64>,
    account_seq: Vec<i64>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(rows: &[Row<'a>]) -> Self {
        let mut c = Columns::default();
        for r in rows {
            c.trade_id.push(r.trade_id);
            c.account_id.push(r.account_id);
            c.symbol.push(r.symbol);
            c.side.push(r.side);
            c.quantity.push(r.quantity);
            c.price.push(r.price);
            c.timestamp_ms.push(r.timestamp_ms);
            c.account_seq.push(r.account_seq);
            c.partition.push(r.partition);
            c.offset.push(r.offset);
        }
        c
    }

    fn params(&self) -> [&(dyn postgres::types::ToSql + Sync); 10] {
        [
            &self.trade_id,
            &self.account_id,
            &self.symbol,
            &self.side,
            &self.quantity,
            &self.price,
            &self.timestamp_ms,
            &self.account_seq,
            &self.partition,
            &self.offset,
        ]
    }
}

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest sent data may go unacknowledged before the connection is
/// given up: a database that vanished from the network (no reset, no
/// answer) fails the write in seconds, not after TCP's ~15 minutes, so
/// the retry loop serves the group and SIGTERM is honoured.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is probed after this long, so a dead one is found
/// before the next batch waits on it.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Longest one statement may run (a full batch takes milliseconds).
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// DATABASE_URL's settings, with the timeouts above where it sets none.
fn settings(url: &str) -> anyhow::Result<postgres::Config> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    config.keepalives(true);
    if config.get_keepalives_idle() == Duration::from_secs(2 * 3600) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    let options = config.get_options().unwrap_or_default().to_owned();
    if !options.contains("statement_timeout") {
        config.options(format!("{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}").trim());
    }
    Ok(config)
}

/// How PostgreSQL's answer to a write is taken.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    /// Worth retrying as it is: no answer (the connection), or SQLSTATE
    /// class 08 connection, 25 invalid transaction state (a read-only
    /// server after a failover), 40 rollback (serialization, deadlock), 53
    /// insufficient resources, 55 object not in prerequisite state (a lock
    /// not available), 57 operator intervention (a shutdown, the statement
    /// timeout), 58 system error, XX internal error.
    Transient,
    /// The data itself (22 data exception, 23 integrity constraint, 54
    /// program limit such as a value too large for its index): the same
    /// rows can never be written, so the batch is written row by row and
    /// the rows still refused are dead-lettered.
    Data,
    /// Any other class (42 a revoked grant or a dropped column, P0 an
    /// exception a trigger raises, ...): about some rows, or about every
    /// row alike. The batch is written row by row; refused rows are
    /// dead-lettered only when another row of the batch was written: when
    /// none is, the cause is the database's, not the data's, and the batch
    /// is retried.
    Other,
}

fn failure(e: &postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        return Failure::Transient;
    };
    match &db.code().code()[..2] {
        "08" | "25" | "40" | "53" | "55" | "57" | "58" | "XX" => Failure::Transient,
        "22" | "23" | "54" => Failure::Data,
        _ => Failure::Other,
    }
}

/// The server's own message (e.g. which constraint a row violates), not
/// just "db error".
fn describe(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// Why a connection could not be opened.
enum Open {
    /// The server answered with an error, or DATABASE_URL is not a URL.
    Refused(anyhow::Error),
    /// No answer: refused, unreachable, timed out, or closed.
    Unanswered(anyhow::Error),
}

impl Open {
    fn into_error(self) -> anyhow::Error {
        match self {
            Open::Refused(e) | Open::Unanswered(e) => e,
        }
    }
}

impl Postgres {
    /// Connects and creates the table. A server that answers with an
    /// error (a bad password, a missing database, no right to create the
    /// table) or a URL that is not one stops the consumer at start, naming
    /// DATABASE_URL. A server that does not answer may be in an outage: the
    /// consumer starts and joins its group anyway (a member added during
    /// an outage is ready when it ends), and its writes retry like any
    /// other's, failing /healthz if the server never comes.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let client = match Self::open(url) {
            Ok(client) => Some(client),
            Err(Open::Unanswered(e)) => {
                tracing::error!(error = %e, "PostgreSQL (DATABASE_URL) does not answer: starting anyway, writes retry until it does");
                None
            }
            Err(Open::Refused(e)) => return Err(e),
        };
        Ok(Postgres {
            url: url.to_owned(),
            client,
            insert: None,
        })
    }

    fn open(url: &str) -> Result<postgres::Client, Open> {
        // Answered with an error, or not answered at all.
        let classify = |e: postgres::Error| {
            let error = anyhow::anyhow!("cannot use DATABASE_URL: {}", describe(&e));
            if e.as_db_error().is_some() {
                Open::Refused(error)
            } else {
                Open::Unanswered(error)
            }
        };
        let mut client = settings(url)
            .map_err(Open::Refused)?
            .connect(postgres::NoTls)
            .map_err(classify)?;
        // Consumers start together: serialize the CREATE (IF NOT EXISTS
        // alone races on the catalog) with a transaction-scoped lock.
        let mut tx = client.transaction().map_err(classify)?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(4242001)")
            .map_err(classify)?;
        tx.batch_execute(CREATE).map_err(classify)?;
        tx.commit().map_err(classify)?;
        Ok(client)
    }

    /// The open connection, opened again if the server closed it (its
    /// prepared statements go with it).
    fn client(&mut self) -> anyhow::Result<&mut postgres::Client> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            self.client = None;
            self.insert = None;
            self.client = Some(Self::open(&self.url).map_err(Open::into_error)?);
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(self.client.as_mut().expect("just opened"))
    }

    /// Inserts `rows` in one statement on the open connection: per row,
    /// whether it was inserted (false: skipped, its trade_id already
    /// stored, or earlier in `rows`).
    fn insert(&mut self, rows: &[Row<'_>]) -> Result<Vec<bool>, postgres::Error> {
        let client = self.client.as_mut().expect("write connects first");
        let statement = match &self.insert {
            Some(statement) => statement.clone(),
            None => self.insert.insert(client.prepare(INSERT)?).clone(),
        };
        let written = client.query(&statement, &Columns::of(rows).params())?;
        if written.is_empty() {
            return Ok(vec![true; rows.len()]);
        }
        let mut written: std::collections::HashSet<&str> =
            written.iter().map(|r| r.get(0)).collect();
        // The first row of an id is the one inserted.
        Ok(rows.iter().map(|r| written.remove(r.trade_id)).collect())
    }

    /// Inserts `rows` one by one after `error` refused them together:
    /// per row whether it was inserted, and the rows refused for
    /// themselves. An error about no row in particular (every row refused
    /// alike, outside the data classes) is returned, for the batch to be
    /// retried; so is a transient one.
    fn insert_row_by_row(
        &mut self,
        rows: &[Row<'_>],
        error: postgres::Error,
    ) -> Result<(Vec<bool>, Vec<Refused>), postgres::Error> {
        let mut inserted = Vec::with_capacity(rows.len());
        let mut refused = Vec::new();
        let mut data = false;
        for (index, row) in rows.iter().enumerate() {
            match self.insert(std::slice::from_ref(row)) {
                Ok(one) => inserted.extend(one),
                Err(e) if failure(&e) != Failure::Transient => {
                    data |= failure(&e) == Failure::Data;
                    refused.push(Refused {
                        index,
                        reason: "rejected_by_sink",
                        error: describe(&e),
                    });
                    // Refused, not skipped.
                    inserted.push(true);
                }
                Err(e) => return Err(e),
            }
        }
        if refused.len() == rows.len() && !data {
            return Err(error);
        }
        Ok((inserted, refused))
    }

    fn write<L>(&mut self, batch: &Batch<L>) -> anyhow::Result<Written> {
        let rows: Vec<Row<'_>> = batch.records.iter().map(|r| Row::new(batch, r)).collect();
        self.client()?;
        let mut written = Written::default();
        let inserted = match self.insert(&rows) {
            Ok(inserted) => inserted,
            Err(e) if failure(&e) != Failure::Transient => {
                tracing::warn!(
                    error = describe(&e),
                    rows = rows.len(),
                    "PostgreSQL refused the batch: writing it row by row"
                );
                let (inserted, refused) = self.insert_row_by_row(&rows, e)?;
                written.refused = refused;
                inserted
            }
            Err(e) => return Err(e.into()),
        };
        let client = self.client()?;
        for (index, row) in rows.iter().enumerate().filter(|(i, _)| !inserted[*i]) {
            let stored = client.query_opt(STORED_AS, &row.values())?;
            if stored.is_some() {
                written.duplicates += 1;
            } else {
                written.refused.push(Refused {
                    index,
                    reason: "conflict",
                    error: format!(
                        "trade_id {:?} is already stored with other values",
                        row.trade_id
                    ),
                });
            }
        }
        written.refused.sort_by_key(|r| r.index);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_gets_the_timeouts_it_does_not_set_itself() {
        let ours = settings("postgresql://trades@127.0.0.1/settlement").expect("a URL");
        assert_eq!(ours.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(ours.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(ours.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(ours.get_options(), Some("-c statement_timeout=30000"));
        let theirs = settings(
            "postgresql://trades@127.0.0.1/settlement?connect_timeout=20&options=-c%20statement_timeout%3D5000",
        )
        .expect("a URL");
        assert_eq!(theirs.get_connect_timeout(), Some(&Duration::from_secs(20)));
        assert_eq!(theirs.get_options(), Some("-c statement_timeout=5000"));
        let error = settings("postgresql://[::1").expect_err("not a URL");
        assert!(error.to_string().contains("DATABASE_URL"), "{error}");
    }
}
