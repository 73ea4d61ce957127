//! Who is attached to a segment, and whether they are still alive.
//!
//! Each handle registers its process in the segment's process table (pid plus
//! start time, so a reused pid is told apart) and clears its entry on drop.
//! Entries of processes that died without clearing are reaped when the table
//! fills up, and shown as dead by `shmq stat`.

use crate::layout::ProcEntry;
use crate::sync::Ordering;

/// The start time of process `pid`, in clock ticks since boot
/// (`/proc/PID/stat`, field 22); `None` if it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still running.
pub fn is_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// This process's start time, cached per pid: a child forked without exec
/// has a new pid and must not inherit its parent's identity.
pub(crate) fn own_start_time() -> u64 {
    static CACHE: std::sync::Mutex<(u32, u64)> = std::sync::Mutex::new((0, 0));
    let pid = std::process::id();
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.0 != pid {
        *cache = (pid, start_time(pid).unwrap_or(0));
    }
    cache.1
}

/// Claims a free entry for this process; reaps dead entries if none is free.
/// Returns `None` when the table is full of live processes (the handle still
/// works, it is just not listed).
pub(crate) fn register(table: &[ProcEntry]) -> Option<usize> {
    let pid = std::process::id();
    let start = own_start_time();
    for pass in 0..2 {
        for (i, entry) in table.iter().enumerate() {
            let cur = entry.pid.load(Ordering::Relaxed);
            let free =
                cur == 0 || (pass == 1 && !is_alive(cur, entry.start_time.load(Ordering::Relaxed)));
            if free
                // SYNC(proc-claim): AcqRel, pairs with the Release store in
                // `unregister` and with other claimers of the same entry.
                && entry.pid.compare_exchange(cur, pid, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                // Relaxed: start_time is informational; readers tolerate a
                // momentary mismatch (they see a "dead" entry for a moment).
                entry.start_time.store(start, Ordering::Relaxed);
                entry.intent.store(0, Ordering::Relaxed);
                return Some(i);
            }
        }
    }
    None
}

/// Clears this process's entry.
pub(crate) fn unregister(entry: &ProcEntry) {
    // SYNC(proc-claim): Release, pairs with the AcqRel claim in `register`.
    let _ = entry
        .pid
        .compare_exchange(std::process::id(), 0, Ordering::Release, Ordering::Relaxed);
}

/// One process listed in a segment's process table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its process id.
    pub pid: u32,
    /// Whether it is still running (by pid and start time).
    pub alive: bool,
}

/// The processes listed in a table.
pub(crate) fn list(table: &[ProcEntry]) -> Vec<Attached> {
    table
        .iter()
        .filter_map(|e| {
            let pid = e.pid.load(Ordering::Relaxed);
            (pid != 0).then(|| Attached {
                pid,
                alive: is_alive(pid, e.start_time.load(Ordering::Relaxed)),
            })
        })
        .collect()
}
