//! The cursor table of a log: a fixed array of 128-byte entries in the
//! segment's kind-specific (aux) table, chosen at creation.
//!
//! Entry 0 of the aux table is the table's control line ([`TableControl`]:
//! its lock, and the roster: how many entries are taken, which every
//! reliable publish reads to learn whether anyone is registered); entries
//! 1.. are cursors ([`CursorEntry`]). A cursor is either
//! *named* (durable: it outlives its subscriber and the processes, and is
//! found again by name) or *ephemeral* (a reliable-mode subscriber without a
//! name: it gates publishers while its process lives and is reaped when it
//! dies).
//!
//! Changes to the table (create, attach, remove, register) are rare and take
//! the table lock: a word holding the holder's pid and start time, so a lock
//! left by a dead process is recognised (by pid and start time, not by a
//! timeout) and taken over. Every change writes an entry's fields first and
//! its `state` last, with Release, so an entry whose writer died half-way is
//! still free. The hot words are read without the lock: publishers read
//! `state` and `committed` to find the slowest cursor; subscribers store
//! their own `committed` and `read`.

use std::time::{Duration, Instant};

use crate::layout::{ProcEntry, AUX_ENTRY_SIZE, STAMP_WAITER};
use crate::liveness;
use crate::region::Region;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait;

use super::CursorError;

/// Longest cursor name, in bytes.
pub const MAX_CURSOR_NAME: usize = 64;

/// Entry state: free for the taking.
const FREE: u32 = 0;
/// Entry state: a durable named cursor.
const NAMED: u32 = 1;
/// Entry state: the cursor of a live reliable-mode subscriber without a name.
const EPHEMERAL: u32 = 2;

/// How long a table operation waits for the lock held by a live process.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The control line of the cursor table (aux entry 0): its first 64 bytes
/// hold the words written often (the lock, the spinner count), its second
/// the roster, written only when the table changes and read by every
/// reliable-mode publish.
#[repr(C, align(128))]
pub(crate) struct TableControl {
    busy: ControlBusy,
    roster: Roster,
}

/// The often-written half of [`TableControl`].
#[repr(C, align(64))]
struct ControlBusy {
    /// 0 when free; else the holder's `pid << 32 | (start_time & 0xffff_ffff)`.
    lock: AtomicU64,
    /// Blocked subscribers spinning now (see `crate::wait`, "How long to
    /// spin"). A hint: a process killed while spinning leaves its count
    /// behind, and `spin_beat` tells that count apart from live spinners'.
    spinners: AtomicU32,
    /// CLOCK_MONOTONIC nanoseconds of the last start of a spinner, or of a
    /// live spinner's refresh ([`SPIN_REFRESH`]). A count not touched
    /// for [`SPIN_STALE`] is a dead spinner's and is cleared
    /// ([`Table::spinners_now`]). 0 in a log made before it existed.
    spin_beat: AtomicU64,
}

/// A spinner refreshes `spin_beat` at least this often (in its own time;
/// see [`Table::spin_refresh`]).
pub(crate) const SPIN_REFRESH: Duration = Duration::from_millis(1);

/// A spinner count not touched for this long is a dead process's: no live
/// spinner goes this long without a refresh unless it has been kept off a
/// CPU for that long, and then it does not compete for one.
const SPIN_STALE: Duration = Duration::from_millis(100);

/// The rarely-written half of [`TableControl`]: who is registered.
#[repr(C, align(64))]
struct Roster {
    /// The number of taken entries (named or ephemeral), recounted under
    /// the lock after every change of the table. A hint, never trusted
    /// alone: 0 is confirmed by a scan of the entries before a publisher is
    /// told nobody is registered ([`Table::connected`]); a lock holder that
    /// died between a change and its recount leaves it stale until the next
    /// change, or until a publisher's scan finds no cursor
    /// ([`Table::gate`]); a log made by a library that predates it holds 0.
    /// Publishers waiting for a cursor sleep on it (futex), woken when it
    /// leaves 0.
    registered: AtomicU32,
    /// The committed position of the last cursor freed when the table
    /// became empty: at or above every publisher's cached gate (every
    /// registered cursor's committed position is, and it only grows), so a
    /// reliable-mode subscriber registering at [`Start::Oldest`] on an empty
    /// table starts here, never at a position a stale cache lets a
    /// publisher overwrite.
    ///
    /// [`Start::Oldest`]: super::Start::Oldest
    floor: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<TableControl>() == AUX_ENTRY_SIZE as usize);

/// One cursor (aux entries 1..). Fields other than `state` are meaningful
/// only while `state` is not [`FREE`]; they are written before `state`.
#[repr(C, align(128))]
pub(crate) struct CursorEntry {
    /// [`FREE`], [`NAMED`] or [`EPHEMERAL`]; stored last, with Release.
    state: AtomicU32,
    /// Length of the name in bytes (at most [`MAX_CURSOR_NAME`]).
    name_len: AtomicU32,
    /// Pid of the process whose subscriber is attached; 0 when none.
    owner_pid: AtomicU32,
    /// Named cursors: the pid of the last attached subscriber if its
    /// process died while attached (reaped), 0 otherwise. Display only: the
    /// cursor keeps its position and gates publishers until someone resumes
    /// it or removes it.
    dead_owner: AtomicU32,
    /// Start time of `owner_pid` (tells a reused pid apart).
    owner_start: AtomicU64,
    /// `position << 1 | STAMP_WAITER`: the committed position (the next
    /// sequence number to read after a restart or rollback). Only grows
    /// while the entry is taken. Publishers of a reliable log are gated by
    /// the smallest one, and sleep on it with the waiter bit set.
    committed: AtomicU64,
    /// The position the attached subscriber has read up to (statistics).
    read: AtomicU64,
    /// The name's bytes, little-endian packed, zero-padded.
    name: [AtomicU64; MAX_CURSOR_NAME / 8],
}

const _: () = assert!(core::mem::size_of::<CursorEntry>() == AUX_ENTRY_SIZE as usize);

/// What a cursor looks like from outside (statistics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorInfo {
    /// The cursor's name; `None` for the cursor of an unnamed reliable-mode subscriber.
    pub name: Option<String>,
    /// The committed position: the next sequence number to read after a
    /// restart or a rollback. Reliable-mode publishers are gated by it.
    pub position: u64,
    /// The position the attached subscriber has read up to (equal to
    /// `position` when no subscriber is attached or it has committed
    /// everything), as the subscriber last showed it: it stores it every
    /// [`cursor_batch`](crate::Subscriber::cursor_batch) positions and
    /// whenever it finds nothing new, so it may be that many behind.
    pub read: u64,
    /// Messages published after `position`: how far behind the cursor is.
    pub lag: u64,
    /// The process whose subscriber is attached, if any.
    pub owner: Option<u32>,
    /// Whether that process is alive (false when there is none; a dead
    /// owner of an unnamed cursor is reaped, of a named one detached).
    pub owner_alive: bool,
    /// Named cursors: the pid of a subscriber that died while attached. The
    /// cursor is durable: it keeps its position, and in reliable mode it
    /// gates publishers until a subscriber resumes it or it is removed
    /// ([`crate::Log::remove_cursor`], `shmq cursor rm`).
    pub dead_owner: Option<u32>,
}

/// The start time of this process (see [`liveness::own_start_time`]).
fn own_start() -> u64 {
    liveness::own_start_time()
}

/// This process as a lock word.
fn lock_word() -> u64 {
    (std::process::id() as u64) << 32 | (own_start() & 0xffff_ffff)
}

/// Whether the holder of a lock word is still running *and attached to
/// this log*: a word naming a live process that is not in the segment's
/// process table (garbage, or a foreign process) does not hold the lock.
fn holder_alive(word: u64, procs: &[ProcEntry]) -> bool {
    let pid = (word >> 32) as u32;
    let attached = procs.iter().any(|e| {
        // Relaxed: a snapshot; an entry is judged by its own identity words.
        e.pid.load(Ordering::Relaxed) == pid && !liveness::judge_entry(e).is_dead()
    });
    attached && !liveness::judge_low32(pid, word as u32).is_dead()
}

/// Checks a cursor name: 1 to [`MAX_CURSOR_NAME`] bytes, no NUL.
pub(crate) fn check_name(name: &str) -> Result<(), CursorError> {
    let bad = |d: &str| {
        Err(CursorError::InvalidName {
            detail: format!("{name:?} {d}"),
        })
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_CURSOR_NAME {
        return bad(&format!(
            "is {} bytes, more than {MAX_CURSOR_NAME}",
            name.len()
        ));
    }
    if name.contains('\0') {
        return bad("contains a NUL byte");
    }
    Ok(())
}

/// Checks the durable cursors a creator declares for a table of `entries`
/// cursor entries: each a valid name, no two alike, no more than fit.
pub(crate) fn check_declared(names: &[String], entries: usize) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if let Err(CursorError::InvalidName { detail }) = check_name(name) {
            return Err(format!("durable cursor {detail}"));
        }
        if names[..i].contains(name) {
            return Err(format!("durable cursor {name:?} is declared twice"));
        }
    }
    if names.len() > entries {
        return Err(format!(
            "{} durable cursors declared, but the log has room for {entries} cursors \
             (raise the cursor count)",
            names.len()
        ));
    }
    Ok(())
}

/// Writes the durable cursors `names` (checked by [`check_declared`]) at
/// position 0 into the cursor table of a log being created, and counts
/// them in the roster. The creator does this before it publishes the
/// header, so no publish can precede them.
///
/// # Safety
/// `aux` points to the aux table of a fresh, zeroed segment that no other
/// thread or process can see yet: `aux_count > names.len()` entries of
/// [`AUX_ENTRY_SIZE`] bytes, 128-byte aligned.
pub(crate) unsafe fn declare(aux: *mut u8, aux_count: u32, names: &[String]) {
    debug_assert!((aux_count as usize) > names.len());
    // SAFETY: as the caller guarantees; nobody else sees the table yet.
    let table = unsafe { Table::at(aux, aux_count, &[]) };
    for (e, name) in table.entries.iter().zip(names) {
        Table::fill(e, NAMED, name, 0, 0, 0);
    }
    // Relaxed: published with the header, by the creator's Release store
    // of its magic.
    table
        .control
        .roster
        .registered
        .store(names.len() as u32, Ordering::Relaxed);
}

/// The table lock, released on drop.
pub(crate) struct TableLock<'a> {
    word: &'a AtomicU64,
    me: u64,
}

impl Drop for TableLock<'_> {
    fn drop(&mut self) {
        // SYNC(table-lock): Release, pairs with the Acquire CAS in `lock`: our
        // entry changes are visible to the next holder.
        let _ = self
            .word
            .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

/// The cursor table of one mapped log.
pub(crate) struct Table<'a> {
    control: &'a TableControl,
    entries: &'a [CursorEntry],
    procs: &'a [ProcEntry],
}

impl<'a> Table<'a> {
    /// The table inside `region` (aux entry 0 is the control line).
    pub(crate) fn new(region: &'a Region) -> Table<'a> {
        let count = region.params().aux_count;
        debug_assert!(count >= 1, "validated when the log was attached");
        // SAFETY: the region's aux table holds aux_count entries inside its
        // validated mapping, aligned as `at` requires (see there).
        unsafe { Table::at(region.aux_ptr(), count, region.procs()) }
    }

    /// The table at `base`, of `count` aux entries (the control line and
    /// `count - 1` cursors).
    ///
    /// # Safety
    /// `base` points to `count` entries of [`AUX_ENTRY_SIZE`] bytes that
    /// stay mapped for `'a`, 128-byte aligned (the aux table's offset is a
    /// multiple of 128 from a page-aligned base).
    unsafe fn at(base: *mut u8, count: u32, procs: &'a [ProcEntry]) -> Table<'a> {
        // SAFETY: in bounds and aligned (caller); the structs hold atomics
        // only, which tolerate sharing with other processes.
        unsafe {
            Table {
                control: &*(base as *const TableControl),
                entries: std::slice::from_raw_parts(
                    base.add(AUX_ENTRY_SIZE as usize) as *const CursorEntry,
                    (count as usize).saturating_sub(1),
                ),
                procs,
            }
        }
    }

    /// How many subscribers spin now, for a waiter choosing its spin (see
    /// [`ControlBusy::spinners`]). A count that nobody has touched for
    /// [`SPIN_STALE`] was left by spinners that died: it is cleared, so
    /// that a subscriber killed while it spun does not stop the others
    /// from spinning for good. `now` is [`wait::mono_ns`], read by the
    /// caller.
    pub(crate) fn spinners_now(&self, now: u64) -> u32 {
        let busy = &self.control.busy;
        // Relaxed (here and in the other spinner calls): a hint for spin
        // budgets; no data is published through these words.
        let n = busy.spinners.load(Ordering::Relaxed);
        if n == 0 {
            return 0;
        }
        let beat = busy.spin_beat.load(Ordering::Relaxed);
        if now.saturating_sub(beat) < SPIN_STALE.as_nanos() as u64 {
            return n;
        }
        // Only the count we judged: a spinner that started meanwhile keeps
        // its own (the exchange fails and we count it next time).
        let _ = busy
            .spinners
            .compare_exchange(n, 0, Ordering::Relaxed, Ordering::Relaxed);
        0
    }

    /// Counts the caller among the spinners, at `now` ([`wait::mono_ns`]).
    pub(crate) fn spin_start(&self, now: u64) {
        let busy = &self.control.busy;
        busy.spinners.fetch_add(1, Ordering::Relaxed);
        busy.spin_beat.store(now, Ordering::Relaxed);
    }

    /// Says the caller, counted by [`Self::spin_start`], still spins at
    /// `now`.
    pub(crate) fn spin_refresh(&self, now: u64) {
        self.control.busy.spin_beat.store(now, Ordering::Relaxed);
    }

    /// The spinner count as stored, and its beat moved `by` into the past
    /// (tests: a count left by a process killed that long ago).
    #[cfg(test)]
    pub(crate) fn age_spinners(&self, by: Duration) -> u32 {
        let busy = &self.control.busy;
        let beat = busy.spin_beat.load(Ordering::Relaxed);
        busy.spin_beat
            .store(beat.saturating_sub(by.as_nanos() as u64), Ordering::Relaxed);
        busy.spinners.load(Ordering::Relaxed)
    }

    /// Stops counting the caller among the spinners (saturating: the word
    /// is shared memory, and may have been cleared as stale). The beat is
    /// left as it is: the spinners still counted refresh it themselves.
    pub(crate) fn spin_stop(&self) {
        let _ =
            self.control
                .busy
                .spinners
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
    }

    /// Number of cursor entries.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Takes the table lock, taking it over from a dead holder; waits at
    /// most [`LOCK_WAIT`] for a live one.
    pub(crate) fn lock(&self) -> Result<TableLock<'a>, CursorError> {
        let word = &self.control.busy.lock;
        let me = lock_word();
        let deadline = Instant::now() + LOCK_WAIT;
        let mut spins = 0u32;
        loop {
            // Relaxed: only a guess; the CAS decides.
            let cur = word.load(Ordering::Relaxed);
            // A holder is checked for liveness only after a while: reading
            // /proc costs more than a short critical section.
            let free = cur == 0 || (spins > 0 && spins % 16 == 0 && !holder_alive(cur, self.procs));
            // SYNC(table-lock): Acquire, pairs with the Release in `TableLock::drop`.
            if free
                && word
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(TableLock { word, me });
            }
            if Instant::now() >= deadline {
                return Err(CursorError::Busy {
                    pid: (cur >> 32) as u32,
                });
            }
            spins = spins.wrapping_add(1);
            if spins < 8 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Takes the table lock if it is free right now.
    pub(crate) fn try_lock(&self) -> Option<TableLock<'a>> {
        let word = &self.control.busy.lock;
        let me = lock_word();
        // SYNC(table-lock): Acquire, pairs with the Release in `TableLock::drop`.
        word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| TableLock { word, me })
    }

    fn name_of(e: &CursorEntry) -> Option<String> {
        // Relaxed: stable under the table lock; a snapshot otherwise.
        let len = e.name_len.load(Ordering::Relaxed) as usize;
        if len == 0 || len > MAX_CURSOR_NAME {
            return None;
        }
        let mut bytes = [0u8; MAX_CURSOR_NAME];
        for (chunk, word) in bytes.chunks_mut(8).zip(&e.name) {
            // Relaxed: as above.
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        Some(String::from_utf8_lossy(&bytes[..len]).into_owned())
    }

    fn name_is(e: &CursorEntry, name: &str) -> bool {
        Self::name_of(e).as_deref() == Some(name)
    }

    /// The index of the named cursor `name`. Call under the lock.
    pub(crate) fn find(&self, _lock: &TableLock<'_>, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| {
            // Relaxed: the lock orders every change of the table.
            e.state.load(Ordering::Relaxed) == NAMED && Self::name_is(e, name)
        })
    }

    /// Frees the cursors of unnamed subscribers whose process died, and the
    /// attachments of dead processes to named cursors. Call under the lock.
    pub(crate) fn reap(&self, lock: &TableLock<'_>) -> usize {
        let mut reaped = 0;
        for e in self.entries {
            // Relaxed: the lock orders every change of the table.
            let state = e.state.load(Ordering::Relaxed);
            let pid = e.owner_pid.load(Ordering::Relaxed);
            if state == FREE
                || pid == 0
                || liveness::is_alive(pid, e.owner_start.load(Ordering::Relaxed))
            {
                continue;
            }
            if state == EPHEMERAL {
                self.release(lock, e);
                reaped += 1;
            } else {
                // Relaxed: only the lock holder reads it to decide.
                e.dead_owner.store(pid, Ordering::Relaxed);
                e.owner_pid.store(0, Ordering::Relaxed);
            }
        }
        reaped
    }

    /// Takes a free entry for a cursor at `pos`, reaping dead ones if none is free.
    fn take(
        &self,
        lock: &TableLock<'_>,
        state: u32,
        name: &str,
        pos: u64,
        owned: bool,
    ) -> Result<usize, CursorError> {
        // Relaxed: the lock orders every change of the table.
        let free = |t: &Self| {
            t.entries
                .iter()
                .position(|e| e.state.load(Ordering::Relaxed) == FREE)
        };
        let index = match free(self) {
            Some(i) => i,
            None => {
                self.reap(lock);
                free(self).ok_or(CursorError::TableFull {
                    capacity: self.capacity(),
                })?
            }
        };
        let (pid, start) = if owned {
            (std::process::id(), own_start())
        } else {
            (0, 0)
        };
        Self::fill(&self.entries[index], state, name, pos, pid, start);
        self.recount(lock);
        Ok(index)
    }

    /// Writes a free entry as a cursor at `pos`, its `state` last. Call
    /// under the lock, or on a table nobody else can see yet.
    fn fill(e: &CursorEntry, state: u32, name: &str, pos: u64, pid: u32, start: u64) {
        let mut bytes = [0u8; MAX_CURSOR_NAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        // Relaxed (all fields): published by the Release store of `state` below.
        for (word, chunk) in e.name.iter().zip(bytes.chunks(8)) {
            word.store(
                u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")),
                Ordering::Relaxed,
            );
        }
        e.name_len.store(name.len() as u32, Ordering::Relaxed);
        e.owner_start.store(start, Ordering::Relaxed);
        e.owner_pid.store(pid, Ordering::Relaxed);
        e.read.store(pos, Ordering::Relaxed);
        e.committed.store(pos << 1, Ordering::Relaxed);
        // SYNC(cursor-publish): Release, pairs with the Acquire loads of
        // `state` in `gate` and `list`: the position is visible first.
        e.state.store(state, Ordering::Release);
    }

    /// Recounts the taken entries into the roster after a change; wakes
    /// the publishers waiting for a cursor when the table stops being
    /// empty. Returns the count.
    fn recount(&self, _lock: &TableLock<'_>) -> u32 {
        let n = self
            .entries
            .iter()
            // Relaxed: the lock orders every change of the table.
            .filter(|e| e.state.load(Ordering::Relaxed) != FREE)
            .count() as u32;
        let word = &self.control.roster.registered;
        // Relaxed: a hint (see `Roster::registered`); publishers confirm 0
        // by scanning the entries, which carry their own Release.
        let old = word.swap(n, Ordering::Relaxed);
        if old == 0 && n != 0 {
            wait::futex_wake_u32(word);
        }
        n
    }

    /// Creates the named cursor `name` at `pos`. Call under the lock.
    pub(crate) fn create_named(
        &self,
        lock: &TableLock<'_>,
        name: &str,
        pos: u64,
    ) -> Result<usize, CursorError> {
        check_name(name)?;
        if self.find(lock, name).is_some() {
            return Err(CursorError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        self.take(lock, NAMED, name, pos, false)
    }

    /// Registers an unnamed reliable-mode subscriber at `pos`, owned by this process.
    pub(crate) fn register_ephemeral(
        &self,
        lock: &TableLock<'_>,
        pos: u64,
    ) -> Result<usize, CursorError> {
        self.take(lock, EPHEMERAL, "", pos, true)
    }

    /// Attaches this process's subscriber to the named cursor at `index`.
    /// Call under the lock.
    pub(crate) fn attach(
        &self,
        _lock: &TableLock<'_>,
        index: usize,
        name: &str,
    ) -> Result<(), CursorError> {
        let e = &self.entries[index];
        // Relaxed: the lock orders every change of the table.
        let pid = e.owner_pid.load(Ordering::Relaxed);
        if pid != 0 && liveness::is_alive(pid, e.owner_start.load(Ordering::Relaxed)) {
            return Err(CursorError::InUse {
                name: name.to_owned(),
                pid,
            });
        }
        e.owner_start.store(own_start(), Ordering::Relaxed);
        e.owner_pid.store(std::process::id(), Ordering::Relaxed);
        e.dead_owner.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Detaches this process's subscriber from the named cursor at `index`.
    pub(crate) fn detach(&self, index: usize) {
        // Relaxed: a single word; attachers re-check it under the lock.
        let _ = self.entries[index].owner_pid.compare_exchange(
            std::process::id(),
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Frees an entry and wakes the publishers sleeping on it; when the
    /// table is empty afterwards, keeps its committed position as the
    /// roster's floor (see [`Roster::floor`]). Call under the lock.
    fn release(&self, lock: &TableLock<'_>, e: &CursorEntry) {
        // Relaxed: the lock orders every change of the table.
        let last = e.committed.load(Ordering::Relaxed) >> 1;
        // SYNC(cursor-publish): Release, pairs with the Acquire loads of `state`.
        e.state.store(FREE, Ordering::Release);
        // Relaxed: informational once free.
        e.owner_pid.store(0, Ordering::Relaxed);
        e.dead_owner.store(0, Ordering::Relaxed);
        e.name_len.store(0, Ordering::Relaxed);
        Self::wake_gated(&e.committed, 0);
        if self.recount(lock) == 0 {
            // Relaxed: read under the lock by the next registration (and
            // for display); the lock orders it.
            self.control.roster.floor.store(last, Ordering::Relaxed);
        }
    }

    /// Stores `value` into a `committed` word and wakes the publishers that
    /// sleep on it, if any.
    fn wake_gated(word: &AtomicU64, value: u64) {
        // SYNC(gate-advance): Release, pairs with the Acquire loads of
        // `committed` in `gate` (the subscriber has finished reading the
        // positions below `value` before a publisher reuses their slots). The
        // swap also reads the waiter bit that a sleeping publisher set with
        // its CAS in `wait::sleep_on_stamp` (both are RMWs of this word: no
        // lost wakeup).
        let old = word.swap(value, Ordering::Release);
        if old & STAMP_WAITER != 0 {
            wait::wake_all(word);
        }
    }

    /// Frees the unnamed subscriber's entry at `index`.
    pub(crate) fn unregister_ephemeral(&self, lock: &TableLock<'_>, index: usize) {
        let e = &self.entries[index];
        // Relaxed: the lock orders every change of the table.
        if e.state.load(Ordering::Relaxed) == EPHEMERAL
            && e.owner_pid.load(Ordering::Relaxed) == std::process::id()
        {
            self.release(lock, e);
        }
    }

    /// Removes the named cursor `name` unless a live subscriber holds it.
    pub(crate) fn remove(&self, lock: &TableLock<'_>, name: &str) -> Result<(), CursorError> {
        let index = self.find(lock, name).ok_or_else(|| CursorError::NotFound {
            name: name.to_owned(),
        })?;
        let e = &self.entries[index];
        // Relaxed: the lock orders every change of the table.
        let pid = e.owner_pid.load(Ordering::Relaxed);
        if pid != 0 && liveness::is_alive(pid, e.owner_start.load(Ordering::Relaxed)) {
            return Err(CursorError::InUse {
                name: name.to_owned(),
                pid,
            });
        }
        self.release(lock, e);
        Ok(())
    }

    /// The committed position of the entry at `index`.
    pub(crate) fn committed(&self, index: usize) -> u64 {
        // SYNC(gate-advance): Acquire, pairs with the Release swap in `wake_gated`.
        self.entries[index].committed.load(Ordering::Acquire) >> 1
    }

    /// Stores the committed position of the entry at `index` (this
    /// process's subscriber) and wakes publishers gated on it.
    pub(crate) fn set_committed(&self, index: usize, pos: u64) {
        Self::wake_gated(&self.entries[index].committed, pos << 1);
    }

    /// Stores how far the subscriber at `index` has read (statistics).
    #[inline]
    pub(crate) fn set_read(&self, index: usize, pos: u64) {
        // Relaxed: a statistic, read by `list` only.
        self.entries[index].read.store(pos, Ordering::Relaxed);
    }

    /// The slowest cursor: its committed word and that word's value, or
    /// `None` when no cursor is registered. Lock-free.
    pub(crate) fn slowest(&self) -> Option<(&'a AtomicU64, u64)> {
        let mut best: Option<(&'a AtomicU64, u64)> = None;
        for e in self.entries {
            // SYNC(cursor-publish): Acquire, pairs with the Release store of
            // `state` in `take`: the initial position is visible.
            let state = e.state.load(Ordering::Acquire);
            if state != NAMED && state != EPHEMERAL {
                continue;
            }
            // SYNC(gate-advance): Acquire, pairs with the Release swap in `wake_gated`.
            let raw = e.committed.load(Ordering::Acquire);
            if best.is_none_or(|(_, b)| raw >> 1 < b >> 1) {
                best = Some((&e.committed, raw));
            }
        }
        best
    }

    /// The cursor that gates publishers now (the slowest), described. Lock-free.
    pub(crate) fn slowest_info(&self, tail: u64) -> Option<CursorInfo> {
        let raw = self.slowest()?.1;
        self.list(tail).into_iter().find(|c| c.position == raw >> 1)
    }

    /// The smallest committed position over every cursor, or `None`. Lock-free.
    pub(crate) fn gate(&self) -> Option<u64> {
        let gate = self.slowest().map(|(_, raw)| raw >> 1);
        if gate.is_none() {
            self.nobody_seen();
        }
        gate
    }

    /// The scan found no cursor: a roster count that says otherwise was
    /// left by a lock holder that died between a change and its recount.
    /// Fix it now rather than at the next change of the table, so that
    /// publishers report [`NotConnected`] from their next publish on (a
    /// gated publisher scans once per lap of the ring, so a stale count
    /// lets at most one lap through).
    ///
    /// [`NotConnected`]: crate::SendError::NotConnected
    #[cold]
    fn nobody_seen(&self) {
        // Relaxed: a hint (see `Roster::registered`).
        if self.control.roster.registered.load(Ordering::Relaxed) != 0 {
            if let Some(lock) = self.try_lock() {
                self.recount(&lock);
            }
        }
    }

    /// Sets the roster count as a lock holder that died before its recount
    /// would leave it (tests).
    #[cfg(test)]
    pub(crate) fn set_roster_count(&self, n: u32) {
        self.control.roster.registered.store(n, Ordering::Relaxed);
    }

    /// The roster count as stored: a hint, which a lock holder that died
    /// before its recount leaves stale until `gate` finds nobody.
    #[inline]
    pub(crate) fn roster_count(&self) -> u32 {
        // Relaxed: a hint; nothing is read through it.
        self.control.roster.registered.load(Ordering::Relaxed)
    }

    /// Every cursor, with its lag behind `tail`. Lock-free snapshot.
    pub(crate) fn list(&self, tail: u64) -> Vec<CursorInfo> {
        let mut out = Vec::new();
        for e in self.entries {
            // SYNC(cursor-publish): Acquire, pairs with the Release store in `take`.
            let state = e.state.load(Ordering::Acquire);
            if state != NAMED && state != EPHEMERAL {
                continue;
            }
            // Relaxed: a snapshot for display.
            let position = e.committed.load(Ordering::Relaxed) >> 1;
            let pid = e.owner_pid.load(Ordering::Relaxed);
            let read = if pid == 0 {
                position
            } else {
                e.read.load(Ordering::Relaxed).max(position)
            };
            out.push(CursorInfo {
                name: if state == NAMED {
                    Some(Self::name_of(e).unwrap_or_default())
                } else {
                    None
                },
                position,
                read,
                lag: tail.saturating_sub(position),
                owner: (pid != 0).then_some(pid),
                owner_alive: pid != 0
                    && liveness::is_alive(pid, e.owner_start.load(Ordering::Relaxed)),
                dead_owner: match e.dead_owner.load(Ordering::Relaxed) {
                    0 => None,
                    dead => Some(dead),
                },
            });
        }
        out
    }

    /// Whether any cursor is registered. Lock-free, and cheap while one is:
    /// the roster's count is read first, and only a count of 0 is
    /// confirmed by a scan of the entries (a count left stale, or a table
    /// written by a library that predates the count, is recounted).
    #[inline]
    pub(crate) fn connected(&self) -> bool {
        // Relaxed: a hint (see `Roster::registered`); 0 is confirmed below.
        if self.control.roster.registered.load(Ordering::Relaxed) != 0 {
            return true;
        }
        self.connected_slow()
    }

    #[cold]
    fn connected_slow(&self) -> bool {
        if self.slowest().is_none() {
            return false;
        }
        // Registered, but not counted: fix the count for the next publish.
        if let Some(lock) = self.try_lock() {
            self.recount(&lock);
        }
        true
    }

    /// Sleeps up to `timeout` while the roster counts nobody (a publisher
    /// waiting for a cursor); woken when the first one registers, or the
    /// log closes. The caller re-checks after any return.
    pub(crate) fn wait_connected(&self, timeout: Duration) {
        let word = &self.control.roster.registered;
        // Relaxed: only compared; the futex re-checks the word atomically.
        if word.load(Ordering::Relaxed) != 0 {
            // Counted, though the caller found nobody: someone registered
            // just now (return: the caller retries), or the count is stale
            // (a lock holder died between a change and its recount):
            // recount, so the wait below sleeps instead of spinning.
            match self.try_lock() {
                Some(lock) if self.recount(&lock) == 0 => {}
                Some(_) => return,
                None => {
                    std::thread::sleep(timeout.min(Duration::from_millis(1)));
                    return;
                }
            }
        }
        wait::futex_wait_u32(word, 0, Some(timeout));
    }

    /// The roster's registered count (tests make it stale).
    #[cfg(test)]
    pub(crate) fn registered_word(&self) -> &'a AtomicU32 {
        &self.control.roster.registered
    }

    /// Where a reliable-mode cursor registering at `Start::Oldest` on an
    /// empty table starts (see [`Roster::floor`]), at most `tail`.
    pub(crate) fn floor(&self, tail: u64) -> u64 {
        // Relaxed: written under the lock, which callers that register hold.
        self.control.roster.floor.load(Ordering::Relaxed).min(tail)
    }

    /// Wakes every publisher sleeping on a cursor (the log was closed).
    pub(crate) fn wake_all(&self) {
        wait::futex_wake_u32(&self.control.roster.registered);
        for e in self.entries {
            // SYNC(close-wake): SeqCst, pairs with the sleeper's SeqCst CAS of
            // the waiter bit: either we see the bit, or it sees `closed`.
            if e.committed.load(Ordering::SeqCst) & STAMP_WAITER != 0 {
                let old = e.committed.fetch_and(!STAMP_WAITER, Ordering::SeqCst);
                if old & STAMP_WAITER != 0 {
                    wait::wake_all(&e.committed);
                }
            }
        }
    }
}
