//! `shmq crash`: the crash campaign. Real processes work on each kind of
//! segment (MPMC queue, SPSC queue, reliable log, overwrite log) while the
//! campaign SIGKILLs one of them at a random moment, starts a replacement,
//! and after a few kills closes the queue or log, lets the survivors drain,
//! and checks every invariant from the ledgers they wrote (see
//! [`check`] for what each count means and [`ledger`] for how messages
//! check themselves).
//!
//! A round:
//! 1. the parent creates the segment (`shmq-crash-PID-KIND-ROUND`, or a free
//!    SysV key, or a file in the temporary directory) and, for the reliable
//!    log, the named cursors `c0` and `c1` at the oldest position;
//! 2. it starts the children (`shmq crash-child`, this same executable);
//! 3. `--round-kills` times: it waits a random 0..`--max-delay-ms`, SIGKILLs
//!    a random child, reaps it, starts a replacement, and waits until
//!    producers and consumers both progress again and the replacement has
//!    done something (at most `--stall-ms`, else the round is a stall);
//! 4. it closes the queue or log and waits at most `--drain-ms` for every
//!    child to see Closed and exit 0;
//! 5. it unlinks the segment and checks nothing is left of it, then checks
//!    the ledgers.
//!
//! Every wait has a timeout; a stalled round is described (the queue's or
//! log's counters, which child stopped when), torn down and counted, and
//! the campaign goes on. Children die with the parent (PR_SET_PDEATHSIG).

mod check;
mod child;
mod ledger;

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, Target};

use crate::{exit, json, signal};
use check::{Kill, Tally};
use ledger::Rng;

/// The kinds of segment the campaign runs on.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindArg {
    /// Work queue, 2 producers x 2 consumers
    Mpmc,
    /// Single-producer/single-consumer queue (roles taken over from the dead)
    Spsc,
    /// Reliable log, 1 publisher, 2 subscribers on durable named cursors
    LogReliable,
    /// Overwrite log, 1 publisher, 2 subscribers
    LogOverwrite,
    /// Single-publisher reliable log (the publisher role taken over from
    /// the dead), 1 publisher, 2 subscribers on durable named cursors
    LogSingle,
}

impl KindArg {
    fn name(self) -> &'static str {
        match self {
            KindArg::Mpmc => "mpmc",
            KindArg::Spsc => "spsc",
            KindArg::LogReliable => "log-reliable",
            KindArg::LogOverwrite => "log-overwrite",
            KindArg::LogSingle => "log-single",
        }
    }

    /// The children of a round: (role, slot).
    fn cast(self) -> &'static [(RoleArg, usize)] {
        use RoleArg::{Consumer as C, Producer as P};
        match self {
            KindArg::Mpmc => &[(P, 0), (P, 1), (C, 0), (C, 1)],
            KindArg::Spsc => &[(P, 0), (C, 0)],
            KindArg::LogReliable | KindArg::LogOverwrite | KindArg::LogSingle => {
                &[(P, 0), (C, 0), (C, 1)]
            }
        }
    }

    /// Whether it is a work queue (where `--batch` applies).
    fn is_queue(self) -> bool {
        matches!(self, KindArg::Mpmc | KindArg::Spsc)
    }

    /// Whether no surviving process can carry on the work of a killed
    /// `role`: its recovery is then timed from the replacement's start.
    fn sole(self, role: RoleArg) -> bool {
        match self {
            KindArg::Mpmc => false,
            KindArg::Spsc => true,
            // A named cursor gates the publisher; only its next holder moves it.
            KindArg::LogReliable | KindArg::LogSingle => true,
            KindArg::LogOverwrite => role == RoleArg::Producer,
        }
    }
}

/// A child's side.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleArg {
    /// Producer (queue) or publisher (log)
    Producer,
    /// Consumer (queue) or subscriber (log)
    Consumer,
}

/// Where the campaign's segments live.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackingArg {
    /// POSIX shared memory (/dev/shm)
    Posix,
    /// SysV shared memory (a free key per round)
    Sysv,
    /// A file in the temporary directory
    File,
}

/// `shmq crash` arguments.
#[derive(Args, Debug)]
pub struct CrashArgs {
    /// Kinds to run, comma-separated
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [KindArg::Mpmc, KindArg::Spsc, KindArg::LogReliable, KindArg::LogOverwrite, KindArg::LogSingle])]
    kinds: Vec<KindArg>,
    /// SIGKILLs per kind
    #[arg(long, default_value_t = 100)]
    kills: u64,
    /// SIGKILLs per round, before the round closes, drains and checks
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    round_kills: u64,
    /// Random seed (default: from the clock; printed, so a run can be repeated)
    #[arg(long)]
    seed: Option<u64>,
    /// Where segments live
    #[arg(long, value_enum, default_value_t = BackingArg::Posix)]
    backing: BackingArg,
    /// Slot size in bytes (messages are 8 to this many bytes)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65536))]
    slot_size: u64,
    /// Slots in the ring (small rings wrap often)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=1048576))]
    capacity: u64,
    /// Longest random wait before each kill, in milliseconds
    #[arg(long, default_value_t = 20)]
    max_delay_ms: u64,
    /// A round stalls when a child, or producers or consumers after a kill,
    /// make no progress for this long (milliseconds)
    #[arg(long, default_value_t = 2000)]
    stall_ms: u64,
    /// Longest wait for close + drain at the end of a round (milliseconds)
    #[arg(long, default_value_t = 5000)]
    drain_ms: u64,
    /// Messages per call on the queues (mpmc, spsc): 1 (the default) sends
    /// with enqueue_block and receives with dequeue_block; N > 1 sends with
    /// enqueue_batch_until (batches of N) and receives with
    /// dequeue_batch_until(N), so that kills land inside batch calls. The
    /// log kinds ignore it (they use single calls).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65536))]
    batch: u64,
    /// Messages per second per producer (0: as fast as they can, the
    /// default: kills then land inside the engine most often; a rate leaves
    /// the CPU idle enough to time recovery without scheduling delays).
    /// Overwrite publishers never wait and use 2,000,000 when this is 0.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Recovery p99 bar in milliseconds (0: report only)
    #[arg(long, default_value_t = 10.0)]
    latency_bar_ms: f64,
    /// One JSON object on standard output instead of text
    #[arg(long)]
    json: bool,
    /// One line per round on standard error
    #[arg(long, short)]
    verbose: bool,
    /// Keep each round's ledgers (in the temporary directory) for inspection
    #[arg(long)]
    keep: bool,
}

/// `shmq crash-child` arguments (started by `shmq crash`).
#[derive(Args, Debug)]
pub struct ChildArgs {
    /// The campaign's pid (the child dies with it)
    #[arg(long)]
    parent: u32,
    #[arg(long, value_enum)]
    kind: KindArg,
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The segment
    #[arg(long)]
    target: String,
    /// This incarnation's ledger file (created; must not exist)
    #[arg(long)]
    ledger: PathBuf,
    /// Incarnation number (unique in the round)
    #[arg(long)]
    inc: u32,
    /// The round's message salt
    #[arg(long)]
    salt: u64,
    #[arg(long)]
    slot_size: usize,
    /// Reliable log: the durable cursor to read through
    #[arg(long)]
    cursor: Option<String>,
    /// Reliable log: commit after this many messages
    #[arg(long, default_value_t = 1)]
    commit_every: u64,
    /// Messages per second to send at most (0: as fast as possible)
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Queues: messages per call (1: single calls; more: batch calls)
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Give up after this long
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
}

/// Runs a child (`shmq crash-child`).
pub fn child(a: &ChildArgs) -> anyhow::Result<()> {
    child::run(a)
}

/// The queue or log a round runs on, held by the campaign itself.
enum Handle {
    Queue(Box<Queue>),
    Log(Log),
}

impl Handle {
    fn close(&self) {
        match self {
            Handle::Queue(q) => q.close(),
            Handle::Log(l) => l.close(),
        }
    }

    /// What the segment says about itself, for a stall report.
    fn describe(&self) -> String {
        match self {
            Handle::Queue(q) => format!("{:?}", q.stats()),
            Handle::Log(l) => {
                let s = l.stats();
                let cursors: Vec<String> = s
                    .cursors
                    .iter()
                    .map(|c| {
                        format!(
                            "{}@{} read {} owner {:?}",
                            c.name.as_deref().unwrap_or("(anon)"),
                            c.position,
                            c.read,
                            c.owner
                        )
                    })
                    .collect();
                format!(
                    "published {} next_seq {} oldest {} tombstones {} lagged {} cursors [{}]",
                    s.published,
                    s.next_seq,
                    s.oldest,
                    s.tombstones,
                    s.lagged,
                    cursors.join(", ")
                )
            }
        }
    }
}

/// A running child, with what the campaign has read of its ledger so far.
struct Kid {
    child: Child,
    entry: Option<usize>,
    role: RoleArg,
    slot: usize,
    inc: u32,
    ledger: PathBuf,
    err: PathBuf,
    reader: Option<ledger::Reader>,
    /// Whether it wrote its first record.
    began: bool,
    /// Progress records read so far (sends, receives, lag reports).
    progress: u64,
    last_progress: Instant,
}

impl Kid {
    /// Reads what the child appended to its ledger since the last call.
    fn poll(&mut self) {
        if self.reader.is_none() {
            self.reader = ledger::Reader::open(&self.ledger);
        }
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        let before = self.progress;
        while let Some(rec) = r.next() {
            self.began = true;
            if rec.tag.is_progress() {
                self.progress += 1;
            }
        }
        if self.progress > before {
            self.last_progress = Instant::now();
        }
    }

    fn name(&self) -> String {
        let role = match self.role {
            RoleArg::Producer => "producer",
            RoleArg::Consumer => "consumer",
        };
        format!(
            "{role}{} (incarnation {}, pid {})",
            self.slot,
            self.inc,
            self.child.id()
        )
    }

    /// The last lines the child wrote to standard error.
    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.err).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }
}

/// SIGKILLs a child and reaps it (at most 5 s); its exit status if it had
/// already exited on its own.
fn kill_and_reap(kid: &mut Kid) -> Option<ExitStatus> {
    let early = kid.child.try_wait().ok().flatten();
    if early.is_none() {
        // SAFETY: kill(2) has no memory preconditions; the pid is our
        // unreaped child, so it cannot have been reused.
        unsafe { libc::kill(kid.child.id() as libc::pid_t, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while kid.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    signal::forget_child(kid.entry);
    early
}

fn status_text(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => format!("{s}"),
    }
}

/// One round: its segment, its children, and what happened.
struct Round<'a> {
    a: &'a CrashArgs,
    kind: KindArg,
    no: u32,
    dir: PathBuf,
    target: Target,
    salt: u64,
    handle: Option<Handle>,
    kids: Vec<Kid>,
    /// Every incarnation: (role, slot, inc, ledger).
    incs: Vec<(RoleArg, usize, u32, PathBuf)>,
    next_inc: u32,
    kills: Vec<Kill>,
    stall: Option<String>,
    crashes: Vec<String>,
    leaked: u64,
}

/// How a wait ended.
enum Waited {
    Done,
    Stalled(String),
}

impl Round<'_> {
    fn spawn(&mut self, role: RoleArg, slot: usize, rng: &mut Rng) -> anyhow::Result<u32> {
        let inc = self.next_inc;
        self.next_inc += 1;
        let base = format!(
            "{}{slot}-{inc}",
            if role == RoleArg::Producer { "p" } else { "c" }
        );
        let ledger = self.dir.join(format!("{base}.led"));
        let err = self.dir.join(format!("{base}.err"));
        let exe = std::env::current_exe().context("find the shmq executable")?;
        let mut cmd = Command::new(exe);
        cmd.arg("crash-child")
            .args(["--parent", &std::process::id().to_string()])
            .args(["--kind", self.kind.name()])
            .args([
                "--role",
                if role == RoleArg::Producer {
                    "producer"
                } else {
                    "consumer"
                },
            ])
            .args(["--target", &self.target.to_string()])
            .arg("--ledger")
            .arg(&ledger)
            .args(["--inc", &inc.to_string()])
            .args(["--salt", &self.salt.to_string()])
            .args(["--slot-size", &self.a.slot_size.to_string()])
            .args(["--rate", &self.a.rate.to_string()])
            .args(["--batch", &batch_of(self.a, self.kind).to_string()]);
        if matches!(self.kind, KindArg::LogReliable | KindArg::LogSingle)
            && role == RoleArg::Consumer
        {
            cmd.args(["--cursor", &format!("c{slot}")])
                .args(["--commit-every", &(1 + rng.below(4)).to_string()]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).context("create a child's stderr file")?)
            .spawn()
            .context("start a crash child")?;
        let entry = signal::watch_child(child.id());
        self.kids.push(Kid {
            child,
            entry,
            role,
            slot,
            inc,
            ledger: ledger.clone(),
            err,
            reader: None,
            began: false,
            progress: 0,
            last_progress: Instant::now(),
        });
        self.incs.push((role, slot, inc, ledger));
        Ok(inc)
    }

    fn describe(&self, why: &str) -> String {
        let kids: Vec<String> = self
            .kids
            .iter()
            .map(|k| {
                format!(
                    "{} {} records, last {} ms ago",
                    k.name(),
                    k.progress,
                    k.last_progress.elapsed().as_millis()
                )
            })
            .collect();
        let stats = self
            .handle
            .as_ref()
            .map(Handle::describe)
            .unwrap_or_default();
        format!(
            "{} round {}: {why}; {stats}; children: {}",
            self.kind.name(),
            self.no,
            kids.join("; ")
        )
    }

    /// Reads every ledger, replaces children that died on their own (a
    /// crash), and reports a child without progress for `--stall-ms`.
    fn poll(&mut self, rng: &mut Rng) -> anyhow::Result<Option<String>> {
        signal::check()?;
        let stall = Duration::from_millis(self.a.stall_ms);
        let mut i = 0;
        while i < self.kids.len() {
            self.kids[i].poll();
            if let Some(status) = self.kids[i].child.try_wait()? {
                let kid = self.kids.remove(i);
                signal::forget_child(kid.entry);
                self.crashes.push(format!(
                    "{} {} exited by itself with {}: {}",
                    self.kind.name(),
                    kid.name(),
                    status_text(status),
                    kid.stderr_tail()
                ));
                self.spawn(kid.role, kid.slot, rng)?;
                continue;
            }
            i += 1;
        }
        if let Some(k) = self.kids.iter().find(|k| k.last_progress.elapsed() > stall) {
            let why = format!("{} made no progress for {} ms", k.name(), self.a.stall_ms);
            return Ok(Some(self.describe(&why)));
        }
        Ok(None)
    }

    /// Polls for `d`, unless a stall shows first.
    fn idle(&mut self, d: Duration, rng: &mut Rng) -> anyhow::Result<Waited> {
        let end = Instant::now() + d;
        loop {
            if let Some(s) = self.poll(rng)? {
                return Ok(Waited::Stalled(s));
            }
            let now = Instant::now();
            if now >= end {
                return Ok(Waited::Done);
            }
            std::thread::sleep((end - now).min(Duration::from_millis(2)));
        }
    }

    /// Waits until every child has made progress once (after startup).
    fn warm_up(&mut self, rng: &mut Rng) -> anyhow::Result<Waited> {
        let deadline = Instant::now() + Duration::from_millis(self.a.stall_ms);
        loop {
            if let Some(s) = self.poll(rng)? {
                return Ok(Waited::Stalled(s));
            }
            if self.kids.iter().all(|k| k.progress > 0) {
                return Ok(Waited::Done);
            }
            if Instant::now() > deadline {
                return Ok(Waited::Stalled(
                    self.describe("not every child started working"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kills a random child, starts its replacement, and waits until
    /// producers and consumers progress again and the replacement works.
    fn kill_one(&mut self, rng: &mut Rng) -> anyhow::Result<Waited> {
        let victim = rng.below(self.kids.len() as u64) as usize;
        let mut before: Vec<(u32, u64)> = self.kids.iter().map(|k| (k.inc, k.progress)).collect();
        let ts = ledger::now_ns();
        let mut kid = self.kids.remove(victim);
        if let Some(status) = kill_and_reap(&mut kid) {
            self.crashes.push(format!(
                "{} {} had exited by itself with {}: {}",
                self.kind.name(),
                kid.name(),
                status_text(status),
                kid.stderr_tail()
            ));
        }
        let killed = kid.name();
        let replacement = self.spawn(kid.role, kid.slot, rng)?;
        let sole = self.kind.sole(kid.role);
        self.kills.push(Kill {
            ts,
            role: kid.role,
            victim: Some(kid.inc),
            sole,
            replacement: Some(replacement),
        });
        let deadline = Instant::now() + Duration::from_millis(self.a.stall_ms);
        let mut began = !sole;
        loop {
            if let Some(s) = self.poll(rng)? {
                return Ok(Waited::Stalled(s));
            }
            if !began {
                // Recovery is timed from the replacement's start: only
                // progress after it counts.
                if self.kids.iter().any(|k| k.inc == replacement && k.began) {
                    before = self.kids.iter().map(|k| (k.inc, k.progress)).collect();
                    began = true;
                }
                if Instant::now() > deadline {
                    let why = format!("after killing {killed}: the replacement did not start");
                    return Ok(Waited::Stalled(self.describe(&why)));
                }
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let moved = |k: &Kid| {
                let was = before.iter().find(|(i, _)| *i == k.inc).map_or(0, |b| b.1);
                k.progress > was
            };
            let sends = self
                .kids
                .iter()
                .any(|k| k.role == RoleArg::Producer && moved(k));
            let recvs = self
                .kids
                .iter()
                .any(|k| k.role == RoleArg::Consumer && moved(k));
            let fresh = self
                .kids
                .iter()
                .any(|k| k.inc == replacement && k.progress > 0);
            if sends && recvs && fresh {
                return Ok(Waited::Done);
            }
            if Instant::now() > deadline {
                let why = format!(
                    "after killing {killed}: no progress within {} ms (sends {sends}, receives \
                     {recvs}, replacement working {fresh})",
                    self.a.stall_ms
                );
                return Ok(Waited::Stalled(self.describe(&why)));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Closes the queue or log and waits for every child to see Closed and
    /// exit; true if they all did in time.
    fn close_and_drain(&mut self) -> anyhow::Result<bool> {
        if let Some(h) = &self.handle {
            h.close();
        }
        let deadline = Instant::now() + Duration::from_millis(self.a.drain_ms);
        loop {
            signal::check()?;
            let mut i = 0;
            while i < self.kids.len() {
                self.kids[i].poll();
                if let Some(status) = self.kids[i].child.try_wait()? {
                    let kid = self.kids.remove(i);
                    signal::forget_child(kid.entry);
                    if !status.success() {
                        self.crashes.push(format!(
                            "{} {} failed at close with {}: {}",
                            self.kind.name(),
                            kid.name(),
                            status_text(status),
                            kid.stderr_tail()
                        ));
                    }
                    continue;
                }
                i += 1;
            }
            if self.kids.is_empty() {
                return Ok(true);
            }
            if Instant::now() > deadline {
                let why = format!("close + drain did not complete in {} ms", self.a.drain_ms);
                let s = self.describe(&why);
                if self.stall.is_none() {
                    self.stall = Some(s);
                } else if let Some(first) = &mut self.stall {
                    first.push_str(" / then ");
                    first.push_str(&why);
                }
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills what is left, detaches, unlinks the segment and checks it is gone.
    fn tear_down(&mut self) {
        for mut kid in self.kids.drain(..) {
            kill_and_reap(&mut kid);
        }
        self.handle = None;
        let _ = self.target.unlink();
        if self.target.exists() {
            self.leaked += 1;
        }
    }

    fn input(&mut self, complete: bool) -> check::RoundInput {
        check::RoundInput {
            kind: self.kind,
            capacity: self.a.capacity,
            batch: batch_of(self.a, self.kind),
            incs: self
                .incs
                .iter()
                .map(|(role, slot, inc, path)| check::Inc {
                    role: *role,
                    slot: *slot,
                    inc: *inc,
                    records: ledger::read_all(path),
                })
                .collect(),
            kills: std::mem::take(&mut self.kills),
            complete,
        }
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        self.tear_down();
        if !self.a.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The totals of one kind.
#[derive(Default)]
struct KindReport {
    kills: u64,
    rounds: u64,
    stalls: u64,
    crashes: u64,
    leaked: u64,
    consumer_kills: u64,
    tally: Tally,
    stall_details: Vec<String>,
    crash_details: Vec<String>,
}

/// Messages per call the children of `kind` use (logs ignore `--batch`).
fn batch_of(a: &CrashArgs, kind: KindArg) -> u64 {
    if kind.is_queue() {
        a.batch
    } else {
        1
    }
}

/// Where a round's segment lives.
fn round_target(a: &CrashArgs, kind: KindArg, no: u32, dir: &Path) -> anyhow::Result<Target> {
    let name = format!("shmq-crash-{}-{}-{no}", std::process::id(), kind.name());
    Ok(match a.backing {
        BackingArg::Posix => Target::Posix(name),
        BackingArg::Sysv => Target::SysV(shmq::find_free_key()?),
        BackingArg::File => Target::File(dir.join(format!("{name}.seg"))),
    })
}

fn run_round(
    a: &CrashArgs,
    kind: KindArg,
    no: u32,
    kills: u64,
    rng: &mut Rng,
    rep: &mut KindReport,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir()
        .join(format!("shmq-crash-{}", std::process::id()))
        .join(format!("{}-{no}", kind.name()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let target = round_target(a, kind, no, &dir)?;
    let (slot, cap) = (a.slot_size as usize, a.capacity as usize);
    let handle = match kind {
        KindArg::Mpmc => Handle::Queue(Box::new(Queue::create(
            &target,
            &QueueConfig::new(slot, cap),
        )?)),
        KindArg::Spsc => Handle::Queue(Box::new(Queue::create(
            &target,
            &QueueConfig::new(slot, cap).spsc(true),
        )?)),
        KindArg::LogReliable => {
            // Declared at creation: gated from the first message.
            let config = LogConfig::new(slot, cap)
                .mode(LogMode::Reliable)
                .durable_cursors(&["c0", "c1"]);
            Handle::Log(Log::create(&target, &config)?)
        }
        KindArg::LogOverwrite => Handle::Log(Log::create(&target, &LogConfig::new(slot, cap))?),
        KindArg::LogSingle => {
            let config = LogConfig::new(slot, cap)
                .mode(LogMode::Reliable)
                .single_publisher(true)
                .durable_cursors(&["c0", "c1"]);
            Handle::Log(Log::create(&target, &config)?)
        }
    };
    let mut r = Round {
        a,
        kind,
        no,
        dir,
        target,
        salt: rng.next(),
        handle: Some(handle),
        kids: Vec::new(),
        incs: Vec::new(),
        next_inc: 1,
        kills: Vec::new(),
        stall: None,
        crashes: Vec::new(),
        leaked: 0,
    };
    for &(role, slot) in kind.cast() {
        r.spawn(role, slot, rng)?;
    }
    if let Waited::Stalled(s) = r.warm_up(rng)? {
        r.stall = Some(s);
    }
    let mut k = 0;
    while r.stall.is_none() && k < kills {
        let delay = Duration::from_micros(rng.below(a.max_delay_ms * 1000 + 1));
        if let Waited::Stalled(s) = r.idle(delay, rng)? {
            r.stall = Some(s);
            break;
        }
        k += 1;
        if let Waited::Stalled(s) = r.kill_one(rng)? {
            r.stall = Some(s);
        }
    }
    let drained = r.close_and_drain()?;
    r.tear_down();
    let complete = drained && r.stall.is_none();
    let input = r.input(complete);
    rep.kills += input.kills.len() as u64;
    rep.consumer_kills += input
        .kills
        .iter()
        .filter(|k| k.role == RoleArg::Consumer)
        .count() as u64;
    rep.rounds += 1;
    rep.leaked += r.leaked;
    rep.crashes += r.crashes.len() as u64;
    rep.crash_details.extend(r.crashes.drain(..).take(10));
    if let Some(s) = r.stall.take() {
        rep.stalls += 1;
        if rep.stall_details.len() < 10 {
            rep.stall_details.push(s);
        }
    }
    let problems_before = rep.tally.problems.len();
    check::analyse(no, &input, &mut rep.tally);
    if a.verbose {
        eprintln!(
            "{} round {no}: {} kills, {} incarnations, {}{}",
            kind.name(),
            input.kills.len(),
            input.incs.len(),
            if complete { "drained" } else { "STALLED" },
            if rep.tally.problems.len() > problems_before {
                ", problems"
            } else {
                ""
            },
        );
    }
    Ok(())
}

/// SysV segments this process created that still exist (leaks), from
/// /proc/sysvipc/shm (columns: key shmid perms size cpid ...).
fn sysv_leftovers() -> u64 {
    let me = std::process::id().to_string();
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(4) == Some(me.as_str()))
        .count() as u64
}

/// POSIX segments of this campaign still in /dev/shm.
fn posix_leftovers() -> u64 {
    let prefix = format!("shmq-crash-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count() as u64
        })
        .unwrap_or(0)
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}ms")
    } else {
        "-".into()
    }
}

/// Runs the campaign.
pub fn run(a: &CrashArgs) -> anyhow::Result<()> {
    signal::install();
    let seed = a
        .seed
        .unwrap_or_else(|| ledger::mix(ledger::now_ns() ^ u64::from(std::process::id())));
    let mut all_ok = true;
    let mut failed = Vec::new();
    let mut objs = Vec::new();
    if !a.json {
        println!(
            "shmq crash: seed {seed}, backing {:?}, {} kills per kind, {} per round, queue \
             batch {}",
            a.backing, a.kills, a.round_kills, a.batch
        );
    }
    let result = (|| -> anyhow::Result<()> {
        for (ki, &kind) in a.kinds.iter().enumerate() {
            let mut rng = Rng::new(seed ^ ledger::mix(ki as u64 + 1));
            let mut rep = KindReport::default();
            let rounds = a.kills.div_ceil(a.round_kills).max(1);
            for no in 0..rounds {
                let kills = (a.kills - no * a.round_kills).min(a.round_kills);
                run_round(a, kind, no as u32, kills, &mut rng, &mut rep)?;
            }
            rep.leaked += sysv_leftovers() + posix_leftovers();
            let (ok, obj, line) = summarize(a, kind, &mut rep);
            all_ok &= ok;
            if !ok {
                failed.push(kind.name());
            }
            if a.json {
                objs.push(obj);
            } else {
                println!("{line}");
                for s in rep.stall_details.iter().take(3) {
                    println!("  stall: {s}");
                }
                for s in rep.crash_details.iter().take(3) {
                    println!("  crash: {s}");
                }
                for s in rep.tally.problems.iter().take(5) {
                    println!("  problem: {s}");
                }
                if a.verbose {
                    for s in &rep.tally.slowest {
                        println!("  slow recovery: {}", s.1);
                    }
                }
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(
        std::env::temp_dir().join(format!("shmq-crash-{}", std::process::id())),
    );
    result?;
    if a.json {
        let top = json::Obj::new()
            .str("seed", &seed.to_string())
            .str("backing", &format!("{:?}", a.backing).to_lowercase())
            .int("batch", a.batch)
            .bool("ok", all_ok)
            .raw("kinds", &json::array(objs))
            .end();
        println!("{top}");
    } else {
        if all_ok {
            println!("PASS: every invariant held");
        } else {
            println!("FAIL: {}", failed.join(", "));
        }
    }
    if all_ok {
        Ok(())
    } else {
        Err(exit::fail(exit::OTHER, ""))
    }
}

/// The verdict, JSON object and text line of one kind.
fn summarize(a: &CrashArgs, kind: KindArg, rep: &mut KindReport) -> (bool, String, String) {
    let t = &mut rep.tally;
    let (p50, p99, max) = (
        check::quantile_ms(&mut t.recovery, 0.50),
        check::quantile_ms(&mut t.recovery, 0.99),
        check::quantile_ms(&mut t.recovery, 1.0),
    );
    let (l50, l99, lmax) = (
        check::quantile_ms(&mut t.lap, 0.50),
        check::quantile_ms(&mut t.lap, 0.99),
        check::quantile_ms(&mut t.lap, 1.0),
    );
    let latency_ok = a.latency_bar_ms <= 0.0 || (p99.is_finite() && p99 <= a.latency_bar_ms);
    let invariants_ok = rep.stalls == 0
        && t.torn == 0
        && t.wrong_length == 0
        && t.phantom == 0
        && t.duplicates == 0
        && t.losses == 0
        && t.order == 0
        && t.in_hand <= rep.consumer_kills
        && rep.crashes == 0
        && rep.leaked == 0;
    let ok = invariants_ok && latency_ok;
    let strings = |v: &[String]| json::array(v.iter().map(|s| json::string(s)));
    let obj = json::Obj::new()
        .str("kind", kind.name())
        .int("batch", batch_of(a, kind))
        .bool("ok", ok)
        .bool("invariants_ok", invariants_ok)
        .bool("latency_ok", latency_ok)
        .int("kills", rep.kills)
        .int("rounds", rep.rounds)
        .int("messages", t.messages)
        .int("received", t.received)
        .int("stalls", rep.stalls)
        .int("torn", t.torn)
        .int("wrong_length", t.wrong_length)
        .int("phantom", t.phantom)
        .int("duplicates", t.duplicates)
        .int("redelivered_allowed", t.redelivered_allowed)
        .int("losses", t.losses)
        .int("in_hand_losses", t.in_hand)
        .int("order", t.order)
        .int("crashes", rep.crashes)
        .int("leaked_segments", rep.leaked)
        .int("lagged", t.lagged)
        .int("unrecovered", t.unrecovered)
        .num("recovery_p50_ms", p50)
        .num("recovery_p99_ms", p99)
        .num("recovery_max_ms", max)
        .num("lap_p50_ms", l50)
        .num("lap_p99_ms", l99)
        .num("lap_max_ms", lmax)
        .raw("stall_details", &strings(&rep.stall_details))
        .raw("crash_details", &strings(&rep.crash_details))
        .raw("problems", &strings(&t.problems))
        .raw(
            "slowest_recoveries",
            &strings(&t.slowest.iter().map(|s| s.1.clone()).collect::<Vec<_>>()),
        )
        .end();
    let line = format!(
        "{:<13} {} batch {} kills {} rounds {} messages {} stalls {} torn {} duplicates {} \
         redelivered-allowed {} losses {} in-hand {} order {} phantom {} crashes {} leaked {} \
         recovery p50 {} p99 {} max {} (lap p99 {}) unrecovered {}",
        kind.name(),
        if ok { "PASS" } else { "FAIL" },
        batch_of(a, kind),
        rep.kills,
        rep.rounds,
        t.messages,
        rep.stalls,
        t.torn + t.wrong_length,
        t.duplicates,
        t.redelivered_allowed,
        t.losses,
        t.in_hand,
        t.order,
        t.phantom,
        rep.crashes,
        rep.leaked,
        ms(p50),
        ms(p99),
        ms(max),
        ms(l99),
        t.unrecovered,
    );
    (ok, obj, line)
}
