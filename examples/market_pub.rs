//! Market-data feed handler: publishes synthetic quotes into a fan-out log
//! at a fixed rate; subscribers in Rust, C and Go measure how late each
//! quote reaches them.
//!
//! ```text
//! cargo run --release --example market_pub -- [--target shmq-market] [--rate 100000]
//!     [--secs 10] [--capacity 4096] [--reliable] [--cursors rust,c,go,rust2]
//! cargo run --release --example market_sub -- [--target shmq-market] [--name rust] [--spin]
//! ffi/c/build/market_sub shmq-market [--name c]            # make -C ffi/c examples
//! (cd ffi/go && go run ./examples/market-sub -target shmq-market [-name go])
//! ```
//!
//! Quote `i` is due at t0 + i / rate and is published as soon as that time
//! comes; its `ts_ns` field is that scheduled time (CLOCK_MONOTONIC), not
//! the moment it was published. A subscriber's latency, receive time minus
//! `ts_ns`, thus includes any delay of the publisher or of the subscriber:
//! a stall counts against every quote it holds up (no coordinated
//! omission). `--rate 0` publishes as fast as possible (then `ts_ns` is
//! the publish time).
//!
//! `--cursors a,b,...` declares those durable named cursors when the log is
//! created (`LogConfig::durable_cursors`: they exist before any process can
//! see the log, at its first quote) and makes the log reliable: each
//! subscriber reading through one (`--name a`) receives every quote, in
//! order, and the publisher waits (at most 10 s) until every cursor has a
//! subscriber attached before it starts. Four subscribers, one per cursor,
//! in three languages, make the feed: `examples/market/feed.sh` builds and
//! runs it and prints each subscriber's histogram. Without `--cursors`,
//! subscribers join at the latest quote, and in overwrite mode (the
//! default) a slow one loses quotes, and is told how many. `--reliable`
//! without `--cursors` makes a reliable log nobody is registered on yet:
//! each publish waits (at most 5 s) for a subscriber, as a reliable log
//! refuses to publish into the void (`SendError::NotConnected`).
//!
//! It prints its rate every second; at the end it closes the log
//! (subscribers drain it, print their histograms and exit), waits up to
//! 10 s for the named cursors' subscribers to finish, and removes it.

#[path = "market/quote.rs"]
mod quote;

use std::time::{Duration, Instant};

use quote::{arg, flag, now_ns, Quote, QUOTE_SIZE};
use shmq::{Error, Log, LogConfig, LogMode, Publisher, Target};

const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "NFLX",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: Target = arg("--target", "shmq-market".to_string()).parse()?;
    let rate: u64 = arg("--rate", 100_000);
    let secs: f64 = arg("--secs", 10.0);
    let capacity: usize = arg("--capacity", 4096);
    let cursors: Vec<String> = arg("--cursors", String::new())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mode = if flag("--reliable") || !cursors.is_empty() {
        LogMode::Reliable
    } else {
        LogMode::Overwrite
    };

    // A log left by an earlier run is replaced.
    match target.unlink() {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // A feed has one publisher: a single-publisher log publishes with
    // plain stores (no locked instruction) through its `Publisher` handle.
    let config = LogConfig::new(QUOTE_SIZE, capacity)
        .mode(mode)
        .single_publisher(true)
        .cursors(cursors.len() + 16)
        .durable_cursors(&cursors);
    let log = Log::create(&target, &config)?;
    println!(
        "publishing to {target} ({mode:?}, {capacity} slots) at {} for {secs} s",
        rate_text(rate)
    );
    if !cursors.is_empty() {
        wait_for(&log, &cursors, true, Duration::from_secs(10))?;
    }

    let mut seq = 0u64;
    let result = {
        // Dropped before the close below, which it would otherwise have to
        // acknowledge by publishing again.
        let mut publisher = log.clone().into_publisher()?;
        publish(&mut publisher, rate, secs, &mut seq)
    };
    let stats = log.stats();
    println!(
        "done: {} published, {} lost to slow subscribers in total, cursors {:?}",
        stats.published, stats.lagged, stats.cursors
    );
    // Subscribers drain what is left, then see the log closed.
    log.close();
    if !cursors.is_empty() {
        wait_for(&log, &cursors, false, Duration::from_secs(10))?;
    }
    log.unlink()?;
    result
}

/// Publishes quotes at `rate` per second for `secs`, counting them in `seq`.
fn publish(
    log: &mut Publisher,
    rate: u64,
    secs: f64,
    seq: &mut u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut mid = [100.0f64; SYMBOLS.len()];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let t0 = now_ns();
    let end = t0 + (secs * 1e9) as u64;
    let (mut next_report, mut last_seq) = (t0 + 1_000_000_000, 0u64);
    loop {
        // Quote `seq` is due at t0 + seq / rate.
        let due = if rate == 0 {
            now_ns()
        } else {
            t0 + (*seq as u128 * 1_000_000_000 / rate as u128) as u64
        };
        if due >= end {
            return Ok(());
        }
        let now = wait_until(due);
        if now >= next_report {
            println!("published {:>9} msg/s (total {seq})", *seq - last_seq);
            last_seq = *seq;
            next_report += 1_000_000_000;
        }
        // A random walk per symbol.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let s = (rng % SYMBOLS.len() as u64) as usize;
        mid[s] = (mid[s] + ((rng >> 8) % 21) as f64 * 0.01 - 0.10).max(1.0);
        let mut symbol = [0u8; 8];
        symbol[..SYMBOLS[s].len()].copy_from_slice(SYMBOLS[s].as_bytes());
        let q = Quote {
            ts_ns: due,
            seq: *seq,
            symbol,
            bid: mid[s] - 0.01,
            ask: mid[s] + 0.01,
            bid_size: 100 + (rng >> 20) as u32 % 900,
            ask_size: 100 + (rng >> 30) as u32 % 900,
        };
        log.publish_block(&q.encode(), Some(Duration::from_secs(5)))?;
        *seq += 1;
    }
}

/// Waits until CLOCK_MONOTONIC reaches `due` (sleeping while it is more
/// than 200 µs away, spinning after) and returns the time.
fn wait_until(due: u64) -> u64 {
    loop {
        let now = now_ns();
        if now >= due {
            return now;
        }
        if due - now > 200_000 {
            std::thread::sleep(Duration::from_nanos(due - now - 100_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Waits until every named cursor has a live subscriber attached
/// (`attached`), or none (`!attached`: they finished), at most `limit`.
fn wait_for(
    log: &Log,
    cursors: &[String],
    attached: bool,
    limit: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + limit;
    loop {
        let waiting: Vec<&String> = cursors
            .iter()
            .filter(|c| {
                log.cursor(c)
                    .is_none_or(|i| (i.owner.is_some() && i.owner_alive) != attached)
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let what = if attached {
                "no subscriber attached to"
            } else {
                "subscribers still reading"
            };
            if attached {
                return Err(format!("{what} cursors {waiting:?} after {limit:?}").into());
            }
            eprintln!("{what} cursors {waiting:?} after {limit:?}; removing the log anyway");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn rate_text(rate: u64) -> String {
    if rate == 0 {
        "full speed".into()
    } else {
        format!("{rate} msg/s")
    }
}
