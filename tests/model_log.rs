//! Loom models of the fan-out log's crash recovery.
//!
//! Run with `scripts/model.sh` (`RUSTFLAGS="--cfg loom"`); absent from normal
//! builds.
//!
//! # What is modelled
//!
//! A copy of the overwrite-mode log of `src/log.rs` (a broadcast ring over
//! sequence numbers with a per-slot seqlock; stamps `value << 1 | WAITER`,
//! `value = 4 * (seq + capacity) + state`, state 1 writing, 2 complete,
//! 3 skipped; pristine slots hold their index) and of its recovery: `claim`,
//! `take_slot_inner` (with the bump of a stalled older lap), `finish`,
//! `publish`, `recover_hole`, `Subscriber::recv_once`, `recv_try`,
//! `lagged`, `drained`, `close`, with the same orderings and fences, and
//! `named_by_live` / `Announce` of `src/procs.rs`. Capacity 2.
//!
//! Section 7 models the single publisher's plain-store seqlock
//! (`src/log/single.rs`) against a reader, and the reader's batched cursor
//! (`Subscriber::advance`, `try_with`); it fails without the publisher's
//! Release fence (a torn read), which shows it has teeth.
//!
//! Simplifications, each named:
//!
//! - The process table is one lane word per model thread and the liveness
//!   judge a per-thread `dead` flag, as in `tests/model_recovery.rs`: a
//!   crashing thread returns early at a chosen step (its lane keeps its
//!   announcement) and only then sets `dead` (Release; judged with Acquire).
//! - A message is one `u64` written as two Relaxed atomic words. The real
//!   copy is a plain `copy_nonoverlapping` that readers race with by design
//!   (a seqlock); the model makes those accesses atomic so that loom checks
//!   the seqlock's logic (a torn or stale copy must be discarded: the two
//!   words must agree and match the message published at that sequence
//!   number) rather than reporting the intended race. Exclusion among
//!   *writers* is checked separately: each payload write also writes a loom
//!   `UnsafeCell` (`writer`) that only publishers touch, so two publishers
//!   writing one slot without a happens-before between them is reported.
//! - Overwrite mode only (no cursor table, no gating); no sleepers (the
//!   waiter bit is never set); recovery checks are always due; statistics
//!   only where an invariant reads them.

#![cfg(loom)]

#[path = "model/driver.rs"]
mod driver;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Events of the current interleaving, printed when an invariant fails.
static TRACE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

macro_rules! trace {
    ($($arg:tt)*) => {
        TRACE.lock().unwrap().push(format!($($arg)*))
    };
}

const CAP: u64 = 2;
const LANES: usize = 4;

const STAMP_WAITER: u64 = 1;
const CLAIM_PRODUCE: u64 = 1 << 62;
const CLAIM_POS: u64 = (1 << 62) - 1;

const ST_WRITING: u64 = 1;
const ST_COMPLETE: u64 = 2;
const ST_SKIPPED: u64 = 3;

/// Where a publisher stops (crashes or pauses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Never,
    /// After the tail CAS (`log-publish-claimed`).
    Claimed,
    /// After taking the slot (`log-publish-taken`).
    Taken,
    /// After writing length and payload (`log-publish-written`).
    Written,
}

#[derive(Clone, Copy)]
struct Ctx {
    me: usize,
    stop: Step,
}

fn ctx(me: usize) -> Ctx {
    Ctx {
        me,
        stop: Step::Never,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SendError {
    Closed,
    Corrupt,
    Stopped,
}

#[derive(Debug, PartialEq, Eq)]
enum RecvError {
    Empty,
    Closed,
    Lagged(u64),
    Corrupt,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Published,
    Overtaken,
    Bumped,
    Stopped,
}

#[derive(PartialEq, Eq, Debug)]
enum Named {
    Live,
    Dead,
}

struct Slot {
    stamp: AtomicU64,
    len: AtomicU32,
    words: [AtomicU64; 2],
    /// Touched by publishers only: loom checks their exclusion.
    writer: UnsafeCell<u64>,
}

/// The log as in `src/log.rs`, or with proposed fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fix {
    /// `recover_hole`'s CAS to `skipped` is Release (as is: Relaxed): the
    /// next lap's writer, which Acquires it, then writes after the dead
    /// writer's payload writes (ordered before the recoverer by its judgment).
    skip_release: bool,
    /// `recover_hole` counts a live lane naming any earlier lap of the same
    /// slot (`q <= r`, `q % capacity == r % capacity`) as naming `r` (as
    /// is: only `r`): the writer of a bumped slot names an older lap.
    earlier_laps: bool,
}

/// The log's recovery before its two fixes (kept for the ignored models
/// that show the bugs this model found).
const BEFORE_FIX: Fix = Fix {
    skip_release: false,
    earlier_laps: false,
};
/// The log's recovery as in `src/log.rs` now.
const CODE: Fix = Fix {
    skip_release: true,
    earlier_laps: true,
};

struct Log {
    fix: Fix,
    /// Ordering of `Announce::set`: Relaxed as in `src/procs.rs`.
    announce: Ordering,
    tail: AtomicU64,
    closed: AtomicU32,
    slots: [Slot; CAP as usize],
    lanes: [AtomicU64; LANES],
    dead: [AtomicBool; LANES],
    tombstones: AtomicU64,
    dead_claims: AtomicU64,
}

/// `procs::Announce`, as in `tests/model_recovery.rs`.
struct Announce<'a>(&'a AtomicU64, Ordering);

impl Announce<'_> {
    fn set(&self, tag: u64, pos: u64) {
        self.0.store(tag | (pos & CLAIM_POS), self.1);
    }
}

impl Drop for Announce<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

fn value(seq: u64, state: u64) -> u64 {
    seq.wrapping_add(CAP) << 2 | state
}

fn seq_of(value: u64) -> u64 {
    (value >> 2).wrapping_sub(CAP)
}

impl Log {
    fn new(fix: Fix) -> Log {
        Log {
            fix,
            announce: Ordering::Relaxed,
            tail: AtomicU64::new(0),
            closed: AtomicU32::new(0),
            slots: [0u64, 1].map(|i| Slot {
                stamp: AtomicU64::new(i << 1),
                len: AtomicU32::new(0),
                words: [AtomicU64::new(0), AtomicU64::new(0)],
                writer: UnsafeCell::new(0),
            }),
            lanes: Default::default(),
            dead: Default::default(),
            tombstones: AtomicU64::new(0),
            dead_claims: AtomicU64::new(0),
        }
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq & (CAP - 1)) as usize]
    }

    fn die(&self, me: usize) {
        self.dead[me].store(true, Ordering::Release);
    }

    fn stat(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn count_tombstone(&self) {
        self.tombstones.fetch_add(1, Ordering::Relaxed);
    }

    fn named_by_live(&self, positions: &[u64]) -> Named {
        for (i, (lane, dead)) in self.lanes.iter().zip(&self.dead).enumerate() {
            let claim = lane.load(Ordering::Acquire);
            trace!("  named_by_live {positions:?}: lane {i} reads {claim:#x}");
            if claim != 0
                && positions.contains(&(claim & CLAIM_POS))
                && !dead.load(Ordering::Acquire)
            {
                return Named::Live;
            }
        }
        Named::Dead
    }

    fn tail(&self) -> u64 {
        self.tail.load(Ordering::Relaxed)
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) != 0
    }

    fn drained(&self, r: u64) -> bool {
        self.closed() && self.tail.load(Ordering::SeqCst) <= r
    }

    fn close(&self) {
        self.closed.store(1, Ordering::SeqCst);
    }

    // ---- publishing ----

    fn claim(&self, ann: &Announce<'_>, c: Ctx) -> u64 {
        let mut t = self.tail.load(Ordering::Relaxed);
        loop {
            ann.set(CLAIM_PRODUCE, t);
            match self
                .tail
                .compare_exchange_weak(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    trace!("lane {}: claim {t}", c.me);
                    return t;
                }
                Err(cur) => t = cur,
            }
        }
    }

    fn recover_hole(&self, r: u64) -> bool {
        if self.tail.load(Ordering::SeqCst) <= r {
            return false;
        }
        let slot = self.slot(r);
        let cur = slot.stamp.load(Ordering::Relaxed);
        if cur >> 1 >= value(r, ST_COMPLETE) {
            return false;
        }
        let names: Vec<u64> = if self.fix.earlier_laps {
            (0..=r).rev().step_by(CAP as usize).collect()
        } else {
            vec![r]
        };
        if self.named_by_live(&names) == Named::Live {
            return false;
        }
        let order = if self.fix.skip_release {
            Ordering::Release
        } else {
            Ordering::Relaxed
        };
        if slot
            .stamp
            .compare_exchange(cur, value(r, ST_SKIPPED) << 1, order, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        trace!("recover_hole {r}: {cur:#x} -> skipped");
        self.count_tombstone();
        self.dead_claims.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn write(&self, seq: u64, msg: Option<u64>, state: u64, c: Ctx) -> Outcome {
        match self.take_slot(seq, c) {
            Ok(slot) => self.finish(slot, seq, msg, state, c),
            Err(outcome) => outcome,
        }
    }

    fn take_slot(&self, seq: u64, c: Ctx) -> Result<&Slot, Outcome> {
        let taken = self.take_slot_inner(seq, c);
        if taken.is_ok() && c.stop == Step::Taken {
            return Err(Outcome::Stopped);
        }
        taken
    }

    fn take_slot_inner(&self, seq: u64, c: Ctx) -> Result<&Slot, Outcome> {
        let slot = self.slot(seq);
        let mine = value(seq, ST_WRITING);
        let mut cur = slot.stamp.load(Ordering::Relaxed);
        loop {
            let v = cur >> 1;
            if v >= mine {
                return Err(Outcome::Overtaken);
            }
            if v >= CAP << 2 && v & 3 == ST_WRITING {
                match slot.stamp.compare_exchange_weak(
                    cur,
                    mine << 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        trace!("lane {}: bumped {cur:#x} for {seq}", c.me);
                        return Err(Outcome::Bumped);
                    }
                    Err(x) => cur = x,
                }
                continue;
            }
            match slot.stamp.compare_exchange_weak(
                cur,
                mine << 1 | (cur & STAMP_WAITER),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    trace!("lane {}: took slot for {seq} ({cur:#x})", c.me);
                    return Ok(slot);
                }
                Err(x) => cur = x,
            }
        }
    }

    fn finish(&self, slot: &Slot, seq: u64, msg: Option<u64>, state: u64, c: Ctx) -> Outcome {
        let mine = value(seq, ST_WRITING);
        fence(Ordering::Release);
        slot.len
            .store(if msg.is_some() { 8 } else { 0 }, Ordering::Relaxed);
        if let Some(m) = msg {
            slot.words[0].store(m, Ordering::Relaxed);
            // SAFETY (model): checked by loom; publishers only.
            slot.writer.with_mut(|w| unsafe { *w = m });
            slot.words[1].store(m, Ordering::Relaxed);
        }
        if c.stop == Step::Written {
            return Outcome::Stopped;
        }
        let done = value(seq, state);
        let mut cur = mine << 1;
        loop {
            let v = cur >> 1;
            let (target, outcome) = if v == mine {
                (done, Outcome::Published)
            } else if v > mine && v & 3 == ST_WRITING {
                (v - ST_WRITING + ST_SKIPPED, Outcome::Overtaken)
            } else {
                trace!("lane {}: finish {seq}: found {cur:#x}, gives up", c.me);
                return Outcome::Overtaken;
            };
            match slot.stamp.compare_exchange_weak(
                cur,
                target << 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    trace!(
                        "lane {}: finish {seq}: {cur:#x} -> {:#x}",
                        c.me,
                        target << 1
                    );
                    return outcome;
                }
                Err(x) => cur = x,
            }
        }
    }

    fn publish(&self, msg: u64, c: Ctx) -> Result<u64, SendError> {
        if self.closed() {
            return Err(SendError::Closed);
        }
        let ann = Announce(&self.lanes[c.me], self.announce);
        for _ in 0..=CAP {
            let seq = self.claim(&ann, c);
            if c.stop == Step::Claimed {
                std::mem::forget(ann);
                return Err(SendError::Stopped);
            }
            if self.closed() {
                match self.write(seq, None, ST_SKIPPED, c) {
                    Outcome::Stopped => {
                        std::mem::forget(ann);
                        return Err(SendError::Stopped);
                    }
                    Outcome::Overtaken => {}
                    _ => self.count_tombstone(),
                }
                return Err(SendError::Closed);
            }
            match self.write(seq, Some(msg), ST_COMPLETE, c) {
                Outcome::Published | Outcome::Overtaken => return Ok(seq),
                Outcome::Bumped => self.count_tombstone(),
                Outcome::Stopped => {
                    std::mem::forget(ann);
                    return Err(SendError::Stopped);
                }
            }
        }
        Err(SendError::Corrupt)
    }
}

/// An overwrite-mode subscriber without a cursor (`CursorRef::Local`).
struct Subscriber {
    pos: u64,
    /// Positions reported lost by `Lagged` (model bookkeeping).
    lost: Vec<u64>,
}

impl Subscriber {
    fn new() -> Subscriber {
        Subscriber {
            pos: 0,
            lost: Vec::new(),
        }
    }
}

impl Subscriber {
    fn lagged(&mut self, log: &Log, value: u64) -> RecvError {
        let r = self.pos;
        let q = seq_of(value);
        let next = (r + 1)
            .max(q.saturating_sub(CAP) + 1)
            .max(log.tail().saturating_sub(CAP));
        let lost = next - r;
        self.lost.extend(r..next);
        self.pos = next;
        RecvError::Lagged(lost)
    }

    /// `recv_try` (recovery always due): the message and its sequence number.
    fn recv_try(&mut self, log: &Log) -> Result<(u64, u64), RecvError> {
        loop {
            match self.recv_once(log) {
                Err(RecvError::Empty) if log.recover_hole(self.pos) => {}
                other => return other,
            }
        }
    }

    fn recv_once(&mut self, log: &Log) -> Result<(u64, u64), RecvError> {
        loop {
            let r = self.pos;
            let slot = log.slot(r);
            let s1 = slot.stamp.load(Ordering::Acquire);
            let v = s1 >> 1;
            let ready = value(r, ST_COMPLETE);
            if v == ready {
                let len = slot.len.load(Ordering::Relaxed) as usize;
                if len != 8 {
                    fence(Ordering::Acquire);
                    let s2 = slot.stamp.load(Ordering::Relaxed);
                    if s2 >> 1 != v {
                        return Err(self.lagged(log, s2 >> 1));
                    }
                    self.pos = r + 1;
                    return Err(RecvError::Corrupt);
                }
                let w0 = slot.words[0].load(Ordering::Relaxed);
                let w1 = slot.words[1].load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                let s2 = slot.stamp.load(Ordering::Relaxed);
                if s2 >> 1 != v {
                    return Err(self.lagged(log, s2 >> 1));
                }
                assert_eq!(w0, w1, "torn read of {r} returned");
                self.pos = r + 1;
                return Ok((r, w0));
            }
            if v == ready + 1 {
                self.pos = r + 1;
                continue;
            }
            if v > ready + 1 {
                return Err(self.lagged(log, v));
            }
            return Err(if log.drained(r) {
                RecvError::Closed
            } else {
                RecvError::Empty
            });
        }
    }

    /// The final single-threaded pass: reads until `Closed` (the log must
    /// be closed); returns the messages and the positions lost.
    fn drain(&mut self, log: &Log) -> (Vec<(u64, u64)>, u64) {
        let mut got = Vec::new();
        let mut lost = 0;
        for _ in 0..8 {
            match self.recv_try(log) {
                Ok(m) => got.push(m),
                Err(RecvError::Lagged(n)) => lost += n,
                Err(RecvError::Closed) => return (got, lost),
                Err(e) => panic!("drain: {e:?} at {}", self.pos),
            }
        }
        panic!("drain did not end");
    }
}

fn check(name: &str, default_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    driver::check(name, default_bound, Some(&TRACE), f);
}

// ---- 5. publisher crash ----

/// Publisher A (lane 0) crashes at `stop`; publisher B (lane 1) publishes
/// one message; subscriber S (lane 2) reads with recovery; then close and
/// drain. B's message exactly once, in order; A's claim one skipped stamp.
fn publisher_crash(stop: Step, fix: Fix) {
    check(
        &format!("publisher_crash({stop:?}, {fix:?})"),
        2,
        move || {
            let log = Arc::new(Log::new(fix));
            let a = {
                let log = log.clone();
                thread::spawn(move || {
                    let r = log.publish(0xA1, Ctx { me: 0, stop });
                    assert_eq!(r, Err(SendError::Stopped));
                    log.die(0);
                })
            };
            let b = {
                let log = log.clone();
                thread::spawn(move || log.publish(0xB1, ctx(1)))
            };
            let s = {
                let log = log.clone();
                thread::spawn(move || {
                    let mut sub = Subscriber::new();
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        match sub.recv_try(&log) {
                            Ok(m) => got.push(m),
                            Err(RecvError::Empty) => {}
                            Err(e) => panic!("subscriber: {e:?}"),
                        }
                    }
                    (sub, got)
                })
            };
            a.join().unwrap();
            let seq_b = b.join().unwrap().expect("B publishes");
            let (mut sub, mut got) = s.join().unwrap();
            log.close();
            let (rest, lost) = sub.drain(&log);
            got.extend(rest);
            assert_eq!(lost, 0, "nothing overwritten in a ring of two");
            assert_eq!(got, vec![(seq_b, 0xB1)], "B's message exactly once");
            assert_eq!(
                log.stat(&log.tombstones),
                1,
                "the dead claim is one skipped stamp"
            );
            assert_eq!(log.stat(&log.dead_claims), 1);
        },
    );
}

#[test]
fn publisher_crash_after_claim() {
    publisher_crash(Step::Claimed, CODE);
}

#[test]
fn publisher_crash_after_take() {
    publisher_crash(Step::Taken, CODE);
}

#[test]
fn publisher_crash_after_write() {
    publisher_crash(Step::Written, CODE);
}

/// Publisher A (lane 0) crashes at `stop`; publisher B (lane 1) publishes
/// two messages, the second of which may land on A's slot after recovery
/// (or bump it first); subscriber S (lane 2) reads with recovery. Every
/// position is read, skipped or reported lost; every message read is the
/// one published at its sequence number, whole.
///
/// Preemption bound 1 (bound 2: 61 s after take, 80 s fixed after write,
/// both pass; as is after write fails at either bound).
fn publisher_crash_slot_reused(stop: Step, fix: Fix) {
    check(
        &format!("publisher_crash_slot_reused({stop:?}, {fix:?})"),
        1,
        move || {
            let log = Arc::new(Log::new(fix));
            let a = {
                let log = log.clone();
                thread::spawn(move || {
                    // Crashes at `stop`, or finds its slot already taken by a
                    // later lap (overtaken: `publish` returns Ok, nothing is
                    // written) and exits.
                    let r = log.publish(0xA1, Ctx { me: 0, stop });
                    assert!(matches!(r, Err(SendError::Stopped) | Ok(_)), "{r:?}");
                    log.die(0);
                    r.is_err()
                })
            };
            let b = {
                let log = log.clone();
                thread::spawn(move || {
                    let first = log.publish(0xB1, ctx(1)).unwrap();
                    let second = log.publish(0xB2, ctx(1)).unwrap();
                    [(first, 0xB1), (second, 0xB2)]
                })
            };
            let s = {
                let log = log.clone();
                thread::spawn(move || {
                    let mut sub = Subscriber::new();
                    let mut got = Vec::new();
                    let mut lost = 0;
                    for _ in 0..2 {
                        match sub.recv_try(&log) {
                            Ok(m) => got.push(m),
                            Err(RecvError::Empty) => {}
                            Err(RecvError::Lagged(n)) => lost += n,
                            Err(e) => panic!("subscriber: {e:?}"),
                        }
                    }
                    (sub, got, lost)
                })
            };
            let crashed = a.join().unwrap();
            let sent = b.join().unwrap();
            let (mut sub, mut got, mut lost) = s.join().unwrap();
            log.close();
            let (rest, more) = sub.drain(&log);
            got.extend(rest);
            lost += more;
            for &(seq, m) in &got {
                assert!(
                    sent.contains(&(seq, m)),
                    "read {m:x} at {seq}: not published there"
                );
            }
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "in order: {got:x?}"
            );
            assert_eq!(lost, sub.lost.len() as u64);
            for &(seq, m) in &sent {
                let read = got.iter().filter(|g| **g == (seq, m)).count();
                let gone = sub.lost.contains(&seq);
                assert!(
                    read + usize::from(gone) == 1,
                    "{m:x} at {seq}: read {read} times, lost {gone}: {got:x?}"
                );
            }
            assert_eq!(
                log.stat(&log.dead_claims),
                u64::from(crashed),
                "one dead claim"
            );
        },
    );
}

#[test]
fn publisher_crash_slot_reused_after_take() {
    publisher_crash_slot_reused(Step::Taken, CODE);
}

#[test]
#[ignore = "the protocol before its fix, kept to show the model finds the bug (scripts/model.sh --ignored): recover_hole's Relaxed CAS leaves a dead writer's payload writes unordered before the next lap's"]
fn publisher_crash_slot_reused_after_write() {
    publisher_crash_slot_reused(Step::Written, BEFORE_FIX);
}

#[test]
fn publisher_crash_slot_reused_after_write_fixed() {
    publisher_crash_slot_reused(Step::Written, CODE);
}

// ---- a live claim is never recovered ----

/// Publisher A (lane 0) is slow but alive; B (lane 1) publishes one
/// message; subscriber S (lane 2) reads with recovery: no skipped stamp,
/// both messages read.
#[test]
fn slow_publisher_is_not_recovered() {
    check("slow_publisher_is_not_recovered", 2, || {
        let log = Arc::new(Log::new(CODE));
        let a = {
            let log = log.clone();
            thread::spawn(move || log.publish(0xA1, ctx(0)).unwrap())
        };
        let b = {
            let log = log.clone();
            thread::spawn(move || log.publish(0xB1, ctx(1)).unwrap())
        };
        let s = {
            let log = log.clone();
            thread::spawn(move || {
                let mut sub = Subscriber::new();
                let mut got = Vec::new();
                for _ in 0..2 {
                    match sub.recv_try(&log) {
                        Ok(m) => got.push(m),
                        Err(RecvError::Empty) => {}
                        Err(e) => panic!("subscriber: {e:?}"),
                    }
                }
                (sub, got)
            })
        };
        let sa = a.join().unwrap();
        let sb = b.join().unwrap();
        let (mut sub, mut got) = s.join().unwrap();
        log.close();
        let (rest, lost) = sub.drain(&log);
        got.extend(rest);
        assert_eq!(lost, 0);
        let mut want = vec![(sa, 0xA1), (sb, 0xB1)];
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(
            log.stat(&log.tombstones),
            0,
            "a live claim is never skipped"
        );
    });
}

/// A publisher (lane 0) is stalled, alive, in the middle of its write of
/// seq 0 while thread T (lane 1) publishes two messages (seq 1; seq 2 bumps
/// slot 0, so it lands as seq 3), reads as a subscriber (lagged to seq 2,
/// where slot 0 reads `writing(2)`, a bump, named by no lane), and publishes
/// once more (seq 4, in slot 0).
///
/// `recover_hole(2)` finds no live lane naming 2 (the stalled writer names
/// 0, the bumper moved on) and marks slot 0 skipped while its writer is
/// alive and writing; seq 4 then takes the slot and writes it concurrently
/// with the stalled writer (two writers of one slot), and the stalled
/// writer, finishing, may turn seq 4's `writing` into `skipped` (seq 4 is
/// lost though its publish returned Ok).
#[test]
#[ignore = "the protocol before its fix, kept to show the model finds the bug (scripts/model.sh --ignored): log recover_hole skips a bumped slot whose stalled writer is alive (names an older lap)"]
fn stalled_writer_of_a_bumped_slot_is_not_recovered() {
    stalled_writer_of_a_bumped_slot(BEFORE_FIX);
}

#[test]
fn stalled_writer_of_a_bumped_slot_is_not_recovered_fixed() {
    stalled_writer_of_a_bumped_slot(CODE);
}

fn stalled_writer_of_a_bumped_slot(fix: Fix) {
    check(
        &format!("stalled_writer_of_a_bumped_slot({fix:?})"),
        2,
        move || {
            let log = Arc::new(Log::new(fix));
            let a = {
                let log = log.clone();
                thread::spawn(move || log.publish(0xA1, ctx(0)))
            };
            let t = {
                let log = log.clone();
                thread::spawn(move || {
                    let mut sent = vec![
                        (log.publish(0xB1, ctx(1)).unwrap(), 0xB1),
                        (log.publish(0xB2, ctx(1)).unwrap(), 0xB2),
                    ];
                    let mut sub = Subscriber::new();
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        match sub.recv_try(&log) {
                            Ok(m) => got.push(m),
                            Err(RecvError::Empty | RecvError::Lagged(_)) => {}
                            Err(e) => panic!("subscriber: {e:?}"),
                        }
                    }
                    sent.push((log.publish(0xB3, ctx(1)).unwrap(), 0xB3));
                    (sent, sub, got)
                })
            };
            let sa = a.join().unwrap();
            let (mut sent, mut sub, mut got) = t.join().unwrap();
            sent.push((sa.unwrap(), 0xA1));
            log.close();
            let (rest, _lost) = sub.drain(&log);
            got.extend(rest);
            for &(seq, m) in &got {
                assert!(
                    sent.contains(&(seq, m)),
                    "read {m:x} at {seq}: not published there"
                );
            }
            let last = sent.iter().map(|s| s.0).max().unwrap();
            assert!(
                got.iter().any(|g| g.0 == last),
                "the last message published ({last}) is read: {got:x?}, sent {sent:x?}"
            );
            assert_eq!(log.stat(&log.dead_claims), 0, "nobody died");
        },
    );
}

// ---- 7. the single publisher's plain-store seqlock, and batched cursors ----

/// The payload word of message `seq` (two words per slot; they must agree).
fn sp_msg(seq: u64) -> u64 {
    0x5eed_0000 + seq
}

/// The single publisher (`src/log/single.rs`, `sp_write` and `sp_commit`):
/// no CAS, a Relaxed store of `writing(s)`, a Release fence, the payload,
/// a Release store of `complete(s)`, then of `tail`; three messages over a
/// ring of 2 (the third overwrites the first). A reader (`recv_once`)
/// checks the stamp around its copy: it never accepts a torn or stale
/// message, and what it receives plus what it is told it lost is exact.
/// The reader shows its cursor in batches of 2 (`Subscriber::advance`),
/// and always before it stops (`try_with` on Empty): the shown cursor
/// never passes what it has read, and ends equal to its position.
#[test]
fn single_publisher_plain_stores_never_tear() {
    check("single_publisher_plain_stores_never_tear", 3, || {
        const N: u64 = 3;
        let stamps: Arc<[AtomicU64; 2]> =
            Arc::new([AtomicU64::new(0 << 1), AtomicU64::new(1 << 1)]);
        let words: Arc<[[AtomicU64; 2]; 2]> = Arc::new([
            [AtomicU64::new(0), AtomicU64::new(0)],
            [AtomicU64::new(0), AtomicU64::new(0)],
        ]);
        let tail = Arc::new(AtomicU64::new(0));
        let cursor = Arc::new(AtomicU64::new(0));
        let publisher = {
            let (stamps, words, tail) = (stamps.clone(), words.clone(), tail.clone());
            thread::spawn(move || {
                for s in 0..N {
                    let i = (s % CAP) as usize;
                    stamps[i].store(value(s, ST_WRITING) << 1, Ordering::Relaxed);
                    fence(Ordering::Release);
                    words[i][0].store(sp_msg(s), Ordering::Relaxed);
                    words[i][1].store(sp_msg(s), Ordering::Relaxed);
                    stamps[i].store(value(s, ST_COMPLETE) << 1, Ordering::Release);
                    tail.store(s + 1, Ordering::Release);
                    trace!("published {s}");
                }
            })
        };
        let (mut pos, mut got, mut lost, mut shown) = (0u64, 0u64, 0u64, 0u64);
        let advance = |pos: &mut u64, to: u64, shown: &mut u64| {
            *pos = to;
            if *pos - *shown >= 2 {
                *shown = *pos;
                cursor.store(*pos, Ordering::Release);
            }
        };
        for _ in 0..4 {
            if pos >= N {
                break;
            }
            let i = (pos % CAP) as usize;
            let s1 = stamps[i].load(Ordering::Acquire);
            let v = s1 >> 1;
            if v == value(pos, ST_COMPLETE) {
                let a = words[i][0].load(Ordering::Relaxed);
                let b = words[i][1].load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                let s2 = stamps[i].load(Ordering::Relaxed);
                if s2 >> 1 == v {
                    assert_eq!((a, b), (sp_msg(pos), sp_msg(pos)), "torn or stale at {pos}");
                    trace!("received {pos}");
                    got += 1;
                    let to = pos + 1;
                    advance(&mut pos, to, &mut shown);
                } else {
                    let q = seq_of(s2 >> 1);
                    let next = (pos + 1).max(q + 1 - CAP);
                    trace!("lagged at {pos} to {next}");
                    lost += next - pos;
                    advance(&mut pos, next, &mut shown);
                }
            } else if v > value(pos, ST_COMPLETE) {
                let q = seq_of(v);
                let next = (pos + 1).max(q + 1 - CAP);
                trace!("lagged at {pos} to {next}");
                lost += next - pos;
                advance(&mut pos, next, &mut shown);
            } else {
                // Nothing yet: show the cursor (before any wait), then retry.
                if shown != pos {
                    shown = pos;
                    cursor.store(pos, Ordering::Release);
                }
                thread::yield_now();
            }
            assert!(
                cursor.load(Ordering::Relaxed) <= pos,
                "shown past what was read"
            );
        }
        publisher.join().unwrap();
        // Drain what is left (the publisher is done: no more races).
        while pos < N {
            let i = (pos % CAP) as usize;
            let v = stamps[i].load(Ordering::Acquire) >> 1;
            if v == value(pos, ST_COMPLETE) {
                assert_eq!(words[i][0].load(Ordering::Relaxed), sp_msg(pos));
                got += 1;
                pos += 1;
            } else {
                assert!(v > value(pos, ST_COMPLETE), "complete after join");
                let next = (pos + 1).max(seq_of(v) + 1 - CAP);
                lost += next - pos;
                pos = next;
            }
        }
        if shown != pos {
            cursor.store(pos, Ordering::Release);
        }
        assert_eq!(got + lost, N, "received {got} + lost {lost}");
        assert_eq!(tail.load(Ordering::Acquire), N);
        assert_eq!(cursor.load(Ordering::Relaxed), pos);
    });
}
