//! The process table: attached handles, and the thread lanes through which
//! claims are announced so that a claim left half-done by a dead process can
//! be told from one that a live process is still working on.
//!
//! # Lanes and claims
//!
//! A thread that claims positions of a multi-producer queue or a log through
//! a handle owns a *lane*: an entry of the segment's process table (taken on
//! first use, cached in a thread-local, given back when the thread exits or
//! the handle is dropped). Before the CAS that claims position `p`, the
//! thread writes `tag | p` into its lane's `claim` word; after the claimed
//! step is complete (published, released) it writes 0. The claiming CAS is a
//! release operation on a word every claimer RMWs, so anyone who Acquires
//! that word and sees `p` claimed also sees the announcement.
//!
//! Recovery of a stuck position `p` rests on one rule ([`Table::named_by_live`]):
//! *if `p` was claimed, its step is not complete, and no lane of a process
//! that is alive (or that cannot be judged) names `p`, then its owner is
//! dead.* The owner named `p` from before its claim until the step was
//! complete, and lanes are only ever written by their own thread. Stale
//! announcements (a thread that lost the CAS for `p`, then moved on) only
//! delay recovery while their process lives. A recoverer then changes the
//! stuck slot with a CAS from the stuck state, so recovery of one step
//! happens once, and a recoverer announces its own claims the same way, so
//! a recoverer that dies is recovered from too.
//!
//! A batch claims a range of positions with one CAS: it writes the range's
//! length into `claim_len` (Release) before the start position into
//! `claim`, and resets it (Release) after clearing `claim`. A reader Acquires
//! `claim`, then `claim_len`: either the length belongs to that claim, or it
//! was written after the claim was cleared, and then the reader also sees
//! the claimed step complete, so any recovery it attempts fails its CAS or
//! its re-check (the same argument as for a stale announcement).
//!
//! A zero-copy guard (a reservation or a consumption that outlives the call)
//! announces its claim in a lane of its own, taken from the handle's pool
//! rather than the thread's lane, so that the thread may claim again while
//! the guard lives, and the guard may move to another thread: a lane is
//! written by one holder at a time (its thread, or the guard holding it).
//!
//! Liveness is [`crate::liveness`]'s: pid, start time and pid namespace.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;

use crate::layout::{ProcEntry, CLAIM_POS, ENTRY_LANE, PID_REAPING, SLEEP_SLOT};
use crate::liveness::{self, Life};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A token naming a table entry and the generation it had when taken: dead
/// once the entry is reused or its owner dies.
pub(crate) fn token(index: usize, gen: u64) -> u64 {
    ((gen & ((1 << 48) - 1)) << 16) | (index as u64 + 1)
}

/// Takes a free entry for this process (`kind`: handle or lane); reaps dead
/// entries if none is free. `None` when every entry belongs to a live process.
pub(crate) fn take(table: &[ProcEntry], kind: u32, on_reap: &dyn Fn(&ProcEntry)) -> Option<usize> {
    let pid = std::process::id();
    for pass in 0..3 {
        for (i, e) in table.iter().enumerate() {
            // Relaxed: a guess; the CAS decides.
            let cur = e.pid.load(Ordering::Relaxed);
            if cur != 0 {
                // Pass 1 reaps dead entries that name no claim (a claim is
                // evidence for recovery); pass 2 any dead entry.
                let reapable = pass > 0
                    && cur != PID_REAPING
                    && (pass == 2 || e.claim.load(Ordering::Relaxed) == 0)
                    && liveness::judge_entry(e).is_dead();
                if !(reapable && reap(e, cur, on_reap)) {
                    continue;
                }
            }
            // SYNC(proc-claim): Acquire, pairs with the Release that freed
            // the entry (`free`, `reap`): its old words are cleared first.
            if e.pid
                .compare_exchange(0, pid, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: published to recoverers by the Release of every
                // later claiming CAS (see the module doc); to readers of the
                // table for display, a torn view is harmless.
                e.start_time
                    .store(liveness::own_start_time(), Ordering::Relaxed);
                e.pid_ns
                    .store(liveness::own_pid_namespace(), Ordering::Relaxed);
                e.kind.store(kind, Ordering::Relaxed);
                e.tid
                    .store(nix::unistd::gettid().as_raw() as u32, Ordering::Relaxed);
                // SYNC(proc-claim): AcqRel, pairs with the Acquire load of
                // gen in `token_alive`: a token of the entry's previous owner
                // no longer matches once this bump is seen.
                e.gen.fetch_add(1, Ordering::AcqRel);
                return Some(i);
            }
        }
    }
    None
}

/// Frees an entry of a dead owner whose pid word reads `pid`: clears its
/// words (after `on_reap` has undone what it counted elsewhere, such as
/// sleepers) and frees it. False if another reaper or owner got there first.
fn reap(e: &ProcEntry, pid: u32, on_reap: &dyn Fn(&ProcEntry)) -> bool {
    // SYNC(proc-reap): Acquire, pairs with the owner's Release stores; only
    // one reaper wins, and no new owner can take the entry meanwhile.
    if e.pid
        .compare_exchange(pid, PID_REAPING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    on_reap(e);
    clear(e);
    // SYNC(proc-claim): Release, pairs with the Acquire CAS in `take`.
    e.pid.store(0, Ordering::Release);
    true
}

fn clear(e: &ProcEntry) {
    // Relaxed: published by the Release store of pid that follows.
    e.claim.store(0, Ordering::Relaxed);
    e.claim_len.store(0, Ordering::Relaxed);
    e.sleeping_on.store(0, Ordering::Relaxed);
    e.spsc_sleeping.store(0, Ordering::Relaxed);
    e.kind.store(0, Ordering::Relaxed);
}

/// Frees this process's entry.
pub(crate) fn free(e: &ProcEntry) {
    // Relaxed: read first by us only.
    if e.pid.load(Ordering::Relaxed) != std::process::id() {
        return; // a forked child's copy of its parent's handle
    }
    clear(e);
    // SYNC(proc-claim): Release, pairs with the Acquire CAS in `take`.
    let _ = e
        .pid
        .compare_exchange(std::process::id(), 0, Ordering::Release, Ordering::Relaxed);
}

/// Reaps every entry of a dead owner (for `shmq` and for tests); returns how many.
pub(crate) fn reap_dead(table: &[ProcEntry], on_reap: &dyn Fn(&ProcEntry)) -> usize {
    table
        .iter()
        .filter(|e| {
            // Relaxed: a guess; `reap`'s CAS decides.
            let pid = e.pid.load(Ordering::Relaxed);
            pid != 0
                && pid != PID_REAPING
                && liveness::judge_entry(e).is_dead()
                && reap(e, pid, on_reap)
        })
        .count()
}

/// What [`named_by_live`] found among the lanes naming a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// A lane of a live (or unjudgeable) process names it: wait.
    Live,
    /// Only lanes of dead processes name it, or none: its owner is dead.
    Dead,
}

/// Longest range a claim may name; a longer `claim_len` (garbage) is cut
/// to this many positions.
pub(crate) const MAX_CLAIM_LEN: u64 = 1 << 20;

/// The claim a lane announces now: its tag, first position and length
/// (at least 1), or `None`. See the module doc for why the two loads suffice.
#[inline]
pub(crate) fn claim_of(e: &ProcEntry) -> Option<(u64, u64, u64)> {
    // SYNC(claim-announce): Acquire, pairs with the Release store that
    // clears a claim after its step completed: if we see it cleared, we
    // see the completion, and our recovery CAS fails.
    let claim = e.claim.load(Ordering::Acquire);
    if claim == 0 {
        return None;
    }
    // SYNC(claim-announce): Acquire, pairs with the Release stores of
    // claim_len (before a range's claim, and the reset after its clear).
    let len = e.claim_len.load(Ordering::Acquire).clamp(1, MAX_CLAIM_LEN);
    Some((claim & !CLAIM_POS, claim & CLAIM_POS, len))
}

/// Whether any lane of a live process names one of `positions` in its
/// claim (whatever the tag; a range names each of its positions). Read
/// after observing the position claimed (an Acquire load of the claimed
/// word): see the module doc.
pub(crate) fn named_by_live(table: &[ProcEntry], positions: &[u64]) -> Named {
    for e in table {
        if let Some((_, start, len)) = claim_of(e) {
            if positions.iter().any(|&p| p >= start && p - start < len)
                && !liveness::judge_entry(e).is_dead()
            {
                return Named::Live;
            }
        }
    }
    Named::Dead
}

/// Whether any lane of a live process names `r` or an earlier lap of the
/// same slot (`q <= r`, `q = r mod capacity`): for the log, whose stalled
/// writers keep a slot that a later lap's publisher bumped to `r` while
/// their lane still names their own, older sequence number.
pub(crate) fn slot_named_by_live(table: &[ProcEntry], r: u64, capacity: u64) -> Named {
    for e in table {
        if let Some((_, start, len)) = claim_of(e) {
            // The first position of the range in r's slot (if any is <= r).
            let names = start <= r && (r - start) % capacity.max(1) < len;
            if names && !liveness::judge_entry(e).is_dead() {
                return Named::Live;
            }
        }
    }
    Named::Dead
}

/// The claims of dead processes with tag `tag`: (first position, length).
pub(crate) fn dead_claims(table: &[ProcEntry], tag: u64) -> Vec<(u64, u64)> {
    table
        .iter()
        .filter_map(|e| {
            let (t, start, len) = claim_of(e)?;
            (t == tag && liveness::judge_entry(e).is_dead()).then_some((start, len))
        })
        .collect()
}

/// The slots (`SLEEP_SLOT`) or cursors (`SLEEP_CURSOR`) someone sleeps on.
pub(crate) fn sleeping_on(table: &[ProcEntry], tag: u64) -> Vec<u64> {
    let mut v: Vec<u64> = table
        .iter()
        .filter_map(|e| {
            // SYNC(close-wake): SeqCst, pairs with the sleeper's SeqCst store
            // before it sets its waiter bit (see crate::wait): either the
            // closer sees it here, or the sleeper sees `closed`.
            let on = e.sleeping_on.load(Ordering::SeqCst);
            (on != 0 && on & !CLAIM_POS == tag).then(|| (on & CLAIM_POS).saturating_sub(1))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

// ---- thread lanes ----

/// The lanes that the threads of this process took for one handle.
///
/// Shared (by `Arc`) between the handle's region and the thread-locals of
/// the threads that use it: a thread that exits gives its lanes back, unless
/// the handle is gone (then the handle gave them back already).
pub(crate) struct LaneBook {
    id: u64,
    table: *const ProcEntry,
    len: usize,
    state: Mutex<BookState>,
}

struct BookState {
    /// False once the handle was dropped: `table` may be unmapped.
    mapped: bool,
    lanes: Vec<(ThreadId, u32, usize)>,
}

// SAFETY: `table` points into a mapping that stays mapped while `mapped`
// is true (checked under the mutex); the entries are atomics.
unsafe impl Send for LaneBook {}
// SAFETY: as above.
unsafe impl Sync for LaneBook {}

/// Bumped in the child after every fork: a child must not use its parent's lanes.
static FORK_EPOCH: AtomicU32 = AtomicU32::new(0);

extern "C" fn after_fork_in_child() {
    // Relaxed: read by the same (only) thread of the child.
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn fork_epoch() -> u32 {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // No crate wraps pthread_atfork (nix does not): raw libc.
        // SAFETY: registers a handler that only bumps an atomic, which is
        // safe in the child of a fork.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    // Relaxed: only this process's own writes matter (the fork handler runs
    // in the thread that reads it next).
    FORK_EPOCH.load(Ordering::Relaxed)
}

#[derive(Clone, Copy)]
struct Cached {
    book: u64,
    epoch: u32,
    index: u32,
}

const NO_CACHE: Cached = Cached {
    book: 0,
    epoch: 0,
    index: 0,
};

/// The lanes a thread holds, given back when it exits.
struct Held(Vec<(Weak<LaneBook>, usize)>);

impl Drop for Held {
    fn drop(&mut self) {
        let me = std::thread::current().id();
        for (book, index) in self.0.drain(..) {
            if let Some(book) = book.upgrade() {
                book.give_back(me, index);
            }
        }
    }
}

thread_local! {
    static CACHE: Cell<[Cached; 4]> = const { Cell::new([NO_CACHE; 4]) };
    static NEXT: Cell<usize> = const { Cell::new(0) };
    static HELD: RefCell<Held> = const { RefCell::new(Held(Vec::new())) };
}

impl LaneBook {
    /// A book for a handle on `table` (`len` entries, mapped until [`LaneBook::close`]).
    pub(crate) fn new(table: &[ProcEntry]) -> Arc<LaneBook> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        Arc::new(LaneBook {
            // Relaxed: uniqueness only.
            id: IDS.fetch_add(1, Ordering::Relaxed),
            table: table.as_ptr(),
            len: table.len(),
            state: Mutex::new(BookState {
                mapped: true,
                lanes: Vec::new(),
            }),
        })
    }

    fn table(&self) -> &[ProcEntry] {
        // SAFETY: valid while mapped; callers hold a borrow of the region
        // (which keeps it mapped) or checked `mapped` under the mutex.
        unsafe { std::slice::from_raw_parts(self.table, self.len) }
    }

    /// The calling thread's lane, taking one on first use; `None` when the
    /// table is full of live entries.
    #[inline]
    pub(crate) fn lane(self: &Arc<Self>, on_reap: &dyn Fn(&ProcEntry)) -> Option<&ProcEntry> {
        let epoch = fork_epoch();
        let hit = CACHE.with(|c| {
            c.get()
                .iter()
                .find(|e| e.book == self.id && e.epoch == epoch)
                .map(|e| e.index as usize)
        });
        let index = match hit {
            Some(i) => i,
            None => self.lane_slow(epoch, on_reap)?,
        };
        Some(&self.table()[index])
    }

    #[cold]
    fn lane_slow(self: &Arc<Self>, epoch: u32, on_reap: &dyn Fn(&ProcEntry)) -> Option<usize> {
        let me = std::thread::current().id();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let index = match st.lanes.iter().find(|l| l.0 == me && l.1 == epoch) {
            Some(l) => l.2,
            None => {
                let i = take(self.table(), ENTRY_LANE, on_reap)?;
                st.lanes.push((me, epoch, i));
                let weak = Arc::downgrade(self);
                // A thread being torn down has no thread-locals left: its
                // lane is then given back with the handle.
                let _ = HELD.try_with(|h| h.borrow_mut().0.push((weak, i)));
                i
            }
        };
        CACHE.with(|c| {
            let mut arr = c.get();
            let slot = NEXT.with(|n| {
                let s = n.get();
                n.set((s + 1) % arr.len());
                s
            });
            arr[slot] = Cached {
                book: self.id,
                epoch,
                index: index as u32,
            };
            c.set(arr);
        });
        Some(index)
    }

    fn give_back(&self, thread: ThreadId, index: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.mapped {
            return;
        }
        if let Some(pos) = st.lanes.iter().position(|l| l.0 == thread && l.2 == index) {
            st.lanes.swap_remove(pos);
            free(&self.table()[index]);
        }
    }

    /// Gives back every lane (the handle is being dropped; the mapping is
    /// still there). Later thread exits find the book closed.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for &(_, _, index) in &st.lanes {
            free(&self.table()[index]);
        }
        st.lanes.clear();
        st.mapped = false;
    }
}

/// A claim announced in a lane; cleared (Release) when dropped, so every
/// return path clears it.
pub(crate) struct Announce<'a> {
    lane: Option<&'a ProcEntry>,
    /// Whether a range was announced (its length is reset on clear).
    ranged: Cell<bool>,
}

impl<'a> Announce<'a> {
    /// A guard on `lane` (none: in-process heap regions may go without).
    #[inline]
    pub(crate) fn new(lane: Option<&'a ProcEntry>) -> Announce<'a> {
        Announce {
            lane,
            ranged: Cell::new(false),
        }
    }

    /// Announces `tag | pos` before the CAS that claims `pos`.
    #[inline]
    pub(crate) fn set(&self, tag: u64, pos: u64) {
        if let Some(e) = self.lane {
            if self.ranged.get() {
                self.ranged.set(false);
                // SYNC(claim-announce): Release, as in `Drop` (a single
                // claim after a range on the same guard).
                e.claim_len.store(0, Ordering::Release);
            }
            // SYNC(claim-announce): Release, pairs with the Acquire load in
            // `named_by_live`: a recoverer that sees this announcement sees
            // every step this thread completed before it (a slot it released
            // since, say), so it cannot act on a stale view of that slot
            // (found by the loom model in tests/model_recovery.rs). The
            // claiming CAS that follows publishes it to recoverers that
            // Acquire the claimed word.
            e.claim.store(tag | (pos & CLAIM_POS), Ordering::Release);
        }
    }

    /// Announces the `len` positions from `pos` (a batch) before the CAS
    /// that claims them all.
    #[inline]
    pub(crate) fn set_range(&self, tag: u64, pos: u64, len: u64) {
        if let Some(e) = self.lane {
            self.ranged.set(true);
            // SYNC(claim-announce): Release, pairs with the Acquire load of
            // claim_len in `claim_of`: written before the claim it belongs to.
            e.claim_len.store(len, Ordering::Release);
            // SYNC(claim-announce): Release, as in `set`.
            e.claim.store(tag | (pos & CLAIM_POS), Ordering::Release);
        }
    }

    /// Clears the announcement now (the claimed step is complete); the
    /// guard may announce again.
    #[inline]
    pub(crate) fn clear(&self) {
        if let Some(e) = self.lane {
            // SYNC(claim-announce): Release, pairs with the Acquire load in
            // `named_by_live`: the completed step is visible first.
            e.claim.store(0, Ordering::Release);
            if self.ranged.get() {
                self.ranged.set(false);
                // SYNC(claim-announce): Release, pairs with the Acquire load
                // in `claim_of`: a reader that sees this reset (paired with
                // a stale claim) sees the range's step complete.
                e.claim_len.store(0, Ordering::Release);
            }
        }
    }

    /// Records what the thread is about to sleep on (0: awake).
    pub(crate) fn sleeping(&self, tag_index: u64) {
        if let Some(e) = self.lane {
            // SYNC(close-wake): SeqCst, pairs with the closer's SeqCst load
            // in `sleeping_on`.
            e.sleeping_on.store(tag_index, Ordering::SeqCst);
        }
    }

    /// Whether the thread has a lane (its sleep can be found by `close`).
    pub(crate) fn has_lane(&self) -> bool {
        self.lane.is_some()
    }
}

impl Drop for Announce<'_> {
    #[inline]
    fn drop(&mut self) {
        self.clear();
    }
}

/// A `sleeping_on` value for slot `index`.
pub(crate) fn sleep_slot(index: u64) -> u64 {
    SLEEP_SLOT | (index + 1)
}

/// Whether the owner of the entry a token names is alive (or unjudgeable).
/// A token naming no entry, or an entry since reused, is dead.
pub(crate) fn token_alive(table: &[ProcEntry], token: u64) -> Option<(u32, Life)> {
    let index = (token & 0xffff) as usize;
    let gen = token >> 16;
    if index == 0 || index > table.len() {
        return None;
    }
    let e = &table[index - 1];
    // SYNC(proc-claim): Acquire, pairs with the AcqRel bump in `take`.
    if e.gen.load(Ordering::Acquire) & ((1 << 48) - 1) != gen {
        return None;
    }
    // Relaxed: identity of an entry whose generation matched.
    let pid = e.pid.load(Ordering::Relaxed);
    Some((pid, liveness::judge_entry(e)))
}

/// The generation of entry `index` now (for tokens of entries we own).
pub(crate) fn gen_of(table: &[ProcEntry], index: usize) -> u64 {
    // Relaxed: our own entry's generation, set by us.
    table[index].gen.load(Ordering::Relaxed) & ((1 << 48) - 1)
}
