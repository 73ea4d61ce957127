//! Loom model of how a single-publisher log wakes its sleeping subscribers
//! (`src/log/single.rs`: `sp_wake`, `sp_wake_sleepers`, `sp_sleep`).
//!
//! Run with `scripts/model.sh` (`RUSTFLAGS="--cfg loom"`); absent from normal
//! builds.
//!
//! # What is modelled
//!
//! One publisher stores `tail` (the publish), then checks the sleepers word
//! and, when somebody is counted, starts a new generation with a count of 0
//! and bumps `wake_seq` and wakes everybody on it. Two subscribers read
//! until they have seen every message; when there is nothing to read they
//! count themselves in the word, read `wake_seq`, pass the barrier, look
//! again, sleep on `wake_seq` if there is still nothing, and on waking take
//! themselves out of the count if their generation is still current.
//!
//! The checks:
//! - no lost wake-up: a subscriber that sleeps while a message is pending is
//!   always woken. The futex has no timeout here, so a lost wake-up leaves
//!   the subscriber blocked forever, which loom reports as a deadlock;
//! - the count is exact: when every thread is done, nobody is counted.
//!   (A count that stays too high costs a spare syscall per wake; one too
//!   low means a sleeper the publisher does not see, asleep until its
//!   timeout: a stall.)
//!
//! Simplifications, each named:
//! - `sp_sleep` (`wait::asym_sleep`) first sleeps up to `UNFENCED_SLEEP` (200 us) without the
//!   barrier, and only when that sleep ends unwoken with nothing to read
//!   does it take the barrier, look again and sleep: the sequence modelled
//!   here. The first sleep is not modelled: a publish it misses (one that
//!   raced with its look) costs at most its bound, after which the
//!   modelled part runs with the count already taken.
//! - The asymmetric barrier (the publisher's compiler fence against the
//!   sleeper's `membarrier`) is a SeqCst fence on both sides, which is what
//!   `membarrier` gives the pair.
//! - The futex is a loom `Mutex` and `Condvar`: a wait checks the word
//!   under the lock and sleeps atomically with releasing it; a wake takes
//!   the lock and notifies all. That is the futex's contract (the check and
//!   the sleep are atomic with respect to a wake). No timeouts, no spurious
//!   wake-ups.
//! - A message is its sequence number in `tail`; what the subscriber reads
//!   of the slot is the single-publisher seqlock, modelled in
//!   `tests/model_log.rs`.

#![cfg(loom)]

#[path = "model/driver.rs"]
mod driver;

use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

const SLEEPERS_COUNT: u32 = 0xffff;
const SLEEPERS_GEN: u32 = 1 << 16;

/// How many messages the publisher publishes.
const MESSAGES: u64 = 2;

struct Log {
    tail: AtomicU64,
    sleepers: AtomicU32,
    wake_seq: AtomicU32,
    futex: Mutex<()>,
    woken: Condvar,
}

impl Log {
    fn new() -> Log {
        Log {
            tail: AtomicU64::new(0),
            sleepers: AtomicU32::new(0),
            wake_seq: AtomicU32::new(0),
            futex: Mutex::new(()),
            woken: Condvar::new(),
        }
    }

    fn futex_wait(&self, expected: u32) {
        let guard = self.futex.lock().unwrap();
        if self.wake_seq.load(Ordering::Relaxed) == expected {
            drop(self.woken.wait(guard).unwrap());
        }
    }

    fn futex_wake(&self) {
        let _guard = self.futex.lock().unwrap();
        self.woken.notify_all();
    }

    /// `Inner::publish` of a single publisher, then `sp_wake`.
    fn publish(&self, seq: u64, generations: bool) {
        self.tail.store(seq, Ordering::Release);
        // asym-dekker: the waker's side.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) & SLEEPERS_COUNT == 0 {
            return;
        }
        // sp_wake_sleepers
        let taken = self
            .sleepers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                if v & SLEEPERS_COUNT == 0 {
                    None
                } else if generations {
                    Some((v & !SLEEPERS_COUNT).wrapping_add(SLEEPERS_GEN))
                } else {
                    // Without generations the waker leaves the count to
                    // the sleepers, as before layout 4.
                    Some(v)
                }
            });
        if taken.is_ok() {
            self.wake_seq.fetch_add(1, Ordering::Release);
            self.futex_wake();
        }
    }

    /// `sp_sleep`, with `ready` = a message after `seen` is published.
    fn sleep(&self, seen: u64, generations: bool) {
        let counted = self
            .sleepers
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                (v & SLEEPERS_COUNT != SLEEPERS_COUNT).then(|| v + 1)
            })
            .expect("two sleepers never fill the count");
        let generation = counted & !SLEEPERS_COUNT;
        let seq = self.wake_seq.load(Ordering::Acquire);
        // asym-dekker: the sleeper's side (membarrier).
        fence(Ordering::SeqCst);
        if self.tail.load(Ordering::Acquire) <= seen {
            self.futex_wait(seq);
        }
        let _ = self
            .sleepers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let mine = !generations || v & !SLEEPERS_COUNT == generation;
                (mine && v & SLEEPERS_COUNT != 0).then(|| v - 1)
            });
    }

    /// A subscriber: reads until it has seen every message, sleeping when
    /// there is nothing to read.
    fn subscribe(&self, generations: bool) {
        let mut seen = 0;
        while seen < MESSAGES {
            let tail = self.tail.load(Ordering::Acquire);
            if tail > seen {
                seen = tail;
            } else {
                self.sleep(seen, generations);
            }
        }
    }
}

fn model(generations: bool) {
    let name = format!("wake(generations: {generations})");
    driver::check(&name, 3, None, move || {
        let log = Arc::new(Log::new());
        let subscribers: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                thread::spawn(move || log.subscribe(generations))
            })
            .collect();
        for seq in 1..=MESSAGES {
            log.publish(seq, generations);
        }
        for s in subscribers {
            s.join().unwrap();
        }
        let left = log.sleepers.load(Ordering::Relaxed) & SLEEPERS_COUNT;
        assert_eq!(left, 0, "{left} sleepers still counted with nobody asleep");
    });
}

/// Generations: no lost wake-up, and the count ends at 0.
#[test]
fn sleepers_are_woken_and_counted_exactly() {
    model(true);
}

/// The protocol before layout 4, for comparison: the waker leaves the count
/// to the sleepers, each taking itself out after waking. It is just as free
/// of lost wake-ups; its cost, one wake syscall per publish until the woken
/// subscribers run, is what generations remove, and loom does not measure
/// cost.
#[test]
fn counting_without_generations_is_also_safe() {
    model(false);
}

/// A waker that starts a new generation while sleepers still decrement
/// without looking at it: a woken sleeper takes out the count of one that
/// slept after the reset, which then sleeps uncounted and is never woken.
/// Kept failing, to show the model has teeth: loom reports the deadlock
/// (and aborts the test binary, so it cannot be a `should_panic` test).
#[test]
#[ignore = "fails by design: shows that the generation check is needed (loom finds the lost wake-up)"]
fn reset_without_generation_check_loses_a_wake_up() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let log = Arc::new(Log::new());
        let subscribers: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                thread::spawn(move || {
                    let mut seen = 0;
                    while seen < MESSAGES {
                        let tail = log.tail.load(Ordering::Acquire);
                        if tail > seen {
                            seen = tail;
                            continue;
                        }
                        log.sleepers.fetch_add(1, Ordering::SeqCst);
                        let seq = log.wake_seq.load(Ordering::Acquire);
                        fence(Ordering::SeqCst);
                        if log.tail.load(Ordering::Acquire) <= seen {
                            log.futex_wait(seq);
                        }
                        // Generation-blind: takes out one count, whoever's.
                        let _ =
                            log.sleepers
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                                    (v & SLEEPERS_COUNT != 0).then(|| v - 1)
                                });
                    }
                })
            })
            .collect();
        for seq in 1..=MESSAGES {
            log.publish(seq, true);
        }
        for s in subscribers {
            s.join().unwrap();
        }
        let left = log.sleepers.load(Ordering::Relaxed) & SLEEPERS_COUNT;
        assert_eq!(left, 0, "{left} sleepers still counted with nobody asleep");
    });
}
