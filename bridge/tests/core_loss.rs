//! Core NATS mode: messages published while the in bridge is down are
//! lost (core NATS stores nothing), and the restarted bridge reports the
//! gap in the sequence numbers (`Nats-Msg-Id`): every message is either in host B's log or counted
//! as lost, never silently missing.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

#[test]
fn loss_is_reported_never_silent() {
    const N: u64 = 6000;
    let dir = TempDir::new("core");
    let nats = Nats::start(None, dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 1024);
    let b = TestLog::create("b", LogMode::Overwrite, 8192);
    a.log.create_cursor("bridge.c", Start::Oldest).unwrap();
    let url = nats.url();
    let mut inb = start_in(&dir, &b.name(), "core.x", "c-in", &url);
    let status = status_of(&dir, "c-in");
    let mut outb = start_out(&dir, &a.name(), "core.x", "c", &url, &[]);
    let publish = |range: std::ops::Range<u64>| {
        for i in range {
            a.log
                .publish_block(&message(i), Some(Duration::from_secs(20)))
                .unwrap();
        }
    };
    let cursor = |n: u64| {
        wait_until(Duration::from_secs(30), &format!("bridge.c at {n}"), || {
            a.log.cursor("bridge.c").unwrap().position >= n
        })
    };
    publish(0..N / 3);
    wait_until(Duration::from_secs(30), "B to hold N/3", || {
        b.log.next_seq() >= N / 3
    });
    // The in bridge dies; what is published meanwhile is gone for it.
    inb.kill9();
    publish(N / 3..2 * N / 3);
    cursor(2 * N / 3);
    inb.kill9_and_restart();
    inb.wait_log("subscribed to core.x", 2, Duration::from_secs(20));
    publish(2 * N / 3..N);
    cursor(N);
    assert_eq!(outb.term().code(), Some(0));
    let held = b.indices();
    // Bounded: the last messages reach B shortly after the cursor commits.
    wait_until(
        Duration::from_secs(10),
        "B to hold the last message",
        || b.indices().last() == Some(&(N - 1)),
    );
    assert_eq!(inb.term().code(), Some(0));
    let held_now = b.indices();
    assert!(held_now.len() >= held.len());
    let lost = status_value(&status, "c-in", "lost").expect("lost= in the status file");
    assert!(lost > 0, "nothing was reported lost");
    assert_eq!(
        held_now.len() as u64 + lost,
        N,
        "held {} + reported lost {lost} != published {N}",
        held_now.len()
    );
    // In order, no duplicate.
    assert!(held_now.windows(2).all(|w| w[0] < w[1]));
    assert!(inb.log().contains("messages lost in transit"));
}
