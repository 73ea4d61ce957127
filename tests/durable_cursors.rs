//! Durable cursors declared when a log is created, and the publish result
//! when nobody is registered (`SendError::NotConnected`).
//!
//! Run in release: `cargo test --release --test durable_cursors`.

mod common;

use std::time::{Duration, Instant};

use common::{posix, Proc};
use shmq::{Error, Log, LogConfig, LogMode, RecvError, SendError, Start, Target};

common::child_roles! {
    "read_declared" => read_declared,
}

const WAIT: Duration = Duration::from_secs(30);

fn reliable(cap: usize) -> LogConfig {
    LogConfig::new(16, cap).mode(LogMode::Reliable).cursors(4)
}

/// Both kinds of log: many publishers, and a single publisher.
fn both(config: LogConfig) -> [LogConfig; 2] {
    [config.clone(), config.single_publisher(true)]
}

/// Child: opens the log, resumes the declared cursor `args[1]` and reports
/// every message it reads until the log is closed.
fn read_declared(args: &[String]) {
    let target: Target = args[0].parse().unwrap();
    let log = Log::open(&target).unwrap();
    let mut sub = log.subscribe_named(&args[1], Start::Latest).unwrap();
    let mut buf = [0u8; 16];
    loop {
        match sub.recv_block(&mut buf, Some(WAIT)) {
            Ok(n) => {
                common::report(String::from_utf8_lossy(&buf[..n]));
                sub.commit().unwrap();
            }
            Err(RecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The issue's own scenario: a 4-slot reliable log, 10 publishes. With a
/// durable cursor declared at creation the fifth publish is refused
/// (`Full`), and a subscriber that resumes the cursor later reads messages
/// 1 to 4 with nothing lost.
#[test]
fn a_declared_cursor_makes_a_reliable_log_lossless_from_message_0() {
    for config in both(reliable(4).durable_cursor("audit")) {
        let target = posix("durable-issue");
        let log = Log::create(&target, &config).unwrap();
        let results: Vec<_> = (1..=10u8)
            .map(|i| log.publish(format!("m{i}").as_bytes()))
            .collect();
        assert_eq!(results[..4], [Ok(0), Ok(1), Ok(2), Ok(3)]);
        assert!(
            results[4..].iter().all(|r| r == &Err(SendError::Full)),
            "{results:?}"
        );
        let cursor = log.cursor("audit").expect("declared cursor");
        assert_eq!((cursor.position, cursor.lag), (0, 4));
        // A later subscriber, in another handle: everything from message 1.
        let reader = Log::open(&target).unwrap();
        let mut sub = reader.subscribe_named("audit", Start::Latest).unwrap();
        let mut buf = [0u8; 16];
        for i in 1..=4 {
            let n = sub.recv_try(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("m{i}").as_bytes());
        }
        assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Empty));
        assert_eq!(log.stats().lagged, 0);
    }
}

/// A cursor declared by the creator is read by another process that
/// starts after the publishes.
#[test]
fn another_process_resumes_a_declared_cursor_from_message_0() {
    let target = posix("durable-proc");
    let log = Log::create(&target, &reliable(8).durable_cursor("billing")).unwrap();
    for i in 0..5 {
        log.publish(format!("b{i}").as_bytes()).unwrap();
    }
    let mut child = Proc::spawn("read_declared", &[target.to_string(), "billing".into()]);
    for i in 5..12 {
        log.publish_block(format!("b{i}").as_bytes(), Some(WAIT))
            .unwrap();
    }
    log.close();
    child.wait_ok(WAIT);
    let want: Vec<String> = (0..12).map(|i| format!("b{i}")).collect();
    assert_eq!(child.results(), want);
}

#[test]
fn nobody_registered_is_not_connected_until_a_subscriber_registers() {
    for config in both(reliable(4)) {
        let target = posix("durable-nc");
        let log = Log::create(&target, &config).unwrap();
        assert_eq!(log.publish(b"hello"), Err(SendError::NotConnected));
        assert_eq!(
            log.publish_batch(&[b"a", b"b"]),
            Err(SendError::NotConnected)
        );
        assert_eq!(log.next_seq(), 0, "nothing written");
        let mut sub = log.subscribe(Start::Oldest).unwrap();
        assert_eq!(log.publish(b"hello"), Ok(0));
        let mut buf = [0u8; 16];
        assert_eq!(sub.recv_try(&mut buf), Ok(5));
        // The subscriber leaves: nobody again, however much room was cached.
        drop(sub);
        assert_eq!(log.publish(b"again"), Err(SendError::NotConnected));
        assert_eq!(log.next_seq(), 1);
    }
}

/// The single publisher caches the slowest cursor; "nobody" is not cached
/// as room: a cursor that registers later gates from then on.
#[test]
fn a_cursor_registering_later_gates_from_then_on() {
    for config in both(reliable(4)) {
        let log = Log::in_process(&config).unwrap();
        let mut publisher = log.clone().into_publisher().unwrap();
        assert_eq!(publisher.publish(b"x"), Err(SendError::NotConnected));
        let mut sub = log.subscribe(Start::Latest).unwrap();
        for i in 0..4u64 {
            assert_eq!(publisher.publish(b"x"), Ok(i));
        }
        assert_eq!(publisher.publish(b"x"), Err(SendError::Full));
        let mut buf = [0u8; 16];
        assert_eq!(sub.recv_try(&mut buf), Ok(1));
        assert_eq!(publisher.publish(b"x"), Ok(4));
        assert_eq!(log.stats().lagged, 0);
    }
}

#[test]
fn a_deadline_publish_with_nobody_registered_returns_not_connected() {
    for config in both(reliable(4)) {
        let log = Log::in_process(&config).unwrap();
        let r = log.publish_block(b"x", Some(Duration::from_millis(30)));
        assert_eq!(r, Err(SendError::NotConnected));
        let mut publisher = log.clone().into_publisher().unwrap();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            publisher.publish_until(b"x", Some(deadline)),
            Err(SendError::NotConnected)
        );
        assert!(Instant::now() >= deadline, "returned before its deadline");
        assert_eq!(
            publisher.publish_batch_block(&[b"x"], Some(Duration::from_millis(10))),
            Err(SendError::NotConnected)
        );
        assert_eq!(log.next_seq(), 0);
    }
}

/// A blocked publish sleeps until the first cursor registers, then goes.
#[test]
fn a_blocked_publish_goes_when_a_subscriber_registers() {
    for config in both(reliable(4)) {
        let log = Log::in_process(&config).unwrap();
        let publisher = {
            let log = log.clone();
            std::thread::spawn(move || log.publish_block(b"first", Some(WAIT)))
        };
        // Not asserted on timing: the publish waits whenever it starts.
        std::thread::sleep(Duration::from_millis(20));
        let mut sub = log.subscribe(Start::Oldest).unwrap();
        assert_eq!(publisher.join().unwrap(), Ok(0));
        let mut buf = [0u8; 16];
        assert_eq!(sub.recv_block(&mut buf, Some(WAIT)), Ok(5));
        assert_eq!(&buf[..5], b"first");
    }
}

/// Overwrite mode is unchanged: publishing with nobody subscribed is fine.
#[test]
fn overwrite_mode_publishes_with_nobody_registered() {
    for config in both(LogConfig::new(16, 4)) {
        let log = Log::in_process(&config).unwrap();
        for i in 0..10u64 {
            assert_eq!(log.publish(b"tick"), Ok(i));
        }
    }
}

/// A reliable subscriber that registers at `Oldest` after everyone left
/// starts where the last cursor stood, so what publishers may still write
/// under their cached bound never overwrites what it is about to read.
#[test]
fn oldest_on_an_emptied_table_starts_where_the_last_cursor_left() {
    for config in both(reliable(4)) {
        let log = Log::in_process(&config).unwrap();
        let mut a = log.subscribe(Start::Latest).unwrap();
        let mut buf = [0u8; 16];
        for i in 0..4u8 {
            log.publish(&[i]).unwrap();
            assert_eq!(a.recv_try(&mut buf), Ok(1));
        }
        assert_eq!(a.recv_try(&mut buf), Err(RecvError::Empty)); // shows position 4
        drop(a);
        let mut b = log.subscribe(Start::Oldest).unwrap();
        assert_eq!(b.position(), 4);
        for i in 4..8u8 {
            log.publish(&[i]).unwrap();
        }
        for i in 4..8u8 {
            assert_eq!(b.recv_try(&mut buf), Ok(1));
            assert_eq!(buf[0], i);
        }
        assert_eq!(log.stats().lagged, 0);
    }
}

#[test]
fn bad_declarations_are_invalid_arguments_and_leave_nothing_behind() {
    let too_long = "x".repeat(shmq::log::MAX_CURSOR_NAME + 1);
    let cases: [LogConfig; 5] = [
        reliable(4).durable_cursor(""),
        reliable(4).durable_cursor(too_long.as_str()),
        reliable(4).durable_cursor("a\0b"),
        reliable(4).durable_cursors(&["a", "b", "a"]),
        reliable(4).cursors(2).durable_cursors(&["a", "b", "c"]),
    ];
    for config in cases {
        let target = posix("durable-bad");
        let r = Log::create(&target, &config);
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{config:?}: {r:?}"
        );
        assert!(matches!(Log::open(&target), Err(Error::NotFound { .. })));
        assert!(matches!(
            Log::in_process(&config),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Log::open_or_create(&target, &config),
            Err(Error::InvalidArgument { .. })
        ));
    }
    // As many as the table holds is fine.
    let log = Log::in_process(&reliable(4).cursors(2).durable_cursors(&["a", "b"])).unwrap();
    assert_eq!(log.cursors().len(), 2);
}

#[test]
fn open_or_create_accepts_a_log_holding_the_declared_cursors() {
    let target = posix("durable-ooc");
    let config = reliable(4).durable_cursors(&["a", "b"]);
    let first = Log::open_or_create(&target, &config).unwrap();
    assert_eq!(first.publish(b"0"), Ok(0), "created with its cursors");
    // Existing, with both: accepted, positions kept.
    let again = Log::open_or_create(&target, &config).unwrap();
    assert_eq!(again.cursor("a").unwrap().lag, 1);
    // Declaring fewer is fine; one it lacks is not, and is not created.
    Log::open_or_create(&target, &reliable(4).durable_cursor("b")).unwrap();
    let r = Log::open_or_create(&target, &reliable(4).durable_cursor("c"));
    assert!(
        matches!(&r, Err(Error::Incompatible { detail }) if detail.contains("\"c\"")),
        "{r:?}"
    );
    assert!(first.cursor("c").is_none());
    // A removed cursor is not recreated either.
    first.remove_cursor("a").unwrap();
    assert!(matches!(
        Log::open_or_create(&target, &config),
        Err(Error::Incompatible { .. })
    ));
}

#[test]
fn declared_cursors_work_in_overwrite_mode_too() {
    let log = Log::in_process(&LogConfig::new(16, 4).durable_cursor("replay")).unwrap();
    for i in 0..6u8 {
        log.publish(&[i]).unwrap(); // not gated
    }
    let mut sub = log.subscribe_named("replay", Start::Latest).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Lagged(2)));
    assert_eq!(sub.recv_try(&mut buf), Ok(1));
    assert_eq!(buf[0], 2);
}
