//! Crash recovery of the multi-producer ring: the half-done steps a killed
//! process leaves behind, found and finished by whoever runs into them.
//!
//! Every claim is announced in the claimer's lane before its CAS and cleared
//! after its step is complete (see [`crate::procs`]). A stuck position whose
//! claim no live lane names belongs to a dead process, and is finished here
//! with one CAS from the stuck state, so it is finished once:
//!
//! - **A producer claim never published** (tail passed `p`, slot `p` still
//!   reads "empty for `p`"): the slot is published as a tombstone
//!   ([`STAMP_TOMB`] in the stamp itself, so no field of a slot we do not own
//!   is written). Consumers skip it; `close` drains past it. Counted in
//!   `tombstones` and `dead_claims`.
//! - **A consumer claim never released** (head passed `h`, slot `h` still
//!   holds the message of `h`): the consumer's dequeue never returned, so
//!   the application never saw the message, and it is delivered again. The
//!   recoverer pads the ring with tombstones up to position `h + capacity`
//!   (the next lap of the same slot), claims that position with a CAS on
//!   tail, and republishes the message in place as `h + capacity`. Counted in
//!   `redelivered`. A redelivered message arrives after messages enqueued
//!   later than it (FIFO per producer holds for every other message).
//! - **A recoverer that died half-way** through a republish left tail past
//!   `h + capacity` with the slot still holding `h`'s message: the
//!   republish is finished by the next recoverer (same CAS, same count).
//!
//! Who runs into what: a consumer waiting at head `h` finds a claimed,
//! unpublished `h`; a producer blocked on a full ring finds the slot of its
//! next lap held by a dead producer (a hole one lap back) or a dead consumer
//! (an unreleased message); a consumer about to report `Closed`, or one that
//! has waited a while, scans the lanes for consume claims of dead processes.
//! Blocked callers check every [`RECOVER_EVERY`]; `try` callers every 256th
//! failed attempt, at most as often.

use std::time::{Duration, Instant};

use super::{stamp_pos, Queue};
use crate::layout::{
    CLAIM_CONSUME, CLAIM_POS, CLAIM_PRODUCE, SLOT_TOMBSTONE, STAMP_TOMB, STAMP_WAITER,
};
use crate::procs::{self, Named};
use crate::sync::{AtomicU64, Ordering};
use crate::wait;
use crate::{RecvError, SendError};

/// How often a blocked caller checks for a dead holder of what it waits on.
pub(crate) const RECOVER_EVERY: Duration = Duration::from_millis(2);
/// How long an idle consumer sleeps before it checks that no producer
/// claimed a position and died meanwhile (nobody else would wake it).
pub(crate) const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Rate limit of a handle's recovery checks.
#[derive(Debug)]
pub(crate) struct RecoverGate {
    born: Instant,
    polls: AtomicU64,
    /// Nanoseconds after `born` before which no check runs.
    next_ns: AtomicU64,
}

impl RecoverGate {
    pub(crate) fn new() -> RecoverGate {
        RecoverGate {
            born: Instant::now(),
            polls: AtomicU64::new(0),
            next_ns: AtomicU64::new(0),
        }
    }
}

/// A claim seen in a lane, for statistics and `shmq stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StuckClaim {
    /// The position claimed.
    pub position: u64,
    /// Whether a producer (true) or a consumer (false) claimed it.
    pub producing: bool,
    /// The claimer's pid.
    pub pid: u32,
    /// Whether the claimer is alive (or cannot be judged).
    pub alive: bool,
}

impl Queue {
    /// Whether a recovery check is due: blocked callers (`blocked`) at most
    /// every [`RECOVER_EVERY`], `try` callers also only every 256th poll.
    pub(super) fn recovery_due(&self, blocked: bool) -> bool {
        let gate = &self.gate;
        if !blocked {
            // Relaxed: a rough count; lost increments only delay a check.
            let n = gate.polls.load(Ordering::Relaxed).wrapping_add(1);
            gate.polls.store(n, Ordering::Relaxed);
            if n % 256 != 0 {
                return false;
            }
        }
        let now = gate.born.elapsed().as_nanos() as u64;
        // Relaxed: a rate limit only.
        let next = gate.next_ns.load(Ordering::Relaxed);
        now >= next
            && gate
                .next_ns
                .compare_exchange(
                    next,
                    now + RECOVER_EVERY.as_nanos() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// A consumer found nothing at head: finishes a dead producer's claim
    /// there, or redelivers dead consumers' messages. True if it changed
    /// anything (try again).
    pub(super) fn recover_consumer_side(&self) -> Result<bool, RecvError> {
        let hdr = self.region.header();
        // SYNC(claim-announce): Acquire (SeqCst), pairs with the release half
        // of the claiming CASes: every announcement of a claim below these
        // values is visible.
        let h = hdr.head.value.load(Ordering::SeqCst);
        let t = hdr.tail.value.load(Ordering::SeqCst);
        if t < h {
            return Err(RecvError::Corrupt {
                detail: self
                    .region
                    .segment()
                    .explain(format!("head {h} is past tail {t}")),
            });
        }
        if t > h && self.recover_hole(h) {
            return Ok(true);
        }
        self.recover_orphans()
    }

    /// A producer found the ring full: finishes what a dead process left in
    /// the slot it needs. True if it changed anything.
    pub(super) fn recover_producer_side(&self) -> Result<bool, SendError> {
        let hdr = self.region.header();
        // SYNC(claim-announce): as in `recover_consumer_side`.
        let t = hdr.tail.value.load(Ordering::SeqCst);
        if t < self.capacity {
            return Ok(false);
        }
        let back = t - self.capacity;
        // SYNC(slot-publish): Acquire, pairs with the Release swaps.
        let s = stamp_pos(self.slot(t).stamp.load(Ordering::Acquire));
        if s == back {
            // The previous lap's producer never published.
            return Ok(self.recover_hole(back));
        }
        if s == back + 1 && hdr.head.value.load(Ordering::SeqCst) > back {
            // The previous lap's consumer never released.
            return self.recover_orphan(back).map_err(|e| match e {
                RecvError::Busy => SendError::Busy,
                other => SendError::Corrupt {
                    detail: other.to_string(),
                },
            });
        }
        Ok(false)
    }

    /// Position `p` was claimed by a producer (tail passed it) and is not
    /// published. If its claimer is dead, publishes it as a tombstone (or,
    /// if the slot holds the unreleased message of `p - capacity` that a
    /// dead recoverer was republishing, finishes that republish).
    fn recover_hole(&self, p: u64) -> bool {
        if p > CLAIM_POS {
            return false; // garbage: reported as Corrupt by the claim paths
        }
        let slot = self.slot(p);
        // SYNC(slot-publish): Acquire, pairs with the Release swaps.
        let cur = slot.stamp.load(Ordering::Acquire);
        let s = stamp_pos(cur);
        let back = p.checked_sub(self.capacity);
        let republish = back.is_some_and(|b| s == b + 1);
        if s != p && !republish {
            return false;
        }
        let names = [p, back.unwrap_or(p)];
        if procs::named_by_live(self.region.procs(), &names) == Named::Live {
            return false;
        }
        // The claimer is dead: nobody else writes this slot until we
        // publish `p`. A tombstone is marked in the stamp itself; a
        // republished message keeps its length and payload.
        let done = if republish {
            (p + 1) << 1 | (cur & STAMP_TOMB)
        } else {
            (p + 1) << 1 | STAMP_TOMB
        };
        // SYNC(slot-publish): Release, pairs with the Acquire stamp load in
        // `claim_head` (a republished payload was written before, by its
        // producer, and Acquired by our load above).
        if slot
            .stamp
            .compare_exchange(cur, done, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if cur & STAMP_WAITER != 0 {
            wait::wake_all(&slot.stamp);
        }
        let stats = &self.region.header().stats;
        if republish {
            if !Self::holds_tombstone(slot, cur) {
                self.count(&stats.redelivered, 1);
            }
        } else {
            self.count(&stats.tombstones, 1);
            self.count(&stats.dead_claims, 1);
        }
        true
    }

    fn holds_tombstone(slot: &crate::layout::SlotHeader, stamp: u64) -> bool {
        // Relaxed: ordered by the Acquire stamp load that gave `stamp`.
        stamp & STAMP_TOMB != 0 || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0
    }

    /// Redelivers the unreleased messages of dead consumers (found through
    /// their lanes). True if it changed anything.
    pub(super) fn recover_orphans(&self) -> Result<bool, RecvError> {
        let mut any = false;
        let mut claims = procs::dead_claims(self.region.procs(), CLAIM_CONSUME);
        // Oldest first: a range's positions are republished in order (each
        // one's padding needs the slots before it free).
        claims.sort_unstable();
        for (start, len) in claims {
            // A range never spans more than a ring (garbage is cut there).
            for h in (0..len.min(self.capacity)).map_while(|i| start.checked_add(i)) {
                any |= self.recover_orphan(h)?;
            }
        }
        Ok(any)
    }

    /// Position `h` was claimed by a consumer (head passed it) and its slot
    /// still holds the message. If the claimer is dead, republishes the
    /// message in place as position `h + capacity`. True if it did.
    pub(super) fn recover_orphan(&self, h: u64) -> Result<bool, RecvError> {
        let hdr = self.region.header();
        let slot = self.slot(h);
        let target = h + self.capacity;
        if target > CLAIM_POS {
            return Err(RecvError::Corrupt {
                detail: format!("position {h} is beyond the largest position"),
            });
        }
        // SYNC(claim-announce): Acquire (SeqCst), pairs with the consumer's
        // AcqRel head CAS: its announcement is visible.
        if hdr.head.value.load(Ordering::SeqCst) <= h
            // SYNC(slot-publish): Acquire, pairs with the Release swaps.
            || stamp_pos(slot.stamp.load(Ordering::Acquire)) != h + 1
        {
            return Ok(false);
        }
        if procs::named_by_live(self.region.procs(), &[h, target]) == Named::Live {
            return Ok(false);
        }
        let ann = self.announce().ok_or(RecvError::Busy)?;
        loop {
            // SYNC(claim-close): SeqCst, as the tail CAS in `claim_tail`.
            let t = hdr.tail.value.load(Ordering::SeqCst);
            if t > target {
                // Republished by another recoverer (or being: a hole there is
                // finished by `recover_hole`).
                return Ok(false);
            }
            if t < target {
                // Pad with tombstones up to the slot's next lap.
                let (pos, pad) = match self.claim_tail(&ann) {
                    Ok(claim) => claim,
                    Err(SendError::Full) => return Ok(false), // a slot before it is still held
                    Err(e) => {
                        return Err(RecvError::Corrupt {
                            detail: e.to_string(),
                        })
                    }
                };
                self.publish(pos, pad, &[], SLOT_TOMBSTONE);
                self.count(&hdr.stats.tombstones, 1);
                continue;
            }
            ann.set(CLAIM_PRODUCE, target);
            // SYNC(slot-publish): Acquire, as above; re-checked after the
            // announcement, so a recoverer that judges us sees it.
            if stamp_pos(slot.stamp.load(Ordering::Acquire)) != h + 1 {
                return Ok(false);
            }
            // No producer can claim `target` while its slot holds `h`.
            // SYNC(claim-close): SeqCst, as the tail CAS in `claim_tail`.
            if hdr
                .tail
                .value
                .compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            failpoint!("queue-redeliver-claimed");
            // We own `target`; the slot changes only by our hand now.
            // Relaxed: we are its only writer until the swap below.
            let cur = slot.stamp.load(Ordering::Relaxed);
            // SYNC(slot-publish): Release, pairs with the Acquire stamp load
            // in `claim_head`; the payload is the original producer's.
            let old = slot
                .stamp
                .swap((target + 1) << 1 | (cur & STAMP_TOMB), Ordering::Release);
            if old & STAMP_WAITER != 0 {
                wait::wake_all(&slot.stamp);
            }
            if !Self::holds_tombstone(slot, cur) {
                self.count(&hdr.stats.redelivered, 1);
            }
            return Ok(true);
        }
    }

    /// The claims announced in the lanes now, with their claimers' liveness:
    /// producer claims not yet published and consumer claims not yet
    /// released (stuck ones among them, if their claimer is dead).
    pub fn claims(&self) -> Vec<StuckClaim> {
        let hdr = self.region.header();
        // Relaxed: a snapshot for display.
        let tail = hdr.tail.value.load(Ordering::Relaxed);
        let head = hdr.head.value.load(Ordering::Relaxed);
        let mut out = Vec::new();
        for e in self.region.procs() {
            let Some((tag, start, len)) = procs::claim_of(e) else {
                continue;
            };
            let producing = tag == CLAIM_PRODUCE;
            for pos in (0..len.min(self.capacity)).map_while(|i| start.checked_add(i)) {
                if pos > CLAIM_POS {
                    break;
                }
                // SYNC(slot-publish): Acquire, a snapshot.
                let s = stamp_pos(self.slot(pos).stamp.load(Ordering::Acquire));
                let pending = if producing {
                    pos < tail && s <= pos
                } else {
                    pos < head && s == pos + 1
                };
                if pending {
                    // Relaxed: display.
                    let pid = e.pid.load(Ordering::Relaxed);
                    out.push(StuckClaim {
                        position: pos,
                        producing,
                        pid,
                        alive: !crate::liveness::judge_entry(e).is_dead(),
                    });
                }
            }
        }
        out
    }
}
