//! Looking inside any shmq segment without joining it: for tools such as
//! `shmq ls` and `shmq stat`.
//!
//! An [`Inspector`] maps a segment, validates its header exactly like an
//! opener does (the segment is untrusted input) and then only reads: it does
//! not register in the process table, and it works whatever the segment's
//! [`QueueKind`]. [`probe`] tells a shmq segment from somebody else's without
//! waiting, so a listing can skip foreign segments.
//!
//! Counters are read with Relaxed loads: they are a snapshot for display,
//! individually coherent, not consistent with each other while operations
//! are in flight.
//!
//! # Examples
//! ```
//! use shmq::inspect::{probe, Probe};
//! use shmq::{Queue, QueueConfig, Target};
//! let target = Target::Posix(format!("shmq-doc-inspect-{}", std::process::id()));
//! let q = Queue::create(&target, &QueueConfig::new(64, 8))?;
//! q.enqueue_try(b"one")?;
//! let Probe::Shmq(view) = probe(&target)? else { panic!("a shmq segment") };
//! assert_eq!(view.params().slot_size, 64);
//! assert_eq!(view.queue_stats().unwrap().len, 1);
//! target.unlink()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::layout::{
    Header, Params, ProcEntry, QueueKind, SlotHeader, HEADER_SIZE, MAGIC, PROC_SLOTS, STAMP_WAITER,
};
use crate::segment::{backing_capacity, classify_uninitialised, Segment, Uninitialised, INIT_WAIT};
use crate::sync::Ordering;
use crate::{liveness, Attached, Error, QueueStats, Target};

/// What [`probe`] found at a target.
#[derive(Debug)]
pub enum Probe {
    /// A valid shmq segment, ready to read.
    Shmq(Inspector),
    /// A segment that carries shmq's magic but fails validation (bad
    /// checksum, impossible sizes, another layout version): shmq's, but
    /// unusable.
    Corrupt(Error),
    /// The first word is still zero and the rest is shaped like a header
    /// being written (see [`classify_uninitialised`]): a shmq segment whose
    /// creator has not finished (or died before finishing), or zeros of a
    /// size a creator makes.
    Uninitialised,
    /// Not a shmq segment.
    Foreign {
        /// Why it was not recognised.
        reason: String,
    },
}

/// A validated, read-only view of a shmq segment of any kind.
#[derive(Debug)]
pub struct Inspector {
    seg: Segment,
    params: Params,
}

/// The header's counters at one moment (read with Relaxed loads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Positions claimed by producers (work queue) or published (log).
    pub tail: u64,
    /// Positions claimed by consumers (work queue).
    pub head: u64,
    /// Messages discarded by `enqueue_shift`.
    pub discarded: u64,
    /// Positions that carried no message (abandoned claims).
    pub tombstones: u64,
    /// Messages lost by subscribers that fell behind (fan-out log).
    pub lagged: u64,
    /// Of `tombstones`: claims of dead producers or writes of dead
    /// publishers, finished by crash recovery.
    pub dead_claims: u64,
    /// Messages delivered again because their consumer died before its
    /// dequeue returned (work queue).
    pub redelivered: u64,
    /// Tombstones already passed by consumers (work queue).
    pub skipped: u64,
    /// Whether `close()` was called.
    pub closed: bool,
}

/// Most slots [`Inspector::sleeping_slots`] looks at: 1024 slot headers,
/// a few MiB of memory touched even over a sparse segment.
pub const SCAN_LIMIT: u64 = 1024;

/// Most entries [`Inspector::aux_table`] copies (8 MiB).
pub const AUX_COPY_LIMIT: usize = 65_536;

/// What [`Inspector::sleeping_slots`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotScan {
    /// Slots whose stamp carries the waiter bit, among those scanned.
    pub marked: u64,
    /// Slots looked at: all of them, or (over [`SCAN_LIMIT`]) the ones
    /// around the head and the tail.
    pub scanned: u64,
    /// Slots in the queue.
    pub capacity: u64,
}

impl SlotScan {
    /// Whether only part of the slots was looked at.
    pub fn bounded(&self) -> bool {
        self.scanned < self.capacity
    }
}

/// A claim announced in a thread lane whose step is not complete: a live
/// process at work, or a dead one's half-done step that the next process to
/// run into it recovers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimView {
    /// The position (work queue) or sequence number (log) claimed.
    pub position: u64,
    /// Its slot.
    pub slot: u64,
    /// What is half-done: "claimed, not published" (a producer or
    /// publisher) or "taken, not released" (a work-queue consumer).
    pub state: &'static str,
    /// The claimer's pid.
    pub pid: u32,
    /// Whether it is alive (or cannot be judged from here).
    pub alive: bool,
}

/// The size of whatever is at `target`, without mapping it (SysV: the
/// segment size; POSIX and file: the file size).
fn size_of_target(target: &Target) -> Result<u64, Error> {
    let path = match target {
        Target::SysV(_) => return Ok(u64::MAX), // shmat maps it whatever its size
        Target::Posix(name) => {
            std::path::PathBuf::from(format!("/dev/shm/{}", name.trim_start_matches('/')))
        }
        Target::File(path) => path.clone(),
    };
    std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|e| Error::from_os("stat", &target.to_string(), e))
}

/// Classifies a mapped segment once, without waiting.
fn classify(seg: Segment) -> Probe {
    if seg.len() < HEADER_SIZE {
        return Probe::Foreign {
            reason: format!("{} bytes, smaller than a shmq header", seg.len()),
        };
    }
    // SAFETY: the mapping holds at least HEADER_SIZE bytes and is page
    // aligned, so the first word is in bounds and 8-byte aligned.
    let magic = unsafe {
        (*(seg.as_ptr() as *const Header))
            .magic
            .load(Ordering::Relaxed)
    };
    // Relaxed: only a first look; `Params::validate` re-reads it with Acquire.
    if magic == 0 {
        return match classify_uninitialised(&seg) {
            Uninitialised::Foreign { reason } => Probe::Foreign { reason },
            _ => Probe::Uninitialised,
        };
    }
    if magic != MAGIC {
        return Probe::Foreign {
            reason: format!("first word {magic:#018x} is not shmq's magic"),
        };
    }
    // SAFETY: seg.len() >= HEADER_SIZE, checked above.
    match unsafe { Params::validate(seg.as_ptr(), seg.len()) } {
        Ok(Some(params)) => Probe::Shmq(Inspector { seg, params }),
        Ok(None) => Probe::Uninitialised,
        Err(e) => Probe::Corrupt(e),
    }
}

/// Looks at `target` once, without waiting and without registering:
/// is it a valid shmq segment, a broken one, or someone else's?
///
/// Fails only when nothing can be looked at: [`Error::NotFound`],
/// [`Error::PermissionDenied`], or another OS error.
pub fn probe(target: &Target) -> Result<Probe, Error> {
    // An empty or tiny file would make `Segment::open` wait for its creator
    // to size it: decide from its size first.
    let size = size_of_target(target)?;
    if size < HEADER_SIZE as u64 {
        return Ok(Probe::Foreign {
            reason: format!("{size} bytes, smaller than a shmq header"),
        });
    }
    Ok(classify(Segment::open(target)?))
}

impl Inspector {
    /// Opens the shmq segment at `target` for reading, whatever its kind.
    /// Waits a bounded time for a creator that has not finished.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::Corrupt`]
    /// (also for a segment that is not shmq's), [`Error::VersionMismatch`],
    /// [`Error::NotReady`].
    pub fn open(target: &Target) -> Result<Inspector, Error> {
        let size = size_of_target(target)?;
        if size < HEADER_SIZE as u64 {
            return Err(Error::corrupt(format!(
                "{target} is {size} bytes, smaller than a shmq header ({HEADER_SIZE}); not a shmq segment"
            )));
        }
        let seg = Segment::open(target)?;
        if seg.len() < HEADER_SIZE {
            return Err(Error::corrupt(format!(
                "{target} is too small to be a shmq segment"
            )));
        }
        let deadline = Instant::now() + INIT_WAIT;
        let params = loop {
            // SAFETY: seg.len() >= HEADER_SIZE, checked above.
            if let Some(params) = unsafe { Params::validate(seg.as_ptr(), seg.len()) }? {
                break params;
            }
            match classify_uninitialised(&seg) {
                Uninitialised::Initialising => {}
                Uninitialised::Abandoned { .. } => {
                    return Err(Error::NotReady {
                        target: target.to_string(),
                    })
                }
                Uninitialised::Foreign { reason } => {
                    return Err(Error::corrupt(format!(
                        "{target}: {reason}; not a shmq segment"
                    )))
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    target: target.to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if let Some(limit) = backing_capacity(target) {
            if params.total_size > limit {
                return Err(Error::corrupt(format!(
                    "header claims {} bytes ({} slots), more than the {limit} bytes \
                     the file system holding {target} can ever store",
                    params.total_size, params.capacity
                )));
            }
        }
        Ok(Inspector { seg, params })
    }

    /// The validated immutable parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The bytes mapped (the segment's real size; at least `total_size`).
    pub fn mapped_len(&self) -> usize {
        self.seg.len()
    }

    /// Where the segment lives.
    pub fn target(&self) -> Option<&Target> {
        self.seg.target()
    }

    fn header(&self) -> &Header {
        // SAFETY: validated: the mapping holds at least HEADER_SIZE bytes and
        // is page aligned; the fields read through it are atomics.
        unsafe { &*(self.seg.as_ptr() as *const Header) }
    }

    fn procs(&self) -> &[ProcEntry] {
        // SAFETY: validated: PROC_SLOTS entries at HEADER_SIZE lie inside
        // total_size <= mapping length; the entries are atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.seg.as_ptr().add(HEADER_SIZE) as *const ProcEntry,
                PROC_SLOTS,
            )
        }
    }

    /// The claims announced in the process table whose step is not complete
    /// (see [`ClaimView`]). Reads the table (256 entries) and one slot per claim.
    pub fn claims(&self) -> Vec<ClaimView> {
        let c = self.counters();
        let p = &self.params;
        let mut out = Vec::new();
        for e in self.procs() {
            // Acquire: pairs with the claimer's Release clear (a snapshot).
            let claim = e.claim.load(Ordering::Acquire);
            if claim == 0 {
                continue;
            }
            let pos = claim & crate::layout::CLAIM_POS;
            let producing = claim & !crate::layout::CLAIM_POS == crate::layout::CLAIM_PRODUCE;
            let slot = pos % p.capacity;
            let off = p.slots_offset + slot * p.slot_stride as u64;
            // SAFETY: slot < capacity, so the slot header lies inside the
            // validated slot array; it is aligned (stride multiple of 64).
            let header = unsafe { &*(self.seg.as_ptr().add(off as usize) as *const SlotHeader) };
            // Relaxed: a display snapshot.
            let stamp = header.stamp.load(Ordering::Relaxed);
            let state = match p.kind {
                QueueKind::WorkQueue => {
                    let s = (stamp & !crate::layout::STAMP_TOMB) >> 1;
                    if producing && pos < c.tail && s <= pos {
                        Some("claimed, not published")
                    } else if !producing && pos < c.head && s == pos.saturating_add(1) {
                        Some("taken, not released")
                    } else {
                        None
                    }
                }
                QueueKind::Log => {
                    // The log's stamp value for `pos` complete: 4 * (pos + capacity) + 2.
                    let complete = pos.wrapping_add(p.capacity) << 2 | 2;
                    (producing && pos < c.tail && stamp >> 1 < complete)
                        .then_some("claimed, write not complete")
                }
            };
            if let Some(state) = state {
                out.push(ClaimView {
                    position: pos,
                    slot,
                    state,
                    // Relaxed: display.
                    pid: e.pid.load(Ordering::Relaxed),
                    alive: !liveness::judge_entry(e).is_dead(),
                });
            }
        }
        out
    }

    /// The header's counters now.
    pub fn counters(&self) -> Counters {
        let h = self.header();
        // Relaxed (all): a display snapshot; nothing is decided from it.
        Counters {
            tail: h.tail.value.load(Ordering::Relaxed),
            head: h.head.value.load(Ordering::Relaxed),
            discarded: h.stats.discarded.load(Ordering::Relaxed),
            tombstones: h.stats.tombstones.load(Ordering::Relaxed),
            lagged: h.stats.lagged.load(Ordering::Relaxed),
            dead_claims: h.stats.dead_claims.load(Ordering::Relaxed),
            redelivered: h.stats.redelivered.load(Ordering::Relaxed),
            skipped: h.stats.skipped.load(Ordering::Relaxed),
            closed: h.control.closed.load(Ordering::Relaxed) != 0,
        }
    }

    /// A work queue's statistics, with the same accounting as
    /// [`crate::Queue::stats`]; `None` for other kinds.
    pub fn queue_stats(&self) -> Option<QueueStats> {
        if self.params.kind != QueueKind::WorkQueue {
            return None;
        }
        let c = self.counters();
        let pending = c.tombstones.saturating_sub(c.skipped);
        // Claimed but not published: not enqueued (yet, or ever).
        let unpublished = self
            .claims()
            .iter()
            .filter(|cl| cl.state == "claimed, not published")
            .count() as u64;
        Some(QueueStats {
            enqueued: c
                .tail
                .saturating_sub(c.tombstones)
                .saturating_sub(c.redelivered)
                .saturating_sub(unpublished),
            dequeued: c
                .head
                .saturating_sub(c.discarded)
                .saturating_sub(c.skipped)
                .saturating_sub(c.redelivered),
            discarded: c.discarded,
            tombstones: c.tombstones,
            dead_claims: c.dead_claims,
            redelivered: c.redelivered,
            len: c
                .tail
                .saturating_sub(c.head)
                .min(self.params.capacity)
                .saturating_sub(pending)
                .saturating_sub(unpublished),
            capacity: self.params.capacity,
        })
    }

    /// For a work queue, how many slots have a process sleeping on them
    /// (their stamp carries the waiter bit): consumers wait on the slot at
    /// the head, producers on the slot at the tail. `None` for other kinds.
    ///
    /// The work is bounded whatever the capacity the header claims: a queue
    /// of more than [`SCAN_LIMIT`] slots has only the slots around its head
    /// and its tail looked at (where sleepers wait), and the result says so.
    pub fn sleeping_slots(&self) -> Option<SlotScan> {
        if self.params.kind != QueueKind::WorkQueue {
            return None;
        }
        let cap = self.params.capacity;
        let mut indices: Vec<u64> = if cap <= SCAN_LIMIT {
            (0..cap).collect()
        } else {
            let c = self.counters();
            let half = SCAN_LIMIT / 4;
            [c.head, c.tail]
                .iter()
                .flat_map(|&pos| {
                    // Positions come from shared memory: any value, so wrap.
                    let start = pos.wrapping_sub(half);
                    (0..2 * half).map(move |i| start.wrapping_add(i) % cap)
                })
                .collect()
        };
        indices.sort_unstable();
        indices.dedup();
        let mut marked = 0;
        for &i in &indices {
            let off = self.params.slots_offset + i * self.params.slot_stride as u64;
            // SAFETY: i < capacity and validated: slots_offset + capacity *
            // stride <= mapping length, and the stride is a multiple of 64,
            // so each slot header is in bounds and aligned.
            let slot = unsafe { &*(self.seg.as_ptr().add(off as usize) as *const SlotHeader) };
            // Relaxed: a display snapshot.
            if slot.stamp.load(Ordering::Relaxed) & STAMP_WAITER != 0 {
                marked += 1;
            }
        }
        Some(SlotScan {
            marked,
            scanned: indices.len() as u64,
            capacity: cap,
        })
    }

    /// The processes in the segment's process table, and whether each is alive.
    pub fn attached(&self) -> Vec<Attached> {
        liveness::list(self.procs())
    }

    /// The kind-specific table (`aux_count` entries of
    /// [`crate::layout::AUX_ENTRY_SIZE`] bytes), copied out: the fan-out
    /// log's cursors. Decoding it is the kind's business. At most
    /// [`AUX_COPY_LIMIT`] entries are copied (the count comes from an
    /// untrusted header).
    pub fn aux_table(&self) -> Vec<u8> {
        let entries = (self.params.aux_count as usize).min(AUX_COPY_LIMIT);
        let len = entries * crate::layout::AUX_ENTRY_SIZE as usize;
        let mut out = vec![0u8; len];
        // SAFETY: validated: aux_offset + aux_count * AUX_ENTRY_SIZE =
        // slots_offset <= mapping length, and len covers at most aux_count
        // entries. A volatile-free byte copy of memory other processes may
        // be writing: the copy may be torn, which the decoder must tolerate
        // (it is untrusted anyway).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.seg.as_ptr().add(self.params.aux_offset as usize),
                out.as_mut_ptr(),
                len,
            )
        };
        out
    }

    /// Whether the creator is still running: `Some(true)` if a process with
    /// its pid exists and started no later than the segment was created,
    /// `Some(false)` if none does (or the pid was reused since), `None` if
    /// this cannot be told (no /proc).
    pub fn creator_alive(&self) -> Option<bool> {
        let pid = self.params.creator_pid;
        let Some(ticks) = liveness::start_time(pid) else {
            return if std::path::Path::new("/proc/self/stat").exists() {
                Some(false)
            } else {
                None
            };
        };
        let Some(started_ns) = start_time_unix_ns(ticks) else {
            return Some(true);
        };
        // The boot time is known to the second only: allow that much slack.
        Some(started_ns <= self.params.created_unix_ns.saturating_add(1_000_000_000))
    }

    /// Seconds since the segment was created (0 if the clock went back).
    pub fn age(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Duration::from_nanos(now.saturating_sub(self.params.created_unix_ns))
    }
}

/// A process start time in clock ticks since boot, as nanoseconds since the
/// Unix epoch (boot time from /proc/stat `btime`).
fn start_time_unix_ns(ticks: u64) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    Some(btime * 1_000_000_000 + ticks * (1_000_000_000 / hz as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Queue, QueueConfig};

    /// A POSIX name removed on drop, also when an assertion fails.
    struct Name(Target);

    impl std::ops::Deref for Name {
        type Target = Target;
        fn deref(&self) -> &Target {
            &self.0
        }
    }

    impl Drop for Name {
        fn drop(&mut self) {
            let _ = self.0.unlink_force();
        }
    }

    fn name(tag: &str) -> Name {
        Name(Target::Posix(format!(
            "shmq-unit-inspect-{tag}-{}",
            std::process::id()
        )))
    }

    #[test]
    fn reads_a_live_queue_without_registering() {
        let t = name("live");
        let q = Queue::create(&t, &QueueConfig::new(32, 4)).unwrap();
        q.enqueue_try(b"a").unwrap();
        q.enqueue_try(b"b").unwrap();
        let mut buf = [0u8; 32];
        q.dequeue_try(&mut buf).unwrap();
        let view = Inspector::open(&t).unwrap();
        let s = view.queue_stats().unwrap();
        assert_eq!((s.enqueued, s.dequeued, s.len, s.capacity), (2, 1, 1, 4));
        let scan = view.sleeping_slots().unwrap();
        assert_eq!((scan.marked, scan.scanned, scan.bounded()), (0, 4, false));
        assert_eq!(view.creator_alive(), Some(true));
        // Only the queue handle is listed: the inspector did not register.
        let me = std::process::id();
        assert_eq!(
            view.attached(),
            vec![Attached {
                pid: me,
                alive: true
            }]
        );
        t.unlink().unwrap();
    }

    #[test]
    fn tells_foreign_and_corrupt_segments_apart() {
        let foreign = name("foreign");
        drop(Segment::create(&foreign, 4096, 0o600).unwrap());
        // Zero-filled but smaller than any segment a creator makes.
        assert!(matches!(probe(&foreign), Ok(Probe::Foreign { .. })));
        let zeros = name("zeros");
        drop(Segment::create(&zeros, crate::segment::MIN_SEGMENT_SIZE, 0o600).unwrap());
        // Zero-filled, of a size a creator makes: could be a creator at work.
        assert!(matches!(probe(&zeros), Ok(Probe::Uninitialised)));
        let seg = Segment::open(&foreign).unwrap();
        // SAFETY: the segment is 4096 bytes; we write its first 8.
        unsafe { std::ptr::copy_nonoverlapping(b"NOTSHMQ!".as_ptr(), seg.as_ptr(), 8) };
        assert!(matches!(probe(&foreign), Ok(Probe::Foreign { .. })));
        assert!(matches!(
            Inspector::open(&foreign),
            Err(Error::Corrupt { .. })
        ));
        // Not shmq's: the checked unlink refuses it and leaves it.
        assert!(matches!(foreign.unlink(), Err(Error::Corrupt { .. })));
        assert!(foreign.exists());
        foreign.unlink_force().unwrap();

        let broken = name("broken");
        drop(Queue::create(&broken, &QueueConfig::new(8, 2)).unwrap());
        let seg = Segment::open(&broken).unwrap();
        // SAFETY: byte 16 (slot_size) is inside the 1024-byte header.
        unsafe { *seg.as_ptr().add(16) ^= 0xff };
        assert!(matches!(
            probe(&broken),
            Ok(Probe::Corrupt(Error::Corrupt { .. }))
        ));
        broken.unlink().unwrap();

        let tiny = name("tiny");
        drop(Segment::create(&tiny, 10, 0o600).unwrap());
        assert!(matches!(probe(&tiny), Ok(Probe::Foreign { .. })));

        assert!(matches!(
            probe(&name("missing")),
            Err(Error::NotFound { .. })
        ));
    }
}
