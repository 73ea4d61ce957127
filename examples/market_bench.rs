//! Fan-out log measurements between processes, with the machine's raw
//! cache-line ping-pong measured in the same run as the baseline.
//!
//! ```text
//! cargo run --release --example market_bench -- [--rounds 100000] [--messages 2000000]
//! ```
//!
//! 1. raw ping-pong: two processes bounce one shared cache line; one-way = RTT / 2.
//! 2. log ping-pong: the same over two logs (ping, pong), busy-spinning subscribers.
//! 3. throughput, reliable mode, 64-byte messages: one publisher to one
//!    subscriber, then to four (sleeping when idle), no loss allowed.
//!
//! Child processes are this program re-executed with `--child ROLE ...`.

#[path = "market/quote.rs"]
mod quote;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quote::{arg, now_ns, percentile};
use shmq::{
    Log, LogConfig, LogMode, Queue, QueueConfig, RecvError, Segment, Start, Target, WaitStrategy,
};

const MSG: usize = 64;
const T: Option<Duration> = Some(Duration::from_secs(30));

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]);
    }
    let rounds: u64 = arg("--rounds", 100_000);
    let messages: u64 = arg("--messages", 2_000_000);
    let tag = format!("shmq-bench-log-{}", std::process::id());

    let raw = raw_pingpong(&tag, rounds)?;
    let log = log_pingpong(&tag, rounds)?;
    println!("one-way latency over {rounds} round trips (RTT / 2), ns:");
    println!(
        "  {:<22} p50 {:>6}  p99 {:>6}  p99.9 {:>7}",
        "raw cache line", raw.0, raw.1, raw.2
    );
    println!(
        "  {:<22} p50 {:>6}  p99 {:>6}  p99.9 {:>7}",
        "log (busy-spin)", log.0, log.1, log.2
    );
    println!(
        "  log p50 / raw p50 = {:.2}",
        log.0 as f64 / raw.0.max(1) as f64
    );

    let one = throughput(&tag, messages, 1)?;
    let four = throughput(&tag, messages, 4)?;
    println!("throughput, reliable mode, {MSG}-byte messages, {messages} messages:");
    println!("  1 subscriber   {:>6.2} M msg/s", one[0] / 1e6);
    for (i, r) in four.iter().enumerate() {
        println!(
            "  4 subscribers, #{i} {:>6.2} M msg/s ({:.0}% of 1 subscriber)",
            r / 1e6,
            100.0 * r / one[0]
        );
    }
    Ok(())
}

fn spawn(args: &[&str]) -> Res<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg("--child")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?)
}

fn finish(child: Child) -> Res<String> {
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("child failed: {}", out.status).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn child(args: &[String]) -> Res<()> {
    match args[0].as_str() {
        "raw" => {
            let seg = Segment::open(&Target::Posix(args[1].clone()))?;
            // SAFETY: the segment is at least 4096 bytes, page aligned.
            let word = unsafe { &*(seg.as_ptr() as *const AtomicU64) };
            let rounds: u64 = args[2].parse()?;
            for k in 0..rounds {
                while word.load(Ordering::Acquire) != 2 * k + 1 {
                    std::hint::spin_loop();
                }
                word.store(2 * k + 2, Ordering::Release);
            }
        }
        "pong" => {
            let ping = Log::open(&Target::Posix(args[1].clone()))?
                .with_wait_strategy(WaitStrategy::BusySpin);
            let pong = Log::open(&Target::Posix(args[2].clone()))?;
            let rounds: u64 = args[3].parse()?;
            let mut sub = ping.subscribe(Start::Latest)?;
            pong.publish(b"ready")?;
            let mut buf = [0u8; MSG];
            for _ in 0..rounds {
                let n = sub.recv_block(&mut buf, T)?;
                pong.publish(&buf[..n])?;
            }
        }
        "sub" => {
            let log = Log::open(&Target::Posix(args[1].clone()))?;
            let ready = Queue::open(&Target::Posix(args[2].clone()))?;
            let count: u64 = args[3].parse()?;
            let mut sub = log.subscribe(Start::Latest)?;
            ready.enqueue_try(b"r")?;
            let mut buf = [0u8; MSG];
            let mut first = None;
            for i in 0..count {
                match sub.recv_block(&mut buf, T) {
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        return Err(format!("lost {n} in reliable mode").into())
                    }
                    Err(e) => return Err(format!("message {i}: {e}").into()),
                }
                first.get_or_insert_with(Instant::now);
            }
            let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            println!("{}", (count - 1) as f64 / secs);
        }
        other => return Err(format!("unknown child role {other}").into()),
    }
    Ok(())
}

fn stats(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    (
        percentile(&v, 50.0),
        percentile(&v, 99.0),
        percentile(&v, 99.9),
    )
}

fn raw_pingpong(tag: &str, rounds: u64) -> Res<(u64, u64, u64)> {
    let name = format!("{tag}-raw");
    let target = Target::Posix(name.clone());
    let seg = Segment::create(&target, 4096, 0o600)?;
    // SAFETY: the segment is 4096 bytes, page aligned, zeroed.
    let word = unsafe { &*(seg.as_ptr() as *const AtomicU64) };
    let child = spawn(&["raw", &name, &rounds.to_string()])?;
    let mut samples = Vec::with_capacity(rounds as usize);
    for k in 0..rounds {
        let t0 = now_ns();
        word.store(2 * k + 1, Ordering::Release);
        while word.load(Ordering::Acquire) != 2 * k + 2 {
            std::hint::spin_loop();
        }
        samples.push((now_ns() - t0) / 2);
    }
    finish(child)?;
    target.unlink()?;
    Ok(stats(samples))
}

fn log_pingpong(tag: &str, rounds: u64) -> Res<(u64, u64, u64)> {
    let (ping_name, pong_name) = (format!("{tag}-ping"), format!("{tag}-pong"));
    let config = LogConfig::new(MSG, 1024);
    let ping = Log::create(&Target::Posix(ping_name.clone()), &config)?;
    let pong = Log::create(&Target::Posix(pong_name.clone()), &config)?
        .with_wait_strategy(WaitStrategy::BusySpin);
    let mut sub = pong.subscribe(Start::Latest)?;
    let child = spawn(&["pong", &ping_name, &pong_name, &rounds.to_string()])?;
    let mut buf = [0u8; MSG];
    sub.recv_block(&mut buf, T)?; // "ready"
    let msg = [7u8; 16];
    let mut samples = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t0 = now_ns();
        ping.publish(&msg)?;
        sub.recv_block(&mut buf, T)?;
        samples.push((now_ns() - t0) / 2);
    }
    finish(child)?;
    ping.unlink()?;
    pong.unlink()?;
    Ok(stats(samples))
}

/// Rates (messages per second) seen by each of `subs` subscriber processes.
fn throughput(tag: &str, messages: u64, subs: usize) -> Res<Vec<f64>> {
    let (log_name, ready_name) = (format!("{tag}-tput"), format!("{tag}-ready"));
    let config = LogConfig::new(MSG, 4096)
        .mode(LogMode::Reliable)
        .cursors(subs);
    let log = Log::create(&Target::Posix(log_name.clone()), &config)?;
    let ready = Queue::create(&Target::Posix(ready_name.clone()), &QueueConfig::new(8, 16))?;
    let children: Vec<Child> = (0..subs)
        .map(|_| spawn(&["sub", &log_name, &ready_name, &messages.to_string()]))
        .collect::<Res<_>>()?;
    let mut buf = [0u8; 8];
    for _ in 0..subs {
        ready.dequeue_block(&mut buf, T)?;
    }
    let msg = [1u8; MSG];
    for _ in 0..messages {
        log.publish_block(&msg, T)?;
    }
    let rates = children
        .into_iter()
        .map(|c| Ok(finish(c)?.trim().parse::<f64>()?))
        .collect::<Res<Vec<f64>>>()?;
    log.unlink()?;
    ready.unlink()?;
    Ok(rates)
}
