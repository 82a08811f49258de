//! Where batches are written: a simulated write that takes
//! BATCH_PROCESSING_TIME (as the reference consumer), or PostgreSQL.

use std::collections::HashMap;
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

/// One multi-row INSERT per batch into `trades`, idempotent on `trade_id`,
/// so a batch replayed after a crash writes no duplicates. Every row the
/// insert skips for its trade_id is accounted for: stored before exactly
/// as read, it is a counted duplicate; stored with other values (another
/// trade reusing the id), it is refused as a `conflict`. A connection the
/// server closed (a restart, a failover) is opened again by the next
/// write. A batch the table refuses for its data (SQLSTATE class 22, 23 or
/// 54, e.g. a CHECK constraint) is written row by row, and only the refused
/// rows are rejected.
pub struct Postgres {
    url: String,
    client: Option<postgres::Client>,
    /// The INSERT of each batch length, prepared once per connection: a
    /// full batch's thousand parameters are not planned again per batch.
    inserts: HashMap<usize, postgres::Statement>,
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

const INSERT: &str = "INSERT INTO trades (trade_id, account_id, symbol, side, quantity, price, trade_time, account_seq, kafka_partition, kafka_offset) VALUES ";

const CONFLICT: &str = " ON CONFLICT (trade_id) DO NOTHING RETURNING trade_id";

/// Whether a trade is stored exactly as a row would write it.
const STORED_AS: &str = "SELECT 1 FROM trades WHERE trade_id = $1 AND account_id = $2 AND symbol = $3 AND side = $4 AND quantity = $5 AND price = $6 AND trade_time = to_timestamp($7::double precision / 1000) AND account_seq = $8";

const COLUMNS: usize = 10;

/// Largest batch one INSERT can carry: PostgreSQL takes at most 65,535
/// bind parameters per statement.
pub const MAX_POSTGRES_BATCH: u32 = (u16::MAX as usize / COLUMNS) as u32;

/// One row's values, borrowed from the batch's buffer.
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
    fn new(trade: &'a TradeRef<'a>, record: &Record) -> Self {
        Row {
            trade_id: &trade.trade_id,
            account_id: &trade.account_id,
            symbol: &trade.symbol,
            side: &trade.side,
            // In range: `storable` checked every record when it was read.
            quantity: trade.quantity as i32,
            price: trade.price,
            timestamp_ms: trade.timestamp_ms as f64,
            account_seq: trade.account_seq as i64,
            partition: record.partition,
            offset: record.offset,
        }
    }

    fn params(&self) -> [&(dyn postgres::types::ToSql + Sync); COLUMNS] {
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

/// `($1,...,$10),($11,...)` for `rows` rows.
fn values(rows: usize) -> String {
    let mut sql = String::with_capacity(INSERT.len() + rows * 80 + CONFLICT.len());
    sql.push_str(INSERT);
    for i in 0..rows {
        let b = i * COLUMNS;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(${},${},${},${},${},${},to_timestamp(${}::double precision / 1000),${},${},${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10
        ));
    }
    sql.push_str(CONFLICT);
    sql
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

/// Whether PostgreSQL refused the data itself (SQLSTATE class 22, data
/// exception; 23, integrity constraint violation; 54, program limit
/// exceeded, such as a value too large for its index): retrying the same
/// rows can never succeed, so the batch is written row by row and the rows
/// still refused are dead-lettered. Connection, serialization and shutdown
/// errors (08, 40001, 57P01) are worth retrying.
fn refused_data(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(&db.code().code()[..2], "22" | "23" | "54"))
}

/// The server's own message (e.g. which constraint a row violates), not
/// just "db error".
fn describe(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

impl Postgres {
    /// Connects and creates the table; an error here stops the consumer
    /// at start, naming DATABASE_URL.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let client = Self::open(url)?;
        Ok(Postgres {
            url: url.to_owned(),
            client: Some(client),
            inserts: HashMap::new(),
        })
    }

    fn open(url: &str) -> anyhow::Result<postgres::Client> {
        let mut client = settings(url)?
            .connect(postgres::NoTls)
            .map_err(|e| anyhow::anyhow!("cannot connect to DATABASE_URL: {e}"))?;
        // Consumers start together: serialize the CREATE (IF NOT EXISTS
        // alone races on the catalog) with a transaction-scoped lock.
        let mut tx = client.transaction()?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(4242001)")?;
        tx.batch_execute(CREATE)?;
        tx.commit()?;
        Ok(client)
    }

    /// The open connection, opened again if the server closed it (its
    /// prepared statements go with it).
    fn client(&mut self) -> anyhow::Result<&mut postgres::Client> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            self.client = None;
            self.inserts.clear();
            self.client = Some(Self::open(&self.url)?);
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(self.client.as_mut().expect("just opened"))
    }

    /// Inserts `rows` in one statement on the open connection: per row,
    /// whether it was inserted (false: skipped, its trade_id already
    /// stored, or earlier in `rows`).
    fn insert(&mut self, rows: &[Row<'_>]) -> Result<Vec<bool>, postgres::Error> {
        let client = self.client.as_mut().expect("write connects first");
        let statement = match self.inserts.get(&rows.len()) {
            Some(statement) => statement.clone(),
            None => {
                let statement = client.prepare(&values(rows.len()))?;
                self.inserts.insert(rows.len(), statement.clone());
                statement
            }
        };
        let params: Vec<_> = rows.iter().flat_map(Row::params).collect();
        let mut returned: std::collections::HashSet<String> = client
            .query(&statement, &params)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The first row of an id is the one inserted.
        Ok(rows.iter().map(|r| returned.remove(r.trade_id)).collect())
    }

    fn write<L>(&mut self, batch: &Batch<L>) -> anyhow::Result<Written> {
        let trades = batch
            .records
            .iter()
            .map(|r| TradeRef::decode(batch.payload(r)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("a checked trade no longer decodes: {e}"))?;
        let rows: Vec<Row<'_>> = trades
            .iter()
            .zip(&batch.records)
            .map(|(t, r)| Row::new(t, r))
            .collect();
        self.client()?;
        let mut written = Written::default();
        let inserted = match self.insert(&rows) {
            Ok(inserted) => inserted,
            Err(e) if refused_data(&e) => {
                tracing::warn!(
                    error = describe(&e),
                    rows = rows.len(),
                    "PostgreSQL refused a row of the batch: writing it row by row"
                );
                let mut inserted = Vec::with_capacity(rows.len());
                for (index, row) in rows.iter().enumerate() {
                    match self.insert(std::slice::from_ref(row)) {
                        Ok(one) => inserted.extend(one),
                        Err(e) if refused_data(&e) => {
                            written.refused.push(Refused {
                                index,
                                reason: "rejected_by_sink",
                                error: describe(&e),
                            });
                            // Refused, not skipped.
                            inserted.push(true);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                inserted
            }
            Err(e) => return Err(e.into()),
        };
        let client = self.client()?;
        for (index, row) in rows.iter().enumerate().filter(|(i, _)| !inserted[*i]) {
            let stored = client.query_opt(STORED_AS, &row.params()[..8])?;
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
