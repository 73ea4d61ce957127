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
