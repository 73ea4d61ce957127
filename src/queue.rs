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

use std::time::{Duration, Instant};

use crate::layout::{
    Params, QueueKind, SlotHeader, SLOT_HEADER_SIZE, SLOT_TOMBSTONE, STAMP_WAITER,
};
use crate::liveness::{self, Attached};
use crate::region::Region;
use crate::sync::Ordering;
use crate::wait::{self, Backoff, Next, WaitStrategy};
use crate::{DequeueError, EnqueueError, Error, Target};

/// Parameters of a new work queue.
///
/// # Examples
/// ```
/// use shmq::QueueConfig;
/// let config = QueueConfig::new(64, 1024).mode(0o660);
/// assert_eq!(config.slot_size(), 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    slot_size: u32,
    capacity: u64,
    mode: u32,
}

impl QueueConfig {
    /// A queue of `capacity` slots (at least 2) of up to `slot_size` bytes
    /// each, mode 0600.
    pub fn new(slot_size: usize, capacity: usize) -> QueueConfig {
        QueueConfig {
            slot_size: slot_size.min(u32::MAX as usize) as u32,
            capacity: capacity as u64,
            mode: 0o600,
        }
    }

    /// Sets the permission bits of the segment (default 0600).
    pub fn mode(mut self, mode: u32) -> QueueConfig {
        self.mode = mode;
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
        Params::new(
            QueueKind::WorkQueue,
            self.slot_size,
            self.capacity,
            0,
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
    /// Positions that carried no message (claims abandoned by close or crash).
    pub tombstones: u64,
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
            region,
        }
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

    #[inline]
    fn slot(&self, pos: u64) -> &SlotHeader {
        let index = if self.mask != 0 {
            pos & self.mask
        } else {
            pos % self.capacity
        };
        // SAFETY: index < capacity by construction.
        unsafe { self.region.slot(index) }
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
        tail.saturating_sub(head).min(self.capacity) as usize
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters: enqueued, dequeued, discarded by shift, tombstones, length.
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
        QueueStats {
            enqueued: tail.saturating_sub(tombstones),
            dequeued: head.saturating_sub(discarded + tombstones),
            discarded,
            tombstones,
            len: tail.saturating_sub(head).min(self.capacity),
            capacity: self.capacity,
        }
    }

    // ---- producing ----

    /// Claims the next producer position, or says why not.
    #[inline]
    fn claim_tail(&self) -> Result<(u64, &SlotHeader), EnqueueError> {
        let tail = &self.region.header().tail.value;
        // Relaxed: only a first guess; the stamp and the CAS decide.
        let mut t = tail.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(t);
            // SYNC(slot-free): Acquire, pairs with the Release swap in
            // `release`: the last consumer's copy-out is done before we write.
            let s = slot.stamp.load(Ordering::Acquire) >> 1;
            if s == t {
                // SYNC(claim-close): SeqCst, ordered against the store of
                // `closed` and the consumer's load of tail in `drained`.
                match tail.compare_exchange_weak(t, t + 1, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => return Ok((t, slot)),
                    Err(cur) => t = cur,
                }
            } else {
                let cur = tail.load(Ordering::Relaxed);
                if cur != t {
                    t = cur; // another producer moved on: retry there
                } else if (s.wrapping_sub(t) as i64) < 0 {
                    return Err(EnqueueError::Full); // slot still holds the previous lap
                } else {
                    // The Acquire above saw a publish of a later lap, which
                    // happens after tail passed t: tail cannot still read t.
                    return Err(EnqueueError::Corrupt {
                        detail: format!("slot stamp {s} is ahead of tail {t}"),
                    });
                }
            }
        }
    }

    /// Writes `msg` into a claimed slot and publishes it.
    #[inline]
    fn publish(&self, pos: u64, slot: &SlotHeader, msg: &[u8], flags: u32) {
        debug_assert!(msg.len() <= self.slot_size);
        // Relaxed: published by the Release swap below.
        slot.len.store(msg.len() as u32, Ordering::Relaxed);
        slot.flags.store(flags, Ordering::Relaxed);
        // SAFETY: this process owns position `pos` (claimed, not published);
        // the payload area holds slot_size >= msg.len() bytes inside the
        // validated slot array; no one else touches it until the swap below.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), Self::payload(slot), msg.len()) };
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
    /// [`EnqueueError::Full`], [`EnqueueError::Closed`],
    /// [`EnqueueError::TooLarge`] (nothing written).
    ///
    /// # Examples
    /// ```
    /// use shmq::{EnqueueError, Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(4, 2)).unwrap();
    /// q.enqueue_try(b"ab").unwrap();
    /// q.enqueue_try(b"").unwrap(); // empty messages are messages too
    /// assert_eq!(q.enqueue_try(b"c"), Err(EnqueueError::Full));
    /// assert_eq!(q.enqueue_try(b"too long"), Err(EnqueueError::TooLarge { len: 8, max: 4 }));
    /// ```
    #[inline]
    pub fn enqueue_try(&self, msg: &[u8]) -> Result<(), EnqueueError> {
        if msg.len() > self.slot_size {
            return Err(EnqueueError::TooLarge {
                len: msg.len(),
                max: self.slot_size,
            });
        }
        if self.closed() {
            return Err(EnqueueError::Closed);
        }
        let (pos, slot) = self.claim_tail()?;
        if self.closed() {
            // Closed after our check: the position is ours and must be
            // published, but as a tombstone, so drained consumers stay right.
            self.publish(pos, slot, &[], SLOT_TOMBSTONE);
            // Relaxed: a statistic.
            self.region
                .header()
                .stats
                .tombstones
                .fetch_add(1, Ordering::Relaxed);
            return Err(EnqueueError::Closed);
        }
        self.publish(pos, slot, msg, 0);
        Ok(())
    }

    /// Enqueues `msg`, waiting while the queue is full, up to `timeout`
    /// (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{EnqueueError, Queue, QueueConfig};
    /// use std::time::Duration;
    /// let q = Queue::in_process(&QueueConfig::new(4, 2)).unwrap();
    /// q.enqueue_block(b"a", Some(Duration::from_millis(10))).unwrap();
    /// q.enqueue_block(b"b", None).unwrap();
    /// let full = q.enqueue_block(b"c", Some(Duration::from_millis(10)));
    /// assert_eq!(full, Err(EnqueueError::Timeout));
    /// ```
    pub fn enqueue_block(&self, msg: &[u8], timeout: Option<Duration>) -> Result<(), EnqueueError> {
        self.enqueue_until(msg, timeout.map(|t| Instant::now() + t))
    }

    /// Enqueues `msg`, waiting while the queue is full, until `deadline`
    /// (`None`: no limit).
    pub fn enqueue_until(&self, msg: &[u8], deadline: Option<Instant>) -> Result<(), EnqueueError> {
        let mut backoff = Backoff::new(self.wait, deadline);
        loop {
            match self.enqueue_try(msg) {
                Err(EnqueueError::Full) => {}
                other => return other,
            }
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => return Err(EnqueueError::Timeout),
                Next::Sleep => {
                    // Relaxed: a guess; the stamp read decides.
                    let t = self.region.header().tail.value.load(Ordering::Relaxed);
                    let slot = self.slot(t);
                    // Relaxed: only compared; the sleep re-checks atomically.
                    let s = slot.stamp.load(Ordering::Relaxed);
                    if s >> 1 != t {
                        wait::sleep_on_stamp(
                            &slot.stamp,
                            s,
                            Some(&self.region.header().control.closed),
                            backoff.remaining(),
                        );
                    }
                }
            }
        }
    }

    /// Enqueues `msg`; when the queue is full, discards the oldest messages
    /// to make room. Never waits. Returns how many messages it discarded
    /// (also counted in [`QueueStats::discarded`]).
    ///
    /// Returns [`EnqueueError::Full`] only if room cannot be made at all,
    /// e.g. every slot is held by a consumer that stopped mid-copy.
    pub fn enqueue_shift(&self, msg: &[u8]) -> Result<u64, EnqueueError> {
        const ATTEMPTS: u32 = 10_000;
        let mut discarded = 0;
        for _ in 0..ATTEMPTS {
            match self.enqueue_try(msg) {
                Ok(()) => return Ok(discarded),
                Err(EnqueueError::Full) => {}
                Err(e) => return Err(e),
            }
            match self.claim_head(usize::MAX) {
                Ok(claim) => {
                    self.release(&claim);
                    if !claim.tombstone {
                        discarded += 1;
                        // Relaxed: a statistic.
                        self.region
                            .header()
                            .stats
                            .discarded
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The oldest is mid-copy or mid-publish: let it finish.
                Err(DequeueError::Empty) => std::hint::spin_loop(),
                Err(DequeueError::Closed) => return Err(EnqueueError::Closed),
                Err(DequeueError::Corrupt { detail }) => {
                    return Err(EnqueueError::Corrupt { detail })
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
        Err(EnqueueError::Full)
    }

    // ---- consuming ----

    /// Claims the next consumer position if it holds a message of at most
    /// `room` bytes (or a tombstone).
    #[inline]
    fn claim_head(&self, room: usize) -> Result<Claim<'_>, DequeueError> {
        let head = &self.region.header().head.value;
        // Relaxed: only a first guess; the stamp and the CAS decide.
        let mut h = head.load(Ordering::Relaxed);
        loop {
            let slot = self.slot(h);
            // SYNC(slot-publish): Acquire, pairs with the Release swap in `publish`.
            let s = slot.stamp.load(Ordering::Acquire) >> 1;
            let ready = h.wrapping_add(1);
            if s == ready {
                // Relaxed: ordered after the publish by the Acquire above; the
                // slot cannot change until position h is claimed and released.
                let len = slot.len.load(Ordering::Relaxed) as usize;
                let tombstone = slot.flags.load(Ordering::Relaxed) & SLOT_TOMBSTONE != 0;
                if !tombstone && len <= self.slot_size && len > room {
                    return Err(DequeueError::BufferTooSmall { needed: len });
                }
                // Relaxed: the claim needs atomicity only; the payload was
                // ordered by the Acquire stamp load above.
                match head.compare_exchange_weak(h, ready, Ordering::Relaxed, Ordering::Relaxed) {
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
                let cur = head.load(Ordering::Relaxed);
                if cur != h {
                    h = cur; // another consumer moved on: retry there
                } else if (s.wrapping_sub(ready) as i64) < 0 {
                    return Err(if self.drained(h) {
                        DequeueError::Closed
                    } else {
                        DequeueError::Empty
                    });
                } else {
                    // The Acquire above saw a release of position h, which
                    // happens after head passed h: head cannot still read h.
                    return Err(DequeueError::Corrupt {
                        detail: format!("slot stamp {s} is ahead of head {h}"),
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
    /// [`DequeueError::Empty`]; [`DequeueError::Closed`] once closed and
    /// drained; [`DequeueError::BufferTooSmall`] (the message stays queued);
    /// [`DequeueError::Corrupt`] if the slot holds an impossible length (that
    /// slot is dropped so the queue keeps moving).
    ///
    /// # Examples
    /// ```
    /// use shmq::{DequeueError, Queue, QueueConfig};
    /// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
    /// q.enqueue_try(b"hello").unwrap();
    /// let mut small = [0u8; 2];
    /// assert_eq!(q.dequeue_try(&mut small), Err(DequeueError::BufferTooSmall { needed: 5 }));
    /// let mut buf = [0u8; 16];
    /// assert_eq!(q.dequeue_try(&mut buf), Ok(5));
    /// assert_eq!(q.dequeue_try(&mut buf), Err(DequeueError::Empty));
    /// ```
    #[inline]
    pub fn dequeue_try(&self, buf: &mut [u8]) -> Result<usize, DequeueError> {
        loop {
            let claim = self.claim_head(buf.len())?;
            if claim.tombstone {
                self.release(&claim);
                continue;
            }
            if claim.len > self.slot_size {
                self.release(&claim);
                return Err(DequeueError::Corrupt {
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
            self.release(&claim);
            return Ok(claim.len);
        }
    }

    /// Dequeues the next message, waiting while the queue is empty, up to
    /// `timeout` (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{DequeueError, Queue, QueueConfig};
    /// use std::time::Duration;
    /// let q = Queue::in_process(&QueueConfig::new(16, 4)).unwrap();
    /// let mut buf = [0u8; 16];
    /// let r = q.dequeue_block(&mut buf, Some(Duration::from_millis(5)));
    /// assert_eq!(r, Err(DequeueError::Timeout));
    /// q.close();
    /// assert_eq!(q.dequeue_block(&mut buf, None), Err(DequeueError::Closed));
    /// ```
    pub fn dequeue_block(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, DequeueError> {
        self.dequeue_until(buf, timeout.map(|t| Instant::now() + t))
    }

    /// Dequeues the next message, waiting while the queue is empty, until
    /// `deadline` (`None`: no limit).
    pub fn dequeue_until(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, DequeueError> {
        let mut backoff = Backoff::new(self.wait, deadline);
        loop {
            match self.dequeue_try(buf) {
                Err(DequeueError::Empty) => {}
                other => return other,
            }
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => return Err(DequeueError::Timeout),
                Next::Sleep => {
                    // Relaxed: a guess; the stamp read decides.
                    let h = self.region.header().head.value.load(Ordering::Relaxed);
                    let slot = self.slot(h);
                    // Relaxed: only compared; the sleep re-checks atomically.
                    let s = slot.stamp.load(Ordering::Relaxed);
                    if s >> 1 != h.wrapping_add(1) {
                        wait::sleep_on_stamp(
                            &slot.stamp,
                            s,
                            Some(&self.region.header().control.closed),
                            backoff.remaining(),
                        );
                    }
                }
            }
        }
    }

    /// Closes the queue for every process: producers get
    /// [`EnqueueError::Closed`]; consumers drain what is left, then get
    /// [`DequeueError::Closed`]. Wakes every sleeper. Idempotent.
    pub fn close(&self) {
        let hdr = self.region.header();
        // SYNC(close): SeqCst, pairs with the SeqCst loads in `closed`,
        // `drained` and `wait::sleep_on_stamp`.
        hdr.control.closed.store(1, Ordering::SeqCst);
        for i in 0..self.capacity {
            // SAFETY: i < capacity.
            let slot = unsafe { self.region.slot(i) };
            // SYNC(close-wake): SeqCst, pairs with the sleeper's SeqCst CAS of
            // the waiter bit: either we see the bit, or it sees `closed`.
            if slot.stamp.load(Ordering::SeqCst) & STAMP_WAITER != 0 {
                let old = slot.stamp.fetch_and(!STAMP_WAITER, Ordering::SeqCst);
                if old & STAMP_WAITER != 0 {
                    wait::wake_all(&slot.stamp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(slot: usize, cap: usize) -> Queue {
        Queue::in_process(&QueueConfig::new(slot, cap)).unwrap()
    }

    fn msg(i: u64, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
    }

    #[test]
    fn wraps_around_many_times_in_order() {
        for cap in [2usize, 3, 4, 7, 64] {
            let q = queue(32, cap);
            let mut buf = [0u8; 32];
            let mut next_out = 0u64;
            for i in 0..10_000u64 {
                let m = msg(i, (i % 33) as usize);
                if q.enqueue_try(&m) == Err(EnqueueError::Full) {
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
        let q = queue(8, 2);
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Err(DequeueError::Empty));
        assert_eq!(
            q.enqueue_try(&[0; 9]),
            Err(EnqueueError::TooLarge { len: 9, max: 8 })
        );
        assert_eq!(q.len(), 0, "a rejected message writes nothing");
        q.enqueue_try(&[]).unwrap();
        q.enqueue_try(&[1; 8]).unwrap();
        assert_eq!(q.enqueue_try(&[2]), Err(EnqueueError::Full));
        assert_eq!(q.dequeue_try(&mut buf), Ok(0));
        let mut small = [0u8; 7];
        assert_eq!(
            q.dequeue_try(&mut small),
            Err(DequeueError::BufferTooSmall { needed: 8 })
        );
        assert_eq!(q.len(), 1, "the message stays queued");
        assert_eq!(q.dequeue_try(&mut buf), Ok(8));
        assert_eq!(buf, [1; 8]);
    }

    #[test]
    fn close_rejects_producers_and_drains_consumers() {
        let q = queue(8, 4);
        q.enqueue_try(b"a").unwrap();
        q.enqueue_try(b"b").unwrap();
        q.close();
        assert!(q.is_closed());
        assert_eq!(q.enqueue_try(b"c"), Err(EnqueueError::Closed));
        assert_eq!(q.enqueue_shift(b"c"), Err(EnqueueError::Closed));
        assert_eq!(q.enqueue_block(b"c", None), Err(EnqueueError::Closed));
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(q.dequeue_block(&mut buf, None), Ok(1));
        assert_eq!(q.dequeue_try(&mut buf), Err(DequeueError::Closed));
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::from_secs(5))),
            Err(DequeueError::Closed)
        );
    }

    #[test]
    fn tombstones_are_skipped() {
        let q = queue(8, 4);
        q.enqueue_try(b"a").unwrap();
        // A producer that claimed a position and found the queue closed
        // publishes a tombstone; simulate one between two messages.
        let (pos, slot) = q.claim_tail().unwrap();
        q.publish(pos, slot, &[], SLOT_TOMBSTONE);
        q.enqueue_try(b"b").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(&buf[..1], b"a");
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(&buf[..1], b"b");
        assert_eq!(q.dequeue_try(&mut buf), Err(DequeueError::Empty));
    }

    #[test]
    fn shift_discards_exactly_the_oldest() {
        let q = queue(8, 4);
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
            Err(DequeueError::Corrupt { .. })
        ));
        assert!(matches!(
            q.enqueue_try(b"x"),
            Err(EnqueueError::Corrupt { .. })
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
            Err(DequeueError::Corrupt { .. })
        ));
        assert_eq!(
            q.dequeue_try(&mut big),
            Err(DequeueError::Empty),
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
            Err(DequeueError::Timeout)
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        q.enqueue_try(b"1").unwrap();
        q.enqueue_try(b"2").unwrap();
        assert_eq!(
            q.enqueue_block(b"3", Some(Duration::from_millis(30))),
            Err(EnqueueError::Timeout)
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
            assert_eq!(p.join().unwrap(), Err(EnqueueError::Closed));
            assert_eq!(c.join().unwrap(), Err(DequeueError::Closed));
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
                            Err(DequeueError::Closed) => break,
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
}
