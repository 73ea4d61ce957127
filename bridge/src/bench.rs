//! `shmq-bridge bench`: 64-byte messages log -> out bridge -> NATS -> in
//! bridge -> log, beside a bare async-nats publisher and subscriber through
//! the same server in the same run, and the ratio of the two throughputs
//! (issue 13's bar: at least 0.8x).
//!
//! - bare: one process, two connections (publisher, subscriber); the
//!   publisher sends flat out, then flushes; throughput is what the
//!   subscriber received over the time from the first publish to the last
//!   receive. Core NATS drops for a slow subscriber: the drops are printed.
//! - bridge: this process publishes into log A (reliable, gated by the out
//!   route's cursor) and reads log B; two `shmq-bridge` processes (out, in,
//!   core mode) carry the messages. Throughput: messages over the time from
//!   the first publish into A until B holds them all.
//! - latency: paced messages (one every `--pace-us`) carrying the send
//!   time; p50 and p99 of the one-way time, publisher to final reader.
//!
//! Without `--server` it starts its own `nats-server` (found as the tests
//! find it) on a free loopback port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use shmq::{Log, LogConfig, LogMode, RecvError, Start, Target};

/// Options of `shmq-bridge bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A running NATS server; default: start nats-server on a free loopback port
    #[arg(long)]
    server: Option<String>,
    /// Messages per throughput run
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Message size in bytes (at least 16)
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per latency run
    #[arg(long, default_value_t = 5_000)]
    latency_count: u64,
    /// Microseconds between two latency messages
    #[arg(long, default_value_t = 200)]
    pace_us: u64,
    /// Also run bare async-nats with three headers (Shmq-Host, Shmq-Segment,
    /// Shmq-Seq: the route's wire format before the single Nats-Msg-Id)
    #[arg(long)]
    header_cases: bool,
    /// The bridge's mode: core or jetstream (the bare cases are core NATS)
    #[arg(long, default_value = "core")]
    mode: String,
}

/// One case's figures.
struct Figures {
    rate: f64,
    received: u64,
    p50_us: f64,
    p99_us: f64,
    /// CPU time per message of each process during the throughput run.
    cpu: String,
}

/// Runs the benchmark and prints a table.
pub fn run(a: &BenchArgs) -> Result<()> {
    if a.size < 16 {
        bail!("--size must be at least 16 (the message carries an index and a time)");
    }
    if a.mode != "core" && a.mode != "jetstream" {
        bail!("--mode is core or jetstream, not {:?}", a.mode);
    }
    let tmp = std::env::temp_dir().join(format!("shmq-bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let _cleanup = Cleanup(tmp.clone());
    let (url, _server) = match &a.server {
        Some(u) => (u.clone(), None),
        None => {
            let (url, child) = start_server(&tmp, a.mode == "jetstream")?;
            SERVER_PID.store(child.id(), Ordering::Relaxed);
            (url, Some(KillOnDrop(child)))
        }
    };
    eprintln!(
        "shmq-bridge bench: {} messages of {} bytes via {url}, bridge in {} mode",
        a.count, a.size, a.mode
    );
    let bare_plain = bare(&url, a, Hdr::None)?;
    let bare_route = bare(&url, a, Hdr::Route)?;
    let bare_three = if a.header_cases {
        Some(bare(&url, a, Hdr::Three)?)
    } else {
        None
    };
    let bridged_plain = bridged(&url, a, &tmp, false)?;
    // Packing is for core routes (see `crate::pack`).
    let packed = if a.mode == "core" {
        Some(bridged(&url, a, &tmp, true)?)
    } else {
        None
    };
    let bridged = bridged_plain;
    println!(
        "{:<40} {:>10} {:>9} {:>8} {:>8}  cpu us/msg while moving {}",
        "case", "msgs/s", "received", "p50 us", "p99 us", a.count
    );
    let mut rows = vec![
        ("async-nats pub -> sub (bare)", &bare_plain),
        ("  the same with the route's header", &bare_route),
    ];
    if let Some(f) = &bare_three {
        rows.push(("  the same with 3 headers (Shmq-*)", f));
    }
    rows.push(("log -> bridge -> NATS -> bridge -> log", &bridged));
    if let Some(f) = &packed {
        rows.push(("  the same, packed (out route --pack)", f));
    }
    for (name, f) in rows {
        println!(
            "{:<40} {:>10.0} {:>9} {:>8.1} {:>8.1}  {}",
            name, f.rate, f.received, f.p50_us, f.p99_us, f.cpu
        );
    }
    let bare = bare_plain;
    let ratio = bridged.rate / bare.rate;
    println!(
        "throughput ratio bridge/bare: {ratio:.2}x (bar: >= 0.8x) {}",
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
    if let Some(f) = &packed {
        println!(
            "throughput ratio bridge packed/bare: {:.2}x (each NATS message carries a read batch)",
            f.rate / bare.rate
        );
    }
    println!(
        "throughput ratio bridge/bare with the route's header: {:.2}x",
        bridged.rate / bare_route.rate
    );
    println!(
        "throughput ratio bare with the route's header/bare: {:.2}x",
        bare_route.rate / bare.rate
    );
    println!(
        "latency ratio p50 bridge/bare: {:.2}x",
        bridged.p50_us / bare.p50_us
    );
    Ok(())
}

/// The pid of the `nats-server` the bench started (0: `--server` given),
/// for its CPU time.
static SERVER_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Clock ticks per second of /proc's CPU times: USER_HZ, which Linux
/// fixes at 100 for user space whatever the kernel's own tick.
fn ticks_per_second() -> f64 {
    100.0
}

/// CPU time (user + system) of a process so far, in clock ticks; 0 when
/// it cannot be read. Coarse (10 ms ticks): use counts of 200k and more.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

/// CPU times of some processes at a start: (name, pid, ticks).
struct Cpu(Vec<(&'static str, u32, u64)>);
impl Cpu {
    fn start(p: &[(&'static str, u32)]) -> Cpu {
        Cpu(p.iter().map(|&(n, pid)| (n, pid, cpu_ticks(pid))).collect())
    }
    /// Per process, CPU microseconds per message since `start`.
    fn per_msg(&self, n: u64) -> String {
        let tick_us = 1e6 / ticks_per_second();
        let mut line = String::new();
        for (name, pid, t0) in &self.0 {
            if *pid == 0 {
                continue;
            }
            let d = cpu_ticks(*pid).saturating_sub(*t0);
            line += &format!("{name} {:.2} ", d as f64 * tick_us / n as f64);
        }
        line.trim_end().to_owned()
    }
}

struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `nats-server` binary: `$NATS_SERVER`, `PATH`, `$(go env GOPATH)/bin`.
fn server_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("nats-server").is_file() {
                return Ok(dir.join("nats-server"));
            }
        }
    }
    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let p = PathBuf::from(gopath).join("bin/nats-server");
    if p.is_file() {
        return Ok(p);
    }
    bail!("nats-server not found: give --server, or install it (scripts/install-deps.sh)")
}

/// Starts `nats-server` on a free loopback port, with JetStream (stored
/// under `tmp`) when `jetstream`.
fn start_server(tmp: &std::path::Path, jetstream: bool) -> Result<(String, Child)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut args = vec![
        "-a".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
    ];
    if jetstream {
        let dir = tmp.join("js");
        args.extend([
            "-js".to_owned(),
            "-sd".to_owned(),
            dir.display().to_string(),
        ]);
    }
    let child = Command::new(server_bin()?)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.join("nats.log"))?)
        .spawn()
        .context("starting nats-server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nats-server did not listen within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((format!("nats://127.0.0.1:{port}"), child))
}

fn stamp(buf: &mut [u8], i: u64, t: u64) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
    buf[8..16].copy_from_slice(&t.to_le_bytes());
}

fn stamped_time(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default())
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// What a bare case puts on every message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hdr {
    /// Nothing: `publish`.
    None,
    /// What an out route from a log puts on it (`Nats-Msg-Id:
    /// host/segment/seq`, built as the route builds it).
    Route,
    /// Three headers `Shmq-Host`, `Shmq-Segment`, `Shmq-Seq`.
    Three,
}

fn three_headers(seq: u64) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Shmq-Host", "bench-host");
    h.insert("Shmq-Segment", "posix:bench-segment");
    h.insert("Shmq-Seq", seq.to_string().as_str());
    h
}

/// Bare async-nats: throughput, then paced latency; with the bridge's
/// headers on every message as `hdr` says.
fn bare(url: &str, a: &BenchArgs, hdr: Hdr) -> Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let opts = || async_nats::ConnectOptions::new().subscription_capacity(1 << 20);
        let pubc = opts().connect(url).await?;
        let subc = opts().connect(url).await?;
        let subject = match hdr {
            Hdr::None => "bench.bare",
            Hdr::Route => "bench.route",
            Hdr::Three => "bench.three",
        };
        let route = crate::out::Headers::new("bench-host", "posix:bench-segment", "log");
        // Throughput.
        let mut sub = subc.subscribe(subject).await?;
        subc.flush().await?;
        let n = a.count;
        let payload = Bytes::from(vec![7u8; a.size]);
        let recv = tokio::spawn(async move {
            let mut got = 0u64;
            let mut last = Instant::now();
            while got < n {
                match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                    Ok(Some(_)) => {
                        got += 1;
                        last = Instant::now();
                    }
                    _ => break,
                }
            }
            (got, last, sub)
        });
        let cpu = Cpu::start(&[
            ("server", SERVER_PID.load(Ordering::Relaxed)),
            ("client", std::process::id()),
        ]);
        let started = Instant::now();
        for i in 0..n {
            match hdr {
                Hdr::None => pubc.publish(subject, payload.clone()).await?,
                Hdr::Route => {
                    pubc.publish_with_headers(subject, route.for_seq(i), payload.clone())
                        .await?
                }
                Hdr::Three => {
                    pubc.publish_with_headers(subject, three_headers(i), payload.clone())
                        .await?
                }
            }
        }
        pubc.flush().await?;
        let (got, last, mut sub) = recv.await?;
        let rate = got as f64 / last.duration_since(started).as_secs_f64();
        let cpu = cpu.per_msg(n);
        // Latency, paced from a plain thread (tokio's timer has 1 ms steps).
        let base = Instant::now();
        let lat_n = a.latency_count;
        let size = a.size;
        let pace = Duration::from_micros(a.pace_us);
        let handle = tokio::runtime::Handle::current();
        let p = pubc.clone();
        let sender = std::thread::spawn(move || -> Result<()> {
            let mut buf = vec![0u8; size];
            for i in 0..lat_n {
                stamp(&mut buf, i, base.elapsed().as_nanos() as u64);
                let b = Bytes::copy_from_slice(&buf);
                handle.block_on(async { p.publish(subject, b).await })?;
                std::thread::sleep(pace);
            }
            Ok(())
        });
        let mut h = hist();
        while h.len() < lat_n {
            match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                Ok(Some(m)) => {
                    let now = base.elapsed().as_nanos() as u64;
                    h.record(now.saturating_sub(stamped_time(&m.payload)).max(1))?;
                }
                _ => break,
            }
        }
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        Ok(Figures {
            rate,
            received: got,
            p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            cpu,
        })
    })
}

/// Log -> bridge -> NATS -> bridge -> log.
fn bridged(url: &str, a: &BenchArgs, tmp: &std::path::Path, pack: bool) -> Result<Figures> {
    let pid = std::process::id();
    let tag = if pack { "-packed" } else { "" };
    let ta = Target::Posix(format!("shmq-bridge-bench-{pid}-a{tag}"));
    let tb = Target::Posix(format!("shmq-bridge-bench-{pid}-b{tag}"));
    let cap = (a.count.max(a.latency_count) as usize + 1)
        .next_power_of_two()
        .max(1 << 16);
    let la = Log::create(
        &ta,
        &LogConfig::new(a.size, 1 << 16)
            .mode(LogMode::Reliable)
            .cursors(4),
    )?;
    let _ua = Unlink(ta.clone());
    let lb = Log::create(&tb, &LogConfig::new(a.size, cap).cursors(4))?;
    let _ub = Unlink(tb.clone());
    la.create_cursor("bridge.bench", Start::Oldest)?;
    let exe = std::env::current_exe()?;
    let spawn = |args: &[String], log: &str| -> Result<KillOnDrop> {
        Ok(KillOnDrop(
            Command::new(&exe)
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(tmp.join(log))?)
                .spawn()?,
        ))
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let state = tmp.join(format!("bench-in{tag}.state"));
    let (in_log, out_log) = (format!("in{tag}.log"), format!("out{tag}.log"));
    // JetStream mode: a stream of its own per run (on a server the bench
    // started, stored in the bench's temp dir; on a --server, left there).
    let stream = format!("SHMQ_BRIDGE_BENCH_{pid}");
    let ready = if a.mode == "jetstream" {
        "consuming"
    } else {
        "subscribed"
    };
    let inb = spawn(
        &s(&[
            "in",
            "--local",
            &tb.to_string(),
            "--subject",
            "bench.bridge",
            "--name",
            "bench-in",
            "--mode",
            &a.mode,
            "--stream",
            &stream,
            "--server",
            url,
            "--state",
            state.to_str().unwrap_or("bench-in.state"),
        ]),
        &in_log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(tmp.join(&in_log))
        .unwrap_or_default()
        .contains(ready)
    {
        if Instant::now() > deadline {
            bail!("the in bridge was not {ready} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out_args = s(&[
        "out",
        "--local",
        &ta.to_string(),
        "--subject",
        "bench.bridge",
        "--name",
        "bench",
        "--mode",
        &a.mode,
        "--stream",
        &stream,
        "--server",
        url,
    ]);
    if pack {
        out_args.push("--pack".into());
    }
    let out = spawn(&out_args, &out_log)?;
    // Throughput.
    let n = a.count;
    let payload = vec![7u8; a.size];
    let start_b = lb.next_seq();
    let cpu = Cpu::start(&[
        ("server", SERVER_PID.load(Ordering::Relaxed)),
        ("bench", std::process::id()),
        ("out", out.0.id()),
        ("in", inb.0.id()),
    ]);
    let started = Instant::now();
    for _ in 0..n {
        la.publish_block(&payload, Some(Duration::from_secs(20)))?;
    }
    let mut last_seen = (lb.next_seq(), Instant::now());
    loop {
        let now = lb.next_seq();
        if now - start_b >= n {
            last_seen = (now, Instant::now());
            break;
        }
        if now != last_seen.0 {
            last_seen = (now, Instant::now());
        } else if last_seen.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let got = last_seen.0 - start_b;
    let rate = got as f64 / last_seen.1.duration_since(started).as_secs_f64();
    let cpu = cpu.per_msg(n);
    // Latency: a reader thread on B, a paced publisher here.
    let base = Instant::now();
    let lat_n = a.latency_count;
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let mut sub = lb.subscribe(Start::Latest)?;
    let reader = {
        let done = done.clone();
        let seen = seen.clone();
        let size = a.size;
        std::thread::spawn(move || -> Result<Histogram<u64>> {
            let mut h = hist();
            let mut buf = vec![0u8; size];
            // Relaxed: a stop flag.
            while !done.load(Ordering::Relaxed) {
                match sub.recv_block(&mut buf, Some(Duration::from_millis(50))) {
                    Ok(_) => {
                        let now = base.elapsed().as_nanos() as u64;
                        h.record(now.saturating_sub(stamped_time(&buf)).max(1))?;
                        // Relaxed: a progress count.
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(RecvError::Timeout | RecvError::Lagged(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(h)
        })
    };
    let mut buf = vec![0u8; a.size];
    let pace = Duration::from_micros(a.pace_us);
    for i in 0..lat_n {
        stamp(&mut buf, i, base.elapsed().as_nanos() as u64);
        la.publish_block(&buf, Some(Duration::from_secs(20)))?;
        std::thread::sleep(pace);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // Relaxed: a progress count.
    while seen.load(Ordering::Relaxed) < lat_n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Relaxed: a stop flag.
    done.store(true, Ordering::Relaxed);
    let h = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    Ok(Figures {
        rate,
        received: got,
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        cpu,
    })
}

struct Unlink(Target);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = self.0.unlink();
    }
}
