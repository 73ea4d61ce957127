//! Truncating a segment under attached processes kills nobody (SPEC §5, §10).
//!
//! A writer and a reader process attach to a queue or a log (POSIX and file
//! backings) and loop; the parent truncates the backing under them, to 0
//! bytes or into the middle of the slots. They must survive, see the
//! truncation, drop their handles and exit 0. SysV segments cannot be
//! truncated (`protection_by_backing`).
//!
//! Each of the four loops (queue/log × POSIX/file) makes `SHMQ_TRUNC_TRIES`
//! tries (default 60), with the same two children going from one segment to
//! the next. The 1,000-tries-per-backing bar (two loops per backing):
//!
//! ```sh
//! SHMQ_TRUNC_TRIES=500 cargo test --release --test truncation -- --test-threads=2 --nocapture
//! ```
//!
//! A child that dies is counted (`deaths=` in the summary printed by each
//! loop), replaced, and fails the test.
//!
//! How a child sees the truncation: its operation returns `Corrupt`
//! ("segment truncated to N bytes"), or, until the engine checks
//! `Segment::check_intact` in its loops, `shmq::segment::truncated_mappings()`
//! lists it. `SHMQ_TRUNC_REQUIRE_CORRUPT=1` demands the former, with a
//! detail that names the truncation.

mod common;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{report, unique, Guard, ARGS_ENV, ROLE_ENV};
use shmq::segment::{Protection, Segment};
use shmq::{Error, Log, LogConfig, Queue, QueueConfig, RecvError, SendError, Start, Target};

common::child_roles! {
    "queue-producer" => queue_producer,
    "queue-consumer" => queue_consumer,
    "log-publisher" => log_publisher,
    "log-subscriber" => log_subscriber,
    "foreign-fault" => foreign_fault,
}

/// Timeout of every blocking call in the children.
const OP_TIMEOUT: Duration = Duration::from_millis(10);
/// How long a child waits for a segment to appear, or to see it truncated.
const PATIENCE: Duration = Duration::from_secs(10);

fn tries() -> u64 {
    std::env::var("SHMQ_TRUNC_TRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn require_corrupt() -> bool {
    std::env::var("SHMQ_TRUNC_REQUIRE_CORRUPT").is_ok_and(|v| v == "1")
}

/// Target number `i` of a run: `posix` or `file`, named after `base`.
fn target_of(backing: &str, base: &str, i: u64) -> Target {
    match backing {
        "posix" => Target::Posix(format!("{base}-{i}")),
        "file" => Target::File(std::env::temp_dir().join(format!("{base}-{i}"))),
        other => panic!("no backing {other:?}"),
    }
}

/// The path the parent truncates.
fn path_of(target: &Target) -> std::path::PathBuf {
    match target {
        Target::Posix(name) => format!("/dev/shm/{name}").into(),
        Target::File(path) => path.clone(),
        Target::SysV(_) => unreachable!("SysV segments cannot be truncated"),
    }
}

// ---- children ----

/// What one operation of a child said.
enum Step {
    /// Anything but `Corrupt` (ok, empty, full, timeout, lagged).
    Fine,
    /// `Corrupt`, with its detail.
    Corrupt(String),
}

/// A child's life: for each try, open the segment, loop `op` until the
/// truncation shows, drop the handle; then report the counts.
fn child_loop<H>(
    args: &[String],
    open: impl Fn(&Target) -> Result<H, Error>,
    mut op: impl FnMut(&mut H) -> Step,
) {
    let (backing, base) = (&args[0], &args[1]);
    let first: u64 = args[2].parse().unwrap();
    let count: u64 = args[3].parse().unwrap();
    let (mut op_corrupt, mut query_only, mut missed) = (0u64, 0u64, 0u64);
    // Corrupt errors whose detail does not name the truncation (the engine
    // found an impossible value in the zero pages before asking the segment).
    let mut other_detail = 0u64;
    for i in first..count {
        let target = target_of(backing, base, i);
        let deadline = Instant::now() + PATIENCE;
        let mut handle = loop {
            match open(&target) {
                Ok(h) => break h,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("child: cannot open {target}: {e}");
                    std::process::exit(3);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        let deadline = Instant::now() + PATIENCE;
        let mut said = |step: Step| match step {
            Step::Corrupt(detail) => {
                if !detail.contains("truncated") {
                    eprintln!("child: {target}: Corrupt: {detail}");
                    other_detail += 1;
                }
                true
            }
            Step::Fine => false,
        };
        let outcome = loop {
            if said(op(&mut handle)) {
                break Some(true);
            }
            if !shmq::segment::truncated_mappings().is_empty() {
                // Seen by the query: give the operations a chance to say so too.
                break Some((0..3).any(|_| said(op(&mut handle))));
            }
            if Instant::now() >= deadline {
                break None;
            }
        };
        match outcome {
            Some(true) => op_corrupt += 1,
            Some(false) => query_only += 1,
            None => {
                eprintln!("child: {target} never showed as truncated");
                missed += 1;
            }
        }
        drop(handle);
    }
    report(format_args!(
        "op_corrupt={op_corrupt} other_detail={other_detail} query_only={query_only} \
         missed={missed} rescued={}",
        shmq::segment::rescued_mappings()
    ));
}

fn open_queue(t: &Target) -> Result<Queue, Error> {
    Queue::open(t)
}

fn queue_producer(args: &[String]) {
    let msg = [7u8; 48];
    child_loop(args, open_queue, |q| {
        match q.enqueue_block(&msg, Some(OP_TIMEOUT)) {
            Err(SendError::Corrupt { detail }) => Step::Corrupt(detail),
            _ => Step::Fine,
        }
    });
}

fn queue_consumer(args: &[String]) {
    let mut buf = [0u8; 64];
    child_loop(args, open_queue, |q| {
        match q.dequeue_block(&mut buf, Some(OP_TIMEOUT)) {
            Err(RecvError::Corrupt { detail }) => Step::Corrupt(detail),
            _ => Step::Fine,
        }
    });
}

fn log_publisher(args: &[String]) {
    let msg = [9u8; 48];
    child_loop(args, Log::open, |log| match log.publish(&msg) {
        Err(SendError::Corrupt { detail }) => Step::Corrupt(detail),
        _ => Step::Fine,
    });
}

fn log_subscriber(args: &[String]) {
    let mut buf = [0u8; 64];
    let open = |t: &Target| -> Result<shmq::Subscriber, Error> {
        Log::open(t)?
            .subscribe(Start::Oldest)
            .map_err(|e| Error::Corrupt {
                detail: e.to_string(),
            })
    };
    child_loop(args, open, |sub| {
        match sub.recv_block(&mut buf, Some(OP_TIMEOUT)) {
            Err(RecvError::Corrupt { detail }) => Step::Corrupt(detail),
            _ => Step::Fine,
        }
    });
}

/// Maps a plain file (not shmq's), truncates it and touches a missing page:
/// this SIGBUS is not the guard's and must kill as usual.
fn foreign_fault(args: &[String]) {
    // A guarded shmq segment first, so the handler is installed.
    let t = Target::Posix(args[0].clone());
    let _seg = Segment::create(&t, 8192, 0o600).unwrap();
    let _ = t.unlink();
    let path = std::path::PathBuf::from(&args[1]);
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.set_len(8192).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of our own file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    } as *const u8;
    assert_ne!(p as *mut libc::c_void, libc::MAP_FAILED);
    f.set_len(0).unwrap();
    let _ = std::fs::remove_file(&path);
    report("touching");
    // SAFETY: inside our mapping; the page is gone, so this raises SIGBUS.
    let b = unsafe { p.add(4096).read_volatile() };
    report(format_args!("survived a foreign SIGBUS (read {b})"));
}

// ---- parent ----

/// A child process of this test binary, killed on drop.
struct Kid {
    child: Child,
    role: &'static str,
    out: Option<std::thread::JoinHandle<String>>,
}

impl Kid {
    fn spawn(role: &'static str, args: &[String], guard_off: bool) -> Kid {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "__child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ROLE_ENV, role)
        .env(ARGS_ENV, args.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if guard_off {
            cmd.env("SHMQ_SIGBUS_GUARD", "0");
        }
        let mut child = cmd.spawn().expect("spawn child");
        let mut stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        Kid {
            child,
            role,
            out: Some(out),
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits at most `timeout`; kills it if it does not exit. Returns the
    /// status (None: killed) and its RESULT lines.
    fn finish(&mut self, timeout: Duration) -> (Option<ExitStatus>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.exited() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = self
            .out
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        let results = out
            .lines()
            .filter_map(|l| l.strip_prefix("RESULT "))
            .map(String::from)
            .collect();
        (status, results)
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_of(s: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    s.signal()
}

/// A segment the parent creates for one try; dropped before truncating.
enum Made {
    Queue(Box<Queue>),
    Log(Log),
}

impl Made {
    fn attached(&self) -> Vec<u32> {
        let list = match self {
            Made::Queue(q) => q.attached(),
            Made::Log(l) => l.attached(),
        };
        list.into_iter()
            .filter(|a| a.alive)
            .map(|a| a.pid)
            .collect()
    }
    fn params(&self) -> shmq::layout::Params {
        *match self {
            Made::Queue(q) => q.params(),
            Made::Log(l) => l.params(),
        }
    }
}

/// Small xorshift for the truncation's timing.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The parent's loop: `tries` segments, each truncated under a writer and
/// a reader child. Returns nothing; asserts at the end.
fn run(kind: &str, backing: &str) {
    let tries = tries();
    let base = unique(&format!("trunc-{kind}-{backing}"));
    let roles: [&'static str; 2] = if kind == "queue" {
        ["queue-producer", "queue-consumer"]
    } else {
        ["log-publisher", "log-subscriber"]
    };
    let args = |first: u64| {
        vec![
            backing.to_owned(),
            base.clone(),
            first.to_string(),
            tries.to_string(),
        ]
    };
    let mut kids: Vec<Kid> = roles
        .iter()
        .map(|r| Kid::spawn(r, &args(0), false))
        .collect();
    let mut deaths = Vec::new();
    let mut results = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let started = Instant::now();
    for i in 0..tries {
        let target = Guard(target_of(backing, &base, i));
        let made = if kind == "queue" {
            let spsc = i % 2 == 1;
            Made::Queue(Box::new(
                Queue::create(&target, &QueueConfig::new(64, 256).spsc(spsc)).unwrap(),
            ))
        } else {
            Made::Log(Log::create(&target, &LogConfig::new(64, 256)).unwrap())
        };
        // Both children attached (replacing any that died).
        let deadline = Instant::now() + PATIENCE;
        loop {
            for k in kids.iter_mut() {
                if let Some(status) = k.exited() {
                    let (_, lines) = k.finish(Duration::ZERO);
                    results.extend(lines);
                    eprintln!("{kind}/{backing} try {i}: {} exited: {status}", k.role);
                    deaths.push((i, k.role, status));
                    *k = Kid::spawn(k.role, &args(i), false);
                }
            }
            let attached = made.attached();
            if kids.iter().all(|k| attached.contains(&k.child.id())) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind}/{backing} try {i}: children did not attach"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let p = made.params();
        drop(made);
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 3000));
        let middle = p.slots_offset + p.capacity / 2 * p.slot_stride as u64;
        let size = match i % 3 {
            0 => 0,
            1 => middle,
            _ => middle + 100, // not on a page boundary
        };
        std::fs::File::options()
            .write(true)
            .open(path_of(&target))
            .unwrap()
            .set_len(size)
            .unwrap();
        drop(target); // unlinked; the children keep their mappings
    }
    let mut failed = Vec::new();
    for k in kids.iter_mut() {
        let (status, lines) = k.finish(PATIENCE + Duration::from_secs(5));
        results.extend(lines);
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                deaths.push((tries, k.role, s));
            }
            None => failed.push(format!("{} hung", k.role)),
        }
    }
    let sum = |key: &str| -> u64 {
        results
            .iter()
            .flat_map(|l| l.split_whitespace())
            .filter_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.parse::<u64>().unwrap())
            .sum()
    };
    let sigbus = deaths
        .iter()
        .filter(|(_, _, s)| signal_of(s) == Some(libc::SIGBUS))
        .count();
    eprintln!(
        "truncation {kind}/{backing}: tries={tries} children=2 deaths={} (SIGBUS {sigbus}) \
         op_corrupt={} (other detail {}) query_only={} missed={} rescued={} in {:.1?}",
        deaths.len(),
        sum("op_corrupt"),
        sum("other_detail"),
        sum("query_only"),
        sum("missed"),
        sum("rescued"),
        started.elapsed()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(deaths.is_empty(), "children died: {deaths:?}");
    assert_eq!(sum("missed"), 0, "a child never saw its segment truncated");
    assert_eq!(sum("op_corrupt") + sum("query_only"), 2 * tries);
    assert!(
        sum("rescued") > 0,
        "no SIGBUS was rescued: the test did not test"
    );
    if require_corrupt() {
        assert_eq!(sum("query_only"), 0, "an operation did not return Corrupt");
        assert_eq!(
            sum("other_detail"),
            0,
            "a Corrupt did not name the truncation"
        );
    }
}

#[test]
fn queue_posix() {
    run("queue", "posix");
}

#[test]
fn queue_file() {
    run("queue", "file");
}

#[test]
fn log_posix() {
    run("log", "posix");
}

#[test]
fn log_file() {
    run("log", "file");
}

/// Without the guard the same truncation kills: the test above tests something.
#[test]
fn without_the_guard_a_truncation_kills() {
    let base = unique("trunc-control");
    let args = vec!["posix".into(), base.clone(), "0".into(), "1".into()];
    let mut kid = Kid::spawn("queue-producer", &args, true);
    let target = Guard(target_of("posix", &base, 0));
    let q = Queue::create(&target, &QueueConfig::new(64, 256)).unwrap();
    assert!(common::wait_until(PATIENCE, || q
        .attached()
        .iter()
        .any(|a| a.pid == kid.child.id())));
    drop(q);
    std::fs::File::options()
        .write(true)
        .open(path_of(&target))
        .unwrap()
        .set_len(0)
        .unwrap();
    let (status, _) = kid.finish(PATIENCE);
    let status = status.expect("the child exits");
    assert_eq!(signal_of(&status), Some(libc::SIGBUS), "{status}");
}

/// A SIGBUS outside shmq's mappings is passed on: here to the default
/// action (through Rust's own handler), which kills.
#[test]
fn a_foreign_sigbus_still_kills() {
    let name = unique("trunc-foreign");
    let path = std::env::temp_dir().join(unique("trunc-foreign-file"));
    let _cleanup = (
        Guard(Target::Posix(name.clone())),
        Guard(Target::File(path.clone())),
    );
    let mut kid = Kid::spawn("foreign-fault", &[name, path.display().to_string()], false);
    let (status, lines) = kid.finish(PATIENCE);
    let status = status.expect("the child exits");
    assert_eq!(lines, ["touching"], "{status}");
    assert_eq!(signal_of(&status), Some(libc::SIGBUS), "{status}");
}

/// Threads of one process faulting on one mapping at once all survive; the
/// mapping is replaced once.
#[test]
fn threads_faulting_together_survive() {
    let target = common::posix("trunc-threads");
    let seg = Segment::create(&target, 64 * 4096, 0o600).unwrap();
    assert_eq!(seg.protection(), Protection::Guarded);
    let (base, len) = (seg.as_ptr() as usize, seg.len());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let stop = &stop;
            s.spawn(move || {
                let mut i = t;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let off = (i * 4096 + 8) % len;
                    // SAFETY: inside the mapping, which outlives the scope;
                    // a truncated page is rescued by the guard.
                    unsafe { ((base + off) as *mut u64).write_volatile(i as u64) };
                    i += 7;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(20));
        std::fs::File::options()
            .write(true)
            .open(path_of(&target))
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert!(common::wait_until(PATIENCE, || seg.truncated().is_some()));
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let t = seg.truncated().unwrap();
    assert_eq!(t.size(), Some(4096));
    assert_eq!(
        t.to_string(),
        format!("segment truncated to 4096 bytes ({len} mapped)")
    );
    let e: SendError = t.into();
    assert!(matches!(e, SendError::Corrupt { ref detail } if detail.contains("truncated to 4096")));
}

/// Which backings are protected: POSIX and file guarded, SysV cannot shrink.
#[test]
fn protection_by_backing() {
    for target in common::all_backings("trunc-prot") {
        let seg = Segment::create(&target, 4096, 0o600).unwrap();
        let want = match &*target {
            Target::SysV(_) => Protection::NotTruncatable,
            _ => Protection::Guarded,
        };
        assert_eq!(seg.protection(), want, "{}", *target);
        assert_eq!(seg.truncated(), None);
    }
    assert!(shmq::segment::guard_active());
}
