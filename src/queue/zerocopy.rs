//! Zero-copy calls on the work queue: a producer reserves a slot and writes
//! its message in place ([`ReserveGuard`], ended by `commit(n)` or `cancel()`),
//! a consumer reads a message in place ([`ConsumeGuard`], released on drop).
//!
//! A guard is a claim that outlives the call that made it, so it is made
//! and recovered exactly as the copying calls' claims are:
//!
//! - multi-producer mode: the claiming CAS is the same (`claim_tail`,
//!   `claim_head`), announced in a lane. The lane is the guard's own, taken
//!   from the handle's pool (see [`crate::procs`]): the thread may make other
//!   claims while the guard lives, and the guard may move to another thread.
//!   A cancelled reservation is published as a tombstone; a producer that
//!   dies holding a reservation leaves a claimed, unpublished position that
//!   crash recovery tombstones; a consumer that dies holding a guard leaves
//!   an unreleased message that crash recovery delivers again.
//! - single-producer mode: a reservation is the free slot at the producer's
//!   position, published by `commit`; nothing is published until then, so a
//!   cancel (or a death) simply leaves the position to the next enqueue. A
//!   consume guard is the message at the consumer's position; `head` moves
//!   past it on release, so a consumer that dies holding it leaves it to the
//!   next holder of the consumer role. The guard holds the role: on a shared
//!   [`Queue`] handle, other calls of the same role get `RoleTaken` (with this
//!   process's pid) until the guard ends.
//!
//! The bytes of a slot are shared memory. While a guard lives the slot
//! belongs to its holder by the protocol, but a process that ignores the
//! protocol (or a corrupt segment) could write into it at any time: treat
//! what a [`ConsumeGuard`] shows as untrusted input (its length was checked
//! against the slot size before the slice was made; its contents may change
//! under a misbehaving writer, never its bounds).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{spsc, Claim, Consumer, Producer, Queue, Side};
use crate::layout::{SlotHeader, ENTRY_LANE, SLOT_TOMBSTONE};
use crate::procs::{self, Announce};
use crate::{RecvError, SendError};

/// The lanes of a handle's zero-copy guards: taken from the process table
/// on demand, kept while the handle lives, given back when it drops.
#[derive(Debug, Default)]
pub(super) struct LanePool {
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// The fork epoch of the process the entries belong to (a forked child
    /// must not use them). Not the pid: `getpid` is a syscall, and this is
    /// read twice per guard.
    epoch: u32,
    free: Vec<usize>,
    all: Vec<usize>,
}

/// A lane held by one guard: its announcement, cleared and the lane given
/// back to the pool when dropped.
pub(super) struct GuardLane<'a> {
    pub(super) ann: Announce<'a>,
    pool: &'a LanePool,
    index: usize,
}

impl Drop for GuardLane<'_> {
    fn drop(&mut self) {
        self.ann.clear();
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch == procs::fork_epoch() {
            st.free.push(self.index);
        }
    }
}

/// A role held by one guard of a single-producer/single-consumer queue:
/// borrowed from a [`Producer`]/[`Consumer`], or leased by a shared handle
/// for the guard's life and given back when it drops.
pub(super) enum RoleHold<'a> {
    Borrowed(&'a mut spsc::Role),
    Leased(spsc::Lease<'a>),
}

impl RoleHold<'_> {
    fn get(&mut self) -> &mut spsc::Role {
        match self {
            RoleHold::Borrowed(r) => r,
            RoleHold::Leased(lease) => lease.role(),
        }
    }
}

impl Queue {
    /// A lane for a guard; `None` when the process table is full of live entries.
    pub(super) fn guard_lane(&self) -> Option<GuardLane<'_>> {
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = procs::fork_epoch();
        if st.epoch != epoch {
            // The parent's copy in a forked child.
            *st = PoolState {
                epoch,
                ..PoolState::default()
            };
        }
        let index = match st.free.pop() {
            Some(i) => i,
            None => {
                let i = procs::take(self.region.procs(), ENTRY_LANE, &|e| self.region.on_reap(e))?;
                st.all.push(i);
                i
            }
        };
        Some(GuardLane {
            ann: Announce::new(Some(&self.region.procs()[index])),
            pool: &self.pool,
            index,
        })
    }

    /// Gives the pool's lanes back (the handle is being dropped; no guard
    /// lives, as guards borrow the handle).
    pub(super) fn free_pool(&self) {
        let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch == procs::fork_epoch() {
            for &i in &st.all {
                procs::free(&self.region.procs()[i]);
            }
        }
        *st = PoolState::default();
    }

    /// Leases the `side` role of this shared handle for a guard's life.
    fn take_role(&self, side: Side) -> Result<RoleHold<'_>, u32> {
        self.lease_role(side).map(RoleHold::Leased)
    }

    // ---- reserving ----

    /// Reserves a slot for a message of up to `len` bytes and hands it out to
    /// be written in place; never waits. End it with
    /// [`ReserveGuard::commit`] or [`ReserveGuard::cancel`]; dropping it
    /// cancels.
    ///
    /// On a multi-producer queue the reservation is a claimed position:
    /// messages claimed after it wait behind it until it ends, so keep it
    /// short. On a single-producer queue a shared handle's producer role is
    /// held by the guard (other producer calls on the handle get
    /// [`SendError::RoleTaken`] meanwhile); [`Producer::reserve`] has no
    /// such cost.
    ///
    /// # Errors
    /// As [`Queue::enqueue_try`]: `Full`, `Closed`, `TooLarge` (`len` is
    /// more than the slot size), `Busy`, `RoleTaken`, `Corrupt`.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(64, 4)).unwrap();
    /// let mut slot = q.reserve(64).unwrap();
    /// slot[..5].copy_from_slice(b"hello");
    /// slot.commit(5).unwrap();
    /// let msg = q.consume().unwrap();
    /// assert_eq!(&msg[..], b"hello");
    /// ```
    pub fn reserve(&self, len: usize) -> Result<ReserveGuard<'_>, SendError> {
        if self.roles.is_some() {
            let mut role = self
                .take_role(Side::Producer)
                .map_err(|pid| SendError::RoleTaken {
                    role: "producer",
                    pid,
                })?;
            return ReserveGuard::spsc(self, role_reserve(self, &mut role, len), role, len);
        }
        self.produce_try(|| self.mpmc_reserve(len))
    }

    /// As [`Queue::reserve`], waiting while the queue is full, up to
    /// `timeout` (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{SendError, Queue, QueueConfig};
    /// use std::time::Duration;
    /// let q = Queue::in_process(&QueueConfig::new(8, 2)).unwrap();
    /// q.enqueue_try(b"a").unwrap();
    /// q.enqueue_try(b"b").unwrap();
    /// let r = q.reserve_block(8, Some(Duration::from_millis(5)));
    /// assert_eq!(r.err(), Some(SendError::Timeout));
    /// ```
    pub fn reserve_block(
        &self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<ReserveGuard<'_>, SendError> {
        self.reserve_until(len, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::reserve`], waiting while the queue is full, until
    /// `deadline` (`None`: no limit).
    pub fn reserve_until(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<ReserveGuard<'_>, SendError> {
        if self.roles.is_some() {
            let mut role = self
                .take_role(Side::Producer)
                .map_err(|pid| SendError::RoleTaken {
                    role: "producer",
                    pid,
                })?;
            let r = role_reserve_until(self, &mut role, len, deadline);
            return ReserveGuard::spsc(self, r, role, len);
        }
        self.wait_produce(deadline, || self.mpmc_reserve(len))
    }

    fn mpmc_reserve(&self, len: usize) -> Result<ReserveGuard<'_>, SendError> {
        if len > self.slot_size {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size,
            });
        }
        if self.closed() {
            return Err(SendError::Closed);
        }
        let lane = self.guard_lane().ok_or(SendError::Busy)?;
        let (pos, slot) = self.claim_tail(&lane.ann)?;
        failpoint!("queue-reserve-claimed");
        if self.closed() {
            // As in `mpmc_enqueue_try`: consumers may have seen the queue
            // drained before our claim.
            self.publish_len(pos, slot, 0, SLOT_TOMBSTONE);
            self.count(&self.region.header().stats.tombstones, 1);
            return Err(SendError::Closed);
        }
        Ok(ReserveGuard {
            queue: self,
            buf: Self::payload(slot),
            len,
            held: Reserved::Mpmc { pos, slot, lane },
            _not_sync: PhantomData,
        })
    }

    // ---- consuming ----

    /// Takes the next message and hands it out to be read in place; never
    /// waits. The slot is freed when the guard is dropped (or
    /// [`ConsumeGuard::release`]d). See the module doc of
    /// `shmq::queue::zerocopy` (above [`ConsumeGuard`]) on why its bytes are
    /// untrusted input.
    ///
    /// On a multi-consumer queue the guard holds a claimed position; a
    /// process that dies holding it has the message delivered again. On a
    /// single-consumer queue a shared handle's consumer role is held by the
    /// guard (other consumer calls on the handle get
    /// [`RecvError::RoleTaken`] meanwhile), and the producer cannot reuse
    /// the slot until the guard ends.
    ///
    /// # Errors
    /// As [`Queue::dequeue_try`] (no `BufferTooSmall`).
    ///
    /// # Examples
    /// ```
    /// use shmq::{RecvError, Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(64, 4).spsc(true)).unwrap();
    /// q.enqueue_try(b"packet").unwrap();
    /// {
    ///     let msg = q.consume().unwrap();
    ///     assert_eq!(msg.len(), 6);
    ///     assert_eq!(&msg[..], b"packet");
    /// } // released here
    /// assert_eq!(q.consume().err(), Some(RecvError::Empty));
    /// ```
    pub fn consume(&self) -> Result<ConsumeGuard<'_>, RecvError> {
        if self.roles.is_some() {
            let mut role = self
                .take_role(Side::Consumer)
                .map_err(|pid| RecvError::RoleTaken {
                    role: "consumer",
                    pid,
                })?;
            let r = role_peek(self, &mut role);
            return ConsumeGuard::spsc(self, r, role);
        }
        self.consume_try(|| self.mpmc_consume())
    }

    /// As [`Queue::consume`], waiting while the queue is empty, up to
    /// `timeout` (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{RecvError, Queue, QueueConfig};
    /// use std::time::Duration;
    /// let q = Queue::in_process(&QueueConfig::new(64, 4)).unwrap();
    /// let r = q.consume_block(Some(Duration::from_millis(5)));
    /// assert_eq!(r.err(), Some(RecvError::Timeout));
    /// ```
    pub fn consume_block(&self, timeout: Option<Duration>) -> Result<ConsumeGuard<'_>, RecvError> {
        self.consume_until(timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::consume`], waiting while the queue is empty, until
    /// `deadline` (`None`: no limit).
    pub fn consume_until(&self, deadline: Option<Instant>) -> Result<ConsumeGuard<'_>, RecvError> {
        if self.roles.is_some() {
            let mut role = self
                .take_role(Side::Consumer)
                .map_err(|pid| RecvError::RoleTaken {
                    role: "consumer",
                    pid,
                })?;
            let r = role_peek_until(self, &mut role, deadline);
            return ConsumeGuard::spsc(self, r, role);
        }
        self.wait_consume(deadline, || self.mpmc_consume())
    }

    fn mpmc_consume(&self) -> Result<ConsumeGuard<'_>, RecvError> {
        let lane = self.guard_lane().ok_or(RecvError::Busy)?;
        loop {
            let claim = self.claim_head(usize::MAX, &lane.ann)?;
            failpoint!("queue-consume-claimed");
            if claim.tombstone {
                self.count(&self.region.header().stats.skipped, 1);
                self.release(&claim);
                continue;
            }
            if claim.len > self.slot_size {
                self.release(&claim);
                return Err(RecvError::Corrupt {
                    detail: format!(
                        "slot holds length {} > slot size {}",
                        claim.len, self.slot_size
                    ),
                });
            }
            return Ok(ConsumeGuard {
                queue: self,
                buf: Self::payload(claim.slot),
                len: claim.len,
                held: Consumed::Mpmc { claim, lane },
                _not_sync: PhantomData,
            });
        }
    }
}

fn role_reserve<'a>(
    q: &'a Queue,
    role: &mut RoleHold<'_>,
    len: usize,
) -> Result<&'a SlotHeader, SendError> {
    q.spsc_reserve(role.get(), len)
}

fn role_reserve_until<'a>(
    q: &'a Queue,
    role: &mut RoleHold<'_>,
    len: usize,
    deadline: Option<Instant>,
) -> Result<&'a SlotHeader, SendError> {
    let role = role.get();
    match q.spsc_reserve(role, len) {
        Err(SendError::Full) => {}
        other => return other,
    }
    q.spsc_produce_wait(role, deadline, |q, role| {
        q.spsc_reserve(role, len).map(|s| s as *const SlotHeader)
    })
    // SAFETY: the pointer was made from a `&'a SlotHeader` of `q`'s region
    // just above (the closure's lifetime could not name 'a).
    .map(|s| unsafe { &*s })
}

fn role_peek<'a>(
    q: &'a Queue,
    role: &mut RoleHold<'_>,
) -> Result<(&'a SlotHeader, usize), RecvError> {
    q.spsc_peek(role.get())
}

fn role_peek_until<'a>(
    q: &'a Queue,
    role: &mut RoleHold<'_>,
    deadline: Option<Instant>,
) -> Result<(&'a SlotHeader, usize), RecvError> {
    let role = role.get();
    match q.spsc_peek(role) {
        Err(RecvError::Empty) => {}
        other => return other,
    }
    q.spsc_consume_wait(role, deadline, |q, role| {
        q.spsc_peek(role).map(|(s, n)| (s as *const SlotHeader, n))
    })
    // SAFETY: as in `role_reserve_until`.
    .map(|(s, n)| (unsafe { &*s }, n))
}

impl Producer {
    /// As [`Queue::reserve`]; on a single-producer queue without any
    /// locking (the guard borrows this producer).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let mut p = Queue::in_process(&QueueConfig::new(64, 4).spsc(true))
    ///     .unwrap()
    ///     .into_producer()
    ///     .unwrap();
    /// let mut slot = p.reserve(3).unwrap();
    /// slot.copy_from_slice(b"abc");
    /// slot.commit(3).unwrap();
    /// assert_eq!(p.len(), 1);
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<ReserveGuard<'_>, SendError> {
        let Producer { queue, role } = self;
        match role {
            Some(role) => {
                let r = queue.spsc_reserve(role, len);
                ReserveGuard::spsc(queue, r, RoleHold::Borrowed(role), len)
            }
            None => queue.produce_try(|| queue.mpmc_reserve(len)),
        }
    }

    /// As [`Queue::reserve_block`].
    pub fn reserve_block(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<ReserveGuard<'_>, SendError> {
        self.reserve_until(len, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::reserve_until`].
    pub fn reserve_until(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<ReserveGuard<'_>, SendError> {
        let Producer { queue, role } = self;
        match role {
            Some(role) => {
                let mut hold = RoleHold::Borrowed(role);
                let r = role_reserve_until(queue, &mut hold, len, deadline);
                ReserveGuard::spsc(queue, r, hold, len)
            }
            None => queue.reserve_until(len, deadline),
        }
    }
}

impl Consumer {
    /// As [`Queue::consume`]; on a single-consumer queue without any
    /// locking (the guard borrows this consumer).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(64, 4)).unwrap();
    /// q.enqueue_try(b"xyz").unwrap();
    /// let mut c = q.into_consumer().unwrap();
    /// let msg = c.consume().unwrap();
    /// assert_eq!(&*msg, b"xyz");
    /// msg.release();
    /// ```
    pub fn consume(&mut self) -> Result<ConsumeGuard<'_>, RecvError> {
        let Consumer { queue, role } = self;
        match role {
            Some(role) => {
                let r = queue.spsc_peek(role);
                ConsumeGuard::spsc(queue, r, RoleHold::Borrowed(role))
            }
            None => queue.consume_try(|| queue.mpmc_consume()),
        }
    }

    /// As [`Queue::consume_block`].
    pub fn consume_block(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<ConsumeGuard<'_>, RecvError> {
        self.consume_until(timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::consume_until`].
    pub fn consume_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<ConsumeGuard<'_>, RecvError> {
        let Consumer { queue, role } = self;
        match role {
            Some(role) => {
                let mut hold = RoleHold::Borrowed(role);
                let r = role_peek_until(queue, &mut hold, deadline);
                ConsumeGuard::spsc(queue, r, hold)
            }
            None => queue.consume_until(deadline),
        }
    }
}

// The role is a 128-byte-aligned line of its own by design (see `spsc::Role`);
// boxing it per guard would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Reserved<'a> {
    Mpmc {
        pos: u64,
        slot: &'a SlotHeader,
        lane: GuardLane<'a>,
    },
    Spsc {
        slot: &'a SlotHeader,
        role: RoleHold<'a>,
    },
    Done,
}

/// A slot reserved for a message, written in place: from [`Queue::reserve`]
/// or [`Producer::reserve`]. Dereferences to the `len` bytes reserved.
///
/// End it with [`ReserveGuard::commit`] (the first `n` bytes become the
/// message) or [`ReserveGuard::cancel`]; dropping it cancels. A cancelled
/// reservation never wedges the queue: on a multi-producer queue its
/// position is published as a tombstone that consumers skip; on a
/// single-producer queue nothing was published, and the slot is reused. A
/// process that dies holding one is handled by crash recovery the same way.
///
/// The guard may be sent to another thread (its claim is announced in a
/// lane of its own), but not shared.
///
/// # Examples
/// ```
/// use shmq::{Queue, QueueConfig};
/// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
/// let slot = q.reserve(16).unwrap();
/// slot.cancel(); // or just drop it
/// let mut slot = q.reserve(16).unwrap();
/// slot[0] = 42;
/// slot.commit(1).unwrap();
/// assert_eq!(&q.consume().unwrap()[..], &[42]);
/// ```
pub struct ReserveGuard<'a> {
    queue: &'a Queue,
    buf: *mut u8,
    len: usize,
    held: Reserved<'a>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: `buf` points into the queue's mapping, which the guard borrows;
// the slot is this guard's alone by the queue protocol; its lane (or its
// role) goes with it: nothing in it belongs to the thread that made it.
unsafe impl Send for ReserveGuard<'_> {}

impl<'a> ReserveGuard<'a> {
    fn spsc(
        queue: &'a Queue,
        slot: Result<&'a SlotHeader, SendError>,
        role: RoleHold<'a>,
        len: usize,
    ) -> Result<ReserveGuard<'a>, SendError> {
        let slot = slot?;
        Ok(ReserveGuard {
            queue,
            buf: Queue::payload(slot),
            len,
            held: Reserved::Spsc { slot, role },
            _not_sync: PhantomData,
        })
    }

    /// Publishes the first `n` bytes of the slot as the message.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] if `n` is more than was reserved (the
    /// reservation is cancelled); [`SendError::Corrupt`] if the segment
    /// was truncated under us (the message may be lost).
    pub fn commit(mut self, n: usize) -> Result<(), SendError> {
        if n > self.len {
            return Err(SendError::TooLarge {
                len: n,
                max: self.len,
            });
        }
        match std::mem::replace(&mut self.held, Reserved::Done) {
            Reserved::Mpmc { pos, slot, lane } => {
                failpoint!("queue-reserve-committing");
                self.queue.publish_len(pos, slot, n, 0);
                drop(lane);
                if let Some(t) = self.queue.region.segment().truncation_seen() {
                    return Err(t.into());
                }
                Ok(())
            }
            Reserved::Spsc { slot, mut role } => {
                failpoint!("queue-reserve-committing");
                self.queue.spsc_commit(role.get(), slot, n)
            }
            Reserved::Done => Ok(()),
        }
    }

    /// Gives the slot back unpublished (as dropping the guard does).
    pub fn cancel(self) {}

    /// The reserved bytes (as the guard dereferences).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }

    /// How many bytes were reserved (the most `commit` accepts).
    pub fn capacity(&self) -> usize {
        self.len
    }
}

impl Deref for ReserveGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `buf` is the payload of a slot this guard owns, holding
        // slot_size >= len bytes inside the validated slot array, mapped
        // while the guard borrows the queue.
        unsafe { std::slice::from_raw_parts(self.buf, self.len) }
    }
}

impl DerefMut for ReserveGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the slot is written by its owner only.
        unsafe { std::slice::from_raw_parts_mut(self.buf, self.len) }
    }
}

impl Drop for ReserveGuard<'_> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Reserved::Done) {
            Reserved::Mpmc { pos, slot, lane } => {
                self.queue.publish_len(pos, slot, 0, SLOT_TOMBSTONE);
                self.queue
                    .count(&self.queue.region.header().stats.tombstones, 1);
                drop(lane);
            }
            // Nothing was published: the position stays the producer's next.
            Reserved::Spsc { .. } | Reserved::Done => {}
        }
    }
}

impl fmt::Debug for ReserveGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReserveGuard")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

// The role is a 128-byte-aligned line of its own by design (see `spsc::Role`);
// boxing it per guard would cost an allocation per call.
#[allow(clippy::large_enum_variant)]
enum Consumed<'a> {
    Mpmc {
        claim: Claim<'a>,
        lane: GuardLane<'a>,
    },
    Spsc {
        role: RoleHold<'a>,
    },
    Done,
}

/// A message read in place: from [`Queue::consume`] or
/// [`Consumer::consume`]. Dereferences to the message's bytes; the slot is
/// freed when the guard is dropped or [`ConsumeGuard::release`]d.
///
/// The bytes are shared memory: the length was checked against the slot
/// size, but a process that breaks the protocol could change the contents
/// while you read them. Validate what you parse, as with any input.
///
/// # Examples
/// ```
/// use shmq::{Queue, QueueConfig};
/// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
/// q.enqueue_try(b"abc").unwrap();
/// let msg = q.consume().unwrap();
/// let parsed = std::str::from_utf8(&msg).unwrap().to_owned();
/// msg.release();
/// assert_eq!(parsed, "abc");
/// ```
pub struct ConsumeGuard<'a> {
    queue: &'a Queue,
    buf: *const u8,
    len: usize,
    held: Consumed<'a>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: as for `ReserveGuard`.
unsafe impl Send for ConsumeGuard<'_> {}

impl<'a> ConsumeGuard<'a> {
    fn spsc(
        queue: &'a Queue,
        peeked: Result<(&'a SlotHeader, usize), RecvError>,
        role: RoleHold<'a>,
    ) -> Result<ConsumeGuard<'a>, RecvError> {
        let (slot, len) = peeked?;
        Ok(ConsumeGuard {
            queue,
            buf: Queue::payload(slot),
            len,
            held: Consumed::Spsc { role },
            _not_sync: PhantomData,
        })
    }

    /// Frees the slot (as dropping the guard does).
    pub fn release(self) {}

    /// The message's bytes (as the guard dereferences).
    pub fn as_slice(&self) -> &[u8] {
        self
    }
}

impl Deref for ConsumeGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `buf` is the payload of a slot whose message this guard
        // holds (claimed, not released); len <= slot_size was checked, so
        // the bytes lie inside the validated slot array, mapped while the
        // guard borrows the queue.
        unsafe { std::slice::from_raw_parts(self.buf, self.len) }
    }
}

impl Drop for ConsumeGuard<'_> {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Consumed::Done) {
            Consumed::Mpmc { claim, lane } => {
                failpoint!("queue-consume-releasing");
                self.queue.release(&claim);
                drop(lane);
            }
            Consumed::Spsc { mut role } => {
                failpoint!("queue-consume-releasing");
                self.queue.spsc_advance(role.get())
            }
            Consumed::Done => {}
        }
    }
}

impl fmt::Debug for ConsumeGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumeGuard")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
