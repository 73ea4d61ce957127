//! `shmq bench --cases async`: what the async API (`shmq::asyncio`) costs
//! beside a blocked thread, in the same run.
//!
//! - Wake latency: a child process (forked before any thread of this run
//!   starts) publishes paced, timestamped messages to a log (every 500 us);
//!   the subscriber of this process receives each one either in a thread
//!   blocked in `recv_block` (sleeping at once: no spin) or in an async task
//!   on a tokio current-thread runtime (`recv_async`), and records receive
//!   time minus send time (CLOCK_MONOTONIC, comparable between processes).
//!   Both kinds of log: single-publisher (all subscribers sleep on one
//!   word) and multi-publisher (the waiter bit on the slot's stamp).
//! - Idle CPU: N async subscribers wait on logs where nothing is published
//!   for a few seconds; the CPU time of the whole process (getrusage:
//!   runtime thread, waiter threads) over that time, once with all N on
//!   one log and once with one log each (N distinct futex words: several
//!   waiter threads).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmq::{Log, LogConfig, RecvError, Start, Subscriber, Target, WaitStrategy};

use super::{histogram, now_ns, BenchArgs, Names};
use crate::signal;

/// Gap between two paced publishes.
const GAP: Duration = Duration::from_micros(500);
/// Idle subscribers in the CPU case.
const IDLE_TASKS: usize = 1000;
/// Seconds of the idle CPU case.
const IDLE_SECS: f64 = 3.0;

/// How the subscriber waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiter {
    Thread,
    Task,
}

/// Where the publisher and the receiving thread run. A wake from one CPU
/// to another (idle) one costs far more than a hand-off on one CPU on a
/// virtual machine, so the comparison holds the placement fixed for the
/// blocked thread and the task alike.
#[derive(Clone, Copy)]
enum Placement {
    /// Wherever the scheduler puts them.
    Free,
    /// The publisher pinned to one CPU, the receiving thread to another.
    Apart { publisher: usize, receiver: usize },
    /// Both pinned to this CPU.
    Together(usize),
}

impl Placement {
    /// The case names' infix.
    fn label(self) -> &'static str {
        match self {
            Placement::Free => "",
            Placement::Apart { .. } => "-apart",
            Placement::Together(_) => "-together",
        }
    }

    fn publisher(self) -> Option<usize> {
        match self {
            Placement::Free => None,
            Placement::Apart { publisher, .. } => Some(publisher),
            Placement::Together(cpu) => Some(cpu),
        }
    }

    fn receiver(self) -> Option<usize> {
        match self {
            Placement::Free => None,
            Placement::Apart { receiver, .. } => Some(receiver),
            Placement::Together(cpu) => Some(cpu),
        }
    }
}

/// The blocked thread and the task on one kind of log with one placement,
/// one after the other, and the ratio of their p50s.
fn wake_case(
    names: &mut Names,
    rounds: u64,
    single: bool,
    placement: Placement,
) -> anyhow::Result<Vec<(String, String)>> {
    let kind = format!(
        "{}{}",
        if single { "spub" } else { "mpub" },
        placement.label()
    );
    let mut lines = Vec::new();
    let mut p50 = [0u64; 2];
    for (i, waiter) in [Waiter::Thread, Waiter::Task].into_iter().enumerate() {
        signal::check()?;
        let h = wake_latency(names, single, waiter, rounds, placement)?;
        let name = match waiter {
            Waiter::Thread => format!("log-{kind}-wakeup-thread"),
            Waiter::Task => format!("log-{kind}-wakeup-async"),
        };
        p50[i] = h.value_at_quantile(0.5);
        lines.push((
            name,
            format!(
                "n={} p50={} p99={} p999={} max={}",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            ),
        ));
    }
    lines.push((
        format!("log-{kind}-wakeup-ratio"),
        format!(
            "async_p50/thread_p50={:.2}",
            p50[1] as f64 / p50[0].max(1) as f64
        ),
    ));
    Ok(lines)
}

/// Runs the async cases and prints their table (or JSON lines).
pub fn run(a: &BenchArgs, names: &mut Names) -> anyhow::Result<()> {
    let rounds = a.rounds.clamp(100, 2000);
    let mut lines = Vec::new();
    let cpus = cpus_of_this_thread()?;
    let (first, last) = (cpus[0], cpus[cpus.len() - 1]);
    let mut placements = vec![Placement::Free];
    if first != last {
        placements.push(Placement::Apart {
            publisher: first,
            receiver: last,
        });
    }
    placements.push(Placement::Together(last));
    for placement in placements {
        for single in [true, false] {
            lines.extend(wake_case(names, rounds, single, placement)?);
        }
    }
    for shared in [true, false] {
        signal::check()?;
        let (cpu, secs) = idle_cpu(IDLE_TASKS, shared)?;
        let name = if shared {
            format!("log-idle-async-{IDLE_TASKS}tasks-1log")
        } else {
            format!("log-idle-async-{IDLE_TASKS}tasks-{IDLE_TASKS}logs")
        };
        lines.push((
            name,
            format!(
                "cpu_ms={:.3} secs={secs:.1} core_pct={:.4}",
                cpu.as_secs_f64() * 1e3,
                cpu.as_secs_f64() / secs * 100.0
            ),
        ));
    }
    for (name, fields) in &lines {
        if a.json {
            let body = fields
                .split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",");
            println!("{{\"case\":\"{name}\",{body}}}");
        } else {
            println!("{name:<40} {fields}");
        }
    }
    if !a.json {
        println!(
            "wake-up: one-way ns, receive time - send time, a publish every {} us from \
             another process; thread: recv_block sleeping at once (no spin); async: \
             recv_async on a tokio current-thread runtime (no spin either). placement: \
             (none) where the scheduler puts them; apart: publisher pinned to CPU {first}, \
             receiving thread (blocked thread, runtime thread) to CPU {last}; together: \
             both on CPU {last}. idle: CPU time of this process (getrusage) while \
             {IDLE_TASKS} async subscribers wait for nothing",
            GAP.as_micros()
        );
    }
    Ok(())
}

/// Forks the paced publisher of log `name`, pinned to CPU `pin` if given:
/// it waits 100 ms (the subscriber is asleep by then), publishes `rounds`
/// timestamped messages `GAP` apart, closes the log and exits.
fn fork_publisher(name: &str, rounds: u64, pin: Option<usize>) -> anyhow::Result<libc::pid_t> {
    let target = Target::Posix(name.to_owned());
    // SAFETY: the child only opens the log, publishes, sleeps and exits
    // with _exit; the engine supports use after fork (pthread_atfork).
    let pid = unsafe { libc::fork() };
    anyhow::ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid > 0 {
        return Ok(pid);
    }
    // SAFETY: prctl has no memory preconditions; dies with the parent.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let code = (|| -> anyhow::Result<()> {
        if let Some(cpu) = pin {
            pin_this_thread(cpu)?;
        }
        let log = Log::open(&target)?;
        let mut publisher = log.into_publisher()?;
        std::thread::sleep(Duration::from_millis(100));
        let mut msg = [0u8; 64];
        let mut next = Instant::now();
        for _ in 0..rounds {
            next += GAP;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            msg[..8].copy_from_slice(&now_ns().to_le_bytes());
            publisher.publish(&msg)?;
        }
        publisher.close();
        Ok(())
    })()
    .map_or(1, |()| 0);
    // SAFETY: ends the forked child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

fn reap(pid: libc::pid_t) -> anyhow::Result<()> {
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the publisher child failed (status {status})"
    );
    Ok(())
}

fn record(h: &mut Histogram<u64>, n: &mut u64, buf: &[u8]) {
    let sent = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    // The first few include page faults and cold caches.
    if *n >= 10 {
        h.saturating_record(now_ns().saturating_sub(sent));
    }
    *n += 1;
}

/// The CPUs the calling thread may run on.
fn cpus_of_this_thread() -> anyhow::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the kernel writes into `set`.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    anyhow::ensure!(
        r == 0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: reads the set we own; the index is in range.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
fn pin_this_thread(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes the set we own; `cpu` came from sched_getaffinity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the kernel reads `set`.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    anyhow::ensure!(
        r == 0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Receives the paced messages of a forked publisher in a thread of its
/// own, each of them where `placement` says.
fn wake_latency(
    names: &mut Names,
    single: bool,
    waiter: Waiter,
    rounds: u64,
    placement: Placement,
) -> anyhow::Result<Histogram<u64>> {
    let (name, _guard) = names.next();
    let log = Log::create(
        &Target::Posix(name.clone()),
        &LogConfig::new(64, 1024).single_publisher(single),
    )?;
    let mut sub = log
        .subscribe(Start::Latest)?
        .with_wait_strategy(WaitStrategy::SpinThenSleep {
            spin: Duration::ZERO,
        });
    let pid = fork_publisher(&name, rounds, placement.publisher())?;
    let pin = placement.receiver();
    let mut h = histogram();
    let mut n = 0u64;
    let received = std::thread::scope(|s| {
        s.spawn(|| receive(&mut sub, waiter, pin, &mut h, &mut n))
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the receiving thread panicked")))
    });
    reap(pid)?;
    received?;
    anyhow::ensure!(n == rounds, "received {n} of {rounds} messages");
    Ok(h)
}

/// The receiving loop of [`wake_latency`], until the publisher closes.
fn receive(
    sub: &mut Subscriber,
    waiter: Waiter,
    pin: Option<usize>,
    h: &mut Histogram<u64>,
    n: &mut u64,
) -> anyhow::Result<()> {
    if let Some(cpu) = pin {
        pin_this_thread(cpu)?;
    }
    let mut buf = [0u8; 64];
    match waiter {
        Waiter::Thread => loop {
            match sub.recv_block(&mut buf, Some(Duration::from_secs(30))) {
                Ok(_) => record(h, n, &buf),
                Err(RecvError::Closed) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        },
        Waiter::Task => {
            let rt = tokio::runtime::Builder::new_current_thread().build()?;
            rt.block_on(async {
                loop {
                    match sub.recv_async(&mut buf).await {
                        Ok(_) => record(h, n, &buf),
                        Err(RecvError::Closed) => break Ok(()),
                        Err(e) => break Err(e.into()),
                    }
                }
            })
        }
    }
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of this process while `tasks` async subscribers wait on
/// logs where nothing is published (one shared log, or one log each).
fn idle_cpu(tasks: usize, shared: bool) -> anyhow::Result<(Duration, f64)> {
    let config = LogConfig::new(64, 16);
    let mut logs = Vec::new();
    let mut subs: Vec<Subscriber> = Vec::new();
    for i in 0..tasks {
        if i == 0 || !shared {
            logs.push(Log::in_process(&config)?);
        }
        subs.push(logs.last().expect("a log").subscribe(Start::Latest)?);
    }
    let runtime = std::thread::spawn(move || -> anyhow::Result<usize> {
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        rt.block_on(async {
            let handles: Vec<_> = subs
                .into_iter()
                .map(|mut sub| {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        sub.recv_async(&mut buf).await
                    })
                })
                .collect();
            let mut closed = 0;
            for h in handles {
                if h.await? == Err(RecvError::Closed) {
                    closed += 1;
                }
            }
            Ok(closed)
        })
    });
    // Let every task park (and the first waiter threads start), then measure.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, t0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(IDLE_SECS));
    let (cpu, secs) = (cpu_time() - cpu0, t0.elapsed().as_secs_f64());
    for log in &logs {
        log.close();
    }
    let closed = runtime
        .join()
        .map_err(|_| anyhow::anyhow!("the runtime thread panicked"))??;
    anyhow::ensure!(closed == tasks, "{closed} of {tasks} tasks saw the close");
    Ok((cpu, secs))
}
