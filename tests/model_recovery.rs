//! Loom models of the work queue's crash recovery.
//!
//! Run with `scripts/model.sh` (`RUSTFLAGS="--cfg loom"`); absent from normal
//! builds.
//!
//! # What is modelled
//!
//! A copy of the multi-producer ring of `src/queue.rs` (Vyukov's bounded MPMC
//! ring over positions, stamps `pos << 1 | WAITER`, tombstones as
//! `STAMP_TOMB = 1 << 63` in the stamp or `SLOT_TOMBSTONE` in the flags) and
//! of its recovery (`src/queue/recover.rs`, `src/procs.rs`): the same
//! atomics, the same orderings, the same encodings, function by function
//! (`claim_tail`, `publish`, `mpmc_enqueue_try`, `claim_head`, `release`,
//! `mpmc_dequeue_try`, `drained`, `close`, `recover_hole`, `recover_orphan`,
//! `recover_orphans`, `recover_consumer_side`, `recover_producer_side`,
//! `named_by_live`, `dead_claims`, `Announce`), and the range claims of
//! `src/queue/batch.rs` (`claim_tail_range`, `mpmc_enqueue_batch`,
//! `claim_head_range`, `mpmc_dequeue_batch`; `claim_len`, `claim_of`,
//! `Announce::set_range`/`clear`). Capacity 2.
//!
//! Simplifications, each named:
//!
//! - The process table is one lane word per model thread; the liveness judge
//!   is a per-thread `dead` flag. A *crashing* thread returns early from its
//!   operation at a chosen step (as a SIGKILL there would stop it: its lane
//!   keeps its announcement, no `Drop` runs) and only then sets `dead`
//!   (Release; the judge loads it Acquire: the kernel's exit and the judge's
//!   look at /proc order the dead process's last stores before the verdict).
//!   A *stopped* thread returns early the same way but never sets `dead`.
//! - Messages are one `u64` (length 8) held in a loom `UnsafeCell`, so loom
//!   reports any payload access not ordered after the previous lap's (two
//!   owners of one slot, a read of an unpublished write).
//! - No sleepers: the waiter bit is never set, so the wake paths and
//!   `close`'s sleeper scan are left out; the rate limit of recovery checks
//!   (`recovery_due`) is taken as always due (more checks, more
//!   interleavings). Blocking calls are modelled by bounded `try` loops.
//! - Statistics counters are kept only where an invariant reads them.
//! - `compare_exchange_weak` never fails spuriously under loom.

#![cfg(loom)]

#[path = "model/driver.rs"]
mod driver;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
/// Lanes (= model threads): three workers and the main thread (lane 3).
const LANES: usize = 4;
const MAIN: usize = 3;

const STAMP_WAITER: u64 = 1;
const STAMP_TOMB: u64 = 1 << 63;
const SLOT_TOMBSTONE: u32 = 1;
const CLAIM_PRODUCE: u64 = 1 << 62;
const CLAIM_CONSUME: u64 = 2 << 62;
const CLAIM_POS: u64 = (1 << 62) - 1;

/// Where a thread stops (crashes or pauses) inside an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Never,
    /// Producer: after announcing, before the tail CAS.
    ProduceAnnounced,
    /// Producer: after the tail CAS (`queue-produce-claimed`).
    ProduceClaimed,
    /// Producer: after writing length and payload, before the stamp swap
    /// (`queue-publish`).
    ProduceWritten,
    /// Consumer: after the head CAS (`queue-consume-claimed`).
    ConsumeClaimed,
    /// Consumer: after copying out, before the release (`queue-consume-copied`).
    ConsumeCopied,
    /// Recoverer: after claiming the republish position (`queue-redeliver-claimed`).
    RedeliverClaimed,
    /// Batch producer: after publishing the first position it publishes of
    /// a range of two or more, the range's second (`queue-batch-published-one`).
    BatchPublishedOne,
    /// Batch producer that found the queue closed after claiming a range
    /// of two or more: after tombstoning its first position (model only: a
    /// SIGSTOP may land at any instruction).
    BatchTombstonedOne,
    /// Batch consumer: after handing out and releasing the first position
    /// of a range of two or more.
    BatchConsumedOne,
}

/// One model thread: its lane and where it stops.
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
enum EnqErr {
    Full,
    Closed,
    Corrupt,
    /// The thread stopped at its `stop` step.
    Stopped,
}

#[derive(Debug, PartialEq, Eq)]
enum DeqErr {
    Empty,
    Closed,
    Corrupt,
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
    flags: AtomicU32,
    payload: UnsafeCell<u64>,
}

#[derive(Default)]
struct Stats {
    tombstones: AtomicU64,
    dead_claims: AtomicU64,
    redelivered: AtomicU64,
    skipped: AtomicU64,
}

struct Q {
    /// The ordering of `Announce::set` (see [`BEFORE_FIX`], [`CODE`]).
    announce: Ordering,
    /// The ordering of the `claim_len` stores (Release in `src/procs.rs`;
    /// the loads are Acquire with it, Relaxed without: see [`Ranges`]).
    len_order: Ordering,
    /// Whether `named_by_live` and `dead_claims` read `claim_len` (false:
    /// a weakened model that reads every claim as one position).
    range_check: bool,
    head: AtomicU64,
    tail: AtomicU64,
    closed: AtomicU32,
    slots: [Slot; CAP as usize],
    /// `claim` words of the lanes (`procs::ProcEntry::claim`).
    lanes: [AtomicU64; LANES],
    /// `claim_len` words of the lanes (`procs::ProcEntry::claim_len`).
    lens: [AtomicU64; LANES],
    /// The liveness judge: set once a thread executed its last instruction.
    dead: [AtomicBool; LANES],
    stats: Stats,
}

fn stamp_pos(stamp: u64) -> u64 {
    (stamp & !STAMP_TOMB) >> 1
}

/// `procs::Announce`: a claim announced in a lane, cleared (Release) when
/// dropped. A crash `mem::forget`s it: a killed process runs no `Drop`.
///
/// `.1` is the ordering of the announcing store: Release in `src/procs.rs`
/// ([`CODE`]), Relaxed before the fix ([`BEFORE_FIX`]).
///
/// `len` is the lane's `claim_len`, stored with `len_order` (Release in
/// `src/procs.rs`); `ranged` is `Announce::ranged` (a range was announced,
/// so its length is reset on clear or on the next single claim).
struct Announce<'a> {
    claim: &'a AtomicU64,
    order: Ordering,
    len: &'a AtomicU64,
    len_order: Ordering,
    ranged: std::cell::Cell<bool>,
}

impl Announce<'_> {
    fn set(&self, tag: u64, pos: u64) {
        if self.ranged.replace(false) {
            // src/procs.rs: SYNC(claim-announce), Release (a single claim
            // after a range on the same guard).
            self.len.store(0, self.len_order);
        }
        // src/procs.rs: SYNC(claim-announce), Release (Relaxed before the fix).
        self.claim.store(tag | (pos & CLAIM_POS), self.order);
    }

    /// `Announce::set_range`: the length first, then the claim.
    fn set_range(&self, tag: u64, pos: u64, len: u64) {
        self.ranged.set(true);
        // src/procs.rs: SYNC(claim-announce), Release, pairs with the
        // Acquire load of claim_len in `claim_of`.
        self.len.store(len, self.len_order);
        self.claim.store(tag | (pos & CLAIM_POS), self.order);
    }

    /// `Announce::clear`: the claim first, then the length.
    fn clear(&self) {
        // SYNC(claim-announce): Release, pairs with the Acquire in named_by_live.
        self.claim.store(0, Ordering::Release);
        if self.ranged.replace(false) {
            // SYNC(claim-announce): Release, pairs with the Acquire load of
            // claim_len in `claim_of`.
            self.len.store(0, self.len_order);
        }
    }
}

impl Drop for Announce<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// How the model reads ranges: `src/procs.rs` as is, or weakened to show
/// that the models below catch the weakening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ranges {
    /// `claim_len` stored Release, loaded Acquire, and read.
    Code,
    /// `claim_len` stored and loaded Relaxed.
    RelaxedLen,
    /// `claim_len` ignored: every claim names its first position only.
    NoRangeCheck,
}

/// `procs::MAX_CLAIM_LEN`.
const MAX_CLAIM_LEN: u64 = 1 << 20;

/// A consumer's claim (`queue::Claim`).
struct Claim<'a> {
    pos: u64,
    slot: &'a Slot,
    len: usize,
    tombstone: bool,
}

/// The announcement before it was fixed (a Relaxed store): kept so that the
/// ignored models show the bug this model found.
const BEFORE_FIX: Ordering = Ordering::Relaxed;
/// The announcement as in `src/procs.rs` now: a Release store, so that a
/// recoverer that reads a later announcement of a live thread also sees that
/// thread's completed steps (see `consumer_crash_*`).
const CODE: Ordering = Ordering::Release;

impl Q {
    fn new(announce: Ordering) -> Q {
        Q::ranged(announce, Ranges::Code)
    }

    fn ranged(announce: Ordering, ranges: Ranges) -> Q {
        Q {
            announce,
            len_order: if ranges == Ranges::RelaxedLen {
                Ordering::Relaxed
            } else {
                Ordering::Release
            },
            range_check: ranges != Ranges::NoRangeCheck,
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            closed: AtomicU32::new(0),
            slots: [0u64, 1].map(|i| Slot {
                stamp: AtomicU64::new(i << 1),
                len: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                payload: UnsafeCell::new(0),
            }),
            lanes: Default::default(),
            lens: Default::default(),
            dead: Default::default(),
            stats: Stats::default(),
        }
    }

    fn slot(&self, pos: u64) -> &Slot {
        &self.slots[(pos & (CAP - 1)) as usize]
    }

    fn announce(&self, c: Ctx) -> Announce<'_> {
        Announce {
            claim: &self.lanes[c.me],
            order: self.announce,
            len: &self.lens[c.me],
            len_order: self.len_order,
            ranged: std::cell::Cell::new(false),
        }
    }

    fn die(&self, me: usize) {
        // The liveness oracle: dead after the last instruction.
        self.dead[me].store(true, Ordering::Release);
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn stat(&self, counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    // ---- procs.rs ----

    /// `procs::claim_of`: the claim lane `i` announces (tag, first
    /// position, length), read claim first, then claim_len.
    fn claim_of(&self, i: usize) -> Option<(u64, u64, u64)> {
        let claim = self.lanes[i].load(Ordering::Acquire);
        if claim == 0 {
            return None;
        }
        let load = if self.len_order == Ordering::Release {
            Ordering::Acquire
        } else {
            Ordering::Relaxed
        };
        let raw = self.lens[i].load(load);
        let len = if self.range_check {
            raw.clamp(1, MAX_CLAIM_LEN)
        } else {
            1
        };
        trace!("  lane {i} reads claim {claim:#x} len {raw}");
        Some((claim & !CLAIM_POS, claim & CLAIM_POS, len))
    }

    fn named_by_live(&self, positions: &[u64]) -> Named {
        for (i, dead) in self.dead.iter().enumerate() {
            if let Some((_, start, len)) = self.claim_of(i) {
                if positions.iter().any(|&p| p >= start && p - start < len)
                    && !dead.load(Ordering::Acquire)
                {
                    trace!("  named_by_live {positions:?}: live lane {i}");
                    return Named::Live;
                }
            }
        }
        Named::Dead
    }

    /// `procs::dead_claims`: (first position, length) of each dead claim.
    fn dead_claims(&self, tag: u64) -> Vec<(u64, u64)> {
        (0..LANES)
            .filter_map(|i| {
                let (t, start, len) = self.claim_of(i)?;
                (t == tag && self.dead[i].load(Ordering::Acquire)).then_some((start, len))
            })
            .collect()
    }

    // ---- producing ----

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) != 0
    }

    fn claim_tail(&self, ann: &Announce<'_>, c: Ctx) -> Result<u64, EnqErr> {
        let mut t = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(t);
            let s = stamp_pos(slot.stamp.load(Ordering::Acquire));
            if s == t {
                ann.set(CLAIM_PRODUCE, t);
                if c.stop == Step::ProduceAnnounced {
                    return Err(EnqErr::Stopped);
                }
                match self
                    .tail
                    .compare_exchange_weak(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => {
                        trace!("lane {}: claim_tail {t}", c.me);
                        return Ok(t);
                    }
                    Err(cur) => t = cur,
                }
            } else {
                let cur = self.tail.load(Ordering::Relaxed);
                if cur != t {
                    t = cur;
                } else if (s.wrapping_sub(t) as i64) < 0 {
                    return Err(EnqErr::Full);
                } else {
                    return Err(EnqErr::Corrupt);
                }
            }
        }
    }

    /// `publish`; `msg` None writes an empty message (a tombstone's).
    /// False if the thread stopped before the swap.
    fn publish(&self, pos: u64, msg: Option<u64>, flags: u32, c: Ctx) -> bool {
        let slot = self.slot(pos);
        slot.len
            .store(if msg.is_some() { 8 } else { 0 }, Ordering::Relaxed);
        slot.flags.store(flags, Ordering::Relaxed);
        if let Some(m) = msg {
            // SAFETY (model): we own position `pos`.
            slot.payload.with_mut(|p| unsafe { *p = m });
        }
        if c.stop == Step::ProduceWritten {
            return false;
        }
        let old = slot.stamp.swap((pos + 1) << 1, Ordering::Release);
        trace!("lane {}: publish {pos} {msg:x?} (stamp was {old:#x})", c.me);
        assert_eq!(old & STAMP_WAITER, 0);
        true
    }

    fn mpmc_enqueue_try(&self, msg: u64, c: Ctx) -> Result<(), EnqErr> {
        if self.closed() {
            return Err(EnqErr::Closed);
        }
        let ann = self.announce(c);
        let pos = match self.claim_tail(&ann, c) {
            Ok(pos) => pos,
            Err(EnqErr::Stopped) => {
                std::mem::forget(ann);
                return Err(EnqErr::Stopped);
            }
            Err(e) => return Err(e),
        };
        if c.stop == Step::ProduceClaimed {
            std::mem::forget(ann);
            return Err(EnqErr::Stopped);
        }
        if self.closed() {
            if !self.publish(pos, None, SLOT_TOMBSTONE, c) {
                std::mem::forget(ann);
                return Err(EnqErr::Stopped);
            }
            self.count(&self.stats.tombstones);
            return Err(EnqErr::Closed);
        }
        if !self.publish(pos, Some(msg), 0, c) {
            std::mem::forget(ann);
            return Err(EnqErr::Stopped);
        }
        Ok(())
    }

    /// `enqueue_try` (recovery always due).
    fn enqueue_try(&self, msg: u64, c: Ctx) -> Result<(), EnqErr> {
        match self.mpmc_enqueue_try(msg, c) {
            Err(EnqErr::Full) => {
                self.recover_producer_side(c)?;
                Err(EnqErr::Full)
            }
            other => other,
        }
    }

    // ---- consuming ----

    fn claim_head(&self, ann: &Announce<'_>) -> Result<Claim<'_>, DeqErr> {
        let me = self
            .lanes
            .iter()
            .position(|l| std::ptr::eq(l, ann.claim))
            .unwrap();
        let mut h = self.head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(h);
            let raw = slot.stamp.load(Ordering::Acquire);
            let s = stamp_pos(raw);
            let ready = h.wrapping_add(1);
            if s == ready {
                let len = slot.len.load(Ordering::Relaxed) as usize;
                let tombstone = raw & STAMP_TOMB != 0
                    || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0;
                ann.set(CLAIM_CONSUME, h);
                match self
                    .head
                    .compare_exchange_weak(h, ready, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => {
                        trace!("lane {me}: claim_head {h} tomb={tombstone} (stamp {raw:#x})");
                        return Ok(Claim {
                            pos: h,
                            slot,
                            len,
                            tombstone,
                        });
                    }
                    Err(cur) => h = cur,
                }
            } else {
                let cur = self.head.load(Ordering::Relaxed);
                if cur != h {
                    h = cur;
                } else if (s.wrapping_sub(ready) as i64) < 0 {
                    return Err(if self.drained(h) {
                        DeqErr::Closed
                    } else {
                        DeqErr::Empty
                    });
                } else {
                    return Err(DeqErr::Corrupt);
                }
            }
        }
    }

    fn drained(&self, h: u64) -> bool {
        self.closed() && self.tail.load(Ordering::SeqCst) <= h
    }

    fn release(&self, claim: &Claim<'_>) {
        let old = claim
            .slot
            .stamp
            .swap((claim.pos + CAP) << 1, Ordering::Release);
        trace!("release {} (stamp was {old:#x})", claim.pos);
        assert_eq!(old & STAMP_WAITER, 0);
    }

    fn mpmc_dequeue_try(&self, c: Ctx) -> Result<u64, DeqErr> {
        let ann = self.announce(c);
        loop {
            let claim = self.claim_head(&ann)?;
            if c.stop == Step::ConsumeClaimed {
                std::mem::forget(ann);
                return Err(DeqErr::Stopped);
            }
            if claim.tombstone {
                self.count(&self.stats.skipped);
                self.release(&claim);
                continue;
            }
            if claim.len != 8 {
                self.release(&claim);
                return Err(DeqErr::Corrupt);
            }
            // SAFETY (model): we own position claim.pos.
            let msg = claim.slot.payload.with(|p| unsafe { *p });
            if c.stop == Step::ConsumeCopied {
                std::mem::forget(ann);
                return Err(DeqErr::Stopped);
            }
            self.release(&claim);
            trace!("lane {}: dequeued {msg:x}", c.me);
            return Ok(msg);
        }
    }

    /// `dequeue_try` (recovery always due).
    fn dequeue_try(&self, c: Ctx) -> Result<u64, DeqErr> {
        loop {
            match self.mpmc_dequeue_try(c) {
                Err(DeqErr::Empty) => {
                    if !self.recover_consumer_side(c)? {
                        return Err(DeqErr::Empty);
                    }
                }
                Err(DeqErr::Closed) => {
                    if !self.recover_orphans(c)? {
                        return Err(DeqErr::Closed);
                    }
                }
                other => return other,
            }
        }
    }

    // ---- batch.rs (multi-producer, multi-consumer) ----

    /// `claim_tail_range`: the run of up to `want` free positions from
    /// tail, announced as a range, claimed with one CAS.
    fn claim_tail_range(
        &self,
        want: u64,
        ann: &Announce<'_>,
        c: Ctx,
    ) -> Result<(u64, u64), EnqErr> {
        let mut t = self.tail.load(Ordering::Relaxed);
        loop {
            let s = stamp_pos(self.slot(t).stamp.load(Ordering::Acquire));
            if s == t {
                let mut k = 1;
                while k < want && stamp_pos(self.slot(t + k).stamp.load(Ordering::Acquire)) == t + k
                {
                    k += 1;
                }
                ann.set_range(CLAIM_PRODUCE, t, k);
                match self
                    .tail
                    .compare_exchange_weak(t, t + k, Ordering::SeqCst, Ordering::Relaxed)
                {
                    Ok(_) => {
                        trace!("lane {}: claim_tail_range {t}+{k}", c.me);
                        return Ok((t, k));
                    }
                    Err(cur) => t = cur,
                }
            } else {
                let cur = self.tail.load(Ordering::Relaxed);
                if cur != t {
                    t = cur;
                } else if (s.wrapping_sub(t) as i64) < 0 {
                    return Err(EnqErr::Full);
                } else {
                    return Err(EnqErr::Corrupt);
                }
            }
        }
    }

    /// `mpmc_enqueue_batch`: how many of `msgs` went in.
    fn mpmc_enqueue_batch(&self, msgs: &[u64], c: Ctx) -> Result<usize, EnqErr> {
        if self.closed() {
            return Err(EnqErr::Closed);
        }
        let ann = self.announce(c);
        let (t, k) = self.claim_tail_range(msgs.len() as u64, &ann, c)?;
        if self.closed() {
            for p in t..t + k {
                self.publish(p, None, SLOT_TOMBSTONE, ctx(c.me));
                self.count(&self.stats.tombstones);
                if c.stop == Step::BatchTombstonedOne && k >= 2 {
                    std::mem::forget(ann);
                    return Err(EnqErr::Stopped);
                }
            }
            return Err(EnqErr::Closed);
        }
        // As the code: the range's first position last, so that consumers
        // take the range whole.
        for (i, &m) in msgs[..k as usize].iter().enumerate().skip(1) {
            self.publish(t + i as u64, Some(m), 0, ctx(c.me));
            if c.stop == Step::BatchPublishedOne {
                std::mem::forget(ann);
                return Err(EnqErr::Stopped);
            }
        }
        self.publish(t, Some(msgs[0]), 0, ctx(c.me));
        Ok(k as usize)
    }

    /// `enqueue_batch` (recovery always due, as `enqueue_try`).
    fn enqueue_batch(&self, msgs: &[u64], c: Ctx) -> Result<usize, EnqErr> {
        match self.mpmc_enqueue_batch(msgs, c) {
            Err(EnqErr::Full) => {
                self.recover_producer_side(c)?;
                Err(EnqErr::Full)
            }
            other => other,
        }
    }

    /// `claim_head_range`: the run of up to `max` published positions from
    /// head, announced as a range, claimed with one CAS (no byte budget).
    fn claim_head_range(&self, max: u64, ann: &Announce<'_>, c: Ctx) -> Result<(u64, u64), DeqErr> {
        let mut h = self.head.load(Ordering::Relaxed);
        loop {
            let s = stamp_pos(self.slot(h).stamp.load(Ordering::Acquire));
            if s == h + 1 {
                let mut k = 0;
                while k < max
                    && stamp_pos(self.slot(h + k).stamp.load(Ordering::Acquire)) == h + k + 1
                {
                    k += 1;
                }
                ann.set_range(CLAIM_CONSUME, h, k);
                match self
                    .head
                    .compare_exchange_weak(h, h + k, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => {
                        trace!("lane {}: claim_head_range {h}+{k}", c.me);
                        return Ok((h, k));
                    }
                    Err(cur) => h = cur,
                }
            } else {
                let cur = self.head.load(Ordering::Relaxed);
                if cur != h {
                    h = cur;
                } else if (s.wrapping_sub(h + 1) as i64) < 0 {
                    return Err(if self.drained(h) {
                        DeqErr::Closed
                    } else {
                        DeqErr::Empty
                    });
                } else {
                    return Err(DeqErr::Corrupt);
                }
            }
        }
    }

    /// `mpmc_dequeue_batch` with its `mpmc_dequeue_range` (no panicking
    /// callback, so `Rest` only ever finds the range done): the messages
    /// handed out, pushed to `got` as they are (so that a thread stopped
    /// half-way keeps what it was given).
    fn mpmc_dequeue_batch(&self, max: u64, got: &mut Vec<u64>, c: Ctx) -> Result<(), DeqErr> {
        let ann = self.announce(c);
        loop {
            let (h, k) = self.claim_head_range(max.min(CAP), &ann, c)?;
            let mut delivered = 0;
            for p in h..h + k {
                let slot = self.slot(p);
                let raw = slot.stamp.load(Ordering::Relaxed);
                let tomb = raw & STAMP_TOMB != 0
                    || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0;
                if tomb {
                    self.count(&self.stats.skipped);
                } else {
                    assert_eq!(slot.len.load(Ordering::Relaxed), 8);
                    // SAFETY (model): we own position p until released.
                    got.push(slot.payload.with(|m| unsafe { *m }));
                    delivered += 1;
                }
                self.release(&Claim {
                    pos: p,
                    slot,
                    len: 0,
                    tombstone: false,
                });
                if c.stop == Step::BatchConsumedOne && k >= 2 {
                    std::mem::forget(ann);
                    return Err(DeqErr::Stopped);
                }
            }
            if delivered > 0 {
                return Ok(());
            }
        }
    }

    /// `dequeue_batch` (recovery always due, as `dequeue_try`).
    fn dequeue_batch(&self, max: u64, got: &mut Vec<u64>, c: Ctx) -> Result<(), DeqErr> {
        loop {
            match self.mpmc_dequeue_batch(max, got, c) {
                Err(DeqErr::Empty) => {
                    if !self.recover_consumer_side(c)? {
                        return Err(DeqErr::Empty);
                    }
                }
                Err(DeqErr::Closed) => {
                    if !self.recover_orphans(c)? {
                        return Err(DeqErr::Closed);
                    }
                }
                other => return other,
            }
        }
    }

    fn close(&self) {
        self.closed.store(1, Ordering::SeqCst);
    }

    // ---- recover.rs ----

    fn recover_consumer_side(&self, c: Ctx) -> Result<bool, DeqErr> {
        let h = self.head.load(Ordering::SeqCst);
        let t = self.tail.load(Ordering::SeqCst);
        if t < h {
            return Err(DeqErr::Corrupt);
        }
        if t > h && self.recover_hole(h) {
            return Ok(true);
        }
        self.recover_orphans(c)
    }

    fn recover_producer_side(&self, c: Ctx) -> Result<bool, EnqErr> {
        let t = self.tail.load(Ordering::SeqCst);
        if t < CAP {
            return Ok(false);
        }
        let back = t - CAP;
        let raw = self.slot(t).stamp.load(Ordering::Acquire);
        trace!(
            "lane {}: recover_producer_side: tail {t}, stamp {raw:#x}",
            c.me
        );
        let s = stamp_pos(raw);
        if s == back {
            return Ok(self.recover_hole(back));
        }
        if s == back + 1 && self.head.load(Ordering::SeqCst) > back {
            return self.recover_orphan(back, c).map_err(|e| match e {
                DeqErr::Stopped => EnqErr::Stopped,
                _ => EnqErr::Corrupt,
            });
        }
        Ok(false)
    }

    fn holds_tombstone(slot: &Slot, stamp: u64) -> bool {
        stamp & STAMP_TOMB != 0 || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0
    }

    fn recover_hole(&self, p: u64) -> bool {
        let slot = self.slot(p);
        let cur = slot.stamp.load(Ordering::Acquire);
        let s = stamp_pos(cur);
        let back = p.checked_sub(CAP);
        let republish = back.is_some_and(|b| s == b + 1);
        if s != p && !republish {
            return false;
        }
        let names = [p, back.unwrap_or(p)];
        if self.named_by_live(&names) == Named::Live {
            return false;
        }
        let done = if republish {
            (p + 1) << 1 | (cur & STAMP_TOMB)
        } else {
            (p + 1) << 1 | STAMP_TOMB
        };
        if slot
            .stamp
            .compare_exchange(cur, done, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        trace!("recover_hole {p}: {cur:#x} -> {done:#x} republish={republish}");
        if republish {
            if !Self::holds_tombstone(slot, cur) {
                self.count(&self.stats.redelivered);
            }
        } else {
            self.count(&self.stats.tombstones);
            self.count(&self.stats.dead_claims);
        }
        true
    }

    fn recover_orphans(&self, c: Ctx) -> Result<bool, DeqErr> {
        let mut any = false;
        let mut claims = self.dead_claims(CLAIM_CONSUME);
        // Oldest first, as in src/queue/recover.rs.
        claims.sort_unstable();
        for (start, len) in claims {
            for h in (0..len.min(CAP)).map_while(|i| start.checked_add(i)) {
                any |= self.recover_orphan(h, c)?;
            }
        }
        Ok(any)
    }

    fn recover_orphan(&self, h: u64, c: Ctx) -> Result<bool, DeqErr> {
        let slot = self.slot(h);
        let target = h + CAP;
        let head = self.head.load(Ordering::SeqCst);
        if head <= h {
            return Ok(false);
        }
        let stamp = slot.stamp.load(Ordering::Acquire);
        trace!(
            "lane {}: recover_orphan {h}: head {head}, stamp {stamp:#x}",
            c.me
        );
        if stamp_pos(stamp) != h + 1 {
            return Ok(false);
        }
        if self.named_by_live(&[h, target]) == Named::Live {
            return Ok(false);
        }
        trace!("lane {}: recover_orphan {h}: judged dead", c.me);
        let ann = self.announce(c);
        loop {
            let t = self.tail.load(Ordering::SeqCst);
            if t > target {
                return Ok(false);
            }
            if t < target {
                let pos = match self.claim_tail(&ann, ctx(c.me)) {
                    Ok(pos) => pos,
                    Err(EnqErr::Full) => return Ok(false),
                    Err(_) => return Err(DeqErr::Corrupt),
                };
                self.publish(pos, None, SLOT_TOMBSTONE, ctx(c.me));
                self.count(&self.stats.tombstones);
                continue;
            }
            ann.set(CLAIM_PRODUCE, target);
            let again = slot.stamp.load(Ordering::Acquire);
            trace!(
                "lane {}: recover_orphan {h}: tail {t}, stamp again {again:#x}",
                c.me
            );
            if stamp_pos(again) != h + 1 {
                return Ok(false);
            }
            if self
                .tail
                .compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            if c.stop == Step::RedeliverClaimed {
                std::mem::forget(ann);
                return Err(DeqErr::Stopped);
            }
            let cur = slot.stamp.load(Ordering::Relaxed);
            let old = slot
                .stamp
                .swap((target + 1) << 1 | (cur & STAMP_TOMB), Ordering::Release);
            trace!(
                "lane {}: republished {h} as {target} (stamp was {old:#x})",
                c.me
            );
            assert_eq!(old & STAMP_WAITER, 0);
            if !Self::holds_tombstone(slot, cur) {
                self.count(&self.stats.redelivered);
            }
            return Ok(true);
        }
    }

    // ---- model helpers ----

    /// Enqueues from the main thread (setup, before any worker runs).
    fn fill(&self, msgs: &[u64]) {
        for &m in msgs {
            self.enqueue_try(m, ctx(MAIN)).unwrap();
        }
    }

    /// The final single-threaded pass: closes, then dequeues (with
    /// recovery) until `Closed`. Returns what it got and whether it reached
    /// `Closed` (false: a live claim still holds the queue).
    fn close_and_drain(&self) -> (Vec<u64>, bool) {
        self.close();
        let mut got = Vec::new();
        for _ in 0..8 {
            match self.dequeue_try(ctx(MAIN)) {
                Ok(m) => got.push(m),
                Err(DeqErr::Closed) => return (got, true),
                Err(DeqErr::Empty) => return (got, false),
                Err(e) => panic!("drain: {e:?}"),
            }
        }
        panic!("drain did not end");
    }
}

/// Runs `f` over every interleaving loom explores (preemption bound
/// `LOOM_MAX_PREEMPTIONS`, else `default_bound`).
fn check(name: &str, default_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    driver::check(name, default_bound, Some(&TRACE), f);
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

// ---- 1. producer crash ----

/// Producer A (lane 0) crashes at `stop`; producer B (lane 1) enqueues;
/// consumer C (lane 2) dequeues with recovery; then close and drain.
fn producer_crash(stop: Step, announce: Ordering) {
    check(
        &format!("producer_crash({stop:?}, {announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            let a = {
                let q = q.clone();
                thread::spawn(move || {
                    let r = q.enqueue_try(0xA1, Ctx { me: 0, stop });
                    assert_eq!(r, Err(EnqErr::Stopped));
                    q.die(0);
                })
            };
            let b = {
                let q = q.clone();
                thread::spawn(move || q.enqueue_try(0xB1, ctx(1)))
            };
            let c = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        match q.dequeue_try(ctx(2)) {
                            Ok(m) => got.push(m),
                            Err(DeqErr::Empty) => {}
                            Err(e) => panic!("consumer: {e:?}"),
                        }
                    }
                    got
                })
            };
            a.join().unwrap();
            assert_eq!(b.join().unwrap(), Ok(()));
            let mut got = c.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed, "consumers reach Closed after close");
            assert_eq!(got, vec![0xB1], "B's message exactly once, nothing else");
            let claimed = stop != Step::ProduceAnnounced;
            let want = u64::from(claimed);
            assert_eq!(
                q.stat(&q.stats.tombstones),
                want,
                "one tombstone per dead claim"
            );
            assert_eq!(q.stat(&q.stats.dead_claims), want);
            assert_eq!(q.stat(&q.stats.skipped), want);
            assert_eq!(q.stat(&q.stats.redelivered), 0);
        },
    );
}

#[test]
fn producer_crash_after_announce() {
    producer_crash(Step::ProduceAnnounced, CODE);
}

#[test]
fn producer_crash_after_claim() {
    producer_crash(Step::ProduceClaimed, CODE);
}

#[test]
fn producer_crash_after_write() {
    producer_crash(Step::ProduceWritten, CODE);
}

// ---- 2. consumer crash ----

/// `prefill` messages are enqueued first (by the main thread); consumer A
/// (lane 0) crashes at `stop` holding the first; consumer B (lane 1)
/// dequeues with recovery; producer P (lane 2) enqueues one message with
/// recovery when full; then close and drain.
///
/// Preemption bound 2 as is (the bug needs two preemptions with one
/// message), 1 with the fix (bound 2 passes too, in 82 s, 83 s and 355 s).
fn consumer_crash(stop: Step, prefill: &'static [u64], announce: Ordering) {
    let bound = if announce == BEFORE_FIX { 2 } else { 1 };
    let name = format!("consumer_crash({stop:?}, {prefill:x?}, {announce:?})");
    check(&name, bound, move || {
        let q = Arc::new(Q::new(announce));
        q.fill(prefill);
        let a = {
            let q = q.clone();
            thread::spawn(move || {
                // Crashes holding a message, or finds none (B was first)
                // and exits.
                let r = q.dequeue_try(Ctx { me: 0, stop });
                assert!(matches!(r, Err(DeqErr::Stopped | DeqErr::Empty)), "{r:?}");
                q.die(0);
                r == Err(DeqErr::Stopped)
            })
        };
        let b = {
            let q = q.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    match q.dequeue_try(ctx(1)) {
                        Ok(m) => got.push(m),
                        Err(DeqErr::Empty) => {}
                        Err(e) => panic!("consumer B: {e:?}"),
                    }
                }
                got
            })
        };
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    match q.enqueue_try(0xC1, ctx(2)) {
                        Ok(()) => return true,
                        Err(EnqErr::Full) => {}
                        Err(e) => panic!("producer: {e:?}"),
                    }
                }
                false
            })
        };
        let crashed = a.join().unwrap();
        let mut got = b.join().unwrap();
        let sent = p.join().unwrap();
        let (rest, closed) = q.close_and_drain();
        got.extend(rest);
        assert!(closed, "consumers reach Closed after close");
        let mut want = prefill.to_vec();
        if sent {
            want.push(0xC1);
        }
        assert_eq!(
            sorted(got.clone()),
            sorted(want),
            "every message exactly once, the dead consumer's to a live one: {got:x?}"
        );
        assert_eq!(
            q.stat(&q.stats.redelivered),
            u64::from(crashed),
            "the dead consumer's message redelivered, counted once"
        );
        assert_eq!(q.stat(&q.stats.dead_claims), 0);
    });
}

/// Why the models below fail as is: a recoverer judging position `h` reads
/// the lane of a live consumer that has released `h` and announced a later
/// claim with a Relaxed store. Reading that store gives it no view of the
/// release, so its stamp loads may still say "`h` held"; it claims
/// `h + capacity` on tail and swaps the slot's stamp unconditionally,
/// republishing a message already delivered (or a released slot).
const ANNOUNCE_BUG: &str = "finds bug: a Relaxed announcement lets recover_orphan redeliver a message a live consumer released";

#[test]
#[ignore = "the protocol before its fix, kept to show the model finds the bug (scripts/model.sh --ignored): a Relaxed announcement lets recover_orphan redeliver a message a live consumer released"]
fn consumer_crash_after_claim() {
    let _ = ANNOUNCE_BUG;
    consumer_crash(Step::ConsumeClaimed, &[0xF1], BEFORE_FIX);
}

#[test]
#[ignore = "the protocol before its fix, kept to show the model finds the bug (scripts/model.sh --ignored): a Relaxed announcement lets recover_orphan redeliver a message a live consumer released"]
fn consumer_crash_after_copy() {
    consumer_crash(Step::ConsumeCopied, &[0xF1], BEFORE_FIX);
}

#[test]
#[ignore = "the protocol before its fix, kept to show the model finds the bug (scripts/model.sh --ignored): a Relaxed announcement lets recover_orphan redeliver a message a live consumer released"]
fn consumer_crash_ring_full() {
    consumer_crash(Step::ConsumeClaimed, &[0xF1, 0xF2], BEFORE_FIX);
}

#[test]
fn consumer_crash_after_claim_fixed() {
    consumer_crash(Step::ConsumeClaimed, &[0xF1], CODE);
}

#[test]
fn consumer_crash_after_copy_fixed() {
    consumer_crash(Step::ConsumeCopied, &[0xF1], CODE);
}

#[test]
fn consumer_crash_ring_full_fixed() {
    consumer_crash(Step::ConsumeClaimed, &[0xF1, 0xF2], CODE);
}

// ---- 3. a live claim is never recovered ----

/// Producer A (lane 0) is slow but alive between claim and publish while
/// consumer C (lane 1) runs recovery: A's message must be delivered and no
/// tombstone written.
fn slow_producer_is_not_recovered(announce: Ordering) {
    check(
        &format!("slow_producer_is_not_recovered({announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            let a = {
                let q = q.clone();
                thread::spawn(move || q.enqueue_try(0xA1, ctx(0)))
            };
            let c = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        match q.dequeue_try(ctx(1)) {
                            Ok(m) => got.push(m),
                            Err(DeqErr::Empty) => {}
                            Err(e) => panic!("consumer: {e:?}"),
                        }
                    }
                    got
                })
            };
            assert_eq!(a.join().unwrap(), Ok(()));
            let mut got = c.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed);
            assert_eq!(got, vec![0xA1]);
            assert_eq!(
                q.stat(&q.stats.tombstones),
                0,
                "a live claim is never tombstoned"
            );
        },
    );
}

/// Producer A (lane 0) stops (SIGSTOP) after its tail CAS and never
/// resumes, alive; consumer C (lane 1) runs recovery: nothing is recovered,
/// and the queue stays held (drain ends `Empty`, not `Closed`).
fn stopped_producer_is_not_recovered(announce: Ordering) {
    check(
        &format!("stopped_producer_is_not_recovered({announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            q.fill(&[0xF1]);
            let a = {
                let q = q.clone();
                thread::spawn(move || {
                    let stop = Ctx {
                        me: 0,
                        stop: Step::ProduceClaimed,
                    };
                    assert_eq!(q.enqueue_try(0xA1, stop), Err(EnqErr::Stopped));
                    // Stopped, not dead: `dead` is never set.
                })
            };
            let c = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        match q.dequeue_try(ctx(1)) {
                            Ok(m) => got.push(m),
                            Err(DeqErr::Empty) => {}
                            Err(e) => panic!("consumer: {e:?}"),
                        }
                    }
                    got
                })
            };
            a.join().unwrap();
            let mut got = c.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert_eq!(got, vec![0xF1]);
            assert!(!closed, "a stopped producer's claim holds the queue");
            assert_eq!(q.stat(&q.stats.tombstones), 0);
            assert_eq!(q.stat(&q.stats.dead_claims), 0);
        },
    );
}

/// Consumer A (lane 0) is slow but alive holding the oldest message of a
/// full ring while producer P (lane 1) runs producer-side recovery and
/// consumer B (lane 2) consumer-side recovery: no redelivery.
fn slow_consumer_is_not_recovered(announce: Ordering) {
    check(
        &format!("slow_consumer_is_not_recovered({announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            q.fill(&[0xF1, 0xF2]);
            let a = {
                let q = q.clone();
                thread::spawn(move || q.dequeue_try(ctx(0)))
            };
            let p = {
                let q = q.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        match q.enqueue_try(0xC1, ctx(1)) {
                            Ok(()) => return true,
                            Err(EnqErr::Full) => {}
                            Err(e) => panic!("producer: {e:?}"),
                        }
                    }
                    false
                })
            };
            let b = {
                let q = q.clone();
                thread::spawn(move || q.dequeue_try(ctx(2)))
            };
            let mut got = vec![a.join().unwrap().unwrap()];
            let sent = p.join().unwrap();
            match b.join().unwrap() {
                Ok(m) => got.push(m),
                Err(DeqErr::Empty) => {}
                Err(e) => panic!("consumer B: {e:?}"),
            }
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed);
            let mut want = vec![0xF1, 0xF2];
            if sent {
                want.push(0xC1);
            }
            assert_eq!(sorted(got), sorted(want));
            assert_eq!(
                q.stat(&q.stats.redelivered),
                0,
                "a live claim is never redelivered"
            );
            assert_eq!(q.stat(&q.stats.tombstones), 0);
        },
    );
}

// ---- 4. racing recoverers ----

/// A producer (lane 0) claimed position 0 and died (set up before the
/// workers start); a message follows at position 1. Two consumers (lanes 1
/// and 2) race to recover the hole: exactly one tombstone.
fn recoverers_race_on_a_dead_producer(announce: Ordering) {
    check(
        &format!("recoverers_race_on_a_dead_producer({announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            let dying = Ctx {
                me: 0,
                stop: Step::ProduceClaimed,
            };
            assert_eq!(q.enqueue_try(0xA1, dying), Err(EnqErr::Stopped));
            q.die(0);
            q.fill(&[0xF1]);
            let workers: Vec<_> = [1, 2]
                .map(|me| {
                    let q = q.clone();
                    thread::spawn(move || q.dequeue_try(ctx(me)).ok())
                })
                .into_iter()
                .collect();
            let mut got: Vec<u64> = workers
                .into_iter()
                .filter_map(|w| w.join().unwrap())
                .collect();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed);
            assert_eq!(got, vec![0xF1]);
            assert_eq!(q.stat(&q.stats.tombstones), 1, "recovered once");
            assert_eq!(q.stat(&q.stats.dead_claims), 1);
        },
    );
}

/// A consumer (lane 0) claimed the oldest message of a full ring and died
/// (set up before the workers start). Consumer B (lane 1) and producer P
/// (lane 2) race to redeliver it: exactly one redelivery.
fn recoverers_race_on_a_dead_consumer(announce: Ordering) {
    check(
        &format!("recoverers_race_on_a_dead_consumer({announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            q.fill(&[0xF1, 0xF2]);
            let dying = Ctx {
                me: 0,
                stop: Step::ConsumeClaimed,
            };
            assert_eq!(q.dequeue_try(dying), Err(DeqErr::Stopped));
            q.die(0);
            let b = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        if let Ok(m) = q.dequeue_try(ctx(1)) {
                            got.push(m);
                        }
                    }
                    got
                })
            };
            let p = {
                let q = q.clone();
                thread::spawn(move || q.enqueue_try(0xC1, ctx(2)).is_ok())
            };
            let mut got = b.join().unwrap();
            let sent = p.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed);
            let mut want = vec![0xF1, 0xF2];
            if sent {
                want.push(0xC1);
            }
            assert_eq!(sorted(got), sorted(want));
            assert_eq!(q.stat(&q.stats.redelivered), 1, "redelivered once");
        },
    );
}

/// A consumer (lane 0) claimed a message and died; recoverer R (lane 1)
/// dies after claiming the republish position (`queue-redeliver-claimed`);
/// consumer B (lane 2) finishes the republish: delivered once, counted once.
fn recoverer_crash_mid_republish(announce: Ordering) {
    check(
        &format!("recoverer_crash_mid_republish({announce:?})"),
        2,
        move || {
            let q = Arc::new(Q::new(announce));
            q.fill(&[0xF1]);
            let dying = Ctx {
                me: 0,
                stop: Step::ConsumeClaimed,
            };
            assert_eq!(q.dequeue_try(dying), Err(DeqErr::Stopped));
            q.die(0);
            let r = {
                let q = q.clone();
                thread::spawn(move || {
                    let stop = Ctx {
                        me: 1,
                        stop: Step::RedeliverClaimed,
                    };
                    let r = q.recover_orphans(stop);
                    q.die(1);
                    r
                })
            };
            let b = {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..2 {
                        if let Ok(m) = q.dequeue_try(ctx(2)) {
                            got.push(m);
                        }
                    }
                    got
                })
            };
            let r = r.join().unwrap();
            assert!(matches!(r, Ok(false) | Err(DeqErr::Stopped)), "{r:?}");
            let mut got = b.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed);
            assert_eq!(got, vec![0xF1]);
            assert_eq!(q.stat(&q.stats.redelivered), 1, "redelivered once");
        },
    );
}

// ---- the standalone models, as is ----

#[test]
fn slow_producer_is_not_recovered_as_is() {
    slow_producer_is_not_recovered(CODE);
}

#[test]
fn stopped_producer_is_not_recovered_as_is() {
    stopped_producer_is_not_recovered(CODE);
}

#[test]
fn slow_consumer_is_not_recovered_as_is() {
    slow_consumer_is_not_recovered(CODE);
}

#[test]
fn recoverers_race_on_a_dead_producer_as_is() {
    recoverers_race_on_a_dead_producer(CODE);
}

#[test]
fn recoverers_race_on_a_dead_consumer_as_is() {
    recoverers_race_on_a_dead_consumer(CODE);
}

#[test]
fn recoverer_crash_mid_republish_as_is() {
    recoverer_crash_mid_republish(CODE);
}

// ---- 5. range claims (enqueue_batch, dequeue_batch) ----

/// Consumer C (lane 1): up to `n` dequeues with recovery.
fn consume(q: &Arc<Q>, me: usize, n: usize) -> thread::JoinHandle<Vec<u64>> {
    let q = q.clone();
    thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..n {
            match q.dequeue_try(ctx(me)) {
                Ok(m) => got.push(m),
                Err(DeqErr::Empty) => {}
                Err(e) => panic!("consumer {me}: {e:?}"),
            }
        }
        got
    })
}

/// Batch producer A (lane 0) claims positions 0 and 1 with one CAS,
/// publishes 1 and is killed before 0 (the range's first position comes
/// last); consumer C (lane 1) dequeues with recovery, and so does recoverer
/// R (lane 2, a second consumer): exactly position 0 is tombstoned (once),
/// A's second message is delivered once.
fn batch_producer_crash(ranges: Ranges) {
    check(&format!("batch_producer_crash({ranges:?})"), 2, move || {
        let q = Arc::new(Q::ranged(CODE, ranges));
        let a = {
            let q = q.clone();
            thread::spawn(move || {
                let stop = Ctx {
                    me: 0,
                    stop: Step::BatchPublishedOne,
                };
                assert_eq!(q.enqueue_batch(&[0xA1, 0xA2], stop), Err(EnqErr::Stopped));
                q.die(0);
            })
        };
        let c = consume(&q, 1, 2);
        let r = consume(&q, 2, 1);
        a.join().unwrap();
        let mut got = c.join().unwrap();
        got.extend(r.join().unwrap());
        let (rest, closed) = q.close_and_drain();
        got.extend(rest);
        assert!(closed, "consumers reach Closed after close");
        assert_eq!(got, vec![0xA2], "the published one exactly once");
        assert_eq!(q.stat(&q.stats.tombstones), 1, "the unpublished one, once");
        assert_eq!(q.stat(&q.stats.dead_claims), 1);
        assert_eq!(q.stat(&q.stats.skipped), 1, "the tombstone skipped");
        assert_eq!(q.stat(&q.stats.redelivered), 0);
    });
}

/// Batch producer A (lane 0) is slow but alive inside its range of two
/// (`stop` Never) or stopped (SIGSTOP, never resumed) after publishing the
/// second position (the first comes last); consumer C (lane 1) runs
/// recovery at the head, inside A's range: nothing is recovered.
fn live_batch_producer_is_not_recovered(stop: Step, ranges: Ranges) {
    check(
        &format!("live_batch_producer_is_not_recovered({stop:?}, {ranges:?})"),
        2,
        move || {
            let q = Arc::new(Q::ranged(CODE, ranges));
            let a = {
                let q = q.clone();
                thread::spawn(move || {
                    let r = q.enqueue_batch(&[0xA1, 0xA2], Ctx { me: 0, stop });
                    // Stopped or slow, never dead: `dead` is never set.
                    if stop == Step::Never {
                        assert_eq!(r, Ok(2));
                    } else {
                        assert_eq!(r, Err(EnqErr::Stopped));
                    }
                })
            };
            let c = consume(&q, 1, 3);
            a.join().unwrap();
            let mut got = c.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert_eq!(
                q.stat(&q.stats.tombstones),
                0,
                "a live range is never tombstoned"
            );
            if stop == Step::Never {
                assert!(closed);
                assert_eq!(got, vec![0xA1, 0xA2]);
            } else {
                assert!(!closed, "a stopped producer's range holds the queue");
                assert_eq!(
                    got,
                    Vec::<u64>::new(),
                    "its first position is not published"
                );
            }
        },
    );
}

/// Batch producer A (lane 0) claims a range of two while the main thread
/// closes the queue; if A sees the close after its claim, it tombstones the
/// range's first position and is stopped (SIGSTOP, never resumed) before
/// the second. The main thread then dequeues with recovery: the head moves
/// past the tombstone into A's live range, which A's lane names only
/// through its `claim_len`, and nothing of it is recovered. (Publishing a
/// range's first position last keeps consumers out of a live range
/// otherwise; this path tombstones in order.)
fn closing_batch_producer_is_not_recovered(ranges: Ranges) {
    check(
        &format!("closing_batch_producer_is_not_recovered({ranges:?})"),
        2,
        move || {
            let q = Arc::new(Q::ranged(CODE, ranges));
            let a = {
                let q = q.clone();
                thread::spawn(move || {
                    let stop = Ctx {
                        me: 0,
                        stop: Step::BatchTombstonedOne,
                    };
                    let r = q.enqueue_batch(&[0xA1, 0xA2], stop);
                    assert!(
                        matches!(r, Ok(2) | Err(EnqErr::Closed | EnqErr::Stopped)),
                        "{r:?}"
                    );
                })
            };
            q.close();
            for _ in 0..3 {
                match q.dequeue_try(ctx(MAIN)) {
                    Ok(_) | Err(DeqErr::Empty | DeqErr::Closed) => {}
                    Err(e) => panic!("dequeue: {e:?}"),
                }
            }
            a.join().unwrap();
            assert_eq!(
                q.stat(&q.stats.dead_claims),
                0,
                "a live range is never recovered"
            );
        },
    );
}

/// Producer A (lane 0) enqueues a batch of two (a range, then cleared),
/// then one message with a single claim in the same lane, and dies after
/// that claim's tail CAS (`dies`) or completes it; consumer C (lane 1)
/// dequeues with recovery. The lane's single claim must not be read with
/// the range's length, nor the range with the reset length: the completed
/// range is never recovered, the dead single claim is tombstoned once.
fn range_then_single_claim(dies: bool, ranges: Ranges) {
    check(
        &format!("range_then_single_claim(dies: {dies}, {ranges:?})"),
        2,
        move || {
            let q = Arc::new(Q::ranged(CODE, ranges));
            let a = {
                let q = q.clone();
                thread::spawn(move || {
                    assert_eq!(q.enqueue_batch(&[0xA1, 0xA2], ctx(0)), Ok(2));
                    let stop = if dies {
                        Step::ProduceClaimed
                    } else {
                        Step::Never
                    };
                    let mut sent = false;
                    for _ in 0..2 {
                        match q.enqueue_try(0xA3, Ctx { me: 0, stop }) {
                            Ok(()) => {
                                sent = true;
                                break;
                            }
                            Err(EnqErr::Full) => {}
                            Err(EnqErr::Stopped) if dies => {
                                q.die(0);
                                break;
                            }
                            Err(e) => panic!("producer: {e:?}"),
                        }
                    }
                    sent
                })
            };
            let c = consume(&q, 1, 3);
            let sent = a.join().unwrap();
            let mut got = c.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            let mut want = vec![0xA1, 0xA2];
            if sent {
                want.push(0xA3);
            }
            assert_eq!(got, want, "every message once, in order");
            assert_eq!(q.stat(&q.stats.redelivered), 0);
            // Tail 3: A's single claim of position 2 (not made if the ring
            // was full both times).
            let claimed = dies && q.tail.load(Ordering::SeqCst) == 3;
            assert_eq!(q.stat(&q.stats.tombstones), u64::from(claimed));
            assert!(
                closed,
                "a dead claim is recovered, a completed one holds nothing"
            );
        },
    );
}

/// A full ring (two messages); batch consumer A (lane 0) claims both with
/// one CAS, is given the first, releases it and is killed; consumer B
/// (lane 1) dequeues with recovery, producer P (lane 2) enqueues one with
/// recovery when full: every message delivered exactly once (A's first to
/// A, its second redelivered once), the released one never again.
fn batch_consumer_crash(ranges: Ranges, bound: usize) {
    check(
        &format!("batch_consumer_crash({ranges:?})"),
        bound,
        move || {
            let q = Arc::new(Q::ranged(CODE, ranges));
            q.fill(&[0xF1, 0xF2]);
            let a = {
                let q = q.clone();
                thread::spawn(move || {
                    let stop = Ctx {
                        me: 0,
                        stop: Step::BatchConsumedOne,
                    };
                    let mut got = Vec::new();
                    let r = q.dequeue_batch(2, &mut got, stop);
                    // Stopped half-way, or B was first (one message or none).
                    assert!(
                        matches!(r, Ok(()) | Err(DeqErr::Stopped | DeqErr::Empty)),
                        "{r:?}"
                    );
                    q.die(0);
                    (got, r == Err(DeqErr::Stopped))
                })
            };
            let b = consume(&q, 1, 2);
            let p = {
                let q = q.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        match q.enqueue_try(0xC1, ctx(2)) {
                            Ok(()) => return true,
                            Err(EnqErr::Full) => {}
                            Err(e) => panic!("producer: {e:?}"),
                        }
                    }
                    false
                })
            };
            let (mut got, crashed) = a.join().unwrap();
            got.extend(b.join().unwrap());
            let sent = p.join().unwrap();
            let (rest, closed) = q.close_and_drain();
            got.extend(rest);
            assert!(closed, "consumers reach Closed after close");
            let mut want = vec![0xF1, 0xF2];
            if sent {
                want.push(0xC1);
            }
            assert_eq!(sorted(got.clone()), sorted(want), "exactly once: {got:x?}");
            assert_eq!(
                q.stat(&q.stats.redelivered),
                u64::from(crashed),
                "the unreleased one redelivered once, the released one never"
            );
        },
    );
}

#[test]
fn batch_producer_crash_after_one() {
    batch_producer_crash(Ranges::Code);
}

#[test]
fn slow_batch_producer_is_not_recovered() {
    live_batch_producer_is_not_recovered(Step::Never, Ranges::Code);
}

#[test]
fn stopped_batch_producer_is_not_recovered() {
    live_batch_producer_is_not_recovered(Step::BatchPublishedOne, Ranges::Code);
}

#[test]
fn closing_batch_producer_is_not_recovered_code() {
    closing_batch_producer_is_not_recovered(Ranges::Code);
}

#[test]
fn range_then_single_claim_completes() {
    range_then_single_claim(false, Ranges::Code);
}

#[test]
fn range_then_single_claim_dies() {
    range_then_single_claim(true, Ranges::Code);
}

#[test]
fn batch_consumer_crash_after_one() {
    batch_consumer_crash(Ranges::Code, 1);
}

// ---- weakened range reading, kept to show the models catch it ----

// With a range's first position published last, a consumer never reaches
// a live producer's range before it is all published, so the two models
// above pass with `Ranges::NoRangeCheck` too; only the close path, which
// tombstones in order, still needs `claim_len` to tell a live range.

#[test]
#[ignore = "weakened on purpose (scripts/model.sh --ignored): with claim_len ignored, recovery tombstones the second position of a live producer's range that it was tombstoning after a close"]
fn closing_batch_producer_no_range_check() {
    closing_batch_producer_is_not_recovered(Ranges::NoRangeCheck);
}

// Not caught: `claim_len` stored and loaded Relaxed (`Ranges::RelaxedLen`).
// `batch_consumer_crash(Ranges::RelaxedLen, 1)` passes (381680
// interleavings, 69 s), as do the producer models: the length is written
// before the claim's own Release store and the claiming CAS, so a reader that
// Acquires the claim (or tail/head) sees it whatever claim_len's ordering.
// Bound 2 of that model did not finish in 120 s.
