//! The single-publisher log: one publisher at a time, holding a role token,
//! publishes with plain stores (no locked instruction per message).
//!
//! # The role
//!
//! Who may publish is a token in the control line (`Control::producer`, the
//! same word and the same token as the single-producer queue's producer
//! role): the holding handle's process-table entry and its generation (see
//! `crate::procs`). It is taken by the first publish through a [`Log`]
//! handle, or by [`Log::into_publisher`], and given back when the handle
//! (or the [`Publisher`]) is dropped. A token whose entry's owner is dead
//! (by the one liveness judge, `crate::liveness`), whose entry was reused
//! since, or that names no entry at all (garbage) is taken over. A live
//! holder, even a stopped one, is never taken for dead: a second publisher
//! gets [`SendError::RoleTaken`].
//!
//! # Publishing
//!
//! The holder keeps the next sequence number `pos` privately (it is the
//! only writer of positions), and the first position it may not write
//! without looking again: in reliable mode a cached lower bound of the
//! slowest cursor plus the capacity, reread only when a publish would pass
//! it; in either mode never past the largest sequence number (a publish
//! there is refused as corrupt, and a batch is cut short of it).
//!
//! Whether anyone is registered at all is not cached: every reliable
//! publish reads the cursor table's registered count (one load of a word
//! written only when the table changes) and fails with
//! [`SendError::NotConnected`] when it is 0 and a scan confirms it; a
//! scan that finds nobody leaves the cached bound as it was.
//!
//! Publishing `s` is the seqlock write of the multi-publisher log without
//! its CASes:
//!
//! ```text
//! stamp := writing(s)            Relaxed store
//! fence(Release)                 (seqlock-write: pairs with the reader's Acquire fence)
//! len, payload                   plain writes
//! stamp := complete(s)           Release store (slot-publish)
//! tail := s + 1                  Release store (sp-tail), once per batch
//! ```
//!
//! Readers are unchanged: they Acquire the stamp, copy, fence, re-check the
//! stamp, so a copy that overlapped a later lap's write is discarded and
//! reported as [`RecvError::Lagged`](super::RecvError::Lagged), never torn.
//!
//! # Crash recovery
//!
//! A holder killed mid-write leaves the slot of `tail` (or of a later
//! position of its batch) stamped `writing`. Subscribers see it as "not
//! published yet" and wait; they never read it. Whoever takes over the role
//! recomputes the position from the slots, not from `tail` alone: it steps
//! over every slot from `tail` on that is stamped complete or skipped for
//! its own position (the dead holder published them but did not store
//! `tail`), stores the repaired `tail`, and republishes the first position
//! that is not complete, overwriting the dead holder's partial write (the
//! stamp goes `writing(s)` again, so a reader never accepts it). Messages
//! the dead holder completed are kept; the one it was writing is lost, as
//! its publish never returned.
//!
//! # Waking
//!
//! Subscribers of a single-publisher log all sleep on one futex word,
//! `Control::wake_seq`, counted in `Control::sleepers`, with the asymmetric
//! barrier of the single-producer queue (see `crate::wait`): the publisher,
//! after its publishing stores, checks `sleepers` with a plain load and only
//! when someone is counted bumps `wake_seq` and wakes every sleeper with one
//! syscall (`FUTEX_WAKE` of `INT_MAX`). When nobody sleeps, publishing makes
//! no syscall.
//!
//! The waker also takes the sleepers out of the count, all at once: it
//! starts a new generation of the word (`generation << 16 | count`) with a
//! count of 0. Until a subscriber sleeps again, the next publishes see 0 and
//! make no syscall, however long the woken subscribers take to be scheduled.
//! (When each sleeper took itself out of the count after waking, a publisher
//! that outran two woken subscribers made one wake syscall per message until
//! they ran: 1→2 fell from 8 M to 1 M messages/s.) A sleeper that wakes for
//! another reason (its timeout, a close, data seen before sleeping) takes
//! itself out only if its generation is still current: when the waker
//! started a new one, its count went with the old one. So the count is
//! exact: a woken sleeper is never counted twice and never takes out
//! another's count, which would leave that one asleep, uncounted, until its
//! timeout. A sleeper killed while counted leaves one count behind: the next
//! publish wakes nobody with one spare syscall and the count is 0 again, so
//! a reaper need not undo it. `tests/model_wake.rs` model-checks this with
//! loom.
//!
//! # Close
//!
//! As in the single-producer queue: a close by the holder itself (nothing
//! of its in flight) stores `CLOSED_QUIET`; any other close stores `CLOSED`,
//! and subscribers report `Closed` once drained *and* the holder has
//! acknowledged (its next publish upgrades the flag), given up its role, or
//! died.

use std::sync::atomic::fence;
use std::time::Duration;

/// `Control::sleepers` of a single-publisher log: the number of sleepers
/// counted in the current generation, in the low 16 bits ...
const SLEEPERS_COUNT: u32 = 0xffff;
/// ... and the generation in the high 16, started anew by each waker.
const SLEEPERS_GEN: u32 = 1 << 16;

use super::{Inner, SendError, ST_COMPLETE, ST_SKIPPED, ST_WRITING};
use crate::layout::{PrefetchW, CLOSED, CLOSED_QUIET, OPEN, PREFETCH_AHEAD};
use crate::procs;
use crate::sync::Ordering;
use crate::wait;

/// The publisher role held by one handle: its token, the next sequence
/// number, how far it may write without looking at the cursors, and
/// whether it may prefetch.
#[derive(Debug)]
pub(super) struct PubRole {
    token: u64,
    pos: u64,
    /// Positions below this may be written without looking again: in
    /// reliable mode a committed position at or below every cursor's (as
    /// last read) plus the capacity, and never past the largest sequence
    /// number. 0 until the first publish computes it (`sp_regate`). One
    /// compare admits a publish and its prefetch, in either mode.
    limit: u64,
    /// PREFETCHW, if this CPU has it (asked once, when the role is taken).
    prefetch: Option<PrefetchW>,
}

/// Where this process's mapping keeps its role for [`super::Log::publish`].
#[derive(Debug, Default)]
pub(super) enum LocalRole {
    /// Not held through this mapping.
    #[default]
    Free,
    /// Held for `Log::publish` calls (taken on first use).
    Here(PubRole),
    /// Handed to a [`super::Publisher`].
    Lent,
}

impl Inner {
    /// The pid of the live holder named by a role word, or `None` if the
    /// word names nobody alive (free, dead, reused entry, or garbage).
    pub(super) fn live_publisher(&self, word: u64) -> Option<u32> {
        if word == 0 {
            return None;
        }
        match procs::token_alive(self.region.procs(), word) {
            Some((pid, life)) if !life.is_dead() => Some(pid),
            _ => None,
        }
    }

    /// The holder of the publisher role and whether it is alive, if any.
    pub(super) fn publisher_holder(&self) -> Option<(u32, bool)> {
        // Relaxed: a snapshot for display.
        let word = self
            .region
            .header()
            .control
            .producer
            .load(Ordering::Relaxed);
        if word == 0 {
            return None;
        }
        match procs::token_alive(self.region.procs(), word) {
            Some((pid, life)) => Some((pid, !life.is_dead())),
            None => Some((0, false)),
        }
    }

    /// Takes the publisher role, or returns the pid of its live holder (0
    /// if this handle has no process-table entry: the table is full).
    pub(super) fn claim_publisher(&self) -> Result<PubRole, u32> {
        let word = &self.region.header().control.producer;
        let token = self.region.handle_token().ok_or(0u32)?;
        loop {
            // SYNC(role): Acquire, pairs with the Release in `release_publisher`:
            // the previous holder's slot and tail stores are visible to us.
            let cur = word.load(Ordering::Acquire);
            if let Some(holder) = self.live_publisher(cur) {
                return Err(holder);
            }
            if cur != 0 && cur != token {
                // Taking over from a dead holder: reap its entry.
                self.region.reap_dead();
            }
            // SYNC(role): AcqRel, as above, and against a racing claimer.
            if word
                .compare_exchange(cur, token, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(PubRole {
                    token,
                    pos: self.repaired_tail(),
                    limit: 0,
                    prefetch: PrefetchW::detect(),
                });
            }
        }
    }

    /// The next position for a new holder of the role: `tail`, moved past
    /// the positions a dead holder published without storing `tail` (see
    /// the module doc).
    fn repaired_tail(&self) -> u64 {
        let tail = &self.region.header().tail.value;
        // SYNC(sp-tail): Acquire, pairs with the previous holder's Release
        // store of tail.
        let t0 = tail.load(Ordering::Acquire);
        let mut t = t0;
        // At most a ring: beyond it, a slot's stamp names another lap.
        while t.wrapping_sub(t0) < self.capacity && t <= super::MAX_SEQ {
            // Relaxed: only compared; we are the only publisher now, and the
            // previous holder's stores were Acquired through the role word.
            let v = self.slot(t).stamp.load(Ordering::Relaxed) >> 1;
            if v != self.value(t, ST_COMPLETE) && v != self.value(t, ST_SKIPPED) {
                break;
            }
            t += 1;
        }
        if t != t0 {
            // SYNC(sp-tail): Release, as every store of tail.
            tail.store(t, Ordering::Release);
        }
        t
    }

    /// Gives the role back and wakes sleepers (a subscriber of a closed log
    /// may be waiting to learn that the publisher is gone).
    pub(super) fn release_publisher(&self, role: &PubRole) {
        // SYNC(role): Release, pairs with the Acquire in `claim_publisher`
        // and in `sp_drained`.
        let _ = self.region.header().control.producer.compare_exchange(
            role.token,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.sp_wake(true);
    }

    /// After a publishing store: wakes every sleeping subscriber, with one
    /// syscall, if there are any.
    #[inline]
    pub(super) fn sp_wake(&self, always_fence: bool) {
        if always_fence {
            // SYNC(asym-dekker): a full fence on the rare paths (role
            // release, close), which pairs with the sleeper's barrier
            // whatever this process's membarrier registration.
            fence(Ordering::SeqCst);
        } else {
            wait::waker_fence();
        }
        let ctl = &self.region.header().control;
        // Relaxed: ordered after our publish by `waker_fence` together with
        // the sleeper's barrier (see crate::wait, asym-dekker).
        if ctl.sleepers.load(Ordering::Relaxed) & SLEEPERS_COUNT != 0 {
            self.sp_wake_sleepers();
        }
    }

    /// Starts a new generation of sleepers with nobody in it and, if the
    /// old one counted anybody, wakes them all.
    #[cold]
    fn sp_wake_sleepers(&self) {
        let ctl = &self.region.header().control;
        // Relaxed: the sleepers' own updates are read-modify-writes, which
        // see this one whatever the ordering (sp-gen); the wake is ordered
        // by wake_seq below.
        let taken = ctl
            .sleepers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v & SLEEPERS_COUNT != 0).then(|| (v & !SLEEPERS_COUNT).wrapping_add(SLEEPERS_GEN))
            });
        if taken.is_ok() {
            // SYNC(sp-wake): Release, pairs with the sleeper's Acquire load
            // of wake_seq: a sleeper that reads the new value sees our publish.
            ctl.wake_seq.fetch_add(1, Ordering::Release);
            wait::futex_wake_u32(&ctl.wake_seq);
        }
    }

    /// Sleeps until a publisher bumps `wake_seq` (or `timeout`), unless
    /// `ready()` holds after the barrier. Every subscriber of a
    /// single-publisher log sleeps on the same word, so one wake reaches all.
    pub(super) fn sp_sleep(&self, timeout: Duration, ready: impl Fn() -> bool) {
        let ctl = &self.region.header().control;
        // SYNC(sp-sleep): SeqCst, announces us before the barrier below.
        // A full count (65,535 sleepers) takes nobody more: the sleeper
        // that cannot count itself naps briefly instead.
        let counted = ctl
            .sleepers
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                (v & SLEEPERS_COUNT != SLEEPERS_COUNT).then(|| v + 1)
            });
        let generation = counted.ok().map(|v| v & !SLEEPERS_COUNT);
        // SYNC(sp-wake): Acquire, pairs with the waker's Release bump.
        let seq = ctl.wake_seq.load(Ordering::Acquire);
        // Not counted (a full count): a bounded sleep (`trusted` false).
        wait::asym_sleep(
            &ctl.wake_seq,
            seq,
            Some(timeout),
            generation.is_some(),
            ready,
        );
        if let Some(generation) = generation {
            // Relaxed (sp-gen): a read-modify-write sees the waker's new
            // generation if there is one; then our count went with the old
            // one and there is nothing to take out.
            let _ = ctl
                .sleepers
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    (v & !SLEEPERS_COUNT == generation && v & SLEEPERS_COUNT != 0).then(|| v - 1)
                });
        }
    }

    /// How many subscribers are counted as sleepers now (tests).
    #[cfg(test)]
    pub(super) fn sp_sleepers(&self) -> u32 {
        // Relaxed: a snapshot for a test's polling loop.
        self.region
            .header()
            .control
            .sleepers
            .load(Ordering::Relaxed)
            & SLEEPERS_COUNT
    }

    /// Single-publisher close: `CLOSED_QUIET` when `quiet` (the caller holds
    /// the role and has nothing in flight), else `CLOSED`; then wakes
    /// every sleeper.
    pub(super) fn sp_close(&self, quiet: bool) {
        let ctl = &self.region.header().control;
        let value = if quiet { CLOSED_QUIET } else { CLOSED };
        // SYNC(close): SeqCst, pairs with the SeqCst loads in `closed`
        // and `sp_drained`. Never lowers CLOSED_QUIET back to CLOSED.
        let _ = ctl
            .closed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c < value).then_some(value)
            });
        // SYNC(sp-wake): Release bump (close-wake): a sleeper that reads
        // the new value sees `closed`.
        ctl.wake_seq.fetch_add(1, Ordering::Release);
        wait::futex_wake_u32(&ctl.wake_seq);
        // Publishers gated in reliable mode sleep on cursors.
        self.table().wake_all();
    }

    /// Whether the single-publisher log is closed and nothing more will be
    /// published at or after `r`.
    pub(super) fn sp_drained(&self, r: u64) -> bool {
        let ctl = &self.region.header().control;
        // SYNC(close): SeqCst, pairs with `sp_close`; SYNC(sp-close): its
        // Acquire half pairs with the holder's Release acknowledgement.
        let c = ctl.closed.load(Ordering::SeqCst);
        if c == OPEN {
            return false;
        }
        if c != CLOSED_QUIET {
            // SYNC(role): Acquire, pairs with the Release in `release_publisher`.
            let holder = ctl.producer.load(Ordering::Acquire);
            if self.live_publisher(holder).is_some() {
                return false; // it may still complete a publish that raced the close
            }
        }
        // SYNC(sp-tail): Acquire, pairs with the holder's Release stores.
        self.region.header().tail.value.load(Ordering::Acquire) <= r
    }

    /// Checks that `msgs` may be published now: close, a reader (reliable
    /// mode), room. Returns how many of them fit (at least 1) or why none
    /// may go.
    ///
    /// Inlined into every publish, with the rare cases (closed, nobody
    /// counted as registered, past the cached limit) out of line: a
    /// publish that fits costs two loads and three compares here.
    #[inline(always)]
    fn sp_admit(&self, role: &mut PubRole, wanted: u64) -> Result<u64, SendError> {
        let ctl = &self.region.header().control;
        // Relaxed: the close handshake is carried by CLOSED_QUIET in
        // `sp_refuse`.
        if ctl.closed.load(Ordering::Relaxed) != OPEN {
            return Err(self.sp_refuse());
        }
        // The roster count alone; the table's scan confirms a 0 out of line.
        if self.reliable && self.table().roster_count() == 0 && !self.sp_connected() {
            return Err(SendError::NotConnected);
        }
        if role.limit.saturating_sub(role.pos) < wanted {
            return self.sp_regate(role, wanted);
        }
        Ok(wanted)
    }

    /// Whether a reliable log has a reader though the roster counts none
    /// (a stale count: see `Table::connected`).
    #[cold]
    #[inline(never)]
    fn sp_connected(&self) -> bool {
        self.table().connected()
    }

    /// A publish met a close: acknowledges it (nothing of ours is in
    /// flight any more) and wakes whoever waits for that.
    #[cold]
    #[inline(never)]
    fn sp_refuse(&self) -> SendError {
        // SYNC(sp-close): Release, pairs with the Acquire in `sp_drained`.
        self.region
            .header()
            .control
            .closed
            .store(CLOSED_QUIET, Ordering::Release);
        self.sp_wake(true);
        SendError::Closed
    }

    /// The publish goes past the cached limit: refuses a corrupt position,
    /// or computes the limit again (reliable mode: rereads the slowest
    /// cursor) and returns how many of `wanted` fit under it.
    #[cold]
    #[inline(never)]
    fn sp_regate(&self, role: &mut PubRole, wanted: u64) -> Result<u64, SendError> {
        let s = role.pos;
        if s > super::MAX_SEQ {
            return Err(SendError::Corrupt {
                detail: format!("position {s} is beyond the largest sequence number"),
            });
        }
        let mut limit = super::MAX_SEQ + 1;
        if self.reliable {
            // Nobody registered is never cached as room: the next publish
            // looks again (and the roster is read on every publish).
            let Some(gate) = self.table().gate() else {
                return Err(SendError::NotConnected);
            };
            limit = limit.min(gate.min(s) + self.capacity);
        }
        role.limit = limit;
        let room = limit - s;
        if room == 0 {
            if let Some(t) = self.region.segment().truncation_seen() {
                return Err(t.into());
            }
            self.maybe_reap();
            return Err(SendError::Full);
        }
        Ok(room.min(wanted))
    }

    /// Writes `msg` into the slot of `seq` (seqlock write, plain stores).
    #[inline(always)]
    pub(super) fn sp_write(&self, seq: u64, msg: &[u8]) {
        let slot = self.slot(seq);
        // Relaxed: the seqlock's opening store; the fence below orders it
        // before the payload writes.
        slot.stamp
            .store(self.value(seq, ST_WRITING) << 1, Ordering::Relaxed);
        // SYNC(seqlock-write): Release fence, pairs with the reader's Acquire
        // fence before its second stamp load in `recv_once`: a reader whose
        // copy saw any of the writes below then sees a stamp past
        // complete(seq - capacity), and discards the copy.
        fence(Ordering::Release);
        failpoint!("log-publish-taken");
        // Relaxed: published by the Release store of the stamp below.
        slot.len.store(msg.len() as u32, Ordering::Relaxed);
        // SAFETY: only the role holder writes slots of a single-publisher
        // log, and its stamp now reads writing(seq); the payload holds
        // slot_size >= msg.len() bytes (checked by the callers) inside the
        // validated slot array. Readers may copy concurrently; they discard
        // such copies (seqlock).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), Self::payload(slot), msg.len()) };
        failpoint!("log-publish-written");
        // SYNC(slot-publish): Release, pairs with the Acquire stamp load in
        // `recv_once`. No waiter bit: sleepers use `wake_seq`.
        slot.stamp
            .store(self.value(seq, ST_COMPLETE) << 1, Ordering::Release);
    }

    /// Stores `tail` after a publish or a batch, then wakes sleepers.
    #[inline(always)]
    fn sp_commit(&self, role: &mut PubRole, next: u64) -> Result<(), SendError> {
        failpoint!("log-publish-claimed");
        // SYNC(sp-tail): Release, pairs with the Acquire loads of tail in
        // `sp_drained` and `repaired_tail`.
        self.region
            .header()
            .tail
            .value
            .store(next, Ordering::Release);
        role.pos = next;
        self.sp_wake(false);
        // Truncated under us: the message may have gone to the zero pages
        // that replaced the segment.
        if let Some(t) = self.region.segment().truncation_seen() {
            return Err(t.into());
        }
        Ok(())
    }

    /// Publishes `msg` as the role holder; returns its sequence number.
    #[inline(always)]
    pub(super) fn sp_publish(&self, role: &mut PubRole, msg: &[u8]) -> Result<u64, SendError> {
        if msg.len() > self.slot_size {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.slot_size,
            });
        }
        self.sp_admit(role, 1)?;
        let seq = role.pos;
        self.sp_write(seq, msg);
        // After the message is out, not before: a hint for a later
        // publish, kept off the way of this one to its subscribers.
        self.sp_prefetch_ahead(role, seq);
        self.sp_commit(role, seq + 1)?;
        Ok(seq)
    }

    /// Asks for the lines of the slot [`PREFETCH_AHEAD`] past `seq` to
    /// write them later, if it may be written by then (below the cached
    /// limit: in reliable mode, every cursor has left it).
    #[inline(always)]
    fn sp_prefetch_ahead(&self, role: &PubRole, seq: u64) {
        let ahead = seq + PREFETCH_AHEAD;
        if let Some(p) = role.prefetch {
            if ahead < role.limit {
                p.slot(self.slot(ahead), self.slot_size);
            }
        }
    }

    /// Publishes as many of `msgs` as fit now, in order, with one store of
    /// `tail` and at most one wake; returns how many.
    pub(super) fn sp_publish_batch(
        &self,
        role: &mut PubRole,
        msgs: &[&[u8]],
    ) -> Result<usize, SendError> {
        if let Some(m) = msgs.iter().find(|m| m.len() > self.slot_size) {
            return Err(SendError::TooLarge {
                len: m.len(),
                max: self.slot_size,
            });
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        // More than a ring at once would overwrite its own first messages.
        let wanted = (msgs.len() as u64).min(self.capacity);
        let n = self.sp_admit(role, wanted)? as usize;
        let first = role.pos;
        for (i, msg) in msgs[..n].iter().enumerate() {
            self.sp_prefetch_ahead(role, first + i as u64);
            self.sp_write(first + i as u64, msg);
        }
        self.sp_commit(role, first + n as u64)?;
        Ok(n)
    }
}

impl PubRole {
    /// The next sequence number this holder publishes.
    pub(super) fn pos(&self) -> u64 {
        self.pos
    }
}

/// The async API's hooks (see `crate::asyncio`).
#[cfg(feature = "async")]
impl Inner {
    /// Announces an async subscriber as a sleeper of a single-publisher log
    /// exactly as `sp_sleep` does (counted in the current generation, then
    /// the barrier, then `ready()`), and returns the wait on `wake_seq`, or
    /// `None` (not counted any more) when `ready()` holds.
    pub(super) fn sp_park(&self, ready: impl Fn() -> bool) -> Option<crate::asyncio::Park> {
        use crate::asyncio::{Park, Undo, IDLE_RECHECK};
        let ctl = &self.region.header().control;
        // SYNC(sp-sleep): SeqCst, as in `sp_sleep`.
        let counted = ctl
            .sleepers
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                (v & SLEEPERS_COUNT != SLEEPERS_COUNT).then(|| v + 1)
            });
        let generation = counted.ok().map(|v| v & !SLEEPERS_COUNT);
        // SYNC(sp-wake): Acquire, pairs with the waker's Release bump.
        let seq = ctl.wake_seq.load(Ordering::Acquire);
        let barrier = wait::sleeper_barrier();
        if ready() {
            if let Some(generation) = generation {
                self.sp_unpark(generation);
            }
            return None;
        }
        // No barrier, or not counted: never trust the wait for long.
        let recheck = if barrier && generation.is_some() {
            IDLE_RECHECK
        } else {
            Duration::from_millis(1)
        };
        let undo = generation.map_or(Undo::Nothing, Undo::Generation);
        Some(Park::new(recheck).on(&ctl.wake_seq, seq).undo(undo))
    }

    /// Takes a sleeper of `generation` out of the count, if that generation
    /// is still current (as `sp_sleep` does after its sleep).
    pub(super) fn sp_unpark(&self, generation: u32) {
        let ctl = &self.region.header().control;
        // Relaxed (sp-gen): as in `sp_sleep`.
        let _ = ctl
            .sleepers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v & !SLEEPERS_COUNT == generation && v & SLEEPERS_COUNT != 0).then(|| v - 1)
            });
    }
}
