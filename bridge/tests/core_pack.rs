//! Packed core routes (`--pack`): an out route sends each read batch of its
//! log as one NATS message, and in routes unpack it, through either client
//! on either side: every message arrives once, in order, with no loss
//! counted, in far fewer NATS messages than log messages.

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

/// Sends `N` messages host A -> host B with a packed out route; `wire_out`
/// picks the out route's client (else async-nats, chosen by a server list),
/// and the in route uses the other one.
fn packed_route(wire_out: bool) {
    const N: u64 = 3000;
    let dir = TempDir::new("pack");
    let http = free_port();
    let nats = Nats::start_with_config(
        &format!("http: \"127.0.0.1:{http}\"\n"),
        dir.path("nats.log"),
    );
    // Room for all of them: published before the out route starts, so its
    // reads find full batches to pack.
    let a = TestLog::create("a", LogMode::Reliable, 4096);
    let b = TestLog::create("b", LogMode::Overwrite, 4096);
    a.log.create_cursor("bridge.p", Start::Oldest).unwrap();
    let url = nats.url();
    let list = format!("{url},{url}");
    let (out_server, in_server) = if wire_out {
        (&url, &list)
    } else {
        (&list, &url)
    };
    let mut inb = start_in(&dir, &b.name(), "pack.log", "p-in", in_server);
    let status = status_of(&dir, "p-in");
    for i in 0..N {
        a.log
            .publish_block(&message(i), Some(Duration::from_secs(20)))
            .unwrap();
    }
    let mut outb = start_out(&dir, &a.name(), "pack.log", "p", out_server, &["--pack"]);
    wait_until(Duration::from_secs(30), "B to hold N", || {
        b.log.next_seq() >= N
    });
    assert_eq!(outb.term().code(), Some(0));
    assert_eq!(inb.term().code(), Some(0));
    assert_eq!(b.indices(), (0..N).collect::<Vec<_>>());
    assert_eq!(status_value(&status, "p-in", "lost"), Some(0));
    assert_eq!(status_value(&status, "p-in", "duplicates"), Some(0));
    // Packed: the server took a few NATS messages, not one per message.
    let published = monitor(http, "/varz")["in_msgs"].as_u64().unwrap();
    assert!(
        published <= N / 16,
        "{published} NATS messages for {N} packed ones"
    );
    let clients = (outb.log(), inb.log());
    let (wire, other) = if wire_out {
        (&clients.0, &clients.1)
    } else {
        (&clients.1, &clients.0)
    };
    assert!(wire.contains("(wire client)"), "{wire}");
    assert!(other.contains("through async-nats"), "{other}");
}

#[test]
fn a_packed_route_from_the_wire_client_to_async_nats() {
    packed_route(true);
}

#[test]
fn a_packed_route_from_async_nats_to_the_wire_client() {
    packed_route(false);
}

/// Packing is refused where it cannot hold: JetStream, in routes, queues.
#[test]
fn pack_is_refused_where_it_cannot_hold() {
    for args in [
        &[
            "out",
            "--local",
            "x",
            "--subject",
            "s",
            "--mode",
            "jetstream",
            "--pack",
        ][..],
        &["in", "--local", "x", "--subject", "s", "--pack"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shmq-bridge"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("pack"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
