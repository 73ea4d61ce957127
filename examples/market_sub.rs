//! Market-data subscriber: reads quotes from the fan-out log, prints its
//! rate, its latency percentiles and what it lost every second, and at the
//! end (the log closed, or `--secs` passed) a latency histogram over the
//! whole run: p50, p90, p99, p99.9 and max.
//!
//! ```text
//! cargo run --release --example market_sub -- [--target shmq-market] [--name CURSOR]
//!     [--slow] [--spin] [--secs 3600]
//! ```
//!
//! Latency is receive time minus the quote's `ts_ns`, which `market_pub`
//! sets to the quote's scheduled send time (see there). `--name` reads
//! through a durable named cursor (`market_pub --cursors` creates them at
//! the start of a reliable log: then every quote arrives, in order),
//! committed every 1000 quotes, so a restart resumes where it left off.
//! `--slow` makes it deliberately slow (1 ms pause every 20 messages, at
//! most ~20k msg/s) to show `Lagged` in overwrite mode (in reliable mode it
//! slows the publisher instead). `--spin` busy-polls for the lowest latency
//! instead of sleeping when idle.
//!
//! The last two lines, the same from the C and Go subscribers:
//!
//! ```text
//! received N quotes, lost L to lag, G unexplained gaps, first F
//! latency from scheduled send (N quotes): p50 .. us  p90 .. us  p99 .. us  p99.9 .. us  max .. us
//! ```
//!
//! An unexplained gap is a quote missing without a `Lagged` saying so; it
//! must never happen.

#[path = "market/hist.rs"]
mod hist;
#[path = "market/quote.rs"]
mod quote;

use std::time::{Duration, Instant};

use hist::Hist;
use quote::{arg, flag, now_ns, percentile, Quote, QUOTE_SIZE};
use shmq::{Error, Log, RecvError, Start, Target, WaitStrategy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: Target = arg("--target", "shmq-market".to_string()).parse()?;
    let name: String = arg("--name", String::new());
    let secs: u64 = arg("--secs", 3600);
    let slow = flag("--slow");

    let log = open(&target)?;
    let mut sub = if name.is_empty() {
        log.subscribe(Start::Latest)?
    } else {
        log.subscribe_named(&name, Start::Latest)?
    };
    if flag("--spin") {
        sub.set_wait_strategy(WaitStrategy::BusySpin);
    }
    println!(
        "subscribed to {target} at position {}{}{}",
        sub.position(),
        if name.is_empty() {
            String::new()
        } else {
            format!(" (cursor {name:?})")
        },
        if slow { ", slow" } else { "" }
    );

    let end = Instant::now() + Duration::from_secs(secs);
    let mut next_report = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; QUOTE_SIZE];
    let mut latencies: Vec<u64> = Vec::with_capacity(1 << 20);
    let (mut received, mut lost, mut total, mut total_lost) = (0u64, 0u64, 0u64, 0u64);
    let mut last: Option<Quote> = None;
    let mut hist = Hist::new();
    // The sequence number expected next (None before the first quote).
    let (mut next, mut gaps, mut first) = (None::<u64>, 0u64, None::<u64>);
    loop {
        let now = Instant::now();
        if now >= next_report {
            report(&mut latencies, received, lost, total_lost, last.as_ref());
            received = 0;
            lost = 0;
            next_report += Duration::from_secs(1);
        }
        if now >= end {
            break;
        }
        match sub.recv_block(&mut buf, Some(Duration::from_millis(100))) {
            Ok(n) => {
                let q = Quote::decode(&buf[..n]).ok_or("not a quote")?;
                let latency = now_ns().saturating_sub(q.ts_ns);
                latencies.push(latency);
                hist.record(latency);
                if next.is_some_and(|n| n != q.seq) {
                    gaps += 1;
                }
                first.get_or_insert(q.seq);
                next = Some(q.seq + 1);
                received += 1;
                total += 1;
                last = Some(q);
                if slow && total % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if !name.is_empty() && total % 1000 == 0 {
                    sub.commit()?;
                }
            }
            Err(RecvError::Lagged(n)) => {
                lost += n;
                total_lost += n;
                next = next.map(|s| s + n);
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Closed) => {
                println!("log closed");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !name.is_empty() {
        sub.commit()?;
    }
    println!(
        "received {total} quotes, lost {total_lost} to lag, {gaps} unexplained gaps, first {}",
        first.map_or("-".to_string(), |f| f.to_string())
    );
    println!("{}", hist.summary());
    Ok(())
}

/// Opens the log, waiting up to 10 s for the publisher to create it.
fn open(target: &Target) -> Result<Log, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Log::open(target) {
            Err(Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn report(
    latencies: &mut Vec<u64>,
    received: u64,
    lost: u64,
    total_lost: u64,
    last: Option<&Quote>,
) {
    latencies.sort_unstable();
    let us = |p: f64| percentile(latencies, p) as f64 / 1000.0;
    let quote = last.map_or(String::new(), |q| {
        format!("  last {} {:.2}/{:.2}", q.symbol(), q.bid, q.ask)
    });
    println!(
        "{received:>9} msg/s  latency p50 {:>7.2} us  p99 {:>8.2} us  p99.9 {:>8.2} us  max {:>9.2} us  lagged {lost} (total {total_lost}){quote}",
        us(50.0),
        us(99.0),
        us(99.9),
        us(100.0),
    );
    latencies.clear();
}
