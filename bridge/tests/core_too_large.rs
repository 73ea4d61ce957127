//! A message the server can never take (larger, with its header, than its
//! `max_payload`) ends a core out route with an error that says so, through
//! either client, instead of being re-sent forever.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

fn too_large(wire: bool) {
    let dir = TempDir::new("too-large");
    // 64-byte messages with their `Nats-Msg-Id` header exceed 100 bytes.
    let nats = Nats::start_with_config("max_payload: 100\n", dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 64);
    a.log.create_cursor("bridge.t", Start::Oldest).unwrap();
    a.log
        .publish_block(&message(0), Some(Duration::from_secs(5)))
        .unwrap();
    let url = nats.url();
    let server = if wire {
        url.clone()
    } else {
        format!("{url},{url}")
    };
    let mut out = start_out(&dir, &a.name(), "big.t", "t", &server, &[]);
    let status = out.wait_exit(Duration::from_secs(20));
    assert_ne!(status.code(), Some(0), "{}", out.log());
    assert!(out.log().contains("max_payload"), "{}", out.log());
    // Nothing was committed: the message is still the route's to send.
    assert_eq!(a.log.cursor("bridge.t").unwrap().position, 0);
}

#[test]
fn a_message_over_max_payload_ends_a_wire_route() {
    too_large(true);
}

#[test]
fn a_message_over_max_payload_ends_an_async_nats_route() {
    too_large(false);
}
