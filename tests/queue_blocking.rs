//! Blocking calls of the work queue: timeouts give `Timeout`; a process
//! blocked in `dequeue_block` / `enqueue_block` is woken promptly when
//! ANOTHER process enqueues, dequeues or closes; `close()` lets consumers
//! drain, then reports `Closed`.
//!
//! The wake tests check function, not speed: the blocked child uses a 10 s
//! timeout and must return well before it (under 5 s) with the right result.

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{report, Guard, Proc};
use shmq::layout;
use shmq::{Queue, QueueConfig, RecvError, SendError, Target, WaitStrategy};

common::child_roles! {
    "blocked_consumer" => blocked_consumer,
    "blocked_producer" => blocked_producer,
    "drainer" => drainer,
}

/// How long a blocked child waits at most; it must be woken long before.
const CHILD_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound accepted for a wake-up (a functional check, not a speed one).
const WAKE_BOUND: Duration = Duration::from_secs(5);
/// How long the parent lets the child sit blocked before acting.
const ACT_AFTER: Duration = Duration::from_millis(200);

/// Child: args = target. Blocks in `dequeue_block` for at most 10 s and reports
/// `ok MESSAGE waited_us N` or `err ERROR waited_us N`.
fn blocked_consumer(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let q = Queue::open(&target).expect("consumer opens the queue");
    let mut buf = vec![0u8; q.slot_size()];
    let started = Instant::now();
    let r = q.dequeue_block(&mut buf, Some(CHILD_TIMEOUT));
    let waited = started.elapsed().as_micros();
    match r {
        Ok(n) => report(format!(
            "ok {} waited_us {waited}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(e) => report(format!("err {e:?} waited_us {waited}")),
    }
}

/// Child: args = target, message. Blocks in `enqueue_block` for at most 10 s
/// and reports `ok - waited_us N` or `err ERROR waited_us N`.
fn blocked_producer(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let q = Queue::open(&target).expect("producer opens the queue");
    let started = Instant::now();
    let r = q.enqueue_block(args[1].as_bytes(), Some(CHILD_TIMEOUT));
    let waited = started.elapsed().as_micros();
    match r {
        Ok(()) => report(format!("ok - waited_us {waited}")),
        Err(e) => report(format!("err {e:?} waited_us {waited}")),
    }
}

/// Child: args = target. Reads with `dequeue_block` until `Closed`, reporting
/// each message as `msg TEXT`, then `closed`.
fn drainer(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let q = Queue::open(&target).expect("drainer opens the queue");
    let mut buf = vec![0u8; q.slot_size()];
    loop {
        match q.dequeue_block(&mut buf, Some(CHILD_TIMEOUT)) {
            Ok(n) => report(format!("msg {}", String::from_utf8_lossy(&buf[..n]))),
            Err(RecvError::Closed) => break,
            Err(e) => panic!("drainer: {e}"),
        }
    }
    // Closed and drained stays so, for try and block alike.
    assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
    report("closed");
}

/// Spawns `role` on `target`, waits until it has attached to the queue (it
/// is listed in the process table), then a little longer so it sits blocked.
fn spawn_blocked(q: &Queue, role: &str, args: &[String]) -> Proc {
    let child = Proc::spawn(role, args);
    let pid = child.pid();
    assert!(
        common::wait_until(Duration::from_secs(30), || q
            .attached()
            .iter()
            .any(|a| a.pid == pid)),
        "child {role} never attached"
    );
    std::thread::sleep(ACT_AFTER);
    child
}

/// Waits for a blocked child and returns its one result line split into
/// (outcome, detail, waited).
fn blocked_result(mut child: Proc) -> (String, String, Duration) {
    child.wait_ok(Duration::from_secs(30));
    let lines = child.results();
    assert_eq!(lines.len(), 1, "child output: {lines:?}");
    let w: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(w.len(), 4, "child output: {lines:?}");
    assert_eq!(w[2], "waited_us");
    let waited = Duration::from_micros(w[3].parse().unwrap());
    (w[0].to_owned(), w[1].to_owned(), waited)
}

fn each_backing(tag: &str, mut f: impl FnMut(&Guard)) {
    for target in common::all_backings(tag) {
        f(&target);
    }
}

// ---- timeouts ----

#[test]
fn dequeue_block_times_out_on_empty_queue() {
    each_backing("deq-timeout", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 4)).unwrap();
        let mut buf = [0u8; 32];
        let started = Instant::now();
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::from_millis(100))),
            Err(RecvError::Timeout)
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(100),
            "returned Timeout early, after {waited:?}"
        );
        assert!(waited < WAKE_BOUND, "took {waited:?}");
        // A deadline already passed: Timeout at once, no message invented.
        assert_eq!(
            q.dequeue_until(&mut buf, Some(Instant::now())),
            Err(RecvError::Timeout)
        );
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::ZERO)),
            Err(RecvError::Timeout)
        );
        // The busy-spinning strategy honours timeouts too.
        let spin = Queue::open(target)
            .unwrap()
            .with_wait_strategy(WaitStrategy::BusySpin);
        assert_eq!(
            spin.dequeue_block(&mut buf, Some(Duration::from_millis(20))),
            Err(RecvError::Timeout)
        );
        // A message that arrives before the deadline is returned.
        q.enqueue_try(b"late").unwrap();
        assert_eq!(
            q.dequeue_block(&mut buf, Some(Duration::from_millis(100))),
            Ok(4)
        );
        assert_eq!(&buf[..4], b"late");
    });
}

#[test]
fn enqueue_block_times_out_on_full_queue() {
    each_backing("enq-timeout", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 4)).unwrap();
        for i in 0..4u8 {
            q.enqueue_try(&[i]).unwrap();
        }
        let started = Instant::now();
        assert_eq!(
            q.enqueue_block(b"x", Some(Duration::from_millis(100))),
            Err(SendError::Timeout)
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(100),
            "returned Timeout early, after {waited:?}"
        );
        assert!(waited < WAKE_BOUND, "took {waited:?}");
        assert_eq!(
            q.enqueue_until(b"x", Some(Instant::now())),
            Err(SendError::Timeout)
        );
        let spin = Queue::open(target)
            .unwrap()
            .with_wait_strategy(WaitStrategy::BusySpin);
        assert_eq!(
            spin.enqueue_block(b"x", Some(Duration::from_millis(20))),
            Err(SendError::Timeout)
        );
        // Nothing was written by the timed-out calls: the four messages, in order.
        assert_eq!(q.stats().enqueued, 4);
        let mut buf = [0u8; 32];
        for i in 0..4u8 {
            assert_eq!(q.dequeue_try(&mut buf), Ok(1));
            assert_eq!(buf[0], i);
        }
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
    });
}

// ---- wake-ups across processes ----

#[test]
fn blocked_consumer_process_wakes_on_enqueue() {
    each_backing("wake-deq", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 8)).unwrap();
        let child = spawn_blocked(&q, "blocked_consumer", &[target.to_string()]);
        q.enqueue_try(b"wake-up").unwrap();
        let (outcome, detail, waited) = blocked_result(child);
        assert_eq!((outcome.as_str(), detail.as_str()), ("ok", "wake-up"));
        assert!(
            waited < WAKE_BOUND,
            "{}: consumer woke only after {waited:?}",
            target.0
        );
        eprintln!("{}: consumer blocked {waited:?} in all", target.0);
        assert!(q.is_empty());
    });
}

#[test]
fn blocked_producer_process_wakes_on_dequeue() {
    each_backing("wake-enq", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 4)).unwrap();
        for i in 0..4 {
            q.enqueue_try(format!("old{i}").as_bytes()).unwrap();
        }
        let child = spawn_blocked(&q, "blocked_producer", &[target.to_string(), "new".into()]);
        let mut buf = [0u8; 32];
        assert_eq!(q.dequeue_try(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"old0");
        let (outcome, _, waited) = blocked_result(child);
        assert_eq!(outcome, "ok");
        assert!(
            waited < WAKE_BOUND,
            "{}: producer woke only after {waited:?}",
            target.0
        );
        eprintln!("{}: producer blocked {waited:?} in all", target.0);
        // The child's message went in behind the survivors.
        let mut got = Vec::new();
        while let Ok(n) = q.dequeue_try(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got, ["old1", "old2", "old3", "new"]);
    });
}

#[test]
fn close_from_another_process_wakes_blocked_consumer() {
    each_backing("close-deq", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 8)).unwrap();
        let child = spawn_blocked(&q, "blocked_consumer", &[target.to_string()]);
        q.close();
        let (outcome, detail, waited) = blocked_result(child);
        assert_eq!((outcome.as_str(), detail.as_str()), ("err", "Closed"));
        assert!(
            waited < WAKE_BOUND,
            "{}: close woke the consumer only after {waited:?}",
            target.0
        );
    });
}

#[test]
fn close_from_another_process_wakes_blocked_producer() {
    each_backing("close-enq", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 2)).unwrap();
        q.enqueue_try(b"a").unwrap();
        q.enqueue_try(b"b").unwrap();
        let child = spawn_blocked(&q, "blocked_producer", &[target.to_string(), "c".into()]);
        q.close();
        let (outcome, detail, waited) = blocked_result(child);
        assert_eq!((outcome.as_str(), detail.as_str()), ("err", "Closed"));
        assert!(
            waited < WAKE_BOUND,
            "{}: close woke the producer only after {waited:?}",
            target.0
        );
        // The refused message was not written; the two before it drain.
        let mut buf = [0u8; 32];
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
        assert_eq!(buf[0], b'b');
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
    });
}

#[test]
fn close_drains_then_reports_closed() {
    each_backing("close-drain", |target| {
        let q = Queue::create(target, &QueueConfig::new(32, 8)).unwrap();
        for i in 0..5 {
            q.enqueue_try(format!("m{i}").as_bytes()).unwrap();
        }
        assert!(!q.is_closed());
        q.close();
        q.close(); // idempotent
        assert!(q.is_closed());
        assert!(
            Queue::open(target).unwrap().is_closed(),
            "closed is visible to every handle"
        );
        // Producers are refused, whichever call they use; nothing is written.
        assert_eq!(q.enqueue_try(b"no"), Err(SendError::Closed));
        assert_eq!(
            q.enqueue_block(b"no", Some(Duration::from_secs(5))),
            Err(SendError::Closed)
        );
        assert_eq!(q.enqueue_shift(b"no"), Err(SendError::Closed));
        assert_eq!(q.len(), 5);
        // Another process drains the five, then sees Closed.
        let mut child = Proc::spawn("drainer", &[target.to_string()]);
        child.wait_ok(Duration::from_secs(30));
        assert_eq!(
            child.results(),
            ["msg m0", "msg m1", "msg m2", "msg m3", "msg m4", "closed"]
        );
        // And so does this one, without waiting.
        let mut buf = [0u8; 32];
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
        let started = Instant::now();
        assert_eq!(
            q.dequeue_block(&mut buf, Some(CHILD_TIMEOUT)),
            Err(RecvError::Closed)
        );
        assert!(started.elapsed() < WAKE_BOUND);
        let s = q.stats();
        assert_eq!((s.enqueued, s.dequeued, s.len), (5, 5, 0), "{s:?}");
    });
}

// ---- threads of one process ----

#[test]
fn close_wakes_every_blocked_thread() {
    let q = Arc::new(Queue::in_process(&QueueConfig::new(16, 2)).unwrap());
    q.enqueue_try(b"1").unwrap();
    q.enqueue_try(b"2").unwrap();
    let full = Arc::new(Queue::in_process(&QueueConfig::new(16, 2)).unwrap());
    let (tx, rx) = mpsc::channel();
    // Three consumers drain the two messages, then block on the empty queue;
    // two producers block on a full queue.
    for _ in 0..3 {
        let (q, tx) = (q.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let mut got = 0;
            let end = loop {
                match q.dequeue_block(&mut buf, Some(CHILD_TIMEOUT)) {
                    Ok(_) => got += 1,
                    Err(e) => break e,
                }
            };
            tx.send(format!("consumer {got} {end:?}")).unwrap();
        });
    }
    full.enqueue_try(b"a").unwrap();
    full.enqueue_try(b"b").unwrap();
    for _ in 0..2 {
        let (full, tx) = (full.clone(), tx.clone());
        std::thread::spawn(move || {
            let r = full.enqueue_block(b"c", Some(CHILD_TIMEOUT));
            tx.send(format!("producer {r:?}")).unwrap();
        });
    }
    assert!(common::wait_until(Duration::from_secs(10), || q.is_empty()));
    std::thread::sleep(ACT_AFTER);
    let started = Instant::now();
    q.close();
    full.close();
    let mut results: Vec<String> = (0..5)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("a blocked thread was never woken")
        })
        .collect();
    assert!(
        started.elapsed() < WAKE_BOUND,
        "woken only after {:?}",
        started.elapsed()
    );
    results.sort();
    let consumed: usize = results[..3]
        .iter()
        .map(|r| r.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(consumed, 2, "{results:?}");
    assert!(
        results[..3].iter().all(|r| r.ends_with("Closed")),
        "{results:?}"
    );
    assert_eq!(
        results[3..],
        ["producer Err(Closed)", "producer Err(Closed)"]
    );
}

#[test]
fn a_tombstone_left_by_a_close_race_is_not_a_message_waiting() {
    // The state a close racing with a producer leaves: consumers saw the
    // queue closed and drained at position 3; a producer that had passed its
    // closed check just before then claimed position 3, saw the close and
    // published a tombstone there. No consumer will ever skip it. Crafted
    // here (the race itself is too narrow to force), it must not count as a
    // message waiting, nor keep the dequeued count short.
    let target = common::posix("stranded");
    let q = Queue::create(&target, &QueueConfig::new(32, 4)).unwrap();
    let mut buf = [0u8; 32];
    for i in 0..3u8 {
        q.enqueue_try(&[i]).unwrap();
        assert_eq!(q.dequeue_try(&mut buf), Ok(1));
    }
    q.close();
    assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
    let p = *q.params();
    let seg = shmq::Segment::open(&target).unwrap();
    let pos = 3u64;
    let slot_at = p.slots_offset + (pos % p.capacity) * p.slot_stride as u64;
    assert!(slot_at as usize + layout::SLOT_HEADER_SIZE <= seg.len());
    // SAFETY: the header and the slot lie inside the mapping (validated by
    // open, and checked above); both are only touched through atomics.
    let (hdr, slot) = unsafe {
        (
            &*(seg.as_ptr() as *const layout::Header),
            &*(seg.as_ptr().add(slot_at as usize) as *const layout::SlotHeader),
        )
    };
    hdr.tail.value.store(pos + 1, Ordering::SeqCst);
    slot.len.store(0, Ordering::Relaxed);
    slot.flags.store(layout::SLOT_TOMBSTONE, Ordering::Relaxed);
    hdr.stats.tombstones.fetch_add(1, Ordering::Relaxed);
    slot.stamp.store((pos + 1) << 1, Ordering::Release);

    assert_eq!(q.len(), 0);
    assert!(q.is_empty());
    let s = q.stats();
    assert_eq!(
        (s.enqueued, s.dequeued, s.tombstones, s.len),
        (3, 3, 1, 0),
        "{s:?}"
    );
    assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
    // A consumer that does come by skips it; the counts stay right.
    let s = q.stats();
    assert_eq!((s.enqueued, s.dequeued, s.len), (3, 3, 0), "{s:?}");
}
