//! Two processes bounce a 64-byte message over a pair of single-producer /
//! single-consumer queues and print the one-way latency.
//!
//! ```sh
//! cargo run --release --example ping_pong            # 100000 round trips
//! cargo run --release --example ping_pong -- 1000    # fewer
//! ```
//! The first process creates both queues and starts the second (itself,
//! with `--pong`); both queues are removed when it exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmq::{Queue, QueueConfig, Target, WaitStrategy};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--pong") {
        return pong(&args[1], &args[2]);
    }
    let rounds: u32 = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let ping: Target = format!("ping-{}", std::process::id()).parse()?;
    let pong: Target = format!("pong-{}", std::process::id()).parse()?;
    let config = QueueConfig::new(64, 64).spsc(true);
    let _ping_queue = Queue::create_owned(&ping, &config)?;
    let _pong_queue = Queue::create_owned(&pong, &config)?;

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--pong", &ping.to_string(), &pong.to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    let mut tx = Queue::open(&ping)?
        .with_wait_strategy(WaitStrategy::BusySpin)
        .into_producer()?;
    let mut rx = Queue::open(&pong)?
        .with_wait_strategy(WaitStrategy::BusySpin)
        .into_consumer()?;
    let mut msg = [0u8; 64];
    let start = Instant::now();
    for i in 0..rounds {
        msg[..4].copy_from_slice(&i.to_le_bytes());
        tx.enqueue_block(&msg, TIMEOUT)?;
        let n = rx.dequeue_block(&mut msg, TIMEOUT)?;
        assert_eq!(
            (n, &msg[..4]),
            (64, &i.to_le_bytes()[..]),
            "the echo is the message sent"
        );
    }
    let elapsed = start.elapsed();
    tx.close();
    let status = child.wait()?;
    println!(
        "{rounds} round trips of 64 bytes in {elapsed:?}: {:.0} ns one-way (mean)",
        elapsed.as_nanos() as f64 / f64::from(rounds.max(1)) / 2.0
    );
    if !status.success() {
        return Err(format!("pong process failed: {status}").into());
    }
    Ok(())
}

/// The second process: echoes every message until the ping queue closes.
fn pong(ping: &str, pong: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Queue::open(&ping.parse()?)?
        .with_wait_strategy(WaitStrategy::BusySpin)
        .into_consumer()?;
    let mut tx = Queue::open(&pong.parse()?)?
        .with_wait_strategy(WaitStrategy::BusySpin)
        .into_producer()?;
    let mut msg = [0u8; 64];
    loop {
        match rx.dequeue_block(&mut msg, TIMEOUT) {
            Ok(n) => tx.enqueue_block(&msg[..n], TIMEOUT)?,
            Err(shmq::RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
