//! Deterministic failpoints: a child process is killed (or stopped) at each
//! step of claim, write, publish and release (`SHMQ_FAILPOINT`, see
//! `shmq::failpoint`), and the survivors must recover every window: a dead
//! producer's claim becomes a counted tombstone, a dead consumer's message
//! is delivered again (counted), a dead publisher's write is skipped, and a
//! process that is merely stopped is never taken for dead.

mod common;

use std::time::{Duration, Instant};

use common::{check_msg, make_msg, Proc};
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, RecvError, SendError, Start, Target};

common::child_roles! {
    "enqueue" => enqueue_child,
    "dequeue" => dequeue_child,
    "shift" => shift_child,
    "publish" => publish_child,
    "hold" => hold_child,
}

const WAIT: Duration = Duration::from_secs(10);

fn target_of(args: &[String]) -> Target {
    Target::Posix(args[0].clone())
}

/// Enqueues message `args[1]` of producer 1.
fn enqueue_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    let seq: u64 = args[1].parse().unwrap();
    q.enqueue_block(&make_msg(1, seq, 32), Some(WAIT)).unwrap();
    common::report("enqueued");
}

/// Dequeues one message and reports its sequence number.
fn dequeue_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    let mut buf = [0u8; 64];
    let n = q.dequeue_block(&mut buf, Some(WAIT)).unwrap();
    let (_, seq) = check_msg(&buf[..n]).unwrap();
    common::report(seq);
}

/// `enqueue_shift`s message `args[1]`.
fn shift_child(args: &[String]) {
    let q = Queue::open(&target_of(args)).unwrap();
    let seq: u64 = args[1].parse().unwrap();
    q.enqueue_shift(&make_msg(1, seq, 32)).unwrap();
}

/// Publishes message `args[1]` to a log.
fn publish_child(args: &[String]) {
    let log = Log::open(&target_of(args)).unwrap();
    let seq: u64 = args[1].parse().unwrap();
    log.publish_block(&make_msg(1, seq, 32), Some(WAIT))
        .unwrap();
}

/// Subscribes to a reliable log (named `args[1]`, or unnamed if absent),
/// says so, then waits to be killed.
fn hold_child(args: &[String]) {
    let log = Log::open(&target_of(args)).unwrap();
    let _sub = match args.get(1) {
        Some(name) => log.subscribe_named(name, Start::Latest).unwrap(),
        None => log.subscribe(Start::Latest).unwrap(),
    };
    println!("RESULT ready");
    std::thread::sleep(WAIT);
}

fn failpoint(name: &str, action: &str) -> String {
    format!("{name}:{action}")
}

/// Runs `role` with a failpoint that kills it, and checks it died of SIGKILL.
fn killed_at(role: &str, args: &[String], point: &str) {
    let fp = failpoint(point, "kill");
    let mut child = Proc::spawn_env(role, args, &[("SHMQ_FAILPOINT", &fp)]);
    let status = child.wait(WAIT);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{role} was killed at {point}");
}

/// Runs `role` with a failpoint that stops it; returns it once stopped.
fn stopped_at(role: &str, args: &[String], point: &str) -> Proc {
    let fp = failpoint(point, "stop");
    let child = Proc::spawn_env(role, args, &[("SHMQ_FAILPOINT", &fp)]);
    assert!(
        common::wait_until(WAIT, || child.state() == Some('T')),
        "{role} stopped at {point}"
    );
    child
}

fn seq_of(buf: &[u8]) -> u64 {
    check_msg(buf).unwrap().1
}

fn recv(q: &Queue) -> u64 {
    let mut buf = [0u8; 64];
    let n = q.dequeue_block(&mut buf, Some(WAIT)).unwrap();
    seq_of(&buf[..n])
}

fn new_queue(tag: &str, cap: usize) -> (common::Guard, Queue, Vec<String>) {
    let target = common::posix(tag);
    let q = Queue::create(&target, &QueueConfig::new(64, cap)).unwrap();
    let name = match &*target {
        Target::Posix(n) => n.clone(),
        _ => unreachable!(),
    };
    (target, q, vec![name])
}

#[test]
fn a_producer_killed_before_publishing_leaves_a_counted_tombstone() {
    for point in ["queue-produce-claimed", "queue-publish"] {
        let (_t, q, args) = new_queue("fp-prod", 8);
        q.enqueue_try(&make_msg(1, 0, 32)).unwrap();
        killed_at("enqueue", &[args[0].clone(), "1".into()], point);
        q.enqueue_try(&make_msg(1, 2, 32)).unwrap();
        let t0 = Instant::now();
        assert_eq!(recv(&q), 0);
        assert_eq!(recv(&q), 2, "{point}: the dead claim is passed");
        eprintln!("{point}: recovered in {:?}", t0.elapsed());
        let s = q.stats();
        assert_eq!(
            (s.enqueued, s.dequeued, s.tombstones, s.dead_claims, s.len),
            (2, 2, 1, 1, 0),
            "{point}: {s:?}"
        );
        q.close();
        assert_eq!(
            q.dequeue_block(&mut [0u8; 64], Some(WAIT)),
            Err(RecvError::Closed)
        );
    }
}

#[test]
fn a_producer_killed_after_publishing_lost_nothing() {
    let (_t, q, args) = new_queue("fp-prod-done", 8);
    killed_at(
        "enqueue",
        &[args[0].clone(), "5".into()],
        "queue-produce-published",
    );
    assert_eq!(recv(&q), 5);
    assert_eq!(q.stats().dead_claims, 0);
}

#[test]
fn a_consumer_killed_before_returning_has_its_message_delivered_again() {
    for point in ["queue-consume-claimed", "queue-consume-copied"] {
        let (_t, q, args) = new_queue("fp-cons", 4);
        q.enqueue_try(&make_msg(1, 0, 32)).unwrap();
        q.enqueue_try(&make_msg(1, 1, 32)).unwrap();
        killed_at("dequeue", &args, point);
        let mut got = vec![recv(&q), recv(&q)];
        got.sort_unstable();
        assert_eq!(got, [0, 1], "{point}: each message once");
        let s = q.stats();
        assert_eq!(s.redelivered, 1, "{point}: {s:?}");
        assert_eq!((s.enqueued, s.dequeued, s.len), (2, 2, 0), "{point}: {s:?}");
        q.close();
        assert_eq!(
            q.dequeue_block(&mut [0u8; 64], Some(WAIT)),
            Err(RecvError::Closed)
        );
    }
}

#[test]
fn a_dead_consumers_message_is_not_lost_when_the_queue_is_closed() {
    let (_t, q, args) = new_queue("fp-cons-close", 4);
    q.enqueue_try(&make_msg(1, 7, 32)).unwrap();
    killed_at("dequeue", &args, "queue-consume-copied");
    q.close();
    // try, not block: a consumer about to report Closed looks for orphans.
    let mut buf = [0u8; 64];
    let n = q.dequeue_try(&mut buf).unwrap();
    assert_eq!(seq_of(&buf[..n]), 7);
    assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Closed));
}

#[test]
fn a_full_queue_whose_consumer_died_makes_room_again() {
    let (_t, q, args) = new_queue("fp-cons-full", 2);
    q.enqueue_try(&make_msg(1, 0, 32)).unwrap();
    q.enqueue_try(&make_msg(1, 1, 32)).unwrap();
    killed_at("dequeue", &args, "queue-consume-claimed");
    // The producer side finds the unreleased slot and redelivers its
    // message in place: the ring is full again (1, 0), so it times out.
    assert_eq!(
        q.enqueue_block(&make_msg(1, 2, 32), Some(Duration::from_millis(300))),
        Err(SendError::Timeout)
    );
    assert_eq!(q.stats().redelivered, 1);
    assert_eq!(recv(&q), 1);
    assert_eq!(recv(&q), 0);
    q.enqueue_try(&make_msg(1, 2, 32)).unwrap();
    assert_eq!(recv(&q), 2);
}

#[test]
fn a_recoverer_killed_while_redelivering_is_finished_by_the_next() {
    let (_t, q, args) = new_queue("fp-redeliver", 4);
    q.enqueue_try(&make_msg(1, 0, 32)).unwrap();
    killed_at("dequeue", &args, "queue-consume-claimed");
    // A second consumer finds the orphan, pads, claims its next lap, dies.
    killed_at("dequeue", &args, "queue-redeliver-claimed");
    assert_eq!(recv(&q), 0, "the republish is finished");
    assert_eq!(q.stats().redelivered, 1);
    assert_eq!(
        q.dequeue_block(&mut [0u8; 64], Some(Duration::from_millis(100))),
        Err(RecvError::Timeout),
        "and delivered once"
    );
}

#[test]
fn a_shift_killed_midway_loses_no_accepted_message() {
    for point in ["queue-shift-claimed-oldest", "queue-shift-claimed-tail"] {
        let (_t, q, args) = new_queue("fp-shift", 2);
        q.enqueue_try(&make_msg(1, 0, 32)).unwrap();
        q.enqueue_try(&make_msg(1, 1, 32)).unwrap();
        killed_at("shift", &[args[0].clone(), "2".into()], point);
        // Message 0 was claimed by the shift, which died before its call
        // returned: it is delivered (again), not silently dropped.
        let mut got = vec![recv(&q), recv(&q)];
        got.sort_unstable();
        assert_eq!(got, [0, 1], "{point}");
        assert_eq!(
            q.dequeue_block(&mut [0u8; 64], Some(Duration::from_millis(100))),
            Err(RecvError::Timeout),
            "{point}"
        );
    }
}

#[test]
fn a_stopped_producer_is_never_taken_for_dead() {
    let (_t, q, args) = new_queue("fp-stop-prod", 8);
    let mut child = stopped_at(
        "enqueue",
        &[args[0].clone(), "3".into()],
        "queue-produce-claimed",
    );
    assert_eq!(
        q.dequeue_block(&mut [0u8; 64], Some(Duration::from_millis(300))),
        Err(RecvError::Timeout),
        "its claim is not skipped"
    );
    assert_eq!(q.stats().dead_claims, 0);
    child.signal(libc::SIGCONT);
    assert_eq!(recv(&q), 3, "it publishes once resumed");
    child.wait_ok(WAIT);
}

#[test]
fn a_stopped_consumer_is_never_taken_for_dead() {
    let (_t, q, args) = new_queue("fp-stop-cons", 8);
    q.enqueue_try(&make_msg(1, 4, 32)).unwrap();
    let mut child = stopped_at("dequeue", &args, "queue-consume-copied");
    assert_eq!(
        q.dequeue_block(&mut [0u8; 64], Some(Duration::from_millis(300))),
        Err(RecvError::Timeout),
        "its message is not redelivered"
    );
    assert_eq!(q.stats().redelivered, 0);
    child.signal(libc::SIGCONT);
    child.wait_ok(WAIT);
    assert_eq!(child.results(), ["4"]);
}

fn new_log(tag: &str, mode: LogMode) -> (common::Guard, Log, Vec<String>) {
    let target = common::posix(tag);
    let log = Log::create(&target, &LogConfig::new(64, 8).mode(mode)).unwrap();
    let name = match &*target {
        Target::Posix(n) => n.clone(),
        _ => unreachable!(),
    };
    (target, log, vec![name])
}

fn recv_log(sub: &mut shmq::Subscriber) -> Result<u64, RecvError> {
    let mut buf = [0u8; 64];
    sub.recv_block(&mut buf, Some(WAIT))
        .map(|n| seq_of(&buf[..n]))
}

#[test]
fn a_publisher_killed_mid_write_is_skipped_at_once() {
    for mode in [LogMode::Overwrite, LogMode::Reliable] {
        for point in [
            "log-publish-claimed",
            "log-publish-taken",
            "log-publish-written",
        ] {
            let (_t, log, args) = new_log("fp-pub", mode);
            let mut sub = log.subscribe(Start::Latest).unwrap();
            log.publish(&make_msg(1, 0, 32)).unwrap();
            killed_at("publish", &[args[0].clone(), "1".into()], point);
            log.publish(&make_msg(1, 2, 32)).unwrap();
            assert_eq!(recv_log(&mut sub), Ok(0), "{mode:?} {point}");
            assert_eq!(recv_log(&mut sub), Ok(2), "{mode:?} {point}: skipped");
            let stats = log.stats();
            assert_eq!(stats.dead_writes, 1, "{mode:?} {point}: {stats:?}");
            // Every slot is usable again: a full ring more goes through.
            for i in 3..11 {
                log.publish_block(&make_msg(1, i, 32), Some(WAIT)).unwrap();
                assert_eq!(recv_log(&mut sub), Ok(i), "{mode:?} {point}");
            }
            log.close();
            assert_eq!(recv_log(&mut sub), Err(RecvError::Closed));
        }
    }
}

#[test]
fn a_stopped_publisher_is_never_taken_for_dead() {
    let (_t, log, args) = new_log("fp-stop-pub", LogMode::Reliable);
    let mut sub = log.subscribe(Start::Latest).unwrap();
    let mut child = stopped_at(
        "publish",
        &[args[0].clone(), "9".into()],
        "log-publish-taken",
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        sub.recv_block(&mut buf, Some(Duration::from_millis(300))),
        Err(RecvError::Timeout)
    );
    assert_eq!(log.stats().dead_writes, 0);
    child.signal(libc::SIGCONT);
    child.wait_ok(WAIT);
    assert_eq!(recv_log(&mut sub), Ok(9));
}

/// Spawns a `hold` child and waits until its subscriber is registered.
fn holder(args: &[String], log: &Log, cursors_before: usize) -> Proc {
    let child = Proc::spawn("hold", args);
    assert!(
        common::wait_until(WAIT, || log.stats().cursors.len() > cursors_before),
        "the child subscribed"
    );
    child
}

#[test]
fn a_dead_unnamed_subscriber_stops_gating_at_once() {
    let (_t, log, args) = new_log("fp-gate-anon", LogMode::Reliable);
    let mut child = holder(&args, &log, 0);
    // A live subscriber of ours that keeps up: only the child gates.
    let mut own = log.subscribe(Start::Latest).unwrap();
    for i in 0..8 {
        log.publish(&make_msg(1, i, 32)).unwrap();
        assert_eq!(recv_log(&mut own), Ok(i));
    }
    let mut buf = [0u8; 64];
    assert_eq!(own.recv_try(&mut buf), Err(RecvError::Empty)); // shows its position
    assert_eq!(log.publish(&make_msg(1, 8, 32)), Err(shmq::SendError::Full));
    child.kill();
    let t0 = Instant::now();
    log.publish_block(&make_msg(1, 8, 32), Some(WAIT)).unwrap();
    eprintln!("gating resumed {:?} after the kill", t0.elapsed());
    let left = log.stats().cursors;
    assert_eq!(
        left.len(),
        1,
        "its cursor was reaped, ours is left: {left:?}"
    );
    assert_eq!(left[0].owner, Some(std::process::id()));
}

#[test]
fn a_publisher_gated_by_a_dead_named_cursor_is_told_which() {
    let (_t, log, args) = new_log("fp-gate-named", LogMode::Reliable);
    let mut child = holder(&[args[0].clone(), "audit".into()], &log, 0);
    let pid = child.pid();
    for i in 0..8 {
        log.publish(&make_msg(1, i, 32)).unwrap();
    }
    child.kill();
    let err = log
        .publish_block(&make_msg(1, 8, 32), Some(Duration::from_millis(200)))
        .unwrap_err();
    assert_eq!(
        err,
        shmq::SendError::GatedBy {
            cursor: "audit".into(),
            owner: None,
            dead_owner: Some(pid),
        }
    );
    assert!(err.to_string().contains("\"audit\""), "{err}");
    let info = log.cursor("audit").unwrap();
    assert_eq!(
        (info.owner, info.dead_owner, info.position),
        (None, Some(pid), 0)
    );
    // Durable: it is still there, and resuming it (or removing it) ungates.
    log.remove_cursor("audit").unwrap();
    // Removed, nobody is registered: a reliable log refuses to publish
    // into the void, and goes on once someone subscribes.
    assert_eq!(
        log.publish(&make_msg(1, 8, 32)),
        Err(shmq::SendError::NotConnected)
    );
    let _sub = log.subscribe(Start::Latest).unwrap();
    log.publish_block(&make_msg(1, 8, 32), Some(WAIT)).unwrap();
}
