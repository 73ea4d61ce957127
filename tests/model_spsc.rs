//! Loom model of the single-producer queue's batch publication and of a
//! new producer taking over from one that died in the middle of a batch.
//!
//! Run with `scripts/model.sh` (`RUSTFLAGS="--cfg loom"`); absent from normal
//! builds.
//!
//! # What is modelled
//!
//! A copy of `src/queue/spsc.rs`: `spsc_enqueue_batch` (payloads written,
//! every stamp but the first, then the first, then `tail`),
//! `spsc_enqueue` / `spsc_commit` (payload, stamp, `tail`), `spsc_peek` +
//! `spsc_dequeue` (the consumer polls the stamp of its position, reads the
//! payload, stores `head`) and `repaired_tail` (a new producer skips the
//! stamps a dead one published past `tail`, and clears the stamps of a
//! batch whose first slot it never stamped). Same orderings, same stamp
//! encoding (`(pos + 1) << 1` published). Capacity 4.
//!
//! Simplifications, each named:
//!
//! - Producer A is killed at a chosen step (it returns early; nothing after
//!   runs). The new producer B (the main thread) starts only after A's
//!   thread has ended: the real role is taken over only once the kernel
//!   says its holder is dead, which orders A's last stores before B.
//! - Messages are one `u64` in a loom `UnsafeCell`: loom reports a payload
//!   read not ordered after its write.
//! - No sleepers, no close; the consumer makes a bounded number of tries
//!   while the producers run, then the main thread drains the rest.

#![cfg(loom)]

#[path = "model/driver.rs"]
mod driver;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

const CAP: u64 = 4;

/// Where producer A stops for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// A finishes its batch.
    Never,
    /// After stamping the batch's second slot, before its first
    /// (`queue-batch-published-one`).
    PublishedOne,
    /// After stamping the first slot, before storing `tail`
    /// (`queue-batch-stamped`).
    Stamped,
}

/// How the new producer repairs `tail` (the code, or weakened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repair {
    Code,
    /// Without clearing a dead batch's orphan stamps.
    NoOrphanClearing,
}

struct Slot {
    stamp: AtomicU64,
    payload: UnsafeCell<u64>,
}

struct Q {
    head: AtomicU64,
    tail: AtomicU64,
    slots: Vec<Slot>,
    repair: Repair,
}

/// A producer-role holder's private state.
struct Producer {
    pos: u64,
    cached: u64,
}

fn published(pos: u64) -> u64 {
    (pos + 1) << 1
}

impl Q {
    fn new(repair: Repair) -> Q {
        Q {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            slots: (0..CAP)
                .map(|_| Slot {
                    stamp: AtomicU64::new(0),
                    payload: UnsafeCell::new(0),
                })
                .collect(),
            repair,
        }
    }

    fn slot(&self, pos: u64) -> &Slot {
        &self.slots[(pos % CAP) as usize]
    }

    /// `claim_role` for the producer: `repaired_tail`.
    fn claim_producer(&self) -> Producer {
        let t0 = self.tail.load(Ordering::Acquire);
        let mut t = t0;
        while t - t0 < CAP && self.slot(t).stamp.load(Ordering::Relaxed) >> 1 == t + 1 {
            t += 1;
        }
        if t != t0 {
            self.tail.store(t, Ordering::Release);
        }
        if self.repair == Repair::Code {
            let mut orphan = t + 1;
            while orphan - t < CAP {
                let stamp = &self.slot(orphan).stamp;
                if stamp.load(Ordering::Relaxed) >> 1 != orphan + 1 {
                    break;
                }
                stamp.store(0, Ordering::Relaxed);
                orphan += 1;
            }
        }
        Producer {
            pos: t,
            cached: self.head.load(Ordering::Acquire),
        }
    }

    /// Free positions from `p.pos`, at most `want`.
    fn room(&self, p: &mut Producer, want: u64) -> u64 {
        if p.pos - p.cached > CAP - want {
            p.cached = self.head.load(Ordering::Acquire);
        }
        (CAP - (p.pos - p.cached)).min(want)
    }

    fn write(&self, pos: u64, msg: u64) {
        // SAFETY (model): the producer owns position `pos` (within room of
        // head) until it stamps it.
        self.slot(pos).payload.with_mut(|v| unsafe { *v = msg });
    }

    /// `spsc_enqueue_batch`: Some(how many), or None if killed at `kill`.
    fn enqueue_batch(&self, p: &mut Producer, msgs: &[u64], kill: Kill) -> Option<usize> {
        let n = self.room(p, msgs.len() as u64) as usize;
        assert_eq!(n, msgs.len(), "the model never fills the ring");
        let t0 = p.pos;
        for (i, &m) in msgs.iter().enumerate() {
            let t = t0 + i as u64;
            self.write(t, m);
            if i > 0 {
                self.slot(t).stamp.store(published(t), Ordering::Release);
                if kill == Kill::PublishedOne {
                    return None;
                }
            }
        }
        self.slot(t0).stamp.store(published(t0), Ordering::Release);
        if kill == Kill::Stamped {
            return None;
        }
        p.pos = t0 + n as u64;
        self.tail.store(p.pos, Ordering::Release);
        Some(n)
    }

    /// `spsc_enqueue`: one message.
    fn enqueue(&self, p: &mut Producer, msg: u64) {
        assert_eq!(self.room(p, 1), 1, "the model never fills the ring");
        let t = p.pos;
        self.write(t, msg);
        self.slot(t).stamp.store(published(t), Ordering::Release);
        p.pos = t + 1;
        self.tail.store(p.pos, Ordering::Release);
    }

    /// `spsc_dequeue` at the consumer's position `pos`.
    fn dequeue(&self, pos: &mut u64) -> Option<u64> {
        let slot = self.slot(*pos);
        if slot.stamp.load(Ordering::Acquire) >> 1 != *pos + 1 {
            return None;
        }
        // SAFETY (model): the stamp says the slot holds position `pos`'s
        // message, which the producer leaves until head passes it.
        let msg = slot.payload.with(|v| unsafe { *v });
        *pos += 1;
        self.head.store(*pos, Ordering::Release);
        Some(msg)
    }
}

/// Producer A enqueues the batch [A1, A2] and is killed at `kill`, while
/// consumer C dequeues; then producer B takes over and enqueues B1 and B2
/// one at a time. What C and the final drain receive is A's batch whole
/// (when its first slot was stamped) or nothing of it, then B1, B2: never
/// a message of a dead batch in place of B's.
fn takeover(kill: Kill, repair: Repair) {
    let name = format!("takeover({kill:?}, {repair:?})");
    driver::check(&name, 3, None, move || {
        let q = Arc::new(Q::new(repair));
        let a = {
            let q = q.clone();
            thread::spawn(move || {
                let mut p = q.claim_producer();
                q.enqueue_batch(&mut p, &[0xA1, 0xA2], kill)
            })
        };
        let c = {
            let q = q.clone();
            thread::spawn(move || {
                let (mut pos, mut got) = (0, Vec::new());
                for _ in 0..3 {
                    got.extend(q.dequeue(&mut pos));
                }
                (pos, got)
            })
        };
        let sent = a.join().unwrap();
        assert_eq!(sent.is_some(), kill == Kill::Never);
        let mut b = q.claim_producer();
        q.enqueue(&mut b, 0xB1);
        q.enqueue(&mut b, 0xB2);
        let (mut pos, mut got) = c.join().unwrap();
        while let Some(m) = q.dequeue(&mut pos) {
            got.push(m);
        }
        let want: &[u64] = match kill {
            Kill::PublishedOne => &[0xB1, 0xB2],
            Kill::Never | Kill::Stamped => &[0xA1, 0xA2, 0xB1, 0xB2],
        };
        assert_eq!(got, want, "{kill:?} {repair:?}");
    });
}

#[test]
fn a_finished_batch_then_singles() {
    takeover(Kill::Never, Repair::Code);
}

#[test]
fn a_producer_killed_before_its_batchs_first_stamp_published_nothing() {
    takeover(Kill::PublishedOne, Repair::Code);
}

#[test]
fn a_producer_killed_before_its_batchs_tail_store_published_it_all() {
    takeover(Kill::Stamped, Repair::Code);
}

#[test]
#[ignore = "weakened on purpose (scripts/model.sh --ignored): without clearing the dead batch's orphan stamp, the consumer takes A2 for B's second message"]
fn killed_before_the_first_stamp_without_orphan_clearing() {
    takeover(Kill::PublishedOne, Repair::NoOrphanClearing);
}
