//! Market-data publisher: synthetic quotes into a fan-out log.
//!
//! ```text
//! cargo run --release --example market_pub -- [--target shmq-market] [--rate 100000]
//!     [--secs 10] [--capacity 4096] [--reliable]
//! cargo run --release --example market_sub -- [--target shmq-market] [--slow] [--spin]
//! ```
//!
//! Publishes fixed-layout 48-byte quotes (see `market/quote.rs`), each
//! stamped with CLOCK_MONOTONIC, at `--rate` messages per second (0: as fast
//! as possible), and prints its rate every second. At the end it closes the
//! log (subscribers drain and exit) and removes it.

#[path = "market/quote.rs"]
mod quote;

use std::time::{Duration, Instant};

use quote::{arg, flag, now_ns, Quote, QUOTE_SIZE};
use shmq::{Error, Log, LogConfig, LogMode, Target};

const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "NFLX",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: Target = arg("--target", "shmq-market".to_string()).parse()?;
    let rate: u64 = arg("--rate", 100_000);
    let secs: u64 = arg("--secs", 10);
    let capacity: usize = arg("--capacity", 4096);
    let mode = if flag("--reliable") {
        LogMode::Reliable
    } else {
        LogMode::Overwrite
    };

    // A log left by an earlier run is replaced.
    match target.unlink() {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let log = Log::create(&target, &LogConfig::new(QUOTE_SIZE, capacity).mode(mode))?;
    println!(
        "publishing to {target} ({mode:?}, {capacity} slots) at {} for {secs} s",
        rate_text(rate)
    );

    let interval = Duration::from_nanos(1_000_000_000u64.checked_div(rate).unwrap_or(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next_send = start;
    let mut next_report = start + Duration::from_secs(1);
    let (mut seq, mut last_seq) = (0u64, 0u64);
    let mut mid = [100.0f64; SYMBOLS.len()];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_report {
            println!("published {:>9} msg/s (total {seq})", seq - last_seq);
            last_seq = seq;
            next_report += Duration::from_secs(1);
        }
        if now < next_send {
            let wait = next_send - now;
            if wait > Duration::from_micros(200) {
                std::thread::sleep(wait - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        next_send += interval;
        // A random walk per symbol.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let s = (rng % SYMBOLS.len() as u64) as usize;
        mid[s] = (mid[s] + ((rng >> 8) % 21) as f64 * 0.01 - 0.10).max(1.0);
        let mut symbol = [0u8; 8];
        symbol[..SYMBOLS[s].len()].copy_from_slice(SYMBOLS[s].as_bytes());
        let q = Quote {
            ts_ns: now_ns(),
            seq,
            symbol,
            bid: mid[s] - 0.01,
            ask: mid[s] + 0.01,
            bid_size: 100 + (rng >> 20) as u32 % 900,
            ask_size: 100 + (rng >> 30) as u32 % 900,
        };
        log.publish_block(&q.encode(), Some(Duration::from_secs(5)))?;
        seq += 1;
    }
    let stats = log.stats();
    println!(
        "done: {} published, {} lost to slow subscribers in total, cursors {:?}",
        stats.published, stats.lagged, stats.cursors
    );
    log.close();
    log.unlink()?;
    Ok(())
}

fn rate_text(rate: u64) -> String {
    if rate == 0 {
        "full speed".into()
    } else {
        format!("{rate} msg/s")
    }
}
