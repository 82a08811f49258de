//! The trade transaction: the JSON message trade-producer sends and
//! trade-consumer processes, keyed by account so one account's trades stay
//! ordered on one partition.

pub mod profile;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// Unique across all producers: `<producer id>-<sequence>`.
    pub trade_id: String,
    /// The message key.
    pub account_id: String,
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: String,
    pub quantity: u32,
    pub price: f64,
    /// Milliseconds since the Unix epoch when the trade was made.
    pub timestamp_ms: i64,
    /// 1, 2, 3, ... per account and producer: the order the consumer must keep.
    pub account_seq: u64,
}

/// A trade decoded in place: its text fields borrow from the message
/// (copied only when the JSON escapes a character), so a consumer checks
/// and stores a trade without allocating.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TradeRef<'a> {
    #[serde(borrow)]
    pub trade_id: Cow<'a, str>,
    #[serde(borrow)]
    pub account_id: Cow<'a, str>,
    #[serde(borrow)]
    pub symbol: Cow<'a, str>,
    #[serde(borrow)]
    pub side: Cow<'a, str>,
    pub quantity: u32,
    pub price: f64,
    pub timestamp_ms: i64,
    pub account_seq: u64,
}

impl<'a> TradeRef<'a> {
    /// Decodes one message's JSON. The text is checked to be UTF-8 once,
    /// as a whole: decoded from bytes, each of its dozen short strings
    /// would be checked on its own, which costs more than the check.
    pub fn decode(json: &'a [u8]) -> serde_json::Result<Self> {
        match std::str::from_utf8(json) {
            Ok(text) => serde_json::from_str(text),
            // Not UTF-8: serde_json's own error, which says where.
            Err(_) => serde_json::from_slice(json),
        }
    }
}

const SYMBOLS: [&str; 10] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "V", "MA",
];

/// Deterministic trades: `accounts` accounts visited by a fixed-stride walk,
/// so a run is reproducible and every account gets trades.
#[derive(Debug, Clone)]
pub struct TradeGenerator {
    producer_id: String,
    accounts: u64,
    sent: u64,
    account_seqs: Vec<u64>,
}

impl TradeGenerator {
    pub fn new(producer_id: impl Into<String>, accounts: u32) -> Self {
        let accounts = u64::from(accounts.max(1));
        TradeGenerator {
            producer_id: producer_id.into(),
            accounts,
            sent: 0,
            account_seqs: vec![0; accounts as usize],
        }
    }

    /// The next trade, stamped `timestamp_ms`.
    pub fn next_trade(&mut self, timestamp_ms: i64) -> Trade {
        self.sent += 1;
        let n = self.sent;
        // A stride coprime with most account counts spreads the keys.
        let account = (n.wrapping_mul(7919)) % self.accounts;
        let seq = &mut self.account_seqs[account as usize];
        *seq += 1;
        Trade {
            trade_id: format!("{}-{n}", self.producer_id),
            account_id: format!("ACC{account:06}"),
            symbol: SYMBOLS[(n % SYMBOLS.len() as u64) as usize].to_owned(),
            side: if n.is_multiple_of(2) { "BUY" } else { "SELL" }.to_owned(),
            quantity: (1 + n % 1000) as u32,
            price: 100.0 + (n % 5000) as f64 / 100.0,
            timestamp_ms,
            account_seq: *seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trade_decodes_in_place_with_the_same_fields_as_owned() {
        let mut trades = TradeGenerator::new("p", 3);
        let mut trade = trades.next_trade(1_700_000_000_000);
        trade.symbol = "A\"B".into();
        let json = serde_json::to_vec(&trade).unwrap();
        let borrowed = TradeRef::decode(&json).unwrap();
        assert!(matches!(borrowed.trade_id, Cow::Borrowed(_)));
        assert!(
            matches!(borrowed.symbol, Cow::Owned(_)),
            "an escape is unescaped into a copy"
        );
        assert_eq!(
            (
                borrowed.trade_id.as_ref(),
                borrowed.account_id.as_ref(),
                borrowed.symbol.as_ref()
            ),
            (trade.trade_id.as_str(), trade.account_id.as_str(), "A\"B")
        );
        assert_eq!(
            (
                borrowed.quantity,
                borrowed.price,
                borrowed.timestamp_ms,
                borrowed.account_seq
            ),
            (
                trade.quantity,
                trade.price,
                trade.timestamp_ms,
                trade.account_seq
            )
        );
        assert!(TradeRef::decode(b"{\"trade_id\": 1}").is_err());
    }

    #[test]
    fn ids_are_unique_and_account_sequences_count_up() {
        let mut g = TradeGenerator::new("p1", 10);
        let trades: Vec<Trade> = (0..100).map(|_| g.next_trade(0)).collect();
        let ids: std::collections::HashSet<_> = trades.iter().map(|t| &t.trade_id).collect();
        assert_eq!(ids.len(), 100);
        for account in 0..10 {
            let seqs: Vec<u64> = trades
                .iter()
                .filter(|t| t.account_id == format!("ACC{account:06}"))
                .map(|t| t.account_seq)
                .collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        }
        let json = serde_json::to_string(&trades[0]).unwrap();
        assert_eq!(serde_json::from_str::<Trade>(&json).unwrap(), trades[0]);
    }
}
