//! The single-producer / single-consumer path of the work queue: a Lamport
//! ring with cached indices (as in rtrb), for queues created with
//! [`QueueConfig::spsc`](super::QueueConfig::spsc).
//!
//! `tail` counts published messages and is written only by the producer;
//! `head` counts consumed messages and is written only by the consumer. The
//! producer writes slot `t`'s length and payload, then its stamp (`t + 1`,
//! as in the multi-producer ring, Release), then `tail = t + 1`. The consumer
//! polls the stamp of slot `h` itself, so a message costs it the slot's own
//! cache lines and nothing else; it copies out, then stores `head = h + 1`
//! (Release). The producer reads `head` (Acquire) only when its cached copy
//! says the ring is full. Neither side writes a cache line the other is about
//! to write, and neither executes a locked instruction per message.
//!
//! Who may produce and consume is a role token in the control line: the
//! token of the holding handle's process-table entry (its index and
//! generation, see `crate::procs`), taken by a
//! [`Producer`](super::Producer) or [`Consumer`](super::Consumer) for its
//! life, or leased by one call (or zero-copy guard) of a shared handle, and
//! given back on drop. A token whose entry's owner is dead (by the one liveness
//! mechanism, `crate::liveness`), whose entry was reused since, or that
//! names no entry at all (garbage) is taken over; the dead holder's entry is
//! reaped then, which also takes its sleepers out of `Control::sleepers`.
//!
//! Waiting: a sleeper counts itself in `Control::sleepers`, reads
//! `wake_seq`, issues the asymmetric barrier (see `crate::wait`), re-checks,
//! and sleeps on `wake_seq`. A waker, after its publishing store, checks
//! `sleepers` with a plain load and bumps `wake_seq` only if it is non-zero.
//!
//! Close: a close by the producer's own handle is `CLOSED_QUIET` (nothing of
//! its is in flight). A close by anyone else is `CLOSED`: consumers report
//! `Closed` once drained *and* the producer has acknowledged (its next enqueue
//! sees the flag and upgrades it to `CLOSED_QUIET`) or given up its role. So
//! a message whose enqueue overlapped the close is never stranded.

use std::time::Instant;

use super::{Queue, Side};
use crate::layout::{prefetch_for_write, Control, SlotHeader, CLOSED_QUIET, OPEN, PREFETCH_AHEAD};
use crate::procs;

/// How long a sleeper sleeps at most before it checks that its segment was
/// not truncated under it (nobody would wake it then).
const INTACT_CHECK: std::time::Duration = std::time::Duration::from_millis(100);
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{self, Backoff, Next};
use crate::{RecvError, SendError};

/// A role held by one handle: its token, its own index (it is that index's
/// only writer, so it never needs to read it back from shared memory), and,
/// for the producer, its cached copy of `head` (the consumer polls slot
/// stamps instead and does not use it).
///
/// A [`Producer`](crate::Producer) or [`Consumer`](crate::Consumer) keeps
/// its role on a line of its own ([`OwnLine`]). The role itself is not
/// aligned: a lease of a shared handle travels inside zero-copy guards,
/// which are moved by value, and an aligned role made every guard a
/// 384-byte, 128-aligned value copied several times per message.
#[derive(Debug)]
pub(super) struct Role {
    token: u64,
    pos: u64,
    cached: u64,
}

/// A value alone on its 128-byte line (two 64-byte lines: the adjacent-line
/// prefetcher pairs them): a handle's role is written on every message, and
/// the producer's and consumer's handles may sit side by side on the heap.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct OwnLine<T>(pub(super) T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for OwnLine<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A role leased by one call (or one zero-copy guard) of a shared
/// [`Queue`] handle: taken by [`Queue::lease_role`], given back on drop
/// (also when the call unwinds).
#[derive(Debug)]
pub(super) struct Lease<'a> {
    queue: &'a Queue,
    side: Side,
    role: Role,
}

impl Lease<'_> {
    /// The leased role.
    pub(super) fn role(&mut self) -> &mut Role {
        &mut self.role
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.queue.release_role(self.side, &self.role);
    }
}

impl Queue {
    /// Takes the `side` role until the returned lease drops, or returns the
    /// pid of its live holder (0: this handle has no process-table entry).
    pub(super) fn lease_role(&self, side: Side) -> Result<Lease<'_>, u32> {
        Ok(Lease {
            queue: self,
            side,
            role: self.claim_role(side)?,
        })
    }

    fn role_word(&self, side: Side) -> &AtomicU64 {
        let ctl = &self.region.header().control;
        match side {
            Side::Producer => &ctl.producer,
            Side::Consumer => &ctl.consumer,
        }
    }

    /// The pid of the live holder named by a role word, or `None` if the
    /// word names nobody alive (free, dead, reused entry, or garbage).
    fn live_holder(&self, word: u64) -> Option<u32> {
        if word == 0 {
            return None;
        }
        match procs::token_alive(self.region.procs(), word) {
            Some((pid, life)) if !life.is_dead() => Some(pid),
            _ => None,
        }
    }

    /// Takes the `side` role, or returns the pid of its live holder (0 if
    /// this handle has no process-table entry: the table is full).
    pub(super) fn claim_role(&self, side: Side) -> Result<Role, u32> {
        let word = self.role_word(side);
        let token = self.region.handle_token().ok_or(0u32)?;
        loop {
            // SYNC(role): Acquire, pairs with the Release in `release_role`:
            // the previous holder's index stores are visible to us.
            let cur = word.load(Ordering::Acquire);
            if let Some(holder) = self.live_holder(cur) {
                return Err(holder);
            }
            if cur != 0 && cur != token {
                // Taking over from a dead holder: reap its entry, which
                // takes its sleepers out of the count.
                self.region.reap_dead();
            }
            // SYNC(role): AcqRel, as above, and against a racing claimer.
            if word
                .compare_exchange(cur, token, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let h = self.region.header();
                // Acquire: pairs with the previous holder's Release stores of
                // its index (or with creation). `head` is a safe first value
                // for both caches (the producer's "free up to" and the
                // consumer's "ready up to"); each is re-read before use.
                // SYNC(spsc-publish) / SYNC(spsc-free).
                let head = h.head.value.load(Ordering::Acquire);
                let pos = match side {
                    Side::Producer => self.repaired_tail(),
                    Side::Consumer => head,
                };
                return Ok(Role {
                    token,
                    pos,
                    cached: head,
                });
            }
        }
    }

    /// The producer's position for a new holder: `tail`, or past it if the
    /// previous holder died between publishing slots' stamps and storing
    /// `tail` (one slot, or a whole batch). The stamps of a batch whose
    /// holder died before its first slot's stamp (`spsc_enqueue_batch`)
    /// were never visible: they are cleared, else the consumer would take
    /// them for the new holder's messages of the same positions.
    fn repaired_tail(&self) -> u64 {
        let tail = &self.region.header().tail.value;
        // SYNC(spsc-tail): Acquire, pairs with the previous holder's Release store of tail.
        let t0 = tail.load(Ordering::Acquire);
        let mut t = t0;
        // Relaxed: the stamps are only compared; we are the only producer
        // now. Positions from shared memory: wrapping, so garbage gives
        // Corrupt from the ring checks, never an overflow panic. At most a
        // ring of published stamps can lie past tail.
        while t.wrapping_sub(t0) < self.capacity
            && self.slot(t).stamp.load(Ordering::Relaxed) >> 1 == t.wrapping_add(1)
        {
            t = t.wrapping_add(1);
        }
        if t != t0 {
            // SYNC(spsc-tail): Release, as every store of tail.
            tail.store(t, Ordering::Release);
        }
        // The orphans of a batch cut short lie right after `t`, stamped for
        // this lap. The consumer is stopped at `t` (unstamped) until we
        // publish it, so nobody reads them while we clear them.
        let mut orphan = t.wrapping_add(1);
        while orphan.wrapping_sub(t) < self.capacity {
            let stamp = &self.slot(orphan).stamp;
            // Relaxed: as above.
            if stamp.load(Ordering::Relaxed) >> 1 != orphan.wrapping_add(1) {
                break;
            }
            // Relaxed: the consumer reads this slot only after we publish
            // position `t` (Release), which orders this store before it.
            stamp.store(0, Ordering::Relaxed);
            orphan = orphan.wrapping_add(1);
        }
        t
    }

    /// Gives a role back and wakes sleepers (a consumer may be waiting to
    /// learn that the producer is gone).
    pub(super) fn release_role(&self, side: Side, role: &Role) {
        // SYNC(role): Release, pairs with the Acquire in `claim_role` and in `spsc_drained`.
        let _ = self.role_word(side).compare_exchange(
            role.token,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
        self.wake_sleepers(true);
    }

    fn control(&self) -> &Control {
        &self.region.header().control
    }

    /// After a publishing store: wake sleepers if there are any.
    #[inline]
    fn wake_sleepers(&self, always_fence: bool) {
        if always_fence {
            // SYNC(asym-dekker): a full fence on the rare paths (role release,
            // close acknowledgement), which pairs with the sleeper's barrier
            // whatever this process's membarrier registration.
            std::sync::atomic::fence(Ordering::SeqCst);
        } else {
            wait::waker_fence();
        }
        let ctl = self.control();
        // Relaxed: ordered after our publish by `waker_fence` together with
        // the sleeper's barrier (see crate::wait, asym-dekker).
        if ctl.sleepers.load(Ordering::Relaxed) != 0 {
            // SYNC(spsc-wake): Release, pairs with the sleeper's Acquire load
            // of wake_seq: a sleeper that reads the new value sees our publish.
            ctl.wake_seq.fetch_add(1, Ordering::Release);
            wait::futex_wake_u32(&ctl.wake_seq);
        }
    }

    /// Sleeps until a waker bumps `wake_seq`, unless `ready()` holds after
    /// the barrier.
    fn spsc_sleep(
        &self,
        backoff: &Backoff,
        cap: Option<std::time::Duration>,
        ready: impl Fn() -> bool,
    ) {
        let ctl = self.control();
        let mine = self.region.handle_entry();
        if let Some(e) = mine {
            // Relaxed: counted before the global count, read by a reaper
            // only once we are dead.
            e.spsc_sleeping.fetch_add(1, Ordering::Relaxed);
        }
        // SYNC(spsc-sleep): SeqCst, announces us before the barrier below.
        ctl.sleepers.fetch_add(1, Ordering::SeqCst);
        // SYNC(spsc-wake): Acquire, pairs with the waker's Release bump.
        let seq = ctl.wake_seq.load(Ordering::Acquire);
        let mut timeout = backoff.remaining();
        if let Some(cap) = cap {
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        wait::asym_sleep(&ctl.wake_seq, seq, timeout, true, ready);
        // Relaxed: a count; wakers tolerate a stale non-zero (one spare syscall).
        ctl.sleepers.fetch_sub(1, Ordering::Relaxed);
        if let Some(e) = mine {
            // Relaxed: as above.
            e.spsc_sleeping.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Enqueues as the holder of the producer role.
    #[inline(always)]
    pub(super) fn spsc_enqueue(&self, role: &mut Role, msg: &[u8]) -> Result<(), SendError> {
        let slot = self.spsc_reserve(role, msg.len())?;
        // SAFETY: position role.pos is free and ours (spsc_reserve); the
        // payload holds slot_size >= msg.len() bytes inside the validated
        // slot array.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), Self::payload(slot), msg.len()) };
        self.spsc_commit(role, slot, msg.len())
    }

    /// First half of an enqueue: checks size, close and room, and returns
    /// the free slot of position `role.pos`, which only the producer-role
    /// holder writes until it is published by [`Queue::spsc_commit`].
    #[inline(always)]
    pub(super) fn spsc_reserve(
        &self,
        role: &mut Role,
        len: usize,
    ) -> Result<&SlotHeader, SendError> {
        if len > self.slot_size {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size,
            });
        }
        self.spsc_room(role, 1)?;
        Ok(self.slot(role.pos))
    }

    /// How many of the next `want` (>= 1) positions are free, at least one:
    /// else `Full`, `Closed` (acknowledged) or `Corrupt`.
    #[inline(always)]
    fn spsc_room(&self, role: &mut Role, want: u64) -> Result<u64, SendError> {
        let ctl = self.control();
        // Relaxed: the close handshake is carried by CLOSED_QUIET below.
        if ctl.closed.load(Ordering::Relaxed) != OPEN {
            // Acknowledge: nothing of ours is in flight any more.
            // SYNC(spsc-close): Release, pairs with the Acquire in `spsc_drained`.
            ctl.closed.store(CLOSED_QUIET, Ordering::Release);
            self.wake_sleepers(true);
            return Err(SendError::Closed);
        }
        let h = self.region.header();
        let t = role.pos;
        if t.wrapping_sub(role.cached) > self.capacity.saturating_sub(want) {
            // SYNC(spsc-free): Acquire, pairs with the consumer's Release store of head.
            role.cached = h.head.value.load(Ordering::Acquire);
            let used = t.wrapping_sub(role.cached);
            if used > self.capacity {
                return Err(SendError::Corrupt {
                    detail: self.region.segment().explain(format!(
                        "head {} is not within a ring of tail {t}",
                        role.cached
                    )),
                });
            }
            if used == self.capacity {
                if let Some(t) = self.region.segment().truncation_seen() {
                    return Err(t.into());
                }
                return Err(SendError::Full);
            }
        }
        Ok((self.capacity - t.wrapping_sub(role.cached)).min(want))
    }

    /// Second half of an enqueue: publishes `len` bytes written in the slot
    /// of position `role.pos` (from [`Queue::spsc_reserve`]).
    #[inline(always)]
    pub(super) fn spsc_commit(
        &self,
        role: &mut Role,
        slot: &SlotHeader,
        len: usize,
    ) -> Result<(), SendError> {
        let t = role.pos;
        // Relaxed: published by the Release store of the stamp below.
        slot.len.store(len as u32, Ordering::Relaxed);
        // SYNC(spsc-publish): Release, pairs with the consumer's Acquire load
        // of the stamp in `spsc_dequeue`. No waiter bit in this mode.
        slot.stamp.store(t.wrapping_add(1) << 1, Ordering::Release);
        // SYNC(spsc-tail): Release, pairs with the Acquire loads of tail in
        // `spsc_drained`, `repaired_tail` and the statistics.
        self.region
            .header()
            .tail
            .value
            .store(t.wrapping_add(1), Ordering::Release);
        role.pos = t.wrapping_add(1);
        self.wake_sleepers(false);
        // Truncated under us: the message may have gone to the zero pages
        // that replaced the segment, so do not report it enqueued.
        if let Some(t) = self.region.segment().truncation_seen() {
            return Err(t.into());
        }
        Ok(())
    }

    /// Enqueues the longest prefix of `msgs` that fits (stopping before a
    /// message longer than the slot size), with one store of `tail`.
    pub(super) fn spsc_enqueue_batch(
        &self,
        role: &mut Role,
        msgs: &[&[u8]],
    ) -> Result<usize, SendError> {
        let Some(first) = msgs.first() else {
            return Ok(0);
        };
        if first.len() > self.slot_size {
            return Err(SendError::TooLarge {
                len: first.len(),
                max: self.slot_size,
            });
        }
        let room = self.spsc_room(role, msgs.len() as u64)? as usize;
        let t0 = role.pos;
        let mut n = 0;
        for msg in msgs[..room]
            .iter()
            .take_while(|m| m.len() <= self.slot_size)
        {
            let t = t0.wrapping_add(n as u64);
            let ahead = t.wrapping_add(PREFETCH_AHEAD);
            if ahead.wrapping_sub(t0) < room as u64 {
                prefetch_for_write(self.slot(ahead), self.slot_size);
            }
            let slot = self.slot(t);
            // Relaxed: published by the Release store of the stamp below.
            slot.len.store(msg.len() as u32, Ordering::Relaxed);
            // SAFETY: position t is free (within `room` of head) and only
            // the producer-role holder writes slots; the payload holds
            // slot_size >= msg.len() bytes inside the validated slot array.
            unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), Self::payload(slot), msg.len()) };
            if n > 0 {
                // SYNC(spsc-publish): Release, as in `spsc_commit`. The
                // consumer cannot pass the batch's first slot, whose stamp
                // comes last, so these wait for it.
                slot.stamp.store(t.wrapping_add(1) << 1, Ordering::Release);
                failpoint!("queue-batch-published-one");
            }
            n += 1;
        }
        if n > 0 {
            // SYNC(spsc-publish): Release, as in `spsc_commit`, after every
            // other slot of the batch. A consumer polling this stamp then
            // takes the batch whole, reading lines we have finished with,
            // instead of trailing us slot by slot while each line moves
            // back and forth between the two cores.
            self.slot(t0)
                .stamp
                .store(t0.wrapping_add(1) << 1, Ordering::Release);
            failpoint!("queue-batch-stamped");
        }
        let t = t0.wrapping_add(n as u64);
        // SYNC(spsc-tail): Release, as in `spsc_commit`; one store for the
        // batch (a new holder after a death between the first slot's stamp
        // and this store skips the published stamps past tail:
        // `repaired_tail`).
        self.region.header().tail.value.store(t, Ordering::Release);
        role.pos = t;
        self.wake_sleepers(false);
        if let Some(t) = self.region.segment().truncation_seen() {
            return Err(t.into());
        }
        Ok(n)
    }

    /// Dequeues as the holder of the consumer role.
    #[inline(always)]
    pub(super) fn spsc_dequeue(&self, role: &mut Role, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (slot, len) = self.spsc_peek(role)?;
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        // SAFETY: the stamp says the slot holds the published message of
        // position pos, which only the consumer-role holder reads; len <=
        // slot_size (spsc_peek) and len <= buf.len() were checked.
        unsafe { std::ptr::copy_nonoverlapping(Self::payload(slot), buf.as_mut_ptr(), len) };
        self.spsc_advance(role);
        Ok(len)
    }

    /// The message at the consumer's position, left in place (its length
    /// checked against the slot size), or why there is none. A corrupt
    /// length drops the slot.
    #[inline(always)]
    pub(super) fn spsc_peek(&self, role: &mut Role) -> Result<(&SlotHeader, usize), RecvError> {
        let pos = role.pos;
        let slot = self.slot(pos);
        // SYNC(spsc-publish): Acquire, pairs with the producer's Release
        // store of the stamp: its length and payload are visible.
        if slot.stamp.load(Ordering::Acquire) >> 1 != pos.wrapping_add(1) {
            self.prefetch_rest_of(slot);
            if let Some(t) = self.region.segment().truncation_seen() {
                return Err(t.into());
            }
            return Err(if self.spsc_drained(pos) {
                RecvError::Closed
            } else {
                RecvError::Empty
            });
        }
        // Relaxed: ordered after the publish by the Acquire stamp load. (A
        // single-producer queue never publishes tombstones: no flags to read.)
        let len = slot.len.load(Ordering::Relaxed) as usize;
        if len > self.slot_size {
            self.spsc_advance(role);
            return Err(RecvError::Corrupt {
                detail: format!("slot holds length {len} > slot size {}", self.slot_size),
            });
        }
        Ok((slot, len))
    }

    /// Hands up to `max` ready messages (and at most `budget` bytes in all)
    /// to `f` in place, then frees them with one store of `head`.
    pub(super) fn spsc_dequeue_batch(
        &self,
        role: &mut Role,
        max: usize,
        budget: usize,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        let (_, first) = self.spsc_peek(role)?;
        if first > budget {
            return Err(RecvError::BufferTooSmall { needed: first });
        }
        /// Frees what was handed out, also if `f` panics.
        struct Advance<'q, 'r> {
            queue: &'q Queue,
            role: &'r mut Role,
            n: u64,
        }
        impl Drop for Advance<'_, '_> {
            fn drop(&mut self) {
                if self.n > 0 {
                    self.role.pos = self.role.pos.wrapping_add(self.n - 1);
                    self.queue.spsc_advance(self.role);
                }
            }
        }
        let start = role.pos;
        let mut done = Advance {
            queue: self,
            role,
            n: 0,
        };
        let mut bytes = 0usize;
        while (done.n as usize) < max.min(self.capacity as usize) {
            let pos = start.wrapping_add(done.n);
            let slot = self.slot(pos);
            // SYNC(spsc-publish): Acquire, as in `spsc_peek`.
            if slot.stamp.load(Ordering::Acquire) >> 1 != pos.wrapping_add(1) {
                break;
            }
            // Relaxed: ordered by the Acquire stamp load above.
            let len = slot.len.load(Ordering::Relaxed) as usize;
            if len > self.slot_size || bytes + len > budget {
                break; // a corrupt one is reported by the next call
            }
            bytes += len;
            done.n += 1;
            // SAFETY: the stamp says the slot holds the published message
            // of `pos`, which only the consumer-role holder reads, and it
            // stays until head passes it (after `f`); len <= slot_size.
            let msg = unsafe { std::slice::from_raw_parts(Self::payload(slot), len) };
            f(msg);
        }
        Ok(done.n as usize)
    }

    /// While the consumer polls an empty slot, asks for the slot's second
    /// cache line too, so that a message longer than the first line arrives
    /// in one round trip rather than two.
    #[inline]
    fn prefetch_rest_of(&self, slot: &crate::layout::SlotHeader) {
        #[cfg(target_arch = "x86_64")]
        if self.slot_size > 64 - crate::layout::SLOT_HEADER_SIZE {
            let second = (slot as *const crate::layout::SlotHeader as *const i8).wrapping_add(64);
            // SAFETY: a prefetch is only a hint and never faults; `second`
            // lies inside this slot (stride > 64 when the payload exceeds
            // the first line) within the validated slot array.
            unsafe { core::arch::x86_64::_mm_prefetch(second, core::arch::x86_64::_MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    #[inline]
    pub(super) fn spsc_advance(&self, role: &mut Role) {
        role.pos = role.pos.wrapping_add(1);
        // SYNC(spsc-free): Release, pairs with the producer's Acquire load of head.
        self.region
            .header()
            .head
            .value
            .store(role.pos, Ordering::Release);
        self.wake_sleepers(false);
    }

    /// Discards the oldest message (for `enqueue_shift`, holding both roles).
    pub(super) fn spsc_discard(&self, role: &mut Role) -> bool {
        // SYNC(spsc-publish): Acquire, as in `spsc_dequeue`.
        if self.slot(role.pos).stamp.load(Ordering::Acquire) >> 1 != role.pos.wrapping_add(1) {
            return false;
        }
        self.spsc_advance(role);
        true
    }

    /// Whether the queue is closed and nothing more can arrive after `pos`.
    fn spsc_drained(&self, pos: u64) -> bool {
        let ctl = self.control();
        // SYNC(spsc-close): Acquire, pairs with the producer's Release store of CLOSED_QUIET.
        let closed = ctl.closed.load(Ordering::Acquire);
        if closed == OPEN {
            return false;
        }
        if closed != CLOSED_QUIET {
            // SYNC(role): Acquire, pairs with the Release in `release_role`.
            let holder = ctl.producer.load(Ordering::Acquire);
            if self.live_holder(holder).is_some() {
                return false; // the producer may still publish: wait for its acknowledgement
            }
        }
        // SYNC(spsc-tail): Acquire, pairs with the producer's Release store of tail.
        let tail = self.region.header().tail.value.load(Ordering::Acquire);
        // At or behind us: a producer that died between a batch's first
        // stamp and its tail store leaves tail behind the batch we took.
        pos.wrapping_sub(tail) < self.capacity
    }

    /// Marks the queue closed; `by_producer` when the caller holds the producer role.
    pub(super) fn spsc_close(&self, by_producer: bool) {
        let ctl = self.control();
        if by_producer {
            // SYNC(spsc-close): Release, pairs with the Acquire in `spsc_drained`.
            ctl.closed.store(CLOSED_QUIET, Ordering::Release);
        } else {
            // SYNC(spsc-close): as above; never downgrades CLOSED_QUIET.
            let _ = ctl.closed.compare_exchange(
                OPEN,
                crate::layout::CLOSED,
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
        // Unconditional: close is rare, and a sleeper that read wake_seq
        // before this bump returns from its futex wait at once.
        // SYNC(spsc-wake): SeqCst, after the store of `closed` above.
        ctl.wake_seq.fetch_add(1, Ordering::SeqCst);
        wait::futex_wake_u32(&ctl.wake_seq);
    }

    #[inline]
    pub(super) fn spsc_enqueue_until(
        &self,
        role: &mut Role,
        msg: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        match self.spsc_enqueue(role, msg) {
            Err(SendError::Full) => {}
            other => return other,
        }
        self.spsc_produce_wait(role, deadline, |q, role| q.spsc_enqueue(role, msg))
    }

    /// The slow half of a blocking producer call: the queue was full;
    /// repeats `attempt` as room is made, until `deadline`.
    #[cold]
    #[inline(never)]
    pub(super) fn spsc_produce_wait<T>(
        &self,
        role: &mut Role,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&Queue, &mut Role) -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let mut backoff = Backoff::new(self.wait, deadline);
        loop {
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => {
                    self.region.segment().check_intact()?;
                    return Err(SendError::Timeout);
                }
                Next::Sleep => {
                    self.region.segment().check_intact()?;
                    let h = self.region.header();
                    self.spsc_sleep(&backoff, Some(INTACT_CHECK), || {
                        // Relaxed loads: a re-check after the barrier; the real attempt re-reads with Acquire.
                        let t = h.tail.value.load(Ordering::Relaxed);
                        t.wrapping_sub(h.head.value.load(Ordering::Relaxed)) < self.capacity
                            || self.control().closed.load(Ordering::Relaxed) != OPEN
                    });
                }
            }
            match attempt(self, role) {
                Err(SendError::Full) => {}
                other => return other,
            }
        }
    }

    #[inline]
    pub(super) fn spsc_dequeue_until(
        &self,
        role: &mut Role,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        match self.spsc_dequeue(role, buf) {
            Err(RecvError::Empty) => {}
            other => return other,
        }
        self.spsc_consume_wait(role, deadline, |q, role| q.spsc_dequeue(role, buf))
    }

    /// The slow half of a blocking consumer call: the queue was empty;
    /// repeats `attempt` as messages arrive, until `deadline`.
    #[cold]
    #[inline(never)]
    pub(super) fn spsc_consume_wait<T>(
        &self,
        role: &mut Role,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&Queue, &mut Role) -> Result<T, RecvError>,
    ) -> Result<T, RecvError> {
        let mut backoff = Backoff::new(self.wait, deadline);
        loop {
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => {
                    self.region.segment().check_intact()?;
                    return Err(RecvError::Timeout);
                }
                Next::Sleep => {
                    self.region.segment().check_intact()?;
                    let h = self.region.header();
                    // Relaxed: snapshots the sleep re-check compares against
                    // after its barrier; a stale value only means a spare wakeup.
                    let seen_closed = self.control().closed.load(Ordering::Relaxed);
                    let seen_producer = self.control().producer.load(Ordering::Relaxed);
                    // Closed by a third party: the producer's acknowledgement may
                    // never come if it died, so re-check its liveness now and then.
                    // Otherwise wake now and then all the same: nobody wakes a
                    // sleeper on a segment truncated under it.
                    let cap = if seen_closed != OPEN {
                        std::time::Duration::from_millis(50)
                    } else {
                        INTACT_CHECK
                    };
                    let cap = Some(cap);
                    self.spsc_sleep(&backoff, cap, || {
                        // Relaxed loads: a re-check after the barrier; the real attempt re-reads with Acquire.
                        h.tail.value.load(Ordering::Relaxed) != h.head.value.load(Ordering::Relaxed)
                            || self.control().closed.load(Ordering::Relaxed) != seen_closed
                            || self.control().producer.load(Ordering::Relaxed) != seen_producer
                    });
                }
            }
            match attempt(self, role) {
                Err(RecvError::Empty) => {}
                other => return other,
            }
        }
    }
}
