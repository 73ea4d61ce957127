//! Zero-copy (reserve/commit/cancel, consume/release) and batch calls of
//! the work queue, in both modes, and their crash recovery: a process
//! killed holding a reservation, a consume guard, or in the middle of a
//! batch leaves nothing wedged and loses nothing.

mod common;

use std::time::Duration;

use common::{check_msg, make_msg, Proc};
use shmq::{Queue, QueueConfig, RecvError, SendError, Target};

common::child_roles! {
    "reserve" => reserve_child,
    "consume" => consume_child,
    "batch_in" => batch_in_child,
    "batch_out" => batch_out_child,
}

const WAIT: Duration = Duration::from_secs(10);

fn both(slot: usize, cap: usize) -> [Queue; 2] {
    [false, true].map(|spsc| Queue::in_process(&QueueConfig::new(slot, cap).spsc(spsc)).unwrap())
}

fn recv_all(q: &Queue) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(m) = q.consume() {
        out.push(m.to_vec());
    }
    out
}

#[test]
fn commit_cancel_and_drop_in_both_modes() {
    for q in both(16, 8) {
        let mut r = q.reserve(16).unwrap();
        assert_eq!(r.len(), 16);
        r[..3].copy_from_slice(b"abc");
        r.commit(3).unwrap();
        q.reserve(8).unwrap().cancel();
        drop(q.reserve(8).unwrap());
        let mut r = q.reserve(4).unwrap();
        r.copy_from_slice(b"wxyz");
        assert_eq!(
            r.commit(5),
            Err(SendError::TooLarge { len: 5, max: 4 }),
            "commit beyond the reservation"
        );
        assert!(matches!(
            q.reserve(17),
            Err(SendError::TooLarge { len: 17, max: 16 })
        ));
        let mut r = q.reserve(0).unwrap();
        assert!(r.as_mut_slice().is_empty());
        r.commit(0).unwrap();
        assert_eq!(
            recv_all(&q),
            [b"abc".to_vec(), vec![]],
            "spsc {}",
            q.is_spsc()
        );
        // Cancelled reservations wedge nothing: the ring still fills to capacity.
        for i in 0..8u8 {
            let mut r = q.reserve(1).unwrap();
            r[0] = i;
            r.commit(1).unwrap();
        }
        assert_eq!(q.reserve(1).err(), Some(SendError::Full));
        assert_eq!(recv_all(&q).concat(), [0, 1, 2, 3, 4, 5, 6, 7]);
        let s = q.stats();
        assert_eq!((s.enqueued, s.dequeued, s.len), (10, 10, 0), "{s:?}");
    }
}

#[test]
fn consume_holds_the_slot_until_released() {
    for q in both(8, 2) {
        q.enqueue_try(b"1").unwrap();
        q.enqueue_try(b"2").unwrap();
        let m = q.consume().unwrap();
        assert_eq!(&*m, b"1");
        // The held slot is not free for producers yet.
        assert_eq!(q.enqueue_try(b"3"), Err(SendError::Full));
        m.release();
        q.enqueue_try(b"3").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(&buf[..1], b"2");
        assert_eq!(&*q.consume().unwrap(), b"3");
        assert_eq!(q.consume().err(), Some(RecvError::Empty));
    }
}

#[test]
fn a_shared_spsc_handle_reports_the_role_held_by_a_guard() {
    let q = Queue::in_process(&QueueConfig::new(8, 4).spsc(true)).unwrap();
    let me = std::process::id();
    let r = q.reserve(1).unwrap();
    assert_eq!(
        q.enqueue_try(b"x"),
        Err(SendError::RoleTaken {
            role: "producer",
            pid: me
        })
    );
    r.commit(0).unwrap();
    q.enqueue_try(b"x").unwrap();
    let c = q.consume().unwrap();
    assert_eq!(
        q.dequeue_try(&mut [0u8; 8]),
        Err(RecvError::RoleTaken {
            role: "consumer",
            pid: me
        })
    );
    drop(c);
    assert_eq!(q.dequeue_try(&mut [0u8; 8]), Ok(1));
}

#[test]
fn multi_producer_guards_may_interleave_and_move_threads() {
    let q = Queue::in_process(&QueueConfig::new(8, 8)).unwrap();
    let mut a = q.reserve(1).unwrap();
    let mut b = q.reserve(1).unwrap();
    q.enqueue_try(b"c").unwrap();
    b[0] = b'b';
    a[0] = b'a';
    std::thread::scope(|s| {
        s.spawn(move || b.commit(1).unwrap());
    });
    // "a" was claimed first: consumers wait for it.
    assert_eq!(q.consume().err(), Some(RecvError::Empty));
    a.commit(1).unwrap();
    let held = q.consume().unwrap();
    let got: Vec<u8> = std::thread::scope(|s| {
        s.spawn(|| {
            let mut v = vec![held[0]];
            drop(held);
            v.extend(recv_all(&q).concat());
            v
        })
        .join()
        .unwrap()
    });
    assert_eq!(got, b"abc");
}

#[test]
fn blocking_variants_wait_and_time_out() {
    for q in both(8, 2) {
        assert_eq!(
            q.consume_block(Some(Duration::from_millis(20))).err(),
            Some(RecvError::Timeout)
        );
        q.enqueue_try(b"1").unwrap();
        q.enqueue_try(b"2").unwrap();
        assert_eq!(
            q.reserve_block(1, Some(Duration::from_millis(20))).err(),
            Some(SendError::Timeout)
        );
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut r = q.reserve_block(1, Some(WAIT)).unwrap();
                r[0] = b'3';
                r.commit(1).unwrap();
            });
            std::thread::sleep(Duration::from_millis(30));
            let mut buf = [0u8; 8];
            q.dequeue_block(&mut buf, Some(WAIT)).unwrap();
            h.join().unwrap();
        });
        assert_eq!(&*q.consume_until(None).unwrap(), b"2");
        assert_eq!(&*q.consume_block(Some(WAIT)).unwrap(), b"3");
    }
}

#[test]
fn close_during_a_reservation_delivers_its_commit_then_closed() {
    let q = Queue::in_process(&QueueConfig::new(8, 4)).unwrap();
    let mut r = q.reserve(1).unwrap();
    r[0] = 7;
    q.close();
    assert_eq!(q.reserve(1).err(), Some(SendError::Closed));
    r.commit(1).unwrap();
    assert_eq!(&*q.consume().unwrap(), &[7]);
    assert_eq!(q.consume().err(), Some(RecvError::Closed));

    // Single producer: the producer's own close.
    let target = common::posix("zc-close-spsc");
    let q = Queue::create(&target, &QueueConfig::new(8, 4).spsc(true)).unwrap();
    let mut c = Queue::open(&target).unwrap().into_consumer().unwrap();
    let mut p = q.into_producer().unwrap();
    let mut r = p.reserve(1).unwrap();
    r[0] = 9;
    r.commit(1).unwrap();
    let r = p.reserve(1).unwrap();
    drop(r);
    p.close();
    assert_eq!(p.reserve(1).err(), Some(SendError::Closed));
    assert_eq!(&*c.consume().unwrap(), &[9]);
    assert_eq!(c.consume().err(), Some(RecvError::Closed));
}

#[test]
fn producer_and_consumer_ends_zero_copy_across_the_wrap() {
    for spsc in [false, true] {
        let target = common::posix("zc-ends");
        let _q = Queue::create(&target, &QueueConfig::new(32, 4).spsc(spsc)).unwrap();
        let mut p = Queue::open(&target).unwrap().into_producer().unwrap();
        let mut c = Queue::open(&target).unwrap().into_consumer().unwrap();
        for i in 0..1000u64 {
            let m = make_msg(1, i, 16 + (i % 17) as usize);
            let mut r = p.reserve_block(32, Some(WAIT)).unwrap();
            r[..m.len()].copy_from_slice(&m);
            r.commit(m.len()).unwrap();
            let got = c.consume_block(Some(WAIT)).unwrap();
            assert_eq!(&*got, &m[..]);
        }
    }
}

#[test]
fn batches_partial_when_full_and_empty_across_the_wrap() {
    for q in both(8, 4) {
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; (i % 9) as usize]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        let mut next_in = 0;
        let mut out = Vec::new();
        // Odd batch sizes over a ring of 4 wrap many times.
        for round in 0..40 {
            if next_in < refs.len() {
                match q.enqueue_batch(&refs[next_in..(next_in + 3).min(refs.len())]) {
                    Ok(n) => next_in += n,
                    Err(SendError::Full) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let max = 1 + round % 3;
            match q.dequeue_batch(max, |m| out.push(m.to_vec())) {
                Ok(n) => assert!(n <= max),
                Err(RecvError::Empty) => {}
                Err(e) => panic!("{e}"),
            }
            if next_in == refs.len() && q.is_empty() {
                break;
            }
        }
        assert_eq!(out, msgs, "spsc {}", q.is_spsc());
        // Full: a batch takes what fits.
        assert_eq!(q.enqueue_batch(&refs), Ok(4));
        assert_eq!(q.enqueue_batch(&refs), Err(SendError::Full));
        let mut n = 0;
        assert_eq!(q.dequeue_batch(100, |_| n += 1), Ok(4));
        assert_eq!(n, 4);
        assert_eq!(q.dequeue_batch(100, |_| ()), Err(RecvError::Empty));
        // A too-large message ends a batch; alone it is an error.
        let big = [0u8; 9];
        assert_eq!(q.enqueue_batch(&[b"a", &big, b"c"]), Ok(1));
        assert_eq!(
            q.enqueue_batch(&[&big, b"c"]),
            Err(SendError::TooLarge { len: 9, max: 8 })
        );
        assert_eq!(q.enqueue_batch(&[]), Ok(0));
        let s = q.stats();
        assert_eq!((s.enqueued, s.dequeued, s.len), (15, 14, 1), "{s:?}");
    }
}

#[test]
fn batch_into_a_flat_buffer_takes_what_fits() {
    for q in both(8, 8) {
        q.enqueue_batch(&[b"ab", b"cde", b"", b"fghij"]).unwrap();
        let mut buf = [0u8; 4];
        let mut lens = [0usize; 8];
        assert_eq!(
            q.dequeue_batch_into(&mut buf[..1], &mut lens),
            Err(RecvError::BufferTooSmall { needed: 2 })
        );
        assert_eq!(q.dequeue_batch_into(&mut buf, &mut lens), Ok(1));
        assert_eq!((&buf[..2], lens[0]), (&b"ab"[..], 2));
        let mut buf = [0u8; 16];
        assert_eq!(q.dequeue_batch_into(&mut buf, &mut lens[..2]), Ok(2));
        assert_eq!(&lens[..2], &[3, 0]);
        assert_eq!(q.dequeue_batch_into(&mut buf, &mut lens), Ok(1));
        assert_eq!((&buf[..5], lens[0]), (&b"fghij"[..], 5));
    }
}

#[test]
fn batches_skip_tombstones_and_close() {
    let q = Queue::in_process(&QueueConfig::new(8, 8)).unwrap();
    q.reserve(1).unwrap().cancel();
    q.reserve(1).unwrap().cancel();
    q.enqueue_try(b"x").unwrap();
    let mut got = Vec::new();
    assert_eq!(q.dequeue_batch(8, |m| got.push(m.to_vec())), Ok(1));
    assert_eq!(got, [b"x".to_vec()]);
    q.enqueue_batch(&[b"y", b"z"]).unwrap();
    q.close();
    assert_eq!(q.enqueue_batch(&[b"w"]), Err(SendError::Closed));
    assert_eq!(
        q.dequeue_batch_block(8, |m| got.push(m.to_vec()), Some(WAIT)),
        Ok(2)
    );
    assert_eq!(
        q.dequeue_batch_block(8, |_| (), Some(WAIT)),
        Err(RecvError::Closed)
    );
    assert_eq!(q.stats().tombstones, 2);
}

#[test]
fn a_panicking_batch_callback_loses_nothing_unseen() {
    for q in both(8, 8) {
        q.enqueue_batch(&[b"1", b"2", b"3", b"4"]).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.dequeue_batch(8, |m| {
                if m == b"2" {
                    panic!("application bug");
                }
            })
        }));
        assert!(r.is_err());
        let mut rest = Vec::new();
        while let Ok(n) = q.dequeue_batch(8, |m| rest.push(m[0])) {
            assert!(n > 0);
        }
        assert_eq!(rest, b"34", "spsc {}", q.is_spsc());
    }
}

#[test]
fn threads_batch_exactly_once_in_producer_order() {
    const PER: u64 = 20_000;
    for spsc in [false, true] {
        let q = Queue::in_process(&QueueConfig::new(16, 64).spsc(spsc)).unwrap();
        let producers = if spsc { 1 } else { 2 };
        let got = std::thread::scope(|s| {
            for p in 0..producers {
                let q = &q;
                s.spawn(move || {
                    let msgs: Vec<Vec<u8>> = (0..PER).map(|i| make_msg(p, i, 16)).collect();
                    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
                    let mut at = 0;
                    while at < refs.len() {
                        let end = (at + 32).min(refs.len());
                        at += q.enqueue_batch_block(&refs[at..end], Some(WAIT)).unwrap();
                    }
                });
            }
            let consumer = s.spawn(|| {
                let mut got = Vec::new();
                while got.len() < (producers as u64 * PER) as usize {
                    q.dequeue_batch_block(32, |m| got.push(check_msg(m).unwrap()), Some(WAIT))
                        .unwrap();
                }
                got
            });
            consumer.join().unwrap()
        });
        for p in 0..producers {
            let seqs: Vec<u64> = got.iter().filter(|g| g.0 == p).map(|g| g.1).collect();
            assert_eq!(
                seqs,
                (0..PER).collect::<Vec<_>>(),
                "spsc {spsc}, producer {p}"
            );
        }
    }
}

// ---- crash recovery ----

fn target_of(args: &[String]) -> Target {
    Target::Posix(args[0].clone())
}

/// Reserves a slot, writes message `args[1]`, commits.
fn reserve_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    let seq: u64 = args[1].parse().unwrap();
    let m = make_msg(1, seq, 32);
    let mut r = q.reserve_block(m.len(), Some(WAIT)).unwrap();
    r.copy_from_slice(&m);
    r.commit(m.len()).unwrap();
}

/// Consumes one message in place and releases it.
fn consume_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    let m = q.consume_block(Some(WAIT)).unwrap();
    check_msg(&m).unwrap();
    m.release();
}

/// Enqueues messages args[1].. args[1]+3 in one batch.
fn batch_in_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    let first: u64 = args[1].parse().unwrap();
    let msgs: Vec<Vec<u8>> = (first..first + 4).map(|i| make_msg(1, i, 32)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    assert_eq!(q.enqueue_batch_block(&refs, Some(WAIT)), Ok(4));
}

/// Dequeues a batch of up to 4.
fn batch_out_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    q.dequeue_batch_block(4, |m| assert!(check_msg(m).is_ok()), Some(WAIT))
        .unwrap();
}

fn killed_at(role: &str, args: &[String], point: &str) {
    let fp = format!("{point}:kill");
    let mut child = Proc::spawn_env(role, args, &[("SHMQ_FAILPOINT", &fp)]);
    let status = child.wait(WAIT);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{role} was killed at {point}");
}

fn new_queue(tag: &str, cap: usize, spsc: bool) -> (common::Guard, Queue, String) {
    let target = common::posix(tag);
    let q = Queue::create(&target, &QueueConfig::new(64, cap).spsc(spsc)).unwrap();
    let name = match &*target {
        Target::Posix(n) => n.clone(),
        _ => unreachable!(),
    };
    (target, q, name)
}

fn recv_seqs(q: &Queue, n: usize) -> Vec<u64> {
    let mut got: Vec<u64> = (0..n)
        .map(|_| check_msg(&q.consume_block(Some(WAIT)).unwrap()).unwrap().1)
        .collect();
    got.sort_unstable();
    got
}

#[test]
fn a_producer_killed_holding_a_reservation_leaves_a_tombstone() {
    for spsc in [false, true] {
        let (_t, q, name) = new_queue("zc-res-kill", 8, spsc);
        if !spsc {
            q.enqueue_try(&make_msg(1, 0, 32)).unwrap();
        }
        killed_at(
            "reserve",
            &[name.clone(), "1".into()],
            "queue-reserve-committing",
        );
        if spsc {
            // The dead producer's role is taken over; its slot is reused.
            let r = Queue::open(&Target::Posix(name.clone())).unwrap();
            r.enqueue_try(&make_msg(1, 0, 32)).unwrap();
            r.enqueue_try(&make_msg(1, 2, 32)).unwrap();
            assert_eq!(recv_seqs(&q, 2), [0, 2]);
        } else {
            q.enqueue_try(&make_msg(1, 2, 32)).unwrap();
            assert_eq!(recv_seqs(&q, 2), [0, 2]);
            let s = q.stats();
            assert_eq!((s.dead_claims, s.len), (1, 0), "{s:?}");
        }
        assert_eq!(q.consume().err(), Some(RecvError::Empty));
    }
}

#[test]
fn a_consumer_killed_holding_a_guard_has_the_message_delivered_again() {
    for spsc in [false, true] {
        let (_t, q, name) = new_queue("zc-con-kill", 4, spsc);
        let p = Queue::open(&Target::Posix(name.clone())).unwrap();
        p.enqueue_try(&make_msg(1, 0, 32)).unwrap();
        p.enqueue_try(&make_msg(1, 1, 32)).unwrap();
        killed_at(
            "consume",
            std::slice::from_ref(&name),
            "queue-consume-releasing",
        );
        assert_eq!(recv_seqs(&q, 2), [0, 1], "spsc {spsc}: each once");
        if !spsc {
            assert_eq!(q.stats().redelivered, 1);
        }
    }
}

#[test]
fn a_producer_killed_mid_batch_loses_no_published_message() {
    for spsc in [false, true] {
        for point in ["queue-batch-claimed", "queue-batch-published-one"] {
            if spsc && point == "queue-batch-claimed" {
                continue; // no claim in single-producer mode
            }
            let (_t, q, name) = new_queue("zc-batch-in", 8, spsc);
            killed_at("batch_in", &[name.clone(), "10".into()], point);
            // A batch's first slot is published last. A single-producer
            // batch becomes visible at that stamp: the dead one published
            // nothing. A multi-producer range is recovered slot by slot: the
            // one published slot (the second) arrives, the rest are
            // tombstones.
            let published: &[u64] = if point == "queue-batch-claimed" || spsc {
                &[]
            } else {
                &[11]
            };
            assert_eq!(recv_seqs(&q, published.len()), published);
            let mut buf = [0u8; 64];
            assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
            // The rest of the range never arrives, and wedges nothing: one
            // message at a time, so that a stamp the dead producer left on
            // the next slot would be taken for the second one.
            let p = Queue::open(&Target::Posix(name.clone())).unwrap();
            p.enqueue_try(&make_msg(1, 20, 32)).unwrap();
            assert_eq!(recv_seqs(&q, 1), [20], "spsc {spsc} {point}");
            assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
            p.enqueue_try(&make_msg(1, 21, 32)).unwrap();
            assert_eq!(recv_seqs(&q, 1), [21], "spsc {spsc} {point}");
            if !spsc {
                assert_eq!(q.stats().dead_claims, 4 - published.len() as u64);
            }
        }
    }
}

#[test]
fn a_single_producer_killed_before_its_batchs_tail_store_loses_and_wedges_nothing() {
    for then_close in [false, true] {
        let (_t, q, name) = new_queue("zc-batch-stamped", 8, true);
        killed_at(
            "batch_in",
            &[name.clone(), "10".into()],
            "queue-batch-stamped",
        );
        // Every slot is stamped, tail still names the batch's first one.
        assert_eq!(recv_seqs(&q, 4), [10, 11, 12, 13]);
        let mut buf = [0u8; 64];
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
        if then_close {
            // Closed with its producer dead: drained, though tail lags.
            q.close();
            assert_eq!(
                q.dequeue_block(&mut buf, Some(WAIT)),
                Err(RecvError::Closed)
            );
        } else {
            // The next producer starts after the batch, not over it.
            let p = Queue::open(&Target::Posix(name.clone())).unwrap();
            p.enqueue_try(&make_msg(1, 20, 32)).unwrap();
            assert_eq!(recv_seqs(&q, 1), [20]);
            assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
        }
    }
}

#[test]
fn a_consumer_killed_mid_batch_has_the_batch_delivered_again() {
    for spsc in [false, true] {
        let (_t, q, name) = new_queue("zc-batch-out", 8, spsc);
        let p = Queue::open(&Target::Posix(name.clone())).unwrap();
        let msgs: Vec<Vec<u8>> = (0..3).map(|i| make_msg(1, i, 32)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        p.enqueue_batch(&refs).unwrap();
        let point = if spsc {
            "queue-consume-releasing" // never hit: use a kill by the batch itself below
        } else {
            "queue-batch-consume-claimed"
        };
        if spsc {
            // Single consumer: the batch's head store is the release; kill
            // the child while it holds a consume guard instead.
            killed_at("consume", std::slice::from_ref(&name), point);
        } else {
            killed_at("batch_out", std::slice::from_ref(&name), point);
        }
        assert_eq!(recv_seqs(&q, 3), [0, 1, 2], "spsc {spsc}: each once");
        if !spsc {
            assert_eq!(q.stats().redelivered, 3);
        }
    }
}
