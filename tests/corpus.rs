//! The regression corpus of untrusted segments (issue 9): each file
//! `tests/corpus/NAME.case` describes one hostile or broken segment image
//! `NAME.bin` and what must come of it. Each image is copied to a fresh file
//! target in the temporary directory and replayed through every operation,
//! once through the Rust API and once through the C API, by a C program
//! (`ffi/c/corpus_replay.c`, built here against this build's libshmq.so). Whatever the image, every
//! operation must return, within its time budget, without a panic: a clean
//! result or an error (`Corrupt` where the segment is nonsense).
//!
//! A `.case` file holds `key: value` lines:
//! - `image: NAME.bin` the segment's bytes;
//! - `extend: total_size` extends the copy (sparse) to the size its header
//!   claims, so small images stand for huge segments;
//! - `lock: live-foreign` sets a log's cursor-table lock word to pid 1 (alive,
//!   not a shmq user) at replay time;
//! - `open: ok | corrupt | not-ready | any` what opening it must give;
//! - `known-failing: REASON` the case still fails in the engine: it is
//!   replayed only by the ignored test `known_failing_cases_still_fail_cleanly`;
//! - `issue: N.M`, `note: ...` free text.
//!
//! `SHMQ_CORPUS_WRITE=1 cargo test --release --test corpus -- --ignored
//! write_corpus` regenerates the images (they are committed).

#[allow(unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use shmq::inspect::{probe, Inspector};
use shmq::layout::HEADER_SIZE;
use shmq::{Error, Log, LogConfig, LogMode, Queue, QueueConfig, Start, Target};

/// The most a whole case may take, every operation included.
const CASE_BUDGET: Duration = Duration::from_secs(20);
/// Timeout given to blocking operations.
const TINY: Duration = Duration::from_millis(5);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

/// One `.case` file.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Case {
    fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).expect("tests/corpus exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "case") {
            let text = std::fs::read_to_string(&path).unwrap();
            let fields = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| {
                    let (k, v) = l.split_once(':').expect("key: value");
                    (k.trim().to_owned(), v.trim().to_owned())
                })
                .collect();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            out.push(Case { name, fields });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 10, "the corpus has only {} cases", out.len());
    out
}

/// A copy of the case's image at a fresh file target, removed on drop.
fn materialise(case: &Case) -> common::Guard {
    let target = common::file(&format!("corpus-{}", case.name));
    let Target::File(path) = &target.0 else {
        unreachable!()
    };
    let image = std::fs::read(corpus_dir().join(case.get("image").expect("image:"))).unwrap();
    std::fs::write(path, &image).unwrap();
    if case.get("extend") == Some("total_size") {
        let total = u64::from_le_bytes(image[56..64].try_into().unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(total)
            .unwrap();
    }
    if case.get("lock") == Some("live-foreign") {
        let aux = u64::from_le_bytes(image[80..88].try_into().unwrap());
        let start = shmq::liveness::start_time(1).expect("pid 1 runs");
        let word = 1u64 << 32 | (start & 0xffff_ffff);
        let seg = shmq::Segment::open(&target).unwrap();
        assert!(aux as usize + 8 <= seg.len());
        // SAFETY: in bounds (checked); no handle uses the copy yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                word.to_le_bytes().as_ptr(),
                seg.as_ptr().add(aux as usize),
                8,
            )
        };
    }
    target
}

/// What opening gave, as the manifest spells it.
fn open_outcome(r: &Result<(), Error>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(Error::Corrupt { .. }) => "corrupt",
        Err(Error::NotReady { .. }) => "not-ready",
        Err(Error::Incompatible { .. }) => "incompatible",
        Err(Error::VersionMismatch { .. }) => "version",
        Err(_) => "other",
    }
}

/// Every Rust operation on the segment at `target`; returns what opening
/// it as its own kind gave.
fn replay_rust(target: &Target) -> &'static str {
    let mut buf = vec![0u8; 1 << 16];
    if let Ok(shmq::inspect::Probe::Shmq(view)) = probe(target) {
        let _ = (view.counters(), view.queue_stats(), view.sleeping_slots());
        let _ = (
            view.attached(),
            view.aux_table().len(),
            view.creator_alive(),
        );
    }
    let inspected = Inspector::open(target).map(|_| ());
    let mut opened = Err(Error::Corrupt {
        detail: String::new(),
    });
    match Queue::open(target) {
        Ok(q) => {
            opened = Ok(());
            let _ = (q.len(), q.stats(), q.is_empty(), q.attached());
            for _ in 0..3 {
                let _ = q.enqueue_try(b"corpus");
                let _ = q.dequeue_try(&mut buf);
                let _ = q.enqueue_shift(b"shift");
            }
            let _ = q.enqueue_block(b"block", Some(TINY));
            let _ = q.dequeue_block(&mut buf, Some(TINY));
            q.close();
            let _ = (q.len(), q.stats(), q.dequeue_try(&mut buf));
        }
        Err(Error::Incompatible { .. }) => {}
        Err(e) => opened = Err(e),
    }
    match Log::open(target) {
        Ok(log) => {
            opened = Ok(());
            let _ = (log.stats(), log.cursors(), log.next_seq(), log.attached());
            let _ = log.publish(b"corpus");
            for start in [Start::Oldest, Start::Latest] {
                if let Ok(mut sub) = log.subscribe(start) {
                    let _ = sub.recv_try(&mut buf);
                    let _ = sub.recv_block(&mut buf, Some(TINY));
                    let _ = (sub.position(), sub.lag());
                }
            }
            let _ = log.create_cursor("corpus", Start::Oldest);
            if let Ok(mut sub) = log.subscribe_named("corpus", Start::Oldest) {
                let _ = sub.recv_try(&mut buf);
                let _ = (sub.commit(), sub.rollback());
            }
            let _ = log.publish_block(b"block", Some(TINY));
            log.close();
            let _ = log.stats();
        }
        Err(Error::Incompatible { .. }) => {}
        Err(e) => opened = Err(e),
    }
    // What opens can be inspected.
    if opened.is_ok() {
        assert!(inspected.is_ok(), "opened, but inspect gave {inspected:?}");
    }
    open_outcome(&opened)
}

/// The C replay program (`ffi/c/corpus_replay.c`), built once per run.
fn replay_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let lib = common::native::lib_dir();
        common::native::build_c("corpus_replay", "corpus_replay", &lib)
    })
}

/// Every C API call on the segment at `target`, in a process of its own
/// (ffi/c/corpus_replay.c); returns the `shmq_status` that opening gave.
/// The process is killed if it overruns the case's budget: a hang fails.
fn replay_c(target: &Target) -> Result<i32, String> {
    let mut child = Command::new(replay_program())
        .arg(target.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the C replay: {e}"))?;
    let deadline = Instant::now() + CASE_BUDGET;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the C replay still ran after {CASE_BUDGET:?} (a hang)"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut out = String::new();
    let mut err = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut out);
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    if !status.success() {
        return Err(format!("the C replay failed ({status}): {err}"));
    }
    out.trim()
        .strip_prefix("open ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the C replay printed {out:?}"))
}

/// Replays one case through Rust and C on its own thread; fails on a panic
/// or when the case overruns its budget. Returns what opening gave.
fn replay(case: &Case) -> Result<&'static str, String> {
    let (tx, rx) = mpsc::channel();
    let case2 = case.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let target = materialise(&case2);
            let rust = replay_rust(&target);
            drop(target);
            let target = materialise(&case2);
            let c = replay_c(&target).unwrap_or_else(|e| panic!("{e}"));
            // Unlink checks what it removes: never refuses a segment that
            // opened, and removes nothing of shmq's unchecked.
            if rust == "ok" {
                target.unlink().expect("a usable segment is shmq's");
            }
            (rust, c)
        }));
        let _ = tx.send(r.map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into())
        }));
    });
    match rx.recv_timeout(CASE_BUDGET) {
        Err(_) => Err(format!("still running after {CASE_BUDGET:?} (a hang)")),
        Ok(Err(panic)) => Err(format!("panicked: {panic}")),
        Ok(Ok((rust, c))) => {
            // The values of shmq_status are fixed (include/shmq.h).
            let c_word = match c {
                0 => "ok",
                10 => "corrupt",
                16 => "not-ready",
                9 => "incompatible",
                15 => "version",
                _ => "other",
            };
            let expected = case.get("open").unwrap_or("any");
            if expected != "any" && c_word != rust {
                return Err(format!(
                    "Rust open gave {rust}, C gave status {c} ({c_word})"
                ));
            }
            if expected != "any" && expected != rust {
                return Err(format!("open gave {rust}, the manifest says {expected}"));
            }
            eprintln!("{}: {rust} in {:?}", case.name, started.elapsed());
            Ok(rust)
        }
    }
}

#[test]
fn every_corpus_case_returns_cleanly_through_rust_and_c() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for case in cases() {
        if let Some(why) = case.get("known-failing") {
            eprintln!("{}: skipped, known failing: {why}", case.name);
            continue;
        }
        replayed += 1;
        if let Err(e) = replay(&case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(replayed >= 8, "only {replayed} cases replayed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "replays the cases that still fail in the engine (see `known-failing:` in tests/corpus); run it to check a fix"]
fn known_failing_cases_still_fail_cleanly() {
    let mut failures = Vec::new();
    for case in cases() {
        if case.get("known-failing").is_some() {
            if let Err(e) = replay(&case) {
                failures.push(format!("{}: {e}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 9.3: a header claiming 2^30 slots over a sparse file is inspected
/// in bounded time and memory.
#[test]
fn inspecting_a_sparse_segment_of_2_pow_30_slots_is_bounded() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "huge-capacity-sparse")
        .expect("the corpus has huge-capacity-sparse");
    let target = materialise(&case);
    let rss_before = rss_kib();
    let started = Instant::now();
    let view = Inspector::open(&target).expect("a valid header");
    assert_eq!(view.params().capacity, 1 << 30);
    let scan = view.sleeping_slots().unwrap();
    let _ = (view.queue_stats(), view.attached(), view.aux_table());
    let took = started.elapsed();
    let grew = rss_kib().saturating_sub(rss_before);
    assert!(
        scan.bounded() && scan.scanned <= shmq::inspect::SCAN_LIMIT,
        "{scan:?}"
    );
    assert!(took < Duration::from_millis(100), "took {took:?}");
    assert!(grew < 64 * 1024, "resident memory grew by {grew} KiB");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Issue 9.8: a checked unlink leaves what is not shmq's, in every backing.
#[test]
fn unlink_leaves_what_is_not_shmqs_in_every_backing() {
    for target in common::all_backings("unlink-foreign") {
        drop(shmq::Segment::create(&target, 16 << 10, 0o600).unwrap());
        let seg = shmq::Segment::open(&target).unwrap();
        // SAFETY: 16 KiB segment, ours alone; we write its first 16 bytes.
        unsafe { std::ptr::copy_nonoverlapping(b"NOT A SHMQ QUEUE".as_ptr(), seg.as_ptr(), 16) };
        drop(seg);
        let r = target.unlink();
        assert!(
            matches!(&r, Err(Error::Corrupt { detail }) if detail.contains("left in place")),
            "{}: {r:?}",
            target.0
        );
        assert!(target.exists(), "{}: removed", target.0);
        target.unlink_force().unwrap();
        assert!(!target.exists());
    }
    // Zeros of a size no creator makes: not shmq's either.
    let zeros = common::posix("unlink-zeros");
    drop(shmq::Segment::create(&zeros, 5000, 0o600).unwrap());
    assert!(matches!(zeros.unlink(), Err(Error::Corrupt { .. })));
    // A half-created segment (sized, header not yet published) is shmq's.
    let half = common::sysv();
    let p =
        shmq::layout::Params::new(shmq::layout::QueueKind::WorkQueue, 64, 8, 0, 0, 0o600).unwrap();
    drop(shmq::Segment::create(&half, p.total_size as usize, 0o600).unwrap());
    half.unlink()
        .expect("a segment whose creator never finished is removable");
    // A just-created empty file too (a creator that has not sized it yet).
    let empty = common::file("unlink-empty");
    let Target::File(path) = &empty.0 else {
        unreachable!()
    };
    std::fs::write(path, b"").unwrap();
    empty
        .unlink()
        .expect("a fresh empty file is a creator at work");
}

/// Issue 9.9: what is not a segment is refused at once, never waited for.
#[test]
fn opening_what_is_not_a_segment_does_not_wait() {
    let dev_null = Target::File("/dev/null".into());
    let started = Instant::now();
    let r = Queue::open(&dev_null);
    assert!(
        matches!(&r, Err(Error::Corrupt { detail }) if detail.contains("regular file")),
        "{r:?}"
    );
    let text = common::file("text");
    let Target::File(path) = &text.0 else {
        unreachable!()
    };
    std::fs::write(path, vec![b'x'; 20_000]).unwrap();
    assert!(matches!(Queue::open(&text), Err(Error::Corrupt { .. })));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Zeros of a size no creator makes.
    let seg = shmq::Segment::heap(10_000);
    assert!(matches!(
        shmq::segment::classify_uninitialised(&seg),
        shmq::segment::Uninitialised::Foreign { .. }
    ));
}

/// Issue 9.9: an empty file, or zeros of a creator's size, left untouched
/// for longer than a creator takes: no wait, no advice to remove it.
#[test]
fn stale_unpublished_segments_are_told_apart_without_waiting() {
    let empty = common::file("stale-empty");
    let zeros = common::file("stale-zeros");
    let (Target::File(pe), Target::File(pz)) = (&empty.0, &zeros.0) else {
        unreachable!()
    };
    std::fs::write(pe, b"").unwrap();
    std::fs::write(pz, vec![0u8; shmq::segment::MIN_SEGMENT_SIZE]).unwrap();
    std::thread::sleep(shmq::segment::STALE_AFTER + Duration::from_millis(200));
    let started = Instant::now();
    let r = Queue::open(&empty);
    assert!(
        matches!(&r, Err(Error::Corrupt { detail }) if detail.contains("empty")),
        "{r:?}"
    );
    let msg = r.unwrap_err().to_string();
    assert!(!msg.contains("remove"), "{msg}");
    let seg = shmq::Segment::open(&zeros).unwrap();
    assert!(matches!(
        shmq::segment::classify_uninitialised(&seg),
        shmq::segment::Uninitialised::Abandoned { .. }
    ));
    let r = Inspector::open(&zeros);
    assert!(matches!(r, Err(Error::NotReady { .. })), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The old empty file is not shmq's; the abandoned zeros are.
    assert!(matches!(empty.unlink(), Err(Error::Corrupt { .. })));
    drop(seg);
    zeros.unlink().unwrap();
}

// ---- writing the corpus ----

const TAIL: usize = 128;
const HEAD: usize = 256;
const PRODUCER: usize = 400;

fn put(image: &mut [u8], off: usize, bytes: &[u8]) {
    image[off..off + bytes.len()].copy_from_slice(bytes);
}

fn reseal(image: &mut [u8]) {
    let sum = shmq::layout::checksum(&image[..HEADER_SIZE]);
    put(image, 96, &sum.to_le_bytes());
}

/// A fresh queue (or log) image after `fill` has run on it.
fn image_of(kind: &str, fill: impl FnOnce(&Target)) -> Vec<u8> {
    let target = common::file("corpus-gen");
    match kind {
        "queue" => drop(Queue::create(&target, &QueueConfig::new(16, 4)).unwrap()),
        "spsc" => drop(Queue::create(&target, &QueueConfig::new(16, 4).spsc(true)).unwrap()),
        "log" => drop(Log::create(&target, &LogConfig::new(16, 4).cursors(3)).unwrap()),
        "reliable" => drop(
            Log::create(
                &target,
                &LogConfig::new(16, 4).mode(LogMode::Reliable).cursors(3),
            )
            .unwrap(),
        ),
        _ => unreachable!(),
    }
    fill(&target);
    let Target::File(path) = &target.0 else {
        unreachable!()
    };
    std::fs::read(path).unwrap()
}

fn two_messages(t: &Target) {
    if let Ok(q) = Queue::open(t) {
        q.enqueue_try(b"one").unwrap();
        q.enqueue_try(b"two").unwrap();
    } else {
        let log = Log::open(t).unwrap();
        log.publish(b"one").unwrap();
        log.publish(b"two").unwrap();
    }
}

#[test]
#[ignore = "writes tests/corpus; run with SHMQ_CORPUS_WRITE=1 to regenerate"]
fn write_corpus() {
    if std::env::var_os("SHMQ_CORPUS_WRITE").is_none() {
        return;
    }
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, image: &[u8], manifest: &str| {
        std::fs::write(dir.join(format!("{name}.bin")), image).unwrap();
        std::fs::write(
            dir.join(format!("{name}.case")),
            format!("image: {name}.bin\n{manifest}"),
        )
        .unwrap();
    };
    let max = u64::MAX.to_le_bytes();
    let max1 = (u64::MAX - 1).to_le_bytes();

    write(
        "valid-queue",
        &image_of("queue", two_messages),
        "open: ok\nnote: a valid queue holding two messages (the baseline)\n",
    );
    write(
        "valid-log",
        &image_of("reliable", |t| {
            let log = Log::open(t).unwrap();
            log.create_cursor("billing", Start::Oldest).unwrap();
            log.publish(b"one").unwrap();
        }),
        "open: ok\nnote: a valid reliable log with one named cursor\n",
    );

    let mut i = image_of("spsc", two_messages);
    put(&mut i, HEAD, &max);
    write(
        "spsc-head-max",
        &i,
        "open: ok\nissue: 9.2\nnote: SPSC head = 2^64-1\n",
    );
    let mut i = image_of("spsc", two_messages);
    put(&mut i, TAIL, &max1);
    write(
        "spsc-tail-max",
        &i,
        "open: ok\nissue: 9.2\nnote: SPSC tail = 2^64-2\n",
    );
    let mut i = image_of("queue", two_messages);
    put(&mut i, TAIL, &max);
    write(
        "mpmc-tail-max",
        &i,
        "open: ok\nissue: 9.2\nnote: MPMC tail = 2^64-1\n",
    );
    let mut i = image_of("log", two_messages);
    put(&mut i, TAIL, &max);
    write(
        "log-tail-max",
        &i,
        "open: ok\nissue: 9.2\nnote: log tail = 2^64-1\n",
    );
    let mut i = image_of("log", two_messages);
    put(&mut i, TAIL, &max1);
    write(
        "log-tail-max-1",
        &i,
        "open: ok\nissue: 9.2\nnote: log tail = 2^64-2\n",
    );

    // 2^30 slots over a sparse file: the header and process table only.
    let p = shmq::layout::Params::new(shmq::layout::QueueKind::WorkQueue, 48, 1 << 30, 0, 0, 0o600)
        .unwrap();
    let mut i = image_of("queue", |_| {});
    i.truncate(shmq::segment::MIN_SEGMENT_SIZE - 128);
    put(&mut i, 24, &p.capacity.to_le_bytes());
    put(&mut i, 56, &p.total_size.to_le_bytes());
    put(&mut i, 16, &48u32.to_le_bytes());
    put(&mut i, 20, &p.slot_stride.to_le_bytes());
    reseal(&mut i);
    write("huge-capacity-sparse", &i, "extend: total_size\nopen: ok\nissue: 9.3\nnote: a valid header claiming 2^30 slots over a sparse 64 GiB file\n");

    let mut i = image_of("spsc", two_messages);
    put(&mut i, PRODUCER, &(0xffff_ffffu64 << 32 | 7).to_le_bytes());
    write(
        "spsc-role-pid-ffffffff",
        &i,
        "open: ok\nissue: 9.4\nnote: the producer role names pid 0xffffffff (kill(-1, 0))\n",
    );

    let mut i = image_of("queue", two_messages);
    put(&mut i, HEAD, &7u64.to_le_bytes());
    write(
        "mpmc-head-past-tail",
        &i,
        "open: ok\nissue: 9.5\nnote: MPMC head 7 > tail 2\n",
    );

    let mut i = image_of("log", |t| {
        Log::open(t)
            .unwrap()
            .create_cursor("ZZZZZZZZ", Start::Oldest)
            .unwrap();
    });
    let at = i
        .windows(8)
        .position(|w| w == b"ZZZZZZZZ")
        .expect("the name in the table");
    put(&mut i, at, b"\x1b[2J\x1b]0;");
    write(
        "log-cursor-ansi-name",
        &i,
        "open: ok\nissue: 9.6\nnote: a cursor name holding ANSI escapes\n",
    );

    write("log-foreign-table-lock", &image_of("log", two_messages), "lock: live-foreign\nopen: ok\nissue: 9.7\nnote: the cursor-table lock names pid 1, alive and unrelated\n");

    write(
        "empty",
        b"",
        "open: any\nissue: 9.9\nnote: an empty file (fresh: waited for; stale: Corrupt at once)\n",
    );
    write(
        "text-file",
        &b"hello, this is not a queue\n".repeat(400),
        "open: corrupt\nissue: 9.8/9.9\nnote: a text file\n",
    );
    write(
        "zeros-4k",
        &[0u8; 4096],
        "open: corrupt\nissue: 9.9\nnote: zeros, smaller than any segment\n",
    );
    write("zeros-min-size", &vec![0u8; shmq::segment::MIN_SEGMENT_SIZE], "open: not-ready\nissue: 9.9\nnote: zeros of a size a creator makes: waited for (2 s), then not ready\n");

    let mut i = image_of("queue", two_messages);
    i[16] ^= 0x40;
    write(
        "bad-checksum",
        &i,
        "open: corrupt\nnote: one header bit flipped\n",
    );
    let mut i = image_of("queue", two_messages);
    let slots = 9216;
    for (k, b) in i[slots..].iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(37) ^ 0xa5;
    }
    write(
        "slot-garbage",
        &i,
        "open: ok\nnote: a valid header over slots of noise\n",
    );
    let mut i = image_of("queue", two_messages);
    put(&mut i, slots + 8, &u32::MAX.to_le_bytes());
    write(
        "slot-len-max",
        &i,
        "open: ok\nnote: the first message's length = 2^32-1\n",
    );
    let mut i = image_of("log", two_messages);
    put(&mut i, 520, &max.clone());
    put(&mut i, 528, &max);
    write(
        "log-stats-max",
        &i,
        "open: ok\nissue: 9.2\nnote: a log's tombstone and lagged counters = 2^64-1\n",
    );
    let mut i = image_of("queue", two_messages);
    put(&mut i, 1024 + 8, &max);
    put(&mut i, 1024, &std::process::id().to_le_bytes());
    write(
        "proc-table-garbage",
        &i,
        "open: any\nnote: a process-table entry with a start time of 2^64-1\n",
    );
}
