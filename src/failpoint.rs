//! Deterministic failpoints: kill or stop this process at a named step of a
//! protocol (claim, write, publish, release), to test recovery from every
//! window, not only the ones random kills happen to hit.
//!
//! Armed by the environment variable `SHMQ_FAILPOINT=NAME:ACTION[:NTH]`,
//! read once when the first segment is attached: at the `NTH` (default 1st)
//! time this process passes the step `NAME`, it does `ACTION`: `kill`
//! (SIGKILL itself, as a crash at that instruction would) or `stop`
//! (SIGSTOP itself: a live process paused mid-step, which must never be
//! taken for dead). Unarmed, a failpoint costs one load of a static that
//! never changes, and a predicted branch.
//!
//! The steps are listed in [`NAMES`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every failpoint in the engine, in protocol order per operation.
pub const NAMES: &[&str] = &[
    // work queue, producing
    "queue-produce-claimed",
    "queue-publish",
    "queue-produce-published",
    // work queue, enqueue_shift
    "queue-shift-claimed-oldest",
    "queue-shift-claimed-tail",
    // work queue, consuming
    "queue-consume-claimed",
    "queue-consume-copied",
    // work queue, crash recovery redelivering a dead consumer's message
    "queue-redeliver-claimed",
    // work queue, zero-copy: a reservation claimed / being committed, a
    // consume guard being released
    "queue-reserve-claimed",
    "queue-reserve-committing",
    "queue-consume-releasing",
    // work queue, batches: a range claimed, each message of it published
    // (single-producer batches: each but the first), the first slot of a
    // single-producer batch published, a consumer range claimed
    "queue-batch-claimed",
    "queue-batch-published-one",
    "queue-batch-stamped",
    "queue-batch-consume-claimed",
    // log, publishing
    "log-publish-claimed",
    "log-publish-taken",
    "log-publish-written",
];

/// Whether a failpoint is armed in this process (Relaxed: set once, before
/// any engine step runs in a segment).
pub(crate) static ARMED: AtomicBool = AtomicBool::new(false);

struct Plan {
    name: String,
    stop: bool,
    nth: u64,
    hits: AtomicU64,
}

static PLAN: OnceLock<Option<Plan>> = OnceLock::new();

/// Reads `SHMQ_FAILPOINT` (once).
pub(crate) fn arm_from_env() {
    let plan = PLAN.get_or_init(|| {
        let spec = std::env::var("SHMQ_FAILPOINT").ok()?;
        let mut parts = spec.split(':');
        let name = parts.next()?.to_owned();
        let stop = parts.next() == Some("stop");
        let nth = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        Some(Plan {
            name,
            stop,
            nth,
            hits: AtomicU64::new(0),
        })
    });
    if plan.is_some() {
        ARMED.store(true, Ordering::Relaxed);
    }
}

/// Called at step `name` while armed.
#[cold]
#[inline(never)]
pub(crate) fn hit(name: &str) {
    let Some(Some(plan)) = PLAN.get() else {
        return;
    };
    if plan.name != name || plan.hits.fetch_add(1, Ordering::Relaxed) + 1 != plan.nth {
        return;
    }
    let sig = if plan.stop {
        libc::SIGSTOP
    } else {
        libc::SIGKILL
    };
    // SAFETY: raise has no memory preconditions.
    unsafe { libc::raise(sig) };
}

/// A failpoint named `$name` (one of [`NAMES`]).
macro_rules! failpoint {
    ($name:literal) => {
        if $crate::failpoint::ARMED.load(::std::sync::atomic::Ordering::Relaxed) {
            $crate::failpoint::hit($name);
        }
    };
}
