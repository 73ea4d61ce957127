//! The work queue: many producers, many consumers, each message delivered to
//! exactly one consumer, FIFO per producer, lock-free.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC ring (as in crossbeam's
//! `ArrayQueue`), over positions: `tail` counts positions claimed by producers,
//! `head` positions claimed by consumers, and position `p` lives in slot
//! `p % capacity`. Each slot's stamp says what the slot holds:
//!
//! - `p`: empty, waiting for the producer of position `p`;
//! - `p + 1`: holding the message of position `p`;
//!
//! A producer claims `t` with a CAS on `tail` once slot `t` reads `t`, writes
//! length and payload, then publishes `t + 1`. A consumer claims `h` with a CAS
//! on `head` once slot `h` reads `h + 1`, copies out, then releases the slot
//! to `h + capacity`. No lock is held across a copy: a claim owns its slot.
//!
//! Stamps are stored shifted left by one; the low bit marks a sleeper (see
//! [`crate::wait`]). A slot whose flags say [`SLOT_TOMBSTONE`] carries no
//! message: consumers skip it. Producers that claim a position after `close()`
//! publish tombstones, and crash recovery can publish them for claims a dead
//! process left half-done.

mod batch;
mod recover;
mod spsc;
mod zerocopy;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::layout::{
    Params, QueueKind, SlotHeader, CLAIM_CONSUME, CLAIM_PRODUCE, MAX_POSITION, QUEUE_FLAG_SPSC,
    SLEEP_SLOT, SLOT_HEADER_SIZE, SLOT_TOMBSTONE, STAMP_TOMB, STAMP_WAITER,
};
use crate::liveness::{self, Attached};
use crate::procs::{self, Announce};
use crate::region::Region;
use recover::{RecoverGate, IDLE_CHECK, RECOVER_EVERY};

pub use recover::StuckClaim;
pub use zerocopy::{ConsumeGuard, ReserveGuard};

/// The position a work-queue stamp names (without the waiter and tombstone bits).
#[inline]
fn stamp_pos(stamp: u64) -> u64 {
    (stamp & !STAMP_TOMB) >> 1
}
use crate::sync::Ordering;
use crate::wait::{self, Backoff, Next, WaitStrategy};
use crate::{Error, Owned, RecvError, SendError, Target};

/// Parameters of a new work queue.
///
/// # Examples
/// ```
/// use shmq::QueueConfig;
/// let config = QueueConfig::new(64, 1024).permissions(0o660);
/// assert_eq!(config.slot_size(), 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    slot_size: u32,
    capacity: u64,
    mode: u32,
    spsc: bool,
}

impl QueueConfig {
    /// A queue of `capacity` slots (at least 2) of up to `slot_size` bytes
    /// each, mode 0600.
    ///
    /// Each slot is a 16-byte header followed by the payload, rounded up to
    /// whole 64-byte cache lines: a `slot_size` of up to 48 bytes takes one
    /// line, 49 to 112 bytes two, and so on. A message then moves in one
    /// line or two; `shmq bench` measures 48 beside 64 bytes to show what the
    /// second line costs, and `shmq stat` prints the stride.
    pub fn new(slot_size: usize, capacity: usize) -> QueueConfig {
        QueueConfig {
            slot_size: slot_size.min(u32::MAX as usize) as u32,
            capacity: capacity as u64,
            mode: 0o600,
            spsc: false,
        }
    }

    /// Makes a single-producer / single-consumer queue: at most one handle
    /// produces and one consumes at a time (others get `RoleTaken`), and in
    /// exchange no operation executes a locked instruction: the fastest mode.
    ///
    /// Roles are explicit. [`Queue::into_producer`] / [`Queue::into_consumer`]
    /// take a role and hold it until the [`Producer`]/[`Consumer`] drops: the
    /// fast path, no lock of any kind per message. A plain [`Queue`] handle
    /// never holds a role: each of its calls leases the role it needs for
    /// that call only (a shared-memory compare-and-swap to take it and one to
    /// give it back), so a handle that enqueues once is not the producer
    /// afterwards, and a consumer started later is not refused because of it.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(64, 1024).spsc(true)).unwrap();
    /// q.enqueue_try(b"one").unwrap(); // leases the producer role for this call
    /// let mut consumer = q.into_consumer().unwrap(); // nobody kept a role
    /// assert_eq!(consumer.dequeue_try(&mut [0u8; 64]), Ok(3));
    /// ```
    pub fn spsc(mut self, spsc: bool) -> QueueConfig {
        self.spsc = spsc;
        self
    }

    /// Sets the permission bits of the segment (default 0600), as
    /// [`LogConfig::permissions`](crate::LogConfig::permissions) does for a
    /// log. (Called `mode(u32)` before; "mode" now only means a log's
    /// [`LogMode`](crate::LogMode).)
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig, Target};
    /// let target = Target::Posix(format!("shmq-doc-perm-{}", std::process::id()));
    /// let q = Queue::create_owned(&target, &QueueConfig::new(64, 8).permissions(0o640))?;
    /// assert_eq!(q.params().mode, 0o640);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn permissions(mut self, bits: u32) -> QueueConfig {
        self.mode = bits;
        self
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size as usize
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    fn params(&self) -> Result<Params, Error> {
        let flags = if self.spsc { QUEUE_FLAG_SPSC } else { 0 };
        Params::new(
            QueueKind::WorkQueue,
            self.slot_size,
            self.capacity,
            flags,
            0,
            self.mode,
        )
    }
}

/// Counters of a queue, read from shared memory (approximate while
/// operations are in flight).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages accepted by any enqueue.
    pub enqueued: u64,
    /// Messages handed to consumers.
    pub dequeued: u64,
    /// Messages discarded by `enqueue_shift` to make room.
    pub discarded: u64,
    /// Positions that carried no message (claims abandoned by close or
    /// crash, padding written by crash recovery).
    pub tombstones: u64,
    /// Of `tombstones`: claims of producers that died before publishing.
    pub dead_claims: u64,
    /// Messages delivered again because their consumer died before its
    /// dequeue returned (the application never saw them).
    pub redelivered: u64,
    /// Messages waiting now.
    pub len: u64,
    /// Number of slots.
    pub capacity: u64,
}

/// A handle to a work queue in shared memory (or on the heap).
///
/// Handles are `Send + Sync`: share one between threads, or open one per
/// process. Dropping a handle detaches; the queue lives until unlinked.
///
/// # Examples
/// ```
/// use shmq::{Queue, QueueConfig, Target};
/// let target = Target::Posix(format!("shmq-doc-queue-{}", std::process::id()));
/// let producer = Queue::create(&target, &QueueConfig::new(64, 16)).unwrap();
/// let consumer = Queue::open(&target).unwrap();
/// producer.enqueue_try(b"hello").unwrap();
/// let mut buf = [0u8; 64];
/// let n = consumer.dequeue_try(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"hello");
/// target.unlink().unwrap();
/// ```
#[derive(Debug)]
pub struct Queue {
    region: Region,
    slot_size: usize,
    capacity: u64,
    /// `capacity - 1` when capacity is a power of two, else 0 (use `%`).
    mask: u64,
    wait: WaitStrategy,
    /// Single-producer/single-consumer queues: the roles this handle holds.
    roles: Option<Box<Roles>>,
    /// Rate limit of crash-recovery checks.
    gate: Box<RecoverGate>,
    /// Lanes of zero-copy guards (multi-producer queues).
    pool: Box<zerocopy::LanePool>,
}

/// Which end of a single-producer/single-consumer queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Producer,
    Consumer,
}

/// The turns of a shared [`Queue`] handle's threads at the roles of a
/// single-producer/single-consumer queue: a thread holds the lock of a side
/// while its call leases that role (see [`Queue::with_role`]).
#[derive(Debug, Default)]
struct Roles {
    producer: Mutex<()>,
    consumer: Mutex<()>,
}

/// A position claimed by a consumer, not yet released.
struct Claim<'a> {
    pos: u64,
    slot: &'a SlotHeader,
    len: usize,
    tombstone: bool,
}

impl Queue {
    /// Creates a new queue at `target`. Fails with [`Error::AlreadyExists`]
    /// if anything is there already, and leaves it untouched.
    pub fn create(target: &Target, config: &QueueConfig) -> Result<Queue, Error> {
        Region::create(target, config.params()?).map(Queue::from_region)
    }

    /// As [`Queue::create`], returning a handle that removes the queue's
    /// name when it drops, in this process only (see [`Owned`]): the
    /// cleanup a program that creates its own queue wants, with no wrapper
    /// of its own.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig, Target};
    /// let target = Target::Posix(format!("shmq-doc-create-owned-{}", std::process::id()));
    /// let q = Queue::create_owned(&target, &QueueConfig::new(64, 8))?;
    /// q.enqueue_try(b"job")?;
    /// drop(q);
    /// assert!(Queue::open(&target).is_err()); // removed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_owned(target: &Target, config: &QueueConfig) -> Result<Owned<Queue>, Error> {
        Queue::create(target, config).map(|q| Owned::new(q, Some(target.clone())))
    }

    /// Opens an existing queue; never creates.
    pub fn open(target: &Target) -> Result<Queue, Error> {
        Region::open(target, QueueKind::WorkQueue).map(Queue::from_region)
    }

    /// Creates the queue, or opens it if it exists and its slot size and
    /// capacity match `config` (else [`Error::Incompatible`]).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig, Target, Error};
    /// let target = Target::Posix(format!("shmq-doc-ooc-{}", std::process::id()));
    /// let a = Queue::open_or_create(&target, &QueueConfig::new(64, 8)).unwrap();
    /// let b = Queue::open_or_create(&target, &QueueConfig::new(64, 8)).unwrap();
    /// let c = Queue::open_or_create(&target, &QueueConfig::new(128, 8));
    /// assert!(matches!(c, Err(Error::Incompatible { .. })));
    /// target.unlink().unwrap();
    /// # drop((a, b));
    /// ```
    pub fn open_or_create(target: &Target, config: &QueueConfig) -> Result<Queue, Error> {
        Region::open_or_create(target, config.params()?).map(Queue::from_region)
    }

    /// A queue on the heap, for the threads of this process (no segment).
    ///
    /// # Examples
    /// ```
    /// let q = shmq::Queue::in_process(&shmq::QueueConfig::new(8, 4)).unwrap();
    /// q.enqueue_try(&[1, 2, 3]).unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn in_process(config: &QueueConfig) -> Result<Queue, Error> {
        Ok(Queue::from_region(Region::heap(config.params()?)))
    }

    fn from_region(region: Region) -> Queue {
        let p = *region.params();
        Queue {
            slot_size: p.slot_size as usize,
            capacity: p.capacity,
            mask: if p.capacity.is_power_of_two() {
                p.capacity - 1
            } else {
                0
            },
            wait: WaitStrategy::default(),
            roles: (p.flags & QUEUE_FLAG_SPSC != 0).then(Box::default),
            gate: Box::new(RecoverGate::new()),
            pool: Box::default(),
            region,
        }
    }

    /// Whether this is a single-producer/single-consumer queue.
    pub fn is_spsc(&self) -> bool {
        self.roles.is_some()
    }

    /// Runs `f` holding the `side` role for this one call: takes the role
    /// (or returns the pid of its live holder), runs `f`, gives the role
    /// back. A shared handle never keeps a role between calls, so it can
    /// never take one by accident: only [`Queue::into_producer`] and
    /// [`Queue::into_consumer`] hold a role for longer. Threads sharing the
    /// handle take turns at each side.
    fn with_role<R>(&self, side: Side, f: impl FnOnce(&mut spsc::Role) -> R) -> Result<R, u32> {
        let roles = self
            .roles
            .as_ref()
            .expect("only for single-producer/single-consumer queues");
        let lock = match side {
            Side::Producer => &roles.producer,
            Side::Consumer => &roles.consumer,
        };
        let _turn = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut lease = self.lease_role(side)?;
        Ok(f(lease.role()))
    }

    /// Turns this handle into the queue's producer end. On a
    /// single-producer queue this takes the producer role (failing with
    /// [`Error::RoleTaken`] if a live handle holds it, in this process or
    /// another) and gives the fastest path: no lock of any kind per
    /// message. The role is held until the [`Producer`] drops.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(64, 8).spsc(true)).unwrap();
    /// # let target = shmq::Target::Posix(format!("shmq-doc-prod-{}", std::process::id()));
    /// # let q = Queue::create(&target, &QueueConfig::new(64, 8).spsc(true)).unwrap();
    /// let mut producer = Queue::open(&target).unwrap().into_producer().unwrap();
    /// let mut consumer = Queue::open(&target).unwrap().into_consumer().unwrap();
    /// producer.enqueue_try(b"tick").unwrap();
    /// assert_eq!(consumer.dequeue_try(&mut [0u8; 64]), Ok(4));
    /// # target.unlink().unwrap();
    /// ```
    pub fn into_producer(self) -> Result<Producer, Error> {
        let role =
            match self.roles {
                Some(_) => Some(self.claim_role(Side::Producer).map(spsc::OwnLine).map_err(
                    |pid| Error::RoleTaken {
                        role: "producer",
                        pid,
                    },
                )?),
                None => None,
            };
        Ok(Producer { queue: self, role })
    }

    /// Turns this handle into the queue's consumer end (see [`Queue::into_producer`]).
    pub fn into_consumer(self) -> Result<Consumer, Error> {
        let role =
            match self.roles {
                Some(_) => Some(self.claim_role(Side::Consumer).map(spsc::OwnLine).map_err(
                    |pid| Error::RoleTaken {
                        role: "consumer",
                        pid,
                    },
                )?),
                None => None,
            };
        Ok(Consumer { queue: self, role })
    }

    /// Sets how this handle's blocking calls wait.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Queue, QueueConfig, WaitStrategy};
    /// let q = Queue::in_process(&QueueConfig::new(8, 4)).unwrap()
    ///     .with_wait_strategy(WaitStrategy::BusySpin);
    /// assert_eq!(q.wait_strategy(), WaitStrategy::BusySpin);
    /// ```
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Queue {
        self.wait = wait;
        self
    }

    /// Sets how this handle's blocking calls wait, in place. Every handle
    /// that blocks has the same pair: `with_wait_strategy(self, w) -> Self`
    /// and `set_wait_strategy(&mut self, w)`, on [`Queue`], [`Producer`],
    /// [`Consumer`], [`Log`](crate::Log), [`Publisher`](crate::Publisher)
    /// and [`Subscriber`](crate::Subscriber).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Queue, QueueConfig, WaitStrategy};
    /// let spin = WaitStrategy::BusySpin;
    /// let mut q = Queue::in_process(&QueueConfig::new(8, 4)).unwrap();
    /// q.set_wait_strategy(spin);
    /// let mut p = q.into_producer().unwrap().with_wait_strategy(WaitStrategy::default());
    /// p.set_wait_strategy(spin);
    /// assert_eq!(p.wait_strategy(), spin);
    /// let c = Queue::in_process(&QueueConfig::new(8, 4)).unwrap()
    ///     .into_consumer().unwrap().with_wait_strategy(spin);
    /// assert_eq!(c.wait_strategy(), spin);
    /// let mut log = Log::in_process(&LogConfig::new(8, 4)).unwrap();
    /// log.set_wait_strategy(spin);
    /// let s = log.subscribe(shmq::Start::Latest).unwrap().with_wait_strategy(spin);
    /// assert_eq!(s.wait_strategy(), spin);
    /// let publisher = log.into_publisher().unwrap().with_wait_strategy(spin);
    /// assert_eq!(publisher.wait_strategy(), spin);
    /// ```
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How this handle's blocking calls wait.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The validated parameters of the segment.
    pub fn params(&self) -> &Params {
        self.region.params()
    }

    /// Where the queue lives (`None` for [`Queue::in_process`]).
    pub fn target(&self) -> Option<&Target> {
        self.region.segment().target()
    }

    /// Removes the queue's name (see [`Target::unlink`]); this and other
    /// handles keep working until dropped.
    pub fn unlink(&self) -> Result<(), Error> {
        match self.target() {
            Some(t) => t.unlink(),
            None => Ok(()),
        }
    }

    /// Writes a file-backed queue to disk; a no-op for other backings.
    pub fn flush(&self) -> Result<(), Error> {
        self.region.segment().flush()
    }

    /// The processes attached to this queue, and whether each is alive.
    pub fn attached(&self) -> Vec<Attached> {
        liveness::list(self.region.procs())
    }

    /// The slot index of position `pos`.
    #[inline]
    fn index(&self, pos: u64) -> u64 {
        if self.mask != 0 {
            pos & self.mask
        } else {
            pos % self.capacity
        }
    }

    #[inline]
    fn slot(&self, pos: u64) -> &SlotHeader {
        // SAFETY: index < capacity by construction.
        unsafe { self.region.slot(self.index(pos)) }
    }

    #[inline]
    fn payload(slot: &SlotHeader) -> *mut u8 {
        // The payload follows the slot header inside the same stride.
        (slot as *const SlotHeader as *mut u8).wrapping_add(SLOT_HEADER_SIZE)
    }

    fn closed(&self) -> bool {
        // SYNC(close): SeqCst, pairs with the SeqCst store in `close`: a
        // producer that claimed after the close is seen as such (see `drained`).
        self.region.header().control.closed.load(Ordering::SeqCst) != 0
    }

    /// Whether `close()` was called on this queue (by any process).
    pub fn is_closed(&self) -> bool {
        self.closed()
    }

    /// Number of messages waiting (approximate while operations are in flight).
    pub fn len(&self) -> usize {
        let h = self.region.header();
        // Relaxed: a snapshot for display; no decision depends on it.
        let tail = h.tail.value.load(Ordering::Relaxed);
        let head = h.head.value.load(Ordering::Relaxed);
        let positions = tail.saturating_sub(head).min(self.capacity);
        positions.saturating_sub(self.pending_tombstones()) as usize
    }

    /// Published tombstones not yet skipped by a consumer (they are not
    /// messages waiting). Counted, never scanned for.
    fn pending_tombstones(&self) -> u64 {
        if self.roles.is_some() {
            return 0;
        }
        let s = &self.region.header().stats;
        // Relaxed: statistics.
        let published = s.tombstones.load(Ordering::Relaxed);
        published.saturating_sub(s.skipped.load(Ordering::Relaxed))
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters: enqueued, dequeued, discarded by shift, tombstones, length,
    /// and what crash recovery did (claims of dead producers, messages of
    /// dead consumers delivered again).
    ///
    /// Counters count completed operations: a claim that a producer has not
    /// published yet (or never will: it died) is not counted as enqueued.
    ///
    /// # Examples
    /// ```
    /// let q = shmq::Queue::in_process(&shmq::QueueConfig::new(8, 2)).unwrap();
    /// q.enqueue_shift(b"a").unwrap();
    /// q.enqueue_shift(b"b").unwrap();
    /// assert_eq!(q.enqueue_shift(b"c"), Ok(1)); // "a" made room
    /// let s = q.stats();
    /// assert_eq!((s.enqueued, s.discarded, s.len), (3, 1, 2));
    /// ```
    pub fn stats(&self) -> QueueStats {
        let h = self.region.header();
        // Relaxed: counters for display; each is individually coherent.
        let tail = h.tail.value.load(Ordering::Relaxed);
        let head = h.head.value.load(Ordering::Relaxed);
        let discarded = h.stats.discarded.load(Ordering::Relaxed);
        let tombstones = h.stats.tombstones.load(Ordering::Relaxed);
        let skipped = h.stats.skipped.load(Ordering::Relaxed);
        let redelivered = h.stats.redelivered.load(Ordering::Relaxed);
        let dead_claims = h.stats.dead_claims.load(Ordering::Relaxed);
        let unpublished = if self.roles.is_some() {
            0
        } else {
            self.claims().iter().filter(|c| c.producing).count() as u64
        };
        let positions = tail.saturating_sub(head).min(self.capacity);
        QueueStats {
            enqueued: tail
                .saturating_sub(tombstones)
                .saturating_sub(redelivered)
                .saturating_sub(unpublished),
            dequeued: head
                .saturating_sub(discarded)
                .saturating_sub(skipped)
                .saturating_sub(redelivered),
            discarded,
            tombstones,
            dead_claims,
            redelivered,
            len: positions
                .saturating_sub(tombstones.saturating_sub(skipped))
                .saturating_sub(unpublished),
            capacity: self.capacity,
        }
    }

    // ---- producing ----

    /// The calling thread's lane, in which it announces its claims.
    #[inline]
    fn announce(&self) -> Option<Announce<'_>> {
        self.region.lane().map(|lane| Announce::new(Some(lane)))
    }

    /// Claims the next producer position, or says why not. The claim is
    /// announced in `ann` before the claiming CAS (see [`crate::procs`]).
    #[inline]
    fn claim_tail(&self, ann: &Announce<'_>) -> Result<(u64, &SlotHeader), SendError> {
        let tail = &self.region.header().tail.value;
        // Relaxed: only a first guess; the stamp and the CAS decide.
        let mut t = tail.load(Ordering::Relaxed);
        loop {
            if t > MAX_POSITION {
                return Err(SendError::Corrupt {
                    detail: format!("tail {t} is beyond the largest position"),
                });
            }
            let slot = self.slot(t);
            // SYNC(slot-free): Acquire, pairs with the Release swap in
            // `release`: the last consumer's copy-out is done before we write.
            let s = stamp_pos(slot.stamp.load(Ordering::Acquire));
            if s == t {
                ann.set(CLAIM_PRODUCE, t);
                // SYNC(claim-close): SeqCst, ordered against the store of
                // `closed` and the consumer's load of tail in `drained`.
                // SYNC(claim-announce): its release half publishes the
                // announcement above to recoverers that Acquire tail.
                match tail.compare_exchange_weak(t, t + 1, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => return Ok((t, slot)),
                    Err(cur) => t = cur,
                }
            } else {
                let cur = tail.load(Ordering::Relaxed);
                if cur != t {
                    t = cur; // another producer moved on: retry there
                } else if (s.wrapping_sub(t) as i64) < 0 {
                    return Err(SendError::Full); // slot still holds the previous lap
                } else {
                    // The Acquire above saw a publish of a later lap, which
                    // happens after tail passed t: tail cannot still read t.
                    return Err(SendError::Corrupt {
                        detail: self
                            .region
                            .segment()
                            .explain(format!("slot stamp {s} is ahead of tail {t}")),
                    });
                }
            }
        }
    }

    /// Writes `msg` into a claimed slot and publishes it.
    #[inline]
    fn publish(&self, pos: u64, slot: &SlotHeader, msg: &[u8], flags: u32) {
        debug_assert!(msg.len() <= self.slot_size);
        // SAFETY: this process owns position `pos` (claimed, not published);
        // the payload area holds slot_size >= msg.len() bytes inside the
        // validated slot array; no one else touches it until the swap below.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), Self::payload(slot), msg.len()) };
        self.publish_len(pos, slot, msg.len(), flags);
    }

    /// Publishes a claimed slot whose payload holds `len` bytes written in place.
    #[inline]
    fn publish_len(&self, pos: u64, slot: &SlotHeader, len: usize, flags: u32) {
        debug_assert!(len <= self.slot_size);
        // Relaxed: published by the Release swap below.
        slot.len.store(len as u32, Ordering::Relaxed);
        slot.flags.store(flags, Ordering::Relaxed);
        failpoint!("queue-publish");
        // SYNC(slot-publish): Release, pairs with the Acquire stamp load in
        // `claim_head`. The swap also reads the waiter bit (see crate::wait).
        let old = slot.stamp.swap((pos + 1) << 1, Ordering::Release);
        if old & STAMP_WAITER != 0 {
            wait::wake_all(&slot.stamp);
        }
    }

    /// Enqueues `msg` if a slot is free; never waits.
    ///
    /// # Errors
    /// [`SendError::Full`], [`SendError::Closed`],
    /// [`SendError::TooLarge`] (nothing written).
    ///
    /// # Examples
    /// ```
    /// use shmq::{SendError, Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(4, 2)).unwrap();
    /// q.enqueue_try(b"ab").unwrap();
    /// q.enqueue_try(b"").unwrap(); // empty messages are messages too
    /// assert_eq!(q.enqueue_try(b"c"), Err(SendError::Full));
    /// assert_eq!(q.enqueue_try(b"too long"), Err(SendError::TooLarge { len: 8, max: 4 }));
    /// ```
    #[inline]
    pub fn enqueue_try(&self, msg: &[u8]) -> Result<(), SendError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Producer, |role| self.spsc_enqueue(role, msg))
                .unwrap_or_else(|pid| {
                    Err(SendError::RoleTaken {
                        role: "producer",
                        pid,
                    })
                });
        }
        self.produce_try(|| self.mpmc_enqueue_try(msg))
    }

    /// A multi-producer `try` attempt, with the crash-recovery check of a
    /// full ring now and then.
    #[inline]
    fn produce_try<T>(
        &self,
        attempt: impl FnOnce() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        match attempt() {
            Err(SendError::Full) => {
                if let Some(t) = self.region.segment().truncation_seen() {
                    return Err(t.into());
                }
                if self.recovery_due(false) {
                    self.recover_producer_side()?;
                }
                Err(SendError::Full)
            }
            other => other,
        }
    }

    #[inline]
    fn mpmc_enqueue_try(&self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > self.slot_size {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.slot_size,
            });
        }
        if self.closed() {
            return Err(SendError::Closed);
        }
        let ann = self.announce().ok_or(SendError::Busy)?;
        let (pos, slot) = self.claim_tail(&ann)?;
        failpoint!("queue-produce-claimed");
        if self.closed() {
            // Closed after our check: the position is ours and must be
            // published, but as a tombstone, so drained consumers stay right.
            self.publish(pos, slot, &[], SLOT_TOMBSTONE);
            self.count(&self.region.header().stats.tombstones, 1);
            return Err(SendError::Closed);
        }
        self.publish(pos, slot, msg, 0);
        failpoint!("queue-produce-published");
        // Truncated under us: the message may have gone to the zero pages
        // that replaced the segment, so do not report it enqueued.
        if let Some(t) = self.region.segment().truncation_seen() {
            return Err(t.into());
        }
        Ok(())
    }

    /// Adds `n` to a statistics counter.
    fn count(&self, counter: &crate::sync::AtomicU64, n: u64) {
        // Relaxed: a statistic.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Enqueues `msg`, waiting while the queue is full, up to `timeout`
    /// (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{SendError, Queue, QueueConfig};
    /// use std::time::Duration;
    /// let q = Queue::in_process(&QueueConfig::new(4, 2)).unwrap();
    /// q.enqueue_block(b"a", Some(Duration::from_millis(10))).unwrap();
    /// q.enqueue_block(b"b", None).unwrap();
    /// let full = q.enqueue_block(b"c", Some(Duration::from_millis(10)));
    /// assert_eq!(full, Err(SendError::Timeout));
    /// ```
    pub fn enqueue_block(&self, msg: &[u8], timeout: Option<Duration>) -> Result<(), SendError> {
        self.enqueue_until(msg, timeout.map(|t| Instant::now() + t))
    }

    /// Enqueues `msg`, waiting while the queue is full, until `deadline`
    /// (`None`: no limit).
    pub fn enqueue_until(&self, msg: &[u8], deadline: Option<Instant>) -> Result<(), SendError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Producer, |role| {
                    self.spsc_enqueue_until(role, msg, deadline)
                })
                .unwrap_or_else(|pid| {
                    Err(SendError::RoleTaken {
                        role: "producer",
                        pid,
                    })
                });
        }
        self.wait_produce(deadline, || self.mpmc_enqueue_try(msg))
    }

    /// Repeats a multi-producer attempt while the ring is full, waiting as
    /// `enqueue_until` does, until `deadline`.
    fn wait_produce<T>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let mut backoff = Backoff::new(self.wait, deadline);
        loop {
            match attempt() {
                Err(SendError::Full) => {}
                other => return other,
            }
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => {
                    self.region.segment().check_intact()?;
                    return Err(SendError::Timeout);
                }
                Next::Sleep => {
                    self.region.segment().check_intact()?;
                    if self.recovery_due(true) && self.recover_producer_side()? {
                        continue;
                    }
                    // Relaxed: a guess; the stamp read decides.
                    let t = self.region.header().tail.value.load(Ordering::Relaxed);
                    let slot = self.slot(t);
                    // Relaxed: only compared; the sleep re-checks atomically.
                    let s = slot.stamp.load(Ordering::Relaxed);
                    // Sleep only while slot `t` holds an older lap: its
                    // release wakes us. A later stamp means `t` was stale
                    // (another producer took it): retry, do not wait for
                    // that slot to come round again. The sleep is bounded:
                    // the slot's holder may have died.
                    if stamp_pos(s) < t {
                        self.sleep_on(t, s, backoff.remaining(), RECOVER_EVERY);
                    }
                }
            }
        }
    }

    /// Sleeps on the stamp of the slot of position `pos` while it holds
    /// `seen`, at most `remaining` and `cap`, announcing the sleep in the
    /// thread's lane so that `close` can find it.
    fn sleep_on(&self, pos: u64, seen: u64, remaining: Option<Duration>, cap: Duration) {
        let slot = self.slot(pos);
        let ann = Announce::new(self.region.lane());
        ann.sleeping(procs::sleep_slot(self.index(pos)));
        let bound = if ann.has_lane() {
            cap
        } else {
            Duration::from_millis(1)
        };
        wait::sleep_on_stamp(
            &slot.stamp,
            seen,
            Some(&self.region.header().control.closed),
            Some(remaining.map_or(bound, |r| r.min(bound))),
        );
        ann.sleeping(0);
    }

    /// Enqueues `msg`; when the queue is full, discards the oldest message to
    /// make room. Returns how many messages it discarded: 0 or 1 (also
    /// counted in [`QueueStats::discarded`]).
    ///
    /// Never waits for a consumer to make room: the oldest message is
    /// replaced in its slot, as one step (claim it, then write `msg` into
    /// the same slot as the newest), so no other producer can take the room
    /// it made and nothing is discarded without `msg` going in. It waits
    /// only for a peer in the middle of an operation on the one slot it
    /// needs (a consumer copying out of it, a producer writing into it), at
    /// most [`Queue::SHIFT_PATIENCE`], then returns [`SendError::Full`]
    /// having discarded nothing (that peer has stopped).
    ///
    /// If the queue is closed concurrently, after the oldest message was
    /// claimed, that message is counted as discarded in the statistics and
    /// the call returns [`SendError::Closed`].
    pub fn enqueue_shift(&self, msg: &[u8]) -> Result<u64, SendError> {
        if self.roles.is_some() {
            return self.spsc_shift(msg);
        }
        let hdr = self.region.header();
        let mut backoff = Backoff::new(self.wait, Some(Instant::now() + Self::SHIFT_PATIENCE));
        loop {
            match self.mpmc_enqueue_try(msg) {
                Ok(()) => return Ok(0),
                Err(SendError::Full) => {}
                Err(e) => return Err(e),
            }
            // Full: slot `t` still holds an older lap. If that is the
            // published, unclaimed message of position t - capacity (the
            // oldest), replace it in place (as crossbeam's `force_push`).
            // SYNC(claim-close): SeqCst, as the tail CAS in `claim_tail`.
            let t = hdr.tail.value.load(Ordering::SeqCst);
            if t > MAX_POSITION {
                return Err(SendError::Corrupt {
                    detail: format!("tail {t} is beyond the largest position"),
                });
            }
            let slot = self.slot(t);
            let oldest = t.wrapping_sub(self.capacity);
            // SYNC(slot-publish): Acquire, pairs with the Release swap in
            // `publish`: the oldest message's writes are done before ours.
            let s = slot.stamp.load(Ordering::Acquire);
            if t >= self.capacity && stamp_pos(s) == oldest + 1 {
                let ann = self.announce().ok_or(SendError::Busy)?;
                ann.set(CLAIM_CONSUME, oldest);
                // SYNC(claim-announce): Release, publishes the announcement
                // to recoverers that Acquire head; atomicity decides the claim,
                // which fails if a consumer took the oldest first.
                if hdr
                    .head
                    .value
                    .compare_exchange(oldest, oldest + 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.replace_oldest(t, slot, msg, &ann);
                }
            }
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => return Err(SendError::Full),
                Next::Sleep => {
                    // Sleep only while slot `t` still holds an older lap (its
                    // consumer or producer is mid-operation); it wakes us
                    // when it swaps the stamp.
                    if stamp_pos(s) < t {
                        self.sleep_on(t, s, backoff.remaining(), RECOVER_EVERY);
                    }
                }
            }
        }
    }

    /// How long [`Queue::enqueue_shift`] waits for a peer that is in the
    /// middle of an operation on the slot it needs before returning
    /// [`SendError::Full`].
    pub const SHIFT_PATIENCE: Duration = Duration::from_millis(100);

    /// Second half of `enqueue_shift`: this process has claimed position
    /// `t - capacity` (the oldest message, in slot `t`) from the consumers.
    /// Moves tail past `t` and writes `msg` into that slot as position `t`.
    fn replace_oldest(
        &self,
        t: u64,
        slot: &SlotHeader,
        msg: &[u8],
        ann: &Announce<'_>,
    ) -> Result<u64, SendError> {
        let hdr = self.region.header();
        // Relaxed: ordered after the Acquire stamp load in `enqueue_shift`;
        // the slot cannot change while we own its position.
        let was_message = slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE == 0
            // Relaxed: as above.
            && slot.stamp.load(Ordering::Relaxed) & STAMP_TOMB == 0;
        failpoint!("queue-shift-claimed-oldest");
        // From here the claim is on `t`: a recoverer that finds slot `t`
        // holding the oldest message unreleased checks both positions.
        ann.set(CLAIM_PRODUCE, t);
        // No producer can claim `t` while its slot's stamp reads the oldest
        // position, so tail still reads `t`.
        // SYNC(claim-close): SeqCst, as the tail CAS in `claim_tail`.
        if hdr
            .tail
            .value
            .compare_exchange(t, t + 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            // Only garbage in shared memory gets here. Free the slot for
            // position `t` so the queue keeps moving.
            self.release(&Claim {
                pos: t.wrapping_sub(self.capacity),
                slot,
                len: 0,
                tombstone: !was_message,
            });
            return Err(SendError::Corrupt {
                detail: format!("tail moved past {t} while its slot was held"),
            });
        }
        if was_message {
            self.count(&hdr.stats.discarded, 1);
        } else {
            // The oldest was a tombstone: it is skipped here, not by a consumer.
            self.count(&hdr.stats.skipped, 1);
        }
        failpoint!("queue-shift-claimed-tail");
        if self.closed() {
            // As in `enqueue_try`: consumers may have seen the queue drained.
            self.publish(t, slot, &[], SLOT_TOMBSTONE);
            self.count(&hdr.stats.tombstones, 1);
            return Err(SendError::Closed);
        }
        self.publish(t, slot, msg, 0);
        Ok(was_message as u64)
    }

    /// `enqueue_shift` on a single-producer/single-consumer queue: making
    /// room means consuming, so this handle needs both roles.
    fn spsc_shift(&self, msg: &[u8]) -> Result<u64, SendError> {
        let taken = |pid| {
            Err(SendError::RoleTaken {
                role: "producer",
                pid,
            })
        };
        self.with_role(Side::Consumer, |consumer| {
            self.with_role(Side::Producer, |role| {
                let mut discarded = 0;
                loop {
                    match self.spsc_enqueue(role, msg) {
                        Err(SendError::Full) if self.spsc_discard(consumer) => {
                            discarded += 1;
                            self.count(&self.region.header().stats.discarded, 1);
                        }
                        other => return other.map(|()| discarded),
                    }
                }
            })
            .unwrap_or_else(taken)
        })
        .unwrap_or_else(taken)
    }

    // ---- consuming ----

    /// Claims the next consumer position if it holds a message of at most
    /// `room` bytes (or a tombstone), announcing the claim in `ann`.
    #[inline]
    fn claim_head(&self, room: usize, ann: &Announce<'_>) -> Result<Claim<'_>, RecvError> {
        let head = &self.region.header().head.value;
        // Relaxed: only a first guess; the stamp and the CAS decide.
        let mut h = head.load(Ordering::Relaxed);
        loop {
            if h > MAX_POSITION {
                return Err(RecvError::Corrupt {
                    detail: format!("head {h} is beyond the largest position"),
                });
            }
            let slot = self.slot(h);
            // SYNC(slot-publish): Acquire, pairs with the Release swap in `publish`.
            let raw = slot.stamp.load(Ordering::Acquire);
            let s = stamp_pos(raw);
            let ready = h.wrapping_add(1);
            if s == ready {
                // Relaxed: ordered after the publish by the Acquire above; the
                // slot cannot change until position h is claimed and released.
                let len = slot.len.load(Ordering::Relaxed) as usize;
                let tombstone = raw & STAMP_TOMB != 0
                    || slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0;
                if !tombstone && len <= self.slot_size && len > room {
                    return Err(RecvError::BufferTooSmall { needed: len });
                }
                ann.set(CLAIM_CONSUME, h);
                // SYNC(claim-announce): Release, publishes the announcement
                // to recoverers that Acquire head. The payload was ordered
                // by the Acquire stamp load above.
                match head.compare_exchange_weak(h, ready, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => {
                        return Ok(Claim {
                            pos: h,
                            slot,
                            len,
                            tombstone,
                        })
                    }
                    Err(cur) => h = cur,
                }
            } else {
                // Relaxed: coherence suffices; the Acquire stamp load above
                // orders it after any release of position h (see below).
                let cur = head.load(Ordering::Relaxed);
                if cur != h {
                    h = cur; // another consumer moved on: retry there
                } else if (s.wrapping_sub(ready) as i64) < 0 {
                    return Err(if self.drained(h) {
                        RecvError::Closed
                    } else {
                        RecvError::Empty
                    });
                } else {
                    // The Acquire above saw a release of position h, which
                    // happens after head passed h: head cannot still read h.
                    return Err(RecvError::Corrupt {
                        detail: self
                            .region
                            .segment()
                            .explain(format!("slot stamp {s} is ahead of head {h}")),
                    });
                }
            }
        }
    }

    /// Whether the queue is closed and no producer holds a position at or
    /// after `h` (so nothing more will ever be published).
    fn drained(&self, h: u64) -> bool {
        // SYNC(claim-close): SeqCst loads, ordered with the SeqCst store of
        // `closed` and the producers' SeqCst tail CAS: a producer whose claim
        // we do not see here will see `closed` after claiming and publish a
        // tombstone, not a message.
        self.closed() && self.region.header().tail.value.load(Ordering::SeqCst) <= h
    }

    /// Frees a claimed slot for the producer of the next lap.
    #[inline]
    fn release(&self, claim: &Claim<'_>) {
        // SYNC(slot-free): Release, pairs with the Acquire stamp load in
        // `claim_tail`. The swap also reads the waiter bit (see crate::wait).
        let old = claim
            .slot
            .stamp
            .swap((claim.pos + self.capacity) << 1, Ordering::Release);
        if old & STAMP_WAITER != 0 {
            wait::wake_all(&claim.slot.stamp);
        }
    }

    /// Dequeues the next message into `buf` and returns its length; never waits.
    ///
    /// # Errors
    /// [`RecvError::Empty`]; [`RecvError::Closed`] once closed and
    /// drained; [`RecvError::BufferTooSmall`] (the message stays queued);
    /// [`RecvError::Corrupt`] if the slot holds an impossible length (that
    /// slot is dropped so the queue keeps moving).
    ///
    /// # Examples
    /// ```
    /// use shmq::{RecvError, Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
    /// q.enqueue_try(b"hello").unwrap();
    /// let mut small = [0u8; 2];
    /// assert_eq!(q.dequeue_try(&mut small), Err(RecvError::BufferTooSmall { needed: 5 }));
    /// let mut buf = [0u8; 16];
    /// assert_eq!(q.dequeue_try(&mut buf), Ok(5));
    /// assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
    /// ```
    #[inline]
    pub fn dequeue_try(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Consumer, |role| self.spsc_dequeue(role, buf))
                .unwrap_or_else(|pid| {
                    Err(RecvError::RoleTaken {
                        role: "consumer",
                        pid,
                    })
                });
        }
        self.consume_try(|| self.mpmc_dequeue_try(buf))
    }

    /// A multi-consumer `try` attempt, with the crash-recovery checks of an
    /// empty or closed ring.
    #[inline]
    fn consume_try<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, RecvError>,
    ) -> Result<T, RecvError> {
        loop {
            match attempt() {
                Err(RecvError::Empty) if self.recovery_due(false) => {
                    self.region.segment().check_intact()?;
                    if !self.recover_consumer_side()? {
                        return Err(RecvError::Empty);
                    }
                }
                Err(RecvError::Closed) => {
                    // Closed and drained, unless a dead consumer left a
                    // message unreleased: that one is delivered again.
                    if !self.recover_orphans()? {
                        return Err(RecvError::Closed);
                    }
                }
                other => return other,
            }
        }
    }

    #[inline]
    fn mpmc_dequeue_try(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let ann = self.announce().ok_or(RecvError::Busy)?;
        loop {
            let claim = self.claim_head(buf.len(), &ann)?;
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
            // SAFETY: we own position claim.pos; the payload holds claim.len
            // <= slot_size bytes inside the validated slot array, and
            // claim.len <= buf.len() (checked in claim_head).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    Self::payload(claim.slot),
                    buf.as_mut_ptr(),
                    claim.len,
                )
            };
            failpoint!("queue-consume-copied");
            self.release(&claim);
            return Ok(claim.len);
        }
    }

    /// Dequeues the next message, waiting while the queue is empty, up to
    /// `timeout` (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{RecvError, Queue, QueueConfig};
    /// use std::time::Duration;
    /// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
    /// let mut buf = [0u8; 16];
    /// let r = q.dequeue_block(&mut buf, Some(Duration::from_millis(5)));
    /// assert_eq!(r, Err(RecvError::Timeout));
    /// q.close();
    /// assert_eq!(q.dequeue_block(&mut buf, None), Err(RecvError::Closed));
    /// ```
    pub fn dequeue_block(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        self.dequeue_until(buf, timeout.map(|t| Instant::now() + t))
    }

    /// Dequeues the next message, waiting while the queue is empty, until
    /// `deadline` (`None`: no limit).
    pub fn dequeue_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        if self.roles.is_some() {
            return self
                .with_role(Side::Consumer, |role| {
                    self.spsc_dequeue_until(role, buf, deadline)
                })
                .unwrap_or_else(|pid| {
                    Err(RecvError::RoleTaken {
                        role: "consumer",
                        pid,
                    })
                });
        }
        self.wait_consume(deadline, || self.mpmc_dequeue_try(buf))
    }

    /// Repeats a multi-consumer attempt while the ring is empty, waiting as
    /// `dequeue_until` does, until `deadline`.
    fn wait_consume<T>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<T, RecvError>,
    ) -> Result<T, RecvError> {
        let mut backoff = Backoff::new(self.wait, deadline);
        loop {
            match attempt() {
                Err(RecvError::Empty) => {}
                Err(RecvError::Closed) => {
                    if self.recover_orphans()? {
                        continue;
                    }
                    return Err(RecvError::Closed);
                }
                other => return other,
            }
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => {
                    self.region.segment().check_intact()?;
                    return Err(RecvError::Timeout);
                }
                Next::Sleep => {
                    self.region.segment().check_intact()?;
                    if self.recovery_due(true) && self.recover_consumer_side()? {
                        continue;
                    }
                    let hdr = self.region.header();
                    // Relaxed: a guess; the stamp read decides.
                    let h = hdr.head.value.load(Ordering::Relaxed);
                    let slot = self.slot(h);
                    // Relaxed: only compared; the sleep re-checks atomically.
                    let s = slot.stamp.load(Ordering::Relaxed);
                    // Sleep only while position `h` is not yet published in
                    // slot `h`: its publish wakes us. A later stamp means `h`
                    // was stale (another consumer took it): retry, do not
                    // wait for the slot's next lap while later messages wait.
                    if stamp_pos(s) <= h {
                        // A claimed position that is not published may be a
                        // dead producer's: wake up soon to check. Otherwise
                        // the next claim's publish wakes us; the bound only
                        // covers a producer that claims and dies meanwhile.
                        // Relaxed: a guess, as above.
                        let in_flight = hdr.tail.value.load(Ordering::Relaxed) > h;
                        let cap = if in_flight { RECOVER_EVERY } else { IDLE_CHECK };
                        self.sleep_on(h, s, backoff.remaining(), cap);
                    }
                }
            }
        }
    }

    /// Closes the queue for every process: producers get
    /// [`SendError::Closed`]; consumers drain what is left, then get
    /// [`RecvError::Closed`]. Wakes every sleeper. Idempotent.
    pub fn close(&self) {
        if self.roles.is_some() {
            // A shared handle holds no role between calls (see `with_role`).
            return self.spsc_close(false);
        }
        let hdr = self.region.header();
        // SYNC(close): SeqCst, pairs with the SeqCst loads in `closed`,
        // `drained` and `wait::sleep_on_stamp`.
        hdr.control.closed.store(1, Ordering::SeqCst);
        // Sleepers announce in their lanes which slot they sleep on (see
        // `sleep_on`): wake those, not every slot of the ring.
        for index in procs::sleeping_on(self.region.procs(), SLEEP_SLOT) {
            if index >= self.capacity {
                continue; // garbage in a lane
            }
            // SAFETY: index < capacity.
            let slot = unsafe { self.region.slot(index) };
            // SYNC(close-wake): SeqCst, pairs with the sleeper's SeqCst CAS of
            // the waiter bit: either we see the bit, or it sees `closed`.
            let old = slot.stamp.fetch_and(!STAMP_WAITER, Ordering::SeqCst);
            if old & STAMP_WAITER != 0 {
                wait::wake_all(&slot.stamp);
            }
        }
        // Async waiters (`crate::asyncio`) have no lane: they also wait on
        // the `closed` word itself, which we changed above.
        wait::futex_wake_u32(&hdr.control.closed);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Roles are leased per call (see `with_role`): none is held here.
        self.free_pool();
    }
}

/// The producing end of a queue, from [`Queue::into_producer`]: the fastest
/// way to enqueue on a single-producer queue (no lock of any kind per
/// message). On a multi-producer queue it simply forwards to [`Queue`].
///
/// A producer only produces: it has the enqueue, reserve and close calls
/// and the read-only ones ([`Producer::len`], [`Producer::stats`], ...),
/// and no way to reach a dequeue, so it can never take the consumer role by
/// accident. It holds the producer role until it drops; meanwhile any other
/// producer, in this process or another, gets [`SendError::RoleTaken`].
///
/// # Examples
/// ```
/// use shmq::{SendError, Queue, QueueConfig};
/// let q = Queue::in_process(&QueueConfig::new(64, 4).spsc(true)).unwrap();
/// let mut producer = q.into_producer().unwrap();
/// producer.enqueue_try(b"tick").unwrap();
/// assert_eq!((producer.len(), producer.stats().enqueued), (1, 1));
/// ```
///
/// It cannot dequeue, neither directly nor through the queue:
/// ```compile_fail
/// # use shmq::{Queue, QueueConfig};
/// let mut producer = Queue::in_process(&QueueConfig::new(64, 4).spsc(true))
///     .unwrap().into_producer().unwrap();
/// producer.dequeue_try(&mut [0u8; 64]);
/// ```
/// ```compile_fail
/// # use shmq::{Queue, QueueConfig};
/// let producer = Queue::in_process(&QueueConfig::new(64, 4).spsc(true))
///     .unwrap().into_producer().unwrap();
/// producer.queue().dequeue_try(&mut [0u8; 64]);
/// ```
#[derive(Debug)]
pub struct Producer {
    queue: Queue,
    role: Option<spsc::OwnLine<spsc::Role>>,
}

/// The consuming end of a queue, from [`Queue::into_consumer`] (see [`Producer`]).
///
/// A consumer only consumes: it has the dequeue and consume calls and the
/// read-only ones, and no way to reach an enqueue, so it can never take the
/// producer role by accident.
///
/// # Examples
/// ```
/// use shmq::{Queue, QueueConfig};
/// let q = Queue::in_process(&QueueConfig::new(64, 4).spsc(true)).unwrap();
/// q.enqueue_try(b"tock").unwrap(); // a shared handle leases the role for this call only
/// let mut consumer = q.into_consumer().unwrap();
/// assert_eq!(consumer.dequeue_try(&mut [0u8; 64]), Ok(4));
/// assert!(consumer.is_empty());
/// ```
///
/// It cannot enqueue, neither directly nor through the queue:
/// ```compile_fail
/// # use shmq::{Queue, QueueConfig};
/// let mut consumer = Queue::in_process(&QueueConfig::new(64, 4).spsc(true))
///     .unwrap().into_consumer().unwrap();
/// consumer.enqueue_try(b"x");
/// ```
/// ```compile_fail
/// # use shmq::{Queue, QueueConfig};
/// let consumer = Queue::in_process(&QueueConfig::new(64, 4).spsc(true))
///     .unwrap().into_consumer().unwrap();
/// consumer.queue().enqueue_try(b"x");
/// ```
#[derive(Debug)]
pub struct Consumer {
    queue: Queue,
    role: Option<spsc::OwnLine<spsc::Role>>,
}

impl Producer {
    /// As [`Queue::enqueue_try`].
    #[inline]
    pub fn enqueue_try(&mut self, msg: &[u8]) -> Result<(), SendError> {
        match &mut self.role {
            Some(role) => self.queue.spsc_enqueue(role, msg),
            None => self.queue.mpmc_enqueue_try(msg),
        }
    }

    /// As [`Queue::enqueue_block`].
    #[inline]
    pub fn enqueue_block(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), SendError> {
        self.enqueue_until(msg, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::enqueue_until`].
    #[inline]
    pub fn enqueue_until(
        &mut self,
        msg: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        match &mut self.role {
            Some(role) => self.queue.spsc_enqueue_until(role, msg, deadline),
            None => self.queue.enqueue_until(msg, deadline),
        }
    }

    /// Closes the queue; as the producer, nothing of ours is in flight.
    pub fn close(&self) {
        match self.role {
            Some(_) => self.queue.spsc_close(true),
            None => self.queue.close(),
        }
    }
}

impl Consumer {
    /// As [`Queue::dequeue_try`].
    #[inline]
    pub fn dequeue_try(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        match &mut self.role {
            Some(role) => self.queue.spsc_dequeue(role, buf),
            None => self.queue.mpmc_dequeue_try(buf),
        }
    }

    /// As [`Queue::dequeue_block`].
    #[inline]
    pub fn dequeue_block(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        self.dequeue_until(buf, timeout.map(|t| Instant::now() + t))
    }

    /// As [`Queue::dequeue_until`].
    #[inline]
    pub fn dequeue_until(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        match &mut self.role {
            Some(role) => self.queue.spsc_dequeue_until(role, buf, deadline),
            None => self.queue.dequeue_until(buf, deadline),
        }
    }
}

/// The read-only and whole-queue operations of a role handle, forwarded to
/// its [`Queue`]. A role handle deliberately has no way back to the shared
/// handle: through it, a producer could dequeue (taking the consumer role)
/// and a consumer enqueue.
macro_rules! role_handle_info {
    ($ty:ident) => {
        impl $ty {
            /// As [`Queue::is_spsc`].
            pub fn is_spsc(&self) -> bool {
                self.queue.is_spsc()
            }
            /// As [`Queue::slot_size`].
            pub fn slot_size(&self) -> usize {
                self.queue.slot_size()
            }
            /// As [`Queue::capacity`].
            pub fn capacity(&self) -> usize {
                self.queue.capacity()
            }
            /// As [`Queue::len`].
            pub fn len(&self) -> usize {
                self.queue.len()
            }
            /// As [`Queue::is_empty`].
            pub fn is_empty(&self) -> bool {
                self.queue.is_empty()
            }
            /// As [`Queue::is_closed`].
            pub fn is_closed(&self) -> bool {
                self.queue.is_closed()
            }
            /// As [`Queue::stats`].
            pub fn stats(&self) -> QueueStats {
                self.queue.stats()
            }
            /// As [`Queue::params`].
            pub fn params(&self) -> &Params {
                self.queue.params()
            }
            /// As [`Queue::target`].
            pub fn target(&self) -> Option<&Target> {
                self.queue.target()
            }
            /// As [`Queue::unlink`].
            pub fn unlink(&self) -> Result<(), Error> {
                self.queue.unlink()
            }
            /// As [`Queue::flush`].
            pub fn flush(&self) -> Result<(), Error> {
                self.queue.flush()
            }
            /// As [`Queue::attached`].
            pub fn attached(&self) -> Vec<Attached> {
                self.queue.attached()
            }
            /// As [`Queue::wait_strategy`].
            pub fn wait_strategy(&self) -> WaitStrategy {
                self.queue.wait_strategy()
            }
        }
    };
}

role_handle_info!(Producer);
role_handle_info!(Consumer);

/// The wait-strategy pair of a role handle (see [`Queue::set_wait_strategy`]).
macro_rules! role_handle_wait {
    ($ty:ident) => {
        impl $ty {
            /// Sets how this handle's blocking calls wait (see
            /// [`Queue::set_wait_strategy`]).
            pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> $ty {
                self.queue.set_wait_strategy(wait);
                self
            }
            /// Sets how this handle's blocking calls wait, in place.
            pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
                self.queue.set_wait_strategy(wait);
            }
        }
    };
}

role_handle_wait!(Producer);
role_handle_wait!(Consumer);

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(role) = &self.role {
            self.queue.release_role(Side::Producer, role);
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(role) = &self.role {
            self.queue.release_role(Side::Consumer, role);
        }
    }
}

/// The async API's hooks (see `crate::asyncio`): each announces a wait
/// exactly as the matching blocking call does before it sleeps, and says
/// what to sleep on.
#[cfg(feature = "async")]
impl Queue {
    /// After a dequeue reported `Empty`: announces a sleeping consumer and
    /// returns the wait; `None`: try again now.
    pub(crate) fn park_consume(&self) -> Result<Option<crate::asyncio::Park>, RecvError> {
        use crate::asyncio::IDLE_RECHECK;
        self.region.segment().check_intact()?;
        if self.is_spsc() {
            return Ok(self.spsc_park(Side::Consumer));
        }
        if self.recovery_due(true) && self.recover_consumer_side()? {
            return Ok(None);
        }
        let hdr = self.region.header();
        // Relaxed: a guess; the stamp read decides (as in `wait_consume`).
        let h = hdr.head.value.load(Ordering::Relaxed);
        let slot = self.slot(h);
        // Relaxed: only compared; the waiter bit's CAS re-checks atomically.
        let s = slot.stamp.load(Ordering::Relaxed);
        if stamp_pos(s) > h {
            return Ok(None);
        }
        // Relaxed: a guess, as in `wait_consume`: a claimed position not
        // yet published may be a dead producer's, so re-check soon.
        let in_flight = hdr.tail.value.load(Ordering::Relaxed) > h;
        let recheck = if in_flight {
            RECOVER_EVERY
        } else {
            IDLE_RECHECK
        };
        Ok(self.park_on_stamp(&slot.stamp, s, recheck))
    }

    /// After an enqueue reported `Full`: announces a sleeping producer and
    /// returns the wait; `None`: try again now.
    pub(crate) fn park_produce(&self) -> Result<Option<crate::asyncio::Park>, SendError> {
        use crate::asyncio::IDLE_RECHECK;
        self.region.segment().check_intact()?;
        if self.is_spsc() {
            return Ok(self.spsc_park(Side::Producer));
        }
        if self.recovery_due(true) && self.recover_producer_side()? {
            return Ok(None);
        }
        let hdr = self.region.header();
        // Relaxed: a guess; the stamp read decides (as in `wait_produce`).
        let t = hdr.tail.value.load(Ordering::Relaxed);
        let slot = self.slot(t);
        // Relaxed: only compared; the waiter bit's CAS re-checks atomically.
        let s = slot.stamp.load(Ordering::Relaxed);
        if stamp_pos(s) >= t {
            return Ok(None);
        }
        // The slot still holds position t - capacity. Claimed by a consumer
        // that may die mid-copy: re-check soon. Not claimed: the queue is
        // simply full and the consumer's release wakes us.
        // Relaxed: a guess, as above.
        let claimed = hdr.head.value.load(Ordering::Relaxed) > stamp_pos(s).saturating_sub(1);
        let recheck = if claimed { RECOVER_EVERY } else { IDLE_RECHECK };
        Ok(self.park_on_stamp(&slot.stamp, s, recheck))
    }

    /// Sets the waiter bit on a slot's stamp and returns the wait on it and
    /// on `closed` (close wakes that word for async waiters).
    fn park_on_stamp(
        &self,
        stamp: &crate::sync::AtomicU64,
        seen: u64,
        recheck: Duration,
    ) -> Option<crate::asyncio::Park> {
        let closed = &self.region.header().control.closed;
        wait::mark_stamp_waiter(stamp, seen, Some(closed)).map(|marked| {
            crate::asyncio::Park::new(recheck)
                .on_addr(wait::stamp_word_addr(stamp), marked)
                .on(closed, 0)
        })
    }

    /// Announces a sleeper of a single-producer/single-consumer queue as
    /// `spsc_sleep` does (counted in `sleepers` and in our entry, then the
    /// barrier, then the re-check) and returns the wait on `wake_seq`, or
    /// `None` (not counted any more) when the re-check says go.
    fn spsc_park(&self, side: Side) -> Option<crate::asyncio::Park> {
        use crate::asyncio::{Park, Undo, IDLE_RECHECK};
        use crate::layout::OPEN;
        let h = self.region.header();
        let ctl = &h.control;
        // Relaxed: snapshots the re-check compares against (as in
        // `spsc_consume_wait`); a stale value only means a spare wakeup.
        let seen_closed = ctl.closed.load(Ordering::Relaxed);
        // Relaxed: as above.
        let seen_producer = ctl.producer.load(Ordering::Relaxed);
        if let Some(e) = self.region.handle_entry() {
            // Relaxed: as in `spsc_sleep` (read by a reaper once we are dead).
            e.spsc_sleeping.fetch_add(1, Ordering::Relaxed);
        }
        // SYNC(spsc-sleep): SeqCst, announces us before the barrier below.
        ctl.sleepers.fetch_add(1, Ordering::SeqCst);
        // SYNC(spsc-wake): Acquire, pairs with the waker's Release bump.
        let seq = ctl.wake_seq.load(Ordering::Acquire);
        let barrier = wait::sleeper_barrier();
        // Relaxed loads: a re-check after the barrier; the real attempt
        // re-reads with Acquire.
        let tail = h.tail.value.load(Ordering::Relaxed);
        // Relaxed: as above.
        let head = h.head.value.load(Ordering::Relaxed);
        // Relaxed: as above.
        let closed = ctl.closed.load(Ordering::Relaxed);
        let ready = match side {
            Side::Producer => tail.wrapping_sub(head) < self.capacity || closed != OPEN,
            // Relaxed: as above.
            Side::Consumer => {
                tail != head
                    || closed != seen_closed
                    || ctl.producer.load(Ordering::Relaxed) != seen_producer
            }
        };
        if ready {
            self.spsc_unpark();
            return None;
        }
        let recheck = if !barrier {
            // No barrier available: never trust the wait for long.
            Duration::from_millis(1)
        } else if seen_closed != OPEN {
            // Closed by a third party: the producer's acknowledgement may
            // never come if it died; re-check its liveness now and then.
            Duration::from_millis(50)
        } else {
            IDLE_RECHECK
        };
        Some(
            Park::new(recheck)
                .on(&ctl.wake_seq, seq)
                .undo(Undo::Counted),
        )
    }

    /// Takes a single-producer/single-consumer sleeper out of the counts.
    fn spsc_unpark(&self) {
        let ctl = &self.region.header().control;
        // Relaxed: a count; wakers tolerate a stale non-zero (as `spsc_sleep`).
        ctl.sleepers.fetch_sub(1, Ordering::Relaxed);
        if let Some(e) = self.region.handle_entry() {
            // Relaxed: as above.
            e.spsc_sleeping.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends a wait announced by `park_consume` or `park_produce`.
    pub(crate) fn unpark(&self, park: crate::asyncio::Park) {
        if park.undo == crate::asyncio::Undo::Counted {
            self.spsc_unpark();
        }
    }
}

#[cfg(feature = "async")]
impl Consumer {
    /// The queue, for the async waits of `crate::asyncio`.
    pub(crate) fn parker(&self) -> &Queue {
        &self.queue
    }
}

#[cfg(feature = "async")]
impl Producer {
    /// The queue, for the async waits of `crate::asyncio`.
    pub(crate) fn parker(&self) -> &Queue {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(slot: usize, cap: usize) -> Queue {
        Queue::in_process(&QueueConfig::new(slot, cap)).unwrap()
    }

    /// The same queue in both modes: multi-producer and single-producer.
    fn both(slot: usize, cap: usize) -> [Queue; 2] {
        [false, true]
            .map(|spsc| Queue::in_process(&QueueConfig::new(slot, cap).spsc(spsc)).unwrap())
    }

    fn msg(i: u64, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
    }

    #[test]
    fn wraps_around_many_times_in_order() {
        for (cap, q) in [2usize, 3, 4, 7, 64]
            .into_iter()
            .flat_map(|cap| both(32, cap).map(|q| (cap, q)))
        {
            let mut buf = [0u8; 32];
            let mut next_out = 0u64;
            for i in 0..10_000u64 {
                let m = msg(i, (i % 33) as usize);
                if q.enqueue_try(&m) == Err(SendError::Full) {
                    let n = q.dequeue_try(&mut buf).unwrap();
                    assert_eq!(&buf[..n], &msg(next_out, (next_out % 33) as usize)[..]);
                    next_out += 1;
                    q.enqueue_try(&m).unwrap();
                }
            }
            while let Ok(n) = q.dequeue_try(&mut buf) {
                assert_eq!(&buf[..n], &msg(next_out, (next_out % 33) as usize)[..]);
                next_out += 1;
            }
            assert_eq!(next_out, 10_000, "capacity {cap}");
            let s = q.stats();
            assert_eq!((s.enqueued, s.dequeued, s.len), (10_000, 10_000, 0));
        }
    }

    #[test]
    fn full_empty_and_sizes() {
        for q in both(8, 2) {
            full_empty_and_sizes_on(q);
        }
    }

    fn full_empty_and_sizes_on(q: Queue) {
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
        assert_eq!(
            q.enqueue_try(&[0; 9]),
            Err(SendError::TooLarge { len: 9, max: 8 })
        );
        assert_eq!(q.len(), 0, "a rejected message writes nothing");
        q.enqueue_try(&[]).unwrap();
        q.enqueue_try(&[1; 8]).unwrap();
        assert_eq!(q.enqueue_try(&[2]), Err(SendError::Full));
        assert_eq!(q.dequeue_try(&mut buf), Ok(0));
        let mut small = [0u8; 7];
        assert_eq!(
            q.dequeue_try(&mut small),
            Err(RecvError::BufferTooSmall { needed: 8 })
        );
        assert_eq!(q.len(), 1, "the message stays queued");
        assert_eq!(q.dequeue_try(&mut buf), Ok(8));
        assert_eq!(buf, [1; 8]);
    }

    #[test]
    fn close_rejects_producers_and_drains_consumers() {
        for q in both(8, 4) {
            close_rejects_producers_and_drains_consumers_on(q);
        }
    }

    fn close_rejects_producers_and_drains_consumers_on(q: Queue) {
        q.enqueue_try(b"a").unwrap();
        q.enqueue_try(b"b").unwrap();
        q.close();
        assert!(q.is_closed());
        assert_eq!(q.enqueue_try(b"c"), Err(SendError::Closed));
        assert_eq!(q.enqueue_shift(b"c"), Err(SendError::Closed));
        assert_eq!(
            q.enqueue_block(b"c", Some(Duration::from_secs(5))),
            Err(SendError::Closed)
        );
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::from_secs(5))),
            Ok(1)
        );
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::from_secs(5))),
            Err(RecvError::Closed)
        );
    }

    #[test]
    fn tombstones_are_skipped() {
        let q = queue(8, 4);
        q.enqueue_try(b"a").unwrap();
        // A producer that claimed a position and found the queue closed
        // publishes a tombstone; simulate one between two messages.
        let ann = q.announce().unwrap();
        let (pos, slot) = q.claim_tail(&ann).unwrap();
        q.publish(pos, slot, &[], SLOT_TOMBSTONE);
        q.enqueue_try(b"b").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(&buf[..1], b"a");
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(&buf[..1], b"b");
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
    }

    #[test]
    fn shift_discards_exactly_the_oldest() {
        for q in both(8, 4) {
            shift_discards_exactly_the_oldest_on(q);
        }
    }

    fn shift_discards_exactly_the_oldest_on(q: Queue) {
        let mut total = 0;
        for i in 0..10u8 {
            total += q.enqueue_shift(&[i]).unwrap();
        }
        assert_eq!(total, 6);
        assert_eq!(q.stats().discarded, 6);
        let mut buf = [0u8; 8];
        for want in 6..10u8 {
            assert_eq!(q.dequeue_try(&mut buf), Ok(1));
            assert_eq!(buf[0], want);
        }
    }

    #[test]
    fn corrupt_stamps_give_errors_not_hangs() {
        let q = queue(8, 4);
        // A stamp far ahead of head and tail: garbage written by someone.
        // SAFETY: index 0 < capacity.
        let slot = unsafe { q.region.slot(0) };
        slot.stamp.store(1000 << 1, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        assert!(matches!(
            q.dequeue_try(&mut buf),
            Err(RecvError::Corrupt { .. })
        ));
        assert!(matches!(
            q.enqueue_try(b"x"),
            Err(SendError::Corrupt { .. })
        ));
        // A published slot claiming a length beyond the slot size.
        let q = queue(8, 4);
        q.enqueue_try(b"x").unwrap();
        // SAFETY: index 0 < capacity.
        unsafe { q.region.slot(0) }
            .len
            .store(1 << 20, Ordering::Relaxed);
        let mut big = vec![0u8; 1 << 21];
        assert!(matches!(
            q.dequeue_try(&mut big),
            Err(RecvError::Corrupt { .. })
        ));
        assert_eq!(
            q.dequeue_try(&mut big),
            Err(RecvError::Empty),
            "the bad slot was dropped"
        );
    }

    #[test]
    fn blocking_calls_time_out_and_wake() {
        let q = queue(8, 2);
        let mut buf = [0u8; 8];
        let t0 = Instant::now();
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::from_millis(30))),
            Err(RecvError::Timeout)
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        q.enqueue_try(b"1").unwrap();
        q.enqueue_try(b"2").unwrap();
        assert_eq!(
            q.enqueue_block(b"3", Some(Duration::from_millis(30))),
            Err(SendError::Timeout)
        );

        // A sleeping consumer is woken by a producer thread.
        let q = queue(8, 2);
        std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                let mut buf = [0u8; 8];
                let t0 = Instant::now();
                let r = q.dequeue_block(&mut buf, Some(Duration::from_secs(20)));
                (r, t0.elapsed())
            });
            std::thread::sleep(Duration::from_millis(100));
            q.enqueue_try(b"wake").unwrap();
            let (r, waited) = consumer.join().unwrap();
            assert_eq!(r, Ok(4));
            assert!(
                waited < Duration::from_secs(10),
                "woken by the enqueue, not the timeout"
            );
        });

        // A sleeping producer and a sleeping consumer are woken by close.
        let full = queue(8, 2);
        full.enqueue_try(b"1").unwrap();
        full.enqueue_try(b"2").unwrap();
        let empty = queue(8, 2);
        std::thread::scope(|s| {
            let p = s.spawn(|| full.enqueue_block(b"3", Some(Duration::from_secs(20))));
            let c = s.spawn(|| empty.dequeue_block(&mut [0u8; 8], Some(Duration::from_secs(20))));
            std::thread::sleep(Duration::from_millis(100));
            full.close();
            empty.close();
            assert_eq!(p.join().unwrap(), Err(SendError::Closed));
            assert_eq!(c.join().unwrap(), Err(RecvError::Closed));
        });
    }

    #[test]
    fn threads_deliver_exactly_once_in_producer_order() {
        const PRODUCERS: u64 = 3;
        const PER: u64 = 20_000;
        let q = queue(16, 8);
        let received = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let q = &q;
                    s.spawn(move || {
                        for i in 0..PER {
                            let mut m = [0u8; 16];
                            m[..8].copy_from_slice(&p.to_le_bytes());
                            m[8..].copy_from_slice(&i.to_le_bytes());
                            q.enqueue_block(&m, Some(Duration::from_secs(30))).unwrap();
                        }
                    })
                })
                .collect();
            for _ in 0..2 {
                s.spawn(|| {
                    let mut last = [None::<u64>; PRODUCERS as usize];
                    let mut got = Vec::new();
                    let mut buf = [0u8; 16];
                    loop {
                        match q.dequeue_block(&mut buf, Some(Duration::from_secs(30))) {
                            Ok(16) => {}
                            Err(RecvError::Closed) => break,
                            other => panic!("unexpected {other:?}"),
                        }
                        let p = u64::from_le_bytes(buf[..8].try_into().unwrap());
                        let i = u64::from_le_bytes(buf[8..].try_into().unwrap());
                        assert!(last[p as usize].is_none_or(|l| l < i), "FIFO per producer");
                        last[p as usize] = Some(i);
                        got.push((p, i));
                    }
                    received.lock().unwrap().extend(got);
                });
            }
            for p in producers {
                p.join().unwrap();
            }
            q.close();
        });
        let mut all = received.into_inner().unwrap();
        all.sort_unstable();
        let want: Vec<_> = (0..PRODUCERS)
            .flat_map(|p| (0..PER).map(move |i| (p, i)))
            .collect();
        assert_eq!(all, want, "every message exactly once");
    }

    fn spsc_pair(tag: &str, cap: usize) -> (crate::Target, Queue) {
        let target = crate::Target::Posix(format!("shmq-unit-{tag}-{}", std::process::id()));
        let _ = target.unlink();
        let q = Queue::create(&target, &QueueConfig::new(16, cap).spsc(true)).unwrap();
        (target, q)
    }

    #[test]
    fn a_shared_spsc_handle_never_keeps_a_role_between_calls() {
        // Issue 12's trap: the first enqueue (or dequeue) of a plain handle
        // took the role for the handle's life, and a real consumer started
        // later got RoleTaken. Now every call leases the role it needs.
        let (target, a) = spsc_pair("roles", 4);
        let (b, c) = (Queue::open(&target).unwrap(), Queue::open(&target).unwrap());
        target.unlink().unwrap();
        a.enqueue_try(b"a").unwrap();
        assert_eq!(a.dequeue_try(&mut [0u8; 16]), Ok(1));
        a.enqueue_try(b"b").unwrap();
        let mut consumer = b.into_consumer().expect("the consumer role is free");
        let mut producer = c.into_producer().expect("the producer role is free");
        assert_eq!(consumer.dequeue_try(&mut [0u8; 16]), Ok(1));
        producer.enqueue_try(b"c").unwrap();
        assert_eq!(consumer.dequeue_try(&mut [0u8; 16]), Ok(1));
        // Now the roles are held by the role handles, explicitly.
        let me = std::process::id();
        assert_eq!(
            a.enqueue_try(b"d"),
            Err(SendError::RoleTaken {
                role: "producer",
                pid: me
            })
        );
        assert_eq!(
            a.dequeue_try(&mut [0u8; 16]),
            Err(RecvError::RoleTaken {
                role: "consumer",
                pid: me
            })
        );
        drop(producer);
        drop(consumer);
        a.enqueue_try(b"e").unwrap();
        assert_eq!(a.dequeue_try(&mut [0u8; 16]), Ok(1));
    }

    #[test]
    fn role_taken_in_this_process_says_so() {
        let (target, q) = spsc_pair("taken", 4);
        let again = Queue::open(&target).unwrap();
        target.unlink().unwrap();
        let me = std::process::id();
        let text = SendError::RoleTaken {
            role: "producer",
            pid: me,
        }
        .to_string();
        assert!(
            text.contains(&format!(
                "another handle in this process (pid {me}) holds the producer role"
            )),
            "{text}"
        );
        let text = Error::RoleTaken {
            role: "consumer",
            pid: me,
        }
        .to_string();
        assert!(
            text.contains(&format!(
                "another handle in this process (pid {me}) holds the consumer role"
            )),
            "{text}"
        );
        let other = SendError::RoleTaken {
            role: "producer",
            pid: 1,
        }
        .to_string();
        assert!(
            other.starts_with("process 1 holds the producer role"),
            "{other}"
        );
        let _c = q.into_consumer().unwrap();
        let err = again.into_consumer().unwrap_err();
        assert!(
            err.to_string().contains("another handle in this process"),
            "{err}"
        );
    }

    #[test]
    fn spsc_roles_named_by_garbage_or_dead_tokens_are_taken_over() {
        for garbage in [
            u64::MAX,
            0xffff_ffff_0000_0001,
            // A token naming a real entry with the wrong generation.
            (7 << 16) | 1,
            // A token naming an entry out of range.
            (5 << 16) | 0xffff,
        ] {
            let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
            let ctl = &q.region.header().control;
            ctl.producer.store(garbage, Ordering::Relaxed);
            ctl.consumer.store(garbage, Ordering::Relaxed);
            q.enqueue_try(b"a").unwrap();
            assert_eq!(q.dequeue_try(&mut [0u8; 8]), Ok(1), "token {garbage:#x}");
        }
    }

    #[test]
    fn a_head_past_tail_is_corrupt_not_a_silent_hang() {
        let q = queue(8, 4);
        q.region.header().head.value.store(3, Ordering::Relaxed);
        let mut buf = [0u8; 8];
        let r = (0..10_000)
            .map(|_| q.dequeue_try(&mut buf))
            .find(|r| *r != Err(RecvError::Empty));
        assert!(matches!(r, Some(Err(RecvError::Corrupt { .. }))), "{r:?}");
        assert!(matches!(
            q.dequeue_block(&mut buf, Some(Duration::from_secs(5))),
            Err(RecvError::Corrupt { .. })
        ));
    }

    #[test]
    fn spsc_into_handles_take_roles() {
        let (target, q) = spsc_pair("into", 4);
        let mut p = Queue::open(&target).unwrap().into_producer().unwrap();
        let again = Queue::open(&target).unwrap().into_producer();
        assert!(matches!(
            again,
            Err(Error::RoleTaken {
                role: "producer",
                ..
            })
        ));
        let mut c = Queue::open(&target).unwrap().into_consumer().unwrap();
        target.unlink().unwrap();
        p.enqueue_try(b"xy").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.dequeue_try(&mut buf), Ok(2));
        assert_eq!(c.dequeue_try(&mut buf), Err(RecvError::Empty));
        p.close();
        assert_eq!(
            c.dequeue_block(&mut buf, Some(Duration::from_secs(5))),
            Err(RecvError::Closed)
        );
        assert_eq!(q.stats().enqueued, 1);
    }

    #[test]
    fn spsc_close_by_a_third_party_waits_for_the_producer() {
        let (target, producer) = spsc_pair("close3", 4);
        let mut producer = producer.into_producer().unwrap();
        let consumer = Queue::open(&target).unwrap();
        let closer = Queue::open(&target).unwrap();
        target.unlink().unwrap();
        producer.enqueue_try(b"1").unwrap();
        closer.close();
        let mut buf = [0u8; 16];
        assert_eq!(consumer.dequeue_try(&mut buf), Ok(1));
        // The producer holds its role and may have an enqueue in flight.
        assert_eq!(consumer.dequeue_try(&mut buf), Err(RecvError::Empty));
        // Its next enqueue sees the close and acknowledges it.
        assert_eq!(producer.enqueue_try(b"2"), Err(SendError::Closed));
        assert_eq!(consumer.dequeue_try(&mut buf), Err(RecvError::Closed));

        // Or the producer goes away, which wakes a sleeping consumer.
        let (target, producer) = spsc_pair("close4", 4);
        let mut producer = producer.into_producer().unwrap();
        let consumer = Queue::open(&target).unwrap();
        target.unlink().unwrap();
        producer.enqueue_try(b"1").unwrap();
        consumer.close();
        std::thread::scope(|s| {
            let c = s.spawn(|| {
                let mut buf = [0u8; 16];
                let first = consumer.dequeue_block(&mut buf, Some(Duration::from_secs(20)));
                (
                    first,
                    consumer.dequeue_block(&mut buf, Some(Duration::from_secs(20))),
                )
            });
            std::thread::sleep(Duration::from_millis(100));
            drop(producer);
            assert_eq!(c.join().unwrap(), (Ok(1), Err(RecvError::Closed)));
        });
    }

    #[test]
    fn spsc_sleepers_are_woken() {
        let wait = WaitStrategy::SpinThenSleep {
            spin: Duration::from_micros(1),
        };
        let q = Queue::in_process(&QueueConfig::new(16, 4).spsc(true))
            .unwrap()
            .with_wait_strategy(wait);
        std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                let mut buf = [0u8; 16];
                let mut sum = 0u64;
                for _ in 0..2_000 {
                    let n = q
                        .dequeue_block(&mut buf, Some(Duration::from_secs(20)))
                        .unwrap();
                    sum += u64::from_le_bytes(buf[..n].try_into().unwrap());
                    if sum % 97 == 0 {
                        std::thread::sleep(Duration::from_micros(50)); // let the producer fill up and sleep
                    }
                }
                sum
            });
            for i in 0..2_000u64 {
                if i % 89 == 0 {
                    std::thread::sleep(Duration::from_micros(50)); // let the consumer sleep
                }
                q.enqueue_block(&i.to_le_bytes(), Some(Duration::from_secs(20)))
                    .unwrap();
            }
            assert_eq!(consumer.join().unwrap(), (0..2_000u64).sum::<u64>());
        });
    }
}

#[cfg(all(test, feature = "async"))]
mod async_hooks_tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Wake, Waker};

    struct Nop;
    impl Wake for Nop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    fn sleepers(q: &Queue) -> u32 {
        // Relaxed: a test's snapshot.
        q.region.header().control.sleepers.load(Ordering::Relaxed)
    }

    #[test]
    fn an_async_spsc_sleeper_is_counted_until_its_wait_ends() {
        let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
        let park = q
            .park_consume()
            .unwrap()
            .expect("empty: the consumer parks");
        assert_eq!(sleepers(&q), 1);
        q.unpark(park);
        assert_eq!(sleepers(&q), 0);
        // A pending future is counted; dropping it takes it out.
        let waker: Waker = std::sync::Arc::new(Nop).into();
        let mut cx = Context::from_waker(&waker);
        let mut buf = [0u8; 8];
        {
            let mut f = std::pin::pin!(q.dequeue_async(&mut buf));
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_eq!(sleepers(&q), 1);
        }
        assert_eq!(sleepers(&q), 0);
        // With a message there, parking says "try again" and counts nobody.
        q.enqueue_try(b"x").unwrap();
        assert!(q.park_consume().unwrap().is_none());
        assert_eq!(sleepers(&q), 0);
    }

    #[test]
    fn an_async_mpmc_sleeper_sets_the_waiter_bit() {
        let q = Queue::in_process(&QueueConfig::new(8, 4)).unwrap();
        assert!(q.park_consume().unwrap().is_some());
        // Relaxed: a test's snapshot.
        let stamp = q.slot(0).stamp.load(Ordering::Relaxed);
        assert_ne!(stamp & STAMP_WAITER, 0, "the producer will see a sleeper");
        q.enqueue_try(b"x").unwrap();
        // Relaxed: as above.
        let stamp = q.slot(0).stamp.load(Ordering::Relaxed);
        assert_eq!(stamp & STAMP_WAITER, 0, "the publishing swap took the bit");
    }
}
