//! Core routes through either client: the wire client (a plain
//! `nats://host:port`) and async-nats (the fallback, here chosen by a
//! comma-separated server list) read each other's messages: what the wire
//! client writes an async-nats subscriber parses (origin, sequence, queue
//! kind), and the other way round.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Queue, QueueConfig, Start, Target};

/// The same server twice: a list, so the routes fall back to async-nats.
fn list(url: &str) -> String {
    format!("{url},{url}")
}

#[test]
fn wire_out_to_async_nats_in_log() {
    const N: u64 = 3000;
    let dir = TempDir::new("cc-log");
    let nats = Nats::start(None, dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 1024);
    let b = TestLog::create("b", LogMode::Overwrite, 4096);
    a.log.create_cursor("bridge.w", Start::Oldest).unwrap();
    let url = nats.url();
    let mut inb = start_in(&dir, &b.name(), "cc.log", "w-in", &list(&url));
    let state = dir.path("w-in.state");
    let status = status_of(&dir, "w-in");
    let mut outb = start_out(&dir, &a.name(), "cc.log", "w", &url, &[]);
    for i in 0..N {
        a.log
            .publish_block(&message(i), Some(Duration::from_secs(20)))
            .unwrap();
    }
    wait_until(Duration::from_secs(30), "B to hold N", || {
        b.log.next_seq() >= N
    });
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(inb.term().code(), Some(0));
    assert_eq!(b.indices(), (0..N).collect::<Vec<_>>());
    // Each message's origin was read: a duplicate would have been dropped,
    // a gap counted; neither happened, and the route knew its source.
    assert_eq!(status_value(&status, "w-in", "lost"), Some(0));
    assert!(outb.log().contains("(wire client)"), "{}", outb.log());
    assert!(inb.log().contains("through async-nats"), "{}", inb.log());
    assert_names_source(&state, &a.name());
}

/// The in route's state file holds the source `host/<segment>`: the
/// messages' `Nats-Msg-Id` was parsed (a message without an origin
/// registers none).
fn assert_names_source(state: &std::path::Path, segment: &str) {
    let raw = std::fs::read(state).unwrap();
    let key = format!("/{segment}");
    assert!(
        raw.windows(key.len()).any(|w| w == key.as_bytes()),
        "the state file names no source ending in {key}"
    );
}

#[test]
fn async_nats_out_to_wire_in_queue() {
    const N: u64 = 2000;
    struct Unlink(Target);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = self.0.unlink();
        }
    }
    let dir = TempDir::new("cc-q");
    let nats = Nats::start(None, dir.path("nats.log"));
    let ta = Target::Posix(unique("qa"));
    let tb = Target::Posix(unique("qb"));
    let qa = Queue::create(&ta, &QueueConfig::new(64, 256)).unwrap();
    let _ua = Unlink(ta.clone());
    let qb = Queue::create(&tb, &QueueConfig::new(64, 256)).unwrap();
    let _ub = Unlink(tb.clone());
    let url = nats.url();
    let mut inb = start_in(&dir, &tb.to_string(), "cc.q", "q-in", &url);
    let state = dir.path("q-in.state");
    let status = status_of(&dir, "q-in");
    let mut outb = start_out(&dir, &ta.to_string(), "cc.q", "q", &list(&url), &[]);
    queue_through(qa, &qb, N);
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(inb.term().code(), Some(0));
    // Nothing counted lost or dropped as a duplicate, and the origin read.
    assert_eq!(status_value(&status, "q-in", "lost"), Some(0));
    assert_eq!(status_value(&status, "q-in", "duplicates"), Some(0));
    assert!(outb.log().contains("through async-nats"), "{}", outb.log());
    assert!(inb.log().contains("(wire client)"), "{}", inb.log());
    assert_names_source(&state, &ta.to_string());
}

/// A bridge of plain core routes holds one connection per route and no
/// idle async-nats one besides (it is made only for a route that needs it).
#[test]
fn plain_core_routes_hold_one_connection_each() {
    let dir = TempDir::new("cc-conns");
    let http = free_port();
    let nats = Nats::start_with_config(
        &format!("http: \"127.0.0.1:{http}\"\n"),
        dir.path("nats.log"),
    );
    let a = TestLog::create("a", LogMode::Reliable, 1024);
    let b = TestLog::create("b", LogMode::Overwrite, 1024);
    a.log.create_cursor("bridge.c", Start::Oldest).unwrap();
    let cfg = dir.path("routes.toml");
    std::fs::write(
        &cfg,
        format!(
            "server = \"{}\"\n\n\
             [[route]]\nname = \"c\"\ndirection = \"out\"\nlocal = \"{}\"\nsubject = \"cc.conns\"\nmode = \"core\"\n\n\
             [[route]]\nname = \"c-in\"\ndirection = \"in\"\nlocal = \"{}\"\nsubject = \"cc.conns\"\nmode = \"core\"\nstate = \"{}\"\n",
            nats.url(),
            a.name(),
            b.name(),
            dir.path("in.state").display()
        ),
    )
    .unwrap();
    let bridge = Bridge::start(
        &["run", "--config", cfg.to_str().unwrap()],
        dir.path("bridge.log"),
    );
    bridge.wait_log("(wire client)", 2, Duration::from_secs(20));
    bridge.wait_log("subscribed to cc.conns", 1, Duration::from_secs(20));
    // Both routes work through their connections...
    a.log
        .publish_block(&message(0), Some(Duration::from_secs(20)))
        .unwrap();
    wait_until(Duration::from_secs(20), "the message in B", || {
        b.log.next_seq() >= 1
    });
    // ... and they are all the bridge holds, also after the time an eager
    // async-nats connection (made in the background) takes to show up:
    // under a second here.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert_eq!(monitor(http, "/connz")["num_connections"], 2);
        std::thread::sleep(Duration::from_millis(100));
    }
}
