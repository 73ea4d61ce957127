//! Host A log -> out bridge -> NATS -> in bridge -> host B log, two routes
//! (one core, one JetStream) in one bridge process per side: every message
//! arrives, in order, per subject.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

#[test]
fn two_routes_every_message_in_order() {
    const N: u64 = 3000;
    let dir = TempDir::new("rt");
    let nats = Nats::start(Some(&dir.path("js")), dir.path("nats.log"));
    let a1 = TestLog::create("a1", LogMode::Reliable, 1024);
    let a2 = TestLog::create("a2", LogMode::Reliable, 1024);
    let b1 = TestLog::create("b1", LogMode::Overwrite, 4096);
    let b2 = TestLog::create("b2", LogMode::Overwrite, 4096);
    // The routes' cursors gate the publishers from the first message.
    a1.log.create_cursor("bridge.one", Start::Oldest).unwrap();
    a2.log.create_cursor("bridge.two", Start::Oldest).unwrap();

    let out_cfg = dir.path("out.toml");
    std::fs::write(
        &out_cfg,
        format!(
            "server = \"{}\"\nhost = \"host-a\"\n\n\
             [[route]]\nname = \"one\"\ndirection = \"out\"\nlocal = \"{}\"\nsubject = \"t.one\"\nmode = \"core\"\n\n\
             [[route]]\nname = \"two\"\ndirection = \"out\"\nlocal = \"{}\"\nsubject = \"t.two\"\nmode = \"jetstream\"\n",
            nats.url(),
            a1.name(),
            a2.name()
        ),
    )
    .unwrap();
    let in_cfg = dir.path("in.toml");
    std::fs::write(
        &in_cfg,
        format!(
            "server = \"{}\"\n\n\
             [[route]]\nname = \"one-in\"\ndirection = \"in\"\nlocal = \"{}\"\nsubject = \"t.one\"\nmode = \"core\"\nstate = \"{}\"\n\n\
             [[route]]\nname = \"two-in\"\ndirection = \"in\"\nlocal = \"{}\"\nsubject = \"t.two\"\nmode = \"jetstream\"\nstate = \"{}\"\n",
            nats.url(),
            b1.name(),
            dir.path("one.state").display(),
            b2.name(),
            dir.path("two.state").display()
        ),
    )
    .unwrap();

    // The in side first: core NATS delivers only to current subscribers.
    let inb = Bridge::start(
        &["run", "--config", in_cfg.to_str().unwrap()],
        dir.path("in.log"),
    );
    inb.wait_log("subscribed to t.one", 1, Duration::from_secs(20));
    inb.wait_log("consuming t.two", 1, Duration::from_secs(20));
    let outb = Bridge::start(
        &["run", "--config", out_cfg.to_str().unwrap()],
        dir.path("out.log"),
    );
    for i in 0..N {
        a1.log
            .publish_block(&message(i), Some(Duration::from_secs(20)))
            .unwrap();
        a2.log
            .publish_block(&message(i), Some(Duration::from_secs(20)))
            .unwrap();
    }
    wait_until(Duration::from_secs(30), "both B logs to hold N", || {
        b1.log.next_seq() >= N && b2.log.next_seq() >= N
    });
    let want: Vec<u64> = (0..N).collect();
    assert_eq!(b1.indices(), want, "core route");
    assert_eq!(b2.indices(), want, "JetStream route");
    drop(outb);
    drop(inb);
}

/// A work queue on host A to a work queue on host B (JetStream): every
/// message once, in order (one producer, one consumer).
#[test]
fn queue_to_queue() {
    use shmq::{Queue, QueueConfig, Target};
    const N: u64 = 2000;
    struct Unlink(Target);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = self.0.unlink();
        }
    }
    let dir = TempDir::new("rtq");
    let nats = Nats::start(Some(&dir.path("js")), dir.path("nats.log"));
    let ta = Target::Posix(unique("qa"));
    let tb = Target::Posix(unique("qb"));
    let qa = Queue::create(&ta, &QueueConfig::new(64, 256)).unwrap();
    let _ua = Unlink(ta.clone());
    let qb = Queue::create(&tb, &QueueConfig::new(64, 256)).unwrap();
    let _ub = Unlink(tb.clone());
    let url = nats.url();
    let state = dir.path("q.state");
    let _inb = Bridge::start(
        &[
            "in",
            "--local",
            &tb.to_string(),
            "--subject",
            "q.x",
            "--mode",
            "jetstream",
            "--name",
            "q-in",
            "--server",
            &url,
            "--state",
            state.to_str().unwrap(),
        ],
        dir.path("in.log"),
    );
    let _outb = start_out(
        &dir,
        &ta.to_string(),
        "q.x",
        "q",
        &url,
        &["--mode", "jetstream"],
    );
    queue_through(qa, &qb, N);
    let mut buf = [0u8; 64];
    assert_eq!(
        qb.dequeue_block(&mut buf, Some(Duration::from_millis(300))),
        Err(shmq::RecvError::Timeout),
        "a duplicate arrived"
    );
}
