//! Where batches are written: a simulated write that takes
//! BATCH_PROCESSING_TIME (as the reference consumer), or PostgreSQL.

use std::time::Duration;

use trade_model::Trade;

/// A trade with where it came from.
pub struct Record {
    pub trade: Trade,
    pub partition: i32,
    pub offset: i64,
    /// Age of the message when consumed, milliseconds.
    pub age_ms: i64,
}

/// PostgreSQL's timestamptz range (4714 BC to 294276 AD), in Unix ms.
const TIMESTAMP_MS: std::ops::RangeInclusive<i64> = -210_866_803_200_000..=9_224_318_015_999_999;

/// Whether a parsed trade can be stored as it is: a trade that a sink
/// would refuse on every retry (valid JSON, yet not storable) is an invalid
/// message, dead-lettered like malformed JSON, never a stalled partition.
pub fn storable(t: &Trade) -> Result<(), String> {
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

/// Writes one batch; returns only once the batch is durable.
pub trait Sink {
    fn write(&mut self, batch: &[Record]) -> anyhow::Result<()>;
}

/// What a simulated write costs.
pub enum Cost {
    /// The same time for every batch (the reference consumer).
    PerBatch(Duration),
    /// This much per message.
    PerMessage(Duration),
}

/// Sleeps for what the batch costs.
pub struct Simulated {
    pub cost: Cost,
}

impl Sink for Simulated {
    fn write(&mut self, batch: &[Record]) -> anyhow::Result<()> {
        let took = match self.cost {
            Cost::PerBatch(t) => t,
            Cost::PerMessage(t) => t * batch.len() as u32,
        };
        if !took.is_zero() {
            std::thread::sleep(took);
        }
        Ok(())
    }
}

/// One multi-row INSERT per batch into `trades`, idempotent on `trade_id`,
/// so a batch replayed after a crash writes no duplicates. A connection
/// the server closed (a restart, a failover) is opened again by the next
/// write.
pub struct Postgres {
    url: String,
    client: Option<postgres::Client>,
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

const COLUMNS: usize = 10;

/// Largest batch one INSERT can carry: PostgreSQL takes at most 65,535
/// bind parameters per statement.
pub const MAX_POSTGRES_BATCH: u32 = (u16::MAX as usize / COLUMNS) as u32;

impl Postgres {
    /// Connects and creates the table; an error here stops the consumer
    /// at start, naming DATABASE_URL.
    pub fn connect(url: &str) -> anyhow::Result<Self> {
        let client = Self::open(url)?;
        Ok(Postgres {
            url: url.to_owned(),
            client: Some(client),
        })
    }

    fn open(url: &str) -> anyhow::Result<postgres::Client> {
        let mut client = postgres::Client::connect(url, postgres::NoTls)
            .map_err(|e| anyhow::anyhow!("cannot connect to DATABASE_URL: {e}"))?;
        // Consumers start together: serialize the CREATE (IF NOT EXISTS
        // alone races on the catalog) with a transaction-scoped lock.
        let mut tx = client.transaction()?;
        tx.batch_execute("SELECT pg_advisory_xact_lock(4242001)")?;
        tx.batch_execute(CREATE)?;
        tx.commit()?;
        Ok(client)
    }

    /// The open connection, opened again if the server closed it.
    fn client(&mut self) -> anyhow::Result<&mut postgres::Client> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            self.client = None;
            self.client = Some(Self::open(&self.url)?);
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(self.client.as_mut().expect("just opened"))
    }
}

impl Sink for Postgres {
    fn write(&mut self, batch: &[Record]) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut sql = String::from(
            "INSERT INTO trades (trade_id, account_id, symbol, side, quantity, price, trade_time, account_seq, kafka_partition, kafka_offset) VALUES ",
        );
        let mut params: Vec<Box<dyn postgres::types::ToSql + Sync>> =
            Vec::with_capacity(batch.len() * COLUMNS);
        for (i, r) in batch.iter().enumerate() {
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
            let t = &r.trade;
            params.push(Box::new(t.trade_id.clone()));
            params.push(Box::new(t.account_id.clone()));
            params.push(Box::new(t.symbol.clone()));
            params.push(Box::new(t.side.clone()));
            // In range: `storable` checked every record.
            params.push(Box::new(t.quantity as i32));
            params.push(Box::new(t.price));
            params.push(Box::new(t.timestamp_ms as f64));
            params.push(Box::new(t.account_seq as i64));
            params.push(Box::new(r.partition));
            params.push(Box::new(r.offset));
        }
        sql.push_str(" ON CONFLICT (trade_id) DO NOTHING");
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p.as_ref()).collect();
        self.client()?.execute(sql.as_str(), &refs)?;
        Ok(())
    }
}
