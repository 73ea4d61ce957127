//! Waiting: a bounded spin, then a sleep on a futex word in the segment.
//!
//! The futex word is the low half of a slot's stamp. A sleeper first sets the
//! stamp's [`STAMP_WAITER`] bit with a CAS, re-checks, then sleeps while the
//! word still holds the value it saw. Whoever next changes that slot's stamp
//! (a producer publishing, a consumer releasing) does it with a swap and sees
//! the bit in the old value: only then does it make the wake syscall. Both
//! sides are read-modify-writes of the same word, so there is no lost wakeup,
//! and a bit left by a dead sleeper is cleared by the next swap.
//!
//! The futex is shared (no FUTEX_PRIVATE_FLAG): the kernel keys it by the
//! backing object and offset, so processes wake each other.
//!
//! # How long to spin (the log's subscribers)
//!
//! A spin pays off only when the message arrives before the spin ends and
//! when the spinner does not take the core the publisher needs. A blocking
//! log subscriber with [`WaitStrategy::SpinThenSleep`] therefore spins for
//! at most its configured `spin`, and less when either fails, in the manner
//! of Aeron's backoff idle strategies and of adaptive mutexes
//! ([`SpinBudget`]):
//!
//! - *Cores.* Spinning subscribers of a log count themselves in the log's
//!   segment. A subscriber that would be one spinner too many for the CPUs
//!   this process may run on (all but one, left to the publisher) does not
//!   spin at all: it sleeps at once and is woken by the publish. So four
//!   blocking subscribers on two cores make one spinner, not four. A
//!   count left by a subscriber killed while it spun is cleared once
//!   nobody has touched it for 100 ms (live spinners refresh it every
//!   millisecond), so a crash does not stop the others spinning for good.
//! - *Arrivals.* Each subscriber measures how long its waits last (the
//!   interval between messages, as it sees it). A wait that outlasted the
//!   spin halves the budget (spinning did not help); a wait that ended
//!   within it sets the budget to twice its length (spinning would have
//!   caught it), never above `spin`. A feed that ticks every millisecond
//!   stops costing its subscribers 50 us of spinning per tick.
//!
//! - *Sleepers.* On a single-publisher log every sleeping subscriber
//!   sleeps on one word that the publisher bumps when it wakes them. A
//!   spinner that caught its message by spinning while that word moved
//!   (the same publish woke sleeping subscribers) was holding a core those
//!   subscribers needed to run: it stops spinning for its next
//!   [`YIELD_WAITS`] waits and sleeps with them, then tries a spin again.
//!   So one eager subscriber does not turn four sleeping ones into
//!   subscribers queued behind it for a CPU.
//!
//! - *Dozing.* When a reliable single-publisher log's subscribers and its
//!   publisher outnumber the CPUs, and messages come within [`DOZE_GAP`]
//!   of each other but no faster than [`DOZE_MAX_RATE`] (a doze would
//!   then leave the publisher gated behind a sleeper nobody wakes), a
//!   subscriber whose spin is over does not count itself a sleeper for the
//!   publisher to wake: it dozes, a timed sleep of [`DOZE`] plus the
//!   thread's timer slack (50 us by default), and looks again. Waking
//!   several sleeping processes per message costs each a context switch
//!   per message, which on few CPUs is the whole budget
//!   (about 3 us per subscriber and message on the 2-CPU machine that set
//!   these numbers); a doze finds every message that came meanwhile, so
//!   four subscribers of a feed at 100 k msgs/s spend about half the CPU
//!   per message and wait for a CPU far less, for a latency of about one
//!   doze. A wait that finds nothing for [`DOZE_GAP`] sleeps until woken,
//!   so an idle subscriber still costs nothing.
//!
//! [`WaitStrategy::BusySpin`] never sleeps and ignores all four: it is the
//! explicit choice of a caller who has a core to give.

use std::time::{Duration, Instant};

use crate::layout::STAMP_WAITER;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How a blocking call waits.
///
/// The default spins for up to 50 us, then sleeps; a log subscriber adapts
/// that spin to the cores and to how often messages arrive (see the module
/// docs of `shmq::wait`: it spins less, or not at all, when spinning would
/// not help).
///
/// # Examples
/// ```
/// use shmq::WaitStrategy;
/// use std::time::Duration;
/// let lowest_latency = WaitStrategy::BusySpin;
/// let default = WaitStrategy::default();
/// assert_eq!(default, WaitStrategy::SpinThenSleep { spin: Duration::from_micros(50) });
/// # let _ = lowest_latency;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Never sleep: spin until the condition or the deadline. Lowest latency;
    /// burns a core, so use no more busy-spinning threads than cores.
    BusySpin,
    /// Spin for `spin`, then sleep on the futex until woken or the deadline.
    SpinThenSleep {
        /// How long to spin before sleeping.
        spin: Duration,
    },
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenSleep {
            spin: Duration::from_micros(50),
        }
    }
}

/// The number of CPUs this process may spin on without taking the last
/// one (left to a publisher), at least 1. Read once.
pub(crate) fn spin_cores() -> u32 {
    static CORES: AtomicU32 = AtomicU32::new(0);
    // Relaxed: a cached constant; racing initialisers store the same value.
    let c = CORES.load(Ordering::Relaxed);
    if c != 0 {
        return c;
    }
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .saturating_sub(1)
        .clamp(1, u32::MAX as usize) as u32;
    // Relaxed: as above.
    CORES.store(n, Ordering::Relaxed);
    n
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process of the
/// machine, unlike an `Instant`, which cannot be stored. Constant under
/// loom, whose models must not branch on the time.
pub(crate) fn mono_ns() -> u64 {
    if cfg!(loom) {
        return 0;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists
    // on every Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A waiter's learned spin budget (see the module doc, "How long to spin").
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinBudget {
    /// Nanoseconds; `u64::MAX` until the first wait was measured.
    ns: u64,
    /// Waits left without any spin, after spinning was seen to keep
    /// sleeping subscribers from a CPU.
    yielding: u32,
    /// How long the last wait lasted, ns (`u64::MAX`: none yet).
    last_wait: u64,
    /// When the last wait started ([`mono_ns`]) and the position then.
    started: (u64, u64),
    /// Whether messages came at most at [`DOZE_MAX_RATE`] between the
    /// last wait's start and this one's.
    moderate: bool,
}

/// The longest interval between messages at which a crowded subscriber
/// dozes rather than sleeps until woken (module docs, "Dozing").
pub(crate) const DOZE_GAP: Duration = Duration::from_micros(200);
/// Polls a blocking log receive makes before it starts a wait (reads the
/// clock, counts itself a spinner): about a cache-line round trip each.
pub(crate) const QUICK_POLLS: u32 = 32;
/// One doze: a timed sleep nobody wakes.
pub(crate) const DOZE: Duration = Duration::from_micros(20);
/// The fastest feed, in messages per second, at which a subscriber dozes:
/// a doze of a faster one would leave the reliable publisher gated, a ring
/// filling up behind a sleeper nobody wakes.
pub(crate) const DOZE_MAX_RATE: u64 = 500_000;

/// How many waits a subscriber sleeps without spinning after its spin
/// overlapped a wake-up of sleeping subscribers (module docs, "Sleepers").
///
/// Long: each return to spinning costs the sleepers a CPU again until the
/// next overlap is seen. With 64, two subscribers of a feed paced at
/// 100 k msgs/s on 2 CPUs had a p99 of 3.8-4.6 ms (one delay in every 65
/// waits); with 4096, 54-234 us, and four subscribers 296-773 us against
/// 434 us-6.7 ms (`shmq bench --cases paced`, four runs of each build,
/// alternating). At 100 k msgs/s that is 41 ms without spinning.
pub(crate) const YIELD_WAITS: u32 = 4096;

impl Default for SpinBudget {
    fn default() -> Self {
        SpinBudget {
            ns: u64::MAX,
            yielding: 0,
            last_wait: u64::MAX,
            started: (0, 0),
            moderate: false,
        }
    }
}

impl SpinBudget {
    /// A budget learned earlier, kept as its nanoseconds ([`Self::ns`]) in
    /// an atomic shared by the threads of a handle.
    pub(crate) fn from_ns(ns: u64) -> SpinBudget {
        SpinBudget {
            ns,
            ..SpinBudget::default()
        }
    }

    /// Notes the start of a wait at `now` ([`mono_ns`]) at position `pos`:
    /// how fast messages came since the last one started.
    pub(crate) fn start_wait(&mut self, now: u64, pos: u64) {
        let (then, at) = self.started;
        let (ns, n) = (
            now.saturating_sub(then) as u128,
            pos.saturating_sub(at) as u128,
        );
        self.moderate = n * 1_000_000_000 <= DOZE_MAX_RATE as u128 * ns;
        self.started = (now, pos);
    }

    /// Whether a subscriber that has waited `so_far` in this wait should
    /// doze ([`DOZE`]) rather than sleep until woken: when more subscribers
    /// than spare CPUs are `crowded` on the log, and messages came within
    /// [`DOZE_GAP`] of each other (in this wait and the last) but not
    /// faster than [`DOZE_MAX_RATE`].
    pub(crate) fn dozes(&self, crowded: bool, so_far: Duration) -> bool {
        let close_together = self.last_wait < DOZE_GAP.as_nanos() as u64 && so_far < DOZE_GAP;
        crowded && self.moderate && close_together
    }

    /// The budget in nanoseconds (`u64::MAX` until a wait was measured).
    pub(crate) fn ns(&self) -> u64 {
        self.ns
    }

    /// The spin phase of the next wait, for a configured `spin`, when
    /// `spinners` other waiters of the same segment spin now.
    pub(crate) fn spin_for(&self, spin: Duration, spinners: u32) -> Duration {
        if spinners >= spin_cores() || self.yielding > 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.ns.min(spin.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// Learns from a wait that ended by spinning while the publisher woke
    /// sleeping subscribers (`others_woken`), or counts down a yield.
    pub(crate) fn record_sleepers(&mut self, spun_to_the_end: bool, others_woken: bool) {
        if spun_to_the_end && others_woken {
            self.yielding = YIELD_WAITS;
        } else {
            self.yielding = self.yielding.saturating_sub(1);
        }
    }

    /// Learns from a wait that lasted `waited` (until a message, or the
    /// end of the call), with a configured `spin`.
    pub(crate) fn record(&mut self, waited: Duration, spin: Duration) {
        let cap = spin.as_nanos().min(u64::MAX as u128) as u64;
        let w = waited.as_nanos().min(u64::MAX as u128) as u64;
        self.last_wait = w;
        let cur = self.ns.min(cap);
        self.ns = if w > cap {
            cur / 2
        } else {
            cur.max(w.saturating_mul(2)).min(cap)
        };
    }
}

/// What a blocked caller should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again now.
    Retry,
    /// The spin phase is over: sleep on the slot's futex, then try again.
    Sleep,
    /// The deadline passed.
    TimedOut,
}

/// The state of one blocking call.
pub(crate) struct Backoff {
    strategy: WaitStrategy,
    deadline: Option<Instant>,
    spin_until: Option<Instant>,
    spins: u32,
}

impl Backoff {
    pub(crate) fn new(strategy: WaitStrategy, deadline: Option<Instant>) -> Backoff {
        Backoff {
            strategy,
            deadline,
            spin_until: None,
            spins: 0,
        }
    }

    /// A backoff whose spin phase lasts `spin` (when the strategy spins
    /// then sleeps); with no spin at all it sleeps at the first call.
    pub(crate) fn with_spin(
        strategy: WaitStrategy,
        deadline: Option<Instant>,
        spin: Duration,
    ) -> Backoff {
        let strategy = match strategy {
            WaitStrategy::SpinThenSleep { .. } => WaitStrategy::SpinThenSleep { spin },
            other => other,
        };
        let mut b = Backoff::new(strategy, deadline);
        if spin.is_zero() {
            // The first call reads the clock and goes to sleep.
            b.spins = 63;
        }
        b
    }

    /// Called after an attempt that could not proceed.
    pub(crate) fn next(&mut self) -> Next {
        self.spins = self.spins.wrapping_add(1);
        // Read the clock only every 64 spins: it costs more than a spin, and
        // most waits on a busy queue end within the first few.
        if self.spins % 64 != 0 {
            std::hint::spin_loop();
            return Next::Retry;
        }
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) {
            return Next::TimedOut;
        }
        match self.strategy {
            WaitStrategy::BusySpin => {
                std::hint::spin_loop();
                Next::Retry
            }
            WaitStrategy::SpinThenSleep { spin } => {
                let until = *self.spin_until.get_or_insert(now + spin);
                if now < until {
                    std::hint::spin_loop();
                    Next::Retry
                } else {
                    Next::Sleep
                }
            }
        }
    }

    /// Time left before the deadline (None: forever).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// The futex word inside a stamp: its low 32 bits.
fn futex_word(stamp: &AtomicU64) -> *const u32 {
    let base = stamp as *const AtomicU64 as *const u32;
    if cfg!(target_endian = "little") {
        base
    } else {
        base.wrapping_add(1)
    }
}

/// Sleeps on `stamp` while it still holds `seen` (a value on which the caller
/// cannot proceed), or until `remaining` passes or `closed` is set. Returns
/// at once if the stamp has changed. The caller re-checks after any return.
pub(crate) fn sleep_on_stamp(
    stamp: &AtomicU64,
    seen: u64,
    closed: Option<&AtomicU32>,
    remaining: Option<Duration>,
) {
    if let Some(marked) = mark_stamp_waiter(stamp, seen, closed) {
        futex_wait(futex_word(stamp), marked, remaining);
    }
}

/// The sleeper's half of [`sleep_on_stamp`] before the sleep: sets the
/// waiter bit on `stamp` if it still holds `seen`, then checks `closed`.
/// Returns the value of the futex word to sleep on while it holds it, or
/// `None` when the caller must re-check instead (the stamp moved, or the
/// segment is closed). The async waiter (`crate::asyncio`) sleeps on the
/// returned value as a blocked thread does.
pub(crate) fn mark_stamp_waiter(
    stamp: &AtomicU64,
    seen: u64,
    closed: Option<&AtomicU32>,
) -> Option<u32> {
    let marked = seen | STAMP_WAITER;
    if seen & STAMP_WAITER == 0 {
        // SYNC(waiter-bit): SeqCst, pairs with the swap that publishes or
        // releases this slot (it sees the bit, or we see its new value) and,
        // for close, with the SeqCst store of `closed` and the closer's scan.
        if stamp
            .compare_exchange(seen, marked, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
    }
    // SYNC(close-wake): SeqCst, pairs with the SeqCst store in `close`.
    if closed.is_some_and(|c| c.load(Ordering::SeqCst) != 0) {
        return None;
    }
    Some(marked as u32)
}

/// The address of the futex word inside `stamp` (see [`sleep_on_stamp`]),
/// for the async waiter, which hands addresses to the kernel only.
#[cfg(feature = "async")]
pub(crate) fn stamp_word_addr(stamp: &AtomicU64) -> usize {
    futex_word(stamp) as usize
}

/// Wakes every process sleeping on `stamp`'s futex word.
pub(crate) fn wake_all(stamp: &AtomicU64) {
    futex_wake(futex_word(stamp), i32::MAX);
}

// ---- asymmetric barriers for the single-producer/single-consumer path ----
//
// The single-producer/single-consumer path publishes with plain stores and
// then checks `Control::sleepers` with a plain load: no fence on the fast
// path. The store-load ordering that a sleeper relies on (the waker's
// publish is visible, or the waker sees the sleeper) is supplied by the
// sleeper instead: it calls membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED),
// which runs a full barrier on every CPU running a registered process. Every
// process registers when it first attaches a segment; a process whose
// registration fails fences on its own fast path instead (`waker_fence`).
// A sleeper first sleeps briefly without the barrier ([`UNFENCED_SLEEP`],
// [`asym_sleep`]): on a busy feed the next publish wakes it, and the
// barrier, which interrupts every other CPU, is paid only by a sleeper that
// stays idle longer than that.

const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 2;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 4;

/// 0 unknown, 1 registered for expedited barriers, 2 not registered (fence).
static BARRIER_MODE: AtomicU32 = AtomicU32::new(0);

fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes no pointers.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) == 0 }
}

/// Registers this process for expedited global barriers (once).
pub(crate) fn register_process() {
    if BARRIER_MODE.load(Ordering::Relaxed) == 0 {
        let mode = if membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) {
            1
        } else {
            2
        };
        // Relaxed: each thread that reads 0 registers again, which is harmless.
        BARRIER_MODE.store(mode, Ordering::Relaxed);
    }
}

/// The waker's side: between its publishing store and its load of the
/// sleepers word. A compiler barrier when this process is registered (the
/// sleeper's membarrier orders the CPU), else a full fence.
#[inline]
pub(crate) fn waker_fence() {
    if BARRIER_MODE.load(Ordering::Relaxed) == 1 {
        // SYNC(asym-dekker): only the compiler must keep the publishing store
        // before the sleepers load; the CPU is ordered by the sleeper's
        // membarrier, which pairs with this point.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        // SYNC(asym-dekker): SeqCst fence, pairs with the sleeper's barrier.
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// The sleeper's side: after announcing itself, before re-checking. Returns
/// false if no barrier was possible (the sleeper must then bound its sleep).
pub(crate) fn sleeper_barrier() -> bool {
    std::sync::atomic::fence(Ordering::SeqCst);
    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) || membarrier(MEMBARRIER_CMD_GLOBAL)
}

/// How long a sleeper of the asymmetric protocol sleeps before it pays for
/// the barrier ([`asym_sleep`]).
///
/// The barrier (`membarrier`) is what guarantees that a publish made while
/// the sleeper went to sleep either is seen by its last look or sees its
/// count, and so wakes it. It interrupts every CPU running an attached
/// process: measured on the 2-CPU development VM, 0.4 us when the other CPU
/// is idle and 5 us when it runs a publisher or another subscriber. That
/// was most of the CPU time of a subscriber woken per message (`shmq
/// bench`, paced cases), and it stalls the publisher it interrupts. So a
/// sleeper first sleeps this long without it: a publish that raced with its
/// going to sleep (within the time a store takes to leave the publisher's
/// store buffer) is noticed at the end of this sleep at the latest, or at
/// the next publish; every other publish wakes it at once, as before. Then
/// it takes the barrier, looks again and sleeps on. A feed faster than one
/// message per `UNFENCED_SLEEP` never pays for the barrier; a slower one
/// pays once per idle gap, with one extra timer wake-up.
pub(crate) const UNFENCED_SLEEP: Duration = Duration::from_micros(200);

/// The sleeper's side of the asymmetric protocol, once it has counted
/// itself and read `seq` from `wake_seq`: sleeps while `wake_seq` holds
/// `seq` and `ready()` is false, at most `timeout` (`None`: no limit).
/// First without the barrier for up to [`UNFENCED_SLEEP`], then with it.
/// Without a barrier (none available, or `trusted` false: the caller could
/// not count itself) a sleep lasts at most 1 ms. The caller re-checks
/// whatever it waits for.
pub(crate) fn asym_sleep(
    wake_seq: &AtomicU32,
    seq: u32,
    timeout: Option<Duration>,
    trusted: bool,
    ready: impl Fn() -> bool,
) {
    if ready() {
        return;
    }
    let started = Instant::now();
    let first = timeout.map_or(UNFENCED_SLEEP, |t| t.min(UNFENCED_SLEEP));
    futex_wait_u32(wake_seq, seq, Some(first));
    // SYNC(asym-wake): Acquire, pairs with the waker's Release bump of
    // `wake_seq`: a sleeper that reads the new value sees its publish.
    if wake_seq.load(Ordering::Acquire) != seq || ready() {
        return;
    }
    let rest = timeout.map(|t| t.saturating_sub(started.elapsed()));
    if rest.is_some_and(|r| r.is_zero()) {
        return;
    }
    let barrier = sleeper_barrier();
    if ready() {
        return;
    }
    let rest = if barrier && trusted {
        rest
    } else {
        let cap = Duration::from_millis(1);
        Some(rest.map_or(cap, |r| r.min(cap)))
    };
    futex_wait_u32(wake_seq, seq, rest);
}

/// Dozes: sleeps [`DOZE`] (at most `cap`) or until `wake_seq` moves from
/// `seq`, with nobody to wake the sleeper. The kernel adds the thread's
/// timer slack (50 us unless the application set another with
/// `prctl(PR_SET_TIMERSLACK)`).
pub(crate) fn doze(wake_seq: &AtomicU32, seq: u32, cap: Option<Duration>) {
    futex_wait_u32(wake_seq, seq, Some(cap.map_or(DOZE, |c| c.min(DOZE))));
}

/// Sleeps while `word` holds `expected`, at most `timeout`.
pub(crate) fn futex_wait_u32(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    futex_wait(word.as_ptr(), expected, timeout);
}

/// Wakes every process sleeping on `word`.
pub(crate) fn futex_wake_u32(word: &AtomicU32) {
    futex_wake(word.as_ptr(), i32::MAX);
}

fn futex_wait(word: *const u32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: word points into a live mapping (the stamp borrowed by the
    // caller); FUTEX_WAIT only reads it. EINTR, EAGAIN and ETIMEDOUT all mean
    // "re-check", which every caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            0usize,
            0u32,
        );
    }
}

fn futex_wake(word: *const u32, count: i32) {
    // SAFETY: word points into a live mapping; FUTEX_WAKE does not touch memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE,
            count,
            0usize,
            0usize,
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIN: Duration = Duration::from_micros(50);

    #[test]
    fn the_budget_follows_the_arrivals() {
        let mut b = SpinBudget::default();
        assert_eq!(b.spin_for(SPIN, 0), SPIN);
        // A wait that ended within the spin keeps it (at most `spin`).
        b.record(Duration::from_micros(10), SPIN);
        assert_eq!(b.spin_for(SPIN, 0), Duration::from_micros(50));
        let mut b = SpinBudget::default();
        // Waits longer than the spin halve it, down to nothing useful.
        for _ in 0..4 {
            b.record(Duration::from_millis(1), SPIN);
        }
        assert_eq!(b.spin_for(SPIN, 0), SPIN / 16);
        b.record(Duration::from_micros(5), SPIN);
        assert_eq!(b.spin_for(SPIN, 0), Duration::from_micros(10));
        // Enough spinners: none more.
        assert_eq!(b.spin_for(SPIN, spin_cores()), Duration::ZERO);
    }

    #[test]
    fn a_spin_that_kept_sleepers_from_a_cpu_yields_for_a_while() {
        let mut b = SpinBudget::default();
        // Caught by spinning, nobody else woken: keep spinning.
        b.record_sleepers(true, false);
        assert_eq!(b.spin_for(SPIN, 0), SPIN);
        // A wait that slept proves nothing about the others.
        b.record_sleepers(false, true);
        assert_eq!(b.spin_for(SPIN, 0), SPIN);
        // Caught by spinning while the publisher woke sleepers: yield.
        b.record_sleepers(true, true);
        for _ in 0..YIELD_WAITS {
            assert_eq!(b.spin_for(SPIN, 0), Duration::ZERO);
            b.record_sleepers(false, true);
        }
        // Then try spinning again.
        assert_eq!(b.spin_for(SPIN, 0), SPIN);
    }
}
