//! `shmq bench`: cross-process latency and throughput of the work queue and
//! the fan-out log, beside the machine's raw limits and a pipe and a Unix socket, all
//! measured in the same run.
//!
//! The parent creates every segment (POSIX names `shmq-bench-PID-N`, removed
//! by guards on every path, Ctrl-C included) and re-executes this binary as
//! `shmq bench-child ROLE ...` for the other side(s):
//!
//! - latency: the parent pings, one child pongs; one-way = round trip / 2,
//!   recorded per round in an HDR histogram, after a warm-up;
//! - throughput: producer and consumer children wait for a start flag in a
//!   control segment; rate = messages / (last consumer's end - first
//!   producer's start), both read from CLOCK_MONOTONIC;
//! - wake-up: the parent sends paced, timestamped messages to a child that
//!   has gone to sleep on the futex between them (one-way, directly);
//! - idle: a child blocked on an empty queue reports its own CPU time; it
//!   runs in the background while the other cases run (asleep, it takes no
//!   CPU from them, and its figure is its own CPU time);
//! - fan-out (`--cases fanout` runs these and the single-producer queue
//!   cases beside them): every log is reliable and every subscriber checks
//!   it got every message in order, or the run fails.
//!   - 1:1, busy-spin, at `--fanout-sizes` (48 and 64 bytes: the largest
//!     payload whose slot fits one cache line, the smallest taking two):
//!     `log-mpub-pingpong-spin` and `log-mpub-stream-spin`, beside
//!     `queue-spsc-pingpong-spin` and `queue-spsc-stream-spin` of the same
//!     size (the last column divides by them); `log-spub-*` are the same on
//!     a single-publisher log;
//!   - 1:N flat out, `log-fanout-Nsub`: one publisher child and N
//!     subscriber children with the default wait start together as in the
//!     throughput cases; the rate is the slowest subscriber's;
//!   - 1:N paced, `log-paced-Nsub-{nospin,sleep}`: the publisher sends
//!     `--rate` messages per second on a fixed schedule, each carrying its
//!     scheduled send time; subscribers sleep at once when idle (`nospin`)
//!     or use the default wait (`sleep`) and record receive time minus
//!     scheduled time, so a stall counts against every message it delays
//!     (no coordinated omission); reported per subscriber, with the
//!     subscribers' CPU time (getrusage) per delivered message;
//! - zero-copy and batch cases (opt-in: `--cases api`, `zerocopy`,
//!   `batch`), each beside its copying case: the queue's `reserve` /
//!   `consume` at 4096 bytes, `enqueue_batch` / `dequeue_batch` of 32
//!   messages (both modes), and the log's batch publish and receive.
//!
//! Every row knows how many of its processes keep a CPU busy (spinning, or
//! working flat out); the report names the cases with more of them than
//! the machine has CPUs, whose figures then include waiting for a CPU. It
//! also says, per message size, how many cache lines a slot takes.
//!
//! - async (opt-in: `--cases async`): an async subscriber's wake-up
//!   latency beside a blocked thread's, and the CPU time of idle async
//!   subscribers (see `async_wake`).
//!
//! One producer and one consumer use a single-producer/single-consumer
//! queue through `into_producer` / `into_consumer` handles (what a 1:1 user
//! would call); the multi-producer ring is measured beside it.

mod async_wake;
mod child;
mod raw;
mod report;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, Segment, Start, Target, WaitStrategy};

use crate::{exit, signal};

pub use child::child;
use report::{
    bars, contention_note, machine, oversubscribed, slot_layout, table, CpuUse, Measure, Row,
};

/// How the queue's blocking calls wait in a case.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `WaitStrategy::BusySpin`.
    Spin,
    /// The default wait strategy (`WaitStrategy::default()`).
    Sleep,
    /// Sleep on the futex at once when there is nothing to do (no spin).
    Nospin,
}

impl Wait {
    fn strategy(self) -> WaitStrategy {
        match self {
            Wait::Spin => WaitStrategy::BusySpin,
            Wait::Sleep => WaitStrategy::default(),
            Wait::Nospin => WaitStrategy::SpinThenSleep {
                spin: Duration::ZERO,
            },
        }
    }

    fn name(self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::Sleep => "sleep",
            Wait::Nospin => "nospin",
        }
    }

    /// Whether a process waiting this way for messages that arrive every
    /// `gap` keeps its CPU busy (it spins longer than the gap).
    fn spins_through(self, gap: Duration) -> bool {
        match self.strategy() {
            WaitStrategy::BusySpin => true,
            WaitStrategy::SpinThenSleep { spin } => spin >= gap,
        }
    }
}

/// How the messages of a case move: the copying calls every case uses, or
/// the zero-copy and batch calls measured beside them.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `enqueue` / `dequeue`, `publish` / `recv`: one message per call, copied.
    Copy,
    /// The queue's `reserve` + `commit` / `consume` + `release`, in place.
    ZeroCopy,
    /// Batch calls, `--batch` messages per call.
    Batch,
}

/// Who may publish to a log case's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publishers {
    /// The default log: any number of publishers.
    Multi,
    /// A single-publisher log (issue 10).
    Single,
}

impl Publishers {
    fn name(self) -> &'static str {
        match self {
            Publishers::Multi => "mpub",
            Publishers::Single => "spub",
        }
    }
}

/// The log of the 1:N cases (flat out and paced): a feed has one publisher.
const FEED_PUBLISHERS: Publishers = Publishers::Single;

/// Messages per call of the batch cases.
const BATCH: u32 = 32;

/// Options of `shmq bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Message sizes in bytes
    #[arg(long, value_delimiter = ',', default_value = "8,64,1024,4096")]
    sizes: Vec<usize>,
    /// Producer process counts for the queue's throughput cases
    #[arg(long, value_delimiter = ',', default_value = "1")]
    producers: Vec<u32>,
    /// Consumer process counts for the queue's throughput cases
    #[arg(long, value_delimiter = ',', default_value = "1")]
    consumers: Vec<u32>,
    /// Subscriber process counts of the fan-out log's throughput and paced cases
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    subscribers: Vec<u32>,
    /// Message sizes of the log's 1:1 cases and of the single-producer queue
    /// measured beside them (48: the largest payload whose slot is one cache
    /// line; 64: the smallest that takes two)
    #[arg(long, value_delimiter = ',', default_value = "48,64")]
    fanout_sizes: Vec<usize>,
    /// Messages per second of the paced fan-out cases
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Round trips per latency case, at most (after a warm-up)
    #[arg(long, default_value_t = 200_000)]
    rounds: u64,
    /// Messages per throughput case, at most
    #[arg(long, default_value_t = 5_000_000)]
    messages: u64,
    /// Time limit of one case's measurement, seconds
    #[arg(long, default_value_t = 0.5)]
    case_secs: f64,
    /// Slots of the queues and of the raw ring, and of the logs of the 1:1
    /// and paced cases
    #[arg(long, default_value_t = 1024)]
    capacity: usize,
    /// Slots of the log in the 1:N flat-out cases (`log-fanout-Nsub`, with
    /// its one-subscriber base). A reliable publisher waits for its slowest
    /// subscriber, and with more processes than CPUs a subscriber waits
    /// whole scheduler time slices for a CPU: the ring must hold what the
    /// publisher sends meanwhile (README, "Fan-out: where the bars stand
    /// (session 6)")
    #[arg(long, default_value_t = 16384)]
    fanout_capacity: usize,
    /// Seconds a consumer sits blocked on an empty queue in the idle case (0 skips it)
    #[arg(long, default_value_t = 10.0)]
    idle: f64,
    /// Wait strategies of the single-producer queue cases (the multi-producer
    /// 1:1 cases use the first)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "spin,sleep")]
    wait: Vec<Wait>,
    /// Run only the cases whose name contains one of these words; `fanout`:
    /// the log cases and the single-producer queue cases beside them;
    /// `api` (or `zerocopy`, `batch`): the zero-copy and batch cases, which
    /// run only when named; `async`: the async API's wake-up latency and
    /// idle CPU beside a blocked thread (cli/src/bench/async_wake.rs), only
    /// when named; `bridge`: log -> NATS -> log beside bare async-nats (runs
    /// `shmq-bridge bench`)
    #[arg(long, value_delimiter = ',', value_name = "WORDS")]
    cases: Vec<String>,
    /// Run every case this many times, round after round, and report each
    /// case's median run
    #[arg(long, default_value_t = 1, value_name = "N")]
    repeat: u32,
    /// One JSON object per line and measurement instead of the table
    #[arg(long)]
    json: bool,
}

/// The hidden `shmq bench-child` subcommand's options.
#[derive(Args, Debug)]
pub struct ChildArgs {
    /// What this process does.
    #[arg(value_enum)]
    role: child::Role,
    /// The parent's pid (the child exits if the parent is gone).
    #[arg(long)]
    parent: u32,
    /// First segment name.
    #[arg(long, default_value = "")]
    a: String,
    /// Second segment name.
    #[arg(long, default_value = "")]
    b: String,
    /// Control segment name.
    #[arg(long, default_value = "")]
    ctl: String,
    /// Raw baseline instead of the queue.
    #[arg(long)]
    raw: bool,
    /// Wait strategy of the queue handles.
    #[arg(long, value_enum, default_value_t = Wait::Sleep)]
    wait: Wait,
    /// Message size.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages to send, at most.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Time limit, seconds.
    #[arg(long, default_value_t = 1.0)]
    secs: f64,
    /// Producers in the case.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Ring capacity (raw).
    #[arg(long, default_value_t = 1024)]
    capacity: u64,
    /// How the messages move.
    #[arg(long, value_enum, default_value_t = Op::Copy)]
    op: Op,
    /// Messages per call with `--op batch`.
    #[arg(long, default_value_t = BATCH)]
    batch: u32,
    /// Messages per second (paced publisher).
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
}

/// Nanoseconds of CLOCK_MONOTONIC, comparable between processes.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A POSIX segment name removed when dropped (forced: the raw baselines
/// are plain shared memory, not shmq segments).
struct SegGuard(Target);

impl Drop for SegGuard {
    fn drop(&mut self) {
        let _ = self.0.unlink_force();
    }
}

/// Fresh names for this run's segments.
struct Names {
    n: u32,
}

impl Names {
    fn next(&mut self) -> (String, SegGuard) {
        self.n += 1;
        let name = format!("shmq-bench-{}-{}", std::process::id(), self.n);
        (name.clone(), SegGuard(Target::Posix(name)))
    }
}

/// The start flag and counters shared by the processes of one case.
pub struct Ctl {
    seg: Segment,
}

const CTL_GO: usize = 0;
const CTL_READY: usize = 128;
const CTL_PRODUCERS_DONE: usize = 256;

impl Ctl {
    fn create(name: &str) -> anyhow::Result<Ctl> {
        Ok(Ctl {
            seg: Segment::create(&Target::Posix(name.into()), 4096, 0o600)?,
        })
    }

    /// Opens the control segment created by the parent.
    pub fn open(name: &str) -> anyhow::Result<Ctl> {
        let seg = Segment::open(&Target::Posix(name.into()))?;
        anyhow::ensure!(
            seg.len() >= 4096,
            "control segment is smaller than expected"
        );
        Ok(Ctl { seg })
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: off < 4096 = the mapping's length, and 4-aligned.
        unsafe { &*(self.seg.as_ptr().add(off) as *const AtomicU32) }
    }

    /// Says this child is attached and waiting for the start.
    pub fn ready(&self) {
        // SYNC(bench-ready): Release, pairs with the parent's Acquire load.
        self.word(CTL_READY).fetch_add(1, Ordering::Release);
    }

    /// Sleeps until the parent gives the start (at most 60 s).
    pub fn wait_go(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        // SYNC(bench-go): Acquire, pairs with the Release store in `go`.
        while self.word(CTL_GO).load(Ordering::Acquire) == 0 {
            anyhow::ensure!(Instant::now() < deadline, "no start signal from the parent");
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// Counts a finished producer; true for the last of `producers`.
    pub fn producer_done(&self, producers: u32) -> bool {
        // SYNC(bench-done): AcqRel, pairs with the other producers' increments:
        // the last one sees every other producer finished before it closes.
        self.word(CTL_PRODUCERS_DONE).fetch_add(1, Ordering::AcqRel) + 1 == producers
    }

    /// Waits until `n` children said they are ready (any exit is a failure).
    fn wait_ready(&self, n: u32, kids: &mut [&mut Kid]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        // SYNC(bench-ready): Acquire, pairs with the children's Release.
        while self.word(CTL_READY).load(Ordering::Acquire) < n {
            signal::check()?;
            for k in kids.iter_mut() {
                k.check_running()?;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "benchmark children did not start within 20 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn go(&self) {
        // SYNC(bench-go): Release, pairs with the Acquire in `wait_go`.
        self.word(CTL_GO).store(1, Ordering::Release);
    }
}

/// How often [`Kid::finish`] wakes, while a child runs, to look for Ctrl-C
/// and its deadline.
const FINISH_CHECK: Duration = Duration::from_millis(100);

/// A child process of the benchmark: killed and reaped when dropped, and
/// killed by the Ctrl-C handler.
struct Kid {
    child: Child,
    entry: Option<usize>,
    role: String,
    output: String,
}

impl Kid {
    fn spawn(role: &str, args: &[String], stdin: Stdio, stdout: Stdio) -> anyhow::Result<Kid> {
        let exe = std::env::current_exe().context("find the shmq executable")?;
        let child = Command::new(exe)
            .arg("bench-child")
            .arg(role)
            .arg("--parent")
            .arg(std::process::id().to_string())
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .context("start a benchmark process")?;
        let entry = signal::watch_child(child.id());
        Ok(Kid {
            child,
            entry,
            role: role.to_owned(),
            output: String::new(),
        })
    }

    /// Fails if the child already exited (before it was expected to).
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("benchmark process {:?} exited early ({status})", self.role);
        }
        Ok(())
    }

    /// Waits for the child to exit successfully, at most `timeout`, and
    /// collects its standard output (if piped).
    ///
    /// While the child runs, this process sleeps until the child's output
    /// ends (it exits), waking only every [`FINISH_CHECK`] for Ctrl-C and
    /// the deadline: on a machine with few CPUs, a parent that polled every
    /// few milliseconds preempted the very processes it measured (a paced
    /// run's scheduler trace showed it holding a CPU for 2-4 ms at times).
    fn finish(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut stdout = self.child.stdout.take();
        let (ended, output_ended) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_string(&mut s);
            }
            let _ = ended.send(());
            s
        });
        let deadline = Instant::now() + timeout;
        let step = |deadline: Instant| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(FINISH_CHECK)
        };
        // Until the output ends (no output piped: at once).
        while let Err(RecvTimeoutError::Timeout) = output_ended.recv_timeout(step(deadline)) {
            self.still_waiting(deadline, timeout)?;
        }
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            self.still_waiting(deadline, timeout)?;
            std::thread::sleep(Duration::from_millis(2));
        };
        self.output = reader.join().unwrap_or_default();
        if !status.success() {
            bail!("benchmark process {:?} failed ({status})", self.role);
        }
        Ok(())
    }

    /// Fails on Ctrl-C, or (killing the child) once `deadline`, the end of
    /// a wait of `timeout`, has passed.
    fn still_waiting(&mut self, deadline: Instant, timeout: Duration) -> anyhow::Result<()> {
        signal::check()?;
        if Instant::now() >= deadline {
            let _ = self.child.kill();
            bail!(
                "benchmark process {:?} did not finish within {timeout:?}",
                self.role
            );
        }
        Ok(())
    }

    /// The value of `key=` in the child's `RESULT` line.
    fn result(&self, key: &str) -> anyhow::Result<u64> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix("RESULT "))
            .flat_map(|l| l.split_whitespace())
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("benchmark process {:?} reported no {key}", self.role))
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        signal::forget_child(self.entry);
    }
}

/// One measurement to make.
#[derive(Clone, Copy, Debug)]
enum Case {
    RawPingPong {
        size: usize,
    },
    /// `spsc`: a single-producer/single-consumer queue, driven through
    /// `into_producer` / `into_consumer` handles; else the multi-producer ring.
    QueuePingPong {
        size: usize,
        wait: Wait,
        spsc: bool,
    },
    StreamPingPong {
        size: usize,
        unix: bool,
    },
    RawRing {
        size: usize,
    },
    QueueStream {
        size: usize,
        wait: Wait,
        producers: u32,
        consumers: u32,
        spsc: bool,
        op: Op,
    },
    StreamStream {
        size: usize,
        unix: bool,
    },
    /// A ping-pong over two reliable logs, busy-spinning: the log's 1:1
    /// one-way latency, beside `queue-spsc-pingpong-spin`.
    LogPingPong {
        size: usize,
        publishers: Publishers,
    },
    /// One publisher process to `subscribers` subscriber processes, reliable
    /// mode, flat out. With one subscriber and busy-spin it is the log's 1:1
    /// throughput, beside `queue-spsc-stream-spin`.
    LogFanOut {
        size: usize,
        subscribers: u32,
        wait: Wait,
        publishers: Publishers,
        op: Op,
    },
    /// A publisher paced at `--rate` to `subscribers` subscriber processes
    /// waiting with `wait`: publish-to-receive latency per subscriber, from
    /// each message's scheduled send time, and the subscribers' CPU time.
    LogPaced {
        size: usize,
        subscribers: u32,
        wait: Wait,
        publishers: Publishers,
    },
    /// Paced messages to a consumer asleep on a single-producer queue.
    QueueWakeup {
        size: usize,
    },
    QueueIdle {
        secs: f64,
        spsc: bool,
    },
}

fn mode_name(spsc: bool) -> &'static str {
    if spsc {
        "spsc"
    } else {
        "mpmc"
    }
}

/// The suffix of a case moving its messages by `op`.
fn op_suffix(op: Op) -> String {
    match op {
        Op::Copy => String::new(),
        Op::ZeroCopy => "-zerocopy".into(),
        Op::Batch => format!("-batch{BATCH}"),
    }
}

impl Case {
    fn name(&self) -> String {
        match *self {
            Case::RawPingPong { .. } => "raw-pingpong".into(),
            Case::QueuePingPong { wait, spsc, .. } => {
                format!("queue-{}-pingpong-{}", mode_name(spsc), wait.name())
            }
            Case::StreamPingPong { unix, .. } => if unix {
                "unix-pingpong"
            } else {
                "pipe-pingpong"
            }
            .into(),
            Case::RawRing { .. } => "raw-ring".into(),
            Case::QueueStream {
                wait,
                producers,
                consumers,
                spsc,
                op,
                ..
            } => {
                let base = format!("queue-{}-stream-{}", mode_name(spsc), wait.name());
                let base = if (producers, consumers) == (1, 1) {
                    base
                } else {
                    format!("{base}-{producers}p{consumers}c")
                };
                base + &op_suffix(op)
            }
            Case::StreamStream { unix, .. } => {
                if unix { "unix-stream" } else { "pipe-stream" }.into()
            }
            Case::LogPingPong { publishers, .. } => {
                format!("log-{}-pingpong-spin", publishers.name())
            }
            Case::LogFanOut {
                subscribers: 1,
                wait: Wait::Spin,
                publishers,
                op,
                ..
            } => format!("log-{}-stream-spin{}", publishers.name(), op_suffix(op)),
            // 1:N: the publisher kind is `FEED_PUBLISHERS`, said in the notes.
            Case::LogFanOut {
                subscribers,
                wait,
                op,
                ..
            } => {
                let mut name = format!("log-fanout-{subscribers}sub");
                if wait != Wait::Sleep {
                    name = format!("{name}-{}", wait.name());
                }
                name + &op_suffix(op)
            }
            Case::LogPaced {
                subscribers, wait, ..
            } => format!("log-paced-{subscribers}sub-{}", wait.name()),
            Case::QueueWakeup { .. } => "queue-spsc-wakeup-sleep".into(),
            Case::QueueIdle { spsc, .. } => format!("queue-{}-idle-sleep", mode_name(spsc)),
        }
    }

    fn size(&self) -> usize {
        match *self {
            Case::RawPingPong { size }
            | Case::QueuePingPong { size, .. }
            | Case::StreamPingPong { size, .. }
            | Case::RawRing { size }
            | Case::QueueStream { size, .. }
            | Case::StreamStream { size, .. }
            | Case::LogPingPong { size, .. }
            | Case::LogFanOut { size, .. }
            | Case::LogPaced { size, .. }
            | Case::QueueWakeup { size } => size,
            Case::QueueIdle { .. } => 0,
        }
    }

    /// Whether the case runs in the background while the others run (it
    /// measures a sleeping process's own CPU time, which they do not touch).
    fn background(&self) -> bool {
        matches!(self, Case::QueueIdle { .. })
    }

    /// Processes of the case that keep a CPU busy: spinning, or moving
    /// messages flat out. More than the machine's CPUs oversubscribes it.
    fn busy(&self, rate: u64) -> u32 {
        match *self {
            // Both sides spin or make syscalls back to back (a sleeping
            // waiter's spin outlasts a round trip).
            Case::RawPingPong { .. } | Case::StreamPingPong { .. } => 2,
            Case::QueuePingPong { wait, .. } => {
                if wait.spins_through(Duration::from_micros(10)) {
                    2
                } else {
                    1
                }
            }
            Case::LogPingPong { .. } => 2,
            Case::RawRing { .. } | Case::StreamStream { .. } => 2,
            Case::QueueStream {
                producers,
                consumers,
                ..
            } => producers + consumers,
            Case::LogFanOut { subscribers, .. } => subscribers + 1,
            // The paced publisher spins between messages; the subscribers
            // spin too when their wait outlasts the gap between messages.
            Case::LogPaced {
                subscribers, wait, ..
            } => {
                let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
                1 + if wait.spins_through(gap) {
                    subscribers
                } else {
                    0
                }
            }
            Case::QueueWakeup { .. } | Case::QueueIdle { .. } => 0,
        }
    }

    /// Whether the case runs only when `--cases` names it (zero-copy, batch).
    fn opt_in(&self) -> bool {
        matches!(
            self,
            Case::QueueStream {
                op: Op::ZeroCopy | Op::Batch,
                ..
            } | Case::LogFanOut {
                op: Op::ZeroCopy | Op::Batch,
                ..
            }
        )
    }

    /// Whether `word` of `--cases` selects the case: a word in its name, or
    /// `fanout`, which selects issue 10's cases (every log case, and the
    /// single-producer queue beside the 1:1 ones at `--fanout-sizes`); the
    /// opt-in cases only by `zerocopy`, `batch` or `api` (all of them).
    fn selected_by(&self, word: &str, a: &BenchArgs) -> bool {
        if let Case::QueueStream { op, .. } | Case::LogFanOut { op, .. } = *self {
            if self.opt_in() {
                return word == "api" || op_suffix(op).contains(word);
            }
        }
        if self.name().contains(word) {
            return true;
        }
        match word {
            "fanout" => match *self {
                Case::LogPingPong { .. } | Case::LogFanOut { .. } | Case::LogPaced { .. } => true,
                Case::QueuePingPong {
                    size,
                    wait: Wait::Spin,
                    spsc: true,
                }
                | Case::QueueStream {
                    size,
                    wait: Wait::Spin,
                    producers: 1,
                    consumers: 1,
                    spsc: true,
                    op: Op::Copy,
                } => a.fanout_sizes.contains(&size),
                // Beside log-fanout-1sub (the default wait too).
                Case::QueueStream {
                    size,
                    wait: Wait::Sleep,
                    producers: 1,
                    consumers: 1,
                    spsc: true,
                    op: Op::Copy,
                } => a.fanout_sizes.contains(&size) && a.sizes.contains(&size),
                _ => false,
            },
            "api" => self.opt_in(),
            _ => false,
        }
    }
}

/// The cases of a run, in order: per size, latency then throughput, each
/// raw limit first; then the fan-out log (its 1:1 cases beside the
/// single-producer queue, then 1:N flat out and paced), the wake-up and the
/// idle cases. The zero-copy and batch cases run only when `--cases` names
/// them (`api`, `zerocopy`, `batch`).
///
/// One producer and one consumer use a single-producer/single-consumer
/// queue, as a 1:1 user would, with every `--wait` strategy; the
/// multi-producer ring is measured beside them with the first strategy, and
/// alone for several producers or consumers.
fn plan(a: &BenchArgs) -> Vec<Case> {
    let mut cases = Vec::new();
    let first_wait = a.wait[0];
    let one_to_one = a.producers.contains(&1) && a.consumers.contains(&1);
    let stream = |size, wait, producers, consumers, spsc, op| Case::QueueStream {
        size,
        wait,
        producers,
        consumers,
        spsc,
        op,
    };
    for &size in &a.sizes {
        cases.push(Case::RawPingPong { size });
        for &wait in &a.wait {
            cases.push(Case::QueuePingPong {
                size,
                wait,
                spsc: true,
            });
        }
        cases.push(Case::QueuePingPong {
            size,
            wait: first_wait,
            spsc: false,
        });
        cases.push(Case::StreamPingPong { size, unix: false });
        cases.push(Case::StreamPingPong { size, unix: true });
        cases.push(Case::RawRing { size });
        if one_to_one {
            for &wait in &a.wait {
                cases.push(stream(size, wait, 1, 1, true, Op::Copy));
            }
            cases.push(stream(size, first_wait, 1, 1, false, Op::Copy));
        }
        for &wait in &a.wait {
            for &producers in &a.producers {
                for &consumers in &a.consumers {
                    if (producers, consumers) != (1, 1) {
                        cases.push(stream(size, wait, producers, consumers, false, Op::Copy));
                    }
                }
            }
        }
        cases.push(Case::StreamStream { size, unix: false });
        cases.push(Case::StreamStream { size, unix: true });
    }
    let size64 = if a.sizes.contains(&64) {
        64
    } else {
        a.sizes[0]
    };
    let with_log = !a.subscribers.is_empty();
    // The log 1:1, busy-spinning, beside the single-producer queue at the
    // same sizes (measured here when the sizes above lack them); like the
    // queue's 1:1 cases, only when `--producers` and `--consumers` have 1.
    for &size in a.fanout_sizes.iter().filter(|_| with_log && one_to_one) {
        if !a.sizes.contains(&size) {
            cases.push(Case::QueuePingPong {
                size,
                wait: Wait::Spin,
                spsc: true,
            });
            cases.push(stream(size, Wait::Spin, 1, 1, true, Op::Copy));
        }
        for publishers in [Publishers::Single, Publishers::Multi] {
            cases.push(Case::LogPingPong { size, publishers });
            cases.push(Case::LogFanOut {
                size: size.max(8),
                subscribers: 1,
                wait: Wait::Spin,
                publishers,
                op: Op::Copy,
            });
        }
    }
    for &subscribers in &a.subscribers {
        // Subscribers check each message's sequence number: 8 bytes at least.
        cases.push(Case::LogFanOut {
            size: size64.max(8),
            subscribers,
            wait: Wait::Sleep,
            publishers: FEED_PUBLISHERS,
            op: Op::Copy,
        });
    }
    for wait in [Wait::Nospin, Wait::Sleep] {
        for &subscribers in &a.subscribers {
            // A sequence number and the scheduled send time: 16 bytes at least.
            cases.push(Case::LogPaced {
                size: size64.max(16),
                subscribers,
                wait,
                publishers: FEED_PUBLISHERS,
            });
        }
    }
    cases.push(Case::QueueWakeup { size: size64 });
    if a.idle > 0.0 {
        cases.push(Case::QueueIdle {
            secs: a.idle,
            spsc: true,
        });
        cases.push(Case::QueueIdle {
            secs: a.idle,
            spsc: false,
        });
    }
    let pick = |c: &Case| a.cases.iter().any(|w| c.selected_by(w, a));
    if !a.cases.is_empty() {
        cases.retain(pick);
        // Opt-in: zero-copy against copying at 4096 bytes, batches of 32
        // against single calls at 64 bytes (SPSC and MPMC queue, and the
        // log), each with its copying reference beside it.
        for (copying, case) in api_cases() {
            if pick(&case) {
                cases.extend([copying, case]);
            }
        }
    }
    // A case planned twice (an opt-in reference may repeat a main case) runs once.
    let mut seen = std::collections::HashSet::new();
    cases.retain(|c| seen.insert((c.name(), c.size())));
    cases
}

/// The zero-copy and batch cases (issue 11), each with its copying reference.
fn api_cases() -> Vec<(Case, Case)> {
    let stream = |size, spsc, op| Case::QueueStream {
        size,
        wait: Wait::Spin,
        producers: 1,
        consumers: 1,
        spsc,
        op,
    };
    // The feed's log: a single publisher publishes a batch with one store
    // of the tail (a multi-publisher log claims message by message).
    let log = |op| Case::LogFanOut {
        size: 64,
        subscribers: 1,
        wait: Wait::Spin,
        publishers: FEED_PUBLISHERS,
        op,
    };
    vec![
        (
            stream(4096, true, Op::Copy),
            stream(4096, true, Op::ZeroCopy),
        ),
        (stream(64, true, Op::Copy), stream(64, true, Op::Batch)),
        (stream(64, false, Op::Copy), stream(64, false, Op::Batch)),
        (log(Op::Copy), log(Op::Batch)),
    ]
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn latency(h: &Histogram<u64>) -> Measure {
    Measure::Latency {
        samples: h.len(),
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// The parent's side of a ping-pong: `round(i, deadline)` sends message
/// `i` and waits for its echo. Warm-up rounds (a tenth of `rounds`, at most
/// a quarter of `secs`) are not recorded; the measurement stops after
/// `rounds` or `secs`.
fn ping_loop(
    rounds: u64,
    secs: f64,
    mut round: impl FnMut(u64, Instant) -> anyhow::Result<()>,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    let warm = (rounds / 10).clamp(100, 20_000);
    let start = Instant::now();
    let warm_until = start + Duration::from_secs_f64(secs / 4.0);
    let mut t = start;
    // The first round includes the child's start-up: give it time.
    let mut deadline = t + Duration::from_secs(10);
    let mut stop_at = None;
    let mut measured = 0u64;
    for i in 0.. {
        if i > 0 {
            // Each round gets 2 s (a loaded machine may deschedule either
            // side for a while). `t` is the end of the previous round: no
            // extra clock read.
            deadline = t + Duration::from_secs(2);
            if i % 1024 == 0 {
                signal::check()?;
            }
        }
        match stop_at {
            None if i >= warm || t >= warm_until => {
                stop_at = Some(t + Duration::from_secs_f64(secs));
            }
            Some(end) if measured >= rounds || (i % 1024 == 0 && t >= end) => break,
            _ => {}
        }
        round(i + 1, deadline)?;
        let now = Instant::now();
        if stop_at.is_some() {
            h.saturating_record((now.duration_since(t).as_nanos() / 2) as u64);
            measured += 1;
        }
        t = now;
    }
    Ok(h)
}

struct Runner<'a> {
    a: &'a BenchArgs,
    names: Names,
}

impl Runner<'_> {
    /// A new queue (single-producer if `spsc`) with its name and guard.
    fn queue(
        &mut self,
        size: usize,
        wait: Wait,
        spsc: bool,
    ) -> anyhow::Result<(String, SegGuard, Queue)> {
        let (name, guard) = self.names.next();
        let q = Queue::create(
            &Target::Posix(name.clone()),
            &QueueConfig::new(size, self.a.capacity).spsc(spsc),
        )?
        .with_wait_strategy(wait.strategy());
        Ok((name, guard, q))
    }

    /// A new log with its name and guard.
    fn log(
        &mut self,
        config: &LogConfig,
        wait: WaitStrategy,
    ) -> anyhow::Result<(String, SegGuard, Log)> {
        let (name, guard) = self.names.next();
        let log = Log::create(&Target::Posix(name.clone()), config)?.with_wait_strategy(wait);
        Ok((name, guard, log))
    }

    fn run(&mut self, case: Case) -> anyhow::Result<Row> {
        let m = match case {
            Case::RawPingPong { size } => self.raw_pingpong(size)?,
            Case::QueuePingPong { size, wait, spsc } => self.queue_pingpong(size, wait, spsc)?,
            Case::StreamPingPong { size, unix } => self.stream_pingpong(size, unix)?,
            Case::RawRing { size } => self.raw_ring(size)?,
            Case::QueueStream {
                size,
                wait,
                producers,
                consumers,
                spsc,
                op,
            } => self.queue_stream(size, wait, producers, consumers, spsc, op)?,
            Case::StreamStream { size, unix } => self.stream_stream(size, unix)?,
            Case::LogPingPong { size, publishers } => self.log_pingpong(size, publishers)?,
            Case::LogFanOut {
                size,
                subscribers,
                wait,
                publishers,
                op,
            } => self.log_fanout(size, subscribers, wait, publishers, op)?,
            Case::LogPaced {
                size,
                subscribers,
                wait,
                publishers,
            } => return self.log_paced(case, size, subscribers, wait, publishers),
            Case::QueueWakeup { size } => self.queue_wakeup(size)?,
            Case::QueueIdle { secs, spsc } => self.start_idle(secs, spsc)?.finish()?,
        };
        Ok(self.row(case, m))
    }

    /// The report line of `case`.
    fn row(&self, case: Case, m: Measure) -> Row {
        row(case, m, self.a.rate)
    }

    fn raw_pingpong(&mut self, size: usize) -> anyhow::Result<Measure> {
        let (name, _guard) = self.names.next();
        let lines = raw::Lines::create(&Target::Posix(name.clone()), size)?;
        let args = vec![
            "--raw".into(),
            "--a".into(),
            name,
            "--size".into(),
            size.to_string(),
        ];
        let mut kid = Kid::spawn("pong", &args, Stdio::null(), Stdio::null())?;
        let msg = vec![0x5a; size];
        let mut buf = vec![0; size];
        let h = ping_loop(self.a.rounds, self.a.case_secs, |i, deadline| {
            lines.send(0, i, &msg);
            lines
                .recv(1, i, &mut buf, deadline)
                .map_err(anyhow::Error::new)
        })?;
        lines.stop(0);
        kid.finish(Duration::from_secs(10))?;
        Ok(latency(&h))
    }

    fn queue_pingpong(&mut self, size: usize, wait: Wait, spsc: bool) -> anyhow::Result<Measure> {
        let (a_name, _ga, a) = self.queue(size, wait, spsc)?;
        let (b_name, _gb, b) = self.queue(size, wait, spsc)?;
        // The handles a user of this mode would take (on a multi-producer
        // queue they forward to the shared `Queue` calls).
        let mut a = a.into_producer()?;
        let mut b = b.into_consumer()?;
        let args = vec![
            "--a".into(),
            a_name,
            "--b".into(),
            b_name,
            "--wait".into(),
            wait.name().into(),
            "--size".into(),
            size.to_string(),
        ];
        let mut kid = Kid::spawn("pong", &args, Stdio::null(), Stdio::null())?;
        let msg = vec![0x5a; size];
        let mut buf = vec![0; size];
        let h = ping_loop(self.a.rounds, self.a.case_secs, |_, deadline| {
            a.enqueue_until(&msg, Some(deadline))?;
            b.dequeue_until(&mut buf, Some(deadline))?;
            Ok(())
        });
        a.close();
        let h = h?;
        kid.finish(Duration::from_secs(10))?;
        Ok(latency(&h))
    }

    fn stream_pingpong(&mut self, size: usize, unix: bool) -> anyhow::Result<Measure> {
        let args = vec!["--size".into(), size.to_string()];
        let (mut kid, mut to, mut from) = stream_kid("echo", &args, unix)?;
        let msg = vec![0x5a; size];
        let mut buf = vec![0; size];
        let h = ping_loop(self.a.rounds, self.a.case_secs, |_, _| {
            to.write_all(&msg)?;
            from.read_exact(&mut buf)?;
            Ok(())
        })?;
        drop(to);
        drop(from);
        kid.finish(Duration::from_secs(10))?;
        Ok(latency(&h))
    }

    fn raw_ring(&mut self, size: usize) -> anyhow::Result<Measure> {
        let (name, _guard) = self.names.next();
        let capacity = self.a.capacity as u64;
        let _ring = raw::Ring::create(&Target::Posix(name.clone()), size, capacity)?;
        self.stream_children(&name, size, None, 1, 1, true)
    }

    fn queue_stream(
        &mut self,
        size: usize,
        wait: Wait,
        producers: u32,
        consumers: u32,
        spsc: bool,
        op: Op,
    ) -> anyhow::Result<Measure> {
        let (name, _guard, _q) = self.queue(size, wait, spsc)?;
        self.stream_children(&name, size, Some((wait, op)), producers, consumers, false)
    }

    /// Runs producer and consumer children over segment `name` and
    /// computes their combined rate.
    fn stream_children(
        &mut self,
        name: &str,
        size: usize,
        wait: Option<(Wait, Op)>,
        producers: u32,
        consumers: u32,
        raw: bool,
    ) -> anyhow::Result<Measure> {
        let (ctl_name, _ctl_guard) = self.names.next();
        let ctl = Ctl::create(&ctl_name)?;
        let per_producer = self.a.messages / producers as u64;
        let mut common = vec![
            "--a".to_string(),
            name.to_string(),
            "--ctl".into(),
            ctl_name,
            "--size".into(),
            size.to_string(),
            "--secs".into(),
            self.a.case_secs.to_string(),
            "--producers".into(),
            producers.to_string(),
            "--capacity".into(),
            self.a.capacity.to_string(),
        ];
        if let Some((w, op)) = wait {
            common.extend(["--wait".to_string(), w.name().into()]);
            common.extend(op_args(op));
        }
        if raw {
            common.push("--raw".into());
        }
        let mut prods = Vec::new();
        let mut cons = Vec::new();
        for _ in 0..consumers {
            cons.push(Kid::spawn(
                "consume",
                &common,
                Stdio::null(),
                Stdio::piped(),
            )?);
        }
        for _ in 0..producers {
            let mut args = common.clone();
            args.extend(["--count".to_string(), per_producer.to_string()]);
            prods.push(Kid::spawn("produce", &args, Stdio::null(), Stdio::piped())?);
        }
        let mut all: Vec<&mut Kid> = prods.iter_mut().chain(cons.iter_mut()).collect();
        ctl.wait_ready(all.len() as u32, &mut all)?;
        ctl.go();
        let limit = Duration::from_secs_f64(self.a.case_secs + 30.0);
        for k in prods.iter_mut().chain(cons.iter_mut()) {
            k.finish(limit)?;
        }
        let mut sent = 0;
        let mut start = u64::MAX;
        for p in &prods {
            sent += p.result("sent")?;
            start = start.min(p.result("start_ns")?);
        }
        let mut received = 0;
        let mut end = 0;
        for c in &cons {
            received += c.result("received")?;
            end = end.max(c.result("end_ns")?);
            anyhow::ensure!(
                c.result("ordered")? == 1,
                "a consumer saw one producer's messages out of order"
            );
        }
        anyhow::ensure!(
            sent == received,
            "producers sent {sent} messages but consumers received {received}"
        );
        anyhow::ensure!(end > start && received > 0, "no measurable transfer");
        Ok(Measure::Throughput {
            messages: received,
            secs: (end - start) as f64 / 1e9,
        })
    }

    fn stream_stream(&mut self, size: usize, unix: bool) -> anyhow::Result<Measure> {
        let args = vec![
            "--size".into(),
            size.to_string(),
            "--count".into(),
            self.a.messages.to_string(),
            "--secs".into(),
            self.a.case_secs.to_string(),
        ];
        let (mut kid, mut to, mut from) = stream_kid("write", &args, unix)?;
        let mut buf = vec![0; size.max(1)];
        let t0 = Instant::now();
        to.write_all(&[1])?; // the start signal
        let mut n = 0u64;
        loop {
            match from.read_exact(&mut buf[..size]) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => signal::check()?,
                Err(e) => return Err(e.into()),
            }
            if size == 0 && n >= self.a.messages {
                break;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        signal::check()?;
        drop(to);
        kid.finish(Duration::from_secs(10))?;
        anyhow::ensure!(
            n > 0,
            "no message came through the {}",
            if unix { "socket" } else { "pipe" }
        );
        Ok(Measure::Throughput { messages: n, secs })
    }

    fn queue_wakeup(&mut self, size: usize) -> anyhow::Result<Measure> {
        let size = size.max(8);
        let (name, _guard, q) = self.queue(size, Wait::Sleep, true)?;
        let mut q = q.into_producer()?;
        let (ctl_name, _ctl_guard) = self.names.next();
        let ctl = Ctl::create(&ctl_name)?;
        let args = vec![
            "--a".into(),
            name,
            "--ctl".into(),
            ctl_name,
            "--size".into(),
            size.to_string(),
        ];
        let mut kid = Kid::spawn("wakeup", &args, Stdio::null(), Stdio::piped())?;
        ctl.wait_ready(1, &mut [&mut kid])?;
        let rounds = 1000.min(self.a.rounds.max(10));
        let gap = Duration::from_micros(500);
        let mut msg = vec![0u8; size];
        let deadline = Instant::now() + Duration::from_secs(30);
        let sent: anyhow::Result<()> = (|| {
            for _ in 0..rounds {
                signal::check()?;
                std::thread::sleep(gap);
                msg[..8].copy_from_slice(&now_ns().to_le_bytes());
                q.enqueue_until(&msg, Some(deadline))?;
            }
            Ok(())
        })();
        q.close();
        sent?;
        kid.finish(Duration::from_secs(10))?;
        Ok(Measure::Latency {
            samples: kid.result("n")?,
            p50: kid.result("p50")?,
            p99: kid.result("p99")?,
            p999: kid.result("p999")?,
            max: kid.result("max")?,
        })
    }

    /// Starts a consumer that sits blocked on an empty queue for `secs`;
    /// [`Idle::finish`] collects the CPU time it used.
    fn start_idle(&mut self, secs: f64, spsc: bool) -> anyhow::Result<Idle> {
        let (name, guard, queue) = self.queue(64, Wait::Sleep, spsc)?;
        let args = vec!["--a".into(), name, "--secs".into(), secs.to_string()];
        let kid = Kid::spawn("idle", &args, Stdio::null(), Stdio::piped())?;
        Ok(Idle {
            kid,
            secs,
            _guard: guard,
            _queue: queue,
        })
    }

    /// The configuration of a reliable log of this run with `cursors`
    /// entries in its cursor table and `capacity` slots.
    fn log_config(
        &self,
        size: usize,
        capacity: usize,
        cursors: u32,
        publishers: Publishers,
    ) -> LogConfig {
        let config = LogConfig::new(size, capacity)
            .mode(LogMode::Reliable)
            .cursors(cursors as usize);
        match publishers {
            Publishers::Multi => config,
            Publishers::Single => config.single_publisher(true),
        }
    }

    /// One publisher to one subscriber and back, over two reliable logs,
    /// busy-spinning: one-way latency = round trip / 2.
    fn log_pingpong(&mut self, size: usize, publishers: Publishers) -> anyhow::Result<Measure> {
        let config = self.log_config(size, self.a.capacity, 1, publishers);
        let spin = WaitStrategy::BusySpin;
        let (ping_name, _gp, ping) = self.log(&config, spin)?;
        let (pong_name, _gq, pong) = self.log(&config, spin)?;
        let (ctl_name, _ctl_guard) = self.names.next();
        let ctl = Ctl::create(&ctl_name)?;
        // Subscribed before the child exists, so its first echo is not missed
        // (and, the log being reliable, its publish is not refused).
        let mut sub = pong.subscribe(Start::Latest)?;
        let args = vec![
            "--a".into(),
            ping_name,
            "--b".into(),
            pong_name,
            "--ctl".into(),
            ctl_name,
            "--wait".into(),
            Wait::Spin.name().into(),
            "--size".into(),
            size.to_string(),
        ];
        let mut kid = Kid::spawn("log-pong", &args, Stdio::null(), Stdio::null())?;
        // The child subscribes to the ping log before it says it is ready.
        ctl.wait_ready(1, &mut [&mut kid])?;
        // Through a `Publisher` handle, as a feed's publisher would: on a
        // single-publisher log it holds the role (no locked instruction).
        let mut ping = ping.into_publisher()?;
        let msg = vec![0x5a; size];
        let mut buf = vec![0; size];
        let h = ping_loop(self.a.rounds, self.a.case_secs, |_, deadline| {
            ping.publish_until(&msg, Some(deadline))?;
            sub.recv_until(&mut buf, Some(deadline))?;
            Ok(())
        });
        ping.close();
        let h = h?;
        kid.finish(Duration::from_secs(10))?;
        Ok(latency(&h))
    }

    /// One publisher process to `subscribers` subscriber processes over a
    /// reliable log (publisher gated by the slowest: nothing may be lost),
    /// flat out. Every subscriber checks it got every message in order; the
    /// rate is the slowest subscriber's.
    fn log_fanout(
        &mut self,
        size: usize,
        subscribers: u32,
        wait: Wait,
        publishers: Publishers,
        op: Op,
    ) -> anyhow::Result<Measure> {
        // The 1:1 stream beside the queue (`log-*-stream-spin`) or 1:N.
        let one_to_one = subscribers == 1 && wait == Wait::Spin;
        let capacity = if one_to_one {
            self.a.capacity
        } else {
            self.a.fanout_capacity
        };
        let config = self.log_config(size, capacity, subscribers, publishers);
        let (name, _guard, _log) = self.log(&config, wait.strategy())?;
        let (ctl_name, _ctl_guard) = self.names.next();
        let ctl = Ctl::create(&ctl_name)?;
        let mut common = vec![
            "--a".to_string(),
            name,
            "--ctl".into(),
            ctl_name,
            "--size".into(),
            size.to_string(),
            "--secs".into(),
            self.a.case_secs.to_string(),
            "--wait".into(),
            wait.name().into(),
        ];
        common.extend(op_args(op));
        let mut subs = Vec::new();
        for _ in 0..subscribers {
            subs.push(Kid::spawn(
                "log-subscribe",
                &common,
                Stdio::null(),
                Stdio::piped(),
            )?);
        }
        let mut args = common.clone();
        args.extend(["--count".to_string(), self.a.messages.to_string()]);
        let mut publisher = Kid::spawn("log-publish", &args, Stdio::null(), Stdio::piped())?;
        let mut all: Vec<&mut Kid> = std::iter::once(&mut publisher)
            .chain(subs.iter_mut())
            .collect();
        ctl.wait_ready(all.len() as u32, &mut all)?;
        ctl.go();
        let limit = Duration::from_secs_f64(self.a.case_secs + 30.0);
        for k in std::iter::once(&mut publisher).chain(subs.iter_mut()) {
            k.finish(limit)?;
        }
        let sent = publisher.result("sent")?;
        let start = publisher.result("start_ns")?;
        let mut end = 0;
        for s in &subs {
            check_delivery(s, sent)?;
            end = end.max(s.result("end_ns")?);
        }
        anyhow::ensure!(end > start && sent > 0, "no measurable transfer");
        Ok(Measure::Throughput {
            messages: sent,
            secs: (end - start) as f64 / 1e9,
        })
    }

    /// A publisher paced at `--rate` messages per second for `--case-secs`
    /// to `subscribers` subscriber processes of a reliable log, waiting with
    /// `wait` between messages. Each message carries its scheduled send
    /// time, t0 + i / rate, and each subscriber records now - scheduled:
    /// a publisher or subscriber that stalls delays the messages after it,
    /// and the stall is counted for each of them (no coordinated omission).
    /// The row holds each percentile's worst over the subscribers, each
    /// subscriber's own figures, and the subscribers' CPU time per
    /// delivered message.
    fn log_paced(
        &mut self,
        case: Case,
        size: usize,
        subscribers: u32,
        wait: Wait,
        publishers: Publishers,
    ) -> anyhow::Result<Row> {
        let config = self.log_config(size, self.a.capacity, subscribers, publishers);
        let (name, _guard, _log) = self.log(&config, wait.strategy())?;
        let (ctl_name, _ctl_guard) = self.names.next();
        let ctl = Ctl::create(&ctl_name)?;
        let count = ((self.a.rate as f64 * self.a.case_secs) as u64).max(100);
        let common = vec![
            "--a".to_string(),
            name,
            "--ctl".into(),
            ctl_name,
            "--size".into(),
            size.to_string(),
            "--wait".into(),
            wait.name().into(),
            "--rate".into(),
            self.a.rate.to_string(),
            "--count".into(),
            count.to_string(),
        ];
        let mut subs = Vec::new();
        for _ in 0..subscribers {
            subs.push(Kid::spawn(
                "paced-subscribe",
                &common,
                Stdio::null(),
                Stdio::piped(),
            )?);
        }
        let mut publisher = Kid::spawn("paced-publish", &common, Stdio::null(), Stdio::piped())?;
        let mut all: Vec<&mut Kid> = std::iter::once(&mut publisher)
            .chain(subs.iter_mut())
            .collect();
        ctl.wait_ready(all.len() as u32, &mut all)?;
        ctl.go();
        let limit = Duration::from_secs_f64(count as f64 / self.a.rate.max(1) as f64 + 30.0);
        for k in std::iter::once(&mut publisher).chain(subs.iter_mut()) {
            k.finish(limit)?;
        }
        let sent = publisher.result("sent")?;
        anyhow::ensure!(sent == count, "the publisher sent {sent} of {count}");
        let feed_late = Measure::Latency {
            samples: publisher.result("late_n")?,
            p50: publisher.result("late_p50")?,
            p99: publisher.result("late_p99")?,
            p999: publisher.result("late_p999")?,
            max: publisher.result("late_max")?,
        };
        // Per subscriber: samples, p50, p99, p99.9, max.
        let mut per_sub: Vec<[u64; 5]> = Vec::new();
        let (mut cpu, mut delivered) = (0u64, 0u64);
        for s in &subs {
            check_delivery(s, sent)?;
            per_sub.push([
                s.result("n")?,
                s.result("p50")?,
                s.result("p99")?,
                s.result("p999")?,
                s.result("max")?,
            ]);
            cpu += s.result("cpu_ns")?;
            delivered += s.result("received")?;
        }
        let worst = |i: usize| per_sub.iter().map(|f| f[i]).max().unwrap_or(0);
        let m = Measure::Latency {
            samples: per_sub.iter().map(|f| f[0]).min().unwrap_or(0),
            p50: worst(1),
            p99: worst(2),
            p999: worst(3),
            max: worst(4),
        };
        let per_sub: Vec<Measure> = per_sub
            .iter()
            .map(|&[samples, p50, p99, p999, max]| Measure::Latency {
                samples,
                p50,
                p99,
                p999,
                max,
            })
            .collect();
        let mut row = self.row(case, m);
        if subscribers > 1 {
            row.subs = per_sub;
        }
        row.cpu_per_msg_ns = Some(cpu as f64 / delivered.max(1) as f64);
        row.feed_late = Some(feed_late);
        Ok(row)
    }
}

/// Fails unless subscriber `s` received all `sent` messages, in order.
fn check_delivery(s: &Kid, sent: u64) -> anyhow::Result<()> {
    let received = s.result("received")?;
    anyhow::ensure!(
        received == sent,
        "the publisher sent {sent} messages but a subscriber received {received}"
    );
    anyhow::ensure!(
        s.result("ordered")? == 1,
        "a subscriber saw a gap or a message out of order"
    );
    Ok(())
}

/// The idle case, running while the others do: a consumer asleep on an
/// empty queue uses no CPU, so it neither disturbs them nor is disturbed
/// (its figure is its own CPU time).
struct Idle {
    kid: Kid,
    secs: f64,
    _guard: SegGuard,
    _queue: Queue,
}

impl Idle {
    fn finish(mut self) -> anyhow::Result<Measure> {
        self.kid.finish(Duration::from_secs_f64(self.secs + 30.0))?;
        Ok(Measure::Idle {
            secs: self.kid.result("wall_ns")? as f64 / 1e9,
            cpu_secs: self.kid.result("cpu_ns")? as f64 / 1e9,
        })
    }
}

/// The report line of `case` (`rate`: of the paced cases).
fn row(case: Case, m: Measure, rate: u64) -> Row {
    let (producers, consumers) = match case {
        Case::QueueStream {
            producers,
            consumers,
            ..
        } => (producers, consumers),
        Case::LogFanOut { subscribers, .. } | Case::LogPaced { subscribers, .. } => {
            (1, subscribers)
        }
        _ => (1, 1),
    };
    Row {
        case: case.name(),
        size: case.size(),
        producers,
        consumers,
        m,
        subs: Vec::new(),
        cpu_per_msg_ns: None,
        feed_late: None,
        busy: case.busy(rate),
    }
}

/// The child options of moving messages by `op`.
fn op_args(op: Op) -> Vec<String> {
    let op = op
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    vec!["--op".into(), op, "--batch".into(), BATCH.to_string()]
}

/// A child with the parent's writing and reading ends of its channel.
type StreamKid = (Kid, Box<dyn Write>, Box<dyn Read>);

/// Starts a child whose fd 0 and fd 1 are a pipe pair or both ends of one
/// Unix socket; returns it with the parent's writing and reading ends.
fn stream_kid(role: &str, args: &[String], unix: bool) -> anyhow::Result<StreamKid> {
    if unix {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
        let theirs2 = theirs.try_clone()?;
        let kid = Kid::spawn(
            role,
            args,
            Stdio::from(OwnedFd::from(theirs)),
            Stdio::from(OwnedFd::from(theirs2)),
        )?;
        let reader = mine.try_clone()?;
        Ok((kid, Box::new(mine), Box::new(reader)))
    } else {
        let mut kid = Kid::spawn(role, args, Stdio::piped(), Stdio::piped())?;
        let to = kid.child.stdin.take().context("child stdin")?;
        let from = kid.child.stdout.take().context("child stdout")?;
        Ok((kid, Box::new(to), Box::new(from)))
    }
}

/// Shows which case runs now on stderr (one rewritten line on a terminal).
struct Progress {
    tty: bool,
    total: usize,
}

impl Progress {
    fn show(&self, i: usize, case: &Case, note: &str) {
        let size = if case.size() > 0 {
            format!(" {} B", case.size())
        } else {
            String::new()
        };
        let text = format!(
            "shmq bench: [{}/{}] {}{size}{note}",
            i + 1,
            self.total,
            case.name()
        );
        if self.tty {
            eprint!("\r\x1b[K{text}");
        } else {
            eprintln!("{text}");
        }
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

fn validate(a: &BenchArgs) -> anyhow::Result<()> {
    let bad = |msg: String| Err(exit::fail(exit::USAGE, msg));
    if a.sizes.is_empty() {
        return bad("--sizes needs at least one size".into());
    }
    if let Some(s) = a
        .sizes
        .iter()
        .find(|&&s| s == 0 || s > shmq::layout::MAX_SLOT_SIZE as usize)
    {
        return bad(format!(
            "size {s} is outside 1..={}",
            shmq::layout::MAX_SLOT_SIZE
        ));
    }
    if a.producers
        .iter()
        .chain(&a.consumers)
        .any(|&n| n == 0 || n > 32)
    {
        return bad("--producers and --consumers take counts from 1 to 32".into());
    }
    if a.fanout_sizes
        .iter()
        .any(|&s| s == 0 || s > shmq::layout::MAX_SLOT_SIZE as usize)
    {
        return bad("--fanout-sizes takes sizes from 1 byte".into());
    }
    if a.rate == 0 || a.rate > 100_000_000 {
        return bad("--rate takes 1 to 100000000 messages per second".into());
    }
    if a.subscribers.iter().any(|&n| n == 0 || n > 32) {
        return bad("--subscribers takes counts from 1 to 32".into());
    }
    if a.wait.is_empty() {
        return bad("--wait needs at least one strategy".into());
    }
    if a.repeat == 0 || a.repeat > 100 {
        return bad("--repeat takes 1 to 100".into());
    }
    if a.rounds == 0
        || a.messages == 0
        || a.case_secs.is_nan()
        || a.case_secs <= 0.0
        || a.capacity < 2
        || a.fanout_capacity < 2
        || a.idle.is_nan()
        || a.idle < 0.0
    {
        return bad(
            "--rounds, --messages, --case-secs, --capacity and --fanout-capacity must be positive"
                .into(),
        );
    }
    if a.producers.iter().any(|&p| a.messages < p as u64) {
        return bad("--messages must be at least the number of producers".into());
    }
    Ok(())
}

/// `shmq bench`.
/// `--cases bridge`: issue 13's log -> NATS -> log case, run by
/// `shmq-bridge bench` (found beside this binary; the bridge is its own
/// crate so that this command never links a network client).
fn bridge_bench() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?.with_file_name("shmq-bridge");
    let status = std::process::Command::new(&exe)
        .arg("bench")
        .status()
        .map_err(|e| exit::fail(exit::NOT_FOUND, format!("running {}: {e}", exe.display())))?;
    if !status.success() {
        return Err(exit::fail(
            exit::OTHER,
            format!("shmq-bridge bench: {status}"),
        ));
    }
    Ok(())
}

pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    if a.cases.iter().any(|c| c == "bridge") {
        bridge_bench()?;
        if a.cases.len() == 1 {
            return Ok(());
        }
    }
    validate(a)?;
    signal::install();
    if a.cases.iter().any(|w| w == "async") {
        // The async API's cases (opt-in), with their own table.
        async_wake::run(a, &mut Names { n: 1000 })?;
        if a.cases.iter().all(|w| w == "async") {
            return Ok(());
        }
    }
    let cases = plan(a);
    if cases.is_empty() {
        return Err(exit::fail(exit::USAGE, "--cases selects no case"));
    }
    let progress = Progress {
        tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        total: cases.len(),
    };
    let mut runner = Runner {
        a,
        names: Names { n: 0 },
    };
    let mut rows = Vec::new();
    let started = Instant::now();
    let cpu_start = CpuUse::now();
    let label = |e: anyhow::Error, case: &Case| {
        progress.done();
        if signal::interrupted() {
            exit::fail(
                exit::INTERRUPTED,
                "interrupted; removed the segments it created",
            )
        } else {
            e.context(format!("{} ({} bytes)", case.name(), case.size()))
        }
    };
    let emit = |row: &Row| -> anyhow::Result<()> {
        if a.json {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", row.json())?;
            out.flush()?;
        }
        Ok(())
    };
    // Background cases first, so they overlap the rest of the run.
    let (background, foreground): (Vec<Case>, Vec<Case>) =
        cases.iter().partition(|c| c.background());
    let mut idle = Vec::new();
    for (i, case) in background.iter().enumerate() {
        progress.show(i, case, " (in the background)");
        let Case::QueueIdle { secs, spsc } = *case else {
            unreachable!("only the idle cases run in the background")
        };
        idle.push((
            *case,
            runner.start_idle(secs, spsc).map_err(|e| label(e, case))?,
        ));
    }
    // `--repeat N`: N rounds, each case once per round, and each case's
    // median run. A case's runs are spread over the whole run, so a change
    // of the machine's speed meets every case alike; N runs of one case in
    // a row could catch it in that case and not in the case its ratio is
    // taken against.
    let rounds = a.repeat.max(1);
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); foreground.len()];
    let mut by_round: Vec<Vec<Row>> = Vec::new();
    for round in 0..rounds {
        let note = if rounds > 1 {
            format!(" (round {}/{rounds})", round + 1)
        } else {
            String::new()
        };
        let mut this = Vec::new();
        for (i, case) in foreground.iter().enumerate() {
            progress.show(background.len() + i, case, &note);
            let row = runner.run(*case).map_err(|e| label(e, case))?;
            this.push(row.clone());
            runs[i].push(row);
        }
        by_round.push(this);
    }
    for mut runs in runs {
        runs.sort_by(|x, y| x.m.rank().total_cmp(&y.m.rank()));
        let row = runs.swap_remove(runs.len() / 2);
        emit(&row)?;
        rows.push(row);
    }
    for (case, run) in idle {
        progress.show(cases.len() - 1, &case, " (waiting for it to finish)");
        let row = row(case, run.finish().map_err(|e| label(e, &case))?, a.rate);
        emit(&row)?;
        rows.push(row);
    }
    progress.done();
    if !a.json {
        println!("shmq bench: {}", machine());
        if let Some(others) = cpu_start.as_ref().and_then(CpuUse::others_since) {
            println!("{}", contention_note(others));
        }
        let mut notes = vec![format!(
            "one-way latency = round trip / 2 over {} round trips (at most {} s per case); \
             throughput over {} messages (at most {} s), ring capacity {} (1:N flat out: {})",
            a.rounds, a.case_secs, a.messages, a.case_secs, a.capacity, a.fanout_capacity
        )];
        if cases.iter().any(|c| {
            matches!(
                c,
                Case::LogFanOut { .. } | Case::LogPingPong { .. } | Case::LogPaced { .. }
            )
        }) {
            notes.push(format!(
                "log cases: reliable log, every message checked in order; mpub/spub: multi- \
                     or single-publisher log (1:N cases: {}); 1:N flat out: the slowest \
                     subscriber's rate",
                FEED_PUBLISHERS.name()
            ));
        }
        if cases.iter().any(|c| matches!(c, Case::LogPaced { .. })) {
            notes.push(format!(
                "paced: {} msgs/s, latency from each message's scheduled send time \
                 (t0 + i / rate), worst subscriber then each; nospin: subscribers sleep at \
                 once when idle, sleep: the default wait ({:?}); CPU: the subscribers' CPU \
                 time per delivered message",
                a.rate,
                WaitStrategy::default()
            ));
        }
        if !background.is_empty() {
            notes.push("idle cases ran in the background".into());
        }
        if a.repeat > 1 {
            notes.push(format!(
                "median of {} runs, the cases taking turns",
                a.repeat
            ));
        }
        println!("{}", notes.join("; "));
        let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).filter(|&s| s > 0).collect();
        sizes.sort_unstable();
        sizes.dedup();
        if !sizes.is_empty() {
            println!("{}", slot_layout(&sizes));
        }
        println!();
        print!("{}", table(&rows));
        println!();
        if let Some(o) = oversubscribed(&rows) {
            println!("{o}");
            println!();
        }
        if let Some(b) = bars(&rows) {
            println!("{b}");
        }
        if let Some(f) = report::round_figures(&by_round) {
            println!("{f}");
        }
        println!(
            "{} cases in {:.1} s",
            rows.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: BenchArgs,
    }

    fn names(args: &[&str]) -> Vec<(String, usize)> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("valid options");
        plan(&cli.a).iter().map(|c| (c.name(), c.size())).collect()
    }

    fn has(plan: &[(String, usize)], case: &str, size: usize) -> bool {
        plan.iter().any(|(n, s)| n == case && *s == size)
    }

    #[test]
    fn the_default_run_has_the_log_beside_the_spsc_queue_and_no_opt_in_case() {
        let p = names(&[]);
        for size in [48, 64] {
            for case in [
                "queue-spsc-pingpong-spin",
                "queue-spsc-stream-spin",
                "log-mpub-pingpong-spin",
                "log-mpub-stream-spin",
                "log-spub-pingpong-spin",
                "log-spub-stream-spin",
            ] {
                assert!(has(&p, case, size), "{case} {size} missing: {p:?}");
            }
        }
        for n in [1, 2, 4] {
            assert!(has(&p, &format!("log-fanout-{n}sub"), 64));
            assert!(has(&p, &format!("log-paced-{n}sub-nospin"), 64));
            assert!(has(&p, &format!("log-paced-{n}sub-sleep"), 64));
        }
        assert!(!p
            .iter()
            .any(|(n, _)| n.contains("batch") || n.contains("zerocopy")));
        // Each case once.
        let mut unique = p.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), p.len());
    }

    #[test]
    fn case_groups_select_the_fanout_and_the_opt_in_cases_with_their_references() {
        let p = names(&["--cases", "fanout"]);
        assert!(has(&p, "queue-spsc-stream-spin", 48) && has(&p, "queue-spsc-stream-spin", 64));
        assert!(has(&p, "queue-spsc-stream-sleep", 64) && has(&p, "log-paced-4sub-nospin", 64));
        assert!(!p
            .iter()
            .any(|(n, _)| n.starts_with("raw") || n.contains("mpmc")));
        assert!(!p.iter().any(|(n, _)| n.contains("batch")), "{p:?}");
        let p = names(&["--cases", "batch"]);
        assert_eq!(
            p,
            [
                ("queue-spsc-stream-spin".to_string(), 64),
                ("queue-spsc-stream-spin-batch32".to_string(), 64),
                ("queue-mpmc-stream-spin".to_string(), 64),
                ("queue-mpmc-stream-spin-batch32".to_string(), 64),
                ("log-spub-stream-spin".to_string(), 64),
                ("log-spub-stream-spin-batch32".to_string(), 64),
            ]
        );
        let p = names(&["--cases", "zerocopy"]);
        assert_eq!(
            p,
            [
                ("queue-spsc-stream-spin".to_string(), 4096),
                ("queue-spsc-stream-spin-zerocopy".to_string(), 4096),
            ]
        );
        // A word naming a copying case does not pull in the opt-in ones.
        assert!(!names(&["--cases", "stream"])
            .iter()
            .any(|(n, _)| n.contains("batch") || n.contains("zerocopy")));
    }

    #[test]
    fn oversubscription_is_known_per_case() {
        let spub = Case::LogPingPong {
            size: 64,
            publishers: Publishers::Single,
        };
        assert_eq!(spub.busy(100_000), 2);
        let four = Case::LogFanOut {
            size: 64,
            subscribers: 4,
            wait: Wait::Sleep,
            publishers: Publishers::Multi,
            op: Op::Copy,
        };
        assert_eq!(four.busy(100_000), 5);
        let paced = |wait| Case::LogPaced {
            size: 64,
            subscribers: 4,
            wait,
            publishers: Publishers::Multi,
        };
        // Sleeping subscribers leave only the pacing publisher busy; spinning
        // ones (a spin longer than the 10 µs between messages) are busy too.
        assert_eq!(paced(Wait::Nospin).busy(100_000), 1);
        assert_eq!(paced(Wait::Spin).busy(100_000), 5);
    }
}
