//! Unit tests of the single-publisher log, batched cursors, batch and
//! in-place calls (heap regions and POSIX segments, threads of one process).

use super::*;

use std::thread;

use crate::layout::{CLOSED_QUIET, OPEN};

const T: Option<Duration> = Some(Duration::from_secs(10));

fn single(slot: usize, cap: usize) -> Log {
    Log::in_process(&LogConfig::new(slot, cap).single_publisher(true)).unwrap()
}

fn single_reliable(slot: usize, cap: usize) -> Log {
    Log::in_process(
        &LogConfig::new(slot, cap)
            .single_publisher(true)
            .mode(LogMode::Reliable),
    )
    .unwrap()
}

/// A POSIX target unique to this test, unlinked on drop.
struct Posix(Target);

impl Posix {
    fn new(tag: &str) -> Posix {
        static N: AtomicU64 = AtomicU64::new(0);
        // Relaxed: a counter for unique names.
        let n = N.fetch_add(1, Ordering::Relaxed);
        Posix(Target::Posix(format!(
            "shmq-unit-sp-{tag}-{}-{n}",
            std::process::id()
        )))
    }
}

impl Drop for Posix {
    fn drop(&mut self) {
        let _ = self.0.unlink();
    }
}

#[test]
fn the_kind_is_in_the_header() {
    let l = single(8, 4);
    assert!(l.is_single_publisher());
    assert_ne!(l.params().flags & LOG_FLAG_SINGLE_PUBLISHER, 0);
    assert!(!log_mp().is_single_publisher());
    assert_eq!(l.publisher(), None);
    l.publish(b"x").unwrap();
    assert_eq!(l.publisher(), Some((std::process::id(), true)));
}

fn log_mp() -> Log {
    Log::in_process(&LogConfig::new(8, 4)).unwrap()
}

#[test]
fn a_second_live_publisher_is_refused_until_the_first_lets_go() {
    let t = Posix::new("second");
    let config = LogConfig::new(16, 8).single_publisher(true);
    let a = Log::create(&t.0, &config).unwrap();
    let b = Log::open(&t.0).unwrap();
    let mut sub = b.subscribe(Start::Latest).unwrap();
    assert_eq!(a.publish(b"from a"), Ok(0));
    let me = std::process::id();
    assert_eq!(
        b.publish(b"from b"),
        Err(SendError::RoleTaken {
            role: "publisher",
            pid: me
        })
    );
    assert!(matches!(
        b.clone().into_publisher(),
        Err(Error::RoleTaken { pid, .. }) if pid == me
    ));
    // The holder's mapping goes away: the role is free again.
    drop(a);
    let mut p = b.clone().into_publisher().unwrap();
    assert_eq!(p.publish(b"from b"), Ok(1));
    // Lent to `p`: the log handle of the same mapping may not publish.
    assert!(matches!(b.publish(b"x"), Err(SendError::RoleTaken { .. })));
    let mut buf = [0u8; 16];
    assert_eq!(sub.recv_try(&mut buf), Ok(6));
    assert_eq!(&buf[..6], b"from a");
    assert_eq!(sub.recv_try(&mut buf), Ok(6));
    assert_eq!(&buf[..6], b"from b");
    drop(p);
    assert_eq!(b.publish(b"again"), Ok(2));
}

#[test]
fn a_dead_holders_role_is_taken_over_and_its_half_write_recovered() {
    let l = single(16, 8);
    let inner = &*l.inner;
    let mut sub = l.subscribe(Start::Latest).unwrap();
    let mut p = l.clone().into_publisher().unwrap();
    p.publish(b"zero").unwrap();
    // The holder publishes 1 but dies before storing tail, and dies in the
    // middle of writing 2 (stamp writing, half a payload).
    let _dead = p.role.take().unwrap();
    inner.sp_write(1, b"one");
    inner
        .slot(2)
        .stamp
        .store(inner.value(2, ST_WRITING) << 1, Ordering::Relaxed);
    // SAFETY: slot 2's payload holds 16 bytes; nobody else writes it.
    unsafe { Inner::payload(inner.slot(2)).write_bytes(b'?', 3) };
    assert_eq!(inner.tail(), 1);
    // Its token now names no live entry (a garbage/dead token).
    inner
        .region
        .header()
        .control
        .producer
        .store(0xdead_0000_ffff, Ordering::Relaxed);
    *inner.local() = LocalRole::Free;
    drop(p);
    let mut buf = [0u8; 16];
    assert_eq!(sub.recv_try(&mut buf), Ok(4));
    assert_eq!(sub.recv_try(&mut buf), Ok(3), "completed before the death");
    assert_eq!(
        sub.recv_try(&mut buf),
        Err(RecvError::Empty),
        "never the half write"
    );
    // A new publisher takes over: tail is repaired, 2 is written again.
    let mut q = l.clone().into_publisher().unwrap();
    assert_eq!(inner.tail(), 2);
    assert_eq!(q.next_seq(), 2);
    assert_eq!(q.publish(b"two"), Ok(2));
    assert_eq!(sub.recv_try(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"two");
}

#[test]
fn overwrite_lag_is_exact_with_a_racing_single_publisher() {
    const N: u64 = 200_000;
    let l = single(16, 16);
    let mut sub = l.subscribe(Start::Oldest).unwrap();
    let mut p = l.clone().into_publisher().unwrap();
    let t = thread::spawn(move || {
        for i in 0..N {
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&i.to_le_bytes());
            m[8..].copy_from_slice(&(!i).to_le_bytes());
            p.publish(&m).unwrap();
        }
        p.close();
    });
    let (mut got, mut lost, mut last) = (0u64, 0u64, None::<u64>);
    let mut buf = [0u8; 16];
    loop {
        match sub.recv_block(&mut buf, T) {
            Ok(16) => {
                let a = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let b = u64::from_le_bytes(buf[8..].try_into().unwrap());
                assert_eq!(a, !b, "torn read");
                assert_eq!(a, sub.position() - 1, "message at its position");
                assert!(last.is_none_or(|l| a > l));
                last = Some(a);
                got += 1;
            }
            Err(RecvError::Lagged(n)) => lost += n,
            Err(RecvError::Closed) => break,
            other => panic!("{other:?}"),
        }
    }
    t.join().unwrap();
    assert_eq!(got + lost, N, "received {got} + lagged {lost}");
    assert_eq!(l.stats().lagged, lost);
}

#[test]
fn close_by_another_mapping_waits_for_the_publishers_acknowledgement() {
    let t = Posix::new("close");
    let config = LogConfig::new(8, 8).single_publisher(true);
    let a = Log::create(&t.0, &config).unwrap();
    let b = Log::open(&t.0).unwrap();
    let mut sub = b.subscribe(Start::Latest).unwrap();
    a.publish(b"a").unwrap();
    b.close(); // not the holder: CLOSED, the holder may have a publish in flight
    let ctl = &b.inner.region.header().control;
    assert_ne!(ctl.closed.load(Ordering::Relaxed), OPEN);
    let mut buf = [0u8; 8];
    assert_eq!(sub.recv_try(&mut buf), Ok(1));
    assert_eq!(
        sub.recv_try(&mut buf),
        Err(RecvError::Empty),
        "not acknowledged yet"
    );
    assert_eq!(a.publish(b"b"), Err(SendError::Closed)); // acknowledges
    assert_eq!(ctl.closed.load(Ordering::Relaxed), CLOSED_QUIET);
    assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Closed));
}

#[test]
fn close_by_the_holder_and_release_of_the_role_end_the_stream() {
    let l = single(8, 8);
    let mut sub = l.subscribe(Start::Latest).unwrap();
    let p = l.clone().into_publisher().unwrap();
    let waiter = thread::spawn(move || {
        let mut buf = [0u8; 8];
        sub.recv_block(&mut buf, T)
    });
    thread::sleep(Duration::from_millis(30));
    p.close();
    assert_eq!(waiter.join().unwrap(), Err(RecvError::Closed));

    // Closed by a non-holder; the holder then goes away without publishing.
    let t = Posix::new("release");
    let config = LogConfig::new(8, 8).single_publisher(true);
    let a = Log::create(&t.0, &config)
        .unwrap()
        .into_publisher()
        .unwrap();
    let b = Log::open(&t.0).unwrap();
    let mut sub = b.subscribe(Start::Latest).unwrap();
    b.close();
    let waiter = thread::spawn(move || {
        let mut buf = [0u8; 8];
        sub.recv_block(&mut buf, T)
    });
    thread::sleep(Duration::from_millis(30));
    drop(a);
    assert_eq!(waiter.join().unwrap(), Err(RecvError::Closed));
}

#[test]
fn one_publish_wakes_every_sleeping_subscriber() {
    let l = single(8, 8);
    let subs: Vec<_> = (0..3)
        .map(|_| l.subscribe(Start::Latest).unwrap())
        .collect();
    let waiters: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            s.set_wait_strategy(WaitStrategy::SpinThenSleep {
                spin: Duration::ZERO,
            });
            thread::spawn(move || {
                let mut buf = [0u8; 8];
                let r = s.recv_block(&mut buf, T);
                (r, buf)
            })
        })
        .collect();
    let ctl = &l.inner.region.header().control;
    // Wait (bounded) until all three sleep on the one word.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl.sleepers.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let before = ctl.wake_seq.load(Ordering::Relaxed);
    l.publish(b"wake").unwrap();
    for w in waiters {
        let (r, buf) = w.join().unwrap();
        assert_eq!(r, Ok(4));
        assert_eq!(&buf[..4], b"wake");
    }
    let bumps = ctl.wake_seq.load(Ordering::Relaxed).wrapping_sub(before);
    assert!(bumps <= 1, "one publish, one wake for all ({bumps})");
    // Nobody sleeps: a publish makes no wake (the word is not bumped).
    let idle = ctl.wake_seq.load(Ordering::Relaxed);
    l.publish(b"quiet").unwrap();
    assert_eq!(ctl.wake_seq.load(Ordering::Relaxed), idle);
}

#[test]
fn reliable_single_publisher_is_gated_and_loses_nothing() {
    const N: u64 = 100_000;
    let l = single_reliable(16, 16);
    let subs: Vec<_> = (0..2)
        .map(|_| l.subscribe(Start::Latest).unwrap())
        .collect();
    let mut p = l.clone().into_publisher().unwrap();
    assert_eq!(subs[0].cursor_batch(), 2);
    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(k, mut s)| {
            thread::spawn(move || {
                let mut buf = [0u8; 16];
                let mut next = 0u64;
                loop {
                    // One reader receives in batches, the other one by one.
                    let r = if k == 0 {
                        let mut bad = None;
                        let r = s.recv_batch_with(7, |m| {
                            let v = u64::from_le_bytes(m[..8].try_into().unwrap());
                            if v != next {
                                bad = Some(v);
                            }
                            next += 1;
                        });
                        assert_eq!(bad, None, "reader {k} out of order");
                        match r {
                            Err(RecvError::Empty) => s.recv_block(&mut buf, T).map(|n| {
                                assert_eq!(n, 8);
                                let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                                assert_eq!(v, next, "reader {k}");
                                next += 1;
                            }),
                            r => r.map(|_| ()),
                        }
                    } else {
                        s.recv_block(&mut buf, T).map(|_| {
                            let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            assert_eq!(v, next, "reader {k}");
                            next += 1;
                        })
                    };
                    match r {
                        Ok(()) => {}
                        Err(RecvError::Closed) => return next,
                        Err(e) => panic!("reader {k}: {e:?} at {next}"),
                    }
                }
            })
        })
        .collect();
    let mut i = 0u64;
    while i < N {
        let batch: Vec<[u8; 8]> = (i..(i + 5).min(N)).map(|v| v.to_le_bytes()).collect();
        let refs: Vec<&[u8]> = batch.iter().map(|m| &m[..]).collect();
        let n = p.publish_batch_block(&refs, T).unwrap();
        assert!(n > 0);
        i += n as u64;
    }
    p.close();
    for r in readers {
        assert_eq!(r.join().unwrap(), N, "nothing lost, nothing twice");
    }
}

#[test]
fn a_subscriber_shows_its_cursor_in_batches_and_before_it_waits() {
    let l = single_reliable(8, 64);
    let mut sub = l.subscribe(Start::Latest).unwrap();
    assert_eq!(sub.cursor_batch(), 8);
    for i in 0..20u8 {
        l.publish(&[i]).unwrap();
    }
    let mut buf = [0u8; 8];
    for _ in 0..5 {
        sub.recv_try(&mut buf).unwrap();
    }
    let shown = |l: &Log| l.cursors()[0].position;
    assert_eq!(shown(&l), 0, "fewer than a batch: not shown yet");
    for _ in 0..5 {
        sub.recv_try(&mut buf).unwrap();
    }
    assert_eq!(shown(&l), 8, "a batch: shown");
    for _ in 0..10 {
        sub.recv_try(&mut buf).unwrap();
    }
    assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Empty));
    assert_eq!(shown(&l), 20, "nothing to read: all shown");
    assert_eq!(sub.lag(), 0, "the subscriber's own lag is exact");
}

#[test]
fn batch_calls_deliver_in_order_on_both_kinds() {
    for l in [single(8, 8), log_mp()] {
        let mut sub = l.subscribe(Start::Latest).unwrap();
        let msgs: Vec<[u8; 1]> = (0..3u8).map(|i| [i]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        assert_eq!(l.publish_batch(&refs), Ok(3));
        assert_eq!(l.publish_batch(&[]), Ok(0));
        assert_eq!(
            l.publish_batch(&[b"ok", b"much too long"]),
            Err(SendError::TooLarge { len: 13, max: 8 }),
            "nothing published"
        );
        let (mut bufs, mut lens) = ([0u8; 2], Vec::new());
        assert_eq!(sub.recv_batch(&mut bufs, 8, &mut lens), Ok(2), "room for 2");
        assert_eq!((&lens[..], &bufs[..]), (&[1, 1][..], &[0, 1][..]));
        let mut got = Vec::new();
        assert_eq!(sub.recv_batch_with(8, |m| got.extend_from_slice(m)), Ok(1));
        assert_eq!(got, [2]);
        assert_eq!(
            sub.recv_batch(&mut bufs, 8, &mut lens),
            Err(RecvError::Empty)
        );
    }
}

#[test]
fn a_batch_receive_reports_a_lag_met_midway_on_the_next_call() {
    let l = single(8, 4);
    let mut sub = l.subscribe(Start::Latest).unwrap();
    l.publish(b"a").unwrap();
    l.publish(b"b").unwrap();
    let mut n = 0;
    let r = sub.recv_batch_with(8, |_| {
        n += 1;
        if n == 1 {
            // Overwrite the rest of the ring and more while the batch runs.
            for _ in 0..6 {
                l.publish(b"x").unwrap();
            }
        }
    });
    assert_eq!(r, Ok(1));
    assert!(matches!(
        sub.recv_batch_with(8, |_| {}),
        Err(RecvError::Lagged(_))
    ));
    let s = l.stats();
    let mut rest = 0;
    while sub.recv_try(&mut [0u8; 8]).is_ok() {
        rest += 1;
    }
    assert_eq!(
        1 + s.lagged + rest,
        s.published,
        "every message received or counted lost"
    );
}

#[test]
fn in_place_reads_are_validated_after_the_reader_returns() {
    let l = single(8, 2);
    let mut sub = l.subscribe(Start::Latest).unwrap();
    l.publish(b"first").unwrap();
    assert_eq!(sub.recv_in_place(|m| m.to_vec()), Ok(b"first".to_vec()));
    l.publish(b"second").unwrap();
    // The message is overwritten while the reader looks at it: the
    // result is discarded and the loss reported.
    let r = sub.recv_in_place(|m| {
        let seen = m.to_vec();
        for _ in 0..2 {
            l.publish(b"later").unwrap();
        }
        seen
    });
    assert_eq!(r, Err(RecvError::Lagged(1)));
    assert_eq!(sub.recv_in_place(|m| m.to_vec()), Ok(b"later".to_vec()));
    assert_eq!(sub.recv_in_place(|m| m.len()), Ok(5));
    assert_eq!(sub.recv_in_place(|m| m.len()), Err(RecvError::Empty));
}

/// A reliable single-publisher log whose subscribers (returned) and
/// publisher outnumber the CPUs this process may spin on.
fn crowded() -> (Log, Vec<Subscriber>) {
    let n = wait::spin_cores() as usize + 1;
    let log = Log::in_process(
        &LogConfig::new(64, 64)
            .single_publisher(true)
            .mode(LogMode::Reliable)
            .cursors(n + 1),
    )
    .unwrap();
    let subs = (0..n)
        .map(|_| log.subscribe(Start::Latest).unwrap())
        .collect();
    (log, subs)
}

/// As after a wait that ended in 10 us, 10 messages and 100 us after the
/// one before: messages come close together, at 100 k msgs/s.
fn just_waited_briefly(sub: &mut Subscriber) {
    let now = wait::mono_ns();
    sub.budget.start_wait(now - 100_000, sub.pos);
    sub.budget.start_wait(now, sub.pos + 10);
    sub.budget
        .record(Duration::from_micros(10), Duration::from_micros(50));
}

#[test]
fn only_a_crowded_subscriber_of_a_busy_feed_dozes() {
    let (_log, mut subs) = crowded();
    let sub = &mut subs[0];
    assert!(!sub.dozes(wait::mono_ns()), "no wait measured yet");
    just_waited_briefly(sub);
    assert!(sub.dozes(wait::mono_ns()));
    // Waiting in this call for longer than the gap: the feed paused.
    let long_ago = wait::mono_ns() - 2 * wait::DOZE_GAP.as_nanos() as u64;
    assert!(!sub.dozes(long_ago));
    sub.budget
        .record(Duration::from_millis(1), Duration::from_micros(50));
    assert!(!sub.dozes(wait::mono_ns()), "the last wait was long");
    // A feed too fast to doze on: 1000 messages in 100 us (10 M msgs/s).
    just_waited_briefly(sub);
    let now = wait::mono_ns();
    sub.budget.start_wait(now + 100_000, sub.pos + 1010);
    assert!(!sub.dozes(now), "too fast");
    // Not crowded: a lone subscriber of a reliable log (it leaves a CPU to
    // the publisher), or any number on an overwrite log (not counted).
    let lone = single_reliable(64, 64);
    let many = single(64, 64);
    let mut subs = vec![lone.subscribe(Start::Latest).unwrap()];
    for _ in 0..=wait::spin_cores() {
        subs.push(many.subscribe(Start::Latest).unwrap());
    }
    for sub in &mut subs {
        just_waited_briefly(sub);
        assert!(!sub.dozes(wait::mono_ns()));
    }
}

#[test]
fn a_dozing_subscriber_of_a_feed_that_pauses_sleeps_until_woken() {
    let (log, mut subs) = crowded();
    let mut sub = subs.pop().unwrap();
    just_waited_briefly(&mut sub);
    let t = thread::spawn(move || {
        let mut buf = [0u8; 64];
        sub.recv_block(&mut buf, T).map(|n| buf[..n].to_vec())
    });
    // It dozes for at most DOZE_GAP, then counts itself a sleeper: idle,
    // it costs no CPU, and the next publish wakes it.
    let until = Instant::now() + Duration::from_secs(10);
    while log.inner.sp_sleepers() == 0 {
        assert!(Instant::now() < until, "still dozing after 10 s");
        thread::sleep(Duration::from_millis(1));
    }
    let mut publisher = log.clone().into_publisher().unwrap();
    publisher.publish(b"tick").unwrap();
    assert_eq!(t.join().unwrap(), Ok(b"tick".to_vec()));
}

#[test]
fn a_dozing_subscriber_of_a_closed_log_gets_closed() {
    let (log, mut subs) = crowded();
    let mut sub = subs.pop().unwrap();
    just_waited_briefly(&mut sub);
    let t = thread::spawn(move || {
        let mut buf = [0u8; 64];
        sub.recv_block(&mut buf, T)
    });
    thread::sleep(Duration::from_micros(50));
    log.close();
    assert_eq!(t.join().unwrap(), Err(RecvError::Closed));
}

/// A single publisher at the end of the sequence space: a batch is cut at
/// the largest sequence number, and a position past it is refused as
/// corrupt, in both modes (both go through the one cached limit).
#[test]
fn a_publisher_stops_at_the_largest_sequence_number() {
    for log in [single(8, 4), single_reliable(8, 4)] {
        let inner = &*log.inner;
        // A tail three positions short of the end (a log that ran that
        // long, or a corrupt header): the next holder starts there.
        inner
            .region
            .header()
            .tail
            .value
            .store(MAX_SEQ - 2, Ordering::Relaxed);
        // Registered there (reliable mode: the publisher is gated by it).
        let _sub = log.subscribe(Start::Latest).unwrap();
        let mut p = log.clone().into_publisher().unwrap();
        assert_eq!(p.next_seq(), MAX_SEQ - 2);
        assert_eq!(p.publish(b"a"), Ok(MAX_SEQ - 2));
        // Three wanted, two left (MAX_SEQ - 1 and MAX_SEQ).
        assert_eq!(p.publish_batch(&[b"b", b"c", b"d"]), Ok(2));
        assert_eq!(p.next_seq(), MAX_SEQ + 1);
        match p.publish(b"e") {
            Err(SendError::Corrupt { detail }) => {
                assert!(detail.contains("beyond the largest"), "{detail}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
