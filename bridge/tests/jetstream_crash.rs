//! JetStream mode across crashes: kill -9 the out bridge mid-stream and
//! restart it, then kill -9 and restart the in bridge, then restart
//! nats-server (same store): host B's log holds every message exactly once,
//! in order.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

#[test]
fn kills_and_server_restart_lose_nothing_duplicate_nothing() {
    const N: u64 = 20_000;
    let dir = TempDir::new("js");
    let mut nats = Nats::start(Some(&dir.path("js")), dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 1024);
    let b = TestLog::create("b", LogMode::Overwrite, 32_768);
    a.log.create_cursor("bridge.feed", Start::Oldest).unwrap();
    let url = nats.url();
    let mut outb = start_out(
        &dir,
        &a.name(),
        "feed.x",
        "feed",
        &url,
        &["--mode", "jetstream", "--host", "host-a"],
    );
    let state = dir.path("in.state");
    let mut inb = Bridge::start(
        &[
            "in",
            "--local",
            &b.name(),
            "--subject",
            "feed.x",
            "--mode",
            "jetstream",
            "--name",
            "feed-in",
            "--server",
            &url,
            "--state",
            state.to_str().unwrap(),
        ],
        dir.path("in.log"),
    );

    // A publisher thread, paced a little so the kills land mid-stream.
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let target = a.target.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let log = shmq::Log::open(&target).unwrap();
            for i in 0..N {
                // Gated by bridge.feed while the out bridge is down.
                log.publish_block(&message(i), Some(Duration::from_secs(30)))
                    .unwrap();
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let at = |n: u64| {
        wait_until(Duration::from_secs(40), &format!("B to hold {n}"), || {
            b.log.next_seq() >= n
        })
    };
    at(N / 5);
    outb.kill9_and_restart();
    at(2 * N / 5);
    inb.kill9_and_restart();
    at(3 * N / 5);
    nats.restart();
    wait_until(Duration::from_secs(60), "B to hold N", || {
        b.log.next_seq() >= N
    });
    publisher.join().unwrap();
    assert!(done.load(Ordering::Relaxed));
    // Anything late (a duplicate) would arrive within the bridges' poll times.
    std::thread::sleep(Duration::from_millis(500));
    let got = b.indices();
    let want: Vec<u64> = (0..N).collect();
    if got != want {
        let dups = got.len() as i64 - want.len() as i64;
        let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
        panic!(
            "B holds {} messages (want {N}; {dups:+}), first difference at {first_bad:?}",
            got.len()
        );
    }
    assert!(
        inb.log().contains("written before the bridge stopped")
            || inb.log().contains("restarting it at stream sequence"),
        "the in bridge's restart went unnoticed:\n{}",
        inb.log()
    );
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(inb.term().code(), Some(0));
}

/// The in bridge dies right after a local write, before the acknowledgement
/// and before the state file records the message as applied: the restarted
/// bridge counts it from the log's tail and drops its redelivery.
#[test]
fn crash_between_local_write_and_ack() {
    const N: u64 = 1000;
    let dir = TempDir::new("jsw");
    let nats = Nats::start(Some(&dir.path("js")), dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 2048);
    let b = TestLog::create("b", LogMode::Overwrite, 2048);
    a.log.create_cursor("bridge.w", Start::Oldest).unwrap();
    for i in 0..N {
        a.log.publish(&message(i)).unwrap();
    }
    let url = nats.url();
    let _outb = start_out(&dir, &a.name(), "w.x", "w", &url, &["--mode", "jetstream"]);
    let state = dir.path("in.state");
    let mut inb = Bridge::start_env(
        &[
            "in",
            "--local",
            &b.name(),
            "--subject",
            "w.x",
            "--mode",
            "jetstream",
            "--name",
            "w-in",
            "--server",
            &url,
            "--state",
            state.to_str().unwrap(),
        ],
        dir.path("in.log"),
        &[("SHMQ_BRIDGE_CRASH_AFTER_WRITES", "333")],
    );
    let status = inb.wait_exit(Duration::from_secs(30));
    assert!(
        !status.success(),
        "the crash point did not fire: {status:?}"
    );
    assert_eq!(b.log.next_seq(), 333);
    inb.restart();
    wait_until(Duration::from_secs(30), "B to hold N", || {
        b.log.next_seq() >= N
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.indices(), (0..N).collect::<Vec<_>>());
    assert!(
        inb.log().contains("were written before the bridge stopped"),
        "{}",
        inb.log()
    );
    assert_eq!(inb.term().code(), Some(0));
}
