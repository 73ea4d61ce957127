//! SIGTERM mid-stream: the out bridge stops reading, waits for the
//! outstanding JetStream acknowledgements, commits, and exits 0; the
//! cursor's position then equals the number of messages the stream
//! acknowledged (all of them, the last one being the cursor's predecessor).

mod common;

use std::time::Duration;

use common::*;
use shmq::{LogMode, Start};

fn stream_state(url: &str, stream: &str, subject: &str) -> (u64, Option<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.unwrap();
        let n = s.info().await.unwrap().state.messages;
        let last = s
            .get_last_raw_message_by_subject(subject)
            .await
            .ok()
            .and_then(|m| {
                // Nats-Msg-Id: host/segment/seq.
                m.headers
                    .get("Nats-Msg-Id")
                    .and_then(|v| v.as_str().rsplit_once('/')?.1.parse().ok())
            });
        (n, last)
    })
}

#[test]
fn sigterm_drains_and_commits_what_was_acknowledged() {
    const N: u64 = 50_000;
    let dir = TempDir::new("term");
    let nats = Nats::start(Some(&dir.path("js")), dir.path("nats.log"));
    let a = TestLog::create("a", LogMode::Reliable, 4096);
    a.log.create_cursor("bridge.t", Start::Oldest).unwrap();
    let url = nats.url();
    let mut outb = start_out(
        &dir,
        &a.name(),
        "term.x",
        "t",
        &url,
        &["--mode", "jetstream", "--stream", "TERM"],
    );
    let publisher = {
        let target = a.target.clone();
        std::thread::spawn(move || {
            let log = shmq::Log::open(&target).unwrap();
            let mut sent = 0;
            for i in 0..N {
                // Gated by the cursor; stops once the bridge is gone.
                match log.publish_block(&message(i), Some(Duration::from_secs(2))) {
                    Ok(_) => sent += 1,
                    Err(_) => break,
                }
            }
            sent
        })
    };
    wait_until(Duration::from_secs(30), "the cursor to move", || {
        a.log.cursor("bridge.t").unwrap().position >= 5000
    });
    let status = outb.term();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(outb.log().contains("drained and committed"));
    let sent = publisher.join().unwrap();
    let committed = a.log.cursor("bridge.t").unwrap().position;
    let (stored, last) = stream_state(&url, "TERM", "term.x");
    assert!(committed > 0 && committed <= sent);
    assert_eq!(
        stored, committed,
        "the stream holds {stored}, the cursor committed {committed}"
    );
    assert_eq!(last, Some(committed - 1));
}
