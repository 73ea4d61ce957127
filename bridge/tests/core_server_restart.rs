//! Core NATS mode across a server restart: both routes notice the lost
//! connection, reconnect and go on (the out route re-sends what the server
//! had not confirmed, the in route subscribes again); every message is
//! either in host B's log, in order and once, or counted as lost.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

#[test]
fn core_routes_reconnect_after_a_server_restart() {
    const N: u64 = 3000;
    let dir = TempDir::new("core-restart");
    let mut nats = Nats::start(None, dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 1024);
    let b = TestLog::create("b", LogMode::Overwrite, 8192);
    a.log.create_cursor("bridge.r", Start::Oldest).unwrap();
    let url = nats.url();
    let mut inb = start_in(&dir, &b.name(), "core.r", "r-in", &url);
    let status = status_of(&dir, "r-in");
    let mut outb = start_out(&dir, &a.name(), "core.r", "r", &url, &[]);
    let publish = |range: std::ops::Range<u64>| {
        for i in range {
            a.log
                .publish_block(&message(i), Some(Duration::from_secs(20)))
                .unwrap();
        }
    };
    publish(0..N / 3);
    wait_until(Duration::from_secs(30), "B to hold N/3", || {
        b.log.next_seq() >= N / 3
    });
    // Committed, so that the log has room for what comes while the server
    // is down (this thread publishes it, then restarts the server).
    wait_until(Duration::from_secs(30), "bridge.r at N/3", || {
        a.log.cursor("bridge.r").unwrap().position >= N / 3
    });
    // Down: what the out route reads now cannot be confirmed; it keeps it.
    nats.stop();
    publish(N / 3..N / 2);
    std::thread::sleep(Duration::from_millis(300));
    nats.start_again();
    inb.wait_log("subscribed to core.r", 2, Duration::from_secs(30));
    outb.wait_log("reconnected", 1, Duration::from_secs(30));
    publish(N / 2..N);
    wait_until(Duration::from_secs(30), "bridge.r at N", || {
        a.log.cursor("bridge.r").unwrap().position >= N
    });
    wait_until(
        Duration::from_secs(10),
        "B to hold the last message",
        || b.indices().last() == Some(&(N - 1)),
    );
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(inb.term().code(), Some(0));
    let held = b.indices();
    let lost = status_value(&status, "r-in", "lost").expect("lost= in the status file");
    assert_eq!(
        held.len() as u64 + lost,
        N,
        "held {} + reported lost {lost} != published {N}",
        held.len()
    );
    assert!(
        held.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated"
    );
    // The losses (if any) were said in the log, not only counted.
    assert_eq!(lost > 0, inb.log().contains("messages lost in transit"));
    assert!(inb.log().contains("reconnected (wire client)"));
    assert!(outb.log().contains("NATS connection"), "{}", outb.log());
}

/// Idle core routes answer the server's own `PING`s: with a 1 s ping
/// interval and 2 unanswered allowed, a route that did not would be dropped
/// as a stale connection within about 3 s.
#[test]
fn idle_core_routes_answer_the_servers_pings() {
    const N: u64 = 500;
    let dir = TempDir::new("core-idle");
    let nats =
        Nats::start_with_config("ping_interval: \"1s\"\nping_max: 2\n", dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 1024);
    let b = TestLog::create("b", LogMode::Overwrite, 1024);
    a.log.create_cursor("bridge.i", Start::Oldest).unwrap();
    let url = nats.url();
    let mut inb = start_in(&dir, &b.name(), "core.i", "i-in", &url);
    let mut outb = start_out(&dir, &a.name(), "core.i", "i", &url, &[]);
    outb.wait_log("(wire client)", 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(5));
    for i in 0..N {
        a.log
            .publish_block(&message(i), Some(Duration::from_secs(20)))
            .unwrap();
    }
    wait_until(Duration::from_secs(20), "B to hold N", || {
        b.log.next_seq() >= N
    });
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(inb.term().code(), Some(0));
    for (name, log) in [("out", outb.log()), ("in", inb.log())] {
        assert!(!log.contains("NATS connection"), "{name}:\n{log}");
        assert!(!log.contains("reconnected"), "{name}:\n{log}");
    }
    assert_eq!(b.indices(), (0..N).collect::<Vec<_>>());
}
