//! Segments, for each backing (SysV, POSIX, file) where it applies: create
//! never touches an existing queue, open never creates, open_or_create checks
//! the parameters, mode bits, unlink, and untrusted segments (bad magic,
//! other versions, crafted or truncated headers, foreign bytes, half-created
//! segments): each gives its own clear error, never a panic or a hang.

mod common;

use std::mem::offset_of;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{report, Guard, Proc};
use shmq::layout::{self, Header, Params, QueueKind, HEADER_SIZE, LAYOUT_VERSION};
use shmq::{Error, Queue, QueueConfig, RecvError, Segment, SendError, Target};

common::child_roles! {
    "reader" => reader,
    "echo" => echo,
    "racer" => racer,
}

/// Child: args = target, id. `open_or_create` at the same moment as its
/// siblings, then enqueues its id.
fn racer(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let q = Queue::open_or_create(&target, &config())
        .unwrap_or_else(|e| panic!("racer {}: {e}", args[1]));
    q.enqueue_try(args[1].as_bytes()).expect("racer enqueues");
    report("ok");
}

/// Child: args = target. Opens the queue and reports every message in it
/// (`msg TEXT`), then `empty`.
fn reader(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let q = Queue::open(&target).expect("reader opens the queue");
    let mut buf = vec![0u8; q.slot_size()];
    loop {
        match q.dequeue_try(&mut buf) {
            Ok(n) => report(format!("msg {}", String::from_utf8_lossy(&buf[..n]))),
            Err(RecvError::Empty) => break,
            Err(e) => panic!("reader: {e}"),
        }
    }
    report("empty");
}

/// Child: args = target. Opens the queue, waits (10 s at most) for one
/// message, then enqueues `echo:MESSAGE` and exits.
fn echo(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let q = Queue::open(&target).expect("echo opens the queue");
    let mut buf = vec![0u8; q.slot_size()];
    let n = q
        .dequeue_block(&mut buf, Some(Duration::from_secs(10)))
        .expect("echo gets a message");
    let reply = format!("echo:{}", String::from_utf8_lossy(&buf[..n]));
    q.enqueue_try(reply.as_bytes()).expect("echo replies");
    report("replied");
}

fn each_backing(tag: &str, mut f: impl FnMut(&Guard)) {
    for target in common::all_backings(tag) {
        f(&target);
    }
}

fn config() -> QueueConfig {
    QueueConfig::new(64, 8)
}

/// The detail of a `Corrupt` error, or a panic naming what came instead.
fn corrupt_detail<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::Corrupt { detail }) => detail,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Writes `bytes` at `offset` of the segment at `target` (no queue handle
/// involved: the raw mapping, as another program could).
fn poke(target: &Target, offset: usize, bytes: &[u8]) {
    let seg = Segment::open(target).unwrap();
    assert!(offset + bytes.len() <= seg.len());
    // SAFETY: the range lies inside the mapping (checked above); no queue
    // handle is using the segment while a test rewrites it.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.as_ptr().add(offset), bytes.len()) };
}

/// A copy of the header bytes of the segment at `target`.
fn peek_header(target: &Target) -> Vec<u8> {
    let seg = Segment::open(target).unwrap();
    assert!(seg.len() >= HEADER_SIZE);
    // SAFETY: HEADER_SIZE bytes lie inside the mapping (checked above).
    unsafe { std::slice::from_raw_parts(seg.as_ptr(), HEADER_SIZE) }.to_vec()
}

/// Rewrites the header's checksum so that crafted fields pass it.
fn reseal(target: &Target) {
    let sum = layout::checksum(&peek_header(target));
    poke(target, offset_of!(Header, checksum), &sum.to_le_bytes());
}

/// Where the bytes of a POSIX or file target live in the file system.
fn path_of(target: &Target) -> Option<PathBuf> {
    match target {
        Target::SysV(_) => None,
        Target::Posix(name) => Some(PathBuf::from(format!("/dev/shm/{name}"))),
        Target::File(path) => Some(path.clone()),
    }
}

/// The permission bits of the segment at `target`.
fn mode_of(target: &Target) -> u32 {
    match target {
        Target::SysV(key) => {
            // SAFETY: plain syscalls; IPC_STAT fills a zeroed struct.
            unsafe {
                let id = libc::shmget(*key, 0, 0);
                assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
                let mut ds: libc::shmid_ds = std::mem::zeroed();
                assert_eq!(libc::shmctl(id, libc::IPC_STAT, &mut ds), 0);
                ds.shm_perm.mode as u32 & 0o777
            }
        }
        _ => {
            std::fs::metadata(path_of(target).unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        }
    }
}

/// Pseudo-random bytes (xorshift64), never starting with a zero word.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    out[0] |= 1;
    out
}

// ---- create / open / open_or_create ----

#[test]
fn create_on_existing_target_fails_and_leaves_the_queue_intact() {
    each_backing("exists", |target| {
        let q = Queue::create(target, &config()).unwrap();
        q.enqueue_try(b"live-1").unwrap();
        q.enqueue_try(b"live-2").unwrap();
        let before = peek_header(target);
        for r in [
            Queue::create(target, &config()).map(drop),
            Queue::create(target, &QueueConfig::new(128, 64)).map(drop),
            Segment::create(target, 1 << 16, 0o600).map(drop),
        ] {
            assert!(
                matches!(r, Err(Error::AlreadyExists { .. })),
                "{}: {r:?}",
                target.0
            );
        }
        // Not a byte of the header changed, and a consumer in another
        // process still reads what was there.
        assert_eq!(peek_header(target), before);
        let mut child = Proc::spawn("reader", &[target.to_string()]);
        child.wait_ok(Duration::from_secs(30));
        assert_eq!(child.results(), ["msg live-1", "msg live-2", "empty"]);
        assert_eq!(q.stats().dequeued, 2);
    });
}

#[test]
fn create_on_a_foreign_file_leaves_it_untouched() {
    let target = common::file("foreign-file");
    let path = path_of(&target).unwrap();
    std::fs::write(&path, b"someone else's data").unwrap();
    let r = Queue::create(&target, &config());
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's data");
}

#[test]
fn open_of_a_missing_queue_is_not_found() {
    each_backing("missing", |target| {
        assert!(!target.exists());
        let r = Queue::open(target);
        assert!(
            matches!(r, Err(Error::NotFound { .. })),
            "{}: {r:?}",
            target.0
        );
        assert!(matches!(Segment::open(target), Err(Error::NotFound { .. })));
        // Removal is idempotent: nothing there is not an error.
        assert!(matches!(target.unlink(), Ok(())), "{}", target.0);
        assert!(matches!(target.unlink_force(), Ok(())), "{}", target.0);
        assert!(!target.exists(), "open must never create");
    });
}

#[test]
fn create_with_an_empty_path_or_a_missing_directory_says_which() {
    // An empty path names nothing: an invalid argument, not "not found".
    let r = "file:".parse::<Target>();
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
    let empty = Target::File(PathBuf::new());
    for r in [
        Queue::create(&empty, &config()).map(drop),
        Queue::open(&empty).map(drop),
        empty.unlink(),
    ] {
        match r {
            Err(e @ Error::InvalidArgument { .. }) => {
                assert!(e.to_string().contains("empty"), "{e}")
            }
            other => panic!("empty path: {other:?}"),
        }
    }
    // A missing directory: the error names it.
    let dir = std::env::temp_dir().join(common::unique("no-such-dir"));
    let inner = dir.join("sub");
    let target = Target::File(inner.join("q"));
    match Queue::create(&target, &config()) {
        Err(e @ Error::NotFound { .. }) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("directory {} ", inner.display())),
                "{text}"
            );
        }
        other => panic!("missing directory: {other:?}"),
    }
    assert!(!dir.exists(), "create made no directory");
    // Opening what is not there is plainly not found.
    assert!(matches!(
        Queue::open(&target),
        Err(Error::NotFound { target: t }) if t == target.to_string()
    ));
}

#[test]
fn open_or_create_creates_opens_or_reports_incompatible() {
    each_backing("ooc", |target| {
        let a = Queue::open_or_create(target, &config()).unwrap();
        a.enqueue_try(b"first").unwrap();
        // Same parameters: the same queue.
        let b = Queue::open_or_create(target, &config()).unwrap();
        assert_eq!(b.len(), 1);
        // Different slot size, capacity: Incompatible, naming what differs.
        for (cfg, what) in [
            (QueueConfig::new(128, 8), "slot size"),
            (QueueConfig::new(64, 16), "capacity"),
        ] {
            match Queue::open_or_create(target, &cfg) {
                Err(Error::Incompatible { detail }) => assert!(detail.contains(what), "{detail}"),
                other => panic!("{}: expected Incompatible, got {other:?}", target.0),
            }
        }
        // ... and the live queue is untouched.
        let mut buf = [0u8; 64];
        assert_eq!(b.dequeue_try(&mut buf), Ok(5));
        assert_eq!(&buf[..5], b"first");
    });
}

#[test]
fn concurrent_open_or_create_agrees_on_one_queue() {
    // Four processes race to open_or_create the same target: one creates,
    // the others wait for its header and open the same queue.
    each_backing("race", |target| {
        let mut racers: Vec<Proc> = (0..4)
            .map(|i| Proc::spawn("racer", &[target.to_string(), format!("r{i}")]))
            .collect();
        for r in &mut racers {
            r.wait_ok(Duration::from_secs(30));
            assert_eq!(r.results(), ["ok"]);
        }
        let q = Queue::open(target).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(n) = q.dequeue_try(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.sort();
        assert_eq!(got, ["r0", "r1", "r2", "r3"], "{}", target.0);
    });
}

// ---- untrusted headers ----

#[test]
fn bad_magic_is_corrupt() {
    each_backing("magic", |target| {
        drop(Queue::create(target, &config()).unwrap());
        poke(target, offset_of!(Header, magic), b"NOTSHMQ!");
        let detail = corrupt_detail(Queue::open(target));
        assert!(detail.contains("magic"), "{detail}");
    });
}

#[test]
fn future_layout_version_is_version_mismatch() {
    each_backing("version", |target| {
        drop(Queue::create(target, &config()).unwrap());
        poke(
            target,
            offset_of!(Header, layout_version),
            &(LAYOUT_VERSION + 1).to_le_bytes(),
        );
        // Whether or not the checksum was updated for it.
        for resealed in [false, true] {
            if resealed {
                reseal(target);
            }
            match Queue::open(target) {
                Err(Error::VersionMismatch { found, supported }) => {
                    assert_eq!((found, supported), (LAYOUT_VERSION + 1, LAYOUT_VERSION))
                }
                other => panic!("{}: expected VersionMismatch, got {other:?}", target.0),
            }
        }
    });
}

#[test]
fn header_claiming_more_slots_than_the_mapping_holds_is_corrupt() {
    each_backing("oversize", |target| {
        let q = Queue::create(target, &config()).unwrap();
        let p = *q.params();
        drop(q);
        // Twice the slots, with a total size that adds up and a correct
        // checksum: only the check against the real mapping size can catch it.
        let capacity = p.capacity * 2;
        let total = p.slots_offset + capacity * p.slot_stride as u64;
        poke(
            target,
            offset_of!(Header, capacity),
            &capacity.to_le_bytes(),
        );
        poke(target, offset_of!(Header, total_size), &total.to_le_bytes());
        // Without the checksum fixed up, the checksum catches it first.
        let detail = corrupt_detail(Queue::open(target));
        assert!(detail.contains("checksum"), "{detail}");
        reseal(target);
        let detail = corrupt_detail(Queue::open(target));
        assert!(
            detail.contains("mapping holds only"),
            "{}: {detail}",
            target.0
        );
    });
}

#[test]
fn crafted_headers_with_valid_checksums_are_rejected() {
    // Each crafted field, with the checksum made right, must fail its own check.
    let target = common::posix("crafted");
    let q = Queue::create(&target, &config()).unwrap();
    let p = *q.params();
    drop(q);
    let pristine = peek_header(&target);
    let u32b = |v: u32| v.to_le_bytes().to_vec();
    let u64b = |v: u64| v.to_le_bytes().to_vec();
    // (what is crafted, the (offset, bytes) written, what the error must say)
    type Case = (&'static str, Vec<(usize, Vec<u8>)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "unknown kind",
            vec![(offset_of!(Header, kind), u32b(99))],
            "unknown queue kind",
        ),
        (
            "stride",
            vec![(offset_of!(Header, slot_stride), u32b(p.slot_stride + 8))],
            "inconsistent",
        ),
        (
            "huge slot",
            vec![(offset_of!(Header, slot_size), u32b(u32::MAX))],
            "inconsistent",
        ),
        (
            "capacity 0",
            vec![(offset_of!(Header, capacity), u64b(0))],
            "out of range",
        ),
        (
            "capacity 1",
            vec![(offset_of!(Header, capacity), u64b(1))],
            "out of range",
        ),
        (
            "capacity huge",
            vec![(offset_of!(Header, capacity), u64b(u64::MAX))],
            "out of range",
        ),
        (
            "process table",
            vec![(offset_of!(Header, procs_offset), u64b(0))],
            "process table",
        ),
        (
            "process count",
            vec![(offset_of!(Header, procs_count), u32b(1 << 20))],
            "process table",
        ),
        (
            "slots offset",
            vec![(offset_of!(Header, slots_offset), u64b(0))],
            "do not add up",
        ),
        (
            "aux offset",
            vec![(offset_of!(Header, aux_offset), u64b(1 << 40))],
            "do not add up",
        ),
        (
            "aux count",
            vec![(offset_of!(Header, aux_count), u32b(u32::MAX))],
            "do not add up",
        ),
        (
            "total too small",
            vec![(offset_of!(Header, total_size), u64b(p.total_size - 1))],
            "do not add up",
        ),
        (
            "huge sizes",
            vec![
                (offset_of!(Header, slot_size), u32b(layout::MAX_SLOT_SIZE)),
                (
                    offset_of!(Header, slot_stride),
                    u32b(layout::slot_stride(layout::MAX_SLOT_SIZE)),
                ),
                (offset_of!(Header, capacity), u64b(layout::MAX_CAPACITY)),
                (offset_of!(Header, total_size), u64b(u64::MAX)),
            ],
            "do not add up",
        ),
    ];
    for (name, fields, want) in cases {
        poke(&target, 0, &pristine);
        for (off, bytes) in &fields {
            poke(&target, *off, bytes);
        }
        reseal(&target);
        let detail = corrupt_detail(Queue::open(&target));
        assert!(detail.contains(want), "{name}: {detail:?} lacks {want:?}");
    }
    // A valid segment of another kind is Incompatible, not Corrupt.
    poke(&target, 0, &pristine);
    poke(
        &target,
        offset_of!(Header, kind),
        &(QueueKind::Log as u32).to_le_bytes(),
    );
    reseal(&target);
    assert!(matches!(
        Queue::open(&target),
        Err(Error::Incompatible { .. })
    ));
    // Restored, it opens again: the test changed only what it meant to.
    poke(&target, 0, &pristine);
    Queue::open(&target).unwrap();
}

#[test]
fn truncated_segment_is_corrupt() {
    // Files and POSIX objects can be cut short behind a queue's back.
    for target in [common::file("truncated"), common::posix("truncated")] {
        let q = Queue::create(&target, &config()).unwrap();
        let p = *q.params();
        drop(q);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path_of(&target).unwrap())
            .unwrap();
        file.set_len(p.total_size - p.slot_stride as u64).unwrap();
        let detail = corrupt_detail(Queue::open(&target));
        assert!(
            detail.contains("mapping holds only"),
            "{}: {detail}",
            target.0
        );
        // Cut to less than a header: still Corrupt, with its own message.
        file.set_len(HEADER_SIZE as u64 - 1).unwrap();
        let detail = corrupt_detail(Queue::open(&target));
        assert!(
            detail.contains("smaller than a shmq header"),
            "{}: {detail}",
            target.0
        );
    }
}

#[test]
fn segment_smaller_than_a_header_is_corrupt() {
    each_backing("tiny", |target| {
        drop(Segment::create(target, 100, 0o600).unwrap());
        let detail = corrupt_detail(Queue::open(target));
        assert!(
            detail.contains("smaller than a shmq header"),
            "{}: {detail}",
            target.0
        );
    });
    // A plain file written by someone else, too.
    let target = common::file("tiny-file");
    std::fs::write(path_of(&target).unwrap(), [7u8; 100]).unwrap();
    let detail = corrupt_detail(Queue::open(&target));
    assert!(detail.contains("smaller than a shmq header"), "{detail}");
}

#[test]
fn foreign_segments_of_random_bytes_are_corrupt() {
    each_backing("foreign", |target| {
        let len = 64 << 10;
        drop(Segment::create(target, len, 0o600).unwrap());
        poke(target, 0, &noise(0x5eed, len));
        let detail = corrupt_detail(Queue::open(target));
        assert!(detail.contains("magic"), "{}: {detail}", target.0);
    });
    // Random headers that get past the magic (and past version and checksum)
    // are still rejected, without panicking.
    let target = common::posix("foreign-fuzz");
    let len = 64 << 10;
    drop(Segment::create(&target, len, 0o600).unwrap());
    for seed in 0..200u64 {
        let mut bytes = noise(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), HEADER_SIZE);
        bytes[..8].copy_from_slice(&layout::MAGIC.to_le_bytes());
        if seed % 2 == 0 {
            bytes[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
            let sum = layout::checksum(&bytes);
            bytes[96..104].copy_from_slice(&sum.to_le_bytes());
        }
        poke(&target, 0, &bytes);
        match Queue::open(&target) {
            Err(Error::Corrupt { .. }) | Err(Error::VersionMismatch { .. }) => {}
            other => panic!("seed {seed}: expected Corrupt or VersionMismatch, got {other:?}"),
        }
    }
}

#[test]
fn garbage_in_the_slots_gives_errors_not_panics_or_hangs() {
    // A valid header over slots full of noise: every call returns, within
    // its timeout, with a message or an error; none panics.
    each_backing("garbage", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 8)).unwrap();
        let p = *q.params();
        let slots = (p.total_size - p.slots_offset) as usize;
        poke(target, p.slots_offset as usize, &noise(0xbad, slots));
        let mut buf = [0u8; 32];
        let started = Instant::now();
        for _ in 0..100 {
            let _ = q.enqueue_try(b"x");
            let _ = q.dequeue_try(&mut buf);
            let _ = q.enqueue_shift(b"y");
        }
        let r = q.dequeue_block(&mut buf, Some(Duration::from_millis(20)));
        assert!(!matches!(r, Err(RecvError::Closed)), "{r:?}");
        let r = q.enqueue_block(b"z", Some(Duration::from_millis(20)));
        assert!(!matches!(r, Err(SendError::Closed)), "{r:?}");
        let _ = q.stats();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn half_created_segment_gives_not_ready_after_the_bounded_wait() {
    // The one test that sits through the whole wait (2 s): a segment whose
    // creator sized it but never published the header (magic still zero).
    let target = common::sysv();
    let params = Params::new(QueueKind::WorkQueue, 64, 8, 0, 0, 0o600).unwrap();
    let seg = Segment::create(&target, params.total_size as usize, 0o600).unwrap();
    let started = Instant::now();
    let r = Queue::open(&target);
    let waited = started.elapsed();
    assert!(matches!(r, Err(Error::NotReady { .. })), "{r:?}");
    assert!(
        waited >= shmq::segment::INIT_WAIT,
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    drop(seg);
}

#[test]
fn opener_waits_for_a_creator_that_finishes_in_time() {
    let target = common::posix("late-init");
    let params = Params::new(QueueKind::WorkQueue, 64, 8, 0, 0, 0o600).unwrap();
    let seg = Segment::create(&target, params.total_size as usize, 0o600).unwrap();
    let creator = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: the segment is fresh, zeroed and total_size bytes long; no
        // one reads it as initialised before the magic is published.
        unsafe { params.initialise(seg.as_ptr()) };
        seg
    });
    let q = Queue::open(&target).expect("the opener waits for the header");
    assert_eq!((q.slot_size(), q.capacity()), (64, 8));
    q.enqueue_try(b"ok").unwrap();
    drop(creator.join().unwrap());
}

// ---- mode bits ----

#[test]
fn mode_bits_at_creation_are_honoured() {
    each_backing("mode", |target| {
        let q = Queue::create(target, &config()).unwrap();
        assert_eq!(mode_of(target), 0o600, "{}: default mode", target.0);
        assert_eq!(q.params().mode, 0o600);
        drop(q);
        target.unlink().unwrap();
        // Bits a typical umask (022) would clear are kept too.
        for mode in [0o640, 0o666, 0o604] {
            let q = Queue::create(target, &config().permissions(mode)).unwrap();
            assert_eq!(mode_of(target), mode, "{}: mode {mode:o}", target.0);
            assert_eq!(q.params().mode, mode);
            drop(q);
            target.unlink().unwrap();
        }
        let r = Queue::create(target, &config().permissions(0o1777));
        assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
        assert!(!target.exists(), "a refused create leaves nothing behind");
    });
}

// ---- targets as text ----

#[test]
fn all_digit_names_are_sysv_keys_unless_prefixed() {
    let parse = |s: &str| s.parse::<Target>();
    assert_eq!(parse("4242").unwrap(), Target::SysV(4242));
    assert_eq!(parse("0x1092").unwrap(), Target::SysV(4242));
    assert_eq!(parse("sysv:4242").unwrap(), Target::SysV(4242));
    assert_eq!(parse("posix:4242").unwrap(), Target::Posix("4242".into()));
    assert_eq!(parse("posix:/4242").unwrap(), Target::Posix("/4242".into()));
    // Every target's text parses back to it.
    for t in [
        Target::SysV(4242),
        Target::SysV(-5),
        Target::SysV(i32::MAX),
        Target::Posix("4242".into()),
        Target::Posix("0x2a".into()),
        Target::Posix("ticks".into()),
        Target::File("/var/tmp/4242".into()),
        Target::File("4242".into()),
    ] {
        assert_eq!(parse(&t.to_string()).unwrap(), t, "{t}");
    }
    // The whole unsigned 32-bit range, decimal or hex; held bit for bit.
    assert_eq!(parse("sysv:4294967295").unwrap(), Target::SysV(-1));
    assert_eq!(parse("sysv:0xffffffff").unwrap(), Target::SysV(-1));
    assert_eq!(
        parse("3000000000").unwrap(),
        Target::SysV(3_000_000_000u32 as i32)
    );
}

#[test]
fn signed_or_oversized_keys_and_empty_names_are_rejected_with_a_reason() {
    for (text, says) in [
        ("sysv:-5", "has a sign"),
        ("sysv:+5", "has a sign"),
        ("sysv:-0x5", "has a sign"),
        ("-5", "posix:-5"),
        ("sysv:4294967296", "larger than 4294967295"),
        ("sysv:0x100000000", "larger than 0xffffffff"),
        ("99999999999", "posix:99999999999"),
        ("sysv:", "bad SysV key"),
        ("sysv:ticks", "bad SysV key"),
        ("posix:", "empty POSIX name"),
        ("posix:/", "empty POSIX name"),
        ("file:", "empty file path"),
        ("", "empty name"),
    ] {
        match text.parse::<Target>() {
            Err(e @ Error::InvalidArgument { .. }) => {
                assert!(e.to_string().contains(says), "{text:?}: {e}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // What is not a number at all is a name.
    assert_eq!("-x".parse::<Target>().unwrap(), Target::Posix("-x".into()));
}

// ---- unlink ----

#[test]
fn unlink_removes_the_name_while_handles_keep_working() {
    each_backing("unlink", |target| {
        let q = Queue::create(target, &config()).unwrap();
        // A handle in another process, opened before the unlink.
        let mut child = Proc::spawn("echo", &[target.to_string()]);
        let pid = child.pid();
        assert!(
            common::wait_until(Duration::from_secs(30), || q
                .attached()
                .iter()
                .any(|a| a.pid == pid)),
            "child never attached"
        );
        q.unlink().unwrap();
        assert!(!target.exists(), "{}: name still there", target.0);
        assert!(matches!(Queue::open(target), Err(Error::NotFound { .. })));
        // Removing twice is not an error (nor through the handle).
        assert!(matches!(target.unlink(), Ok(())), "{}", target.0);
        assert!(matches!(q.unlink(), Ok(())), "{}", target.0);
        // Both handles still work: the child gets our message and replies.
        q.enqueue_try(b"ping").unwrap();
        child.wait_ok(Duration::from_secs(30));
        assert_eq!(child.results(), ["replied"]);
        let mut buf = [0u8; 64];
        assert_eq!(q.dequeue_try(&mut buf), Ok(9));
        assert_eq!(&buf[..9], b"echo:ping");
        // The name is free: a new queue there is a different one.
        let fresh = Queue::create(target, &config()).unwrap();
        q.enqueue_try(b"old").unwrap();
        assert!(fresh.is_empty());
        assert_eq!(q.len(), 1);
    });
}
