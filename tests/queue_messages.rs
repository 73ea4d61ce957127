//! Message lengths, `enqueue_shift`, and many threads of one process on the
//! work queue, over real segments (and the heap for the thread tests).

// This file spawns no child processes: the harness's role macro goes unused.
#[allow(unused_imports)]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{check_msg, make_msg, Guard};
use shmq::{Queue, QueueConfig, RecvError, SendError};

fn each_backing(tag: &str, mut f: impl FnMut(&Guard)) {
    for target in common::all_backings(tag) {
        f(&target);
    }
}

/// A payload of `len` bytes that differs per `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_mul(131).wrapping_add(i * 7) as u8)
        .collect()
}

// ---- lengths ----

#[test]
fn zero_max_and_too_large_messages() {
    each_backing("lengths", |target| {
        let slot = 100;
        let q = Queue::create(target, &QueueConfig::new(slot, 4)).unwrap();
        let max = pattern(1, slot);
        q.enqueue_try(b"").unwrap();
        q.enqueue_try(&max).unwrap();
        // One byte too many: refused, nothing written, by every enqueue call.
        let over = pattern(2, slot + 1);
        let too_large = SendError::TooLarge {
            len: slot + 1,
            max: slot,
        };
        assert_eq!(q.enqueue_try(&over), Err(too_large.clone()));
        assert_eq!(
            q.enqueue_block(&over, Some(Duration::from_millis(10))),
            Err(too_large.clone())
        );
        assert_eq!(q.enqueue_shift(&over), Err(too_large));
        let s = q.stats();
        assert_eq!((s.enqueued, s.len, s.discarded), (2, 2, 0), "{s:?}");
        q.enqueue_try(b"after").unwrap();

        // The receiver learns each length; a buffer of exactly the slot size fits all.
        let mut buf = vec![0xaa; slot];
        assert_eq!(q.dequeue_try(&mut buf), Ok(0));
        assert_eq!(q.dequeue_try(&mut buf), Ok(slot));
        assert_eq!(buf, max);
        assert_eq!(q.dequeue_try(&mut buf), Ok(5));
        assert_eq!(&buf[..5], b"after");
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));

        // A zero-length message fits even an empty buffer.
        q.enqueue_try(&[]).unwrap();
        assert_eq!(q.dequeue_try(&mut []), Ok(0));
    });
}

#[test]
fn buffer_too_small_leaves_the_message_queued() {
    each_backing("small-buf", |target| {
        let q = Queue::create(target, &QueueConfig::new(64, 4)).unwrap();
        let msg = pattern(3, 40);
        q.enqueue_try(&msg).unwrap();
        q.enqueue_try(b"next").unwrap();
        let mut small = [0u8; 39];
        assert_eq!(
            q.dequeue_try(&mut small),
            Err(RecvError::BufferTooSmall { needed: 40 })
        );
        // The blocking call reports it at once rather than waiting.
        assert_eq!(
            q.dequeue_block(&mut small, Some(Duration::from_secs(10))),
            Err(RecvError::BufferTooSmall { needed: 40 })
        );
        assert_eq!(
            q.dequeue_try(&mut []),
            Err(RecvError::BufferTooSmall { needed: 40 })
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats().dequeued, 0);
        // Another handle (as another process would) with a big enough buffer gets it, intact.
        let other = Queue::open(target).unwrap();
        let mut exact = [0u8; 40];
        assert_eq!(other.dequeue_try(&mut exact), Ok(40));
        assert_eq!(exact[..], msg[..]);
        assert_eq!(q.dequeue_try(&mut small), Ok(4));
        assert_eq!(&small[..4], b"next");
    });
}

#[test]
fn variable_lengths_round_trip_over_many_laps() {
    // Every length from 0 to the slot size, in a scrambled order, many times
    // round the ring with messages in it, on a power-of-two capacity and on
    // capacities that are not (the modulo path). A model queue says what
    // must come out.
    let targets = [
        (8, common::posix("varlen")),
        (7, common::file("varlen")),
        (5, common::sysv()),
    ];
    for (capacity, target) in targets {
        let slot = 150;
        let q = Queue::create(&target, &QueueConfig::new(slot, capacity)).unwrap();
        let mut model = std::collections::VecDeque::new();
        let mut buf = vec![0u8; slot];
        let total = 2_000u64;
        for seq in 0..total {
            let len = (seq as usize * 37) % (slot + 1);
            let m = pattern(seq, len);
            match q.enqueue_try(&m) {
                Ok(()) => model.push_back(m),
                Err(SendError::Full) => {
                    assert_eq!(
                        model.len(),
                        capacity,
                        "Full with {} messages queued",
                        model.len()
                    );
                    // Make room (two at a time, so the fill level varies), then retry.
                    for _ in 0..2 {
                        let n = q.dequeue_try(&mut buf).unwrap();
                        assert_eq!(
                            buf[..n],
                            model.pop_front().unwrap()[..],
                            "{target:?} message corrupted",
                            target = target.0
                        );
                    }
                    q.enqueue_try(&m).unwrap();
                    model.push_back(m);
                }
                Err(e) => panic!("{e}"),
            }
        }
        while let Some(m) = model.pop_front() {
            let n = q.dequeue_try(&mut buf).unwrap();
            assert_eq!(buf[..n], m[..]);
        }
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
        let s = q.stats();
        assert_eq!((s.enqueued, s.dequeued, s.len), (total, total, 0), "{s:?}");
    }
}

// ---- enqueue_shift ----

#[test]
fn enqueue_shift_discards_the_oldest_exactly() {
    each_backing("shift", |target| {
        let q = Queue::create(target, &QueueConfig::new(16, 4)).unwrap();
        // Not full: nothing discarded.
        for i in 0..4u8 {
            assert_eq!(q.enqueue_shift(&[i]), Ok(0));
        }
        // Full: each shift discards exactly the oldest one.
        for i in 4..10u8 {
            assert_eq!(q.enqueue_shift(&[i]), Ok(1), "shift of {i}");
            assert_eq!(q.stats().discarded, (i - 3) as u64);
            assert_eq!(q.len(), 4);
        }
        let s = q.stats();
        assert_eq!(
            (s.enqueued, s.dequeued, s.discarded, s.len),
            (10, 0, 6, 4),
            "{s:?}"
        );
        // Another handle sees the same count in shared memory.
        assert_eq!(Queue::open(target).unwrap().stats().discarded, 6);
        // The survivors are the newest four, oldest first.
        let mut buf = [0u8; 16];
        for i in 6..10u8 {
            assert_eq!(q.dequeue_try(&mut buf), Ok(1));
            assert_eq!(buf[0], i);
        }
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
        // After a partial drain, shift fills the free slots before discarding.
        q.enqueue_try(b"a").unwrap();
        q.enqueue_try(b"b").unwrap();
        q.enqueue_try(b"c").unwrap();
        assert_eq!(q.enqueue_shift(b"d"), Ok(0));
        assert_eq!(q.enqueue_shift(b"e"), Ok(1));
        let mut got = Vec::new();
        while let Ok(n) = q.dequeue_try(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"bcde");
        let s = q.stats();
        assert_eq!(
            (s.enqueued, s.dequeued, s.discarded, s.len),
            (15, 8, 7, 0),
            "{s:?}"
        );
    });
}

#[test]
fn enqueue_shift_under_concurrent_consumers_loses_nothing_uncounted() {
    // Threads shifting into a small queue while others dequeue: every message
    // is either received (once, in per-producer order), or counted as
    // discarded by exactly one call, or refused with Full (not enqueued: a
    // peer stalled on the slot it needed; rare, on an overloaded machine).
    const PRODUCERS: u32 = 3;
    const CONSUMERS: usize = 2;
    const PER: u64 = 50_000;
    let target = common::posix("shift-mt");
    let q = Arc::new(Queue::create(&target, &QueueConfig::new(32, 8)).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                let (mut discarded, mut refused) = (0u64, 0u64);
                for seq in 0..PER {
                    match q.enqueue_shift(&make_msg(p, seq, 32)) {
                        Ok(n) => discarded += n,
                        Err(SendError::Full) => refused += 1,
                        Err(e) => panic!("producer {p}: {e}"),
                    }
                }
                (discarded, refused)
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 32];
                let mut got = Vec::new();
                loop {
                    match q.dequeue_block(&mut buf, Some(Duration::from_secs(30))) {
                        Ok(n) => got.push(check_msg(&buf[..n]).expect("torn message")),
                        Err(RecvError::Closed) => return got,
                        Err(e) => panic!("consumer: {e}"),
                    }
                }
            })
        })
        .collect();
    let (mut discarded, mut refused) = (0, 0);
    for t in producers {
        let (d, r) = t.join().unwrap();
        discarded += d;
        refused += r;
    }
    q.close();
    let mut seen = vec![vec![false; PER as usize]; PRODUCERS as usize];
    let mut received = 0u64;
    for c in consumers {
        let got = c.join().unwrap();
        let mut last = vec![None; PRODUCERS as usize];
        for (p, seq) in got {
            assert!(
                last[p as usize].is_none_or(|l| l < seq),
                "producer {p}: {seq} after {:?}",
                last[p as usize]
            );
            last[p as usize] = Some(seq);
            assert!(
                !seen[p as usize][seq as usize],
                "({p}, {seq}) received twice"
            );
            seen[p as usize][seq as usize] = true;
            received += 1;
        }
    }
    let s = q.stats();
    assert_eq!(s.discarded, discarded, "stats and return values disagree");
    assert_eq!(
        received + discarded + refused,
        PRODUCERS as u64 * PER,
        "received {received}, discarded {discarded}, refused {refused}"
    );
    assert_eq!(
        (s.enqueued, s.dequeued, s.len),
        (PRODUCERS as u64 * PER - refused, received, 0),
        "{s:?}"
    );
    eprintln!("shift: received {received}, discarded {discarded}, refused {refused}");
}

// ---- threads of one process ----

#[test]
fn many_threads_in_process_exactly_once_fifo() {
    const PRODUCERS: u32 = 4;
    const CONSUMERS: usize = 4;
    const PER: u64 = 100_000;
    let q = Arc::new(Queue::in_process(&QueueConfig::new(48, 64)).unwrap());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for seq in 0..PER {
                    let len = 16 + (seq as usize % 33);
                    q.enqueue_block(&make_msg(p, seq, len), Some(Duration::from_secs(30)))
                        .unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 48];
                let mut got = Vec::new();
                loop {
                    match q.dequeue_block(&mut buf, Some(Duration::from_secs(30))) {
                        Ok(n) => {
                            let (p, seq) = check_msg(&buf[..n]).expect("torn message");
                            assert_eq!(n, 16 + (seq as usize % 33), "wrong length");
                            got.push((p, seq));
                        }
                        Err(RecvError::Closed) => return got,
                        Err(e) => panic!("consumer: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in producers {
        t.join().unwrap();
    }
    q.close();
    let mut seen = vec![vec![0u8; PER as usize]; PRODUCERS as usize];
    for c in consumers {
        let mut last = vec![None; PRODUCERS as usize];
        for (p, seq) in c.join().unwrap() {
            assert!(
                last[p as usize].is_none_or(|l| l < seq),
                "FIFO broken for producer {p}"
            );
            last[p as usize] = Some(seq);
            seen[p as usize][seq as usize] += 1;
        }
    }
    for (p, counts) in seen.iter().enumerate() {
        assert!(
            counts.iter().all(|&n| n == 1),
            "producer {p}: not exactly once"
        );
    }
    let s = q.stats();
    assert_eq!(
        (s.enqueued, s.dequeued, s.len),
        (PRODUCERS as u64 * PER, PRODUCERS as u64 * PER, 0)
    );
}
