//! Decoding a trade's JSON, as trade-consumer does for every message:
//! `TradeRef::decode` (the text checked to be UTF-8 once, then parsed as
//! text) beside serde_json's `from_slice` (each string checked on its own),
//! on the same 10,000 trades as trade-producer writes them. Prints
//! nanoseconds per trade and the ratio.
//!
//!     cargo bench -p trade-model --bench decode [-- --rounds 200]

#![allow(clippy::disallowed_methods)] // a benchmark measures time

use std::hint::black_box;
use std::time::Instant;

use trade_model::{TradeGenerator, TradeRef};

fn rounds() -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(200)
}

/// Nanoseconds per trade of `decode` over `payloads`, the best of `rounds`.
fn time(payloads: &[Vec<u8>], rounds: u32, decode: impl Fn(&[u8]) -> u64) -> f64 {
    (0..rounds.max(1))
        .map(|_| {
            let started = Instant::now();
            let mut sum = 0u64;
            for p in payloads {
                sum = sum.wrapping_add(decode(black_box(p)));
            }
            black_box(sum);
            started.elapsed().as_nanos() as f64 / payloads.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let rounds = rounds();
    let mut trades = TradeGenerator::new("bench-host-1-1700000000", 10_000);
    let payloads: Vec<Vec<u8>> = (0..10_000)
        .map(|_| serde_json::to_vec(&trades.next_trade(0)).expect("json"))
        .collect();
    let bytes = payloads.iter().map(Vec::len).sum::<usize>() / payloads.len();
    let whole = time(&payloads, rounds, |p| {
        u64::from(TradeRef::decode(p).expect("a trade").quantity)
    });
    let per_string = time(&payloads, rounds, |p| {
        u64::from(
            serde_json::from_slice::<TradeRef<'_>>(p)
                .expect("a trade")
                .quantity,
        )
    });
    println!("10,000 trades of {bytes} bytes, best of {rounds} rounds");
    println!("{:<44} {:>10}", "decode", "ns/trade");
    println!(
        "{:<44} {:>10.0}",
        "TradeRef::decode (UTF-8 checked once)", whole
    );
    println!(
        "{:<44} {:>10.0}",
        "serde_json::from_slice (per string)", per_string
    );
    println!("ratio: {:.2}x faster", per_string / whole);
}
