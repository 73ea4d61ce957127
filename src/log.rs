//! The fan-out log: publishers append, every subscriber sees every message
//! through its own cursor.
//!
//! # Algorithm
//!
//! A ring of `capacity` slots over sequence numbers, in the manner of a
//! broadcast ring (LMAX Disruptor's multi-producer sequencer; tokio's
//! `broadcast`), with a per-slot seqlock in place of per-slot locks.
//! Publishers claim sequence `s` from `tail` (a `fetch_add`, or a CAS gated by
//! the slowest cursor in reliable mode) and write it into slot
//! `s % capacity`. The slot's stamp says what it holds; readers check it
//! before and after copying the payload, so a message overwritten during the
//! copy is detected, never returned torn.
//!
//! # Slot stamp encoding
//!
//! The stamp is `value << 1 | STAMP_WAITER` (the low bit marks a sleeper, as
//! in the work queue), with
//!
//! ```text
//! value = 4 * (s + capacity) + state      state: 1 writing, 2 complete, 3 skipped
//! value < 4 * capacity                    pristine (never written; creation stores the slot index)
//! ```
//!
//! The value of a slot only grows. A publisher of `s` takes its slot with a
//! CAS from any older, not-writing value to `writing(s)`, writes length and
//! payload, then CASes `writing(s)` to `complete(s)` (Release). A reader at
//! position `r` Acquires the stamp: `complete(r)` is its message; `skipped(r)`
//! carries none (step over it); anything smaller is not published yet; anything
//! larger means `r` was overwritten: the reader reports [`RecvError::Lagged`]
//! with the exact number of positions it lost and moves to the oldest one
//! still present.
//!
//! A publisher that finds its slot still `writing` an older lap (its writer
//! was descheduled, or died, a full ring ago) does not wait and does not
//! touch the payload: it *bumps* the stamp to `writing(s)`, counts `s` as a
//! tombstone, and claims another sequence number. The stalled writer, when it
//! finishes, sees its stamp was bumped and turns it into `skipped` of the
//! latest bumper, so the slot is never written by two publishers at once. A
//! publisher killed mid-write leaves its slot `writing` forever: later laps
//! bump past it (one tombstone per lap) and the rest of the ring keeps
//! moving; recovering that slot is crash recovery's job.
//!
//! # Reliable mode and cursors
//!
//! In reliable mode a publisher may claim `s` only while `s < g + capacity`
//! for the smallest committed position `g` over the cursor table (a fixed
//! array of 128-byte entries in the segment, after a control line holding
//! the table's lock; see [`CursorInfo`]). Named cursors are durable; an
//! unnamed reliable-mode subscriber registers an ephemeral entry that its
//! process frees on drop (and that is reaped if the process dies).
//!
//! With no cursor registered at all, a reliable publish writes nothing and
//! fails with [`SendError::NotConnected`] (Aeron's NOT_CONNECTED): the
//! message would have no reader to protect it. Every reliable publish reads
//! the table's registered count (a word written only when the table
//! changes; a count of 0 is confirmed by a scan before it is believed), and
//! "nobody" is never cached as room: the next publish looks again. Durable
//! cursors declared in the [`LogConfig`] are written into the table before
//! the creator publishes the header, so they gate the log from its first
//! message. A reliable subscriber that registers at [`Start::Oldest`] while
//! the table is empty starts at the position of the last cursor that left
//! (the table's floor), never below a publisher's cached gate.
//!
//! # Waiting
//!
//! A blocked subscriber sleeps on the futex word of the slot it waits for (a
//! publisher's claim keeps the waiter bit; its completing CAS sees it and
//! wakes). A blocked reliable publisher sleeps on the `committed` word of the
//! slowest cursor; the subscriber's advancing swap sees the bit and wakes.
//! Wakers make the syscall only when the bit is set.

mod cursors;
mod error;
mod single;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::layout::{
    Params, QueueKind, SlotHeader, CLAIM_PRODUCE, SLEEP_SLOT, SLOT_HEADER_SIZE, STAMP_WAITER,
};
use crate::liveness::{self, Attached};
use crate::procs::{self, Announce, Named};
use crate::region::Region;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{self, Backoff, Next, SpinBudget, WaitStrategy};
use crate::{Error, RecvError, SendError, Target};

pub use cursors::{CursorInfo, MAX_CURSOR_NAME};
pub use error::CursorError;

use cursors::{Table, SPIN_REFRESH};
use single::{LocalRole, PubRole};

/// Header flag of a log: reliable mode (publishers gated by the slowest cursor).
pub const LOG_FLAG_RELIABLE: u64 = 1;
/// Header flag of a log: one publisher at a time, holding a role token,
/// publishing with plain stores (see [`LogConfig::single_publisher`]).
/// Libraries that predate it refuse such a log as `Corrupt` (unknown flag).
pub const LOG_FLAG_SINGLE_PUBLISHER: u64 = 2;
/// Every flag this layout knows.
const LOG_FLAGS_KNOWN: u64 = LOG_FLAG_RELIABLE | LOG_FLAG_SINGLE_PUBLISHER;
/// Most cursor entries a log may have.
pub const MAX_CURSORS: usize = 4096;
/// How often a gated publisher checks for cursors of dead processes.
const REAP_EVERY: Duration = Duration::from_millis(5);
/// How often a blocked subscriber checks whether the publisher of what it
/// waits for died mid-write.
const RECOVER_EVERY: Duration = Duration::from_millis(2);
/// How long an idle subscriber sleeps before it checks that no publisher
/// claimed a sequence number and died meanwhile (nobody else would wake it).
const IDLE_CHECK: Duration = Duration::from_millis(50);
/// Largest sequence number (stamps hold `4 * (seq + capacity) + state`
/// shifted by one, in 64 bits).
const MAX_SEQ: u64 = 1 << 60;

const ST_WRITING: u64 = 1;
const ST_COMPLETE: u64 = 2;
const ST_SKIPPED: u64 = 3;

/// What publishers do when the slowest subscriber is a full ring behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogMode {
    /// Publishers never wait; a subscriber that falls a ring behind loses
    /// messages and is told how many ([`RecvError::Lagged`]). Market data.
    #[default]
    Overwrite,
    /// Publishers wait for (or, with [`Log::publish`], are refused by) the
    /// slowest registered cursor; nothing is lost.
    Reliable,
}

/// Parameters of a new log.
///
/// A reliable log is lossless only while someone is registered: declare
/// the durable cursors of its readers here ([`LogConfig::durable_cursor`])
/// and it is gated from its first message; with nobody registered, a
/// reliable publish fails with [`SendError::NotConnected`].
///
/// # Examples
/// ```
/// use shmq::{LogConfig, LogMode};
/// let config = LogConfig::new(64, 1024)
///     .mode(LogMode::Reliable)
///     .cursors(8)
///     .durable_cursor("audit")
///     .permissions(0o640);
/// assert_eq!(config.log_mode(), LogMode::Reliable);
/// assert_eq!(config.cursor_capacity(), 8);
/// assert_eq!(config.declared_cursors(), ["audit"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    slot_size: u32,
    capacity: u64,
    mode: LogMode,
    single: bool,
    cursors: u32,
    file_mode: u32,
    /// Durable cursors created with the log, at position 0.
    durable: Vec<String>,
}

impl LogConfig {
    /// A log of `capacity` slots (at least 2) of up to `slot_size` bytes, in
    /// overwrite mode, with room for 16 cursors, mode 0600.
    ///
    /// As in a queue, a slot is a 16-byte header and the payload, rounded up
    /// to whole 64-byte cache lines: up to 48 bytes fit one line, 49 to 112
    /// take two (see [`QueueConfig::new`](crate::QueueConfig::new)).
    pub fn new(slot_size: usize, capacity: usize) -> LogConfig {
        LogConfig {
            slot_size: slot_size.min(u32::MAX as usize) as u32,
            capacity: capacity as u64,
            mode: LogMode::Overwrite,
            single: false,
            cursors: 16,
            file_mode: 0o600,
            durable: Vec::new(),
        }
    }

    /// Makes a single-publisher log (default: many publishers). At most one
    /// handle publishes at a time: the first to publish (or
    /// [`Log::into_publisher`]) takes the publisher role, any other gets
    /// [`SendError::RoleTaken`] while its holder lives; the role is given
    /// back when that handle is dropped and taken over when its process
    /// dies. In exchange a publish executes no locked instruction (plain
    /// stores of the slot's stamp and of the tail), and sleeping
    /// subscribers are woken with one syscall for all of them. The common
    /// case for a feed.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, SendError, Start};
    /// let config = LogConfig::new(64, 1024).single_publisher(true);
    /// assert!(config.is_single_publisher());
    /// let log = Log::in_process(&config).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// let mut publisher = log.clone().into_publisher().unwrap();
    /// assert_eq!(publisher.publish(b"tick"), Ok(0));
    /// // The role is lent to `publisher`: the log handle may not publish meanwhile.
    /// assert!(matches!(log.publish(b"x"), Err(SendError::RoleTaken { .. })));
    /// let mut buf = [0u8; 64];
    /// assert_eq!(sub.recv_try(&mut buf), Ok(4));
    /// ```
    pub fn single_publisher(mut self, single: bool) -> LogConfig {
        self.single = single;
        self
    }

    /// Whether this is a single-publisher log.
    pub fn is_single_publisher(&self) -> bool {
        self.single
    }

    /// Sets overwrite or reliable mode (default overwrite).
    pub fn mode(mut self, mode: LogMode) -> LogConfig {
        self.mode = mode;
        self
    }

    /// Sets the number of entries in the cursor table (default 16, at most
    /// [`MAX_CURSORS`]): named cursors, plus unnamed subscribers in reliable mode.
    pub fn cursors(mut self, n: usize) -> LogConfig {
        self.cursors = n.min(u32::MAX as usize) as u32;
        self
    }

    /// Declares a durable named cursor, created with the log at sequence
    /// number 0 (the first message). It is written into the cursor table
    /// before the log becomes visible to any other process, so no publish
    /// can precede it: in reliable mode the log is gated by it from its
    /// first message, and a subscriber that later resumes it
    /// ([`Log::subscribe_named`]) reads everything from message 0 on,
    /// nothing lost. Repeatable; see also [`LogConfig::durable_cursors`].
    ///
    /// [`Log::create`] fails with [`Error::InvalidArgument`], leaving
    /// nothing behind, for an invalid name (empty, longer than
    /// [`MAX_CURSOR_NAME`] bytes, or holding a NUL), a name declared twice,
    /// or more names than the cursor table holds ([`LogConfig::cursors`]).
    /// [`Log::open_or_create`] accepts an existing log only if each
    /// declared cursor exists in it (else [`Error::Incompatible`]); it
    /// never creates them in a log that exists.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, LogMode, SendError};
    /// let config = LogConfig::new(8, 4).mode(LogMode::Reliable).durable_cursor("audit");
    /// let log = Log::in_process(&config).unwrap();
    /// for i in 0..4u8 {
    ///     log.publish(&[i]).unwrap(); // gated by "audit" from the first message
    /// }
    /// assert_eq!(log.publish(b"x"), Err(SendError::Full));
    /// let mut audit = log.subscribe_named("audit", shmq::Start::Latest).unwrap();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(audit.recv_try(&mut buf), Ok(1));
    /// assert_eq!(buf[0], 0); // message 0: nothing was lost
    /// ```
    pub fn durable_cursor(mut self, name: impl Into<String>) -> LogConfig {
        self.durable.push(name.into());
        self
    }

    /// Declares several durable cursors at once (see
    /// [`LogConfig::durable_cursor`]); adds to those declared before.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, LogMode};
    /// let config = LogConfig::new(8, 4).mode(LogMode::Reliable).durable_cursors(&["a", "b"]);
    /// let log = Log::in_process(&config).unwrap();
    /// let names: Vec<_> = log.cursors().into_iter().filter_map(|c| c.name).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// ```
    pub fn durable_cursors<S: AsRef<str>>(mut self, names: &[S]) -> LogConfig {
        self.durable
            .extend(names.iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// The durable cursors declared so far, in order.
    pub fn declared_cursors(&self) -> &[String] {
        &self.durable
    }

    /// Sets the permission bits of the segment (default 0600), as
    /// [`QueueConfig::permissions`](crate::QueueConfig::permissions) does
    /// for a queue. (Called `file_mode` before: "mode" on a log means only
    /// [`LogConfig::mode`], overwrite or reliable.)
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Target};
    /// let target = Target::Posix(format!("shmq-doc-log-perm-{}", std::process::id()));
    /// let log = Log::create_owned(&target, &LogConfig::new(64, 8).permissions(0o640))?;
    /// assert_eq!(log.params().mode, 0o640);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn permissions(mut self, bits: u32) -> LogConfig {
        self.file_mode = bits;
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

    /// Overwrite or reliable.
    pub fn log_mode(&self) -> LogMode {
        self.mode
    }

    /// Number of cursor entries.
    pub fn cursor_capacity(&self) -> usize {
        self.cursors as usize
    }

    fn params(&self) -> Result<Params, Error> {
        if self.cursors as usize > MAX_CURSORS {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "{} cursors exceed the maximum of {MAX_CURSORS}",
                    self.cursors
                ),
            });
        }
        cursors::check_declared(&self.durable, self.cursors as usize)
            .map_err(|detail| Error::InvalidArgument { detail })?;
        let mut flags = match self.mode {
            LogMode::Overwrite => 0,
            LogMode::Reliable => LOG_FLAG_RELIABLE,
        };
        if self.single {
            flags |= LOG_FLAG_SINGLE_PUBLISHER;
        }
        // Aux entry 0 is the cursor table's control line.
        Params::new(
            QueueKind::Log,
            self.slot_size,
            self.capacity,
            flags,
            self.cursors + 1,
            self.file_mode,
        )
    }

    /// Writes the declared durable cursors into the aux table of a log
    /// being created (see [`cursors::declare`]).
    fn declare(&self, params: &Params) -> impl Fn(*mut u8) + '_ {
        let aux_count = params.aux_count;
        move |aux| {
            if !self.durable.is_empty() {
                // SAFETY: called by `Region::create_with`/`heap_with` with the
                // aux table of a fresh, zeroed segment nobody sees yet, of
                // aux_count = cursors + 1 entries; `params` checked that the
                // names fit (check_declared).
                unsafe { cursors::declare(aux, aux_count, &self.durable) }
            }
        }
    }
}

/// Where a new subscriber starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest message still in the ring (in reliable mode: the oldest
    /// still protected by a cursor).
    Oldest,
    /// The next message published (nothing already in the ring).
    Latest,
}

/// Counters of a log, read from shared memory (approximate while operations
/// are in flight).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStats {
    /// Messages published (sequence numbers claimed, minus tombstones).
    pub published: u64,
    /// The next sequence number a publisher will claim.
    pub next_seq: u64,
    /// The oldest sequence number a new subscriber can still read.
    pub oldest: u64,
    /// Sequence numbers that carry no message (claims abandoned by close, or
    /// skipped past a publisher stalled mid-write).
    pub tombstones: u64,
    /// Messages lost, summed over every [`RecvError::Lagged`] reported.
    pub lagged: u64,
    /// Of `tombstones`: writes of publishers that died mid-write, skipped
    /// by crash recovery.
    pub dead_writes: u64,
    /// Sequence numbers claimed whose write is not complete yet (a live
    /// publisher mid-write, or a dead one not yet recovered); not counted
    /// in `published`.
    pub in_flight: u64,
    /// Number of slots.
    pub capacity: u64,
    /// Overwrite or reliable.
    pub mode: LogMode,
    /// Entries in the cursor table.
    pub cursor_capacity: usize,
    /// Every registered cursor, with its position and lag.
    pub cursors: Vec<CursorInfo>,
}

/// What became of a claimed sequence number in [`Inner::write`].
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Written and published.
    Published,
    /// A later lap reached the slot first: the message was overwritten
    /// before anyone could read it (readers count it as lagged).
    Overtaken,
    /// The slot was held by a stalled writer of an older lap: nothing was
    /// written and the sequence number is a tombstone.
    Bumped,
}

/// The state shared by a log's handles and subscribers in one process.
#[derive(Debug)]
struct Inner {
    region: Region,
    slot_size: usize,
    capacity: u64,
    /// `capacity - 1` when capacity is a power of two, else 0 (use `%`).
    mask: u64,
    reliable: bool,
    /// A single-publisher log (see [`single`]).
    single: bool,
    /// Single-publisher logs: the role as this mapping holds it.
    local: Mutex<LocalRole>,
    /// Reliable mode: a lower bound of every cursor's committed position
    /// (or of the tail, when none was registered) from the last scan; the
    /// slots of positions below `gate + capacity` may be claimed.
    gate: AtomicU64,
    /// Milliseconds after `born` when dead cursors were last reaped.
    reaped_ms: AtomicU64,
    /// How long a publisher of this mapping spins when gated, learned from
    /// its gated waits ([`SpinBudget`] nanoseconds; see `gated_until`).
    gate_spin_ns: AtomicU64,
    born: Instant,
}

impl Inner {
    fn new(region: Region) -> Result<Inner, Error> {
        let p = *region.params();
        if p.flags & !LOG_FLAGS_KNOWN != 0 {
            return Err(Error::Corrupt {
                detail: format!("unknown log flags {:#x}", p.flags),
            });
        }
        if p.aux_count == 0 || p.aux_count as usize > MAX_CURSORS + 1 {
            return Err(Error::Corrupt {
                detail: format!("cursor table of {} entries", p.aux_count),
            });
        }
        Ok(Inner {
            slot_size: p.slot_size as usize,
            capacity: p.capacity,
            mask: if p.capacity.is_power_of_two() {
                p.capacity - 1
            } else {
                0
            },
            reliable: p.flags & LOG_FLAG_RELIABLE != 0,
            single: p.flags & LOG_FLAG_SINGLE_PUBLISHER != 0,
            local: Mutex::new(LocalRole::Free),
            gate: AtomicU64::new(0),
            reaped_ms: AtomicU64::new(0),
            gate_spin_ns: AtomicU64::new(u64::MAX),
            born: Instant::now(),
            region,
        })
    }

    fn table(&self) -> Table<'_> {
        Table::new(&self.region)
    }

    /// Positions a subscriber reads between two stores of its cursor.
    fn cursor_batch(&self) -> u64 {
        (self.capacity / 8).clamp(1, 4096)
    }

    /// The role as this mapping holds it (a poisoned lock still holds a
    /// consistent value: every change to it is one assignment).
    fn local(&self) -> MutexGuard<'_, LocalRole> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes through this mapping's role (single-publisher logs),
    /// taking the role first if needed.
    fn publish_shared(&self, msg: &[u8]) -> Result<u64, SendError> {
        let mut local = self.local();
        if let LocalRole::Free = *local {
            let role = self.claim_publisher().map_err(|pid| SendError::RoleTaken {
                role: "publisher",
                pid,
            })?;
            *local = LocalRole::Here(role);
        }
        match &mut *local {
            LocalRole::Here(role) => self.sp_publish(role, msg),
            _ => Err(SendError::RoleTaken {
                role: "publisher",
                pid: std::process::id(),
            }),
        }
    }

    /// The slot index of sequence number `seq`.
    #[inline]
    fn index(&self, seq: u64) -> u64 {
        if self.mask != 0 {
            seq & self.mask
        } else {
            seq % self.capacity
        }
    }

    #[inline]
    fn slot(&self, seq: u64) -> &SlotHeader {
        // SAFETY: index < capacity by construction.
        unsafe { self.region.slot(self.index(seq)) }
    }

    #[inline]
    fn payload(slot: &SlotHeader) -> *mut u8 {
        // The payload follows the slot header inside the same stride.
        (slot as *const SlotHeader as *mut u8).wrapping_add(SLOT_HEADER_SIZE)
    }

    /// The stamp value (without the waiter bit) of `seq` in `state`.
    #[inline]
    fn value(&self, seq: u64, state: u64) -> u64 {
        seq.wrapping_add(self.capacity) << 2 | state
    }

    /// The sequence number a stamp value names (`value >= 4 * capacity`).
    #[inline]
    fn seq_of(&self, value: u64) -> u64 {
        (value >> 2).wrapping_sub(self.capacity)
    }

    #[inline]
    fn tail(&self) -> u64 {
        // Relaxed: monotonic; callers use it as a bound and re-check stamps.
        self.region.header().tail.value.load(Ordering::Relaxed)
    }

    fn closed(&self) -> bool {
        // SYNC(close): SeqCst, pairs with the SeqCst store in `close`: a
        // publisher that claimed after the close is seen as such (see `drained`).
        self.region.header().control.closed.load(Ordering::SeqCst) != 0
    }

    /// Whether the log is closed and no publisher holds a position at or
    /// after `r` (so nothing more will ever be published there).
    fn drained(&self, r: u64) -> bool {
        if self.single {
            return self.sp_drained(r);
        }
        // SYNC(claim-close): SeqCst loads, ordered with the SeqCst store of
        // `closed` and the publishers' SeqCst claims of tail: a publisher
        // whose claim we do not see will see `closed` after claiming and
        // write a tombstone, not a message.
        self.closed() && self.region.header().tail.value.load(Ordering::SeqCst) <= r
    }

    /// The position a new subscriber starting at `start` reads first.
    fn start_pos(&self, start: Start) -> u64 {
        let t = self.tail();
        match start {
            Start::Latest => t,
            Start::Oldest => {
                let oldest = t.saturating_sub(self.capacity);
                if !self.reliable {
                    return oldest;
                }
                // With nobody registered, the floor: where the last cursor
                // left, at or above every publisher's cached gate.
                let table = self.table();
                let protected = table.gate().unwrap_or_else(|| table.floor(t));
                oldest.max(protected.min(t))
            }
        }
    }

    /// Frees the cursors of dead processes, at most every [`REAP_EVERY`]
    /// per handle, without waiting for the table lock.
    fn maybe_reap(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        // Relaxed: a rate limit only.
        let last = self.reaped_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REAP_EVERY.as_millis() as u64
            || self
                .reaped_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let table = self.table();
        if let Some(lock) = table.try_lock() {
            table.reap(&lock);
        }
    }

    // ---- publishing ----

    /// Claims the next sequence number, announcing the claim in `ann`
    /// before the claiming CAS (see [`crate::procs`]).
    #[inline]
    fn claim(&self, ann: &Announce<'_>) -> Result<u64, SendError> {
        let tail = &self.region.header().tail.value;
        // Relaxed: only a first guess; the CAS decides.
        let mut t = tail.load(Ordering::Relaxed);
        loop {
            if t > MAX_SEQ {
                return Err(SendError::Corrupt {
                    detail: format!("tail {t} is beyond the largest sequence number"),
                });
            }
            if self.reliable {
                // SYNC(gate-cache): Acquire, pairs with the Release store below by
                // another thread of this process, which Acquired the cursors' words.
                let g = self.gate.load(Ordering::Acquire);
                if t.saturating_sub(g) >= self.capacity {
                    // Nobody registered is never cached as room: the next
                    // publish looks again.
                    let Some(g) = self.table().gate() else {
                        return Err(SendError::NotConnected);
                    };
                    // SYNC(gate-cache): Release, pairs with the Acquire load above.
                    self.gate.store(g, Ordering::Release);
                    if t.saturating_sub(g) >= self.capacity {
                        if let Some(t) = self.region.segment().truncation_seen() {
                            return Err(t.into());
                        }
                        self.maybe_reap();
                        return Err(SendError::Full);
                    }
                }
            }
            ann.set(CLAIM_PRODUCE, t);
            // SYNC(claim-close): SeqCst, ordered against the store of
            // `closed` and the subscribers' load of tail in `drained`.
            // SYNC(claim-announce): its release half publishes the
            // announcement above to recoverers that Acquire tail.
            match tail.compare_exchange_weak(t, t + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return Ok(t),
                Err(cur) => t = cur,
            }
        }
    }

    /// Sequence `r` was claimed (tail passed it) and is neither complete nor
    /// skipped. If its publisher is dead (no live lane names `r`), marks it
    /// skipped with one CAS from the stuck stamp: subscribers in both modes
    /// pass it, gating resumes, and close completes. True if it did.
    fn recover_hole(&self, r: u64) -> bool {
        if self.single {
            // Recovered by the next holder of the role (see `single`).
            return false;
        }
        // SYNC(claim-announce): Acquire (SeqCst), pairs with the release half
        // of the claiming CAS: the claimer's announcement is visible.
        if self.region.header().tail.value.load(Ordering::SeqCst) <= r {
            return false;
        }
        let slot = self.slot(r);
        // Relaxed: only compared; the CAS below decides.
        let cur = slot.stamp.load(Ordering::Relaxed);
        if cur >> 1 >= self.value(r, ST_COMPLETE) {
            return false;
        }
        // A live writer of an earlier lap may still hold this slot, bumped to
        // `r` by a later publisher: its lane names its own sequence number.
        if procs::slot_named_by_live(self.region.procs(), r, self.capacity) == Named::Live {
            return false;
        }
        // SYNC(slot-claim): AcqRel, pairs with the next lap's Acquire CAS in
        // `take_slot`: the dead writer's payload writes (Acquired here
        // through the stamp it left) happen before the next writer's.
        if slot
            .stamp
            .compare_exchange(
                cur,
                self.value(r, ST_SKIPPED) << 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        if cur & STAMP_WAITER != 0 {
            wait::wake_all(&slot.stamp);
        }
        self.count_tombstone();
        // Relaxed: a statistic.
        self.region
            .header()
            .stats
            .dead_claims
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Writes `msg` as sequence `seq` (claimed by us) and marks it `state`
    /// (complete, or skipped for a tombstone).
    #[inline]
    fn write(&self, seq: u64, msg: &[u8], state: u64) -> Outcome {
        match self.take_slot(seq) {
            Ok(slot) => self.finish(slot, seq, msg, state),
            Err(outcome) => outcome,
        }
    }

    /// Takes the slot of `seq` for writing (stamp `writing(seq)`), or says
    /// why the sequence number gets no message.
    #[inline]
    fn take_slot(&self, seq: u64) -> Result<&SlotHeader, Outcome> {
        let taken = self.take_slot_inner(seq);
        if taken.is_ok() {
            failpoint!("log-publish-taken");
        }
        taken
    }

    #[inline]
    fn take_slot_inner(&self, seq: u64) -> Result<&SlotHeader, Outcome> {
        let slot = self.slot(seq);
        let mine = self.value(seq, ST_WRITING);
        // Relaxed: a first guess; the CAS decides.
        let mut cur = slot.stamp.load(Ordering::Relaxed);
        loop {
            let v = cur >> 1;
            if v >= mine {
                return Err(Outcome::Overtaken);
            }
            if v >= self.capacity << 2 && v & 3 == ST_WRITING {
                // Held by a stalled writer of an older lap: bump, write nothing.
                // Relaxed: a bump publishes no data; the waiter bit is cleared
                // and its sleepers woken, as they may now be lagged.
                match slot.stamp.compare_exchange_weak(
                    cur,
                    mine << 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        if cur & STAMP_WAITER != 0 {
                            wait::wake_all(&slot.stamp);
                        }
                        return Err(Outcome::Bumped);
                    }
                    Err(c) => cur = c,
                }
                continue;
            }
            // SYNC(slot-claim): Acquire, pairs with the Release CAS that
            // completed the previous lap: its payload writes happen before
            // ours. The waiter bit is kept: sleepers wait for the completion.
            match slot.stamp.compare_exchange_weak(
                cur,
                mine << 1 | (cur & STAMP_WAITER),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(slot),
                Err(c) => cur = c,
            }
        }
    }

    /// Writes length and payload into the slot taken for `seq`, then
    /// publishes it as `state`.
    #[inline]
    fn finish(&self, slot: &SlotHeader, seq: u64, msg: &[u8], state: u64) -> Outcome {
        debug_assert!(msg.len() <= self.slot_size);
        let mine = self.value(seq, ST_WRITING);
        // SYNC(seqlock-write): Release fence, pairs with the reader's Acquire
        // fence before its second stamp load in `recv_try`: a reader whose
        // copy saw any of the writes below then sees a stamp past
        // complete(seq - capacity), and discards the copy.
        std::sync::atomic::fence(Ordering::Release);
        // Relaxed: published by the Release CAS below.
        slot.len.store(msg.len() as u32, Ordering::Relaxed);
        // SAFETY: this publisher owns the slot (its stamp reads writing(seq),
        // set by our CAS; no other publisher writes a slot in that state); the
        // payload holds slot_size >= msg.len() bytes inside the validated slot
        // array. Readers may copy concurrently; they discard such copies.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), Self::payload(slot), msg.len()) };
        failpoint!("log-publish-written");
        let done = self.value(seq, state);
        let mut cur = mine << 1;
        loop {
            let v = cur >> 1;
            let (target, outcome) = if v == mine {
                (done, Outcome::Published)
            } else if v > mine && v & 3 == ST_WRITING {
                // Bumped while we wrote: hand the slot on as the bumper's tombstone.
                (v - ST_WRITING + ST_SKIPPED, Outcome::Overtaken)
            } else {
                return Outcome::Overtaken; // impossible unless memory was scribbled on
            };
            // SYNC(slot-publish): Release, pairs with the Acquire stamp load in
            // `recv_try`. The CAS also reads the waiter bit (see crate::wait).
            match slot.stamp.compare_exchange_weak(
                cur,
                target << 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if cur & STAMP_WAITER != 0 {
                        wait::wake_all(&slot.stamp);
                    }
                    return outcome;
                }
                Err(c) => cur = c,
            }
        }
    }

    /// Multi-publisher batch: each message claimed and published in turn
    /// (see [`Log::publish_batch`]); stops at the first that does not fit.
    fn publish_batch(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        if let Some(m) = msgs.iter().find(|m| m.len() > self.slot_size) {
            return Err(SendError::TooLarge {
                len: m.len(),
                max: self.slot_size,
            });
        }
        for (i, msg) in msgs.iter().enumerate() {
            match self.publish(msg) {
                Ok(_) => {}
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i),
            }
        }
        Ok(msgs.len())
    }

    fn count_tombstone(&self) {
        // Relaxed: a statistic.
        self.region
            .header()
            .stats
            .tombstones
            .fetch_add(1, Ordering::Relaxed);
    }

    fn publish(&self, msg: &[u8]) -> Result<u64, SendError> {
        if msg.len() > self.slot_size {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.slot_size,
            });
        }
        if self.closed() {
            return Err(SendError::Closed);
        }
        if self.reliable && !self.table().connected() {
            return Err(SendError::NotConnected);
        }
        let ann = Announce::new(Some(self.region.lane().ok_or(SendError::Busy)?));
        // Each failed attempt bumped past a slot held by a stalled publisher;
        // after a whole ring of them, give up rather than spin.
        for _ in 0..=self.capacity {
            let seq = self.claim(&ann)?;
            failpoint!("log-publish-claimed");
            if self.closed() {
                // Closed after our check: the position is ours and must be
                // marked, as a tombstone, so drained subscribers stay right.
                if self.write(seq, &[], ST_SKIPPED) != Outcome::Overtaken {
                    self.count_tombstone();
                }
                return Err(SendError::Closed);
            }
            match self.write(seq, msg, ST_COMPLETE) {
                Outcome::Published | Outcome::Overtaken => {
                    // Truncated under us: the message may have gone to the
                    // zero pages that replaced the segment.
                    if let Some(t) = self.region.segment().truncation_seen() {
                        return Err(t.into());
                    }
                    return Ok(seq);
                }
                Outcome::Bumped => self.count_tombstone(),
            }
        }
        Err(SendError::Corrupt {
            detail: "every slot is held by a publisher that stopped in the middle of a write"
                .into(),
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let LocalRole::Here(role) = std::mem::take(&mut *self.local()) {
            self.release_publisher(&role);
        }
    }
}

/// A handle to a fan-out log in shared memory (or on the heap).
///
/// Handles are cheap to clone, `Send + Sync`: share one between threads, or
/// open one per process. Each [`Subscriber`] keeps its own position.
///
/// # Examples
/// ```
/// use shmq::{Log, LogConfig, RecvError, Start, Target};
/// let target = Target::Posix(format!("shmq-doc-log-{}", std::process::id()));
/// let publisher = Log::create(&target, &LogConfig::new(64, 1024)).unwrap();
/// let mut a = Log::open(&target).unwrap().subscribe(Start::Latest).unwrap();
/// let mut b = publisher.subscribe(Start::Latest).unwrap();
/// publisher.publish(b"tick").unwrap();
/// let mut buf = [0u8; 64];
/// for sub in [&mut a, &mut b] {
///     let n = sub.recv_try(&mut buf).unwrap();
///     assert_eq!(&buf[..n], b"tick"); // both see it
///     assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Empty));
/// }
/// target.unlink().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Log {
    inner: Arc<Inner>,
    wait: WaitStrategy,
}

impl Log {
    /// Creates a new log at `target`. Fails with [`Error::AlreadyExists`] if
    /// anything is there already, and leaves it untouched.
    ///
    /// Durable cursors declared in `config` ([`LogConfig::durable_cursor`])
    /// are created with it, before any other process can see it.
    pub fn create(target: &Target, config: &LogConfig) -> Result<Log, Error> {
        let params = config.params()?;
        Log::from_region(Region::create_with(
            target,
            params,
            &config.declare(&params),
        )?)
    }

    /// As [`Log::create`], returning a handle that removes the log's name
    /// when it drops, in this process only (see [`Owned`](crate::Owned)).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Target};
    /// let target = Target::Posix(format!("shmq-doc-log-owned-{}", std::process::id()));
    /// let log = Log::create_owned(&target, &LogConfig::new(64, 8))?;
    /// log.publish(b"tick")?;
    /// drop(log);
    /// assert!(Log::open(&target).is_err()); // removed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_owned(target: &Target, config: &LogConfig) -> Result<crate::Owned<Log>, Error> {
        Log::create(target, config).map(|l| crate::Owned::new(l, Some(target.clone())))
    }

    /// Opens an existing log; never creates.
    pub fn open(target: &Target) -> Result<Log, Error> {
        Log::from_region(Region::open(target, QueueKind::Log)?)
    }

    /// Creates the log, or opens it if it exists and its slot size,
    /// capacity, mode and cursor table match `config` (else
    /// [`Error::Incompatible`]).
    ///
    /// Durable cursors declared in `config` are created only when the log
    /// is: an existing log is accepted only if each of them exists in it
    /// as a named cursor (at whatever position it stands), else
    /// [`Error::Incompatible`] names the missing one (it was removed, or
    /// the log was made without it); nothing is created in a log that
    /// exists.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Error, Log, LogConfig, LogMode, Target};
    /// let target = Target::Posix(format!("shmq-doc-log-ooc-{}", std::process::id()));
    /// let a = Log::open_or_create(&target, &LogConfig::new(64, 8)).unwrap();
    /// let b = Log::open_or_create(&target, &LogConfig::new(64, 8)).unwrap();
    /// let c = Log::open_or_create(&target, &LogConfig::new(64, 8).mode(LogMode::Reliable));
    /// assert!(matches!(c, Err(Error::Incompatible { .. })));
    /// target.unlink().unwrap();
    /// # drop((a, b));
    /// ```
    pub fn open_or_create(target: &Target, config: &LogConfig) -> Result<Log, Error> {
        let params = config.params()?;
        let region = Region::open_or_create_with(target, params, &config.declare(&params))
            .map_err(|e| match e {
                Error::Incompatible { detail } => Error::Incompatible {
                    detail: cursors_in_callers_terms(&detail),
                },
                e => e,
            })?;
        let log = Log::from_region(region)?;
        let names: Vec<String> = log.cursors().into_iter().filter_map(|c| c.name).collect();
        if let Some(missing) = config.durable.iter().find(|d| !names.contains(d)) {
            return Err(Error::Incompatible {
                detail: format!(
                    "the existing log {target} has no durable cursor {missing:?} (declared \
                     cursors are created only with the log; it was removed, or the log was \
                     made without it: create it on the open log with Log::create_cursor, \
                     shmq_log_create_cursor in C or CreateCursor in Go)"
                ),
            });
        }
        Ok(log)
    }

    /// A log on the heap, for the threads of this process (no segment).
    ///
    /// # Examples
    /// ```
    /// let log = shmq::Log::in_process(&shmq::LogConfig::new(8, 4)).unwrap();
    /// assert_eq!(log.publish(b"x"), Ok(0));
    /// assert_eq!(log.publish(b"y"), Ok(1));
    /// ```
    pub fn in_process(config: &LogConfig) -> Result<Log, Error> {
        let params = config.params()?;
        Log::from_region(Region::heap_with(params, &config.declare(&params)))
    }

    fn from_region(region: Region) -> Result<Log, Error> {
        Ok(Log {
            inner: Arc::new(Inner::new(region)?),
            wait: WaitStrategy::default(),
        })
    }

    /// Sets how this handle's blocking calls, and its new subscribers', wait.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, WaitStrategy};
    /// let log = Log::in_process(&LogConfig::new(8, 4)).unwrap()
    ///     .with_wait_strategy(WaitStrategy::BusySpin);
    /// assert_eq!(log.wait_strategy(), WaitStrategy::BusySpin);
    /// ```
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Log {
        self.wait = wait;
        self
    }

    /// Sets how this handle's blocking calls wait, in place (see
    /// [`Queue::set_wait_strategy`](crate::Queue::set_wait_strategy)).
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How this handle's blocking calls wait.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.inner.slot_size
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.inner.capacity as usize
    }

    /// Overwrite or reliable (fixed at creation).
    pub fn mode(&self) -> LogMode {
        if self.inner.reliable {
            LogMode::Reliable
        } else {
            LogMode::Overwrite
        }
    }

    /// Number of entries in the cursor table.
    pub fn cursor_capacity(&self) -> usize {
        self.inner.table().capacity()
    }

    /// The validated parameters of the segment.
    pub fn params(&self) -> &Params {
        self.inner.region.params()
    }

    /// Where the log lives (`None` for [`Log::in_process`]).
    pub fn target(&self) -> Option<&Target> {
        self.inner.region.segment().target()
    }

    /// Removes the log's name (see [`Target::unlink`]); this and other
    /// handles keep working until dropped.
    pub fn unlink(&self) -> Result<(), Error> {
        match self.target() {
            Some(t) => t.unlink(),
            None => Ok(()),
        }
    }

    /// Writes a file-backed log (messages and cursors) to disk; a no-op for
    /// other backings.
    pub fn flush(&self) -> Result<(), Error> {
        self.inner.region.segment().flush()
    }

    /// The processes attached to this log, and whether each is alive.
    pub fn attached(&self) -> Vec<Attached> {
        liveness::list(self.inner.region.procs())
    }

    /// The sequence number the next published message will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.tail()
    }

    /// Publishes `msg` and returns its sequence number. In overwrite mode it
    /// never waits; in reliable mode it fails with [`SendError::Full`]
    /// when the slowest cursor is a full ring behind, and with
    /// [`SendError::NotConnected`] when no cursor is registered at all
    /// (no named cursor, no live subscriber): nobody would read the
    /// message, so it is not written. To make a reliable log lossless from
    /// message 0, declare its readers' durable cursors when creating it
    /// ([`LogConfig::durable_cursor`]); else subscribe before publishing.
    ///
    /// # Errors
    /// [`SendError::TooLarge`], [`SendError::Full`] and
    /// [`SendError::NotConnected`] (nothing written),
    /// [`SendError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, LogMode, SendError, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 2).mode(LogMode::Reliable)).unwrap();
    /// assert_eq!(log.publish(b"a"), Err(SendError::NotConnected)); // nobody yet
    /// let mut sub = log.subscribe(Start::Latest).unwrap(); // registers: gates publishers
    /// assert_eq!(log.publish(b"a"), Ok(0));
    /// assert_eq!(log.publish(b"b"), Ok(1));
    /// assert_eq!(log.publish(b"c"), Err(SendError::Full));
    /// let mut buf = [0u8; 8];
    /// sub.recv_try(&mut buf).unwrap();
    /// assert_eq!(log.publish(b"c"), Ok(2));
    /// assert_eq!(log.publish(b"too long!"), Err(SendError::TooLarge { len: 9, max: 8 }));
    /// ```
    ///
    /// On a single-publisher log the first publish takes the publisher
    /// role for this handle's mapping (until it is dropped); a second live
    /// publisher gets [`SendError::RoleTaken`]. [`Log::into_publisher`]
    /// gives a handle that publishes without taking a lock.
    #[inline]
    pub fn publish(&self, msg: &[u8]) -> Result<u64, SendError> {
        if self.inner.single {
            return self.inner.publish_shared(msg);
        }
        self.inner.publish(msg)
    }

    /// Publishes up to `msgs.len()` messages, in order, and returns how many
    /// were published: all of them in overwrite mode (at most a ring's
    /// worth per call), as many as there is room for in reliable mode. On a
    /// single-publisher log the batch costs one store of the tail and at
    /// most one wake; on a multi-publisher log each message is claimed and
    /// published as by [`Log::publish`] (a claim is announced one position
    /// at a time for crash recovery), so the batch saves only the calls. The first published message's sequence number
    /// is `next_seq()` before the call (single publisher).
    ///
    /// # Errors
    /// As [`Log::publish`], for the first message (nothing published):
    /// [`SendError::TooLarge`] if any message is too long,
    /// [`SendError::Full`], [`SendError::NotConnected`],
    /// [`SendError::Closed`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, LogMode, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 4).mode(LogMode::Reliable)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// let msgs: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];
    /// assert_eq!(log.publish_batch(&msgs), Ok(4)); // the ring holds 4
    /// let mut got = Vec::new();
    /// sub.recv_batch_with(8, |m| got.push(m.to_vec())).unwrap();
    /// assert_eq!(got, [b"a", b"b", b"c", b"d"]);
    /// ```
    pub fn publish_batch(&self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        let inner = &*self.inner;
        if !inner.single {
            return inner.publish_batch(msgs);
        }
        let mut local = inner.local();
        if let LocalRole::Free = *local {
            let role = inner
                .claim_publisher()
                .map_err(|pid| SendError::RoleTaken {
                    role: "publisher",
                    pid,
                })?;
            *local = LocalRole::Here(role);
        }
        match &mut *local {
            LocalRole::Here(role) => inner.sp_publish_batch(role, msgs),
            _ => Err(SendError::RoleTaken {
                role: "publisher",
                pid: std::process::id(),
            }),
        }
    }

    /// Publishes every message of `msgs`, in order, waiting up to `timeout`
    /// (`None`: no limit) while the log is full in reliable mode. Returns
    /// how many were published: all, unless the timeout passed or the log
    /// closed after some were (then the error is reported only if none was).
    pub fn publish_batch_block(
        &self,
        msgs: &[&[u8]],
        timeout: Option<Duration>,
    ) -> Result<usize, SendError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut done = 0;
        while done < msgs.len() {
            let rest = &msgs[done..];
            match self.gated_until(self.publish_batch(rest), deadline, || {
                self.publish_batch(rest)
            }) {
                Ok(n) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// Whether this is a single-publisher log (see
    /// [`LogConfig::single_publisher`]); fixed at creation.
    pub fn is_single_publisher(&self) -> bool {
        self.inner.single
    }

    /// Single-publisher logs: the process holding the publisher role and
    /// whether it is alive (a dead holder's role is taken over by the next
    /// publisher). `None` when nobody holds it, or for a multi-publisher log.
    pub fn publisher(&self) -> Option<(u32, bool)> {
        if !self.inner.single {
            return None;
        }
        self.inner.publisher_holder()
    }

    /// Turns this handle into a [`Publisher`]. On a single-publisher log it
    /// takes the publisher role (failing with [`Error::RoleTaken`] while a
    /// live process, or another `Publisher` of this mapping, holds it), and
    /// publishing through it takes no lock of any kind: no locked
    /// instruction, no mutex. On a multi-publisher log it publishes as
    /// [`Log::publish`] does.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Error, Log, LogConfig, Start, Target};
    /// let target = Target::Posix(format!("shmq-doc-log-pub-{}", std::process::id()));
    /// let config = LogConfig::new(64, 1024).single_publisher(true);
    /// let mut publisher = Log::create(&target, &config).unwrap().into_publisher().unwrap();
    /// let log = Log::open(&target).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// assert!(matches!(log.clone().into_publisher(), Err(Error::RoleTaken { .. })));
    /// publisher.publish(b"tick").unwrap();
    /// let mut buf = [0u8; 64];
    /// assert_eq!(sub.recv_try(&mut buf), Ok(4));
    /// drop(publisher); // gives the role back
    /// let mut next = log.into_publisher().unwrap();
    /// assert_eq!(next.publish(b"tock"), Ok(1));
    /// target.unlink().unwrap();
    /// ```
    pub fn into_publisher(self) -> Result<Publisher, Error> {
        if !self.inner.single {
            return Ok(Publisher {
                log: self,
                role: None,
            });
        }
        let role = {
            let mut local = self.inner.local();
            match std::mem::replace(&mut *local, LocalRole::Lent) {
                LocalRole::Here(role) => role,
                LocalRole::Free => match self.inner.claim_publisher() {
                    Ok(role) => role,
                    Err(pid) => {
                        *local = LocalRole::Free;
                        return Err(Error::RoleTaken {
                            role: "publisher",
                            pid,
                        });
                    }
                },
                LocalRole::Lent => {
                    return Err(Error::RoleTaken {
                        role: "publisher",
                        pid: std::process::id(),
                    })
                }
            }
        };
        Ok(Publisher {
            log: self,
            role: Some(role),
        })
    }

    /// Publishes `msg`, waiting up to `timeout` (`None`: no limit) while the
    /// log is full in reliable mode, or while no cursor is registered (it
    /// sleeps until the first one registers, and fails with
    /// [`SendError::NotConnected`] if the timeout passes with nobody
    /// registered). In overwrite mode it is [`Log::publish`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, LogMode, SendError};
    /// use std::time::Duration;
    /// let log = Log::in_process(&LogConfig::new(8, 2).mode(LogMode::Reliable)).unwrap();
    /// log.create_cursor("audit", shmq::Start::Latest).unwrap();
    /// log.publish_block(b"a", None).unwrap();
    /// log.publish_block(b"b", None).unwrap();
    /// let r = log.publish_block(b"c", Some(Duration::from_millis(5)));
    /// // "audit" never reads: the error says so.
    /// assert!(matches!(r, Err(SendError::GatedBy { cursor, .. }) if cursor == "audit"));
    /// ```
    pub fn publish_block(&self, msg: &[u8], timeout: Option<Duration>) -> Result<u64, SendError> {
        self.publish_until(msg, timeout.map(|t| Instant::now() + t))
    }

    /// Publishes `msg`, waiting until `deadline` (`None`: no limit) while the
    /// log is full in reliable mode, or nobody is registered (see
    /// [`Log::publish_block`]).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, LogMode, SendError, Start};
    /// use std::time::{Duration, Instant};
    /// let log = Log::in_process(&LogConfig::new(8, 4).mode(LogMode::Reliable)).unwrap();
    /// let soon = Instant::now() + Duration::from_millis(5);
    /// assert_eq!(log.publish_until(b"a", Some(soon)), Err(SendError::NotConnected));
    /// let _sub = log.subscribe(Start::Latest).unwrap();
    /// assert_eq!(log.publish_until(b"a", Some(Instant::now())), Ok(0));
    /// ```
    pub fn publish_until(&self, msg: &[u8], deadline: Option<Instant>) -> Result<u64, SendError> {
        self.gated_until(self.publish(msg), deadline, || self.publish(msg))
    }

    /// Returns `first`, the result of a first attempt, unless it reports
    /// [`SendError::Full`] or [`SendError::NotConnected`]; then retries
    /// `attempt`, sleeping on the slowest cursor or until a cursor
    /// registers, until `deadline`.
    ///
    /// The first attempt is the caller's own expression, inlined at its
    /// call site, not a call of `attempt` (which the waiting loop calls
    /// too, so the compiler keeps it out of line): a publish's result
    /// then stays in registers. Returned through memory by an out-of-line
    /// call, its two words were read back with one 16-byte load, which the
    /// CPU cannot forward from the two 8-byte stores that wrote them, so
    /// every publish waited until its stores, the slot's included, had
    /// left the store buffer: the line transfers to the subscriber's core
    /// were paid one message at a time (two processes, 64-byte messages:
    /// 42-58 M msgs/s, against 86-91 M for a loop of `publish` calls).
    #[inline(always)]
    fn gated_until<T>(
        &self,
        first: Result<T, SendError>,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        if !matches!(first, Err(SendError::Full | SendError::NotConnected)) {
            return first;
        }
        self.gated(first, deadline, attempt)
    }

    /// [`Self::gated_until`] after a `first` attempt that found the log
    /// full or nobody registered.
    ///
    /// A gated publisher waits for the slowest subscriber, which needs a CPU
    /// to make room: spinning helps only when that subscriber runs beside
    /// it. So the spin is learned as a subscriber's is (`crate::wait`, "How
    /// long to spin", arrivals): gated waits that outlast it halve it, as
    /// on a machine with more busy subscribers than CPUs, where a publisher
    /// that spun the full 50 us held a CPU that they needed.
    #[inline(never)]
    fn gated<T>(
        &self,
        first: Result<T, SendError>,
        deadline: Option<Instant>,
        attempt: impl FnMut() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let spin = match (self.wait, &first) {
            (WaitStrategy::SpinThenSleep { spin }, Err(SendError::Full)) => spin,
            // Busy-spin, or waiting for a registration: nothing to learn.
            _ => return self.gated_wait(first, Backoff::new(self.wait, deadline), attempt),
        };
        let budgets = &self.inner.gate_spin_ns;
        // Relaxed: a hint shared by this mapping's publishers; a lost
        // update only makes one wait spin more or less.
        let mut budget = SpinBudget::from_ns(budgets.load(Ordering::Relaxed));
        let backoff = Backoff::with_spin(self.wait, deadline, budget.spin_for(spin, 0));
        let started = Instant::now();
        let result = self.gated_wait(first, backoff, attempt);
        budget.record(started.elapsed(), spin);
        // Relaxed: as above.
        budgets.store(budget.ns(), Ordering::Relaxed);
        result
    }

    /// The waiting loop of [`Self::gated_until`], after a `first` attempt.
    fn gated_wait<T>(
        &self,
        first: Result<T, SendError>,
        mut backoff: Backoff,
        mut attempt: impl FnMut() -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let mut outcome = first;
        loop {
            let nobody = match outcome {
                Err(SendError::Full) => false,
                Err(SendError::NotConnected) => true,
                other => return other,
            };
            match backoff.next() {
                Next::Retry => {}
                Next::TimedOut => {
                    self.inner.region.segment().check_intact()?;
                    return Err(if nobody {
                        SendError::NotConnected
                    } else {
                        self.timed_out()
                    });
                }
                Next::Sleep if nobody => {
                    self.inner.region.segment().check_intact()?;
                    // The first registration wakes us (and a close); the
                    // bound covers a registration by a library that does
                    // not count cursors.
                    let nap = backoff
                        .remaining()
                        .map_or(IDLE_CHECK, |r| r.min(IDLE_CHECK));
                    self.inner.table().wait_connected(nap);
                }
                Next::Sleep => {
                    self.inner.region.segment().check_intact()?;
                    if let Some((word, seen)) = self.inner.table().slowest() {
                        if self.inner.tail().saturating_sub(seen >> 1) >= self.inner.capacity {
                            // At most REAP_EVERY at a time: the slowest cursor
                            // may belong to a dead process, reaped by `publish`.
                            let nap = backoff
                                .remaining()
                                .map_or(REAP_EVERY, |r| r.min(REAP_EVERY));
                            wait::sleep_on_stamp(
                                word,
                                seen,
                                Some(&self.inner.region.header().control.closed),
                                Some(nap),
                            );
                        }
                    }
                }
            }
            outcome = attempt();
        }
    }

    /// The error of a publish that timed out: names the cursor that gated it
    /// when that is a named cursor (durable: it gates until resumed or
    /// removed, also when its subscriber died).
    fn timed_out(&self) -> SendError {
        let table = self.inner.table();
        if let Some(lock) = table.try_lock() {
            table.reap(&lock);
        }
        match table.slowest_info(self.inner.tail()) {
            Some(CursorInfo {
                name: Some(cursor),
                owner,
                owner_alive,
                dead_owner,
                ..
            }) => SendError::GatedBy {
                cursor,
                owner: owner.filter(|_| owner_alive),
                dead_owner,
            },
            _ => SendError::Timeout,
        }
    }

    /// A new subscriber at `start`. In overwrite mode it is private to the
    /// caller; in reliable mode it takes an entry of the cursor table (it
    /// gates publishers until dropped), so it fails with
    /// [`CursorError::TableFull`] when none is free.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 4)).unwrap();
    /// log.publish(b"early").unwrap();
    /// let mut late = log.subscribe(Start::Oldest).unwrap();
    /// let mut buf = [0u8; 8];
    /// let n = late.recv_try(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"early");
    /// ```
    pub fn subscribe(&self, start: Start) -> Result<Subscriber, CursorError> {
        let (pos, cursor) = if self.inner.reliable {
            let table = self.inner.table();
            let lock = table.lock()?;
            let pos = self.inner.start_pos(start);
            (
                pos,
                CursorRef::Ephemeral(table.register_ephemeral(&lock, pos)?),
            )
        } else {
            (self.inner.start_pos(start), CursorRef::Local)
        };
        Ok(Subscriber {
            inner: self.inner.clone(),
            pos,
            cursor,
            wait: self.wait,
            polls: 0,
            next_check: None,
            shown: pos,
            batch: self.inner.cursor_batch(),
            pending: None,
            scratch: Vec::new(),
            budget: SpinBudget::default(),
        })
    }

    /// A subscriber on the durable named cursor `name`: it resumes from the
    /// cursor's committed position; a missing cursor is first created at
    /// `start`. One subscriber at a time may hold a named cursor.
    ///
    /// # Errors
    /// [`CursorError::InUse`] when a live subscriber holds it,
    /// [`CursorError::TableFull`], [`CursorError::InvalidName`].
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 16)).unwrap();
    /// for m in [b"a", b"b", b"c"] {
    ///     log.publish(m).unwrap();
    /// }
    /// let mut sub = log.subscribe_named("billing", Start::Oldest).unwrap();
    /// let mut buf = [0u8; 8];
    /// sub.recv_try(&mut buf).unwrap(); // "a"
    /// sub.commit().unwrap();
    /// sub.recv_try(&mut buf).unwrap(); // "b", not committed
    /// drop(sub);
    /// let mut again = log.subscribe_named("billing", Start::Oldest).unwrap();
    /// let n = again.recv_try(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"b"); // resumes after the last commit
    /// ```
    pub fn subscribe_named(&self, name: &str, start: Start) -> Result<Subscriber, CursorError> {
        cursors::check_name(name)?;
        let table = self.inner.table();
        let lock = table.lock()?;
        let index = match table.find(&lock, name) {
            Some(i) => i,
            None => table.create_named(&lock, name, self.inner.start_pos(start))?,
        };
        table.attach(&lock, index, name)?;
        let pos = table.committed(index);
        if pos > self.inner.tail() {
            table.detach(index);
            return Err(CursorError::Corrupt {
                detail: format!(
                    "cursor {name:?} is at {pos}, past the log's end {}",
                    self.inner.tail()
                ),
            });
        }
        table.set_read(index, pos);
        drop(lock);
        Ok(Subscriber {
            inner: self.inner.clone(),
            pos,
            cursor: CursorRef::Named {
                index,
                name: name.to_owned(),
            },
            wait: self.wait,
            polls: 0,
            next_check: None,
            shown: pos,
            batch: self.inner.cursor_batch(),
            pending: None,
            scratch: Vec::new(),
            budget: SpinBudget::default(),
        })
    }

    /// Creates the named cursor `name` at `start` without attaching to it (in
    /// reliable mode it gates publishers from now on).
    ///
    /// # Examples
    /// ```
    /// use shmq::{CursorError, Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 4)).unwrap();
    /// log.create_cursor("replay", Start::Oldest).unwrap();
    /// let again = log.create_cursor("replay", Start::Oldest);
    /// assert!(matches!(again, Err(CursorError::AlreadyExists { .. })));
    /// ```
    pub fn create_cursor(&self, name: &str, start: Start) -> Result<(), CursorError> {
        let table = self.inner.table();
        let lock = table.lock()?;
        table
            .create_named(&lock, name, self.inner.start_pos(start))
            .map(|_| ())
    }

    /// Creates the named cursor `new` at the committed position of the
    /// existing cursor `existing` (`from_cursor`).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 16)).unwrap();
    /// let mut a = log.subscribe_named("a", Start::Oldest).unwrap();
    /// log.publish(b"1").unwrap();
    /// log.publish(b"2").unwrap();
    /// let mut buf = [0u8; 8];
    /// a.recv_try(&mut buf).unwrap();
    /// a.commit().unwrap();
    /// log.cursor_from("b", "a").unwrap();
    /// let b = log.subscribe_named("b", Start::Latest).unwrap();
    /// assert_eq!(b.position(), 1);
    /// ```
    pub fn cursor_from(&self, new: &str, existing: &str) -> Result<(), CursorError> {
        cursors::check_name(new)?;
        let table = self.inner.table();
        let lock = table.lock()?;
        let index = table
            .find(&lock, existing)
            .ok_or_else(|| CursorError::NotFound {
                name: existing.to_owned(),
            })?;
        let pos = table.committed(index);
        table.create_named(&lock, new, pos).map(|_| ())
    }

    /// Removes the named cursor `name`; fails with [`CursorError::InUse`]
    /// while a live subscriber holds it.
    ///
    /// # Examples
    /// ```
    /// use shmq::{CursorError, Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 4)).unwrap();
    /// let sub = log.subscribe_named("tmp", Start::Latest).unwrap();
    /// assert!(matches!(log.remove_cursor("tmp"), Err(CursorError::InUse { .. })));
    /// drop(sub);
    /// log.remove_cursor("tmp").unwrap();
    /// assert!(matches!(log.remove_cursor("tmp"), Err(CursorError::NotFound { .. })));
    /// ```
    pub fn remove_cursor(&self, name: &str) -> Result<(), CursorError> {
        let table = self.inner.table();
        let lock = table.lock()?;
        table.remove(&lock, name)
    }

    /// Every registered cursor with its position and lag.
    pub fn cursors(&self) -> Vec<CursorInfo> {
        self.inner.table().list(self.inner.tail())
    }

    /// The named cursor `name`, if it exists.
    pub fn cursor(&self, name: &str) -> Option<CursorInfo> {
        self.cursors()
            .into_iter()
            .find(|c| c.name.as_deref() == Some(name))
    }

    /// Counters: published, tombstones, total lagged, and every cursor's
    /// position and lag.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, RecvError, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 2)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// for i in 0..5u8 {
    ///     log.publish(&[i]).unwrap();
    /// }
    /// let mut buf = [0u8; 8];
    /// assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Lagged(3)));
    /// let s = log.stats();
    /// assert_eq!((s.published, s.lagged, s.oldest), (5, 3, 3));
    /// ```
    pub fn stats(&self) -> LogStats {
        let h = self.inner.region.header();
        let tail = self.inner.tail();
        // Relaxed: counters for display; each is individually coherent.
        let tombstones = h.stats.tombstones.load(Ordering::Relaxed);
        let table = self.inner.table();
        let in_flight = self.claims().len() as u64;
        LogStats {
            published: tail.saturating_sub(tombstones).saturating_sub(in_flight),
            next_seq: tail,
            oldest: self.inner.start_pos(Start::Oldest),
            tombstones,
            lagged: h.stats.lagged.load(Ordering::Relaxed),
            dead_writes: h.stats.dead_claims.load(Ordering::Relaxed),
            in_flight,
            capacity: self.inner.capacity,
            mode: self.mode(),
            cursor_capacity: table.capacity(),
            cursors: table.list(tail),
        }
    }

    /// The publishers' claims announced now whose write is not complete,
    /// with their claimers' liveness (a dead one is recovered by the next
    /// subscriber that waits for it).
    pub fn claims(&self) -> Vec<crate::StuckClaim> {
        let inner = &*self.inner;
        let tail = inner.tail();
        inner
            .region
            .procs()
            .iter()
            .filter_map(|e| {
                // SYNC(claim-announce): Acquire, as in `procs::named_by_live`.
                let claim = e.claim.load(Ordering::Acquire);
                let seq = claim & crate::layout::CLAIM_POS;
                if claim == 0 || seq >= tail {
                    return None;
                }
                // Relaxed: a snapshot for display.
                let v = inner.slot(seq).stamp.load(Ordering::Relaxed) >> 1;
                (v < inner.value(seq, ST_COMPLETE)).then(|| crate::StuckClaim {
                    position: seq,
                    producing: true,
                    // Relaxed: display.
                    pid: e.pid.load(Ordering::Relaxed),
                    alive: !liveness::judge_entry(e).is_dead(),
                })
            })
            .collect()
    }

    /// Whether `close()` was called on this log (by any process).
    pub fn is_closed(&self) -> bool {
        self.inner.closed()
    }

    /// Closes the log for every process: publishers get
    /// [`SendError::Closed`]; subscribers read what is left, then get
    /// [`RecvError::Closed`]. Wakes every sleeper. Idempotent.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, SendError, RecvError, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 4)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish(b"last").unwrap();
    /// log.close();
    /// assert_eq!(log.publish(b"more"), Err(SendError::Closed));
    /// let mut buf = [0u8; 8];
    /// assert_eq!(sub.recv_block(&mut buf, None), Ok(4));
    /// assert_eq!(sub.recv_block(&mut buf, None), Err(RecvError::Closed));
    /// ```
    pub fn close(&self) {
        let inner = &*self.inner;
        if inner.single {
            // Holding the lock, no publish of this mapping is in flight.
            let local = inner.local();
            inner.sp_close(matches!(*local, LocalRole::Here(_)));
            return;
        }
        // SYNC(close): SeqCst, pairs with the SeqCst loads in `closed`,
        // `drained` and `wait::sleep_on_stamp`.
        inner
            .region
            .header()
            .control
            .closed
            .store(1, Ordering::SeqCst);
        // Sleepers announce in their lanes which slot they sleep on (see
        // `Subscriber::recv_until`): wake those, not every slot of the ring.
        for i in procs::sleeping_on(inner.region.procs(), SLEEP_SLOT) {
            if i >= inner.capacity {
                continue; // garbage in a lane
            }
            // SAFETY: i < capacity.
            let slot = unsafe { inner.region.slot(i) };
            // SYNC(close-wake): SeqCst, pairs with the sleeper's SeqCst CAS of
            // the waiter bit: either we see the bit, or it sees `closed`.
            let old = slot.stamp.fetch_and(!STAMP_WAITER, Ordering::SeqCst);
            if old & STAMP_WAITER != 0 {
                wait::wake_all(&slot.stamp);
            }
        }
        // Async waiters (`crate::asyncio`) have no lane: they also wait on
        // the `closed` word itself, which we changed above.
        wait::futex_wake_u32(&inner.region.header().control.closed);
        inner.table().wake_all();
    }
}

/// The publishing end of a log, made by [`Log::into_publisher`]. On a
/// single-publisher log it holds the publisher role until dropped, and a
/// publish executes no locked instruction: plain stores of the slot's
/// stamp, payload and the tail, and a syscall only when a subscriber sleeps.
/// `Send`, not shared: one thread publishes through it at a time.
#[derive(Debug)]
pub struct Publisher {
    log: Log,
    /// The role (single-publisher logs); `None` on a multi-publisher log.
    role: Option<PubRole>,
}

impl Publisher {
    /// Sets how this publisher's blocking publishes wait (see
    /// [`Queue::set_wait_strategy`](crate::Queue::set_wait_strategy)).
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Publisher {
        self.log.wait = wait;
        self
    }

    /// Sets how this publisher's blocking publishes wait, in place.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.log.wait = wait;
    }

    /// How this publisher's blocking publishes wait.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.log.wait
    }

    /// Publishes `msg` and returns its sequence number (see [`Log::publish`]).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig};
    /// let log = Log::in_process(&LogConfig::new(8, 4).single_publisher(true)).unwrap();
    /// let mut publisher = log.into_publisher().unwrap();
    /// assert_eq!(publisher.publish(b"a"), Ok(0));
    /// assert_eq!(publisher.publish(b"b"), Ok(1));
    /// ```
    #[inline]
    pub fn publish(&mut self, msg: &[u8]) -> Result<u64, SendError> {
        match &mut self.role {
            Some(role) => self.log.inner.sp_publish(role, msg),
            None => self.log.inner.publish(msg),
        }
    }

    /// Publishes `msg`, waiting up to `timeout` (`None`: no limit) while
    /// the log is full in reliable mode (see [`Log::publish_block`]).
    pub fn publish_block(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> Result<u64, SendError> {
        self.publish_until(msg, timeout.map(|t| Instant::now() + t))
    }

    /// Publishes `msg`, waiting until `deadline` (`None`: no limit) while
    /// the log is full in reliable mode.
    #[inline]
    pub fn publish_until(
        &mut self,
        msg: &[u8],
        deadline: Option<Instant>,
    ) -> Result<u64, SendError> {
        let Publisher { log, role } = self;
        match role {
            Some(role) => log.gated_until(log.inner.sp_publish(role, msg), deadline, || {
                log.inner.sp_publish(role, msg)
            }),
            None => log.gated_until(log.inner.publish(msg), deadline, || log.inner.publish(msg)),
        }
    }

    /// Publishes up to `msgs.len()` messages in order and returns how many
    /// (see [`Log::publish_batch`]): one store of the tail and at most one
    /// wake for the whole batch.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 16).single_publisher(true)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// let mut publisher = log.into_publisher().unwrap();
    /// assert_eq!(publisher.publish_batch(&[b"x", b"y", b"z"]), Ok(3));
    /// let mut buf = [0u8; 8];
    /// assert_eq!(sub.recv_try(&mut buf), Ok(1));
    /// assert_eq!(&buf[..1], b"x");
    /// ```
    pub fn publish_batch(&mut self, msgs: &[&[u8]]) -> Result<usize, SendError> {
        match &mut self.role {
            Some(role) => self.log.inner.sp_publish_batch(role, msgs),
            None => self.log.inner.publish_batch(msgs),
        }
    }

    /// Publishes every message of `msgs`, waiting up to `timeout` while the
    /// log is full (see [`Log::publish_batch_block`]).
    pub fn publish_batch_block(
        &mut self,
        msgs: &[&[u8]],
        timeout: Option<Duration>,
    ) -> Result<usize, SendError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut done = 0;
        while done < msgs.len() {
            let Publisher { log, role } = &mut *self;
            let rest = &msgs[done..];
            let r = match role {
                Some(role) => {
                    log.gated_until(log.inner.sp_publish_batch(role, rest), deadline, || {
                        log.inner.sp_publish_batch(role, rest)
                    })
                }
                None => log.gated_until(log.inner.publish_batch(rest), deadline, || {
                    log.inner.publish_batch(rest)
                }),
            };
            match r {
                Ok(n) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// The sequence number the next published message will get.
    pub fn next_seq(&self) -> u64 {
        match &self.role {
            Some(role) => role.pos(),
            None => self.log.next_seq(),
        }
    }

    /// Closes the log (see [`Log::close`]). Through the role holder, nothing
    /// is in flight: subscribers get `Closed` as soon as they have read
    /// everything.
    pub fn close(&self) {
        match &self.role {
            Some(_) => self.log.inner.sp_close(true),
            None => self.log.close(),
        }
    }

    /// The log this publisher writes.
    pub fn log(&self) -> &Log {
        &self.log
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(role) = self.role.take() {
            let inner = &*self.log.inner;
            inner.release_publisher(&role);
            *inner.local() = LocalRole::Free;
        }
    }
}

/// Which cursor-table entry a subscriber uses.
#[derive(Debug)]
enum CursorRef {
    /// None: an overwrite-mode subscriber without a name.
    Local,
    /// An entry of its own, freed on drop (reliable mode, no name).
    Ephemeral(usize),
    /// A durable named cursor, attached to this subscriber.
    Named { index: usize, name: String },
}

/// A reader of a log with its own position. Not shared: one thread reads
/// through it at a time (it is `Send`).
///
/// Created by [`Log::subscribe`] or [`Log::subscribe_named`]; it keeps the
/// log mapped while it lives.
#[derive(Debug)]
pub struct Subscriber {
    inner: Arc<Inner>,
    /// The next sequence number to read.
    pos: u64,
    cursor: CursorRef,
    wait: WaitStrategy,
    /// Empty polls by `recv_try` (rate limit of recovery checks).
    polls: u32,
    /// No recovery check before this instant.
    next_check: Option<Instant>,
    /// The position last stored in the cursor table (see `advance`).
    shown: u64,
    /// Positions between two stores of the cursor (see `cursor_batch`).
    batch: u64,
    /// An error met in the middle of a batch receive, reported next.
    pending: Option<RecvError>,
    /// Room for one message, for batch receives.
    scratch: Vec<u8>,
    /// How long blocking receives spin (learned; see `crate::wait`).
    budget: SpinBudget,
}

/// This subscriber counted among the log's spinners, while it spins.
struct Spinning<'a> {
    table: Option<Table<'a>>,
    /// When it last refreshed the count's beat ([`wait::mono_ns`]).
    refreshed: u64,
    /// Spins so far.
    spins: u32,
}

impl<'a> Spinning<'a> {
    /// Counts the caller as a spinner from `now` ([`wait::mono_ns`]), if it
    /// `spins` at all.
    fn start(table: Table<'a>, spins: bool, now: u64) -> Spinning<'a> {
        if !spins {
            return Spinning {
                table: None,
                refreshed: now,
                spins: 0,
            };
        }
        table.spin_start(now);
        Spinning {
            table: Some(table),
            refreshed: now,
            spins: 0,
        }
    }

    /// Called on each spin: says at least every [`SPIN_REFRESH`] that this
    /// spinner is alive, so its count is not taken for a dead one's (the
    /// clock is read every 1024th spin only).
    fn spun(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if self.spins % 1024 != 0 {
            return;
        }
        if let Some(table) = &self.table {
            let now = wait::mono_ns();
            if now.saturating_sub(self.refreshed) >= SPIN_REFRESH.as_nanos() as u64 {
                table.spin_refresh(now);
                self.refreshed = now;
            }
        }
    }

    fn stop(&mut self) {
        if let Some(table) = self.table.take() {
            table.spin_stop();
        }
    }
}

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Subscriber {
    /// The next sequence number this subscriber will read. Right after a
    /// successful receive, the received message's sequence number is
    /// `position() - 1`.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Messages published that this subscriber has not read yet.
    pub fn lag(&self) -> u64 {
        self.inner.tail().saturating_sub(self.pos)
    }

    /// The name of its cursor, for a subscriber on a named cursor.
    pub fn name(&self) -> Option<&str> {
        match &self.cursor {
            CursorRef::Named { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The committed position of its named cursor.
    pub fn committed(&self) -> Option<u64> {
        match &self.cursor {
            CursorRef::Named { index, .. } => Some(self.inner.table().committed(*index)),
            _ => None,
        }
    }

    /// Sets how this subscriber's blocking receives wait, in place (see
    /// [`Queue::set_wait_strategy`](crate::Queue::set_wait_strategy)).
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// Sets how this subscriber's blocking receives wait.
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Subscriber {
        self.wait = wait;
        self
    }

    /// How this subscriber's blocking receives wait.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// Moves to `pos`. The cursor table hears of it in batches (see
    /// [`Self::publish_cursor`]): every [`Subscriber::cursor_batch`]
    /// positions, whenever the subscriber finds nothing to read (before it
    /// waits), and on commit, rollback and drop.
    #[inline]
    fn advance(&mut self, pos: u64) {
        self.pos = pos;
        if pos.wrapping_sub(self.shown) >= self.batch {
            self.publish_cursor();
        }
    }

    /// Tells the cursor table this subscriber's position: the committed
    /// position of an unnamed reliable-mode subscriber (publishers are
    /// gated by it, and woken if they sleep on it), the read position of a
    /// named one (statistics). Nothing for an unnamed overwrite-mode one.
    #[inline(never)]
    fn publish_cursor(&mut self) {
        self.shown = self.pos;
        match &self.cursor {
            CursorRef::Local => {}
            CursorRef::Ephemeral(index) => self.inner.table().set_committed(*index, self.pos),
            CursorRef::Named { index, .. } => self.inner.table().set_read(*index, self.pos),
        }
    }

    /// How many positions this subscriber reads between two stores of its
    /// cursor in the shared table (`capacity / 8`, at least 1, at most
    /// 4096); it also stores it whenever it finds nothing to read. In
    /// reliable mode a publisher therefore sees an unnamed subscriber's
    /// progress at most this many positions late, never a ring late, so it
    /// is never gated by progress the subscriber has not shown.
    pub fn cursor_batch(&self) -> u64 {
        self.batch
    }

    /// Moves past positions lost to overwriting, seen because slot of
    /// `self.pos` now holds stamp value `value` of a later lap.
    #[cold]
    fn lagged(&mut self, value: u64) -> RecvError {
        let inner = &*self.inner;
        let r = self.pos;
        // The slot holds q >= r + capacity: positions before q - capacity + 1
        // are gone; and nothing older than tail - capacity is still present.
        let q = inner.seq_of(value);
        let next = (r + 1)
            .max(q.saturating_sub(inner.capacity) + 1)
            .max(inner.tail().saturating_sub(inner.capacity));
        let lost = next - r;
        // Relaxed: a statistic.
        inner
            .region
            .header()
            .stats
            .lagged
            .fetch_add(lost, Ordering::Relaxed);
        self.advance(next);
        RecvError::Lagged(lost)
    }

    /// Receives the next message into `buf` and returns its length; never waits.
    ///
    /// # Errors
    /// [`RecvError::Empty`]; [`RecvError::Lagged`] (messages were lost; the
    /// next call continues from the oldest one left);
    /// [`RecvError::BufferTooSmall`] (the subscriber stays on the message);
    /// [`RecvError::Closed`] once closed and fully read;
    /// [`RecvError::Corrupt`] for an impossible length (that message is skipped).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, RecvError, Start};
    /// let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish(b"hello").unwrap();
    /// let mut small = [0u8; 2];
    /// assert_eq!(sub.recv_try(&mut small), Err(RecvError::BufferTooSmall { needed: 5 }));
    /// let mut buf = [0u8; 16];
    /// assert_eq!(sub.recv_try(&mut buf), Ok(5));
    /// assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Empty));
    /// ```
    #[inline]
    pub fn recv_try(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let max = buf.len();
        self.try_with(max, &mut |src, len| {
            // SAFETY: `src` points to `len` readable bytes of the slot's
            // payload (see `next_with`), len <= max = buf.len(). The source
            // may be overwritten during the copy (a seqlock read): bytes have
            // no invalid values, and the copy is discarded unless the stamp
            // is unchanged afterwards.
            unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), len) };
            len
        })
    }

    /// Reads the next message in place, without copying it: calls `f` with
    /// a view of the message in shared memory, then re-checks the slot's
    /// seqlock and returns `f`'s result only if the message was not
    /// overwritten meanwhile; otherwise [`RecvError::Lagged`] (and `f`'s
    /// result is dropped). Never waits.
    ///
    /// The slice lies in shared memory that a publisher of a later lap may
    /// overwrite *while `f` runs* (overwrite mode, a subscriber a ring
    /// behind; or another process writing garbage). `f` must therefore
    /// treat it as untrusted until this call returns `Ok`: parse
    /// defensively, never index by a value read from it without a bounds
    /// check, and keep no side effect that a torn read would make wrong
    /// (copy out what it needs; act on it after `Ok`).
    ///
    /// # Errors
    /// As [`Subscriber::recv_try`], without `BufferTooSmall`.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish(b"price=42").unwrap();
    /// let price: Option<u32> = sub
    ///     .recv_in_place(|m| std::str::from_utf8(m).ok()?.strip_prefix("price=")?.parse().ok())
    ///     .unwrap();
    /// assert_eq!(price, Some(42));
    /// ```
    #[inline]
    pub fn recv_in_place<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, RecvError> {
        let mut f = Some(f);
        let r = self.try_with(usize::MAX, &mut |src, len| {
            // SAFETY: `src` points to `len` (<= slot_size) bytes of the
            // slot's payload inside the mapping, which stays mapped while
            // `self` borrows the log. They may change under the reader; `f`
            // is documented to treat them as untrusted until validated.
            let msg = unsafe { std::slice::from_raw_parts(src, len) };
            f.take().map(|f| f(msg))
        })?;
        r.ok_or_else(|| RecvError::Corrupt {
            detail: "in-place reader called twice".into(),
        })
    }

    /// Receives up to `max` messages that are ready now, calling `f` with
    /// each, in order, and returns how many. Each message is validated
    /// (seqlock re-check) before `f` sees it: it is copied into a scratch
    /// buffer of the subscriber first, so `f` never sees a torn message.
    /// Never waits; the cursor table hears of the batch once.
    ///
    /// # Errors
    /// When no message could be received: as [`Subscriber::recv_try`]
    /// ([`RecvError::Empty`], ...). An error met after some messages ends
    /// the batch; a [`RecvError::Lagged`] met then is reported by the next
    /// call, so no loss goes uncounted.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, RecvError, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 8)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish_batch(&[b"a", b"b", b"c"]).unwrap();
    /// let mut got = Vec::new();
    /// assert_eq!(sub.recv_batch_with(2, |m| got.push(m[0])), Ok(2));
    /// assert_eq!(sub.recv_batch_with(2, |m| got.push(m[0])), Ok(1));
    /// assert_eq!(got, b"abc");
    /// assert_eq!(sub.recv_batch_with(2, |_| {}), Err(RecvError::Empty));
    /// ```
    pub fn recv_batch_with(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(self.inner.slot_size, 0);
        let mut n = 0;
        let mut result = Ok(0);
        while n < max {
            match self.recv_try(&mut scratch) {
                Ok(len) => {
                    f(&scratch[..len]);
                    n += 1;
                }
                Err(e) if n == 0 => {
                    result = Err(e);
                    break;
                }
                Err(e) => {
                    if let RecvError::Lagged(_) = e {
                        self.pending = Some(e);
                    }
                    break;
                }
            }
        }
        self.scratch = scratch;
        if n > 0 {
            result = Ok(n);
        }
        result
    }

    /// Receives up to `max` messages into `bufs` (packed one after the
    /// other, message `i` at `bufs[sum(lens[..i])..][..lens[i]]`), clears
    /// and fills `lens` with their lengths, and returns how many. Stops
    /// early at a message that does not fit in what is left of `bufs`
    /// (the subscriber stays on it). Never waits.
    ///
    /// # Errors
    /// As [`Subscriber::recv_batch_with`]; [`RecvError::BufferTooSmall`]
    /// when not even the first message fits.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 8)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// log.publish_batch(&[b"ab", b"c"]).unwrap();
    /// let (mut bufs, mut lens) = ([0u8; 64], Vec::new());
    /// assert_eq!(sub.recv_batch(&mut bufs, 8, &mut lens), Ok(2));
    /// assert_eq!((lens.as_slice(), &bufs[..3]), (&[2, 1][..], &b"abc"[..]));
    /// ```
    pub fn recv_batch(
        &mut self,
        bufs: &mut [u8],
        max: usize,
        lens: &mut Vec<usize>,
    ) -> Result<usize, RecvError> {
        lens.clear();
        let mut at = 0;
        while lens.len() < max {
            match self.recv_try(&mut bufs[at..]) {
                Ok(len) => {
                    lens.push(len);
                    at += len;
                }
                Err(e) if lens.is_empty() => return Err(e),
                Err(e) => {
                    if let RecvError::Lagged(_) = e {
                        self.pending = Some(e);
                    }
                    break;
                }
            }
        }
        Ok(lens.len())
    }

    /// As [`Subscriber::recv_batch`], waiting up to `timeout` (`None`: no
    /// limit) for the first message, then taking what else is ready.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, RecvError, Start};
    /// use std::time::Duration;
    /// let log = Log::in_process(&LogConfig::new(8, 8)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// let (mut bufs, mut lens) = ([0u8; 64], Vec::new());
    /// let t = Some(Duration::from_millis(5));
    /// assert_eq!(sub.recv_batch_block(&mut bufs, 8, &mut lens, t), Err(RecvError::Timeout));
    /// log.publish_batch(&[b"a", b"b"]).unwrap();
    /// assert_eq!(sub.recv_batch_block(&mut bufs, 8, &mut lens, t), Ok(2));
    /// ```
    pub fn recv_batch_block(
        &mut self,
        bufs: &mut [u8],
        max: usize,
        lens: &mut Vec<usize>,
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        lens.clear();
        if max == 0 {
            return Ok(0);
        }
        let first = self.recv_block(bufs, timeout)?;
        let mut rest = Vec::new();
        let n = match self.recv_batch(&mut bufs[first..], max - 1, &mut rest) {
            Ok(n) => n,
            Err(RecvError::Lagged(n)) => {
                self.pending = Some(RecvError::Lagged(n));
                0
            }
            Err(_) => 0,
        };
        lens.push(first);
        lens.extend_from_slice(&rest[..n]);
        Ok(1 + n)
    }

    /// The non-waiting receive, with recovery checks: `read` gets the
    /// payload's address and length of a complete message (`len <= max`).
    #[inline]
    fn try_with<R>(
        &mut self,
        max: usize,
        read: &mut impl FnMut(*const u8, usize) -> R,
    ) -> Result<R, RecvError> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        loop {
            match self.next_with(max, read) {
                Err(RecvError::Empty) => {
                    if self.shown != self.pos {
                        // Nothing to read: show our progress before anyone
                        // waits for it (a gated publisher, or `stat`).
                        self.publish_cursor();
                    }
                    if !self.recovery_due(false) {
                        return Err(RecvError::Empty);
                    }
                    self.inner.region.segment().check_intact()?;
                    if !self.inner.recover_hole(self.pos) {
                        return Err(RecvError::Empty);
                    }
                }
                other => return other,
            }
        }
    }

    /// Whether a check for a dead publisher is due: blocked callers
    /// (`blocked`) at most every [`RECOVER_EVERY`], `try` callers also only
    /// every 256th empty poll.
    fn recovery_due(&mut self, blocked: bool) -> bool {
        if !blocked {
            self.polls = self.polls.wrapping_add(1);
            if self.polls % 256 != 0 {
                return false;
            }
        }
        let now = Instant::now();
        if self.next_check.is_some_and(|t| now < t) {
            return false;
        }
        self.next_check = Some(now + RECOVER_EVERY);
        true
    }

    /// One attempt at the next position: a seqlock read that calls `read`
    /// between the two stamp loads and keeps its result only if the stamp
    /// did not change.
    #[inline(always)]
    fn next_with<R>(
        &mut self,
        max: usize,
        read: &mut impl FnMut(*const u8, usize) -> R,
    ) -> Result<R, RecvError> {
        loop {
            let inner = &*self.inner;
            let r = self.pos;
            if r > MAX_SEQ {
                return Err(RecvError::Corrupt {
                    detail: format!("position {r} is beyond the largest sequence number"),
                });
            }
            let slot = inner.slot(r);
            // SYNC(slot-publish): Acquire, pairs with the Release CAS (or
            // store, single publisher) that completes a slot: length and
            // payload are visible.
            let s1 = slot.stamp.load(Ordering::Acquire);
            let v = s1 >> 1;
            let ready = inner.value(r, ST_COMPLETE);
            if v == ready {
                // Relaxed: ordered by the Acquire above, validated by the
                // stamp re-check below.
                let len = slot.len.load(Ordering::Relaxed) as usize;
                if len > inner.slot_size || len > max {
                    std::sync::atomic::fence(Ordering::Acquire);
                    // Relaxed: after the fence (seqlock re-check, as below).
                    let s2 = slot.stamp.load(Ordering::Relaxed);
                    if s2 >> 1 != v {
                        return Err(self.lagged(s2 >> 1));
                    }
                    if len > inner.slot_size {
                        let detail = format!(
                            "message {r} has length {len} > slot size {}",
                            inner.slot_size
                        );
                        self.advance(r + 1);
                        return Err(RecvError::Corrupt { detail });
                    }
                    return Err(RecvError::BufferTooSmall { needed: len });
                }
                // len <= slot_size (checked): the payload lies inside this
                // slot in the validated slot array.
                let out = read(Inner::payload(slot), len);
                // SYNC(seqlock-write): Acquire fence, pairs with the publisher's
                // Release fence after taking the slot in `write` / `sp_write`.
                std::sync::atomic::fence(Ordering::Acquire);
                // Relaxed: ordered by the fence above.
                let s2 = slot.stamp.load(Ordering::Relaxed);
                if s2 >> 1 != v {
                    return Err(self.lagged(s2 >> 1));
                }
                self.advance(r + 1);
                return Ok(out);
            }
            if v == ready + 1 {
                // skipped(r): a tombstone, not a message.
                self.advance(r + 1);
                continue;
            }
            if v > ready + 1 {
                return Err(self.lagged(v));
            }
            return Err(if inner.drained(r) {
                RecvError::Closed
            } else {
                RecvError::Empty
            });
        }
    }

    /// Receives the next message, waiting up to `timeout` (`None`: no limit).
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, RecvError, Start};
    /// use std::time::Duration;
    /// let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    /// let mut sub = log.subscribe(Start::Latest).unwrap();
    /// let mut buf = [0u8; 16];
    /// assert_eq!(sub.recv_block(&mut buf, Some(Duration::from_millis(5))), Err(RecvError::Timeout));
    /// ```
    pub fn recv_block(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize, RecvError> {
        self.recv_until(buf, timeout.map(|t| Instant::now() + t))
    }

    /// Receives the next message, waiting until `deadline` (`None`: no limit).
    #[inline]
    pub fn recv_until(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<usize, RecvError> {
        // A wait that a few polls end (a ping-pong, a busy feed) is spared
        // the bookkeeping of `recv_wait`: a clock read and the spinner
        // count's read-modify-write, 10-15 ns of a 100 ns ping-pong's
        // turnaround. Only for a subscriber that spins at all: not for one
        // that sleeps at once (asked to, or taught by long waits), whose
        // polls would be CPU spent for nothing before each sleep. One call
        // site of `recv_try`, inlined: 138 -> 96 instructions a receive
        // (callgrind).
        let mut polls = 0;
        loop {
            match self.recv_try(buf) {
                Err(RecvError::Empty) => {}
                other => return other,
            }
            if polls == 0 && !self.quick_polls() {
                break;
            }
            polls += 1;
            if polls > wait::QUICK_POLLS {
                break;
            }
            std::hint::spin_loop();
        }
        self.recv_wait(buf, deadline)
    }

    /// Whether a blocking receive that found nothing polls a few more times
    /// before its wait (see `recv_until`).
    #[inline]
    fn quick_polls(&self) -> bool {
        match self.wait {
            WaitStrategy::BusySpin => true,
            WaitStrategy::SpinThenSleep { spin } => !self.budget.spin_for(spin, 0).is_zero(),
        }
    }

    /// The waiting half of [`Self::recv_until`], once polls found nothing.
    #[inline(never)]
    fn recv_wait(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, RecvError> {
        // Nothing now: wait, spinning only as long as it is likely to help
        // (see `crate::wait`, "How long to spin").
        // One clock read: the wait's length, and the spinner count's beat.
        let started = wait::mono_ns();
        self.budget.start_wait(started, self.pos);
        // A reference of our own: the cursor table is borrowed across the loop.
        let inner = Arc::clone(&self.inner);
        let table = inner.table();
        let (spin, configured) = match self.wait {
            WaitStrategy::SpinThenSleep { spin } => (
                self.budget.spin_for(spin, table.spinners_now(started)),
                Some(spin),
            ),
            WaitStrategy::BusySpin => (Duration::MAX, None),
        };
        let mut spinning = Spinning::start(table, !spin.is_zero(), started);
        let mut backoff = Backoff::with_spin(self.wait, deadline, spin);
        // Single-publisher log: the word the publisher bumps when it wakes
        // sleeping subscribers (see `crate::wait`, "Sleepers").
        let wake_seq = &inner.region.header().control.wake_seq;
        // Relaxed: a hint, compared after the wait; no data depends on it.
        // A multi-publisher log has no such word in use: not read.
        let woken_before = if inner.single {
            wake_seq.load(Ordering::Relaxed)
        } else {
            0
        };
        let mut slept = false;
        let result = loop {
            match self.recv_try(buf) {
                Err(RecvError::Empty) => {}
                other => break other,
            }
            let next = backoff.next();
            if next == Next::Sleep {
                spinning.stop();
                slept = true;
            }
            match next {
                Next::Retry => spinning.spun(),
                Next::TimedOut => {
                    break match self.inner.region.segment().check_intact() {
                        Ok(()) => Err(RecvError::Timeout),
                        Err(t) => Err(t.into()),
                    };
                }
                Next::Sleep => {
                    // A truncation the SIGBUS guard has met: one load. One
                    // nobody has touched yet (an fstat, a syscall): at most
                    // every RECOVER_EVERY, not at every sleep of a
                    // subscriber woken per message.
                    if let Some(t) = self.inner.region.segment().truncation_seen() {
                        break Err(t.into());
                    }
                    if self.recovery_due(true) {
                        if let Err(t) = self.inner.region.segment().check_intact() {
                            break Err(t.into());
                        }
                        if self.inner.recover_hole(self.pos) {
                            continue;
                        }
                    }
                    let inner = &*self.inner;
                    if inner.single {
                        if self.dozes(started) {
                            // Relaxed: a close bumps it and ends the doze early.
                            let seq = wake_seq.load(Ordering::Relaxed);
                            wait::doze(wake_seq, seq, backoff.remaining());
                            continue;
                        }
                        // Every subscriber sleeps on the one word the
                        // publisher wakes; the bound covers a truncation.
                        let pos = self.pos;
                        let nap = backoff
                            .remaining()
                            .map_or(IDLE_CHECK, |r| r.min(IDLE_CHECK));
                        inner.sp_sleep(nap, || {
                            // Relaxed: after the sleeper's barrier (asym-dekker).
                            inner.slot(pos).stamp.load(Ordering::Relaxed) >> 1
                                >= inner.value(pos, ST_COMPLETE)
                                || inner.sp_drained(pos)
                        });
                        continue;
                    }
                    let slot = inner.slot(self.pos);
                    // Relaxed: only compared; the sleep re-checks atomically.
                    let s = slot.stamp.load(Ordering::Relaxed);
                    if s >> 1 < inner.value(self.pos, ST_COMPLETE) {
                        // A claimed sequence number that is not complete may
                        // be a dead publisher's: wake up soon to check.
                        // Otherwise its publish wakes us; the bound covers a
                        // publisher that claims and dies meanwhile.
                        let cap = if inner.tail() > self.pos {
                            RECOVER_EVERY
                        } else {
                            IDLE_CHECK
                        };
                        let remaining = backoff.remaining().map_or(cap, |r| r.min(cap));
                        let ann = Announce::new(inner.region.lane());
                        ann.sleeping(procs::sleep_slot(inner.index(self.pos)));
                        wait::sleep_on_stamp(
                            &slot.stamp,
                            s,
                            Some(&inner.region.header().control.closed),
                            Some(if ann.has_lane() {
                                remaining
                            } else {
                                remaining.min(Duration::from_millis(1))
                            }),
                        );
                        ann.sleeping(0);
                    }
                }
            }
        };
        drop(spinning);
        if let Some(spin) = configured {
            let waited = wait::mono_ns().saturating_sub(started);
            self.budget.record(Duration::from_nanos(waited), spin);
            // Relaxed: as `woken_before`.
            let others_woken = inner.single && wake_seq.load(Ordering::Relaxed) != woken_before;
            self.budget
                .record_sleepers(!spin.is_zero() && !slept, others_woken);
        }
        result
    }

    /// Whether this blocking receive, waiting since `started`
    /// ([`wait::mono_ns`]), dozes rather than sleeps until woken (see
    /// `crate::wait`, "Dozing"): on a reliable single-publisher log whose
    /// subscribers and publisher outnumber the CPUs, while messages come
    /// within [`wait::DOZE_GAP`] of each other, at most
    /// [`wait::DOZE_MAX_RATE`] a second.
    fn dozes(&self, started: u64) -> bool {
        let inner = &*self.inner;
        let crowded = inner.reliable && inner.table().roster_count() > wait::spin_cores();
        let so_far = Duration::from_nanos(wait::mono_ns().saturating_sub(started));
        self.budget.dozes(crowded, so_far)
    }

    /// Stores this subscriber's position as its named cursor's committed
    /// position: a later subscriber on the same name (in any process, after
    /// a restart for a file-backed log) resumes here, and [`Self::rollback`]
    /// returns here. In reliable mode, publishers are gated by committed
    /// positions: commit at least every `capacity` messages.
    ///
    /// # Errors
    /// [`CursorError::NotNamed`] for a subscriber without a named cursor.
    pub fn commit(&mut self) -> Result<(), CursorError> {
        match &self.cursor {
            CursorRef::Named { index, .. } => {
                self.inner.table().set_committed(*index, self.pos);
                self.publish_cursor();
                Ok(())
            }
            _ => Err(CursorError::NotNamed),
        }
    }

    /// Moves back to the last committed position: the messages read since
    /// are read again (in overwrite mode, those still present; the others
    /// are reported as [`RecvError::Lagged`]). Returns the new position.
    ///
    /// # Examples
    /// ```
    /// use shmq::{Log, LogConfig, Start};
    /// let log = Log::in_process(&LogConfig::new(8, 16)).unwrap();
    /// let mut sub = log.subscribe_named("worker", Start::Latest).unwrap();
    /// for m in [b"a", b"b", b"c"] {
    ///     log.publish(m).unwrap();
    /// }
    /// let mut buf = [0u8; 8];
    /// sub.recv_try(&mut buf).unwrap();
    /// sub.commit().unwrap();
    /// sub.recv_try(&mut buf).unwrap();
    /// sub.recv_try(&mut buf).unwrap();
    /// assert_eq!(sub.rollback(), Ok(1));
    /// let n = sub.recv_try(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"b");
    /// ```
    pub fn rollback(&mut self) -> Result<u64, CursorError> {
        match &self.cursor {
            CursorRef::Named { index, .. } => {
                let pos = self.inner.table().committed(*index);
                self.pos = pos;
                self.pending = None;
                self.publish_cursor();
                Ok(pos)
            }
            _ => Err(CursorError::NotNamed),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if self.shown != self.pos {
            self.publish_cursor();
        }
        let table = self.inner.table();
        match &self.cursor {
            CursorRef::Local => {}
            CursorRef::Ephemeral(index) => {
                // Under the lock, so the entry is not handed out while we free it.
                // If the lock cannot be had, the entry is reaped once we exit.
                if let Ok(lock) = table.lock() {
                    table.unregister_ephemeral(&lock, *index);
                }
            }
            CursorRef::Named { index, .. } => table.detach(*index),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_single;

/// Rewrites the layout's "table size N (wanted M)" (entries of the cursor
/// table, one more than the cursors a caller asks for) in the number of
/// cursors the caller passed, so the message names the value they gave.
fn cursors_in_callers_terms(detail: &str) -> String {
    let Some(at) = detail.find("table size ") else {
        return detail.to_owned();
    };
    let rest = &detail[at + "table size ".len()..];
    let parse = |s: &str| s.parse::<u64>().ok().map(|n| n.saturating_sub(1));
    let mut words = rest.splitn(3, ' ');
    let (Some(have), Some(wanted)) = (words.next(), words.next()) else {
        return detail.to_owned();
    };
    let wanted = wanted
        .strip_prefix("(wanted")
        .and(words.next())
        .and_then(|w| w.split(')').next());
    match (parse(have), wanted.and_then(parse)) {
        (Some(have), Some(wanted)) => {
            let end = at + "table size ".len() + rest.find(')').map_or(rest.len(), |i| i + 1);
            format!(
                "{}room for {have} cursors (wanted {wanted}){}",
                &detail[..at],
                &detail[end..]
            )
        }
        _ => detail.to_owned(),
    }
}

/// The async API's hooks (see `crate::asyncio`): each announces a wait
/// exactly as the matching blocking call does before it sleeps, and says
/// what to sleep on.
#[cfg(feature = "async")]
impl Subscriber {
    /// After `recv_try` reported `Empty`: announces this subscriber as a
    /// sleeper (the waiter bit on the slot it waits for, or the sleepers
    /// count of a single-publisher log) and returns the wait; `None` when
    /// it must try again at once (the state moved, or a dead publisher's
    /// hole was recovered).
    pub(crate) fn park(&mut self) -> Result<Option<crate::asyncio::Park>, RecvError> {
        use crate::asyncio::{Park, IDLE_RECHECK};
        self.inner.region.segment().check_intact()?;
        if self.recovery_due(true) && self.inner.recover_hole(self.pos) {
            return Ok(None);
        }
        let inner = &*self.inner;
        let pos = self.pos;
        if inner.single {
            return Ok(inner.sp_park(|| {
                // Relaxed: after the sleeper's barrier (asym-dekker).
                inner.slot(pos).stamp.load(Ordering::Relaxed) >> 1 >= inner.value(pos, ST_COMPLETE)
                    || inner.sp_drained(pos)
            }));
        }
        let slot = inner.slot(pos);
        // Relaxed: only compared; the waiter bit's CAS re-checks atomically.
        let s = slot.stamp.load(Ordering::Relaxed);
        if s >> 1 >= inner.value(pos, ST_COMPLETE) {
            return Ok(None);
        }
        // A claimed sequence number that is not complete may be a dead
        // publisher's: re-check soon, as `recv_until` does.
        let recheck = if inner.tail() > pos {
            RECOVER_EVERY
        } else {
            IDLE_RECHECK
        };
        let closed = &inner.region.header().control.closed;
        Ok(
            wait::mark_stamp_waiter(&slot.stamp, s, Some(closed)).map(|marked| {
                Park::new(recheck)
                    .on_addr(wait::stamp_word_addr(&slot.stamp), marked)
                    .on(closed, 0)
            }),
        )
    }

    /// Ends a wait announced by [`Subscriber::park`].
    pub(crate) fn unpark(&self, park: crate::asyncio::Park) {
        if let crate::asyncio::Undo::Generation(generation) = park.undo {
            self.inner.sp_unpark(generation);
        }
    }
}

#[cfg(feature = "async")]
impl Log {
    /// After a publish reported `Full` (reliable mode): sets the waiter bit
    /// on the slowest cursor's committed word, as `publish_until` does
    /// before it sleeps, and returns the wait; `None`: try again now.
    pub(crate) fn park_publish(&self) -> Result<Option<crate::asyncio::Park>, SendError> {
        use crate::asyncio::{Park, IDLE_RECHECK};
        self.inner.region.segment().check_intact()?;
        let Some((word, seen)) = self.inner.table().slowest() else {
            return Ok(None);
        };
        if self.inner.tail().saturating_sub(seen >> 1) < self.inner.capacity {
            return Ok(None);
        }
        let closed = &self.inner.region.header().control.closed;
        // The slowest cursor's owner may die: the next publish attempt
        // reaps it, after at most IDLE_RECHECK.
        Ok(
            wait::mark_stamp_waiter(word, seen, Some(closed)).map(|marked| {
                Park::new(IDLE_RECHECK)
                    .on_addr(wait::stamp_word_addr(word), marked)
                    .on(closed, 0)
            }),
        )
    }
}

#[cfg(all(test, feature = "async"))]
mod async_hooks_tests {
    use super::*;

    #[test]
    fn an_async_single_publisher_sleeper_is_counted_until_woken_or_unparked() {
        let log = Log::in_process(&LogConfig::new(8, 4).single_publisher(true)).unwrap();
        let mut sub = log.subscribe(Start::Latest).unwrap();
        let count = |log: &Log| {
            // Relaxed: a test's snapshot.
            log.inner
                .region
                .header()
                .control
                .sleepers
                .load(Ordering::Relaxed)
                & 0xffff
        };
        let park = sub.park().unwrap().expect("empty: parks");
        assert_eq!(count(&log), 1);
        sub.unpark(park);
        assert_eq!(count(&log), 0);
        // The publisher's wake starts a new generation: the count goes with
        // it, and the late unpark takes out nobody else's.
        let park = sub.park().unwrap().expect("empty: parks");
        let mut other = log.subscribe(Start::Latest).unwrap();
        assert!(other.park().unwrap().is_some());
        assert_eq!(count(&log), 2);
        log.publish(b"x").unwrap();
        assert_eq!(count(&log), 0);
        sub.unpark(park);
        assert_eq!(count(&log), 0);
    }
}
