//! Ctrl-C handling: a flag that long-running loops poll, and the child
//! processes to kill at once so that nothing waits on them.
//!
//! The handler only does async-signal-safe things: atomic stores and
//! `kill(2)`. Cleanup (removing segments) happens on the normal path, when
//! the loops see the flag and return an error that drops their guards.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Child pids to SIGKILL on interrupt; 0 marks a free entry.
static CHILDREN: [AtomicI32; 64] = [FREE; 64];
#[allow(clippy::declare_interior_mutable_const)] // only used to initialise CHILDREN
const FREE: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Relaxed: a flag polled by loops; no data is published with it.
    INTERRUPTED.store(true, Ordering::Relaxed);
    for c in &CHILDREN {
        // Relaxed: a stale read only means a missed or redundant kill of a
        // child that the parent reaps anyway.
        let pid = c.load(Ordering::Relaxed);
        if pid > 0 {
            // kill(2) is async-signal-safe; nix's wrapper allocates nothing.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Installs the handler for SIGINT and SIGTERM (without SA_RESTART, so a
/// blocking read returns EINTR and its loop can look at the flag).
pub fn install() {
    let sa = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches atomics and calls kill(2), both
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &sa) };
    }
}

/// Whether SIGINT or SIGTERM arrived since [`install`].
#[inline]
pub fn interrupted() -> bool {
    // Relaxed: see on_signal.
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Fails with the "interrupted" exit code if a signal arrived.
pub fn check() -> anyhow::Result<()> {
    if interrupted() {
        return Err(crate::exit::fail(
            crate::exit::INTERRUPTED,
            "interrupted; removed the segments it created",
        ));
    }
    Ok(())
}

/// Lists `pid` for killing on interrupt; returns its entry for [`forget_child`].
pub fn watch_child(pid: u32) -> Option<usize> {
    for (i, c) in CHILDREN.iter().enumerate() {
        // Relaxed: the handler tolerates stale reads (see on_signal).
        if c.compare_exchange(0, pid as i32, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return Some(i);
        }
    }
    None
}

/// Removes a child listed by [`watch_child`].
pub fn forget_child(entry: Option<usize>) {
    if let Some(i) = entry {
        // Relaxed: see on_signal.
        CHILDREN[i].store(0, Ordering::Relaxed);
    }
}

/// Replaces the panic message and backtrace by one line (exit code 101):
/// a bug in the command line should still read like an error, not a dump.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("shmq: internal error{at}: {msg}");
    }));
}
