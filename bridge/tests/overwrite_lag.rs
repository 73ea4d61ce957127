//! An overwrite-mode log laps a stopped out bridge: the messages it never
//! read are counted (`lost=` in the status file) and logged, and the
//! bridge goes on from the oldest message still present.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

#[test]
fn lapped_out_route_reports_its_lag() {
    let dir = TempDir::new("lag");
    let nats = Nats::start(None, dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Overwrite, 64);
    a.log.create_cursor("bridge.ow", Start::Oldest).unwrap();
    // 200 messages into 64 slots before the bridge reads: 136 overwritten.
    for i in 0..200 {
        a.log.publish(&message(i)).unwrap();
    }
    let status = dir.path("out.status");
    let url = nats.url();
    let mut outb = Bridge::start(
        &[
            "out",
            "--local",
            &a.name(),
            "--subject",
            "ow.x",
            "--name",
            "ow",
            "--server",
            &url,
            "--status-file",
            status.to_str().unwrap(),
        ],
        dir.path("out.log"),
    );
    wait_until(Duration::from_secs(20), "the cursor to reach 200", || {
        a.log.cursor("bridge.ow").unwrap().position >= 200
    });
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(status_value(&status, "ow", "lost"), Some(136));
    assert_eq!(status_value(&status, "ow", "forwarded"), Some(64));
    assert!(
        outb.log().contains("overwrote 136 messages"),
        "{}",
        outb.log()
    );
}
