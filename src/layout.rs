//! The segment format: a `#[repr(C)]` header, a process table, an optional
//! kind-specific table, then the slot array. Offsets only, no pointers.
//!
//! ```text
//! 0      Header (1024 bytes): immutable line, then one 128-byte line each for
//!        tail, head, control (closed flag) and statistics
//! 1024   process table: PROC_SLOTS entries of 128 bytes (handles and thread lanes)
//! aux    kind-specific table (the fan-out log's cursors), aux_count entries
//! slots  capacity slots of slot_stride bytes: SlotHeader then payload
//! ```
//!
//! Creation writes every field, then `magic` last with Release; an opener
//! Acquires `magic` before it reads anything else. The immutable fields are
//! covered by a checksum and copied into [`Params`] on attach; they are never
//! re-read from shared memory afterwards.

use crate::sync::{AtomicU32, AtomicU64};
use crate::Error;

/// "SHMQSEG1" read as a little-endian integer: marks an initialised segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQSEG1");
/// The layout version this library writes and reads (2: a 256-entry process
/// table of handles and thread lanes that announce their claims; 3: a lane
/// may announce a range of positions, [`ProcEntry::claim_len`], which a
/// version-2 recoverer would not read, and would take the rest of a live
/// range for a dead claim; 4: the sleepers word of a single-publisher log
/// holds a generation beside its count, which a version-3 sleeper would
/// decrement as a plain count).
pub const LAYOUT_VERSION: u32 = 4;
/// Size of [`Header`], also the offset of the process table.
pub const HEADER_SIZE: usize = 1024;
/// Number of entries in the process table: one per attached handle, plus
/// one per (handle, thread) pair that claims positions.
pub const PROC_SLOTS: usize = 256;
/// Size of one process-table entry.
pub const PROC_ENTRY_SIZE: usize = 128;
/// Bytes of a slot before its payload.
pub const SLOT_HEADER_SIZE: usize = 16;
/// Largest slot payload accepted (16 MiB).
pub const MAX_SLOT_SIZE: u32 = 16 << 20;
/// Largest capacity accepted (slots).
pub const MAX_CAPACITY: u64 = 1 << 30;

/// Which engine a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QueueKind {
    /// The work queue: each message goes to exactly one consumer.
    WorkQueue = 1,
    /// The fan-out log: every subscriber sees every message.
    Log = 2,
}

impl QueueKind {
    /// Reads a kind from its stored value.
    pub fn from_raw(raw: u32) -> Option<QueueKind> {
        match raw {
            1 => Some(QueueKind::WorkQueue),
            2 => Some(QueueKind::Log),
            _ => None,
        }
    }
}

/// A word alone on its 128-byte line (two lines, against adjacent-line prefetch).
#[repr(C, align(128))]
pub struct HotWord {
    /// The word.
    pub value: AtomicU64,
}

/// The control line: words that change rarely and are read on every operation.
#[repr(C, align(128))]
pub struct Control {
    /// [`OPEN`], [`CLOSED`] or [`CLOSED_QUIET`]. Never goes back to [`OPEN`].
    pub closed: AtomicU32,
    /// Processes sleeping in a single-producer/single-consumer wait. In a
    /// single-publisher log, `generation << 16 | count`: each waker starts
    /// a new generation with a count of 0 (see `src/log/single.rs`).
    pub sleepers: AtomicU32,
    /// Futex word of single-producer/single-consumer sleepers: bumped by a
    /// waker that saw a sleeper counted, and by `close`.
    pub wake_seq: AtomicU32,
    _pad: u32,
    /// Single-producer queues: the producer role's holder, `pid << 32 | nonce`; 0 when free.
    pub producer: AtomicU64,
    /// Single-consumer queues: the consumer role's holder, `pid << 32 | nonce`; 0 when free.
    pub consumer: AtomicU64,
}

/// [`Control::closed`]: the queue is open.
pub const OPEN: u32 = 0;
/// [`Control::closed`]: closed; a single producer may still have one enqueue in flight.
pub const CLOSED: u32 = 1;
/// [`Control::closed`]: closed, and no enqueue is in flight (set by the single
/// producer itself, or for multi-producer queues where claims are tracked per slot).
pub const CLOSED_QUIET: u32 = 2;

/// Header flag of a work queue: one producer and one consumer at a time
/// (Lamport ring with cached indices; slots' stamps unused).
pub const QUEUE_FLAG_SPSC: u64 = 1;

/// Counters that are not derivable from head and tail.
#[repr(C, align(128))]
pub struct Stats {
    /// Messages discarded by `enqueue_shift` to make room.
    pub discarded: AtomicU64,
    /// Slots published as tombstones (claims abandoned by close or by a dead
    /// process, padding published by crash recovery).
    pub tombstones: AtomicU64,
    /// Messages lost to subscribers that fell behind (fan-out log).
    pub lagged: AtomicU64,
    /// Of `tombstones`: claims of dead producers (work queue) or writes of
    /// dead publishers (log) that crash recovery turned into tombstones.
    pub dead_claims: AtomicU64,
    /// Work queue: messages whose consumer died before its dequeue returned,
    /// delivered again (each is also counted twice in `tail`).
    pub redelivered: AtomicU64,
    /// Work queue: tombstones passed by consumers (or by `enqueue_shift`),
    /// so `tombstones - skipped` are still in the ring.
    pub skipped: AtomicU64,
}

/// The segment header. Immutable fields first, then the hot lines.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`] once initialised; written last with Release.
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`] of the creator.
    pub layout_version: u32,
    /// [`QueueKind`] as its raw value.
    pub kind: u32,
    /// Largest payload of one message, in bytes.
    pub slot_size: u32,
    /// Bytes from one slot to the next (header + payload, 8-byte aligned).
    pub slot_stride: u32,
    /// Number of slots (at least 2).
    pub capacity: u64,
    /// Kind-specific flags (the log's mode).
    pub flags: u64,
    /// Process id of the creator.
    pub creator_pid: u32,
    /// Mode bits chosen at creation.
    pub mode: u32,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Bytes the whole segment needs; at most the mapping's size.
    pub total_size: u64,
    /// Offset of the process table (always [`HEADER_SIZE`]).
    pub procs_offset: u64,
    /// Entries in the process table (always [`PROC_SLOTS`]).
    pub procs_count: u32,
    /// Entries in the kind-specific table.
    pub aux_count: u32,
    /// Offset of the kind-specific table.
    pub aux_offset: u64,
    /// Offset of the slot array.
    pub slots_offset: u64,
    /// Checksum of bytes 8..96 (every immutable field above).
    pub checksum: u64,
    _reserved: [u8; 24],
    /// Producers' claim position (work queue) or publish position (log).
    pub tail: HotWord,
    /// Consumers' claim position (work queue).
    pub head: HotWord,
    /// Rarely-written flags.
    pub control: Control,
    /// Statistics.
    pub stats: Stats,
    _reserved_lines: [u8; 384],
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(Header, checksum) == 96);
const _: () = assert!(core::mem::offset_of!(Header, tail) == 128);
const _: () = assert!(core::mem::offset_of!(Header, head) == 256);
const _: () = assert!(core::mem::offset_of!(Header, control) == 384);
const _: () = assert!(core::mem::offset_of!(Header, stats) == 512);

/// The bytes covered by [`Header::checksum`].
const CHECKSUM_RANGE: core::ops::Range<usize> = 8..96;

/// One entry of the process table: an attached handle, or a thread lane (one
/// thread of one handle announcing the positions it claims).
///
/// An entry is taken by a CAS of `pid` from 0 (then its identity words are
/// written), and freed by its owner, or by a reaper once its owner is dead
/// (the reaper first CASes `pid` to [`PID_REAPING`], so that two reapers or
/// a reaper and a new owner never interleave).
#[repr(C, align(128))]
pub struct ProcEntry {
    /// 0 when free, [`PID_REAPING`] while being reaped; otherwise the pid of the owner.
    pub pid: AtomicU32,
    /// [`ENTRY_HANDLE`] or [`ENTRY_LANE`].
    pub kind: AtomicU32,
    /// The owner's start time in clock ticks since boot (tells pid reuse apart).
    pub start_time: AtomicU64,
    /// The owner's pid namespace (inode of `/proc/self/ns/pid`; 0 unknown).
    pub pid_ns: AtomicU64,
    /// Bumped each time the entry is taken: a role token names (index, gen),
    /// so a token outlives neither its owner nor the entry's reuse.
    pub gen: AtomicU64,
    /// The claim this lane is making: [`CLAIM_PRODUCE`] or [`CLAIM_CONSUME`]
    /// or-ed with the position; 0 when none. Written before the claiming CAS
    /// and cleared after the claimed step is complete, so a position that
    /// was claimed but never completed is named by its owner's lane.
    pub claim: AtomicU64,
    /// What the lane's thread sleeps on: [`SLEEP_SLOT`] or [`SLEEP_CURSOR`]
    /// or-ed with the index; 0 when awake. `close` wakes these.
    pub sleeping_on: AtomicU64,
    /// Handles of single-producer queues: how many of this handle's
    /// sleepers are counted in `Control::sleepers` (recovered when it dies).
    /// Single-publisher logs do not use it (a dead sleeper's count goes at
    /// the next wake).
    pub spsc_sleeping: AtomicU32,
    /// The owning thread's id (display only).
    pub tid: AtomicU32,
    /// How many consecutive positions, from the one in `claim`, the claim
    /// names (a batch claims a range with one CAS); 0 or 1: one. Written
    /// (Release) before `claim`, reset to 0 (Release) after `claim` is
    /// cleared, so a reader that Acquires a length written after the claim
    /// it read also sees that claim's step complete (see `crate::procs`).
    pub claim_len: AtomicU64,
}

/// [`ProcEntry::pid`] of an entry being reaped.
pub const PID_REAPING: u32 = u32::MAX;
/// [`ProcEntry::kind`]: an attached handle.
pub const ENTRY_HANDLE: u32 = 1;
/// [`ProcEntry::kind`]: a thread lane of a handle.
pub const ENTRY_LANE: u32 = 2;
/// [`ProcEntry::claim`] tag: producing (enqueue, publish) at the position.
pub const CLAIM_PRODUCE: u64 = 1 << 62;
/// [`ProcEntry::claim`] tag: consuming (dequeue) at the position.
pub const CLAIM_CONSUME: u64 = 2 << 62;
/// [`ProcEntry::claim`]: the position bits.
pub const CLAIM_POS: u64 = (1 << 62) - 1;
/// Largest position shmq accepts (claims name positions in 62 bits); a
/// position beyond it in shared memory is corrupt.
pub const MAX_POSITION: u64 = CLAIM_POS;
/// [`ProcEntry::sleeping_on`] tag: a slot index.
pub const SLEEP_SLOT: u64 = 1 << 62;
/// [`ProcEntry::sleeping_on`] tag: a cursor entry index (the log).
pub const SLEEP_CURSOR: u64 = 2 << 62;

const _: () = assert!(core::mem::size_of::<ProcEntry>() == PROC_ENTRY_SIZE);
const _: () = assert!(core::mem::offset_of!(ProcEntry, claim_len) == 56);

/// The header of one slot; the payload follows it.
#[repr(C)]
pub struct SlotHeader {
    /// `position << 1 | WAITER`. Empty for position `p`: `p`; holding the
    /// message of position `p`: `p + 1`. The low 32 bits are a futex word.
    pub stamp: AtomicU64,
    /// Payload length in bytes; valid while the stamp says "holding".
    pub len: AtomicU32,
    /// [`SLOT_TOMBSTONE`] when the position carries no message.
    pub flags: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<SlotHeader>() == SLOT_HEADER_SIZE);

/// How many slots ahead of its stores a writer asks for lines with
/// [`prefetch_for_write`] (the queue's batch enqueues, the single-publisher
/// log's publishes).
pub(crate) const PREFETCH_AHEAD: u64 = 4;

/// Asks for the lines of `slot` (its header and `payload` bytes after it)
/// in the exclusive state, so that stores to it a few slots later find them
/// ready instead of each waiting for a reader's core to give them up. A
/// hint: does nothing where the CPU lacks PREFETCHW.
#[inline(always)]
pub(crate) fn prefetch_for_write(slot: &SlotHeader, payload: usize) {
    if let Some(p) = PrefetchW::detect() {
        p.slot(slot, payload);
    }
}

/// Proof that this CPU has PREFETCHW (CPUID 0x8000_0001, ECX bit 8: PRFCHW,
/// alias 3DNowPrefetch), which `std::is_x86_feature_detected!` does not
/// name. Asked once per process; a writer that prefetches on every message
/// keeps the answer instead of asking again (the single publisher's role).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // never made there
pub(crate) struct PrefetchW(());

impl PrefetchW {
    /// `Some` if this CPU has PREFETCHW.
    #[inline]
    pub(crate) fn detect() -> Option<PrefetchW> {
        #[cfg(target_arch = "x86_64")]
        {
            static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let has = *HAS.get_or_init(|| {
                // Leaf 0x8000_0000 gives the highest extended leaf:
                // 0x8000_0001 is asked only if present.
                use core::arch::x86_64::__cpuid;
                __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
            });
            has.then_some(PrefetchW(()))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    /// [`prefetch_for_write`] without asking the CPU again.
    #[inline(always)]
    pub(crate) fn slot(self, slot: &SlotHeader, payload: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let first = slot as *const SlotHeader as *const u8;
            let last = first.wrapping_add(SLOT_HEADER_SIZE + payload.max(1) - 1);
            // SAFETY: the CPU has PREFETCHW (a `PrefetchW` exists only when
            // `detect` found it), a hint that never faults and changes no
            // register or memory contents; `last` is computed with wrapping
            // arithmetic and only named, never dereferenced. `_mm_prefetch`
            // would lower the write hint to a read prefetch unless the whole
            // crate were built for `prfchw`.
            unsafe {
                core::arch::asm!(
                    "prefetchw [{0}]",
                    "prefetchw [{1}]",
                    in(reg) first,
                    in(reg) last,
                    options(nostack, preserves_flags, readonly)
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (slot, payload);
    }
}

/// Stamp bit set by a process sleeping on the slot's futex word.
pub const STAMP_WAITER: u64 = 1;
/// Work-queue stamp bit: the published position carries no message (set by
/// crash recovery, which must not write the fields of a slot it does not own).
pub const STAMP_TOMB: u64 = 1 << 63;
/// Slot flag: the position holds no message and is skipped by consumers.
pub const SLOT_TOMBSTONE: u32 = 1;
/// Slot flag: the message was delivered again, its first consumer having
/// died before its dequeue returned.
pub const SLOT_REDELIVERED: u32 = 2;

/// The immutable parameters of a segment, validated and copied into the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Which engine.
    pub kind: QueueKind,
    /// Largest payload, bytes.
    pub slot_size: u32,
    /// Bytes per slot.
    pub slot_stride: u32,
    /// Number of slots.
    pub capacity: u64,
    /// Kind-specific flags.
    pub flags: u64,
    /// Entries in the kind-specific table.
    pub aux_count: u32,
    /// Offset of the kind-specific table.
    pub aux_offset: u64,
    /// Offset of the slot array.
    pub slots_offset: u64,
    /// Bytes the segment needs.
    pub total_size: u64,
    /// Creator pid.
    pub creator_pid: u32,
    /// Mode bits at creation.
    pub mode: u32,
    /// Creation time, ns since the Unix epoch.
    pub created_unix_ns: u64,
}

/// Bytes per slot for a payload of `slot_size` bytes.
pub fn slot_stride(slot_size: u32) -> u32 {
    ((SLOT_HEADER_SIZE + slot_size as usize).div_ceil(64) * 64) as u32
}

/// Bytes of one kind-specific table entry (the log's cursor).
pub const AUX_ENTRY_SIZE: u64 = 128;

impl Params {
    /// Computes the layout for new parameters, checking their ranges.
    pub fn new(
        kind: QueueKind,
        slot_size: u32,
        capacity: u64,
        flags: u64,
        aux_count: u32,
        mode: u32,
    ) -> Result<Params, Error> {
        if slot_size > MAX_SLOT_SIZE {
            return Err(Error::invalid(format!(
                "slot size {slot_size} exceeds the maximum of {MAX_SLOT_SIZE} bytes"
            )));
        }
        if !(2..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::invalid(format!(
                "capacity {capacity} is outside 2..={MAX_CAPACITY}"
            )));
        }
        if mode & !0o777 != 0 {
            return Err(Error::invalid(format!(
                "mode {mode:o} has bits beyond 0o777"
            )));
        }
        let stride = slot_stride(slot_size);
        let aux_offset = (HEADER_SIZE + PROC_SLOTS * PROC_ENTRY_SIZE) as u64;
        let slots_offset = aux_offset + aux_count as u64 * AUX_ENTRY_SIZE;
        let total_size = slots_offset + capacity * stride as u64;
        Ok(Params {
            kind,
            slot_size,
            slot_stride: stride,
            capacity,
            flags,
            aux_count,
            aux_offset,
            slots_offset,
            total_size,
            creator_pid: std::process::id(),
            mode,
            created_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        })
    }

    /// Writes the header of a fresh, zeroed region and publishes it (magic last).
    ///
    /// # Safety
    /// `base` points to at least `self.total_size` writable bytes, zeroed, that
    /// no other process reads as initialised yet (its magic is still zero).
    pub unsafe fn initialise(&self, base: *mut u8) {
        let hdr = base as *mut Header;
        // SAFETY: the caller guarantees `total_size` (> HEADER_SIZE) writable
        // bytes; the fields are written through raw pointers before any reader
        // may look (magic is zero until the Release store below).
        unsafe {
            (*hdr).layout_version = LAYOUT_VERSION;
            (*hdr).kind = self.kind as u32;
            (*hdr).slot_size = self.slot_size;
            (*hdr).slot_stride = self.slot_stride;
            (*hdr).capacity = self.capacity;
            (*hdr).flags = self.flags;
            (*hdr).creator_pid = self.creator_pid;
            (*hdr).mode = self.mode;
            (*hdr).created_unix_ns = self.created_unix_ns;
            (*hdr).total_size = self.total_size;
            (*hdr).procs_offset = HEADER_SIZE as u64;
            (*hdr).procs_count = PROC_SLOTS as u32;
            (*hdr).aux_count = self.aux_count;
            (*hdr).aux_offset = self.aux_offset;
            (*hdr).slots_offset = self.slots_offset;
            (*hdr).checksum = checksum(core::slice::from_raw_parts(base, HEADER_SIZE));
            for i in 0..self.capacity {
                let slot = base.add((self.slots_offset + i * self.slot_stride as u64) as usize)
                    as *const SlotHeader;
                // Relaxed: published by the Release store of magic below.
                (*slot).stamp.store(i << 1, crate::sync::Ordering::Relaxed);
            }
            // SYNC(publish-header): Release, pairs with the Acquire load of
            // magic in `Params::validate`; everything above is visible first.
            (*hdr).magic.store(MAGIC, crate::sync::Ordering::Release);
        }
    }

    /// Validates a header read from an untrusted mapping of `map_len` bytes
    /// and copies out its parameters. Returns `Ok(None)` while the magic is
    /// still zero (creation in progress).
    ///
    /// # Safety
    /// `base` points to at least `map_len` readable bytes, `map_len >= HEADER_SIZE`.
    pub unsafe fn validate(base: *const u8, map_len: usize) -> Result<Option<Params>, Error> {
        debug_assert!(map_len >= HEADER_SIZE);
        let hdr = base as *const Header;
        // SAFETY: map_len >= HEADER_SIZE, so the magic word is in bounds and
        // 8-byte aligned (mappings are page aligned).
        let magic = unsafe { (*hdr).magic.load(crate::sync::Ordering::Acquire) };
        // SYNC(publish-header): Acquire above pairs with the Release in `initialise`.
        if magic == 0 {
            return Ok(None);
        }
        if magic != MAGIC {
            return Err(Error::corrupt(format!(
                "bad magic {magic:#018x}: not a shmq segment"
            )));
        }
        let mut raw = [0u8; HEADER_SIZE];
        // SAFETY: in bounds (map_len >= HEADER_SIZE), and a mapping is
        // page-aligned; a plain copy of bytes that are immutable after the
        // magic was published.
        unsafe { read_volatile_words(base, &mut raw) };
        let word32 = |off: usize| u32::from_le_bytes(raw[off..off + 4].try_into().unwrap());
        let word64 = |off: usize| u64::from_le_bytes(raw[off..off + 8].try_into().unwrap());
        let version = word32(8);
        if version != LAYOUT_VERSION {
            return Err(Error::VersionMismatch {
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        let stored_sum = word64(96);
        if checksum(&raw) != stored_sum {
            return Err(Error::corrupt("header checksum mismatch"));
        }
        let kind = QueueKind::from_raw(word32(12))
            .ok_or_else(|| Error::corrupt(format!("unknown queue kind {}", word32(12))))?;
        let p = Params {
            kind,
            slot_size: word32(16),
            slot_stride: word32(20),
            capacity: word64(24),
            flags: word64(32),
            creator_pid: word32(40),
            mode: word32(44),
            created_unix_ns: word64(48),
            total_size: word64(56),
            aux_count: word32(76),
            aux_offset: word64(80),
            slots_offset: word64(88),
        };
        if word64(64) != HEADER_SIZE as u64 || word32(72) != PROC_SLOTS as u32 {
            return Err(Error::corrupt(
                "process table is not where this layout puts it",
            ));
        }
        if p.slot_size > MAX_SLOT_SIZE || p.slot_stride != slot_stride(p.slot_size) {
            return Err(Error::corrupt(format!(
                "slot size {} / stride {} are inconsistent",
                p.slot_size, p.slot_stride
            )));
        }
        if !(2..=MAX_CAPACITY).contains(&p.capacity) {
            return Err(Error::corrupt(format!(
                "capacity {} out of range",
                p.capacity
            )));
        }
        let expected_aux = (HEADER_SIZE + PROC_SLOTS * PROC_ENTRY_SIZE) as u64;
        let expected_slots = expected_aux + p.aux_count as u64 * AUX_ENTRY_SIZE;
        let needed = p
            .capacity
            .checked_mul(p.slot_stride as u64)
            .and_then(|s| s.checked_add(expected_slots));
        if p.aux_offset != expected_aux
            || p.slots_offset != expected_slots
            || needed != Some(p.total_size)
        {
            return Err(Error::corrupt("table offsets and sizes do not add up"));
        }
        if p.total_size > map_len as u64 {
            return Err(Error::corrupt(format!(
                "header claims {} bytes ({} slots) but the mapping holds only {map_len}",
                p.total_size, p.capacity
            )));
        }
        Ok(Some(p))
    }

    /// Checks that an opened segment matches the parameters asked for.
    pub fn check_matches(&self, want: &Params) -> Result<(), Error> {
        let mut diffs = Vec::new();
        if self.kind != want.kind {
            diffs.push(format!("kind {:?} (wanted {:?})", self.kind, want.kind));
        }
        if self.slot_size != want.slot_size {
            diffs.push(format!(
                "slot size {} (wanted {})",
                self.slot_size, want.slot_size
            ));
        }
        if self.capacity != want.capacity {
            diffs.push(format!(
                "capacity {} (wanted {})",
                self.capacity, want.capacity
            ));
        }
        if self.flags != want.flags {
            diffs.push(format!(
                "flags {:#x} (wanted {:#x})",
                self.flags, want.flags
            ));
        }
        if self.aux_count != want.aux_count {
            diffs.push(format!(
                "table size {} (wanted {})",
                self.aux_count, want.aux_count
            ));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(Error::Incompatible {
                detail: format!("existing segment has {}", diffs.join(", ")),
            })
        }
    }
}

/// FNV-1a over the immutable part of a header image.
pub fn checksum(header: &[u8]) -> u64 {
    header[CHECKSUM_RANGE]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// Copies `dst.len()` bytes from `src` with one volatile 8-byte load per
/// word: bytes that another process may be writing, copied without letting
/// the compiler assume they hold still. (A `read_volatile` of a whole array
/// is lowered to one load per byte, which made a 16 KiB copy cost the
/// optimiser most of the crate's build time.)
///
/// # Safety
/// `src` is 8-byte aligned and valid for reading `dst.len()` bytes;
/// `dst.len()` is a multiple of 8.
pub(crate) unsafe fn read_volatile_words(src: *const u8, dst: &mut [u8]) {
    debug_assert!(src as usize % 8 == 0 && dst.len() % 8 == 0);
    for (i, word) in dst.chunks_exact_mut(8).enumerate() {
        // SAFETY: the caller's bounds and alignment; i * 8 + 8 <= dst.len().
        let value = unsafe { (src as *const u64).add(i).read_volatile() };
        word.copy_from_slice(&value.to_ne_bytes());
    }
}
