//! Who is attached to a segment, and whether they are still alive: the one
//! liveness mechanism every part of shmq uses (process table, thread lanes,
//! single-producer roles, log cursors, the cursor table's lock, sleepers and
//! claims).
//!
//! # The mechanism: pid, start time and pid namespace
//!
//! Every entry of the process table names its owner by pid, the process's
//! start time (clock ticks since boot, `/proc/PID/stat` field 22) and its pid
//! namespace (the inode of `/proc/self/ns/pid`). [`judge`] says:
//!
//! - **dead** when the pid does not exist (`/proc/PID` is gone and
//!   `kill(pid, 0)` says `ESRCH`), when it exists with another start time
//!   (the pid was reused), or when it is a zombie (`Z`) or being reaped
//!   (`X`): a zombie has run its last instruction, so whatever it left
//!   half-done will never be finished;
//! - **alive** when the pid exists with the same start time and is not a
//!   zombie, *whatever its state*: a process stopped by SIGSTOP, a debugger
//!   or a long page-in is alive, and is never taken for dead;
//! - **unknown** when it cannot tell: the entry belongs to another pid
//!   namespace (its pid means nothing here), `/proc` is not mounted, or the
//!   process exists but its `/proc` entry is hidden (`hidepid`). Unknown is
//!   treated as alive everywhere: nothing of an unknown process is ever
//!   recovered, and `shmq stat` says "unknown".
//!
//! Why this and not a lock the kernel drops on exit: the kernel's robust
//! futex list belongs to the C library (glibc keeps its own per thread, and
//! a second registration would silently replace it), an OFD lock needs a file
//! descriptor that a SysV segment does not have, and a pidfd cannot be shared
//! through memory. Pid plus start time needs nothing but `/proc`, works on
//! every backing, and the start time tells a reused pid apart (a pid cannot
//! cycle through the whole pid space within one 10 ms clock tick).
//!
//! What it cannot see: processes in *different* pid namespaces sharing a
//! segment (containers sharing `/dev/shm` or an IPC namespace without
//! sharing a pid namespace). Their entries are "unknown": they work, but a
//! crash of theirs is not recovered by processes of another namespace. Run
//! such containers with a shared pid namespace (`--pid=host`, or a pod's
//! shared process namespace) to get crash recovery across them.

use crate::layout::ProcEntry;
use crate::sync::Ordering;

/// What [`judge`] found out about the owner of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Running (or stopped, or being debugged): never recovered from.
    Alive,
    /// Gone, a zombie, or its pid now names another process.
    Dead,
    /// Cannot be told from here (another pid namespace, no `/proc`): treated as alive.
    Unknown,
}

impl Life {
    /// Whether the owner must be treated as dead (only when known to be).
    pub fn is_dead(self) -> bool {
        self == Life::Dead
    }
}

/// What `/proc/PID/stat` says of a pid.
enum Stat {
    Missing,
    Unreadable,
    Found { start: u64, state: u8 },
}

fn read_stat(pid: u32) -> Stat {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The command name (field 2) may hold spaces and parentheses;
            // fields resume after its last ')'.
            let Some(close) = stat.rfind(')') else {
                return Stat::Unreadable;
            };
            let mut fields = stat[close + 1..].split_whitespace();
            let state = fields.next().and_then(|s| s.bytes().next());
            // Field 3 is the state; field 22 the start time (19 further on).
            let start = fields.nth(18).and_then(|s| s.parse().ok());
            match (state, start) {
                (Some(state), Some(start)) => Stat::Found { start, state },
                _ => Stat::Unreadable,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stat::Missing,
        Err(_) => Stat::Unreadable,
    }
}

/// Whether a pid exists at all, by `kill(pid, 0)` (a pid we may not signal exists too).
fn pid_exists(pid: u32) -> bool {
    // Signal 0 only checks existence and permission; pid is a positive
    // pid_t (checked by the caller), so this is never kill(-1, 0).
    let pid = nix::unistd::Pid::from_raw(pid as libc::pid_t);
    nix::sys::signal::kill(pid, None) != Err(nix::errno::Errno::ESRCH)
}

/// The start time of process `pid`, in clock ticks since boot
/// (`/proc/PID/stat`, field 22); `None` if it cannot be read.
pub fn start_time(pid: u32) -> Option<u64> {
    match read_stat(pid) {
        Stat::Found { start, .. } => Some(start),
        _ => None,
    }
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid`), 0 if unknown.
pub fn own_pid_namespace() -> u64 {
    static NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NS.get_or_init(|| {
        std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|p| {
                let s = p.to_string_lossy().into_owned();
                s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
            })
            .unwrap_or(0)
    })
}

/// Judges the owner named by `pid`, `start` (its start time) and `ns` (its
/// pid namespace inode, 0 if it did not know its own).
pub fn judge(pid: u32, start: u64, ns: u64) -> Life {
    if pid == 0 || pid > i32::MAX as u32 {
        // No process has this pid: garbage, or nobody.
        return Life::Dead;
    }
    let own_ns = own_pid_namespace();
    if ns != 0 && own_ns != 0 && ns != own_ns {
        return Life::Unknown;
    }
    match read_stat(pid) {
        Stat::Found { start: s, state } => {
            if s != start || state == b'Z' || state == b'X' {
                Life::Dead
            } else {
                Life::Alive
            }
        }
        Stat::Missing if !pid_exists(pid) => Life::Dead,
        // It exists but /proc hides it (hidepid), or /proc is not mounted.
        Stat::Missing | Stat::Unreadable => Life::Unknown,
    }
}

/// [`judge`] for an owner recorded with only the low 32 bits of its start
/// time (the log's cursor-table lock word).
pub fn judge_low32(pid: u32, start_low: u32) -> Life {
    if pid == 0 || pid > i32::MAX as u32 {
        return Life::Dead;
    }
    match read_stat(pid) {
        Stat::Found { start, state } => {
            if start as u32 != start_low || state == b'Z' || state == b'X' {
                Life::Dead
            } else {
                Life::Alive
            }
        }
        Stat::Missing if !pid_exists(pid) => Life::Dead,
        Stat::Missing | Stat::Unreadable => Life::Unknown,
    }
}

/// Whether the process `pid` that started at `start` (in this pid namespace)
/// must be treated as alive: [`judge`] said alive or unknown.
pub fn is_alive(pid: u32, start: u64) -> bool {
    !judge(pid, start, 0).is_dead()
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

/// Judges the owner of a process-table entry (dead if the entry is free).
pub(crate) fn judge_entry(entry: &ProcEntry) -> Life {
    // SYNC(proc-claim): Acquire, pairs with the Release that freed the
    // entry. Identity words are written by a new owner right after its CAS
    // on pid: a torn view judges a just-taken entry "dead" while its claim
    // word is still 0 (it names nothing), or judges it by its new owner.
    let pid = entry.pid.load(Ordering::Acquire);
    judge(
        pid,
        entry.start_time.load(Ordering::Relaxed),
        entry.pid_ns.load(Ordering::Relaxed),
    )
}

/// One process listed in a segment's process table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its process id.
    pub pid: u32,
    /// Whether it is still running (by pid, start time and pid namespace;
    /// a process that cannot be judged from here counts as alive).
    pub alive: bool,
}

/// The processes listed in a table, one row per process.
pub(crate) fn list(table: &[ProcEntry]) -> Vec<Attached> {
    let mut out: Vec<Attached> = Vec::new();
    for e in table {
        // Relaxed: a snapshot for display.
        let pid = e.pid.load(Ordering::Relaxed);
        if pid == 0 || out.iter().any(|a| a.pid == pid) {
            continue;
        }
        out.push(Attached {
            pid,
            alive: !judge_entry(e).is_dead(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn this_process_is_alive_and_garbage_is_dead() {
        let me = std::process::id();
        let start = own_start_time();
        assert_eq!(judge(me, start, own_pid_namespace()), Life::Alive);
        assert_eq!(judge(me, start, 0), Life::Alive, "namespace unknown");
        assert_eq!(judge(me, start + 1, 0), Life::Dead, "a reused pid");
        assert_eq!(judge(0, 0, 0), Life::Dead);
        assert_eq!(judge(u32::MAX, 0, 0), Life::Dead, "never kill(-1, 0)");
        assert_eq!(judge(i32::MAX as u32 + 1, 0, 0), Life::Dead);
        assert_eq!(
            judge(me, start, own_pid_namespace().wrapping_add(1)),
            Life::Unknown,
            "another pid namespace cannot be judged"
        );
        assert_eq!(judge_low32(me, start as u32), Life::Alive);
        assert_eq!(judge_low32(me, start as u32 ^ 1), Life::Dead);
    }

    #[test]
    fn a_zombie_is_dead_and_a_stopped_process_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let start = start_time(pid).expect("its start time");
        use nix::sys::signal::{kill, Signal};
        let child_pid = nix::unistd::Pid::from_raw(pid as i32);
        kill(child_pid, Signal::SIGSTOP).expect("stop our own child");
        let stopped = |p: u32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s[s.rfind(')').unwrap() + 2..].starts_with('T'))
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stopped(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(judge(pid, start, 0), Life::Alive, "stopped is alive");
        kill(child_pid, Signal::SIGKILL).expect("kill our own child");
        // Not reaped yet: a zombie.
        let deadline = Instant::now() + Duration::from_secs(10);
        while judge(pid, start, 0) != Life::Dead && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(judge(pid, start, 0), Life::Dead, "a zombie is dead");
        assert!(child.try_wait().unwrap().is_some() || child.wait().is_ok());
        assert_eq!(judge(pid, start, 0), Life::Dead, "a reaped process is dead");
    }
}
